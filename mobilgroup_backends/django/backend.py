"""``SmsBackend``: the Mobilgroup gateway as a django-sms and django-sendsms backend.

::

    SMS_BACKEND = "mobilgroup_backends.django.SmsBackend"        # django-sms
    SENDSMS_BACKEND = "mobilgroup_backends.django.SmsBackend"    # django-sendsms
    MOBILGROUP = {"URL": "mobilgroup://LOGIN:PASSWORD@USER_ID?sender=MyShop"}

One open backend holds one :class:`~mobilgroup_backends.MobilgroupClient`, so every message sent
inside ``with get_connection() as connection:`` travels over the same keep-alive connection, the
way Django's SMTP backend reuses its SMTP session. A backend that is not open opens a client for
one ``send_messages`` call and closes it afterwards.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

from ..client import MobilgroupClient, shared_client
from ..errors import ConfigurationError, MobilgroupError, ValidationError
from ..outgoing import Outgoing
from .settings import BackendConfig, MobilgroupImproperlyConfigured, current_config, load_config, valid_alias
from .signals import CancelSend, post_send, pre_send

__all__ = ["MobilgroupPart", "MobilgroupRecipientStatus", "MobilgroupStatus", "SmsBackend"]

logger = logging.getLogger("mobilgroup_backends.django")

#: Statuses a message can have right after ``send_messages``. Delivery reports (tracking) come
#: later through the ``delivery_status`` signal and the SmsRecipient model.
QUEUED, FAILED, REJECTED, CANCELLED = "queued", "failed", "rejected", "cancelled"
#: A part not tried yet: an earlier part of the same message failed.
PENDING = "pending"


_Backend = TypeVar("_Backend", bound="_LocalBaseSmsBackend")


class _LocalBaseSmsBackend:
    """What django-sms's ``BaseSmsBackend`` provides, for projects without django-sms."""

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        self.fail_silently = fail_silently

    def open(self) -> bool:
        return True

    def close(self) -> None:
        return None

    def __enter__(self: _Backend) -> _Backend:
        try:
            self.open()
        except Exception:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


if TYPE_CHECKING:
    _Base = _LocalBaseSmsBackend
else:
    try:
        from sms.backends.base import BaseSmsBackend as _Base
    except ImportError:  # django-sms is optional
        _Base = _LocalBaseSmsBackend


@dataclass
class MobilgroupRecipientStatus:
    """One recipient of a sent message: the request that carries it and its status."""

    request_id: int | None
    status: str


@dataclass
class MobilgroupPart:
    """One part of a message (one gateway request): its id and what became of it.

    ``status`` is ``"queued"`` (accepted), ``"failed"`` (``error`` says why; ``maybe_sent`` when
    it may have reached the gateway anyway), ``"rejected"`` (refused locally) or ``"pending"``
    (not tried: an earlier part failed). ``accepted_earlier`` is True when a resend found the part
    already accepted.
    """

    index: int
    text: str
    request_id: int
    status: str = "pending"
    error: MobilgroupError | None = None
    accepted_earlier: bool = False

    @property
    def accepted(self) -> bool:
        return self.status == QUEUED

    @property
    def maybe_sent(self) -> bool:
        return self.error is not None and self.error.maybe_sent


@dataclass
class MobilgroupStatus:
    """``message.mobilgroup_status``: what became of a message in ``send_messages``.

    ``request_id`` is the gateway request id to ask for reports with (the first part's, when the
    text was split; ``request_ids`` holds every part's). ``status`` is ``"queued"`` (the gateway
    accepted it), ``"failed"`` (the gateway refused or could not be reached: ``error`` says why),
    ``"rejected"`` (refused locally before any request, e.g. a malformed phone) or
    ``"cancelled"`` (a ``pre_send`` receiver dropped it).

    ``part_results`` says, part by part, which were accepted and under which id. Sending the same
    message object again sends only the parts not accepted yet, each with its own id (and
    ``resend=True`` when it may have reached the gateway), so no part ever goes out twice.
    """

    status: str | None = None
    request_id: int | None = None
    request_ids: list[int] = field(default_factory=list)
    recipients: dict[str, MobilgroupRecipientStatus] = field(default_factory=dict)
    parts: int = 0
    sender: str | None = None
    error: MobilgroupError | None = None
    tracked: bool = False
    part_results: list[MobilgroupPart] = field(default_factory=list)
    #: The message as the core prepared it (every setting applied, one request id per part).
    outgoing: Outgoing | None = None

    @property
    def accepted(self) -> bool:
        return self.status == QUEUED


