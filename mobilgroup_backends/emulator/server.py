"""A small threaded HTTP/1.0 and HTTP/1.1 server, built for being benchmarked against.

Why not :mod:`http.server`: its handler writes the status line, the headers and the body in
separate ``send`` calls. With Nagle's algorithm on one side and delayed ACKs on the other, the
body then waits about 40 ms for an acknowledgement, which would cap any benchmark at 25 requests
per second per connection. Here every answer leaves in one ``sendall`` of one buffer, accepted
sockets get ``TCP_NODELAY``, and the per-request parsing is a handful of ``readline`` calls.

It also takes requests exactly as the gateway's PHP example writes them: HTTP/1.0, then the body
followed by CRLFs that ``Content-length`` does not count. Stray blank lines before a request line
are skipped, and a connection the server closes is closed gracefully (write side first, unread
input drained) so that such leftovers never turn the close into a reset that eats the answer.

One thread per connection (daemon threads, tracked so that :meth:`HttpServer.stop` can close
their sockets and join them), so a slow answer on one connection never delays another.
"""

from __future__ import annotations

import contextlib
import http
import io
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

__all__ = ["Connection", "HttpRequest", "HttpServer"]

MAX_LINE = 8192
MAX_HEADERS = 100
MAX_BLANK_LINES = 8
SERVER_NAME = b"mobilgroup-emulator"


@dataclass
class HttpRequest:
    """One parsed request. Header names are lower-case; ``path`` has no query string."""

    method: str
    target: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class BadRequest(Exception):
    """The request cannot be read; answer ``status`` and close the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Closed(Exception):
    """The peer went away between requests, or in the middle of one."""


App = Callable[[HttpRequest, "Connection"], None]


def _shutdown(sock: socket.socket, how: int) -> None:
    """Shut down the TCP socket itself, even under TLS (no close_notify, and never raises)."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, how)


