"""Configuration: one option table, one resolver, one URL grammar, for every adapter.

Every setting is a row of :data:`OPTIONS`: its name (the keyword in Python), type, range,
default, URL key, ``MOBILGROUP`` key, environment variable and the adapters that use it.
:func:`resolve` builds :class:`Settings` (and the adapter-only options) from layers, strongest
first, and records which layer set every field:

1. arguments given in code (constructor or handler keywords, CLI flags);
2. the adapter's own URL (the handler's ``url=``, an Apprise URL, ``--url``);
3. Django's ``MOBILGROUP`` (its keys, then its ``URL``);
4. the environment (``MOBILGROUP_URL``, then the ``MOBILGROUP_*`` variables);
5. the defaults of the table (some adapters have their own: short timeouts for alerts).

The account (user id, login, password) is never assembled from two layers: it comes whole from
the strongest layer that names any part of it (arguments in code may still replace a part).

One URL form configures every adapter, the way a database URL does::

    mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE1/PHONE2?sender=ALIAS&valid=HOURS&endpoint=URL

Any option of the table works in any URL; Apprise's own arguments (``format``, ``overflow``,
``rto``...) are accepted everywhere and used by Apprise alone. Parsing never shows a piece of the
password: a URL whose login or password was not percent-encoded is refused without showing
either, and :func:`redact_url` masks everything between ``//`` and the last ``@`` when in doubt.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import ipaddress
import logging
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .errors import HIDDEN, ConfigurationError, ValidationError
from .protocol import (
    DEFAULT_REGION,
    check_credentials,
    check_region,
    check_sender,
    check_valid_hours,
    normalize_phones,
)

__all__ = [
    "ADAPTERS",
    "APPRISE_ARGS",
    "DEFAULT_ENDPOINT",
    "OPTIONS",
    "SCHEME",
    "Option",
    "ResolveCache",
    "Resolved",
    "Settings",
    "adapter_options",
    "check_endpoint",
    "django_setting",
    "django_settings_pending",
    "first_line",
    "is_loopback",
    "parse_bool",
    "parse_url",
    "redact_url",
    "resolve",
    "resolve_cached",
    "settings_from_env",
    "split_url",
    "url_text",
]

logger = logging.getLogger("mobilgroup_backends.config")

DEFAULT_ENDPOINT = "https://sms.mobilgroup.ru/extxml.php"
SCHEME = "mobilgroup"
MASK = "***"
SETTING_NAME = "MOBILGROUP"
ENV_PREFIX = "MOBILGROUP_"
ENV_URL = "MOBILGROUP_URL"

#: The adapters, as the option table names them.
ADAPTERS = ("client", "cli", "django", "logging", "apprise", "serve")
_EVERY = frozenset(ADAPTERS)

#: Apprise's own URL arguments: accepted in every URL, so that what ``NotifyMobilgroup.url()``
#: prints configures every adapter, and used by the Apprise plugin alone.
APPRISE_ARGS = frozenset({"format", "overflow", "emojis", "rto", "cto", "verify", "store", "tz",
                          "retry", "wait", "optional", "redirect", "tag", "user", "pass",
                          "password", "port"})

_TRUE = {"1", "yes", "true", "on", "y"}
_FALSE = {"0", "no", "false", "off", "n"}


def parse_bool(name: str, value: object) -> bool:
    """``yes``/``no``-style settings (URL query, environment) as a bool, or a ConfigurationError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(name, value, "not a yes/no value", "use yes or no (1/0, true/false)")


# --- the endpoint -----------------------------------------------------------------------------

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_warned_insecure: set[str] = set()


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine."""
    host = host.lower().strip("[]")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _transport_view(endpoint: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port as urllib3 (which makes the connection) and ``urlsplit`` (which the
    checks below read) both see them; None when they disagree or cannot parse it."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url as urllib3_parse

    try:
        ours = urlsplit(endpoint)
        ours_port = ours.port
        theirs = urllib3_parse(endpoint)
    except (ValueError, LocationParseError):
        return None
    ours_view = ((ours.scheme or "").lower(), (ours.hostname or "").lower(), ours_port)
    theirs_view = ((theirs.scheme or "").lower(), (theirs.host or "").lower().strip("[]"),
                   theirs.port)
    return ours_view if ours_view == theirs_view else None


_ENDPOINT_FIX = f"leave it unset for the real gateway ({DEFAULT_ENDPOINT}) or give a full URL"


def check_endpoint(endpoint: str, allow_insecure_http: bool = False) -> str:
    """The gateway address, refused when it would expose the password.

    Every request carries the password in its body, so plain ``http://`` is allowed only to this
    machine (the emulator) unless the caller explicitly opts in. The host is read the way the
    transport reads it: an address that urllib3 and ``urlsplit`` would read differently (a
    backslash, a second ``@``) is refused, as are credentials, a fragment and a non-ASCII host.
    """
    if not isinstance(endpoint, str):
        raise ConfigurationError("endpoint", type(endpoint).__name__, "not an http(s) URL",
                                 _ENDPOINT_FIX, option="endpoint")
    shown = redact_url(endpoint)
    if "@" in endpoint.split("?", 1)[0]:
        raise ConfigurationError(
            "endpoint", shown, "must not carry credentials",
            "put login and password in the mobilgroup:// URL or settings, not in the endpoint",
            option="endpoint")
    if not endpoint.isascii() or not endpoint.isprintable() or any(
            char in endpoint for char in "\\# \t"):
        raise ConfigurationError(
            "endpoint", shown, "holds a backslash, a '#', white space or a non-ASCII character",
            "give a plain https:// URL (an international domain in its xn-- form)",
            option="endpoint")
    view = _transport_view(endpoint)
    if view is None or view[0] not in ("https", "http") or not view[1]:
        raise ConfigurationError("endpoint", shown, "not an http(s) URL", _ENDPOINT_FIX,
                                 option="endpoint")
    scheme, host, _ = view
    if scheme == "http" and not is_loopback(host):
        if not allow_insecure_http:
            raise ConfigurationError(
                "endpoint", shown, "plain http outside this machine would send the password "
                "unencrypted", "use https://, or allow insecure http explicitly if you mean it",
                hints={"python": "use https://, or pass allow_insecure_http=True if you mean it",
                       "cli": "use https://, or add --allow-insecure-http if you mean it",
                       "django": "use https://, or set MOBILGROUP['ALLOW_INSECURE_HTTP'] = True "
                                 "if you mean it"},
                option="endpoint")
        if endpoint not in _warned_insecure:
            _warned_insecure.add(endpoint)
            logger.warning("allow_insecure_http is set: the password travels unencrypted to %s",
                           shown)
    return endpoint


# --- the option table -------------------------------------------------------------------------

Converter = Callable[[str, Any], Any]


def _text(label: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(label, value, "not a string", "give a text")
    return value


def _one_line(label: str, value: Any) -> str:
    """A text its whitespace folded to single spaces: it goes into every SMS of a kind."""
    return " ".join(_text(label, value).split())


def _budget(label: str, value: Any) -> str | None:
    """A Redis URL (checked by the logging store, which masks its password), or unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(label, type(value).__name__, "not a string",
                                 "give redis://HOST:PORT/DB?key=NAME")
    return value.strip()


