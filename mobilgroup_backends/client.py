"""MobilgroupClient: the one object that talks to the gateway.

One ``requests.Session`` per client keeps the connection alive between calls and is safe to share
between threads. The environment (proxies, CA bundle variables) is read once, when the client is
made, instead of on every call as ``Session.post`` does; redirects are never followed, because
every request body carries the password.

Sends are made safe to retry by the request id: every attempt of one send carries the same id, and
the gateway answers a copy of an id it already accepted with error 7. On a retry, and only on a
retry, that answer means "accepted earlier" (PROTOCOL.md, decision 10): never sent twice, never lost.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NewConnectionError

from . import __version__, protocol
from .config import DEFAULT_ENDPOINT, Settings, parse_url, settings_from_env
from .errors import (
    ConfigurationError,
    DuplicateRequestId,
    MobilgroupError,
    ProtocolError,
    TransportError,
)
from .protocol import DEFAULT_REGION, StatusReport, mask_phone

__all__ = ["MobilgroupClient", "SendResult", "sent_to_dict"]

logger = logging.getLogger("mobilgroup_backends.client")

#: Answers are a few hundred bytes; anything past this is not the gateway talking.
MAX_RESPONSE_BYTES = 256 * 1024
USER_AGENT = f"mobilgroup-backends/{__version__} python-requests/{requests.__version__}"

T = TypeVar("T")


@dataclass(frozen=True)
class SendResult:
    """What the gateway accepted: keep ``request_id`` to ask for delivery reports later.

    ``accepted_earlier`` is True when an attempt's answer was lost in transit and the retry was
    told the request id was already there: the message went out exactly once.
    """

    request_id: int
    phones: tuple[str, ...]
    text: str
    sender: str | None = None
    attempts: int = 1
    accepted_earlier: bool = False

    def to_dict(self) -> dict[str, Any]:
        """This request as JSON: what ``mobilgroup mailing`` and library users record."""
        return {"request_id": self.request_id, "phones": list(self.phones), "text": self.text,
                "sender": self.sender, "attempts": self.attempts,
                "accepted_earlier": self.accepted_earlier}


def sent_to_dict(request_ids: Iterable[int], phones: Iterable[str],
                 sender: str | None) -> dict[str, Any]:
    """The JSON shape of "one message was sent" that ``mobilgroup send`` and ``manage.py
    mobilgroup send`` both print: one request id per part (a long text split in parts is one
    request each), the recipients, and the alias (None for the account's default)."""
    ids = list(request_ids)
    return {"ok": True, "request_ids": ids, "parts": len(ids), "phones": list(phones),
            "sender": sender}


class MobilgroupClient:
    """A client for the Mobilgroup gateway.

    >>> with MobilgroupClient.from_url("mobilgroup://login:secret@1234") as client:  # doctest: +SKIP
    ...     result = client.send("+7 903 123-45-67", "Your code is 4521")

    ``timeout`` is seconds for connecting and for each read; ``retries`` is how many times a failed
    exchange (network error, timeout, 5xx, garbled answer) is tried again, with exponential
    backoff and jitter starting at ``backoff`` seconds. Plain ``http://`` endpoints are refused
    outside loopback unless ``allow_insecure_http`` is set, since the password travels in the body.
    """

    def __init__(
        self,
        user_id: str | int,
        login: str,
        password: str,
        *,
        sender: str | None = None,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        ca_bundle: str | None = None,
        allow_insecure_http: bool = False,
        region: str = DEFAULT_REGION,
        session: requests.Session | None = None,
        pool_size: int = 16,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        settings = Settings(user_id=str(user_id), login=login, password=password, sender=sender,
                            endpoint=endpoint, timeout=timeout, retries=retries, backoff=backoff,
                            allow_insecure_http=allow_insecure_http, region=region)
        self.credentials = protocol.Credentials(settings.user_id, login, password)
        self.sender = settings.sender
        #: The country whose national numbers ``send`` understands (``8 903 ...``).
        self.region = settings.region
        self.endpoint = settings.endpoint
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.max_response_bytes = max_response_bytes
        self.pool_size = max(1, pool_size)
        if ca_bundle is not None and not os.path.exists(ca_bundle):
            raise ConfigurationError(
                "ca_bundle", ca_bundle, "no such file or folder",
                "give the path of a PEM file (or folder) with the CA certificates to trust")
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _GatewayAdapter(pool_connections=1, pool_maxsize=self.pool_size)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        # The environment is consulted here, once: Session.request would redo these look-ups
        # (proxies, no_proxy, CA bundle variables, netrc) on every single call.
        options = session.merge_environment_settings(
            self.endpoint, {}, True, ca_bundle if ca_bundle else None, None)
        self._proxies: MutableMapping[str, str] = options["proxies"]
        # Never None here: merge_environment_settings falls back to the session's own True.
        self._verify: bool | str = True if options["verify"] is None else options["verify"]
        self._cert: str | tuple[str, str] | None = options["cert"]
        # Headers are merged with the session's once; each call copies them and adds its length.
        template = session.prepare_request(requests.Request(
            "POST", self.endpoint, data=b"",
            headers={"Content-Type": f"application/xml; charset={protocol.ENCODING}",
                     "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}))
        # Compression is refused (identity above, raw bytes below): answers are tiny, and a
        # compressed answer could expand past the size cap before it is counted.
        # requests' defaults that say nothing HTTP/1.1 does not already mean are left out: each
        # header costs time on every call.
        template.headers.pop("Cookie", None)
        template.headers.pop("Content-Length", None)
        for name, default in (("Connection", "keep-alive"), ("Accept", "*/*")):
            if template.headers.get(name) == default:
                del template.headers[name]
        self._url: str = template.url or self.endpoint
        self._headers = dict(template.headers)
        # The transport adapter is called directly: Session.send would add cookie extraction,
        # hooks and redirect resolution, none of which a gateway exchange uses (redirects are
        # refused outright), at a measurable cost per call.
        self._adapter = session.get_adapter(self.endpoint)

    # --- construction from settings ---------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MobilgroupClient:
        kwargs: dict[str, Any] = {
            "sender": settings.sender, "endpoint": settings.endpoint,
            "timeout": settings.timeout, "retries": settings.retries,
            "backoff": settings.backoff, "allow_insecure_http": settings.allow_insecure_http,
            "region": settings.region,
        }
        kwargs.update(overrides)
        return cls(settings.user_id, settings.login, settings.password, **kwargs)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MobilgroupClient:
        """A client from ``mobilgroup://LOGIN:PASSWORD@USER_ID?sender=...&endpoint=...``."""
        return cls.from_settings(parse_url(url)[0], **overrides)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MobilgroupClient:
        """A client from ``MOBILGROUP_URL`` or the ``MOBILGROUP_*`` variables."""
        return cls.from_settings(settings_from_env(environ), **overrides)

    def __repr__(self) -> str:
        return (f"MobilgroupClient(user_id={self.credentials.user_id!r}, "
                f"login={self.credentials.login!r}, endpoint={self.endpoint!r})")

    def close(self) -> None:
        """Close the pooled connections (the session is left alone if the caller gave it)."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> MobilgroupClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- commands ---------------------------------------------------------------------------

    def send(
        self,
        phones: str | Iterable[str],
        text: str,
        *,
        sender: str | None = None,
        transliterate: bool = True,
        schedule: datetime | str | None = None,
        valid_hours: int | None = None,
        request_id: int | str | None = None,
        resend: bool = False,
        replace_unencodable: bool = False,
    ) -> SendResult:
        """Send one text to one or more phones as one gateway request (one request id).

        Everything is checked before anything is sent; a ``ValidationError`` means nothing went
        out. ``transliterate=False`` sends the text as Unicode (the gateway's ``rus_sms=1``), which
        allows 64 characters instead of 140.

        ``resend=True`` says this ``request_id`` may already have been sent with this same message
        (a task redelivered, a sweep after a crash, a retry after ``maybe_sent``): the gateway's
        error 7 then means "accepted earlier" and the result says ``accepted_earlier``. Without
        it, error 7 counts as accepted only when an earlier attempt of this call may have reached
        the gateway; otherwise it is :class:`DuplicateRequestId` (the id was used for something
        else).
        """
        numbers = protocol.normalize_phones(phones, region=self.region)
        text = protocol.check_text(text, transliterate=transliterate, replace=replace_unencodable)
        alias = protocol.check_sender(sender) or self.sender
        when = protocol.check_schedule(schedule)
        valid = protocol.check_valid_hours(valid_hours)
        rid = protocol.new_request_id() if request_id is None else protocol.check_request_id(request_id)
        body = protocol.build_send(self.credentials, phones=numbers, text=text, request_id=rid,
                                   sender=alias, transliterate=transliterate, schedule=when,
                                   valid_hours=valid)
        def parse(data: bytes, attempt: int, reached: bool) -> tuple[bool, int]:
            try:
                protocol.parse_send(data)
            except DuplicateRequestId:
                if not (resend or reached):
                    raise
                return True, attempt  # an earlier copy got through; its answer was lost
            return False, attempt

        accepted_earlier, attempts = self._call("send", body, rid, parse, numbers)
        return SendResult(request_id=rid, phones=numbers, text=text, sender=alias,
                          attempts=attempts, accepted_earlier=accepted_earlier)

    def status(self, request_id: int | str, *, extended: bool = True) -> StatusReport:
        """The mailing status and, with ``extended``, every recipient's delivery status.

        The gateway asks callers not to poll: ask once the message lifetime has run out.
        """
        rid = protocol.check_request_id(request_id, new=False)
        body = protocol.build_status(self.credentials, rid, extended=extended)
        return self._call("status", body, rid, lambda data, *_: protocol.parse_status(data, rid))

    def balance(self) -> Decimal:
        """The account balance."""
        body = protocol.build_balance(self.credentials)
        return self._call("balance", body, None, lambda data, *_: protocol.parse_balance(data).balance)

    def send_many(
        self, messages: Iterable[Mapping[str, Any] | tuple[Any, ...]], *, concurrency: int = 8,
    ) -> list[SendResult | MobilgroupError]:
        """Send many different messages concurrently over the pooled connections.

        Each message is a mapping of :meth:`send` keyword arguments (``phones``, ``text``, ...) or
        a ``(phones, text)`` tuple. Returns one outcome per message, in order: its
        :class:`SendResult`, or the :class:`MobilgroupError` that stopped it. One failure does not
        stop the rest. At most ``pool_size`` messages are in flight at once.
        """
        calls = [_as_send_kwargs(message) for message in messages]
        if not calls:
            return []

        def one(kwargs: dict[str, Any]) -> SendResult | MobilgroupError:
            try:
                return self.send(**kwargs)
            except MobilgroupError as exc:
                return exc

        workers = max(1, min(concurrency, self.pool_size, len(calls)))
        if workers == 1:
            return [one(kwargs) for kwargs in calls]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mobilgroup-send") as pool:
            return list(pool.map(one, calls))

    def longest_call(self) -> float:
        """Seconds one call can take at most: every attempt timing out while connecting and
        again while reading, and every pause between attempts at its ceiling. A lease that must
        cover a call (a task's claim on a message, a tracker's on a report) outlasts this."""
        attempts = self.retries + 1
        pauses = sum(min(30.0, self.backoff * 2.0 ** k) for k in range(self.retries))
        return 2 * self.timeout * attempts + pauses

    # --- the exchange -----------------------------------------------------------------------

    def _call(self, command: str, body: bytes, request_id: int | None,
              parse: Callable[[bytes, int, bool], T], phones: tuple[str, ...] = ()) -> T:
        """POST ``body`` and parse the answer, retrying what is safe to retry.

        ``parse`` gets the answer, the attempt number (from 1) and whether an earlier attempt of
        this call may have reached the gateway: only then can an error 7 be this call's own copy.
        The final error's ``maybe_sent`` is sticky over the attempts for the same reason.
        """
        attempt = 0
        reached = False
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                data = self._post(body, request_id)
                result = parse(data, attempt, reached)
            except (TransportError, ProtocolError) as exc:
                if exc.request_id is None:
                    exc.request_id = request_id  # the parser cannot know it; the caller needs it
                # Something answered (a garbled answer) or the connection broke after the request
                # was written: the gateway may have this request.
                reached = reached or not isinstance(exc, TransportError) or exc.maybe_sent
                if isinstance(exc, TransportError):
                    exc.maybe_sent = reached
                retryable = not isinstance(exc, TransportError) or exc.retryable
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s id=%s attempt %d failed after %.1f ms: %s", command,
                                 request_id, attempt, _ms(started), exc)
                if attempt > self.retries or not retryable:
                    raise
                time.sleep(self._delay(attempt))
                continue
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s id=%s to=%s ok in %.1f ms (attempt %d)", command, request_id,
                             ",".join(mask_phone(p) for p in phones) or "-", _ms(started), attempt)
            return result

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so that many clients do not retry in lockstep."""
        ceiling = min(30.0, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(ceiling / 2, ceiling)

    def _post(self, body: bytes, request_id: int | None) -> bytes:
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = self._url
        request.headers = CaseInsensitiveDict(self._headers)
        request.headers["Content-Length"] = str(len(body))
        request.body = body
        try:
            response = self._adapter.send(
                request, stream=True, timeout=self.timeout,
                proxies=self._proxies, verify=self._verify, cert=self._cert)
        except requests.exceptions.SSLError as exc:
            raise _transport(f"TLS failed, the gateway's certificate was not trusted or did not "
                             f"match: {_reason(exc)}", request_id, retryable=False,
                             maybe_sent=False) from None
        except requests.exceptions.ConnectTimeout:
            raise _transport(f"timed out connecting to {self.endpoint} after {self.timeout:g} s",
                             request_id, maybe_sent=False, timed_out=True) from None
        except requests.exceptions.ReadTimeout:
            raise _transport(f"no answer from {self.endpoint} within {self.timeout:g} s",
                             request_id, timed_out=True) from None
        except requests.exceptions.ConnectionError as exc:
            # Refused or unresolvable: the request never left, so nothing can have been sent.
            never_sent = isinstance(_innermost(exc), NewConnectionError)
            raise _transport(f"connection to {self.endpoint} failed: {_reason(exc)}",
                             request_id, maybe_sent=not never_sent) from None
        except requests.exceptions.RequestException as exc:
            raise _transport(f"request to {self.endpoint} failed: {_reason(exc)}",
                             request_id) from None
        try:
            return self._read(response, request_id)
        finally:
            response.close()

    def _read(self, response: requests.Response, request_id: int | None) -> bytes:
        status = response.status_code
        if status != 200:
            if 300 <= status < 400:
                raise _transport(f"HTTP {status} redirect to {response.headers.get('Location')!r} "
                                 f"refused: the request carries the password", request_id,
                                 status_code=status, retryable=False)
            retryable = status >= 500 or status in (408, 429)
            raise _transport(f"HTTP {status} {response.reason} from {self.endpoint}", request_id,
                             status_code=status, retryable=retryable)
        cap = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        expected = int(declared) if declared.isdigit() else None
        if expected is not None and expected > cap:
            raise ProtocolError(f"answer of {declared} bytes refused: more than {cap} bytes is "
                                f"not the gateway talking", request_id=request_id)
        # Read in pieces against one deadline: the socket timeout bounds each read, so a server
        # trickling a byte at a time could otherwise hold the caller for ever.
        deadline = time.monotonic() + self.timeout
        read = getattr(response.raw, "read1", response.raw.read)
        chunks: list[bytes] = []
        size = 0
        try:
            while expected is None or size < expected:
                chunk = read(min(cap + 1 - size, 65536), decode_content=False)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    raise ProtocolError(f"answer refused after {cap} bytes: too large to be the "
                                        f"gateway's", request_id=request_id)
                if time.monotonic() > deadline:
                    raise _transport(f"the answer from {self.endpoint} took longer than "
                                     f"{self.timeout:g} s to arrive", request_id, timed_out=True)
        except MobilgroupError:
            raise
        except Exception as exc:  # urllib3 raises its own types mid-body; none may escape
            raise _transport(f"the answer from {self.endpoint} broke off: {_reason(exc)}",
                             request_id) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _GatewayAdapter(HTTPAdapter):
    """requests' transport adapter, minus the response dressing a gateway answer never uses.

    ``build_response`` is the documented extension point of ``HTTPAdapter``. The stock one copies
    every header into a new dict, runs the cookie jar machinery over the answer and guesses its
    text encoding; the answer here is read once as raw bytes and parsed as windows-1251 XML, so
    all of that is skipped (a tenth of the client's own time per call).
    """

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = resp.headers  # urllib3's headers are case-insensitive already
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self  # as requests itself sets it
        return response


def _transport(message: str, request_id: int | None, *, retryable: bool = True,
               maybe_sent: bool = True, timed_out: bool = False,
               status_code: int | None = None) -> TransportError:
    return TransportError(message, status_code=status_code, maybe_sent=maybe_sent,
                          retryable=retryable, timed_out=timed_out, request_id=request_id)


def _innermost(exc: BaseException) -> BaseException:
    """The root cause inside requests' and urllib3's wrappers (MaxRetryError and the like)."""
    reason = exc
    for _ in range(8):  # wrappers nest a few levels deep; never loop on a cycle
        inner = getattr(reason, "reason", None)
        if not isinstance(inner, BaseException) and reason.args:
            inner = reason.args[0]
        if not isinstance(inner, BaseException):
            break
        reason = inner
    return reason


def _reason(exc: BaseException) -> str:
    """The root cause of a requests/urllib3 error in a few words, without URLs or bodies."""
    reason = _innermost(exc)
    if isinstance(reason, NewConnectionError):
        return "connection refused or host unreachable"
    return f"{type(reason).__name__}: {reason}"


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _as_send_kwargs(message: Mapping[str, Any] | tuple[Any, ...]) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    if isinstance(message, tuple) and len(message) == 2:
        return {"phones": message[0], "text": message[1]}
    raise TypeError(f"send_many takes mappings of send() arguments or (phones, text) tuples, "
                    f"not {type(message).__name__}")

