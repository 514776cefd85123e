"""The gateway's wire format, and nothing else: no sockets, no requests, no settings.

Builds request documents as windows-1251 bytes, parses response bytes into typed results, and
checks input locally so that a mistake is refused before it costs a request (or money). Every
check raises :class:`~mobilgroup_backends.errors.ValidationError` naming the field, the value and
the fix.

Requests are built as text rather than through ElementTree: the documents are flat and tiny, and
string building is several times faster while escaping exactly the same characters.

Answers are untrusted. Anything that could carry a DTD (and so entities, external references or
an entity bomb) is parsed by defusedxml with DTDs forbidden. An ordinary answer, in an
ASCII-compatible encoding and without a single ``<!``, provably has no DTD, so it goes to the C
ElementTree parser directly: that keeps parsing within a small factor of bare ElementTree
instead of paying for defusedxml's pure-Python parser on every call.
"""

from __future__ import annotations

import codecs
import enum
import functools
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, NamedTuple
from xml.etree.ElementTree import Element, ParseError, XMLParser
from xml.etree.ElementTree import fromstring as _fast_fromstring

from .errors import ProtocolError, ValidationError, error_for_code

__all__ = [
    "DEFAULT_REGION",
    "DEFAULT_VALID_HOURS",
    "ENCODING",
    "GATEWAY_TIMEZONE",
    "MAX_REQUEST_ID",
    "MAX_SENDER_LENGTH",
    "MAX_TEXT_TRANSLIT",
    "MAX_TEXT_UNICODE",
    "MAX_VALID_HOURS",
    "BalanceResponse",
    "Credentials",
    "DeliveryStatus",
    "MailingStatus",
    "Message",
    "RecipientStatus",
    "RequestDocument",
    "SendResponse",
    "StatusReport",
    "build_balance",
    "build_send",
    "build_status",
    "check_credentials",
    "check_message",
    "check_region",
    "check_request_id",
    "check_schedule",
    "check_sender",
    "check_text",
    "check_valid_hours",
    "fit_text",
    "mask_phone",
    "message_parts",
    "new_request_id",
    "normalize_phones",
    "parse_balance",
    "parse_send",
    "parse_status",
    "repair_end_tags",
    "report_due",
    "schedule_time",
    "text_limit",
]

ENCODING = "windows-1251"
# Looked up once, here, at import: the first lookup imports the codec's module, and a process
# forked while another thread is halfway through that import finds the module broken and the
# name cached as unknown for good (a forked child's alert then fails with LookupError).
codecs.lookup(ENCODING)
PROLOG = '<?xml version="1.0" encoding="windows-1251"?>\n'

#: Characters per message with transliteration (``rus_sms=0``) and without (``rus_sms=1``).
MAX_TEXT_TRANSLIT = 140
MAX_TEXT_UNICODE = 64
MAX_SENDER_LENGTH = 9
MAX_VALID_HOURS = 48
#: The lifetime the gateway gives a message sent without ``valid``, in hours.
DEFAULT_VALID_HOURS = 1
#: Ids are "digits" in the gateway's words; 18 digits fit a signed 64-bit integer everywhere.
MAX_REQUEST_ID = 10**18 - 1
#: The gateway reads ``schedule`` as its local time: Moscow, UTC+3 all year since 2014. An aware
#: datetime is converted to it; a naive one is taken to be in it already.
GATEWAY_TIMEZONE = timezone(timedelta(hours=3), "MSK")
SCHEDULE_FORMAT = "%Y-%m-%d %H:%M"


# --- statuses -------------------------------------------------------------------------------


class _KeepsUnknown(enum.IntEnum):
    """An IntEnum that turns an undocumented code into a pseudo-member instead of failing.

    The gateway's own example answers with mailing status 0, which its documentation never lists:
    a new code must reach the caller as data, not as an exception.
    """

    @classmethod
    def _missing_(cls, value: object) -> _KeepsUnknown | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return member

    @property
    def is_known(self) -> bool:
        return self._name_ in type(self).__members__


class MailingStatus(_KeepsUnknown):
    """Status of a whole mailing (``<status>`` of ``command=status``)."""

    STARTED = 2
    FINISHED = 4


class DeliveryStatus(_KeepsUnknown):
    """Status of one recipient (``<dest><status>`` of an extended status report)."""

    QUEUED = 0
    DELIVERED = 1
    UNDELIVERED = 2
    SENT = 8
    ERROR = 16

    @property
    def is_final(self) -> bool:
        """True when this recipient's status will not change any more."""
        return self in (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.ERROR)


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """The account fields every request carries. The password never shows in ``repr``."""

    user_id: str
    login: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(user_id={self.user_id!r}, login={self.login!r}, password='***')"