class SmsBackend(_Base):
    """Send django-sms ``Message`` and django-sendsms ``SmsMessage`` objects through Mobilgroup.

    Keyword arguments override the ``MOBILGROUP`` setting (``url``, ``user_id``, ``login``,
    ``password``, ``sender``, ``endpoint``, ``timeout``, ``retries``, ``backoff``,
    ``transliterate``, ``valid_hours``, ``long_messages``, ``replace_unencodable``,
    ``track_delivery``, ``allow_insecure_http``); ``username`` is django-sendsms's name for
    ``login``. A missing or invalid setting raises ``ImproperlyConfigured`` here, whatever
    ``fail_silently`` says.
    """

    @sensitive_variables()  # kwargs may hold the password
    def __init__(self, fail_silently: bool = False, *, username: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently)
        if username is not None and kwargs.get("login") is None:
            kwargs["login"] = username
        # No keyword (a backend per send_sms): the settings' configuration, as remembered.
        self.config: BackendConfig = load_config(kwargs) if kwargs else current_config()
        if self.config.track_delivery:
            _require_app()
        self._client: MobilgroupClient | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        config = getattr(self, "config", None)  # error reports repr a backend half made
        if config is None:
            return f"SmsBackend(not configured, fail_silently={self.fail_silently!r})"
        core = config.settings
        return (f"SmsBackend(user_id={core.user_id!r}, login={core.login!r}, "
                f"endpoint={core.endpoint!r}, fail_silently={self.fail_silently!r})")

    # --- connection -------------------------------------------------------------------------

    @property
    def client(self) -> MobilgroupClient | None:
        """The open client, or None when the backend is not open."""
        return self._client

    def make_client(self) -> MobilgroupClient:
        """A new client for these settings (the caller closes it)."""
        try:
            return MobilgroupClient.from_settings(self.config.settings)
        except ConfigurationError as exc:
            raise MobilgroupImproperlyConfigured("MOBILGROUP", str(exc)) from None

    def open(self) -> bool:
        """Take the process's client for these settings; False when one is open already.

        The client (one keep-alive session) is shared by every backend with the same settings
        in this process (:func:`~mobilgroup_backends.client.shared_client`), so ``send_sms``
        without a connection reuses the connection of the message before. No network traffic
        happens here: the connection is made by the first request.
        """
        with self._lock:
            if self._client is not None:
                return False
            try:
                self._client = shared_client(self.config.settings)
            except ConfigurationError as exc:
                raise MobilgroupImproperlyConfigured("MOBILGROUP", str(exc)) from None
            return True

    def close(self) -> None:
        """Let go of the client. It stays open for the next message: it is the process's, and
        closed at exit."""
        with self._lock:
            self._client = None

    # --- sending ----------------------------------------------------------------------------

    def send_messages(self, messages: Sequence[Any] | Iterable[Any]) -> int:
        """Send each message as one gateway request (several when a long text is split).

        Returns how many messages the gateway accepted. Each message gets
        ``message.mobilgroup_status``. Without ``fail_silently`` the first gateway, network or
        validation error is raised after that message's status and ``post_send`` are set.
        """
        messages = list(messages or ())
        if not messages:
            return 0
        with self._lock:
            opened = self.open()
            try:
                client = self._client
                assert client is not None
                accepted = 0
                for message in messages:
                    accepted += self._send(client, message)
                return accepted
            finally:
                if opened:
                    self.close()

    def _begin(self, message: Any) -> MobilgroupStatus | None:
        """Give the message a fresh status and ask ``pre_send``; None if a receiver cancelled."""
        status = MobilgroupStatus()
        _attach(message, status)
        try:
            pre_send.send(sender=type(self), message=message, backend=self)
        except CancelSend:
            status.status = CANCELLED
            return None
        return status

    def _send(self, client: MobilgroupClient, message: Any) -> bool:
        previous = getattr(message, "mobilgroup_status", None)
        status = self._begin(message)
        if status is None:
            return False
        try:
            # The core applies every setting (region, sender, long messages...) once.
            outgoing = client.prepare(_recipients(message), _body(message),
                                      sender=self.sender_for(message))
        except ValidationError as exc:
            return self._failed(message, status, REJECTED, exc, ())
        outgoing, parts = _parts(outgoing, previous)
        status.part_results = parts
        status.outgoing = outgoing
        status.sender = outgoing.sender
        status.parts = len(parts)
        status.request_ids = [part.request_id for part in parts]
        status.request_id = parts[0].request_id
        sent: list[int] = []
        failure: MobilgroupError | None = None
        for part in parts:
            if part.accepted:
                continue  # accepted by an earlier send of this message: never again
            if failure is not None:
                part.status, part.error = PENDING, None
                continue
            try:
                [result] = client.send_prepared(_only(outgoing, part.request_id),
                                                resend=part.maybe_sent)
            except MobilgroupError as exc:
                failure = exc
                part.status = REJECTED if isinstance(exc, ValidationError) else FAILED
                part.error = exc
                continue
            part.status, part.error = QUEUED, None
            part.accepted_earlier = result.accepted_earlier
            sent.append(part.request_id)
        phones = outgoing.phones
        if failure is not None:
            accepted = any(part.accepted for part in parts)
            kind = REJECTED if isinstance(failure, ValidationError) and not accepted else FAILED
            if sent:
                self._track(outgoing, sent)
            return self._failed(message, status, kind, failure, phones)
        status.status = QUEUED
        status.recipients = {phone: MobilgroupRecipientStatus(status.request_id, QUEUED)
                             for phone in phones}
        status.tracked = self._track(outgoing, sent) if sent else (
            previous.tracked if isinstance(previous, MobilgroupStatus) else False)
        post_send.send(sender=type(self), message=message, status=status, backend=self)
        return True

    def _failed(self, message: Any, status: MobilgroupStatus, kind: str, exc: MobilgroupError,
                phones: Iterable[str]) -> bool:
        status.status = kind
        status.error = exc
        status.recipients = {phone: MobilgroupRecipientStatus(status.request_id, kind)
                             for phone in phones}
        if isinstance(exc, ValidationError):
            # Its fix in settings keys (MOBILGROUP['LONG_MESSAGES']), not the client's keywords.
            exc.args = (exc.describe("django"),)
        logger.warning("SMS not sent (%s): %s", kind, exc)
        post_send.send(sender=type(self), message=message, status=status, backend=self)
        if not self.fail_silently:
            raise exc
        return False

    def sender_for(self, message: Any) -> str | None:
        """The alias a message goes out with.

        The message's own originator (django-sms) or ``from_phone`` (django-sendsms) when the
        caller set one that is a valid alias; else the ``SENDER`` setting; else
        ``DEFAULT_FROM_SMS`` or ``SENDSMS_DEFAULT_FROM_PHONE`` when valid aliases; else none (the
        account's default alias). A phone number is not an alias, and is ignored.
        """
        defaults = _default_senders()
        explicit = getattr(message, "originator", None) or getattr(message, "from_phone", None)
        if explicit and explicit not in defaults[:2]:
            alias = valid_alias(explicit)
            if alias:
                return alias
            logger.warning("SMS originator %r is not a sender alias the gateway accepts "
                           "(latin letters, digits, space, hyphen, at most 9); ignored",
                           explicit)
        if self.config.settings.sender:
            return self.config.settings.sender
        return defaults[-1]

    def _track(self, outgoing: Outgoing, sent: list[int]) -> bool:
        """Record the parts of ``outgoing`` accepted now (``sent``: a run of consecutive parts)
        for delivery tracking."""
        if not self.config.track_delivery:
            return False
        from .tracking import record_sent

        first = outgoing.request_ids.index(sent[0]) + 1
        try:
            record_sent(_only(outgoing, *sent), parts=len(outgoing.parts), first_part=first)
        except Exception as exc:  # the SMS went out: a database failure must not resend it
            logger.error("SMS request(s) %s sent but not recorded for delivery tracking: %s",
                         ",".join(map(str, sent)), type(exc).__name__)
            return False
        return True


