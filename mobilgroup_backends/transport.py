"""The HTTP transport under :class:`~mobilgroup_backends.client.MobilgroupClient`.

Two things the stock ``requests`` transport cannot tell or do, and delivery certainty needs:

- **One deadline per attempt.** A socket timeout bounds each read, so a server that trickles its
  status line or headers a byte at a time could hold a caller for ever. Here every read of the
  answer (status line, headers, body) waits only for what is left of one deadline per attempt.
- **Whether the request was written.** A TLS or connection error before the request went out
  means nothing was sent (and, for a certificate, that retrying cannot help); the same error
  after it went out means the gateway may have the request. The transport records which phase
  an attempt reached, for the client to classify the failure.

The state of the attempt in progress is thread-local: ``requests`` runs an exchange in the
calling thread, and one client is shared by many threads.

Two things make an exchange cheap, since a client sends the same kind of request over and over:

- **The answer's header is read without the email package.** ``http.client`` parses every
  header block with ``email.feedparser``, a general MIME parser that costs more than the rest of
  reading a small answer. :class:`_LeanResponse` reads the few fields HTTP needs into the same
  ``HTTPMessage`` type, so urllib3 and ``requests`` see no difference.
- **A kept-alive connection is written to directly** (:meth:`GatewayAdapter.exchange`): once the
  pool holds a connected socket to the gateway (no proxy in between), the request goes out as
  a head built once per client plus the body, and the answer is read on the spot. Everything
  else (connecting, TLS and its certificate checks, proxies, a pool that has no live
  connection) goes through ``requests`` and urllib3 as before.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import threading
import time
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import parse_url

__all__ = ["GatewayAdapter", "attempt", "request_head"]

# As http.client bounds a header block: a peer that never ends it cannot fill memory.
_MAX_LINE = 65536
_MAX_HEADERS = 100


class _Attempt(threading.local):
    """The exchange in progress in this thread: its deadline and whether the request was written."""

    deadline: float | None = None
    written: bool = False

    def begin(self, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.written = False

    def end(self) -> None:
        self.deadline = None

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


attempt = _Attempt()


class _DeadlineReader(io.RawIOBase):
    """Socket reads that never wait past the attempt's deadline, however the bytes trickle in.

    It reads through the socket file ``http.client`` made, which keeps the socket open until the
    response is done with it (``http.client`` closes a ``Connection: close`` socket early).
    """

    def __init__(self, sock: socket.socket, file: io.BufferedReader, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._file = file  # closing it (or losing it to the collector) closes its raw file
        self._raw = file.raw
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not arrive before the deadline")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            super().close()


def _read_fields(fp: Any) -> http.client.HTTPMessage:
    """A header block as an ``HTTPMessage``, without running the email package's parser over it
    (what ``http.client.parse_headers`` does): names and values as they came, a line that starts
    with white space continuing the field before it."""
    fields: list[tuple[str, str]] = []
    for _ in range(_MAX_HEADERS + 1):
        line = fp.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {text.strip()}")
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append((name.rstrip(), value.strip()))
    else:
        raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
    message = http.client.HTTPMessage()
    message._headers = fields  # type: ignore[attr-defined]  # the list email.message keeps
    return message


class _LeanResponse(http.client.HTTPResponse):
    """``http.client``'s response, its header read by :func:`_read_fields`.

    ``begin`` is the standard library's, but for the header parser: the status line, 100
    Continue skipped, then the framing (chunked, a length, whether the connection closes) from
    the same fields.
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_fields(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = _read_fields(self.fp)
        encoding = self.headers.get("transfer-encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        if self.chunked:
            self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class _DeadlineResponse(_LeanResponse):
    """The lean response, reading through a :class:`_DeadlineReader`.

    It is made right after the request was written, which is how the attempt learns that it
    reached that phase.
    """

    def __init__(self, sock: socket.socket, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None) -> None:
        super().__init__(sock, debuglevel, method, url)
        attempt.written = True
        deadline = attempt.deadline
        if deadline is not None and isinstance(self.fp, io.BufferedReader):
            self.fp = io.BufferedReader(_DeadlineReader(sock, self.fp, deadline))


class _Connection(HTTPConnection):
    response_class = _DeadlineResponse


class _TLSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


def request_head(url: str, headers: dict[str, str]) -> bytes:
    """The head of a POST to ``url`` with ``headers``, as ``http.client`` would write it, up to
    its ``Content-Length`` line: made once per client, sent with every request."""
    parsed = parse_url(url)
    host = parsed.host or ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = 443 if parsed.scheme == "https" else 80
    if parsed.port is not None and parsed.port != default:
        host = f"{host}:{parsed.port}"
    lines = [f"POST {parsed.request_uri} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()
              if name.lower() not in ("host", "content-length", "transfer-encoding")]
    return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("iso-8859-1")


class _Exchange:
    """A request written on a kept-alive pooled connection, and its answer (``response``).

    ``release`` hands the connection back to its pool when the answer was read to its end and
    the server keeps the connection open; otherwise the connection is closed (the pool makes a
    new one when it next needs it), as urllib3 does.
    """

    __slots__ = ("_connection", "_pool", "response")

    def __init__(self, pool: Any, connection: Any, response: _DeadlineResponse) -> None:
        self._pool = pool
        self._connection = connection
        self.response = response

    def release(self) -> None:
        response = self.response
        # http.client's read1 leaves a response open when it has read the length it was told.
        complete = response.isclosed() or (not response.chunked and response.length == 0)
        if not complete or response.will_close:
            response.close()
            self._connection.close()
        self._pool._put_conn(self._connection)


def _as_requests_error(exc: Exception, written: bool) -> requests.exceptions.RequestException:
    """A failure of a direct exchange as the ``requests`` error the stock path raises for it.
    The connection's handshake is long done: a TLS error before the request is written is a
    broken connection (nothing sent, worth retrying), not a certificate or handshake refusal."""
    if isinstance(exc, ssl.SSLError):
        return (requests.exceptions.SSLError(exc) if written
                else requests.exceptions.ConnectionError(exc))
    if written and isinstance(exc, TimeoutError):
        return requests.exceptions.ReadTimeout(exc)
    return requests.exceptions.ConnectionError(exc)


class GatewayAdapter(HTTPAdapter):
    """requests' transport adapter with per-attempt deadlines, minus the response dressing a
    gateway answer never uses.

    ``build_response`` and ``init_poolmanager`` are the documented extension points of
    ``HTTPAdapter``; urllib3's pool managers take their pool classes from
    ``pool_classes_by_scheme``. The stock ``build_response`` copies every header into a new dict,
    runs the cookie jar machinery over the answer and guesses its text encoding; the answer here
    is read once as raw bytes and parsed as windows-1251 XML, so all of that is skipped.
    """

    # The pool and path found for the last (URL, trust, certificate, proxies): a client asks
    # with the same ones on every send, and finding them again means parsing the URL, choosing
    # a proxy and hashing a pool key each time. The pool is only referred to weakly, and
    # forgotten on close: once its pool manager lets it go it is gone, as without this.
    _last_pool: tuple[tuple[Any, ...], weakref.ref[Any]] | None = None
    _last_path: tuple[tuple[Any, ...], str] | None = None

    def get_connection_with_tls_context(self, request: requests.PreparedRequest, verify: Any,
                                        proxies: Any = None, cert: Any = None) -> Any:
        key = (request.url, verify, cert, tuple(proxies.items()) if proxies else ())
        last = self._last_pool
        if last is not None and last[0] == key:
            kept = last[1]()
            if kept is not None:
                return kept
        pool = super().get_connection_with_tls_context(request, verify, proxies=proxies,
                                                       cert=cert)
        self._last_pool = (key, weakref.ref(pool))
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        key = (request.url, tuple(proxies.items()) if proxies else ())
        last = self._last_path
        if last is not None and last[0] == key:
            return last[1]
        path: str = super().request_url(request, proxies)
        self._last_path = (key, path)
        return path

    def close(self) -> None:
        self._last_pool = None
        super().close()

    def exchange(self, request: requests.PreparedRequest, head: bytes, body: bytes,
                 timeout: float, verify: Any, cert: Any, proxies: Any) -> _Exchange | None:
        """POST ``body`` after ``head`` (:func:`request_head`) on a connection the pool keeps
        alive, and read the answer's status line and header; None when there is no such
        connection (none yet, the server closed it, a proxy in between): then send through
        :meth:`send`, which connects. The attempt's deadline (:data:`attempt`) bounds every
        write and read; a failure is the ``requests`` error :meth:`send` would raise.
        """
        pool = self.get_connection_with_tls_context(request, verify, proxies, cert)
        if pool.proxy is not None or type(pool) not in (_Pool, _TLSPool):
            return None
        try:
            connection = pool._get_conn()
        except Exception:  # a closed pool: the stock path says so in its own words
            return None
        sock = connection.sock
        if sock is None:
            pool._put_conn(connection)
            return None
        written = False
        try:
            sock.settimeout(timeout)
            sock.sendall(b"%s%d\r\n\r\n%s" % (head, len(body), body))
            written = True
            response = _DeadlineResponse(sock, method="POST")
            response.begin()
        except Exception as exc:
            connection.close()
            pool._put_conn(connection)
            raise _as_requests_error(exc, written) from exc
        return _Exchange(pool, connection, response)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        self._last_pool = None
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = _POOLS
        return manager

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