@dataclass(frozen=True)
class SendResponse:
    request_id: int | None


@dataclass(frozen=True)
class BalanceResponse:
    balance: Decimal


class RecipientStatus(NamedTuple):
    """One recipient of a mailing: its phone, when its status last changed, and the status.

    ``time`` is an aware datetime in the gateway's time zone (``GATEWAY_TIMEZONE``, Moscow), as
    the gateway reports it; ``astimezone()`` gives it in any other.

    A named tuple rather than a dataclass: reports can list thousands of recipients, and this is
    the one object made per recipient.
    """

    phone: str
    status: DeliveryStatus
    time: datetime | None

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every command prints: the status by name, and its code."""
        return {"phone": self.phone, "status": self.status.name.lower(),
                "status_code": int(self.status), "final": self.is_final,
                "time": self.time.strftime(SCHEDULE_FORMAT) if self.time else None}


@dataclass(frozen=True)
class StatusReport:
    """Answer to ``command=status``: the mailing's status and, if extended, each recipient's."""

    request_id: int
    status: MailingStatus
    recipients: tuple[RecipientStatus, ...] = ()

    @property
    def is_complete(self) -> bool:
        """True when every recipient has a final status (nothing left to wait for)."""
        return bool(self.recipients) and all(r.is_final for r in self.recipients)

    def by_phone(self) -> dict[str, RecipientStatus]:
        return {r.phone: r for r in self.recipients}

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every command prints (``mobilgroup`` and ``manage.py mobilgroup``)."""
        return {"request_id": self.request_id, "status": self.status.name.lower(),
                "status_code": int(self.status), "complete": self.is_complete,
                "recipients": [r.to_dict() for r in self.recipients]}


# --- local checks ---------------------------------------------------------------------------

_PHONE_JUNK = re.compile(r"[\s()\-.]")
_PHONE_SPLIT = re.compile(r"[,;]")
_SENDER = re.compile(rf"[A-Za-z0-9 \-]{{1,{MAX_SENDER_LENGTH}}}")
_SCHEDULE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")
# XML 1.0 cannot carry these at all, escaped or not.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def mask_phone(phone: str) -> str:
    """A phone fit for logs: country and operator prefix plus the last two digits."""
    if len(phone) <= 6:
        return "*" * len(phone)
    return phone[:4] + "*" * (len(phone) - 6) + phone[-2:]


#: The country whose national numbers (``8 903 ...``, ``903 ...``) are understood by default.
DEFAULT_REGION = "RU"


def check_region(region: object) -> str:
    """A region code phonenumbers knows (``RU``, ``KZ``...), upper-cased."""
    import phonenumbers

    code = region.strip().upper() if isinstance(region, str) else ""
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError("region", region, "not a country code the phone rules know",
                              "give a two-letter country code, e.g. RU or KZ")
    return code


def normalize_phones(phones: str | Iterable[Any], *, region: str = DEFAULT_REGION) -> tuple[str, ...]:
    """Recipients as the gateway wants them: international digits, no ``+``, no duplicates.

    Accepts one string (several may be separated by commas or semicolons), an iterable, and
    ``phonenumbers.PhoneNumber`` objects, written the way people write numbers. The rule, by the
    phonenumbers library (Google's libphonenumber metadata):

    - a number that is a valid international number is sent as it is (``+`` optional):
      ``+7 (903) 958-74-54``, ``380501234567``;
    - else, one that is a valid national number of ``region`` is converted: with ``RU``,
      ``8 (903) 958-74-54`` and ``9039587454`` go out as ``79039587454``;
    - else, one written with ``+`` (or ``00``) whose length fits its country code is sent as
      written: the way to reach a range newer than the library's metadata;
    - anything else is refused, naming the number and the region.

    Order is kept; repeats are dropped so that nobody is charged for, or woken by, the same
    alert twice.
    """
    if isinstance(phones, str):
        items: list[Any] = list(_PHONE_SPLIT.split(phones))
    elif isinstance(phones, Iterable) and not isinstance(phones, (bytes, bytearray, Mapping)):
        items = list(phones)
    else:
        raise ValidationError(
            "phones", phones, "not a phone number or a list of them",
            "pass a string ('+7 903 123-45-67', several separated by commas) or a list of strings")
    result: dict[str, None] = {}
    for raw in items:
        if isinstance(raw, str):
            if not raw.strip() and isinstance(phones, str):
                continue  # "a,b," or "a, ,b": separators, not a phone
            result.setdefault(_normalize_phone(raw, region), None)
        elif type(raw).__name__ == "PhoneNumber" and hasattr(raw, "national_number"):
            result.setdefault(_from_phone_number(raw), None)
        else:
            raise ValidationError(
                "phones", raw, "each phone must be a string or a phonenumbers.PhoneNumber",
                "pass phone numbers as strings, e.g. '79031234567'")
    if not result:
        raise ValidationError("phones", phones, "no recipient given",
                              "give at least one phone number")
    return tuple(result)


