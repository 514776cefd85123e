"""The emulator as users see it: a gateway on 127.0.0.1 with an outbox, a clock and faults."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from urllib.parse import quote, urlencode

from .accounts import DEFAULT_ACCOUNT, Account, to_decimal
from .clock import Clock
from .codes import last_code_message
from .faults import PROCESSED, Fault, Faults
from .gateway import Gateway, PhoneRule, Reply
from .guard import Guard
from .records import Exchange, Journal, OutboxMessage
from .requestlog import log_exchange
from .server import Connection, HttpRequest, HttpServer
from .web import Web
from .wire import CONTENT_TYPE

__all__ = ["PATH", "Emulator"]

#: The only path the gateway serves.
PATH = "/extxml.php"

_JUNK_HEAD = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n'
              b"<result>OK</result>\n<error>0</error>\n")
_JUNK_CHUNK = (b"<junk>" + b"x" * 1010 + b"</junk>\n") * 64


def _junk(size: int) -> Iterator[bytes]:
    """``size`` bytes that look like the start of an endless gateway answer."""
    head = _JUNK_HEAD[:size]
    yield head
    left = size - len(head)
    while left > 0:
        chunk = _JUNK_CHUNK[:left]
        left -= len(chunk)
        yield chunk


def _delay(value: float | timedelta) -> timedelta:
    delay = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delay < timedelta(0):
        raise ValueError("delays cannot be negative")
    return delay


class Emulator:
    """The Mobilgroup gateway's server side, on 127.0.0.1, for tests, demos and benchmarks.

    Use it as a context manager (``with Emulator() as gateway: ...``), or ``start()``/``stop()``,
    or ``serve_forever()`` from the command line. Every setting below is also an attribute that
    may be changed while it runs.

    :param accounts: accounts (or ``USER_ID:LOGIN:PASSWORD[:BALANCE]`` strings); default one
        account ``1000`` / ``demo`` / ``demo-password``.
    :param port: 0 picks a free port; after ``stop()`` a new ``start()`` reuses the same port.
    :param ssl_context: a server-side context to serve HTTPS instead of HTTP.
    :param quirky: answer in the gateway's documented quirky form (``</ id>``, ``</response >``).
    :param latency: seconds added to every answer (each connection waits on its own).
    :param price_per_sms: taken from the balance per recipient of an accepted send.
    :param start_time: the clock's start (naive, gateway-local); default now, to the minute.
    :param freeze_clock: keep the clock still unless a test advances it.
    :param send_delay: from the start of sending (now, or the schedule) to status 8 "sent".
    :param deliver_delay: from "sent" to status 1 "delivered".
    :param undeliverable: phones that stay "sent" until their lifetime runs out, then status 2.
    :param failing: phones that go to status 16 "error" when sent.
    :param idle_timeout: seconds an idle keep-alive connection is kept open.
    :param history_limit: keep at most this many ``outbox`` and ``requests`` entries (oldest
        dropped); for long benchmark runs. Default: keep everything.
    :param allowed_hosts: names (or addresses) besides 127.0.0.1, localhost, [::1] and ``host``
        that requests may carry in ``Host``: a container's service name, say. A request for any
        other name is answered 421 (see :mod:`.guard`).
    """

    def __init__(
        self,
        accounts: Iterable[Account | str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        quirky: bool = False,
        latency: float = 0.0,
        price_per_sms: Decimal | int | str = Decimal("1"),
        start_time: datetime | None = None,
        freeze_clock: bool = False,
        send_delay: float | timedelta = 1.0,
        deliver_delay: float | timedelta = 5.0,
        undeliverable: PhoneRule = r"0000$",
        failing: PhoneRule = r"9999$",
        idle_timeout: float = 30.0,
        history_limit: int | None = None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.clock = Clock(start_time, frozen=freeze_clock)
        self.gateway = Gateway(
            self.clock,
            price_per_sms=to_decimal(price_per_sms, "price_per_sms"),
            send_delay=_delay(send_delay),
            deliver_delay=_delay(deliver_delay),
            undeliverable=undeliverable,
            failing=failing,
            quirky=quirky,
            history_limit=history_limit,
        )
        self.faults = Faults()
        self.requests: Journal[Exchange] = Journal(history_limit)
        self.latency = latency
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self._host, self._port = host, port
        self._allowed_hosts = tuple(allowed_hosts)
        self.guard = Guard(host, self._allowed_hosts, tls=ssl_context is not None)
        self._server: HttpServer | None = None
        self._past_connections = 0
        self._past_errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._web = Web(self)
        self._opening_balances: dict[str, Decimal] = {}
        if accounts is None:
            user_id, login, password = DEFAULT_ACCOUNT
            self.add_account(user_id=user_id, login=login, password=password)
        for account in accounts or ():
            self.add_account(account)

    # --- accounts -------------------------------------------------------------------------------

    @property
    def accounts(self) -> dict[str, Account]:
        """Accounts by user id. Change them freely (``blocked``, ``balance``) while it runs."""
        return self.gateway.accounts

    @property
    def account(self) -> Account:
        """The first account: the one :meth:`url` uses by default."""
        try:
            return next(iter(self.gateway.accounts.values()))
        except StopIteration:
            raise LookupError("the emulator has no accounts") from None

    def add_account(
        self,
        account: Account | str | None = None,
        *,
        user_id: str | None = None,
        login: str | None = None,
        password: str | None = None,
        balance: Decimal | int | str = Decimal("100"),
        blocked: bool = False,
        sender: str = "Mobilgrup",
    ) -> Account:
        """Add an account, given whole, as a ``USER_ID:LOGIN:PASSWORD[:BALANCE]`` string, or by
        fields. An account with the same user id is replaced; the ids it used stay used."""
        if account is not None and (user_id, login, password) != (None, None, None):
            raise TypeError("give either an account or its fields, not both")
        if isinstance(account, str):
            account = Account.parse(account)
        elif account is None:
            if user_id is None or login is None or password is None:
                raise TypeError("give an Account, a spec string, or user_id, login and password")
            account = Account(user_id, login, password, to_decimal(balance, "balance"), blocked,
                              sender)
        self._opening_balances[account.user_id] = account.balance
        return self.gateway.add_account(account)

    def reset(self) -> None:
        """Start afresh without restarting: forget every accepted message (their ids may be used
        again) and exchange, drop the faults, and give each account its opening balance back.
        Settings, accounts and the clock stay as they are. The inbox page's "Clear" does this."""
        self.gateway.forget()
        self.requests.clear()
        self.faults.clear()
        for user_id, account in list(self.accounts.items()):
            opening = self._opening_balances.get(user_id)
            if opening is not None:
                account.balance = opening

    # --- settings that live in the gateway ----------------------------------------------------

    @property
    def outbox(self) -> Journal[OutboxMessage]:
        """Every accepted message, in order (thread-safe; ``wait_for(n)`` blocks until n)."""
        return self.gateway.outbox

    @property
    def quirky(self) -> bool:
        return self.gateway.quirky

    @quirky.setter
    def quirky(self, value: bool) -> None:
        self.gateway.quirky = bool(value)

    @property
    def price_per_sms(self) -> Decimal:
        return self.gateway.price_per_sms

    @price_per_sms.setter
    def price_per_sms(self, value: Decimal | int | str) -> None:
        self.gateway.price_per_sms = to_decimal(value, "price_per_sms")

    @property
    def send_delay(self) -> timedelta:
        return self.gateway.send_delay

    @send_delay.setter
    def send_delay(self, value: float | timedelta) -> None:
        self.gateway.send_delay = _delay(value)

    @property
    def deliver_delay(self) -> timedelta:
        return self.gateway.deliver_delay

    @deliver_delay.setter
    def deliver_delay(self, value: float | timedelta) -> None:
        self.gateway.deliver_delay = _delay(value)

    @property
    def undeliverable(self) -> PhoneRule:
        return self.gateway.undeliverable

    @undeliverable.setter
    def undeliverable(self, rule: PhoneRule) -> None:
        self.gateway.undeliverable = rule

    @property
    def failing(self) -> PhoneRule:
        return self.gateway.failing

    @failing.setter
    def failing(self, rule: PhoneRule) -> None:
        self.gateway.failing = rule

    # --- observation ---------------------------------------------------------------------------

    def last_code(self, phone: str, timeout: float = 0.0) -> str | None:
        """The one-time code of the newest accepted message to ``phone`` (written any way:
        ``+7 900 000-00-00``), or None; waits up to ``timeout`` seconds for one to arrive."""
        deadline = time.monotonic() + timeout
        while True:
            seen = len(self.outbox)
            found = last_code_message(self.outbox, phone)
            left = deadline - time.monotonic()
            if found is not None or left <= 0:
                return found[1] if found else None
            # Woken by the next message; a short cap, as a reset may empty the outbox meanwhile.
            self.outbox.wait_for(seen + 1, min(left, 0.2))

    def status_queries(self, request_id: int, user_id: str | None = None) -> int:
        """How many ``status`` requests for ``request_id`` the gateway processed (any answer)."""
        return sum(
            1 for exchange in self.requests
            if exchange.command == "status" and exchange.request_id == request_id
            and (user_id is None or exchange.user_id == user_id)
        )

    def refuse_connections(self, seconds: float) -> None:
        """Refuse new connections for ``seconds`` (the port is closed, then listened on again),
        as a gateway that restarts does. Returns once connections are refused."""
        server = self._server
        if server is None:
            raise RuntimeError("the emulator is not running")
        server.refuse_connections(seconds)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (across restarts): proves keep-alive reuse."""
        server = self._server
        return self._past_connections + (server.connections if server else 0)

    @property
    def open_connections(self) -> int:
        """Connections being served right now (each has its own thread)."""
        server = self._server
        return server.threads if server else 0

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised inside the emulator while answering (bugs); empty when healthy."""
        server = self._server
        return self._past_errors + (list(server.errors) if server else [])

    # --- addresses -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    def _running_server(self) -> HttpServer:
        if self._server is None:
            raise RuntimeError("the emulator is not running; use it in a with block or start() it")
        return self._server

    @property
    def host(self) -> str:
        return str(self._running_server().host)

    @property
    def port(self) -> int:
        return int(self._running_server().port)

    @property
    def endpoint(self) -> str:
        """The URL a client posts to, e.g. ``http://127.0.0.1:PORT/extxml.php``."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{PATH}"

    def url(self, *phones: str, account: Account | str | None = None, host: str | None = None,
            **query: object) -> str:
        """The ``mobilgroup://`` URL that points a client or adapter at this emulator.

        ``account`` is an Account or a user id (default: the first account); ``host`` the
        address clients reach the emulator by, when that is not the one it listens on (it
        listens on 0.0.0.0, say); ``query`` adds options such as ``sender="Shop"`` after
        ``endpoint``.
        """
        endpoint = self.endpoint
        if host is not None:
            scheme = "https" if self.ssl_context is not None else "http"
            shown = f"[{host}]" if ":" in host else host
            endpoint = f"{scheme}://{shown}:{self.port}{PATH}"
        if account is None:
            account = self.account
        elif isinstance(account, str):
            account = self.accounts[account]
        path = "".join("/" + quote(phone, safe="") for phone in phones)
        options = urlencode({"endpoint": endpoint, **{k: str(v) for k, v in query.items()}},
                            quote_via=quote)
        login, password = quote(account.login, safe=""), quote(account.password, safe="")
        return f"mobilgroup://{login}:{password}@{account.user_id}{path}?{options}"

    # --- life ----------------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Start serving in background threads. Returns the emulator."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the emulator is already running")
            self.guard = Guard(self._host, self._allowed_hosts, tls=self.ssl_context is not None)
            server = HttpServer(self._answer, self._host, self._port,
                                ssl_context=self.ssl_context, idle_timeout=self.idle_timeout)
            self._port = server.port  # a restart keeps the endpoint
            server.start()
            self._server = server
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, close every connection and join every thread (bounded). Idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop(timeout)
            self._past_connections += server.connections
            self._past_errors.extend(server.errors)

    def serve_forever(self) -> None:
        """Serve until interrupted (Ctrl-C) or stopped from another thread: the command line's
        loop. Waits in short steps so that the interrupt is seen on every platform."""
        if self._server is None:
            self.start()
        server = self._server
        try:
            while server is not None and not server.stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.endpoint if self._server is not None else "stopped"
        return f"Emulator({where}, accounts={list(self.accounts)!r}, quirky={self.quirky!r})"

    # --- answering -----------------------------------------------------------------------------

    def _answer(self, request: HttpRequest, conn: Connection) -> None:
        """The application behind the HTTP server: the gateway's endpoint, or the inbox page and
        its API on every other path; nothing for a request the guard refuses."""
        refusal = self.guard.refusal(request, endpoint=request.path == PATH)
        if refusal is not None:
            refusal.answer(request, conn)
            return
        if request.path != PATH:
            self._web.handle(request, conn)
            return
        if request.method != "POST":
            conn.respond(405, b"the gateway takes POST only\n", headers=(("Allow", "POST"),))
            return
        started = time.perf_counter()
        exchange = self._exchange(request, conn)
        log_exchange(exchange, (time.perf_counter() - started) * 1000)

    def _exchange(self, request: HttpRequest, conn: Connection) -> Exchange:
        """Answer one request to the endpoint, applying any fault; what became of it."""
        fault = self.faults.take()
        if fault is None:
            reply = self.gateway.handle(request.body)
            exchange = Exchange(reply.command, reply.error, None, reply.request_id,
                                reply.user_id, self.clock.now(), reply.phones)
            self.requests.append(exchange)
            if self.latency > 0 and not conn.sleep(self.latency):
                conn.abort()
                return exchange
            conn.respond(200, reply.body, CONTENT_TYPE)
            return exchange
        return self._inflict(fault, request, conn)

    def _inflict(self, fault: Fault, request: HttpRequest, conn: Connection) -> Exchange:
        kind = fault.kind
        reply = self.gateway.handle(request.body) if kind in PROCESSED else None
        exchange = Exchange(
            reply.command if reply else None, reply.error if reply else None, kind,
            reply.request_id if reply else None, reply.user_id if reply else None,
            self.clock.now(), reply.phones if reply else ())
        self.requests.append(exchange)
        self._inflicted(fault, reply, conn)
        return exchange

    def _inflicted(self, fault: Fault, reply: Reply | None, conn: Connection) -> None:
        kind = fault.kind
        if kind in ("close_before", "close_after"):
            conn.abort()
            return
        if kind == "restart":
            conn.server.refuse_connections(float(fault["seconds"]))
            conn.abort()
            return
        if kind == "tls_corrupt_after":
            conn.corrupt_record()
            return
        if kind == "trickle_headers" and reply is not None:
            conn.trickle(200, reply.body, CONTENT_TYPE, float(fault["interval"]))
            return
        if kind == "oversized":
            size = int(fault["size"])
            conn.stream(200, size, _junk(size), CONTENT_TYPE)
            return
        wait = self.latency + (float(fault["seconds"]) if kind == "delay" else 0.0)
        if wait > 0 and not conn.sleep(wait):
            conn.abort()
            return
        if reply is not None and kind == "delay":
            conn.respond(200, reply.body, CONTENT_TYPE)
        elif kind == "garbage":
            conn.respond(200, bytes(fault["body"]), CONTENT_TYPE)
        elif kind == "body":
            headers = fault["headers"]
            extra = headers.items() if isinstance(headers, dict) else headers
            conn.respond(int(fault["status"]), bytes(fault["body"]), str(fault["content_type"]),
                         headers=[(str(name), str(value)) for name, value in extra])
        else:  # http_500
            conn.respond(int(fault["status"]), b"Internal Server Error\n")
