"""Apprise plugin: ``mobilgroup://`` notifications sent as SMS through the Mobilgroup gateway.

::

    import apprise
    import mobilgroup_backends.apprise  # registers mobilgroup:// with Apprise

    alerts = apprise.Apprise()
    alerts.add("mobilgroup://LOGIN:PASSWORD@USER_ID/79031234567?sender=MyShop")
    alerts.notify(title="db-1", body="disk full")

Apprise 2.x registers a plugin only when told to, so importing this module registers
:class:`NotifyMobilgroup` with Apprise's ``NotificationManager`` (doing it again is harmless).
For the ``apprise`` command line see :mod:`mobilgroup_backends.apprise_plugin` and
``docs/apprise.md``.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Literal, NoReturn

from apprise.common import NotifyFormat, OverflowMode
from apprise.exception import AppriseImproperlyConfigured
from apprise.logger import logger as apprise_logger
from apprise.manager_plugins import NotificationManager
from apprise.plugins.base import NotifyBase
from apprise.url import PrivacyMode

from .client import MobilgroupClient, shared_client
from .config import (
    BY_NAME,
    DEFAULT_ENDPOINT,
    SCHEME,
    Option,
    Settings,
    django_setting,
    resolve_cached,
    split_url,
    url_text,
)
from .errors import (
    AuthenticationFailed,
    ClientBlocked,
    ConfigurationError,
    GatewayError,
    InsufficientFunds,
    InvalidClientId,
    InvalidRecipients,
    MessageTooLong,
    MobilgroupError,
    ProtocolError,
    TransportError,
    ValidationError,
    Verdict,
)
from .outgoing import Outgoing
from .protocol import (
    MAX_SENDER_LENGTH,
    MAX_TEXT_TRANSLIT,
    MAX_TEXT_UNICODE,
    MAX_VALID_HOURS,
    fit_text,
    mask_phone,
    normalize_phones,
)

__all__ = ["NotifyMobilgroup", "register"]



#: Retries of one exchange inside one send (same request id, so never sent twice): the option
#: table's default for Apprise, kept small because an alert that cannot get through should not
#: hold its caller for long.
DEFAULT_RETRIES: int = BY_NAME["retries"].default_for("apprise")
#: First backoff between those retries, in seconds (doubled each time, with jitter).
DEFAULT_BACKOFF: float = BY_NAME["backoff"].default_for("apprise")

#: The options of the package's option table this plugin takes from its URL.
_TABLE_ARGS_BY_OPTION = ("sender", "valid_hours", "transliterate", "endpoint", "timeout",
                         "retries", "backoff", "allow_insecure_http", "region", "long_messages",
                         "replace_unencodable", "deadline")


def _template_arg(option: Option) -> dict[str, Any]:
    """The option as Apprise describes a URL argument (``apprise --details``, URL builders)."""
    arg: dict[str, Any] = {"name": option.name.replace("_", " ").capitalize()}
    if option.kind == "alias":
        arg.update(type="string", regex=(rf"^[A-Za-z0-9 -]{{1,{MAX_SENDER_LENGTH}}}$", "i"))
    elif option.kind == "hours":
        arg.update(type="int", min=1, max=MAX_VALID_HOURS)
    elif option.kind == "bool":
        arg.update(type="bool", default=bool(option.default_for("apprise")))
    elif option.kind in ("int", "seconds", "seconds>0"):
        arg.update(type="int" if option.kind == "int" else "float",
                   min=option.low, max=option.high, default=option.default_for("apprise"))
        if option.kind == "seconds>0":
            del arg["default"]  # without it, Apprise's own socket timeouts apply
    else:
        arg.update(type="string", default=option.default_for("apprise"))
    return arg


_TABLE_ARGS = {BY_NAME[name].url or name: _template_arg(BY_NAME[name])
               for name in _TABLE_ARGS_BY_OPTION}

#: Apprise's overflow mode for each ``long_messages``: ``error`` hands the text over whole, for
#: the client to refuse it if it is too long.
_OVERFLOW = {"split": OverflowMode.SPLIT, "truncate": OverflowMode.TRUNCATE,
             "error": OverflowMode.UPSTREAM}

_PHONE_SEPARATORS = re.compile(r"[,;]")
_PHONE_JUNK = re.compile(r"[\s()\-.+]")

# What to do about each gateway refusal, for the warning.
_HINTS: dict[type[GatewayError], str] = {
    InvalidClientId: "check the USER_ID in the URL",
    AuthenticationFailed: "check LOGIN and PASSWORD in the URL (percent-encoded)",
    ClientBlocked: "the account is blocked; contact Mobilgroup",
    InsufficientFunds: "top up the account",
    InvalidRecipients: "check the phone numbers",
    MessageTooLong: "use overflow=split (the default) or overflow=truncate",
}


class NotifyMobilgroup(NotifyBase):  # type: ignore[misc]  # Apprise is Any to mypy, see pyproject
    """SMS through the Mobilgroup HTTP/XML gateway, on :class:`MobilgroupClient`.

    One client (one keep-alive session) per configuration per process, shared by every plugin
    instance with the same settings: a new ``Apprise()`` per notification reuses the connection.
    All phones go in one gateway request (one request id) up to ``default_batch_size`` phones per
    request. Each piece of a notification keeps its request id per batch for Apprise's ``retry``:
    a retry resends that id (``resend=True``), so the gateway sends it at most once.
    """

    service_name = "Mobilgroup SMS"
    service_url = "https://sms.mobilgroup.ru/"
    setup_url = "https://sms.mobilgroup.ru/"
    secure_protocol = SCHEME
    notify_url = DEFAULT_ENDPOINT

    # The gateway's limits: 140 characters as given (it transliterates), 64 with translit=no.
    body_maxlen = MAX_TEXT_TRANSLIT
    # SMS has no title: Apprise folds it into the body, above it.
    title_maxlen = 0
    # A long alert goes out as several SMS, in order, rather than being refused.
    overflow_mode = OverflowMode.SPLIT
    notify_format = NotifyFormat.TEXT
    # No pause between requests: Apprise's default (5.5 s) would add seconds to every split
    # alert, and any pause to every back-to-back alert. The gateway takes batches, and the client
    # already protects it with its own backoff between retries.
    request_rate_per_sec = 0.0
    # Phones per gateway request.
    default_batch_size = 100

    templates = ("{schema}://{user}:{password}@{user_id}/{targets}",)

    template_tokens: ClassVar[dict[str, dict[str, Any]]] = dict(
        NotifyBase.template_tokens,
        **{
            "user": {
                "name": "Login",
                "type": "string",
                "required": True,
            },
            "password": {
                "name": "Password",
                "type": "string",
                "private": True,
                "required": True,
            },
            "user_id": {
                "name": "Client ID",
                "type": "string",
                "required": True,
                "regex": (r"^[0-9]+$", "i"),
                "map_to": "host",
            },
            "target_phone": {
                "name": "Target Phone No",
                "type": "string",
                "prefix": "+",
                "regex": (r"^[0-9\s)(+-]+$", "i"),
                "map_to": "targets",
            },
            "targets": {
                "name": "Targets",
                "type": "list:string",
                "required": True,
            },
        },
    )

    template_args: ClassVar[dict[str, dict[str, Any]]] = dict(
        NotifyBase.template_args,
        **{
            "to": {
                "alias_of": "targets",
            },
            "from": {
                "alias_of": "sender",
            },
            **_TABLE_ARGS,
        },
    )

    def __init__(
        self,
        targets: str | Iterable[str] | None = None,
        sender: str | None = None,
        valid: int | str | None = None,
        translit: bool | str | None = None,
        endpoint: str | None = None,
        timeout: float | str | None = None,
        retries: int | str | None = None,
        backoff: float | str | None = None,
        allow_insecure_http: bool | str | None = None,
        region: str | None = None,
        long_messages: str | None = None,
        replace_unencodable: bool | str | None = None,
        deadline: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not self.user or not self.password:
            self._refuse("a login and a password are required: "
                         f"{SCHEME}://LOGIN:PASSWORD@USER_ID/PHONE (percent-encode '@' as %40)")
        # The Apprise URL is this adapter's own URL layer; Django's MOBILGROUP and the
        # environment fill in what it leaves out, as for every adapter.
        options = {"sender": sender, "valid": valid, "translit": translit, "endpoint": endpoint,
                   "timeout": timeout, "retries": retries, "backoff": backoff,
                   "allow_insecure_http": allow_insecure_http, "region": region,
                   "long_messages": long_messages, "replace_unencodable": replace_unencodable,
                   "deadline": deadline,
                   "user_id": str(self.host or ""), "login": self.user,
                   "password": self.password}
        try:
            self.resolved = resolve_cached("apprise", url=options, setting=django_setting(),
                                           defaults={"timeout": self._apprise_timeout()})
        except ConfigurationError as exc:  # its text never carries the password
            self._refuse(str(exc))
        self.settings: Settings = self.resolved.settings
        self.timeout: float | None = (self.settings.timeout if self.resolved.given("timeout")
                                      else None)
        if not self.settings.transliterate:
            self.body_maxlen = MAX_TEXT_UNICODE
        if "overflow" not in kwargs:
            # Apprise fits the text before the plugin sees it: the setting every adapter
            # shares decides how, unless Apprise's own overflow= says otherwise.
            self.overflow_mode = _OVERFLOW[self.settings.long_messages]
        if not self.verify_certificate:
            # Every request carries the password: a certificate is always checked. A private CA
            # is trusted through REQUESTS_CA_BUNDLE instead.
            self.logger.warning(
                "Mobilgroup ignores verify=no: the gateway's certificate is always checked, "
                "because every request carries the password. To trust a private CA, set "
                "REQUESTS_CA_BUNDLE to its PEM file.")

        self.targets: list[str] = []
        dropped: list[str] = []
        for phone in _split_phones(targets):
            try:
                number = normalize_phones([phone], region=self.settings.region)[0]
            except ValidationError:
                dropped.append(phone)
                continue
            if number not in self.targets:
                self.targets.append(number)
        if dropped:
            self.logger.warning(
                "Dropped invalid Mobilgroup phone number(s): %s (neither international nor a "
                "national number of %s; give the country code, e.g. +79031234567).",
                ", ".join(repr(p) for p in dropped), self.settings.region)
        if not self.targets:
            self._refuse("no valid phone number to send to: "
                         f"{SCHEME}://LOGIN:PASSWORD@USER_ID/79031234567")


    # --- configuration helpers --------------------------------------------------------------

    def _refuse(self, problem: str) -> NoReturn:
        message = f"Mobilgroup configuration error: {problem}"
        self.logger.warning(message)
        raise AppriseImproperlyConfigured(message)

    def _apprise_timeout(self) -> float:
        """Without ``timeout=``, Apprise's own socket timeouts (``cto``, ``rto``) apply."""
        return float(max(self.socket_connect_timeout, self.socket_read_timeout))

    @property
    def sender(self) -> str | None:
        return self.settings.sender

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    @property
    def transliterate(self) -> bool:
        return self.settings.transliterate

    @property
    def valid_hours(self) -> int | None:
        return self.settings.valid_hours

    @property
    def client(self) -> MobilgroupClient:
        """The process's client for these settings (see :func:`~mobilgroup_backends.client.
        shared_client`): made on first use, then shared with every plugin configured alike."""
        return shared_client(self.settings)

    # --- sending ----------------------------------------------------------------------------

    def send(self, body: str, title: str = "", notify_type: Any = None,
             **kwargs: Any) -> bool:
        """Send one SMS (one piece of a split alert) to every target; False on any failure."""
        text = _tidy(body if not title else f"{title}\n{body}")
        if not text:
            self.logger.warning("Mobilgroup SMS not sent: the message is empty.")
            return False
        try:
            client = self.client
        except MobilgroupError as exc:
            self.logger.warning("Mobilgroup SMS not sent: %s", exc)
            return False

        has_error = False
        for batch in self._batches():
            if self.is_delivered(batch):
                continue  # an Apprise retry: this batch already has this piece
            who = _describe_phones(batch)
            # An Apprise retry of this notification resends the piece exactly as it was
            # prepared, under its id, with resend=True (the client takes the gateway's "already
            # sent" as accepted); one refused for good is not tried again.
            remembered = self.recall(batch)
            if isinstance(remembered, MobilgroupError):
                self.logger.warning("Mobilgroup SMS to %s not retried: %s", who,
                                    _explain(remembered))
                has_error = True
                continue
            resend = isinstance(remembered, Outgoing)
            outgoing: Outgoing | None = remembered if resend else None
            try:
                if outgoing is None:
                    # Apprise has fitted the text already (overflow=, from long_messages); one
                    # it handed over whole (overflow=upstream) and too long is refused.
                    outgoing = client.prepare(batch, text, long_messages="error")
                self.throttle()
                [result] = client.send_prepared(outgoing, resend=resend)
            except MobilgroupError as exc:
                # What to do next is the error's verdict (the client judged all its attempts).
                self.remember(batch, outgoing if exc.verdict.try_again else exc)
                self.logger.warning("Failed to send Mobilgroup SMS to %s: %s", who, _explain(exc))
                has_error = True
                continue
            self.logger.info("Sent Mobilgroup SMS to %s (request id %s%s).", who,
                             result.request_id,
                             ", accepted earlier" if result.accepted_earlier else "")
            self.mark_delivered(batch)
        return not has_error

    def _apply_overflow(self, body: str | None, title: str | None = None, overflow: Any = None,
                        *args: Any, **kwargs: Any) -> list[dict[str, str]]:
        """Fit the alert into SMS the way a phone reads them.

        Apprise's own splitter breaks first at line ends, so a folded title would cost an SMS
        of its own; here the title and body are folded first and then cut on white space
        (``protocol.fit_text``), and truncation ends in an ellipsis.
        """
        mode = self.overflow_mode if overflow is None else overflow
        try:
            mode = OverflowMode(mode)
        except ValueError:
            return list(super()._apply_overflow(body, title, overflow, *args, **kwargs))
        if mode == OverflowMode.UPSTREAM:
            return list(super()._apply_overflow(body, title, overflow, *args, **kwargs))
        pieces = super()._apply_overflow(body, title, OverflowMode.UPSTREAM, *args, **kwargs)
        fitted: list[dict[str, str]] = []
        how: Literal["split", "truncate"] = "split" if mode == OverflowMode.SPLIT else "truncate"
        for piece in pieces:
            text = _tidy(piece.get("body") or "")
            if piece.get("title"):
                text = _tidy(f"{piece['title']}\n{text}")
            if not text:
                fitted.append({"body": "", "title": ""})
                continue
            fitted.extend({"body": part, "title": ""}
                          for part in fit_text(text, int(self.body_maxlen), how))
        return fitted

    def _batches(self) -> Iterator[tuple[str, ...]]:
        size = max(1, int(self.default_batch_size))
        for start in range(0, len(self.targets), size):
            yield tuple(self.targets[start:start + size])

    def __len__(self) -> int:
        """Gateway requests per message piece: one per batch of phones."""
        return max(1, math.ceil(len(self.targets) / max(1, int(self.default_batch_size))))

    # --- URLs -------------------------------------------------------------------------------

    @property
    def url_identifier(self) -> tuple[str, ...]:
        """The account (and the gateway it lives on), never the targets."""
        return (self.secure_protocol, self.settings.user_id, self.settings.login,
                self.settings.endpoint)

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """The URL of this plugin; it configures every other adapter too (``MOBILGROUP_URL``).

        An option is printed when it was given, or when this plugin's value differs from what
        its absence means elsewhere (Apprise's shorter retries and socket timeouts), so that the
        URL gives every adapter the same settings.
        """
        params: dict[str, str] = {}
        for name in _TABLE_ARGS_BY_OPTION:
            value = getattr(self.settings, name)
            if self.resolved.given(name) or value != BY_NAME[name].default:
                params[BY_NAME[name].url or name] = url_text(value)
        params.update(self.url_parameters(privacy=privacy, *args, **kwargs))  # noqa: B026
        return "{schema}://{user}:{password}@{user_id}/{targets}?{params}".format(
            schema=self.secure_protocol,
            user=self.quote(self.user, safe=""),
            password=self.pprint(self.password, privacy, mode=PrivacyMode.Secret, safe=""),
            user_id=self.settings.user_id,
            targets="/".join(self.quote(t, safe="") for t in self.targets),
            params=self.urlencode(params),
        )

    @staticmethod
    def parse_url(url: str) -> dict[str, Any] | None:
        """The keyword arguments that rebuild a plugin from its URL, by the package's one URL
        grammar (Apprise's convention kept: an unknown option is named and ignored)."""
        try:
            split = split_url(url, keep_unknown=True)
        except ConfigurationError as exc:  # its text never carries the login or password
            apprise_logger.warning("Mobilgroup configuration error: %s", exc)
            return None
        results: dict[str, Any] | None = NotifyBase.parse_url(url, verify_host=False)
        if not results:
            return results
        values = split.values
        results["user"], results["password"] = values["login"], values["password"]
        results["host"] = values["user_id"]
        results["targets"] = list(values.get("phones", ()))
        for name in _TABLE_ARGS_BY_OPTION:
            if name in values:
                results[BY_NAME[name].url or name] = values[name]
        if split.unknown:
            # Names only: a misspelt option's value might be a secret.
            apprise_logger.warning(
                "Ignoring unknown Mobilgroup URL option(s): %s (known: %s).",
                ", ".join(sorted(split.unknown)),
                ", ".join(sorted(set(NotifyMobilgroup.template_args))))
        return results