def _from_phone_number(number: Any) -> str:
    import phonenumbers

    if not phonenumbers.is_possible_number(number):
        raise ValidationError("phones", phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.E164), "not a possible phone number",
            "check the number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


@functools.lru_cache(maxsize=4096)
def _normalize_phone(raw: str, region: str) -> str:
    """One phone, by the rule of :func:`normalize_phones` (cached: the library is slow)."""
    import phonenumbers

    text = _PHONE_JUNK.sub("", raw)
    explicit = text.startswith(("+", "00"))
    digits = text[1:] if text.startswith("+") else text[2:] if text.startswith("00") else text
    if digits.isascii() and digits.isdigit() and len(digits) <= 17:
        try:
            number = phonenumbers.parse("+" + digits)
        except phonenumbers.NumberParseException:
            number = None
        if number is not None and phonenumbers.is_valid_number(number):
            return digits
        if not explicit:
            try:
                national = phonenumbers.parse(digits, region)
            except phonenumbers.NumberParseException:
                national = None
            if national is not None and phonenumbers.is_valid_number(national):
                return phonenumbers.format_number(
                    national, phonenumbers.PhoneNumberFormat.E164)[1:]
        elif number is not None and phonenumbers.is_possible_number(number):
            return digits
    raise ValidationError(
        "phones", raw, f"not a phone number: neither international nor a national number of "
        f"{region}",
        "give the number with its country code, e.g. '+7 903 123-45-67' (a number of a range "
        "newer than the phone rules know: with '+' and the country code)")


def check_sender(sender: str | None) -> str | None:
    """The sender alias, or None for the account's default alias."""
    if sender is None or sender == "":
        return None
    if not isinstance(sender, str) or not _SENDER.fullmatch(sender):
        raise ValidationError(
            "sender", sender,
            f"the gateway accepts only latin letters, digits, space and hyphen, "
            f"at most {MAX_SENDER_LENGTH} characters",
            "use an alias registered for your account, e.g. 'MyShop', or leave it unset")
    return sender


def text_limit(transliterate: bool) -> int:
    return MAX_TEXT_TRANSLIT if transliterate else MAX_TEXT_UNICODE


# How to ask for '?' instead of an unencodable character, and for a long text to be split, in
# the words of each place an error is shown (see errors.ValidationError.hint_for).
_REPLACE_HINTS = {"python": "remove it, or pass replace_unencodable=True to send it as '?'",
                  "cli": "remove it, or add --replace-unencodable to send it as '?'",
                  "django": "remove it, or set MOBILGROUP['REPLACE_UNENCODABLE'] = True to send "
                            "it as '?'"}
_SPLIT_HINTS = {"python": "shorten it, or cut it into parts with fit_text()",
                "cli": "shorten it, or add --split or --truncate",
                "django": "shorten it, or set MOBILGROUP['LONG_MESSAGES'] = 'split'"}


def check_text(text: str, *, transliterate: bool = True, replace: bool = False) -> str:
    """The message text, checked for length and for what windows-1251 can carry.

    Length counts characters as given (before the gateway transliterates). With ``replace`` a
    character windows-1251 cannot carry becomes ``?`` instead of an error; alert paths use that
    so an emoji never costs an alert.
    """
    if not isinstance(text, str):
        raise ValidationError("text", text, "the message text must be a string",
                              "pass the text as str")
    if not text.strip():
        raise ValidationError("text", text, "the message is empty", "give a non-empty text")
    if replace:
        text = _XML_ILLEGAL.sub("?", text).encode(ENCODING, "replace").decode(ENCODING)
    else:
        bad = _XML_ILLEGAL.search(text)
        if bad:
            raise ValidationError(
                "text", _preview(text),
                f"control character {bad.group()!r} at position {bad.start()} cannot be sent",
                _REPLACE_HINTS["python"], hints=_REPLACE_HINTS)
        try:
            text.encode(ENCODING)
        except UnicodeEncodeError as exc:
            char = text[exc.start]
            raise ValidationError(
                "text", _preview(text),
                f"character {char!r} (U+{ord(char):04X}) at position {exc.start} "
                f"cannot be encoded in windows-1251",
                _REPLACE_HINTS["python"], hints=_REPLACE_HINTS) from None
    limit = text_limit(transliterate)
    if len(text) > limit:
        mode = "with" if transliterate else "without"
        raise ValidationError(
            "text", _preview(text),
            f"{len(text)} characters, the gateway allows {limit} {mode} transliteration",
            _SPLIT_HINTS["python"], hints=_SPLIT_HINTS)
    return text