class Connection:
    """One accepted client connection, as the application sees it while answering a request.

    The application answers each request exactly once: :meth:`respond`, :meth:`stream` or
    :meth:`abort`.
    """

    def __init__(self, sock: socket.socket, server: HttpServer) -> None:
        self.sock = sock
        self.server = server
        self.closed = False
        self.answered = False
        self.keep_alive = True
        self.head = False
        self._head_cache = server.head_cache

    def respond(self, status: int, body: bytes, content_type: str = "text/plain",
                headers: Iterable[tuple[str, str]] = ()) -> None:
        """Send a complete answer in a single write."""
        self.answered = True
        try:
            self.sock.sendall(self._answer(status, body, content_type, headers))
        except OSError:
            self.closed = True

    def _answer(self, status: int, body: bytes, content_type: str,
                headers: Iterable[tuple[str, str]] = ()) -> bytes:
        key = (status, content_type, self.keep_alive)
        prefix = self._head_cache.get(key)
        if prefix is None:
            prefix = _status_head(status, content_type, self.keep_alive)
            self._head_cache[key] = prefix
        extra = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
        payload = b"" if self.head else body
        return b"".join((prefix, extra, b"Content-Length: ", str(len(body)).encode("ascii"),
                         b"\r\n\r\n", payload))

    def trickle(self, status: int, body: bytes, content_type: str, interval: float) -> None:
        """Send the status line and headers one byte per ``interval`` seconds, then the body, and
        close: a gateway (or a middlebox) stalling an answer while it looks alive."""
        self.answered = True
        self.keep_alive = False
        data = self._answer(status, body, content_type)
        head = data.index(b"\r\n\r\n") + 4
        try:
            for offset in range(head):
                self.sock.sendall(data[offset:offset + 1])
                if not self.sleep(interval):
                    break
            else:
                self.sock.sendall(data[head:])
        except OSError:
            pass
        self.closed = True

    def corrupt_record(self) -> None:
        """Write a TLS record that cannot be decrypted (bytes that do not belong to the
        session), then close: the peer's TLS layer fails with a bad record MAC. On plain HTTP,
        the same bytes are just a broken answer."""
        self.answered = True
        self.keep_alive = False
        record = b"\x17\x03\x03\x00\x40" + bytes(range(64))
        with contextlib.suppress(OSError):
            # Under the TLS layer, onto the TCP stream itself.
            socket.socket.sendall(self.sock, record)
        self.closed = True

    def stream(self, status: int, length: int, chunks: Iterable[bytes],
               content_type: str = "text/plain") -> None:
        """Send ``length`` bytes from ``chunks`` and close; stop quietly when the peer leaves."""
        self.answered = True
        self.keep_alive = False
        head = _status_head(status, content_type, False) + (
            b"Content-Length: " + str(length).encode("ascii") + b"\r\n\r\n")
        try:
            self.sock.sendall(head)
            for chunk in chunks:
                if self.server.stopping.is_set():
                    break
                self.sock.sendall(chunk)
        except OSError:
            pass
        self.closed = True

    def abort(self) -> None:
        """Close the connection without answering."""
        self.answered = True
        self.keep_alive = False
        self.closed = True

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the server stops first; True when the wait ran its course."""
        if seconds <= 0:
            return not self.server.stopping.is_set()
        return not self.server.stopping.wait(seconds)


def _status_head(status: int, content_type: str, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    connection = b"keep-alive" if keep_alive else b"close"
    return b"".join((
        b"HTTP/1.1 ", str(status).encode("ascii"), b" ", reason.encode("latin-1"), b"\r\n",
        b"Server: ", SERVER_NAME, b"\r\n",
        b"Content-Type: ", content_type.encode("latin-1"), b"\r\n",
        b"Connection: ", connection, b"\r\n",
    ))


def _read_line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BadRequest(431, "line too long")
    return line


def read_request(rfile: BinaryIO, conn: Connection, max_body: int) -> HttpRequest | None:
    """The next request on the connection, or None when the peer closed it between requests."""
    line = _read_line(rfile)
    blank = 0
    while line in (b"\r\n", b"\n"):
        blank += 1
        if blank > MAX_BLANK_LINES:
            raise BadRequest(400, "too many blank lines")
        line = _read_line(rfile)
    if not line:
        return None
    try:
        method, target, version = line.decode("ascii").split()
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "malformed request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, "unsupported HTTP version")
    headers: dict[str, str] = {}
    lines = 0
    while True:
        line = _read_line(rfile)
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise Closed
        lines += 1  # lines, not names: a repeated name is folded into one, and still costs
        if lines > MAX_HEADERS:
            raise BadRequest(431, "too many header fields")
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, "malformed header field")
        name, value = name.lower(), value.strip()
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise BadRequest(400, "conflicting Content-Length")
            value = headers[name] + ", " + value
        headers[name] = value
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    # HTTP/1.1 keeps the connection unless told not to; HTTP/1.0 closes it unless asked to keep.
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    conn.keep_alive = keep_alive
    conn.head = method == "HEAD"
    body = _read_body(rfile, conn, headers, version, max_body)
    path = target
    if "://" in path:  # absolute form, as sent to proxies
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    path = path.partition("?")[0]
    return HttpRequest(method, target, path, version, headers, body, keep_alive)


def _read_body(rfile: BinaryIO, conn: Connection, headers: dict[str, str], version: str,
               max_body: int) -> bytes:
    coding = headers.get("transfer-encoding")
    length_text = headers.get("content-length")
    if coding is not None:
        if coding.rsplit(",", 1)[-1].strip().lower() != "chunked":
            raise BadRequest(501, "unsupported transfer coding")
        _continue(conn, headers, version)
        return _read_chunked(rfile, max_body)
    if length_text is None:
        return b""
    if not (length_text.isascii() and length_text.isdigit()):
        raise BadRequest(400, "malformed Content-Length")
    length = int(length_text)
    if length > max_body:
        raise BadRequest(413, "body too large")
    if length == 0:
        return b""
    _continue(conn, headers, version)
    body = rfile.read(length)
    if len(body) < length:
        raise Closed
    return body


def _continue(conn: Connection, headers: dict[str, str], version: str) -> None:
    """Answer ``Expect: 100-continue`` (curl sends it for larger bodies)."""
    if version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
        conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


def _read_chunked(rfile: BinaryIO, max_body: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = _read_line(rfile).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest(400, "malformed chunk size") from None
        if size < 0:
            raise BadRequest(400, "malformed chunk size")
        if size == 0:
            break
        total += size
        if total > max_body:
            raise BadRequest(413, "body too large")
        chunk = rfile.read(size)
        end = rfile.read(2)
        if len(chunk) < size or len(end) < 2:
            raise Closed
        if end != b"\r\n":
            raise BadRequest(400, "malformed chunk")
        parts.append(chunk)
    for _ in range(MAX_HEADERS):  # trailer fields, ignored
        line = _read_line(rfile)
        if line in (b"\r\n", b"\n", b""):
            break
    return b"".join(parts)


class _RequestClock(io.RawIOBase):
    """The connection's input, read against the deadline of the request being read."""

    def __init__(self, sock: socket.socket, idle_timeout: float) -> None:
        super().__init__()
        self.sock = sock
        self.idle_timeout = idle_timeout
        self.deadline = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(min(left, self.idle_timeout))
        return self.sock.recv_into(buffer)


