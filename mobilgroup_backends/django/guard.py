"""The toll-fraud guard in front of every one-time code (two-factor, django-otp, allauth).

SMS pumping: bots ask a login form for codes to numbers whose operator shares the fee (premium
ranges, the +882/+883 international networks), and the account pays. Before a code is sent the
guard checks, in this order:

1. the country: only the regions of ``MOBILGROUP['OTP_REGIONS']`` (default: ``REGION``), never a
   premium-rate number, and the +882/+883 networks only when the list names ``001``;
2. the number: at most ``OTP_PER_PHONE_HOUR`` codes in a clock hour and ``OTP_PER_PHONE_DAY`` in
   a day (UTC);
3. the fleet: at most ``OTP_PER_HOUR`` codes in a clock hour to all numbers together.

A cache that cannot count (Redis down) refuses every code (``uncounted``): the guard fails
closed, as a code that is not counted is one a bot could repeat without end.

Counts live in Django's cache (``OTP_CACHE``, the ``default`` alias unless said otherwise), so
every process and host sharing that cache (Redis, Memcached, the database) counts together; a
per-process cache (``LocMemCache``) counts per process. A slot is taken by an atomic increment
and given back when a later check refuses, so concurrent requests never pass a limit together.
Phone numbers are kept in the cache as digests only.

A refusal raises :class:`CodeRefused` (each plug point turns it into its framework's way of
showing a failure), logs one line with the phone masked, fires
:data:`~mobilgroup_backends.django.signals.code_refused` and is counted for
``manage.py mobilgroup codes``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NoReturn

from ..protocol import mask_phone
from .settings import MobilgroupImproperlyConfigured, load_resolved
from .signals import code_refused

if TYPE_CHECKING:
    from django.core.cache.backends.base import BaseCache

    from ..config import Resolved

__all__ = ["REASONS", "CodeRefused", "GuardLimits", "admit", "allowed_destination", "counters",
           "would_admit"]

logger = logging.getLogger("mobilgroup_backends.django.guard")

#: Why a code was refused, as :attr:`CodeRefused.reason` and the counters name it.
REGION, PREMIUM, PHONE_HOUR, PHONE_DAY, FLEET_HOUR, UNCOUNTED = (
    "region", "premium", "phone_hour", "phone_day", "fleet_hour", "uncounted")
REASONS = (REGION, PREMIUM, PHONE_HOUR, PHONE_DAY, FLEET_HOUR, UNCOUNTED)
#: The country code phonenumbers gives the non-geographic networks (+800, +882, +883...).
NON_GEOGRAPHIC = "001"
_PREFIX = "mobilgroup:otp"
_HOUR, _DAY = 3600, 86400


class CodeRefused(Exception):
    """The guard refused a one-time code; nothing was sent and nothing was paid.

    ``reason`` is one of :data:`REASONS`; ``phone`` the number as the gateway writes it. The
    text shows the phone masked.
    """

    def __init__(self, phone: str, reason: str, detail: str) -> None:
        self.phone = phone
        self.reason = reason
        self.detail = detail
        super().__init__(f"one-time code to {mask_phone(phone)} refused ({reason}): {detail}")

    def __reduce__(self) -> tuple[type[CodeRefused], tuple[str, str, str]]:
        return type(self), (self.phone, self.reason, self.detail)


@dataclass(frozen=True)
class GuardLimits:
    """The guard's settings, resolved by the core from ``MOBILGROUP`` (see docs/otp.md)."""

    per_phone_hour: int = 3
    per_phone_day: int = 10
    per_hour: int = 1000
    regions: tuple[str, ...] = ("RU",)
    cache: str = "default"

    @classmethod
    def from_settings(cls) -> GuardLimits:
        return cls.from_resolved(load_resolved())

    @classmethod
    def from_resolved(cls, resolved: Resolved) -> GuardLimits:
        global _last_limits
        last = _last_limits  # one tuple, read at once: another thread may replace it
        if last is not None and last[0] is resolved:
            return last[1]  # the core hands back the same resolution while nothing changed
        limits = cls(per_phone_hour=resolved["otp_per_phone_hour"],
                     per_phone_day=resolved["otp_per_phone_day"],
                     per_hour=resolved["otp_per_hour"],
                     regions=resolved["otp_regions"] or (resolved.settings.region,),
                     cache=resolved["otp_cache"])
        _last_limits = (resolved, limits)
        return limits