def _preview(text: str, size: int = 40) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def check_schedule(schedule: datetime | str | None) -> str | None:
    """``schedule`` as the gateway's ``yyyy-MM-dd HH:mm`` in its local time (see GATEWAY_TIMEZONE)."""
    if schedule is None:
        return None
    if isinstance(schedule, datetime):
        if schedule.tzinfo is not None and schedule.utcoffset() is not None:
            try:
                schedule = schedule.astimezone(GATEWAY_TIMEZONE)
            except OverflowError:  # year 9999 plus three hours
                raise ValidationError(
                    "schedule", schedule.isoformat(), "out of the range of dates",
                    "give a date and time before the year 9999") from None
        return schedule.strftime(SCHEDULE_FORMAT)
    if isinstance(schedule, str) and _SCHEDULE.fullmatch(schedule.strip()):
        try:
            datetime.strptime(schedule.strip(), SCHEDULE_FORMAT)
        except ValueError:
            pass
        else:
            return schedule.strip()
    raise ValidationError(
        "schedule", schedule, "not a date and time the gateway understands",
        "pass a datetime, or a string 'YYYY-MM-DD HH:MM' (24-hour clock, Moscow time)",
        hints={"cli": "give --schedule 'YYYY-MM-DD HH:MM' (24-hour clock, Moscow time)"})


def check_valid_hours(valid_hours: int | None) -> int | None:
    """The message lifetime in whole hours, 1 to 48, or None for the gateway's default (1)."""
    if valid_hours is None:
        return None
    if isinstance(valid_hours, str) and valid_hours.strip().isascii() \
            and valid_hours.strip().isdigit():
        valid_hours = int(valid_hours)
    if not isinstance(valid_hours, int) or isinstance(valid_hours, bool):
        raise ValidationError(
            "valid_hours", valid_hours, "the lifetime must be a whole number of hours",
            f"give a whole number from 1 to {MAX_VALID_HOURS}")
    if not 1 <= valid_hours <= MAX_VALID_HOURS:
        raise ValidationError(
            "valid_hours", valid_hours, f"out of range: the gateway keeps a message 1 to "
            f"{MAX_VALID_HOURS} hours", f"give a number from 1 to {MAX_VALID_HOURS}")
    return valid_hours


def check_request_id(request_id: int | str, *, new: bool = True) -> int:
    """A request id: a positive number of at most 18 digits (ASCII digits only).

    ``new`` says the id is for a new request (a send), where leaving it out is the fix; else it
    names a request sent before (a status query).
    """
    value: int | None = None
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        value = request_id
    elif (isinstance(request_id, str) and request_id.isascii() and request_id.isdigit()
          and len(request_id) <= 40):  # int() of thousands of digits is refused by Python
        value = int(request_id)
    if value is None or not 0 < value <= MAX_REQUEST_ID:
        shown: object = request_id
        if isinstance(request_id, str) and len(request_id) > 40:
            shown = _preview(request_id)
        elif isinstance(request_id, int) and request_id.bit_length() > 200:
            # repr() of a number of thousands of digits raises: describe it instead.
            shown = f"<a number of about {int(request_id.bit_length() * 0.30103) + 1} digits>"
        problem = "the gateway takes a positive number of at most 18 digits"
        if not new:
            raise ValidationError("request_id", shown, problem,
                                  "give the request id the send was accepted with")
        raise ValidationError(
            "request_id", shown, problem,
            "leave it unset to have one generated, or pass e.g. your database row id",
            hints={"cli": "leave --id out to have one generated"})
    return value


_LOGIN_ILLEGAL = re.compile(r"[\x00-\x1f\x7f]")


