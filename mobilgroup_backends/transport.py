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
"""

from __future__ import annotations

import http.client
import io
import socket
import threading
import time
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["GatewayAdapter", "attempt"]


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


class _DeadlineResponse(http.client.HTTPResponse):
    """``http.client``'s response, reading through a :class:`_DeadlineReader`.

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