class HttpServer:
    """Accepts connections on ``host:port`` and hands each request to ``app``.

    ``stop()`` is complete: it stops accepting, shuts down every open connection (idle keep-alive
    ones included), interrupts waits made through :meth:`Connection.sleep`, and joins every thread
    within a bounded time.
    """

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 30.0,
        max_body: int = 1024 * 1024,
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self.stopping = threading.Event()
        self.connections = 0
        self.errors: list[BaseException] = []
        self.head_cache: dict[tuple[int, str, bool], bytes] = {}
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        # A deep backlog: load tests open hundreds of connections at once, and a full queue
        # costs each extra one a second of SYN retransmission.
        self._listener = socket.create_server((host, port), backlog=1024)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._accept_thread: threading.Thread | None = None
        self.host, self.port = self._listener.getsockname()[:2]
        self._refuse_until = 0.0
        self._refusing = threading.Event()

    # --- life -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._accept_thread is not None:
            raise RuntimeError("the server was already started")
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"emulator-accept-{self.port}", daemon=True)
        self._accept_thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release everything, waiting at most about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for sock in self._sockets:
                _shutdown(sock, socket.SHUT_RDWR)
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    def refuse_connections(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (new connections are refused, as by a gateway that is
        restarting), then listen on the same port again. Returns once connections are refused."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            self._refusing.clear()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"r")
        self._refusing.wait(2.0)

    @property
    def threads(self) -> int:
        """Connection threads still running."""
        with self._lock:
            return len(self._threads)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                        if self.stopping.is_set() or not self._refuse(selector):
                            return
                        break
                    try:
                        sock, _addr = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        if self.stopping.is_set():
                            return
                        time.sleep(0.01)  # e.g. out of file descriptors: do not spin
                        continue
                    self._spawn(sock)

    def _refuse(self, selector: selectors.BaseSelector) -> bool:
        """Close the listener until the refusal ends, then listen again; False when stopping."""
        selector.unregister(self._listener)
        self._listener.close()
        self._refusing.set()
        while (left := self._refuse_until - time.monotonic()) > 0:
            if self.stopping.wait(left):
                return False
        self._listener = socket.create_server((self.host, self.port), backlog=1024)
        self._listener.setblocking(False)
        selector.register(self._listener, selectors.EVENT_READ)
        return True

    def _spawn(self, sock: socket.socket) -> None:
        thread = threading.Thread(target=self._serve, args=(sock,), daemon=True,
                                  name=f"emulator-conn-{self.port}-{self.connections + 1}")
        with self._lock:
            self.connections += 1
            self._threads.add(thread)
            self._sockets.add(sock)
        thread.start()

    # --- one connection ------------------------------------------------------------------------

    def _track(self, old: socket.socket, new: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(old)
            self._sockets.add(new)
        if self.stopping.is_set():
            _shutdown(new, socket.SHUT_RDWR)

    def _serve(self, sock: socket.socket) -> None:
        linger = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.idle_timeout)
            if self.ssl_context is not None:
                plain = sock
                sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                    do_handshake_on_connect=False)
                self._track(plain, sock)
                sock.do_handshake()
            linger = self._exchange_all(sock)
        except (OSError, Closed):
            pass
        except BaseException as exc:  # a bug: keep it for tests to see, never kill the server
            self.errors.append(exc)
        finally:
            self._close(sock, linger)
            with self._lock:
                self._sockets.discard(sock)
                self._threads.discard(threading.current_thread())

    def _exchange_all(self, sock: socket.socket) -> bool:
        """Serve requests until one side closes; True when this side decided to close."""
        conn = Connection(sock, self)
        clock = _RequestClock(sock, self.idle_timeout)
        with io.BufferedReader(clock) as rfile:
            while not self.stopping.is_set():
                conn.answered = False
                # The whole request (and the wait for it) within idle_timeout, so that a peer
                # sending a byte now and then cannot keep the connection for ever.
                clock.deadline = time.monotonic() + self.idle_timeout
                try:
                    request = read_request(rfile, conn, self.max_body)
                except BadRequest as exc:
                    conn.keep_alive = False
                    conn.respond(exc.status, f"{exc}\n".encode())
                    return True
                if request is None:
                    return False
                try:
                    self.app(request, conn)
                except Exception as exc:
                    self.errors.append(exc)
                    conn.keep_alive = False
                    if not conn.answered:
                        conn.respond(500, b"internal error in the emulator\n")
                    return True
                if conn.closed or not conn.keep_alive:
                    return True
        return True

    def _close(self, sock: socket.socket, linger: bool) -> None:
        """Close so that the answer survives: write side first, then drain what the peer sent.

        Closing with unread input (the PHP example's trailing CRLFs) would send a reset, and a
        reset may overtake the answer still in flight. Bounded in time; stop() cuts it short.
        """
        if linger and not self.stopping.is_set():
            _shutdown(sock, socket.SHUT_WR)
            deadline = time.monotonic() + 2.0
            with contextlib.suppress(OSError, ValueError):
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    if not sock.recv(65536):
                        break
        with contextlib.suppress(OSError):
            sock.close()