def check_credentials(user_id: object, login: object, password: object) -> None:
    """The account fields: strings (the id digits), without characters the wire cannot carry.

    A login holds no control character at all; a password may hold tab, LF and CR (sent as
    ``&#13;`` so that it arrives as CR), but none of the control characters XML 1.0 cannot carry.
    The password is never shown, only where in it the problem is.
    """
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) \
            or not str(user_id).isascii() or not str(user_id).isdigit():
        raise ValidationError("user_id", user_id if isinstance(user_id, (str, int)) else
                              type(user_id).__name__, "the client ID must be digits",
                              "copy the numeric client ID from your Mobilgroup account")
    if not isinstance(login, str):
        raise ValidationError("login", type(login).__name__, "the login must be a string",
                              "give the account login as text, e.g. login='shop'")
    bad = _LOGIN_ILLEGAL.search(login)
    if bad:
        raise ValidationError("login", _preview(login.encode("unicode_escape").decode("ascii")),
                              f"control character {bad.group()!r} at position {bad.start()}",
                              "copy the login again, without line breaks or tabs")
    if not isinstance(password, str):
        raise ValidationError("password", "***", f"the password must be a string, not "
                              f"{type(password).__name__}",
                              "give the password as text (quote it in settings files, so "
                              "that digits are read as text)")
    bad = _XML_ILLEGAL.search(password)
    if bad:
        raise ValidationError("password", "***", f"control character {bad.group()!r} at "
                              f"position {bad.start()} cannot be sent",
                              "copy the password again; the gateway cannot receive that character")


class Message(NamedTuple):
    """A send's arguments after every local check: what goes into the request, or a queue."""

    phones: tuple[str, ...]
    text: str
    sender: str | None = None
    transliterate: bool = True
    schedule: str | None = None
    valid_hours: int | None = None

    def send_options(self) -> dict[str, Any]:
        """The options besides phones and text as ``send()`` keywords in plain JSON values,
        the unset ones left out: what a task queue stores with the message."""
        options: dict[str, Any] = {"sender": self.sender, "schedule": self.schedule,
                                   "valid_hours": self.valid_hours}
        if not self.transliterate:
            options["transliterate"] = False
        return {name: value for name, value in options.items() if value is not None}


def check_message(
    phones: str | Iterable[str],
    text: str,
    *,
    sender: str | None = None,
    transliterate: bool = True,
    schedule: datetime | str | None = None,
    valid_hours: int | None = None,
    replace_unencodable: bool = False,
    region: str = DEFAULT_REGION,
) -> Message:
    """Every argument of a send checked, before it can cost a request: ``MobilgroupClient.send``
    calls this, and so does anything that queues a message to send later, so that bad input is
    refused in the caller rather than when a worker gets to it. ``region`` decides how national
    numbers (``8 903 ...``) are read; the result holds international ones."""
    return Message(
        normalize_phones(phones, region=region),
        check_text(text, transliterate=transliterate, replace=replace_unencodable),
        check_sender(sender), bool(transliterate), check_schedule(schedule),
        check_valid_hours(valid_hours))


def new_request_id() -> int:
    """A fresh request id: 18 random digits.

    About 59.6 bits from the operating system's random source: unique across threads, processes
    and restarts without coordination (a collision among a billion ids has odds below 1 in 10^6),
    fork-safe, and the same width every time, which keeps logs aligned.
    """
    return 10**17 + secrets.randbelow(9 * 10**17)


def fit_text(text: str, limit: int, mode: Literal["split", "truncate"] = "split", *,
             max_parts: int | None = None) -> list[str]:
    """Fit a long text into messages of at most ``limit`` characters.

    ``split`` cuts on white space where it can (a word longer than a whole message is cut hard),
    into at most ``max_parts`` messages (None: as many as it takes), the last ending in an
    ellipsis when the text goes on; ``truncate`` keeps one message ending in an ellipsis (the
    one-part case). A text that fits is returned as is.
    """
    if limit < 2:
        raise ValidationError("limit", limit, "too small to fit any text", "use at least 2")
    if mode not in ("split", "truncate"):
        raise ValidationError("mode", mode, "unknown mode", "use 'split' or 'truncate'")
    if max_parts is not None and max_parts < 1:
        raise ValidationError("max_parts", max_parts, "no room for any part",
                              "give at least 1, or None for as many parts as it takes")
    rest = text.strip()
    if len(rest) <= limit:
        return [rest]
    if mode == "truncate":
        max_parts = 1
    parts: list[str] = []
    while len(rest) > limit:
        if max_parts is not None and len(parts) == max_parts - 1:
            parts.append(rest[: limit - 1].rstrip() + "…")
            return parts
        cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def message_parts(text: str, *, transliterate: bool = True,
                  long_messages: Literal["error", "split", "truncate"] = "error",
                  max_parts: int | None = None) -> list[str]:
    """The texts a message goes out as: itself, or with ``split``/``truncate`` the pieces that
    fit the limit (:func:`fit_text`; ``split`` in at most ``max_parts`` of them). With ``error``
    a long text is left whole, for :func:`check_text` to refuse."""
    limit = text_limit(transliterate)
    if long_messages == "error" or len(text) <= limit:
        return [text]
    return fit_text(text, limit, long_messages, max_parts=max_parts)