_last_limits: tuple[Resolved, GuardLimits] | None = None


@functools.lru_cache(maxsize=4096)  # phonenumbers is slow, and the same numbers come back
def allowed_destination(phone: str, regions: tuple[str, ...]) -> tuple[str, str] | None:
    """None when a code may go to ``phone`` (international digits), else (reason, detail)."""
    import phonenumbers

    try:
        number = phonenumbers.parse("+" + phone.lstrip("+"))
    except phonenumbers.NumberParseException:
        return REGION, "not a number of any country"
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.PREMIUM_RATE:
        return PREMIUM, "a premium-rate number"
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    if region not in regions:
        if region == NON_GEOGRAPHIC:
            return PREMIUM, (f"+{number.country_code} is an international network, not a "
                             f"country; add '001' to MOBILGROUP['OTP_REGIONS'] to allow it")
        return REGION, (f"a number of {region}; codes go to {', '.join(regions)} only "
                        f"(MOBILGROUP['OTP_REGIONS'])")
    return None


def _cache(limits: GuardLimits) -> BaseCache:
    from django.conf import settings
    from django.core.cache import InvalidCacheBackendError, caches

    try:
        return caches[limits.cache]
    except InvalidCacheBackendError:
        raise MobilgroupImproperlyConfigured(
            "MOBILGROUP['OTP_CACHE']",
            f"{limits.cache!r} is not a cache of CACHES ({', '.join(map(repr, settings.CACHES))}); "
            "name one, shared by every process (Redis, Memcached, the database)",
            check_id="mobilgroup.E004") from None


def _phone_key(phone: str) -> str:
    # A digest: the cache (often shared, often dumped) never holds the numbers themselves.
    return hashlib.blake2b(phone.encode("ascii", "replace"), digest_size=12).hexdigest()


def _windows(phone: str, now: datetime) -> list[tuple[str, str, int, bool]]:
    """(reason, cache key, seconds the key lives, whether the key is mostly new) for each
    counter a code takes a slot in. A number gets a code or two an hour, so its counters are
    mostly made by this code; the fleet's is mostly there already."""
    seconds = int(now.timestamp())
    hour = seconds // _HOUR
    digest = _phone_key(phone)
    return [(PHONE_HOUR, f"{_PREFIX}:p:{digest}:h{hour}", _HOUR + 60, True),
            (PHONE_DAY, f"{_PREFIX}:p:{digest}:d{seconds // _DAY}", _DAY + 60, True),
            (FLEET_HOUR, f"{_PREFIX}:all:h{hour}", _HOUR + 60, False)]


def _limit(limits: GuardLimits, reason: str) -> int:
    return {PHONE_HOUR: limits.per_phone_hour, PHONE_DAY: limits.per_phone_day,
            FLEET_HOUR: limits.per_hour}[reason]


_DETAILS = {PHONE_HOUR: "{limit} codes to this number this hour already "
                        "(MOBILGROUP['OTP_PER_PHONE_HOUR'])",
            PHONE_DAY: "{limit} codes to this number today already "
                       "(MOBILGROUP['OTP_PER_PHONE_DAY'])",
            FLEET_HOUR: "{limit} codes to all numbers this hour already "
                        "(MOBILGROUP['OTP_PER_HOUR'])"}


def _take(cache: BaseCache, key: str, ttl: int, new: bool = False) -> int:
    """Add one to a counter; its new value. ``incr`` and ``add`` are atomic on shared caches:
    the first of an hour makes the counter, and a process that loses that race increments.
    ``new``: try ``add`` first (one round trip for a counter that is not there yet, where a
    failed ``incr`` costs one, or two on Django's Redis cache, before the ``add``)."""
    if new and cache.add(key, 1, ttl):
        return 1
    for _ in range(3):
        try:
            return int(cache.incr(key))
        except ValueError:  # no counter yet (or it just expired)
            if cache.add(key, 1, ttl):
                return 1
    raise RuntimeError(f"the cache would neither create nor increment {key!r}")