#: The settings that name a default originator, in the order they count.
_DEFAULT_SENDER_SETTINGS = ("DEFAULT_FROM_SMS", "SENDSMS_DEFAULT_FROM_PHONE")
_default_senders_cache: tuple[Any, Any, str | None] | None = None


def _default_senders() -> tuple[Any, Any, str | None]:
    """The two default-originator settings as they are, and the first of them that is a valid
    alias (or None). Read once: reading a setting a project does not define costs an exception
    inside Django's settings object on every message; ``override_settings`` tells us of a
    change (``setting_changed``)."""
    global _default_senders_cache
    found = _default_senders_cache
    if found is None:
        values = [getattr(django_settings, name, None) for name in _DEFAULT_SENDER_SETTINGS]
        alias = next((a for a in map(valid_alias, values) if a), None)
        found = _default_senders_cache = (values[0], values[1], alias)
    return found


@receiver(setting_changed)
def _forget_default_senders(*, setting: str, **kwargs: Any) -> None:
    global _default_senders_cache
    if setting in _DEFAULT_SENDER_SETTINGS:
        _default_senders_cache = None


def _attach(message: Any, status: MobilgroupStatus) -> None:
    message.mobilgroup_status = status


def _recipients(message: Any) -> list[str]:
    for name in ("recipients", "to"):
        value = getattr(message, name, None)
        if value:
            return [value] if isinstance(value, str) else list(value)
    return []