# --- helpers ------------------------------------------------------------------------------------


def _split_phones(targets: str | Iterable[str] | None) -> Iterator[str]:
    """Phones as people write them: separated by commas, semicolons, or white space when that
    leaves whole numbers (``+7 903 123-45-67`` stays one phone)."""
    if targets is None:
        return
    items: Iterable[Any] = [targets] if isinstance(targets, str) else targets
    for item in items:
        for piece in _PHONE_SEPARATORS.split(str(item)):
            piece = piece.strip()
            if not piece:
                continue
            digits = _PHONE_JUNK.sub("", piece)
            words = piece.split()
            if len(words) > 1 and not (digits.isdigit() and len(digits) <= 15):
                yield from words  # "79031234567 79037654321": two phones
            else:
                yield piece


def _tidy(text: str) -> str:
    """Apprise's line ends (``\\r\\n``) as one character each: every character costs on an SMS."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _describe_phones(phones: tuple[str, ...]) -> str:
    shown = ", ".join(mask_phone(p) for p in phones[:3])
    more = f" and {len(phones) - 3} more" if len(phones) > 3 else ""
    return f"{len(phones)} phone(s) ({shown}{more})"


def _explain(exc: MobilgroupError) -> str:
    """One line that says what happened and what to do, by the error's verdict; never the
    password (no core error text carries it)."""
    text = _what_happened(exc)
    if exc.verdict is Verdict.UNKNOWN:
        text += (f" It may have been sent (request id {exc.request_id}): a retry (retry= in the "
                 f"URL) resends that id, and the gateway never sends it twice.")
    elif exc.verdict is Verdict.RETRY:
        text += " Nothing was sent; a retry (retry= in the URL) tries again."
    else:
        text += " Not retried: another try would meet the same refusal."
    return text


def _what_happened(exc: MobilgroupError) -> str:
    if isinstance(exc, GatewayError):
        text = f"the gateway refused it with error {exc.code}: {exc.meaning}"
        if exc.request_id is not None:
            text += f" (request id {exc.request_id})"
        hint = next((h for cls, h in _HINTS.items() if isinstance(exc, cls)), "")
        return f"{text}; {hint}." if hint else f"{text}."
    if isinstance(exc, TransportError):
        if exc.timed_out:
            return f"timeout: {exc}."
        if exc.status_code is not None:
            return f"HTTP error: {exc}."
        return f"network error: {exc}."
    if isinstance(exc, ProtocolError):
        return f"the gateway's answer was not understood (protocol error): {exc}."
    if isinstance(exc, ValidationError) and exc.field == "text":
        return (f"refused before sending: {exc}. The gateway would refuse it with error "
                f"{MessageTooLong.code} ({MessageTooLong.meaning}); use overflow=split (the "
                f"default) or overflow=truncate.")
    return f"refused before sending: {exc}."


# --- registration -------------------------------------------------------------------------------

_register_lock = threading.Lock()


def register() -> bool:
    """Make ``mobilgroup://`` URLs known to Apprise. Returns True when it registered now.

    Done on import of this module; calling it again (or importing twice) changes nothing. A
    ``mobilgroup://`` plugin from elsewhere is left in place, with a warning.
    """
    manager = NotificationManager()
    with _register_lock:
        if SCHEME in manager:
            current = manager[SCHEME]
            if current is NotifyMobilgroup:
                return False
            if getattr(current, "__module__", None) != __name__:
                apprise_logger.warning(
                    "%s:// is already handled by %s.%s; mobilgroup-backends left it in place.",
                    SCHEME, getattr(current, "__module__", "?"), getattr(current, "__name__", "?"))
                return False
            # This module was reloaded: the new class replaces the old one.
            return bool(manager.add(NotifyMobilgroup, schemas={SCHEME}, force=True))
        return bool(manager.add(NotifyMobilgroup, schemas={SCHEME}))


register()
