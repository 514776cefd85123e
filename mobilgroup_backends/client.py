"""MobilgroupClient: the one object that talks to the gateway.

One ``requests.Session`` per client keeps the connection alive between calls and is safe to share
between threads. The environment (proxies, CA bundle variables) is read once, when the client is
made, instead of on every call as ``Session.post`` does; redirects are never followed, because
every request body carries the password.

Sends are made safe to retry by the request id: every attempt of one send carries the same id, and
the gateway answers a copy of an id it already accepted with error 7. On a retry, and only on a
retry, that answer means "accepted earlier" (protocol notes, decision 10): never sent twice, never lost.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from types import TracebackType
from typing import Any, TypeVar, cast

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NewConnectionError

from . import __version__, protocol
from .config import DEFAULT_ENDPOINT, Settings, parse_url, settings_from_env
from .errors import (
    ConfigurationError,
    DeadlineExceeded,
    DuplicateRequestId,
    GatewayError,
    MobilgroupError,
    ProtocolError,
    TransportError,
    ValidationError,
)
from .outgoing import LongMessages, Outgoing, Part, prepare
from .protocol import DEFAULT_REGION, StatusReport, mask_phone
from .transport import GatewayAdapter, attempt, request_head

__all__ = ["AttemptHook", "MobilgroupClient", "SendResult", "Sent", "backoff_delay",
           "sent_to_dict", "shared_client"]

logger = logging.getLogger("mobilgroup_backends.client")

#: Answers are a few hundred bytes; anything past this is not the gateway talking.
MAX_RESPONSE_BYTES = 256 * 1024
USER_AGENT = f"mobilgroup-backends/{__version__} python-requests/{requests.__version__}"

T = TypeVar("T")

#: Called before every attempt of a call with the command (``send``, ``status``, ``balance``),
#: the attempt's number (from 1) and the most attempts the call may make: how a command-line tool
#: shows that it is waiting.
AttemptHook = Callable[[str, int, int], None]

#: An attempt shorter than this is not worth starting: the deadline ends the call instead.
MIN_ATTEMPT_SECONDS = 0.05


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


class Sent(tuple[SendResult, ...]):
    """What :meth:`MobilgroupClient.send_prepared` returns: one :class:`SendResult` per part, in
    order (a tuple), with the JSON shape of "one message was sent"."""

    __slots__ = ()

    @property
    def request_ids(self) -> tuple[int, ...]:
        return tuple(result.request_id for result in self)

    def to_dict(self) -> dict[str, Any]:
        """What ``mobilgroup send --json`` prints (see :func:`sent_to_dict`)."""
        first = self[0]
        return sent_to_dict(self.request_ids, first.phones, first.sender)


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

    >>> with MobilgroupClient.from_url("mobilgroup://login:secret@1234") as client:
    ...     result = client.send("+7 903 123-45-67", "Your code is 4521")

    ``timeout`` is the deadline of one attempt, in seconds: connecting, then the whole answer
    (status line, headers and body), however slowly it trickles in. ``retries`` is how many times
    a failed exchange (network error, timeout, 5xx, garbled answer) is tried again, with the same
    request id, with exponential backoff and jitter starting at ``backoff`` seconds. ``deadline``
    bounds a whole ``send``/``status``/``balance`` call, every attempt and pause included: each
    attempt waits at most what is left of it, and a call that runs out ends in
    :class:`~mobilgroup_backends.errors.DeadlineExceeded`, which says the time spent and the
    attempts made. The default, 20 s, ends a call inside the 30 s that web servers and proxies
    commonly give a request (gunicorn's worker timeout, most load balancers), with time left to
    answer the user.

    ``sender``, ``transliterate``, ``valid_hours``, ``long_messages``, ``max_parts``,
    ``replace_unencodable`` and ``region`` are the message settings :meth:`prepare` (and so
    :meth:`send`) applies to every message whose call does not say otherwise. Plain
    ``http://`` endpoints are refused outside loopback unless ``allow_insecure_http`` is set,
    since the password travels in the body.

    A ``session`` given by the caller lends its headers, proxies and client certificate; the
    gateway's certificate is verified even when the session says ``verify=False`` (a warning
    says so: give ``ca_bundle`` to trust a private CA). Its stock transport is replaced by the
    client's own, which keeps the deadline; a custom transport adapter mounted on it is used as
    it is, and then bounds each read rather than the whole answer.
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
        transliterate: bool = True,
        valid_hours: int | None = None,
        long_messages: LongMessages = "error",
        replace_unencodable: bool = False,
        deadline: float = 20.0,
        max_parts: int | None = None,
        session: requests.Session | None = None,
        pool_size: int = 16,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        settings = Settings(user_id=str(user_id), login=login, password=password, sender=sender,
                            endpoint=endpoint, timeout=timeout, retries=retries, backoff=backoff,
                            allow_insecure_http=allow_insecure_http, region=region,
                            transliterate=transliterate, valid_hours=valid_hours,
                            long_messages=long_messages, replace_unencodable=replace_unencodable,
                            deadline=deadline, max_parts=max_parts)
        #: The settings this client applies and keeps (checked by the option table).
        self.settings = settings
        self.credentials = protocol.Credentials(settings.user_id, login, password)
        self.sender = settings.sender
        #: The country whose national numbers ``send`` understands (``8 903 ...``).
        self.region = settings.region
        self.endpoint = settings.endpoint
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.deadline = float(settings.deadline)
        self.on_attempt = on_attempt
        self.max_response_bytes = max_response_bytes
        self.pool_size = max(1, pool_size)
        if ca_bundle is not None and not os.path.exists(ca_bundle):
            raise ConfigurationError(
                "ca_bundle", ca_bundle, "no such file or folder",
                "give the path of a PEM file (or folder) with the CA certificates to trust")
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            transport = GatewayAdapter(pool_connections=1, pool_maxsize=self.pool_size)
            session.mount("https://", transport)
            session.mount("http://", transport)
        self._session = session
        # The environment is consulted here, once: Session.request would redo these look-ups
        # (proxies, no_proxy, CA bundle variables, netrc) on every single call.
        options = session.merge_environment_settings(
            self.endpoint, {}, True, ca_bundle if ca_bundle else None, None)
        self._proxies: MutableMapping[str, str] = options["proxies"]
        # Never None here: merge_environment_settings falls back to the session's own True.
        self._verify: bool | str = True if options["verify"] is None else options["verify"]
        if self._verify is False or session.verify is False:
            # Every request carries the password: a session that skips certificate checks
            # would hand it to whoever intercepts the connection.
            self._verify = self._verify or True
            logger.warning(
                "The session given to MobilgroupClient has verify=False; the gateway's "
                "certificate is verified anyway, because every request carries the password. "
                "To trust a private CA, give ca_bundle=PATH (or set REQUESTS_CA_BUNDLE).")
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
        adapter: BaseAdapter = session.get_adapter(self.endpoint)
        self._own_adapter: GatewayAdapter | None = None
        if type(adapter) is HTTPAdapter:
            # The stock transport cannot keep one deadline per attempt; a custom one the caller
            # mounted on purpose is left to do its job.
            adapter = self._own_adapter = GatewayAdapter(pool_connections=1,
                                                         pool_maxsize=self.pool_size)
        self._adapter = adapter
        # What every request of this client shares, made once: the stock path's request with
        # the URL (the transport finds its pool by it) and the head of the direct path.
        self._template = template
        self._head = request_head(self._url, self._headers)
        self._direct = adapter if type(adapter) is GatewayAdapter else None

    # --- construction from settings ---------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MobilgroupClient:
        kwargs: dict[str, Any] = {
            "sender": settings.sender, "endpoint": settings.endpoint,
            "timeout": settings.timeout, "retries": settings.retries,
            "backoff": settings.backoff, "allow_insecure_http": settings.allow_insecure_http,
            "region": settings.region, "transliterate": settings.transliterate,
            "valid_hours": settings.valid_hours, "long_messages": settings.long_messages,
            "replace_unencodable": settings.replace_unencodable, "deadline": settings.deadline,
            "max_parts": settings.max_parts,
        }
        kwargs.update(overrides)
        return cls(settings.user_id, settings.login, settings.password, **kwargs)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MobilgroupClient:
        """A client from ``mobilgroup://LOGIN:PASSWORD@USER_ID?sender=...&endpoint=...``: every
        option of the URL (``valid``, ``translit``, ``region``, ``deadline``...) is kept and
        applied."""
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
        if self._own_adapter is not None:
            self._own_adapter.close()

    def __enter__(self) -> MobilgroupClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- commands ---------------------------------------------------------------------------

    def prepare(
        self,
        phones: str | Iterable[str],
        text: str,
        *,
        sender: str | None = None,
        transliterate: bool | None = None,
        schedule: datetime | str | None = None,
        valid_hours: int | None = None,
        long_messages: LongMessages | None = None,
        replace_unencodable: bool | None = None,
        request_id: int | str | Sequence[int | str] | None = None,
        max_parts: int | None = None,
    ) -> Outgoing:
        """The message(s) the gateway will get, with every setting applied once: the message as
        plain data, to send now (:meth:`send_prepared`) or to store and send later as it is.

        Arguments left None take the client's settings (its URL's ``sender``, ``translit``,
        ``valid``, ``long_messages``, ``max_parts``, ``replace_unencodable``, ``region``). A text
        over the limit is split in parts (one request id each; at most ``max_parts``, the last
        cut), cut, or refused, as ``long_messages`` says.
        ``request_id`` gives the id of a one-part message, or one id per part (a sequence).
        Nothing is sent; a ``ValidationError`` names what is wrong.
        """
        config = self.settings
        return prepare(
            phones, text, account=self.credentials.user_id, region=self.region,
            sender=sender or self.sender,
            transliterate=config.transliterate if transliterate is None else transliterate,
            schedule=schedule,
            valid_hours=config.valid_hours if valid_hours is None else valid_hours,
            long_messages=cast(LongMessages, long_messages or config.long_messages),
            max_parts=config.max_parts if max_parts is None else max_parts,
            replace_unencodable=(config.replace_unencodable if replace_unencodable is None
                                 else replace_unencodable),
            request_id=request_id)

    def send_prepared(self, outgoing: Outgoing, *, resend: bool = False) -> Sent:
        """Send a prepared message as it is, part after part; one :class:`SendResult` per part.

        The first failure ends the call (the parts after it are not sent). Sending the same
        ``outgoing`` again with ``resend=True`` is always safe: a part the gateway has already
        accepted answers "accepted earlier" and goes out once. So after any failure whose
        verdict says to try again, store the message and resend it later, as it is, with
        ``resend=True``.
        """
        if not isinstance(outgoing, Outgoing):
            raise ValidationError("outgoing", type(outgoing).__name__, "not a prepared message",
                                  "make it with client.prepare() or Outgoing.from_dict()")
        if outgoing.account != self.credentials.user_id:
            raise ConfigurationError(
                "outgoing.account", outgoing.account,
                f"prepared for another account than this client's ({self.credentials.user_id})",
                "send it with a client of the account it was prepared for")
        parts = outgoing.parts
        if len(parts) == 1:  # most messages: no generator to drive
            return Sent((self._send_part(outgoing, parts[0], resend),))
        return Sent(self._send_part(outgoing, part, resend) for part in parts)

    def send(
        self,
        phones: str | Iterable[str],
        text: str,
        *,
        sender: str | None = None,
        transliterate: bool | None = None,
        schedule: datetime | str | None = None,
        valid_hours: int | None = None,
        request_id: int | str | None = None,
        resend: bool = False,
        replace_unencodable: bool | None = None,
    ) -> SendResult:
        """Send one text to one or more phones as one gateway request (one request id).

        The message is made by :meth:`prepare` (arguments left None take the client's
        settings), so everything is checked before anything is sent; a ``ValidationError``
        means nothing went out. ``transliterate=False`` sends the text as Unicode (the
        gateway's ``rus_sms=1``), which allows 64 characters instead of 140. A text over the
        limit is cut when the client's ``long_messages`` is ``truncate``; one that would go out
        in several parts is refused here: use :meth:`prepare` and :meth:`send_prepared`.

        ``resend=True`` says this ``request_id`` may already have been sent with this same message
        (a task redelivered, a sweep after a crash, a retry after ``maybe_sent``): the gateway's
        error 7 then means "accepted earlier" and the result says ``accepted_earlier``. Without
        it, error 7 counts as accepted only when an earlier attempt of this call may have reached
        the gateway; otherwise it is :class:`DuplicateRequestId` (the id was used for something
        else). A resend that fails without a gateway answer keeps ``maybe_sent=True``: the
        earlier call may still have sent it, so resend it again later with the same id.
        """
        outgoing = self.prepare(phones, text, sender=sender, transliterate=transliterate,
                                schedule=schedule, valid_hours=valid_hours,
                                replace_unencodable=replace_unencodable, request_id=request_id)
        if len(outgoing.parts) > 1:
            error = ValidationError(
                "text", protocol.fit_text(text, 40, "truncate")[0],
                f"goes out as {len(outgoing.parts)} messages, and send() sends one",
                "send it with client.send_prepared(client.prepare(...)), or make the client "
                "with long_messages='truncate'")
            error.request_id = outgoing.parts[0].request_id
            raise error
        return self._send_part(outgoing, outgoing.parts[0], resend)

    def _send_part(self, outgoing: Outgoing, part: Part, resend: bool) -> SendResult:
        rid = part.request_id
        body = protocol.build_send(self.credentials, phones=outgoing.phones, text=part.text,
                                   request_id=rid, sender=outgoing.sender,
                                   transliterate=outgoing.transliterate,
                                   schedule=outgoing.schedule, valid_hours=outgoing.valid_hours)

        def parse(data: bytes, attempt: int, reached: bool) -> tuple[bool, int]:
            try:
                answered = protocol.parse_send(data).request_id
            except DuplicateRequestId:
                if not (resend or reached):
                    raise
                return True, attempt  # an earlier copy got through; its answer was lost
            if answered is not None and answered != rid:
                # Not this request's answer (a proxy mixing up connections, a replayed
                # answer): whether ours was accepted is unknown, and only a resend under
                # its id can tell without sending it twice.
                raise ProtocolError(f"the answer names request id {answered}, not {rid}: it "
                                    f"is not this request's answer", request_id=rid)
            return False, attempt

        try:
            accepted_earlier, attempts = self._call("send", body, rid, parse, outgoing.phones)
        except MobilgroupError as exc:
            if resend and not isinstance(exc, GatewayError):
                # The caller said an earlier call may have sent this id; failing to reach the
                # gateway now does not say otherwise. A gateway refusal does: a copy it had
                # accepted would have been answered with error 7.
                exc.maybe_sent = True
            raise
        return SendResult(request_id=rid, phones=outgoing.phones, text=part.text,
                          sender=outgoing.sender, attempts=attempts,
                          accepted_earlier=accepted_earlier)

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
        :class:`SendResult`, or the :class:`MobilgroupError` that stopped it (a malformed row is
        a :class:`ValidationError`). Nothing raises for a row, so that rows already sent are
        never lost to a later bad one. A row without a ``request_id`` gets one before anything is
        sent, so every outcome, errors included, names its id.

        At most ``pool_size`` messages are in flight at once (one pooled connection each): a
        larger ``concurrency`` is lowered to it, with a warning; make the client with a larger
        ``pool_size`` to go wider.
        """
        signature = inspect.signature(self.send)
        calls = [_send_arguments(signature, index, message)
                 for index, message in enumerate(messages)]
        if not calls:
            return []

        def one(call: dict[str, Any] | ValidationError) -> SendResult | MobilgroupError:
            if isinstance(call, MobilgroupError):
                return call
            try:
                return self.send(**call)
            except MobilgroupError as exc:
                if exc.request_id is None:
                    exc.request_id = call.get("request_id")
                return exc

        if concurrency > self.pool_size:
            logger.warning("send_many: concurrency=%d lowered to the client's pool_size=%d; make "
                           "the client with pool_size=%d to send that many at once",
                           concurrency, self.pool_size, concurrency)
        workers = max(1, min(concurrency, self.pool_size, len(calls)))
        if workers == 1:
            return [one(call) for call in calls]
        return _in_workers(one, calls, workers)

    # --- retries ----------------------------------------------------------------------------

    def retry_delay(self, attempt_number: int) -> float:
        """Seconds to wait before retrying after failed attempt ``attempt_number`` (from 1).

        Exponential backoff with jitter, so that many clients do not retry in lockstep. Code
        that schedules its own retries of gateway calls (delivery tracking, outboxes) uses this
        rather than a formula of its own.
        """
        return backoff_delay(self.backoff, attempt_number)

    def longest_call(self) -> float:
        """Seconds one call can take at most: every attempt timing out while connecting and
        again while reading, and every pause between attempts at its ceiling. A lease that must
        cover a call (a task's claim on a message, a tracker's on a report) outlasts this."""
        attempts = self.retries + 1
        pauses = sum(backoff_delay(self.backoff, n, jitter=False)
                     for n in range(1, self.retries + 1))
        return min(2 * self.timeout * attempts + pauses, 2 * self.deadline)

    # --- the exchange -----------------------------------------------------------------------

    def _call(self, command: str, body: bytes, request_id: int | None,
              parse: Callable[[bytes, int, bool], T], phones: tuple[str, ...] = ()) -> T:
        """POST ``body`` and parse the answer, retrying what is safe to retry.

        ``parse`` gets the answer, the attempt number (from 1) and whether an earlier attempt of
        this call may have reached the gateway: only then can an error 7 be this call's own copy.
        Every error that ends the call carries ``request_id``, and ``maybe_sent`` is sticky
        over the attempts: true when any attempt may have reached the gateway, whatever the
        last one met (a refused connection after an answer lost in transit included).
        """
        attempt_number = 0
        reached = False
        began = time.monotonic()
        ends = began + self.deadline
        most = self.retries + 1
        while True:
            attempt_number += 1
            started = time.perf_counter()
            if self.on_attempt is not None:
                self.on_attempt(command, attempt_number, most)
            try:
                data = self._post(body, request_id, min(self.timeout, ends - time.monotonic()))
                result = parse(data, attempt_number, reached)
            except MobilgroupError as exc:
                if exc.request_id is None:
                    exc.request_id = request_id  # the parser cannot know it; the caller needs it
                # Something answered (a garbled answer) or the connection broke after the request
                # was written: the gateway may have this request.
                reached = reached or exc.maybe_sent
                exc.maybe_sent = reached
                retryable = (isinstance(exc, ProtocolError)
                             or (isinstance(exc, TransportError) and exc.retryable))
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("%s id=%s attempt %d failed after %.1f ms: %s", command,
                                 request_id, attempt_number, _ms(started), exc)
                if attempt_number > self.retries or not retryable:
                    raise
                pause = self.retry_delay(attempt_number)
                if ends - time.monotonic() < pause + MIN_ATTEMPT_SECONDS:
                    raise DeadlineExceeded(
                        f"{command} gave up after {time.monotonic() - began:.1f} s and "
                        f"{attempt_number} attempt(s): its deadline is {self.deadline:g} s; "
                        f"the last attempt: {exc}", elapsed=time.monotonic() - began,
                        attempts=attempt_number, deadline=self.deadline,
                        maybe_sent=reached, request_id=request_id) from exc
                time.sleep(pause)
                continue
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s id=%s to=%s ok in %.1f ms (attempt %d)", command, request_id,
                             ",".join(mask_phone(p) for p in phones) or "-", _ms(started),
                             attempt_number)
            return result

    def _post(self, body: bytes, request_id: int | None, timeout: float) -> bytes:
        timeout = max(timeout, MIN_ATTEMPT_SECONDS)
        attempt.begin(timeout)
        try:
            if self._direct is not None:
                # A kept-alive connection of our own transport: the pre-built head and the body
                # go straight onto it (transport.GatewayAdapter.exchange).
                try:
                    exchange = self._direct.exchange(self._template, self._head, body, timeout,
                                                     self._verify, self._cert, self._proxies)
                except requests.exceptions.RequestException as exc:
                    raise self._failure(exc, request_id, timeout) from None
                if exchange is not None:
                    answer = exchange.response
                    try:
                        return self._read(answer.status, answer.reason, answer.headers,
                                          answer.read1, request_id, timeout)
                    finally:
                        exchange.release()
            request = requests.PreparedRequest()
            request.method = "POST"
            request.url = self._url
            request.headers = CaseInsensitiveDict(self._headers)
            request.headers["Content-Length"] = str(len(body))
            request.body = body
            try:
                response = self._adapter.send(
                    request, stream=True, timeout=timeout,
                    proxies=self._proxies, verify=self._verify, cert=self._cert)
            except requests.exceptions.RequestException as exc:
                raise self._failure(exc, request_id, timeout) from None
            try:
                raw = response.raw
                read1 = getattr(raw, "read1", raw.read)
                return self._read(response.status_code, response.reason, response.headers,
                                  partial(read1, decode_content=False), request_id, timeout)
            finally:
                response.close()
        finally:
            attempt.end()

    def _failure(self, exc: requests.exceptions.RequestException,
                 request_id: int | None, timeout: float) -> TransportError:
        """What a failed exchange means for delivery: was anything sent, is a retry any use."""
        # Our transport knows whether the request was written; a caller's own transport does
        # not say, and then the error's kind decides (erring towards "may have been sent").
        tracked = self._own_adapter is not None or isinstance(self._adapter, GatewayAdapter)
        written = attempt.written if tracked else None
        cause = _innermost(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            if isinstance(cause, ssl.SSLCertVerificationError) or written is False:
                return _transport(f"TLS failed before the request was sent (the gateway's "
                                  f"certificate was not trusted or did not match, or the "
                                  f"handshake failed): {_reason(exc)}", request_id,
                                  retryable=False, maybe_sent=False)
            return _transport(f"TLS failed after the request was sent; the gateway may have it: "
                              f"{_reason(exc)}", request_id)
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _transport(f"timed out connecting to {self.endpoint} after {timeout:.3g} s",
                              request_id, maybe_sent=False, timed_out=True)
        if isinstance(exc, requests.exceptions.ReadTimeout) or (written and attempt.expired()):
            return _transport(f"no answer from {self.endpoint} within {timeout:.3g} s",
                              request_id, timed_out=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            # Refused or unresolvable: the request never left, so nothing can have been sent.
            never_sent = written is False or isinstance(cause, NewConnectionError)
            return _transport(f"connection to {self.endpoint} failed: {_reason(exc)}",
                              request_id, maybe_sent=not never_sent)
        return _transport(f"request to {self.endpoint} failed: {_reason(exc)}", request_id,
                          maybe_sent=written is not False)

    def _read(self, status: int, reason: str, headers: Mapping[str, str] | Any,
              read: Callable[[int], bytes], request_id: int | None, timeout: float) -> bytes:
        """The body of an answer (``read`` returns what has arrived of it, up to n bytes),
        refused when it is not a 200, too large, or late."""
        if status != 200:
            if 300 <= status < 400:
                raise _transport(f"HTTP {status} redirect to {headers.get('Location')!r} "
                                 f"refused: the request carries the password", request_id,
                                 status_code=status, retryable=False)
            retryable = status >= 500 or status in (408, 429)
            raise _transport(f"HTTP {status} {reason} from {self.endpoint}", request_id,
                             status_code=status, retryable=retryable)
        cap = self.max_response_bytes
        declared = headers.get("Content-Length") or ""
        expected = int(declared) if declared.isdigit() and len(declared) < 19 else None
        if expected is not None and expected > cap:
            raise ProtocolError(f"answer of {declared} bytes refused: more than {cap} bytes is "
                                f"not the gateway talking", request_id=request_id)
        # Read in pieces against the attempt's deadline (the transport enforces it on every
        # read; a caller's own transport only bounds each read, so it is checked here too).
        deadline = attempt.deadline if attempt.deadline is not None else (
            time.monotonic() + timeout)
        chunks: list[bytes] = []
        size = 0
        try:
            while expected is None or size < expected:
                chunk = read(min(cap + 1 - size, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    raise ProtocolError(f"answer refused after {cap} bytes: too large to be the "
                                        f"gateway's", request_id=request_id)
                if time.monotonic() > deadline:
                    raise _late(self, request_id, timeout)
        except MobilgroupError:
            raise
        except Exception as exc:  # urllib3 raises its own types mid-body; none may escape
            if time.monotonic() >= deadline:
                raise _late(self, request_id, timeout) from None
            raise _transport(f"the answer from {self.endpoint} broke off: {_reason(exc)}",
                             request_id) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# --- one client per configuration per process ---------------------------------------------------

_shared: dict[Settings, MobilgroupClient] = {}
_shared_lock = threading.Lock()


def shared_client(settings: Settings) -> MobilgroupClient:
    """The process's one client for ``settings``: made on first use, then shared.

    Adapters that send one message per call (Django's ``send_sms`` without a connection, a new
    ``Apprise()`` per notification) use it, so that every message after the first reuses a
    kept-alive connection instead of paying a TCP and TLS handshake. Thread-safe; a forked
    child makes its own (the parent's sockets are not its to use); every one is closed at exit.
    Do not close it: it is not yours.
    """
    client = _shared.get(settings)
    if client is None:
        with _shared_lock:
            client = _shared.get(settings)
            if client is None:
                client = MobilgroupClient.from_settings(settings)
                _shared[settings] = client
    return client


def _forget_shared_after_fork() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()  # it may have been held by a thread that does not exist here
    _shared.clear()  # dropped, not closed: the sockets are shared with the parent


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        clients = list(_shared.values())
        _shared.clear()
    for client in clients:
        client.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_shared_after_fork)


def backoff_delay(backoff: float, attempt_number: int, *, jitter: bool = True,
                  cap: float = 30.0) -> float:
    """Seconds before retry number ``attempt_number`` (from 1): ``backoff`` doubled per attempt,
    at most ``cap`` (30 s), with jitter over its upper half so that many clients do not retry in
    lockstep. ``jitter=False`` gives the ceiling. Task queues that retry a send use it too, with
    their own ``backoff`` and ``cap``."""
    ceiling = min(cap, backoff * (2 ** min(max(attempt_number, 1) - 1, 16)))
    return random.uniform(ceiling / 2, ceiling) if jitter else ceiling


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


def _late(client: MobilgroupClient, request_id: int | None, timeout: float) -> TransportError:
    return _transport(f"the answer from {client.endpoint} took longer than {timeout:.3g} s "
                      f"to arrive", request_id, timed_out=True)


def _in_workers(work: Callable[[Any], T], items: list[Any], workers: int) -> list[T]:
    """``[work(item) for item in items]`` on ``workers`` threads (the caller's among them), each
    taking the next item as it finishes one: no queue, no future per item, one hand-off per
    thread rather than per item. An exception ``work`` lets out is raised here, once the threads
    have stopped (each stops taking items when one has failed)."""
    results: list[Any] = [None] * len(items)
    taken = iter(range(len(items)))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run() -> None:
        while not failures:
            with lock:
                index = next(taken, None)
            if index is None:
                return
            try:
                results[index] = work(items[index])
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=run, name=f"mobilgroup-send-{n}", daemon=True)
               for n in range(1, workers)]
    for thread in threads:
        thread.start()
    try:
        run()
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return results


def _send_arguments(signature: inspect.Signature, index: int,
                    message: object) -> dict[str, Any] | ValidationError:
    """One row of ``send_many`` as ``send`` keyword arguments with a request id, or the
    ValidationError that says what is wrong with the row."""
    field = f"messages[{index}]"
    if isinstance(message, Mapping):
        kwargs = dict(message)
    elif isinstance(message, tuple) and len(message) == 2:
        kwargs = {"phones": message[0], "text": message[1]}
    else:
        return ValidationError(field, type(message).__name__,
                               "not a mapping of send() arguments nor a (phones, text) tuple",
                               "give {'phones': ..., 'text': ...} or (phones, text)")
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        return ValidationError(field, sorted(map(str, kwargs)), str(exc),
                               "use the keyword arguments of MobilgroupClient.send")
    try:
        if kwargs.get("request_id") is None:
            kwargs["request_id"] = protocol.new_request_id()
        else:
            kwargs["request_id"] = protocol.check_request_id(kwargs["request_id"])
    except ValidationError as exc:
        return exc
    return kwargs