def _secret(label: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(label, MASK, "not a string", "give the password as a string")
    if not value:
        raise ConfigurationError(label, HIDDEN, "the password is empty",
                                 "give the account password")
    return value


def _token(label: str, value: Any) -> str | None:
    """The receiver's token: a secret, never shown; unset when empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(label, MASK, "not a string", "give the token as text")
    token = value.strip()
    if len(token) < 16 or any(not 32 < ord(c) < 127 for c in token):
        raise ConfigurationError(label, MASK, "too short or not printable ASCII (at least 16 "
                                 "characters, no spaces)",
                                 "make one with: python -c 'import secrets; "
                                 "print(secrets.token_urlsafe(32))'")
    return token


def _login(label: str, value: Any) -> str:
    login = _text(label, value).strip()
    if not login:
        raise ConfigurationError(label, HIDDEN, "the login is empty", "give the account login")
    return login


def _user_id(label: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = value.strip() if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit()):
        shown = value if isinstance(value, (str, int)) else type(value).__name__
        raise ConfigurationError(label, shown, "the client ID must be digits (0-9)",
                                 "copy the numeric client ID from your Mobilgroup account")
    return text


def _number(kind: type[int] | type[float]) -> Converter:
    whole = kind is int

    def convert(label: str, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            # int() and float() read Arabic-Indic and full-width digits too: refuse them.
            if text.isascii() and re.fullmatch(r"[+-]?[0-9]+" if whole else
                                               r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", text):
                return kind(text)
            raise ConfigurationError(label, value, "not a number",
                                     f"give a {'whole ' if whole else ''}number in digits 0-9")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(label, value, "not a number",
                                     f"give a {'whole ' if whole else ''}number")
        if whole and isinstance(value, float):
            if not value.is_integer():
                raise ConfigurationError(label, value, "not a whole number", "give a whole number")
            return int(value)
        return kind(value)

    return convert


def _optional_number(kind: type[int] | type[float]) -> Converter:
    """A number, or unset (None, or an empty text)."""
    number = _number(kind)

    def convert(label: str, value: Any) -> Any:
        return None if value is None or value == "" else number(label, value)

    return convert


def _bool(label: str, value: Any) -> bool:
    return parse_bool(label, value)


def _sender(label: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return check_sender(value)
    except ValidationError as exc:
        raise ConfigurationError(label, exc.value, exc.problem, exc.fix) from None


def _valid_hours(label: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return check_valid_hours(_number(int)(label, value))
    except ValidationError as exc:
        raise ConfigurationError(label, exc.value, exc.problem, exc.fix) from None


def _region(label: str, value: Any) -> str:
    try:
        return check_region(value)
    except ValidationError as exc:
        raise ConfigurationError(label, exc.value, exc.problem, exc.fix) from None


def _phones_raw(label: str, value: Any) -> Any:
    """Phones as given (one string, or a list); :func:`resolve` normalizes them once the region
    is known."""
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        return value
    return tuple(value)


def _regions(label: str, value: Any) -> tuple[str, ...]:
    """Country codes (``RU``, ``KZ``; ``001`` for the international networks +882/+883), as a
    list or one comma-separated text; empty: only the configured ``REGION``."""
    if value is None or value == "" or value == []:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Iterable):
        raise ConfigurationError(label, value, "not a list of country codes",
                                 "give country codes such as ['RU', 'KZ']")
    regions: list[str] = []
    for item in items:
        text = item.strip().upper() if isinstance(item, str) else item
        if text == "001":
            regions.append(text)
            continue
        regions.append(_region(label, text))
    return tuple(dict.fromkeys(regions))


def _choice(*choices: str) -> Converter:
    def convert(label: str, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ConfigurationError(label, value, "not one of " + ", ".join(choices),
                                 "use one of " + ", ".join(choices))

    return convert


def _endpoint(label: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(label, value if isinstance(value, str) else type(value).__name__,
                                 "not an http(s) URL", _ENDPOINT_FIX)
    return value.strip()


@dataclass(frozen=True)
class Option:
    """One setting: how it is named in every place, its type, range and default.

    ``url``, ``setting`` and ``env`` are its names in a URL query, in Django's ``MOBILGROUP``
    and in the environment (None where it has none). ``adapters`` use it; the others accept it
    and leave it alone, so that one ``MOBILGROUP`` or one URL can serve them all.
    ``adapter_defaults`` are defaults an adapter chooses for itself (alerts time out sooner).
    """

    name: str
    kind: str
    convert: Converter = field(repr=False)
    default: Any
    doc: str
    adapters: frozenset[str] = _EVERY
    low: float | None = None
    high: float | None = None
    url: str | None = None
    setting: str | None = None
    env: str | None = None
    url_aliases: tuple[str, ...] = ()
    adapter_defaults: Mapping[str, Any] = field(default_factory=dict)
    in_settings: bool = True

    def default_for(self, adapter: str) -> Any:
        return self.adapter_defaults.get(adapter, self.default)

    def parse(self, label: str, value: Any) -> Any:
        """The value converted and range-checked; errors name ``label``."""
        value = self.convert(label, value)
        if value is not None and (self.low is not None or self.high is not None):
            low_ok = self.low is None or (value > self.low if self.kind == "seconds>0"
                                          else value >= self.low)
            high_ok = self.high is None or value <= self.high
            if not (low_ok and high_ok):
                raise ConfigurationError(label, value, "out of range", self.range_text(),
                                         option=self.name)
        return value

    def range_text(self) -> str:
        if self.kind == "seconds>0":
            return f"give seconds, more than 0 and at most {self.high:g}"
        unit = "seconds" if self.kind in ("seconds", "float") else "a whole number"
        if self.high is None:
            return f"give {unit} of at least {self.low:g}"
        return f"give {unit} from {self.low:g} to {self.high:g}"


def _option(name: str, kind: str, convert: Converter, default: Any, doc: str, *,
            url: str | bool | None = True, setting: str | bool | None = True,
            env: bool = True, **more: Any) -> Option:
    key = name.upper() if setting is True else (setting or None)
    return Option(name=name, kind=kind, convert=convert, default=default, doc=doc,
                  url=name if url is True else (url or None), setting=key,
                  env=ENV_PREFIX + key if env and key else None, **more)


_ALERTS = frozenset({"logging"})
#: The alert budget is shared by the logging handler and the alert receiver (``mobilgroup serve``).
_BUDGET = frozenset({"logging", "serve"})
_RECEIVER = frozenset({"serve"})
_DJANGO = frozenset({"django"})

#: Every setting of the package, in the order the documentation lists them.
OPTIONS: tuple[Option, ...] = (
    _option("user_id", "digits", _user_id, None, "the numeric client ID", url=False),
    _option("login", "text", _login, None, "the account login", url=False),
    _option("password", "secret", _secret, None, "the account password", url=False),
    _option("sender", "alias", _sender, None,
            "sender alias: latin letters, digits, space, hyphen, at most 9 characters; "
            "unset: the account's default alias", url_aliases=("from",)),
    _option("endpoint", "url", _endpoint, DEFAULT_ENDPOINT,
            "the gateway address (the emulator in tests)"),
    _option("phones", "phones", _phones_raw, (),
            "default recipients: who gets alerts (the client and the Django backend ignore "
            "them)", url=False, setting="ALERT_PHONES", adapters=frozenset({"logging", "apprise", "serve"})),
    _option("transliterate", "bool", _bool, True,
            "no: send Unicode (the gateway's rus_sms=1), 64 characters instead of 140",
            url="translit"),
    _option("valid_hours", "hours", _valid_hours, None,
            "message lifetime, 1 to 48 hours; unset: the gateway's 1 hour", url="valid"),
    _option("long_messages", "choice", _choice("split", "truncate", "error"), "error",
            "a text over the limit: split (one request per part), truncate or error",
            adapter_defaults={"django": "split", "apprise": "split", "serve": "split"}),
    _option("max_parts", "int", _optional_number(int), None,
            "with long_messages=split, the most parts one message takes (the last is cut); "
            "unset: as many as it takes", low=1, high=10, adapter_defaults={"serve": 1}),
    _option("replace_unencodable", "bool", _bool, False,
            "replace characters windows-1251 cannot carry (emoji) with '?' instead of refusing",
            adapter_defaults={"logging": True, "apprise": True, "serve": True}),
    _option("timeout", "seconds>0", _number(float), 10.0,
            "seconds to connect, and for each answer", low=0, high=600,
            adapter_defaults={"logging": 5.0, "serve": 5.0}),
    _option("retries", "int", _number(int), 3,
            "further attempts after a network error, timeout, 5xx or garbled answer (safe: "
            "a retry reuses the request id)", low=0, high=10,
            adapter_defaults={"logging": 1, "apprise": 2, "serve": 1}),
    _option("backoff", "seconds", _number(float), 0.25,
            "first pause between attempts, in seconds; doubles each time", low=0, high=60,
            adapter_defaults={"logging": 0.1, "serve": 0.1}),
    _option("deadline", "seconds>0", _number(float), 20.0,
            "the most one send, status or balance call takes, all attempts and pauses "
            "included (each attempt gets at most what is left)", low=0, high=3600,
            adapter_defaults={"logging": 10.0, "serve": 10.0}),
    _option("allow_insecure_http", "bool", _bool, False,
            "allow a plain http:// endpoint outside this machine (it carries the password; "
            "logs a warning)"),
    _option("region", "region", _region, DEFAULT_REGION,
            "the country whose national numbers (8 903 ..., 903 ...) are understood"),
    _option("track_delivery", "bool", _bool, False,
            "record every accepted request for delivery tracking (needs the app)",
            adapters=_DJANGO, in_settings=False),
    _option("outbox_batch", "int", _number(int), 10,
            "outbox rows of one transaction sent by one task, one after the other (1: a task "
            "per row)", low=1, high=1000, adapters=_DJANGO, in_settings=False),
    _option("outbox_send", "task-or-now", _choice("task", "now"), "task",
            "how outbox rows leave once committed: task (a task per batch, sent by the task "
            "worker) or now (by a few threads of the committing process, at once)",
            adapters=_DJANGO, in_settings=False),
    # The alert handler's own options.
    _option("max_sms", "int", _number(int), 5, "at most this many alert SMS ...", low=1,
            setting="ALERT_MAX_SMS", adapters=_BUDGET, in_settings=False),
    _option("per_seconds", "seconds", _number(float), 300.0,
            "... in any window of this many seconds", low=0, setting="ALERT_PER_SECONDS",
            adapters=_BUDGET, in_settings=False),
    _option("dedupe_seconds", "seconds", _number(float), 600.0,
            "the same alert is sent once in this time; 0 turns dedupe off", low=0,
            setting="ALERT_DEDUPE_SECONDS", adapters=_BUDGET, in_settings=False,
            adapter_defaults={"serve": 0.0}),
    _option("dedupe_size", "int", _number(int), 256, "alerts remembered for dedupe", low=1,
            setting="ALERT_DEDUPE_SIZE", adapters=_BUDGET, in_settings=False),
    _option("queue_size", "int", _number(int), 1000,
            "alerts waiting to be sent; more are dropped and counted", low=1,
            setting="ALERT_QUEUE_SIZE", adapters=_ALERTS, in_settings=False),
    _option("flush_timeout", "seconds", _number(float), 5.0,
            "the most flush() and close() of the alert handler wait", low=0,
            setting="ALERT_FLUSH_TIMEOUT", adapters=_ALERTS, in_settings=False),
    _option("failure_backoff", "seconds", _number(float), 10.0,
            "after a failed alert, seconds before trying again (doubling, up to 300)", low=0,
            setting="ALERT_FAILURE_BACKOFF", adapters=_BUDGET, in_settings=False),
    _option("prefix", "text", _one_line, "", "put in every alert SMS, e.g. the host",
            setting="ALERT_PREFIX", adapters=_BUDGET, in_settings=False),
    _option("budget", "redis-url", _budget, None,
            "one alert budget for every process using it: redis://HOST:PORT/DB?key=NAME; "
            "unset: each process has its own", url=False, setting="ALERT_BUDGET",
            adapters=_BUDGET, in_settings=False),
    # The toll-fraud guard of one-time codes (two-factor, django-otp, allauth): docs/otp.md.
    _option("otp_per_phone_hour", "int", _number(int), 3,
            "one-time codes to one phone in a clock hour", low=1, high=100, url=False,
            adapters=_DJANGO, in_settings=False),
    _option("otp_per_phone_day", "int", _number(int), 10,
            "one-time codes to one phone in a day (UTC)", low=1, high=1000, url=False,
            adapters=_DJANGO, in_settings=False),
    _option("otp_per_hour", "int", _number(int), 1000,
            "one-time codes to all phones together in a clock hour, every process and host "
            "counted", low=1, high=100_000, url=False, adapters=_DJANGO, in_settings=False),
    _option("otp_regions", "regions", _regions, (),
            "countries one-time codes may go to (001: the +882/+883 networks); unset: the "
            "region only", url=False, adapters=_DJANGO, in_settings=False),
    _option("otp_cache", "text", _text, "default",
            "the Django cache (CACHES alias) the guard counts in; shared by every process",
            url=False, adapters=_DJANGO, in_settings=False),
    # The alert receiver's own options (``mobilgroup serve``).
    _option("receiver_token", "secret", _token, None,
            "the bearer token (or basic-auth password) every request to the receiver must carry",
            url=False, adapters=_RECEIVER, in_settings=False),
    _option("receiver_token_file", "text", _text, None,
            "a file whose first line is the receiver's token (instead of receiver_token)",
            url=False, adapters=_RECEIVER, in_settings=False),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
BY_URL_KEY: dict[str, Option] = {key: option for option in OPTIONS
                                 for key in ((option.url, *option.url_aliases) if option.url
                                             else ())}
BY_SETTING: dict[str, Option] = {option.setting: option for option in OPTIONS if option.setting}
#: The keys of ``MOBILGROUP``: ``URL`` and one per option.
SETTING_KEYS: tuple[str, ...] = ("URL", *BY_SETTING)
ACCOUNT = ("user_id", "login", "password")


# --- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything needed to talk to the gateway, plus the defaults an adapter sends with.

    ``phones`` are default recipients (alert targets); the client itself does not use them.
    Every field is checked against the option table when the object is made.
    """

    user_id: str
    login: str
    password: str = field(repr=False)
    sender: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    phones: tuple[str, ...] = ()
    transliterate: bool = True
    valid_hours: int | None = None
    long_messages: str = "error"
    max_parts: int | None = None
    replace_unencodable: bool = False
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.25
    deadline: float = 20.0
    allow_insecure_http: bool = False
    region: str = DEFAULT_REGION

    def __post_init__(self) -> None:
        try:
            # Types and characters first: the option parsers below would turn a number into text.
            check_credentials(self.user_id, self.login, self.password)
        except ValidationError as exc:
            raise ConfigurationError(exc.field, exc.value, exc.problem, exc.fix) from None
        for name in ("user_id", "login", "password", "sender", "transliterate", "valid_hours",
                     "long_messages", "max_parts", "replace_unencodable", "timeout", "retries",
                     "backoff", "deadline", "allow_insecure_http", "region"):
            value = getattr(self, name)
            checked = BY_NAME[name].parse(name, value)
            if checked != value or type(checked) is not type(value):
                object.__setattr__(self, name, checked)
        check_endpoint(self.endpoint, self.allow_insecure_http)

    def __repr__(self) -> str:
        return (f"Settings(user_id={self.user_id!r}, login={self.login!r}, password='***', "
                f"sender={self.sender!r}, endpoint={self.endpoint!r}, phones={self.phones!r})")

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def to_url(self, *, privacy: bool = False) -> str:
        """The ``mobilgroup://`` URL for these settings; ``privacy`` masks the password.

        Options at their table default are left out.
        """
        password = MASK if privacy else quote(self.password, safe="")
        path = "".join("/" + phone for phone in self.phones)
        query = [f"{option.url}={quote(url_text(value), safe='')}"
                 for option in OPTIONS if option.in_settings and option.url
                 and (value := getattr(self, option.name)) != option.default
                 and value is not None]
        tail = ("?" + "&".join(query)) if query else ""
        return f"{SCHEME}://{quote(self.login, safe='')}:{password}@{self.user_id}{path}{tail}"


def url_text(value: Any) -> str:
    """A setting's value as a URL writes it (``yes``/``no``, ``2.5``)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --- URLs -------------------------------------------------------------------------------------

# RFC 3986 userinfo: unreserved, sub-delims, ':' and %XX. Anything else must be percent-encoded,
# or the URL cannot be split without guessing where the password ends.
_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*")
_AFTER_AT = re.compile(r"([^/?]*)(/[^?]*)?(?:\?(.*))?", re.DOTALL)
_ENCODE_FIX = ("percent-encode the login and the password ('@' is %40, '/' %2F, '?' %3F, "
               "'#' %23, '%' %25), e.g. with urllib.parse.quote(password, safe='')")


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs.

    Errs on the side of hiding: with one ``@`` and a clean login, the login stays; with more
    than one ``@`` or characters that should have been percent-encoded, everything between
    ``//`` and the last ``@`` is masked, and so is a user id that is not digits (it may be the
    end of a password); a ``mobilgroup://`` URL with no ``@`` loses everything after its login.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, slashes, rest = url.partition("//")
    if not slashes:
        at = url.rfind("@")
        return url if at < 0 else f"{MASK}{url[at:]}"
    prefix = scheme + slashes
    at = rest.rfind("@")
    if at < 0:
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        login, colon, port = authority.partition(":")
        is_port = scheme.lower() != f"{SCHEME}:" and port.isdigit()
        if not colon or is_port:
            return url  # host:port, not login:password (a mobilgroup:// URL has no port)
        return f"{prefix}{login}:{MASK}"
    userinfo, after = rest[:at], rest[at + 1:]
    login, colon, _ = userinfo.partition(":")
    clean = rest.count("@") == 1 and _USERINFO.fullmatch(userinfo) is not None
    shown = f"{login}:{MASK}" if clean and colon else MASK
    host = re.split(r"[/?#]", after, maxsplit=1)[0]
    if scheme.lower() == f"{SCHEME}:" and not (host.isascii() and host.isdigit()):
        # A user id that is not digits may be the end of a password whose '@' was not encoded.
        after = MASK + after[len(host):]
    return f"{prefix}{shown}@{after}"


@dataclass(frozen=True)
class SplitUrl:
    """A URL split into raw option values by option name (nothing converted yet), its Apprise
    arguments, and (when asked to keep going) the options nobody knows."""

    values: dict[str, Any]
    extras: dict[str, str]
    unknown: tuple[str, ...] = ()


def _url_values(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Options of a URL its framework split already, by URL key or option name."""
    result: dict[str, Any] = {}
    for key, value in values.items():
        option = BY_URL_KEY.get(key) or BY_NAME.get(key)
        if option is None:
            raise ConfigurationError(f"url option {key}", HIDDEN, "unknown option",
                                     "remove it", source=source, option="url")
        if value is not None and value != "":
            result[option.name] = value
    return result


def split_url(url: Any, source: str = "url", extra_keys: frozenset[str] = frozenset(), *,
              keep_unknown: bool = False) -> SplitUrl:
    """Split a ``mobilgroup://`` URL without ever showing its password in an error.

    An unknown option is refused, naming it and the known ones, unless ``keep_unknown`` (Apprise's
    convention: warn and go on), when its name is returned in ``unknown``.
    """
    if not isinstance(url, str):
        raise ConfigurationError(source, type(url).__name__, "not a string",
                                 f"give a {SCHEME}:// URL", option="url")
    text = url.strip()
    shown = redact_url(text)

    def refuse(problem: str, fix: str, value: Any = shown) -> ConfigurationError:
        return ConfigurationError(source, value, problem, fix, option="url")

    head, slashes, rest = text.partition("://")
    if not slashes or head.lower() != SCHEME:
        raise refuse(f"the scheme must be {SCHEME}://",
                     f"write it as {SCHEME}://LOGIN:PASSWORD@USER_ID/PHONE?sender=ALIAS")
    if "@" not in rest:
        raise refuse("login and password are missing",
                     f"write it as {SCHEME}://LOGIN:PASSWORD@USER_ID (percent-encode '@' as %40)")
    if rest.count("@") > 1:
        raise refuse("more than one '@': the login or the password was not percent-encoded",
                     _ENCODE_FIX, HIDDEN)
    userinfo, _, after = rest.partition("@")
    if not _USERINFO.fullmatch(userinfo):
        raise refuse("the login or the password holds a character that must be "
                     "percent-encoded", _ENCODE_FIX, HIDDEN)
    login, _, password = userinfo.partition(":")
    if not login or not password:
        missing = ("login and password are" if not login and not password
                   else "login is" if not login else "password is")
        raise refuse(f"the {missing} missing", f"write it as {SCHEME}://LOGIN:PASSWORD@USER_ID")
    if "#" in after:
        raise refuse("a '#' must be percent-encoded (%23)", "write '#' as %23")
    host, path, query = _AFTER_AT.fullmatch(after).groups(default="")  # type: ignore[union-attr]
    user_id = unquote(host)
    if not (user_id.isascii() and user_id.isdigit()):
        # Not shown: when a password's '@' was not encoded, this would be a piece of it.
        raise ConfigurationError(
            "user_id", HIDDEN, "the client ID after '@' must be digits (0-9)",
            "write it as LOGIN:PASSWORD@USER_ID with the numeric client ID, and percent-encode "
            "an '@' in the password as %40", source=source, option="user_id")
    values: dict[str, Any] = {"user_id": user_id, "login": unquote(login),
                              "password": unquote(password)}
    phones = [unquote(piece) for piece in path.split("/") if piece]
    extras: dict[str, str] = {}
    unknown: list[str] = []
    unknown_options: list[ConfigurationError] = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        option = BY_URL_KEY.get(key)
        if key == "to":
            phones.extend(p for p in value.replace(";", ",").split(",") if p.strip())
        elif option is not None:
            if value != "":
                values[option.name] = value
        elif key in APPRISE_ARGS or key in extra_keys:
            extras[key] = value
        elif keep_unknown:
            unknown.append(key)
        else:
            unknown_options.append(ConfigurationError(
                f"url option {key}", HIDDEN, "unknown option", _unknown_option_fix(key),
                source=None if source == "url" else source, option="url"))
    if unknown_options:
        raise unknown_options[0].with_others(unknown_options[1:])
    if phones:
        values["phones"] = tuple(phones)
    return SplitUrl(values, extras, tuple(unknown))


def _did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` was most likely meant to be (a typo of it), or None."""
    candidates = list(known)
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not matches:  # case aside: "sender" for SENDER
        folded = {candidate.lower(): candidate for candidate in candidates}
        matches = [folded[hit] for hit in difflib.get_close_matches(name.lower(), folded, n=1)]
    return matches[0] if matches else None


def _unknown_option_fix(key: str) -> str:
    meant = _did_you_mean(key, [*BY_URL_KEY, "to", *APPRISE_ARGS])
    if meant is not None:
        return f"did you mean {meant}?"
    return (f"remove it or use one of: {', '.join(sorted({*BY_URL_KEY, 'to'}))} (or one of "
            f"Apprise's: {', '.join(sorted(APPRISE_ARGS))})")


def _unknown_key_error(key: str) -> ConfigurationError:
    meant = _did_you_mean(key, SETTING_KEYS)
    fix = f"did you mean {meant}?" if meant else f"the known keys are {', '.join(SETTING_KEYS)}"
    return ConfigurationError(f"{SETTING_NAME}[{key!r}]", HIDDEN, "unknown key", fix,
                              option="setting")


def parse_url(url: str, *, extra_keys: frozenset[str] = frozenset()) -> tuple[Settings, dict[str, str]]:
    """Settings from a ``mobilgroup://`` URL alone, and its Apprise arguments.

    Unknown options are refused (a typo such as ``sendr=`` must not silently fall back to the
    default alias); Apprise's arguments (``format``, ``overflow``...) and any ``extra_keys``
    come back in the second item. Options other adapters use are checked and left out.
    """
    resolved = resolve("client", url=url, environ={}, url_source="url", extra_keys=extra_keys)
    return resolved.settings, dict(resolved.extras)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``MOBILGROUP_URL``, or from ``MOBILGROUP_USER_ID``, ``_LOGIN``,
    ``_PASSWORD`` and the other ``MOBILGROUP_*`` variables (the URL wins where both say)."""
    return resolve("client", environ=os.environ if environ is None else environ).settings


# --- the resolver -----------------------------------------------------------------------------

#: Layer names, strongest first, as :attr:`Resolved.sources` records them.
ARGUMENT, URL, SETTING, SETTING_URL, ENVIRONMENT_URL, ENVIRONMENT, DEFAULT = (
    "argument", "url", "setting", "setting-url", "env-url", "env", "default")
LAYERS = (ARGUMENT, URL, SETTING, SETTING_URL, ENVIRONMENT_URL, ENVIRONMENT, DEFAULT)


@dataclass(frozen=True)
class Resolved:
    """What :func:`resolve` found: the core :class:`Settings`, every option's value (adapter
    options included), and which layer set each (``"default"`` when none did)."""

    settings: Settings
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    extras: Mapping[str, str]
    url_source: str = "url"

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def given(self, name: str) -> bool:
        """True when a layer set ``name`` (the default was not used)."""
        return self.sources.get(name, DEFAULT) != DEFAULT

    def where(self, name: str) -> str:
        """Where ``name`` came from, as the user wrote it."""
        return _label(BY_NAME[name], self.sources.get(name, DEFAULT), self.url_source)

    def __repr__(self) -> str:
        return f"Resolved({self.settings!r}, sources={dict(self.sources)!r})"


def _label(option: Option, layer: str, url_source: str = "url") -> str:
    if layer == ARGUMENT:
        return option.name
    if layer == URL:
        return url_source
    if layer == SETTING:
        return f"{SETTING_NAME}[{option.setting!r}]"
    if layer == SETTING_URL:
        return f"{SETTING_NAME}['URL']"
    if layer == ENVIRONMENT_URL:
        return ENV_URL
    if layer == ENVIRONMENT:
        return option.env or ENV_URL
    return option.name


def _relabel(exc: ConfigurationError, option: Option, layer: str,
             url_source: str) -> ConfigurationError:
    """``exc`` naming the option as the user wrote it: ``valid`` inside a URL (and which URL),
    ``MOBILGROUP['VALID_HOURS']``, ``MOBILGROUP_VALID_HOURS``, or the keyword argument."""
    exc.option = option.name
    if layer in (URL, SETTING_URL, ENVIRONMENT_URL):
        exc.field = option.url or option.name
        exc.source = _label(option, layer, url_source)
    else:
        exc.field = _label(option, layer, url_source)
    exc.args = (exc.describe("python"),)
    return exc


def resolve(
    adapter: str,
    *,
    arguments: Mapping[str, Any] | None = None,
    url: str | Mapping[str, Any] | None = None,
    setting: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    url_source: str = "url",
    extra_keys: frozenset[str] = frozenset(),
) -> Resolved:
    """Settings for ``adapter`` from its layers, strongest first (see the module's docstring).

    ``arguments`` use the option names (``sender``, ``timeout``...; None means not given);
    ``setting`` is Django's ``MOBILGROUP`` (None: not configured); ``environ`` defaults to
    ``os.environ``; ``defaults`` are the adapter's own defaults where they differ from the
    table's (Apprise's socket timeouts). ``url_source`` names the URL in errors (``url``,
    ``--url``). Every error is a :class:`ConfigurationError` naming the setting as the user wrote
    it, never showing the password.
    """
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, dict[str, Any]]] = []
    extras: dict[str, str] = {}
    # Every mistake is collected and all are raised at once (the first, with the others in
    # ``also``): a layer that cannot be read is left out, and the others are still checked.
    problems: list[ConfigurationError] = []

    def add_url(layer: str, text: Any, source: str) -> None:
        try:
            parsed = split_url(text, source, extra_keys)
        except ConfigurationError as exc:
            problems.extend((exc, *exc.also))
            return
        layers.append((layer, parsed.values))
        extras.update({k: v for k, v in parsed.extras.items() if k not in extras})

    given = {name: value for name, value in (arguments or {}).items() if value is not None}
    strange = sorted(set(given) - set(BY_NAME) - {"url"})
    if strange:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(strange)}; the known ones "
                        f"are url, {', '.join(BY_NAME)}")
    layers.append((ARGUMENT, {k: v for k, v in given.items() if k != "url"}))
    if isinstance(url, Mapping):  # a URL its framework split already (Apprise)
        layers.append((URL, _url_values(url, url_source)))
    elif url is not None:
        add_url(URL, url, url_source)

    if setting is not None:
        if not isinstance(setting, Mapping):
            raise ConfigurationError(
                SETTING_NAME, HIDDEN, f"must be a dict, not {type(setting).__name__}",
                f"write {SETTING_NAME} = {{'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'}}",
                option="setting")
        problems.extend(_unknown_key_error(key) for key in sorted(map(str, setting))
                        if key not in SETTING_KEYS)
        layers.append((SETTING, {BY_SETTING[key].name: value for key, value in setting.items()
                                 if key in BY_SETTING and key != "URL"
                                 and value is not None and value != ""}))
        if setting.get("URL"):
            add_url(SETTING_URL, setting["URL"], f"{SETTING_NAME}['URL']")

    env_url = environ.get(ENV_URL, "").strip()
    if env_url:
        add_url(ENVIRONMENT_URL, env_url, ENV_URL)
    env_values = {option.name: environ[option.env] for option in OPTIONS
                  if option.env and environ.get(option.env, "").strip()}
    layers.append((ENVIRONMENT, env_values))
    unreadable_url = bool(problems)  # and it may have held the account

    # The account comes whole from the strongest layer (below arguments) that names any of it.
    account_layer = next((name for name, values in layers[1:]
                          if any(key in values for key in ACCOUNT)), None)
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, values in layers:
        for key, value in values.items():
            if key in raw:
                continue
            if key in ACCOUNT and name not in (ARGUMENT, account_layer):
                continue
            raw[key] = value
            sources[key] = name

    result: dict[str, Any] = {}
    for option in OPTIONS:
        layer = sources.get(option.name, DEFAULT)
        if layer == DEFAULT:
            result[option.name] = (defaults or {}).get(option.name, option.default_for(adapter))
            continue
        try:
            result[option.name] = option.parse(_label(option, layer, url_source),
                                               raw[option.name])
        except ConfigurationError as exc:
            problems.append(_relabel(exc, option, layer, url_source))

    missing = [name for name in ACCOUNT if name not in sources]
    if missing and not unreadable_url:
        problems.append(_missing_account(missing, account_layer, adapter))
    if problems:
        raise problems[0].with_others(problems[1:])
    if result["phones"]:
        try:
            result["phones"] = normalize_phones(result["phones"], region=result["region"])
        except ValidationError as exc:
            error = ConfigurationError("phones", exc.value, exc.problem, exc.fix)
            raise _relabel(error, BY_NAME["phones"], sources["phones"], url_source) from None
    try:
        settings = Settings(**{option.name: result[option.name]
                               for option in OPTIONS if option.in_settings})
    except ConfigurationError as exc:
        failed = BY_NAME.get(exc.option or exc.field)
        if failed is None:
            raise
        raise _relabel(exc, failed, sources.get(failed.name, DEFAULT), url_source) from None
    return Resolved(settings=settings, values=result, sources=sources, extras=extras,
                    url_source=url_source)


class ReadOnlyMapping(Mapping[str, Any]):
    """A read-only copy of a dict, shared between callers of :data:`resolve_cached`. Unlike a
    ``MappingProxyType`` it pickles and deep-copies (an Apprise plugin holding a cached result is
    copied by Apprise and pickled by task queues)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"


#: Every environment variable the resolver reads: the key of a memoised resolution reads these
#: (looking each up is cheaper than walking the environment).
ENV_NAMES: tuple[str, ...] = (ENV_URL, *sorted({option.env for option in OPTIONS if option.env}))


class ResolveCache:
    """:func:`resolve`, remembered for the layers' current values: the one place that knows
    which layers to look at and when a result still holds.

    Adapters that resolve on every call (a Django backend per ``send_sms``, the outbox per
    ``enqueue``, a Celery task per message) call :data:`resolve_cached`. The key is made from
    everything :func:`resolve` reads, read afresh on every call: the arguments, the URL, the
    ``MOBILGROUP`` setting as it is now (``override_settings`` included) and the ``MOBILGROUP_*``
    variables. A changed layer is a new key, so it is seen at once; nothing has to be cleared.
    At most ``size`` results are kept, the least recently used dropped first. Thread-safe: the
    resolution runs outside the lock (two threads may both resolve a new key; both get equal
    results). An invalid configuration raises every time and is never remembered.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._results: OrderedDict[str, Resolved] = OrderedDict()
        self._lock = threading.Lock()
        # Per adapter, the layers of its last call (deep copies), the variables and their
        # result: an adapter asks with the same layers call after call, and comparing them is
        # cheaper than the digest of their repr.
        self._last: dict[str, tuple[dict[str, Any], object, Resolved]] = {}

    def __len__(self) -> int:
        return len(self._results)

    def clear(self) -> None:
        with self._lock:
            self._results.clear()
            self._last.clear()

    def __call__(self, adapter: str, **layers: Any) -> Resolved:
        """``resolve(adapter, **layers)``, from memory when no layer changed."""
        given = layers.pop("environ", None)
        environ = os.environ if given is None else given
        variables = _variables(environ)
        last = self._last.get(adapter)
        # Dicts compare regardless of the order the keywords came in.
        if last is not None and last[1] == variables and last[0] == layers:
            return last[2]
        resolved = self._resolve(adapter, environ, layers)
        if len(self._last) < len(ADAPTERS) or adapter in self._last:
            try:
                # A copy, so that a layer changed in place (a dict of settings) is a change.
                kept = copy.deepcopy(layers)
                if kept == layers:  # a value equal only to itself would never match again
                    self._last[adapter] = (kept, variables, resolved)
            except Exception:  # a value that cannot be copied: the digest path serves it
                self._last.pop(adapter, None)
        return resolved

    def _resolve(self, adapter: str, environ: Mapping[str, str],
                 layers: dict[str, Any]) -> Resolved:
        # A digest of the repr (the layers hold dicts and lists, so no hash()): the key keeps no
        # password. Of the environment, only the variables the resolver reads.
        key = hashlib.blake2b(repr((
            adapter, sorted(layers.items()),
            [environ.get(name) for name in ENV_NAMES])).encode("utf-8", "surrogatepass"),
            digest_size=20).hexdigest()
        with self._lock:
            found = self._results.get(key)
            if found is not None:
                self._results.move_to_end(key)
                return found
        resolved = resolve(adapter, environ=environ, **layers)
        # Shared between callers: read-only views, so that no caller changes another's result.
        resolved = replace(resolved, values=ReadOnlyMapping(resolved.values),
                           sources=ReadOnlyMapping(resolved.sources),
                           extras=ReadOnlyMapping(resolved.extras))
        with self._lock:
            self._results[key] = resolved
            self._results.move_to_end(key)
            while len(self._results) > self.size:
                self._results.popitem(last=False)
        return resolved


_ENV_KEYS = frozenset(os.fsencode(name) for name in ENV_NAMES) if os.name == "posix" else None


def _variables(environ: Mapping[str, str]) -> object:
    """The variables the resolver reads, as a value that compares equal while none of them
    changed. Of ``os.environ``, on POSIX, straight from the dict it keeps (what it reads and
    writes through), and only the names it holds: a look-up through ``os.environ`` encodes the
    name and decodes the value each time, and most of the names are usually unset. (The names
    are looked up in the environment, not the other way round: the cost does not grow with the
    size of the environment.)"""
    data = getattr(environ, "_data", None) if environ is os.environ else None
    if isinstance(data, dict) and _ENV_KEYS is not None:
        present = data.keys() & _ENV_KEYS
        return {name: data[name] for name in present} if present else None
    return tuple(map(environ.get, ENV_NAMES))


#: The process's memoised :func:`resolve` (see :class:`ResolveCache`).
resolve_cached = ResolveCache()


def first_line(path: str, field: str, fix: str) -> str:
    """The first line of the UTF-8 file at ``path``, without its line end: where a secret (the
    URL, the receiver's token) is kept out of the command line. A file that cannot be read is a
    :class:`ConfigurationError` of ``field``, with ``fix``."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().removesuffix("\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(field, path, reason or str(exc), fix) from None


def django_setting() -> Mapping[str, Any] | None:
    """Django's ``settings.MOBILGROUP`` when Django is imported and configured already, else None.

    Django is never imported from here: adapters that may run without Django (the logging
    handler, Celery tasks) read its layer only if the application set Django up. The resolver
    refuses a value that is not a dict.
    """
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None) if conf is not None else None
    if settings is None or not getattr(settings, "configured", False):
        return None
    value: Mapping[str, Any] | None = getattr(settings, SETTING_NAME, None)
    return value


def django_settings_pending() -> bool:
    """True when Django is imported but its settings are not configured yet (so the
    ``MOBILGROUP`` layer may still appear)."""
    conf = sys.modules.get("django.conf")
    settings = getattr(conf, "settings", None) if conf is not None else None
    return settings is not None and not getattr(settings, "configured", False)


def adapter_options(adapter: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The adapter-only options of ``adapter`` from arguments in code and the defaults alone: for
    an adapter that must start before its other layers can be read (see the logging handler)."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.in_settings or adapter not in option.adapters:
            continue
        value = arguments.get(option.name)
        values[option.name] = (option.default_for(adapter) if value is None
                               else option.parse(option.name, value))
    return values


def _missing_account(missing: list[str], layer: str | None, adapter: str) -> ConfigurationError:
    if layer is None:
        python = ("set MOBILGROUP_URL=mobilgroup://LOGIN:PASSWORD@USER_ID, or MOBILGROUP_USER_ID, "
                  "MOBILGROUP_LOGIN and MOBILGROUP_PASSWORD")
        if adapter == "logging":
            python = ("give url=mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE, set MOBILGROUP in "
                      "Django's settings, or " + python)
        return ConfigurationError(
            "url", HIDDEN, "no gateway credentials", python,
            hints={
                "cli": "give --url mobilgroup://LOGIN:PASSWORD@USER_ID, or set MOBILGROUP_URL "
                       "(or MOBILGROUP_USER_ID, MOBILGROUP_LOGIN and MOBILGROUP_PASSWORD)",
                "django": "set MOBILGROUP = {'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'} (or "
                          "the keys USER_ID, LOGIN and PASSWORD), or the MOBILGROUP_URL "
                          "environment variable"},
            option="account")
    names = ", ".join(_label(BY_NAME[name], layer) for name in missing)
    return ConfigurationError(
        names, HIDDEN, "missing",
        "give the user id, login and password together (in one place), or one URL",
        option="account")