def _give_back(cache: BaseCache, key: str) -> None:
    with contextlib.suppress(ValueError):  # expired meanwhile: nothing to give back
        cache.decr(key)


def admit(phone: str, *, purpose: str = "code", limits: GuardLimits | None = None,
          now: datetime | None = None) -> None:
    """Take a slot for one code to ``phone`` (international digits), or raise
    :class:`CodeRefused` (and log it, signal it and count it)."""
    limits = GuardLimits.from_settings() if limits is None else limits
    refused = allowed_destination(phone, limits.regions)
    if refused is not None:
        _refuse(phone, *refused, purpose=purpose, limits=limits)
    cache = _cache(limits)
    taken: list[str] = []
    for reason, key, ttl, new in _windows(phone, now or datetime.now(timezone.utc)):
        try:
            count = _take(cache, key, ttl, new)
        except Exception as exc:  # the cache is down: uncounted codes could be pumped
            for earlier in taken:
                with contextlib.suppress(Exception):
                    _give_back(cache, earlier)
            _refuse(phone, UNCOUNTED, f"the cache {limits.cache!r} (MOBILGROUP['OTP_CACHE']) "
                    f"cannot count: {type(exc).__name__}", purpose=purpose, limits=limits)
        if count > _limit(limits, reason):
            for earlier in (*taken, key):
                _give_back(cache, earlier)
            _refuse(phone, reason, _DETAILS[reason].format(limit=_limit(limits, reason)),
                    purpose=purpose, limits=limits)
        taken.append(key)


def would_admit(phone: str, *, limits: GuardLimits | None = None,
                now: datetime | None = None) -> tuple[str, str] | None:
    """None when a code to ``phone`` would pass now, else (reason, detail); takes no slot, logs
    nothing (for form validation ahead of the send)."""
    limits = GuardLimits.from_settings() if limits is None else limits
    refused = allowed_destination(phone, limits.regions)
    if refused is not None:
        return refused
    cache = _cache(limits)
    for reason, key, _, _ in _windows(phone, now or datetime.now(timezone.utc)):
        try:
            count = int(cache.get(key, 0))
        except Exception as exc:
            return UNCOUNTED, f"the cache {limits.cache!r} cannot count: {type(exc).__name__}"
        if count >= _limit(limits, reason):
            return reason, _DETAILS[reason].format(limit=_limit(limits, reason))
    return None


def _refuse(phone: str, reason: str, detail: str, *, purpose: str, limits: GuardLimits) -> NoReturn:
    error = CodeRefused(phone, reason, detail)
    logger.warning("%s", error)
    day = int(datetime.now(timezone.utc).timestamp()) // _DAY
    try:
        _take(_cache(limits), f"{_PREFIX}:refused:{reason}:d{day}", _DAY * 2)
    except Exception as exc:  # a counter must not turn a refusal into a crash
        logger.warning("refused one-time code not counted: %s", type(exc).__name__)
    code_refused.send(sender=CodeRefused, phone=phone, reason=reason, purpose=purpose,
                      error=error)
    raise error


def counters(limits: GuardLimits | None = None,
             now: datetime | None = None) -> dict[str, int]:
    """Codes sent this hour (``sent_this_hour``) and refusals today, by reason
    (``refused_region``...), as the cache counts them."""
    limits = GuardLimits.from_settings() if limits is None else limits
    cache = _cache(limits)
    moment = now or datetime.now(timezone.utc)
    hour = int(moment.timestamp()) // _HOUR
    day = int(moment.timestamp()) // _DAY
    found = {"sent_this_hour": int(cache.get(f"{_PREFIX}:all:h{hour}", 0))}
    for reason in REASONS:
        found[f"refused_{reason}"] = int(cache.get(f"{_PREFIX}:refused:{reason}:d{day}", 0))
    return found