def _body(message: Any) -> str:
    body = getattr(message, "body", None)
    if body is None:
        body = getattr(message, "message", "")
    if isinstance(body, (bytes, bytearray, memoryview)):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                "body", f"<{len(body)} bytes>", f"not UTF-8 text (byte {exc.start})",
                "pass the text as str, or as UTF-8 bytes") from None
    if body is None:
        return ""
    return body if isinstance(body, str) else str(body)


def _parts(outgoing: Outgoing, previous: object) -> tuple[Outgoing, list[MobilgroupPart]]:
    """The message about to be sent and its parts. A message object sent before keeps its
    prepared message (its parts' ids) and what became of each part, when the core prepares it
    the same way again."""
    if isinstance(previous, MobilgroupStatus) and previous.outgoing is not None and \
            _content(previous.outgoing) == _content(outgoing):
        return previous.outgoing, previous.part_results
    return outgoing, [MobilgroupPart(index, part.text, part.request_id)
                      for index, part in enumerate(outgoing.parts)]


def _content(outgoing: Outgoing) -> dict[str, Any]:
    """A prepared message without its request ids: what the recipient would get."""
    return {**outgoing.to_dict(), "parts": [part.text for part in outgoing.parts]}


def _only(outgoing: Outgoing, *request_ids: int) -> Outgoing:
    """The prepared message reduced to the parts with these ids."""
    parts = outgoing.parts
    if len(parts) == 1 and request_ids == (parts[0].request_id,):
        return outgoing  # the common message of one part: no copy, no set
    keep = set(request_ids)
    if len(keep) == len(parts) and keep.issuperset(outgoing.request_ids):
        return outgoing  # all of it: no copy
    return outgoing.without(rid for rid in outgoing.request_ids if rid not in keep)


def _require_app() -> None:
    from django.apps import apps

    if not apps.is_installed("mobilgroup_backends.django"):
        raise MobilgroupImproperlyConfigured(
            "MOBILGROUP['TRACK_DELIVERY']",
            "delivery tracking stores its records in a model: add 'mobilgroup_backends.django' to "
            "INSTALLED_APPS and run migrate", check_id="mobilgroup.E008")