def schedule_time(schedule: str) -> datetime:
    """A ``schedule`` as the gateway takes it (:func:`check_schedule`'s result), as an aware
    moment on the gateway's clock (Moscow time)."""
    return datetime.strptime(schedule, SCHEDULE_FORMAT).replace(tzinfo=GATEWAY_TIMEZONE)


def report_due(sent_at: datetime, valid_hours: int | None = None,
               schedule: datetime | None = None) -> datetime:
    """When the gateway's rule allows asking for a request's delivery report: once the
    message lifetime has run out, counted from the send (or from ``schedule`` when later).
    Give both in the same time zone."""
    start = max(sent_at, schedule) if schedule is not None else sent_at
    return start + timedelta(hours=valid_hours or DEFAULT_VALID_HOURS)


# --- building requests ----------------------------------------------------------------------


class RequestDocument(bytes):
    """Request bytes that never show their content.

    Every request carries the password, and error pages (Django's debug page and error emails
    among them) print the local variables of every frame of a traceback: this is what they see.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<request document: {len(self)} bytes, not shown as it carries the password>"

    __str__ = __repr__


def _escape(value: str) -> str:
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        # An XML parser turns a literal CR (and CRLF) into LF; a character reference survives.
        value = value.replace("\r", "&#13;")
    return value


def _document(credentials: Credentials, command: str,
              fields: Iterable[tuple[str, object]]) -> RequestDocument:
    parts = [
        PROLOG, "<request>\n",
        "<user_id>", _escape(credentials.user_id), "</user_id>\n",
        "<user>", _escape(credentials.login), "</user>\n",
        "<pwd>", _escape(credentials.password), "</pwd>\n",
        "<command>", command, "</command>\n",
    ]
    for name, value in fields:
        if value is not None:
            parts += ("<", name, ">", _escape(str(value)), "</", name, ">\n")
    parts.append("</request>\n")
    try:
        return RequestDocument("".join(parts).encode(ENCODING))
    except UnicodeEncodeError:
        parts.clear()  # holds the password; the traceback would show it
        # Only the credentials can get here: the text was checked already.
        bad = "login" if _unencodable(credentials.login) else "password"
        shown = credentials.login if bad == "login" else "***"
        raise ValidationError(
            bad, shown, "contains characters that windows-1251 cannot carry",
            "check the account credentials the gateway gave you") from None


def _unencodable(value: str) -> bool:
    try:
        value.encode(ENCODING)
    except UnicodeEncodeError:
        return True
    return False


def build_send(
    credentials: Credentials,
    *,
    phones: tuple[str, ...],
    text: str,
    request_id: int,
    sender: str | None = None,
    transliterate: bool = True,
    schedule: str | None = None,
    valid_hours: int | None = None,
) -> RequestDocument:
    """The ``command=send`` document. Arguments must already be checked (see ``check_*``)."""
    return _document(credentials, "send", (
        ("phone", ",".join(phones)),
        ("sender", sender),
        ("message", text),
        ("rus_sms", None if transliterate else 1),
        ("schedule", schedule),
        ("valid", valid_hours),
        ("id", request_id),
    ))


def build_status(credentials: Credentials, request_id: int, *,
                 extended: bool = True) -> RequestDocument:
    return _document(credentials, "status", (("extended", 1 if extended else None),
                                             ("id", request_id)))


def build_balance(credentials: Credentials) -> RequestDocument:
    return _document(credentials, "balance", ())


# --- parsing responses ----------------------------------------------------------------------

# ``</ id>``: white space after ``</`` is not well-formed XML, yet every example answer in the
# gateway's documentation closes ``id`` that way. Exactly this form is repaired; anything else
# that is not well-formed stays a ProtocolError.
_QUIRKY_END_TAG = re.compile(rb"</\s+([A-Za-z_][\w.\-]*)\s*>")
# One scan for the white space XML allows, instead of a scan for each of its four characters.
_SPACED_END_TAG = re.compile(rb"</[ \t\n\r]")


def repair_end_tags(data: bytes) -> bytes:
    """Repair ``</ name>`` end tags (the gateway's documented quirk) so XML parsers accept them."""
    if _SPACED_END_TAG.search(data) is None:
        return data
    return _QUIRKY_END_TAG.sub(rb"</\1>", data)


_DECLARED_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
# What the gateway itself writes first: known safe without reading the declaration.
_GATEWAY_PROLOG = PROLOG.strip().encode("ascii")
# Encodings in which every printable ASCII character is its own single byte: in these, a DTD
# cannot hide from a byte search for "<!".
_ASCII_SAFE_ENCODINGS = frozenset({"cp1251", "utf-8", "ascii", "latin-1", "iso8859-1", "koi8-r"})


def _cannot_carry_dtd(data: bytes) -> bool:
    if b"<!" in data or data[:1] not in (b"<", b" ", b"\n", b"\r", b"\t"):
        return False  # a DTD, comment or CDATA, or a byte order mark: leave it to defusedxml
    if b"\x00" in data:
        # UTF-16/32 without a byte order mark ("<\x00?\x00x..."): expat detects it, and a DTD
        # written in it has no "<!" byte pair. A NUL is never legal in an ASCII-safe answer.
        return False
    if data.startswith(_GATEWAY_PROLOG):
        return True
    declared = _DECLARED_ENCODING.match(data)
    if declared is None:
        return True  # no declaration: UTF-8
    name = declared.group(1).decode("ascii").lower()
    if name in ("windows-1251", "utf-8"):
        return True
    try:
        return codecs.lookup(name).name in _ASCII_SAFE_ENCODINGS
    except LookupError:
        return False


def _fromstring_ascii(data: bytes) -> Element:
    """An all-ASCII answer in an ASCII-safe encoding, parsed as UTF-8 whatever it declares.

    Such bytes read the same in every one of those encodings. Expat decodes UTF-8 itself, while
    for windows-1251 (what the gateway declares) it has a decoding table built for every
    document, which costs a third of parsing a status report."""
    parser = XMLParser(encoding="utf-8")
    parser.feed(data)
    return parser.close()


def _safe_fromstring_no_dtd(data: bytes) -> Element:
    # Imported on first use: only an answer that could carry a DTD needs defusedxml, and the
    # command line's help or the emulator should not pay for importing it.
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        return fromstring(data, forbid_dtd=True)  # type: ignore[no-any-return]
    except DefusedXmlException as exc:
        raise ProtocolError(f"refused a hostile XML answer ({type(exc).__name__})") from None


def _parse(data: bytes) -> dict[str, Element]:
    """The children of ``<response>`` by tag, after the gateway's error check."""
    if not data or data.isspace():
        raise ProtocolError("empty answer from the gateway")
    data = repair_end_tags(data)
    try:
        if not _cannot_carry_dtd(data):
            root = _safe_fromstring_no_dtd(data)
        elif data.isascii():
            root = _fromstring_ascii(data)
        else:
            root = _fast_fromstring(data)
    except (ParseError, ValueError, LookupError, UnicodeError, RecursionError) as exc:
        raise ProtocolError(f"the answer is not well-formed XML: {exc}") from None
    if root.tag != "response":
        raise ProtocolError(f"expected a <response> document, got <{_clip(str(root.tag))}>")
    fields = {child.tag: child for child in root}
    result = _text(fields, "result", required=True).upper()
    error = _required_int(fields, "error")
    if result == "OK" and error == 0:
        return fields
    if result not in ("OK", "ERROR"):
        raise ProtocolError(f"unexpected <result> {_clip(result)!r}")
    request_id = _int(fields, "id")
    raise error_for_code(error, request_id=request_id or None)


def _clip(value: str, size: int = 60) -> str:
    return value if len(value) <= size else value[:size] + "..."


def _text(fields: dict[str, Element], name: str, *, required: bool = False) -> str:
    element = fields.get(name)
    text = element.text if element is not None else None
    if text:
        words = text.split()  # strips, and folds the line breaks found inside <time>
        if len(words) == 1:
            return words[0]
        if words:
            return " ".join(words)
    if required:
        raise ProtocolError(f"the answer has no <{name}>")
    return ""


def _int(fields: dict[str, Element], name: str, *, required: bool = False) -> int | None:
    element = fields.get(name)
    text = element.text if element is not None else None
    text = text.strip() if text else ""  # a number has no inner white space to fold
    if not text:
        if required:
            raise ProtocolError(f"the answer has no <{name}>")
        return None
    if not _INTEGER.fullmatch(text):
        raise ProtocolError(f"<{name}> is not a number: {_clip(text)!r}")
    return int(text)


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def _required_int(fields: dict[str, Element], name: str) -> int:
    value = _int(fields, name, required=True)
    if value is None:  # _int raised already; this keeps the type exact
        raise ProtocolError(f"the answer has no <{name}>")
    return value


def parse_send(data: bytes) -> SendResponse:
    """Parse the answer to ``command=send``; a gateway error raises its GatewayError subclass."""
    fields = _parse(data)
    return SendResponse(request_id=_int(fields, "id"))


def parse_balance(data: bytes) -> BalanceResponse:
    fields = _parse(data)
    text = _text(fields, "balance", required=True).replace(",", ".")
    try:
        balance = Decimal(text)
    except InvalidOperation:
        raise ProtocolError(f"<balance> is not a number: {_clip(text)!r}") from None
    if not balance.is_finite():
        raise ProtocolError(f"<balance> is not a number: {_clip(text)!r}")
    return BalanceResponse(balance=balance)


def parse_status(data: bytes, request_id: int) -> StatusReport:
    """Parse the answer to ``command=status`` (extended or not) into a StatusReport."""
    fields = _parse(data)
    code = _required_int(fields, "status")
    status = _MAILING_STATUSES.get(code)
    if status is None:
        status = MailingStatus(code)
    extended = fields.get("extended")
    recipients = () if extended is None else tuple(
        [_recipient(dest) for dest in extended if dest.tag == "dest"])
    return StatusReport(_int(fields, "id") or request_id, status, recipients)


def _recipient(dest: Element) -> RecipientStatus:
    # Inlined rather than built from _text/_int: a report can list thousands of recipients.
    phone = code = when = ""
    for child in dest:
        tag, text = child.tag, child.text
        if text is None:
            continue
        if tag == "phone":
            phone = text.strip()
        elif tag == "status":
            code = text.strip()
        elif tag == "time":
            # Folded by _time, once per distinct text; a long one is folded first, so that a
            # gateway padding <time> with whitespace cannot fill the cache with its answers.
            when = text if len(text) <= _TIME_KEY_MAX else " ".join(text.split())
    if not phone:
        raise ProtocolError("a <dest> of the report has no <phone>")
    status = _DELIVERY_STATUSES.get(code)
    if status is None:
        if not code.isascii() or not code.isdigit() or len(code) > 9:
            raise ProtocolError(f"<dest><status> is not a number: {_clip(code)!r}")
        status = DeliveryStatus(int(code))
    return _new_recipient(RecipientStatus, (phone, status, _time(when)))


# The named tuple's own constructor is a Python function taking keywords; this is its C core.
_new_recipient = tuple.__new__
_DELIVERY_STATUSES = {str(int(member)): member for member in DeliveryStatus}
_MAILING_STATUSES = {int(member): member for member in MailingStatus}


#: The longest <time> text remembered as it came (a valid one is 16 or 19 characters, plus
#: the line break and indent of the gateway's own example).
_TIME_KEY_MAX = 40
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}(?::[0-9]{2})?")


@functools.lru_cache(maxsize=512)
def _time(text: str) -> datetime | None:
    """``yyyy-MM-dd hh:mm`` (seconds tolerated), the gateway's local time, as an aware datetime.
    Cached: the recipients of one report mostly share a minute."""
    if _TIME.fullmatch(text) is None:
        text = " ".join(text.split())  # the gateway's own example breaks the line inside <time>
        if not text:
            return None
        if _TIME.fullmatch(text) is None:
            raise ProtocolError(f"<time> is not a date and time: {_clip(text)!r}")
    try:
        # The pattern leaves only forms every supported Python's fromisoformat reads.
        naive = datetime.fromisoformat(text)
    except ValueError:  # a day or an hour that does not exist
        raise ProtocolError(f"<time> is not a date and time: {_clip(text)!r}") from None
    # The zone is added by the constructor: ``replace(tzinfo=...)`` costs twice as much.
    return datetime(naive.year, naive.month, naive.day, naive.hour, naive.minute, naive.second,
                    0, GATEWAY_TIMEZONE)
