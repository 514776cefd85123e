"""The exception hierarchy.

Everything this package raises on purpose derives from :class:`MobilgroupError`, so one
``except MobilgroupError`` covers it. The branches say *where* things went wrong, because that
decides what a caller should do next:

- :class:`ValidationError`: refused locally, before any request (nothing was sent; fix the input).
  :class:`ConfigurationError` is the kind that comes from settings, URLs or the environment.
- :class:`GatewayError`: the gateway answered and refused (``.code`` is its error number).
- :class:`TransportError`: no usable answer reached us (network, timeout, TLS, HTTP status).
- :class:`ProtocolError`: something answered, but not with the gateway's XML.

Every error carries ``request_id`` (the id of the send it belongs to, when there is one) and
``maybe_sent``: True when the request may have reached the gateway during any attempt of the call,
so that a resend must reuse that id, with ``resend=True`` (see docs/reliability.md).

Every error also says what the caller should do about it, as data: :attr:`MobilgroupError.verdict`,
one of the :class:`Verdict` values. Adapters act on it and never classify exceptions themselves:

- ``retry``: nothing reached the gateway, and trying again can mend it (a refused connection, a
  connect timeout, a TLS handshake broken before the request was written). Try again later,
  with backoff; the same request id is fine.
- ``unknown``: the request may have reached the gateway, and trying again can mend it (no
  answer in time, a connection dropped after the request was written, HTTP 5xx/408/429, an
  answer that is not the gateway's XML or names another request's id, a deadline spent after
  the request went). Try again later with **the same request id** and ``resend=True``; never
  under a new id (it could go out twice).
- ``refused``: refused for good, another try gets the same answer (an HTTP 4xx, an untrusted
  certificate, a redirect, gateway errors 1, 2, 6, 7 as :class:`DuplicateRequestId`, 8, 10, 11,
  12 and unknown codes). Do not retry; record the failure and show it.
- ``invalid``: refused locally before any request (:class:`ValidationError`,
  :class:`ConfigurationError`). Do not retry; fix the input or the setting the error names.
- ``account``: the account must be fixed first (gateway errors 3, 4, 5, 9: wrong client id,
  login or password, a blocked account, no money). Pause every message of this account (do not
  spend the rest of a batch on it); try again, under the same ids, once it is fixed.

A refusal that cannot mend (``refused``) wins over ``maybe_sent``: a 404 after an earlier attempt
timed out still says ``maybe_sent=True``, so whoever records the message knows a copy may exist, but
retrying cannot help. :attr:`Verdict.try_again` is True for ``retry`` and ``unknown``.

No exception text ever carries a password: callers build them from masked values only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

__all__ = [
    "CONTEXTS",
    "HIDDEN",
    "AuthenticationFailed",
    "ClientBlocked",
    "ConfigurationError",
    "DeadlineExceeded",
    "DuplicateRequestId",
    "GatewayError",
    "InsufficientFunds",
    "InvalidClientId",
    "InvalidRecipients",
    "InvalidSchedule",
    "MessageTooLong",
    "MissingParameters",
    "MobilgroupError",
    "PicklableError",
    "ProtocolError",
    "RequestNotParsed",
    "TransportError",
    "UnknownCommand",
    "UnknownRequestId",
    "ValidationError",
    "Verdict",
    "error_for_code",
    "error_to_dict",
    "exit_code",
]

#: Exit codes of both command-line tools, ``mobilgroup`` and ``manage.py mobilgroup``: done; the
#: gateway refused; bad usage, input or settings (nothing was sent); the gateway could not be
#: reached or did not answer with its XML; interrupted (Ctrl-C).
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: A batch (a mailing) stopped because the account must be fixed first (verdict ``account``):
#: the rest was not spent on the same refusal; fix the account and run it again.
EXIT_ACCOUNT = 5


#: Where an error is shown, which decides how its hint names the fix: a keyword argument of
#: the Python API, a flag of the ``mobilgroup`` command, or a key of Django's ``MOBILGROUP``.
Context = Literal["python", "cli", "django"]
CONTEXTS: tuple[Context, ...] = ("python", "cli", "django")



class Verdict(str, enum.Enum):
    """What the caller should do about a failure (see the table in this module's docstring).

    A ``str`` enum, so it compares equal to, and serialises as, its value (``"retry"``...).
    """

    #: Nothing reached the gateway; trying again later can succeed.
    RETRY = "retry"
    #: The request may have reached the gateway; try again later with the same request id and
    #: ``resend=True`` only.
    UNKNOWN = "unknown"
    #: Refused for good: another try gets the same answer.
    REFUSED = "refused"
    #: Refused locally: fix the input or the setting the error names.
    INVALID = "invalid"
    #: The account must be fixed first (credentials, blocked, no money): pause its work.
    ACCOUNT = "account"

    @property
    def try_again(self) -> bool:
        """True when trying again later, with the same request id, can succeed by itself."""
        return self in (Verdict.RETRY, Verdict.UNKNOWN)

    def __str__(self) -> str:
        return self.value


class _Hidden:
    """The type of :data:`HIDDEN`: one instance, which stays the one through pickling."""

    def __repr__(self) -> str:
        return "<hidden>"

    def __reduce__(self) -> str:
        return "HIDDEN"  # pickled as a reference to this module's HIDDEN


#: The value of a field that must not be shown (a misspelt option may hold a secret).
HIDDEN: Any = _Hidden()


def rebuild_error(cls: type[BaseException], args: tuple[Any, ...],
                  state: dict[str, Any]) -> BaseException:
    """An exception made again from its ``args`` and attributes, without calling ``__init__``
    (whose parameters are not its ``args``): how the errors of this package are unpickled."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class _Rebuilt(type):
    """Lets ``cls(message)`` make an error again from its message alone, for a class whose
    ``__init__`` takes other arguments (``message_first = False``).

    That is how Celery's JSON results (its default result serializer) carry an error: its type
    and ``args``, then ``cls(*args)`` in the caller. Called so, ``GatewayError(code)`` would read
    the message as its code ("gateway error gateway error 4: ..."), and ``ValidationError(field,
    value, problem)`` would fail and come back as a bare ``Exception``.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if (len(args) == 1 and not kwargs and isinstance(args[0], str)
                and not getattr(cls, "message_first", True)):
            error = cls.__new__(cls, args[0])  # type: ignore[call-overload]
            error.args = args
            error.__dict__.update(error.fields_from_message(args[0]))
            return error
        return super().__call__(*args, **kwargs)


class PicklableError(BaseException, metaclass=_Rebuilt):
    """Pickled as its class, ``args`` and attributes, so that it comes back whole in another
    process (a Celery result, a ``multiprocessing`` pool) whatever its ``__init__`` takes.

    ``BaseException`` pickles ``cls(*args)``, which fails, or builds a different error, as soon as
    ``__init__`` takes other arguments than the message it passes on.

    Results stored as JSON keep only an error's type and message (``args``): a class whose
    ``__init__`` does not take its message first sets ``message_first = False`` and is then made
    again from the message (its other fields as :meth:`fields_from_message` says).
    """

    #: Whether ``cls(message)`` is a call of ``__init__`` (else: the error made from its message).
    message_first: ClassVar[bool] = True

    def fields_from_message(self, message: str) -> dict[str, Any]:
        """The attributes of an error made again from its message alone."""
        return {}

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuild_error, (type(self), self.args, dict(self.__dict__))


class MobilgroupError(PicklableError, Exception):
    """Root of every error this package raises on purpose.

    ``request_id`` is the gateway request id the error belongs to (None when there is none, e.g.
    a balance query or a setting). ``maybe_sent`` is True when some attempt of the call may have
    reached the gateway: the outcome is unknown, and only a resend with the same ``request_id``
    and ``resend=True`` is safe. False means nothing of this call was accepted.

    :meth:`hint_for` says what to do about it in the words of the place it is shown; a class
    without one for that place gives an empty hint rather than a wrong one. Every error survives
    pickling with its fields (Celery carries errors between processes).
    """

    request_id: int | None = None
    maybe_sent: bool = False

    def __init__(self, *args: object, request_id: int | None = None,
                 maybe_sent: bool = False) -> None:
        super().__init__(*args)
        self.request_id = request_id
        self.maybe_sent = maybe_sent

    #: Hints by context, for every instance of the class.
    context_hints: ClassVar[Mapping[str, str]] = {}

    def hint_for(self, context: Context = "python") -> str:
        """What to do about this error, naming only what exists where it is shown."""
        return type(self).context_hints.get(context, "")

    def describe(self, context: Context = "python") -> str:
        """The error's text with the hint of ``context`` instead of the Python one."""
        return str(self)

    @property
    def verdict(self) -> Verdict:
        """What the caller should do about this error (module docstring has the table).

        Computed from the error's own fields, so it comes back the same after pickling.
        """
        return Verdict.UNKNOWN if self.maybe_sent else Verdict.REFUSED


class ValidationError(MobilgroupError, ValueError):
    """Input refused before any request was made: nothing was sent and nothing was charged.

    ``field`` names what was wrong (as the caller wrote it: ``valid``, ``MOBILGROUP['SENDER']``,
    ``MOBILGROUP_TIMEOUT``), ``value`` is the offending value (already masked when it is a
    secret; :data:`HIDDEN` when nothing of it may be shown), ``problem`` what is wrong with it
    and ``fix`` what to do, in words true everywhere. When the fix names a keyword, a flag or a
    setting, ``hints`` gives it per context (``"python"``, ``"cli"``, ``"django"``) and ``fix``
    is the Python one; ``source`` names the setting that held the field when that is not the field
    itself (``MOBILGROUP['URL']``, the ``MOBILGROUP_URL`` environment variable), and ``option``
    is the name of the option in the package's option table, when it is one.
    """

    message_first = False

    def __init__(self, field: str, value: Any, problem: str, fix: str = "", *,
                 hints: Mapping[str, str] | None = None, source: str | None = None,
                 option: str | None = None) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        self.source = source
        self.option = option
        self.hints: dict[str, str] = dict(hints or {})
        super().__init__(self.describe("python"))

    def fields_from_message(self, message: str) -> dict[str, Any]:
        # The message says it all; the field is not known apart from it.
        return {"field": "", "value": HIDDEN, "problem": message, "fix": "", "source": None,
                "option": None, "hints": {}}

    def describe(self, context: Context = "python") -> str:
        if not self.field:  # made again from its message alone
            return self.problem
        shown = self.field if self.value is HIDDEN else f"{self.field}={self.value!r}"
        message = f"{shown}: {self.problem}"
        if self.source and self.source != self.field:
            message = f"{self.source}: {message}"
        hint = self.hint_for(context)
        return f"{message}; {hint}" if hint else message

    def hint_for(self, context: Context = "python") -> str:
        return self.hints.get(context, self.fix)

    @property
    def verdict(self) -> Verdict:
        return Verdict.INVALID


class ConfigurationError(ValidationError):
    """A setting, URL or environment variable is missing or malformed.

    Adapters never swallow this one (Django's ``fail_silently`` included): a wrong setting must be
    seen at start-up, not discovered when the first alert silently fails to go out.
    """


class GatewayError(MobilgroupError):
    """The gateway answered with ``<result>ERROR</result>``; ``code`` is its error number."""

    code: int = 0
    meaning: str = "unknown gateway error"
    message_first = False

    def __init__(self, code: int | None = None, *, request_id: int | None = None,
                 detail: str = "") -> None:
        if code is not None:
            self.code = code
        self.detail = detail
        text = f"gateway error {self.code}: {self.meaning}"
        if request_id is not None:
            text += f" (request id {request_id})"
        if detail:
            text += f"; {detail}"
        # The gateway refused this request; an earlier attempt of the same call may still have
        # reached it, and the client then sets maybe_sent.
        super().__init__(text, request_id=request_id)

    #: Whether the account, not the message, is what the gateway refused.
    account_level: ClassVar[bool] = False

    @property
    def verdict(self) -> Verdict:
        # The gateway refused this very request; a copy an earlier attempt got through would
        # have been answered with error 7, so ``maybe_sent`` does not make it unknown.
        return Verdict.ACCOUNT if self.account_level else Verdict.REFUSED

    def fields_from_message(self, message: str) -> dict[str, Any]:
        return {"detail": ""}


class RequestNotParsed(GatewayError):
    code, meaning = 1, "the gateway could not parse the request XML"


class MissingParameters(GatewayError):
    code, meaning = 2, "not all required parameters were given"


class InvalidClientId(GatewayError):
    code, meaning = 3, "wrong client ID (user_id)"
    account_level = True


class AuthenticationFailed(GatewayError):
    code, meaning = 4, "wrong login and/or password"
    account_level = True


class ClientBlocked(GatewayError):
    code, meaning = 5, "the client account is blocked"
    account_level = True


class UnknownCommand(GatewayError):
    code, meaning = 6, "no such command"


class DuplicateRequestId(GatewayError):
    code, meaning = 7, "a request with this id was already sent"


class InvalidRecipients(GatewayError):
    code, meaning = 8, "wrong format of recipients"


class InsufficientFunds(GatewayError):
    code, meaning = 9, "not enough money on the account to send to every recipient"
    account_level = True


class MessageTooLong(GatewayError):
    code, meaning = 10, "the message exceeds the allowed number of characters"


class InvalidSchedule(GatewayError):
    code, meaning = 11, "wrong format of the schedule time"


class UnknownRequestId(GatewayError):
    code, meaning = 12, "no request with this id is registered"


_BY_CODE: dict[int, type[GatewayError]] = {
    cls.code: cls
    for cls in (
        RequestNotParsed, MissingParameters, InvalidClientId, AuthenticationFailed,
        ClientBlocked, UnknownCommand, DuplicateRequestId, InvalidRecipients,
        InsufficientFunds, MessageTooLong, InvalidSchedule, UnknownRequestId,
    )
}

#: The gateway's error codes and their meaning, as its documentation lists them.
ERROR_MEANINGS: dict[int, str] = {code: cls.meaning for code, cls in _BY_CODE.items()}


def error_for_code(code: int, *, request_id: int | None = None, detail: str = "") -> GatewayError:
    """The exception for a gateway error code; an unknown code gives a plain :class:`GatewayError`."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return GatewayError(code, request_id=request_id, detail=detail)
    return cls(request_id=request_id, detail=detail)


class TransportError(MobilgroupError):
    """No usable answer: connection refused or reset, timeout, TLS failure, or a non-200 status.

    ``status_code`` is the HTTP status when one was received. ``maybe_sent`` is True when the
    request may have reached the gateway (the connection broke after it was written), so a caller
    that resends must reuse the same request id. ``retryable`` is False for failures that another
    attempt cannot mend (an untrusted certificate, a redirect, a 404). ``timed_out`` is True when
    the gateway did not connect or answer in time.
    """

    def __init__(self, message: str, *, status_code: int | None = None,
                 maybe_sent: bool = True, retryable: bool = True, timed_out: bool = False,
                 request_id: int | None = None) -> None:
        self.status_code = status_code
        self.timed_out = timed_out
        self.retryable = retryable
        super().__init__(message, request_id=request_id, maybe_sent=maybe_sent)

    @property
    def verdict(self) -> Verdict:
        if not self.retryable:
            return Verdict.REFUSED
        return Verdict.UNKNOWN if self.maybe_sent else Verdict.RETRY


class DeadlineExceeded(TransportError):
    """A call ran out of its ``deadline`` (seconds, all attempts and pauses included) before an
    answer came. ``elapsed`` is the real time spent, ``attempts`` the attempts made; the text
    says both, and what the last attempt met. ``maybe_sent`` as for any failure of the call."""

    def __init__(self, message: str, *, elapsed: float, attempts: int, deadline: float,
                 maybe_sent: bool = True, request_id: int | None = None) -> None:
        self.elapsed = elapsed
        self.attempts = attempts
        self.deadline = deadline
        super().__init__(message, maybe_sent=maybe_sent, timed_out=True, request_id=request_id)


class ProtocolError(MobilgroupError):
    """The answer was not the gateway's XML (garbage, truncated, oversized, hostile or empty).

    Something answered, so the gateway may have processed the request: ``maybe_sent`` is True.
    """

    def __init__(self, message: str, *, request_id: int | None = None,
                 maybe_sent: bool = True) -> None:
        super().__init__(message, request_id=request_id, maybe_sent=maybe_sent)

    @property
    def verdict(self) -> Verdict:
        return Verdict.UNKNOWN if self.maybe_sent else Verdict.RETRY


def _kind(exc: MobilgroupError) -> tuple[str, int]:
    if isinstance(exc, ValidationError):
        return "invalid", EXIT_USAGE
    if isinstance(exc, GatewayError):
        return "refused", EXIT_REFUSED
    return "unreachable", EXIT_UNREACHABLE


def exit_code(exc: MobilgroupError) -> int:
    """The exit code a command-line tool ends with when ``exc`` stopped it."""
    return _kind(exc)[1]


def error_to_dict(exc: MobilgroupError, context: Context = "python") -> dict[str, Any]:
    """The JSON shape of a failure, as both command-line tools print it with ``--json``.

    ``error`` is ``invalid`` (nothing was sent), ``refused`` (the gateway's ``code``) or
    ``unreachable``; ``maybe_sent`` and ``request_id`` say whether and how a resend is safe;
    ``verdict`` is :attr:`MobilgroupError.verdict` (what to do about it).
    The message's hint names what exists in ``context`` (a flag, a setting, a keyword).
    """
    payload: dict[str, Any] = {"ok": False, "error": _kind(exc)[0],
                               "message": exc.describe(context)}
    if isinstance(exc, GatewayError):
        payload["code"] = exc.code
    if isinstance(exc, ValidationError):
        payload["field"] = exc.field
    if exc.request_id is not None and not isinstance(exc, ValidationError):
        payload["request_id"] = exc.request_id  # refused locally: an id sent nowhere is noise
    payload["maybe_sent"] = exc.maybe_sent
    payload["verdict"] = exc.verdict.value
    return payload
