"""Hostile HTTP from a scripted server on 127.0.0.1: redirects, endless bodies, compression bombs.

These answers need control of the raw bytes (headers the emulator does not write, a body without
a length, a trickle), so a small scripted server answers here instead of the emulator. Every
server loop is bounded in bytes and seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import time
import tracemalloc
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from mobilgroup_backends import MobilgroupClient, errors
from tests.helpers import Script, ScriptedServer

if TYPE_CHECKING:
    from conftest import Trap

PASSWORD = "Hostile-Http-Pw-5c2e"
BALANCE_OK = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response><result>OK</result>'
              b"<error>0</error><balance>42</balance></response>\n")

@contextlib.contextmanager
def client_for(server: ScriptedServer, **kwargs: object) -> Iterator[MobilgroupClient]:
    options: dict[str, object] = {"retries": 0, "timeout": 2, "backoff": 0.001}
    options.update(kwargs)
    with MobilgroupClient("1000", "demo", PASSWORD, endpoint=server.endpoint,
                          **options) as client:  # type: ignore[arg-type]
        yield client


# --- redirects --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_never_followed(trap: Trap, status: int) -> None:
    target = f"http://127.0.0.1:{trap.port}/extxml.php"

    def redirect(_: ScriptedServer, conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.1 {status} Moved\r\nLocation: {target}\r\nContent-Length: 0\r\n"
                     f"Connection: close\r\n\r\n".encode())

    with ScriptedServer(redirect) as server, client_for(server, retries=3) as client:
        with pytest.raises(errors.TransportError) as caught:
            client.send("79039587454", "follow me")
        assert len(server.requests) == 1  # not retried either
    assert caught.value.status_code == status
    assert caught.value.retryable is False
    assert "redirect" in str(caught.value) and "refused" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    time.sleep(0.05)
    assert not trap.connected(), "the redirect target received a connection"


# --- answers that never end, or lie about their size -------------------------------------------


def endless(framing: str) -> Script:
    """A 200 whose body would be 300 MB, framed by ``framing``; stops when the client leaves."""
    total, piece = 300 * 1024 * 1024, b"<x>" + b"y" * 65_530 + b"</x>"

    def script(server: ScriptedServer, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
        if framing == "close":
            head += b"Connection: close\r\n\r\n"
        elif framing == "chunked":
            head += b"Transfer-Encoding: chunked\r\n\r\n"
        else:  # a lying Content-Length: small, then far more bytes than it said
            head += b"Content-Length: 200\r\n\r\n"
        start = b'<?xml version="1.0"?><response><result>OK</result>'
        if framing == "chunked":
            start = b"%x\r\n%s\r\n" % (len(start), start)
        conn.sendall(head + start)
        started = time.monotonic()
        while server.sent < total and time.monotonic() - started < 10 and not server.stop.is_set():
            server.send(conn, b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked"
                        else piece)

    return script


@pytest.mark.parametrize("framing", ["close", "chunked", "lying_length"])
def test_endless_answer_refused_after_the_cap(framing: str) -> None:
    with ScriptedServer(endless(framing)) as server:
        with client_for(server) as client:
            tracemalloc.start()
            started = time.perf_counter()
            try:
                with pytest.raises(errors.ProtocolError) as caught:
                    client.balance()
                elapsed = time.perf_counter() - started
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        # The client has hung up: the server's next write fails and its loop ends.
        deadline = time.monotonic() + 10
        while server.sent < 300 * 1024 * 1024 and time.monotonic() < deadline:
            before = server.sent
            time.sleep(0.05)
            if server.sent == before:
                break
    assert elapsed < 2.0
    assert peak < 4 * 1024 * 1024
    if framing == "lying_length":
        assert "well-formed" in str(caught.value)  # 200 bytes read, then parsed and refused
    else:
        assert "refused after 262144 bytes" in str(caught.value)
    # The server got out what the socket buffers held, nowhere near the 300 MB.
    assert server.sent < 64 * 1024 * 1024


def test_compression_bomb_is_not_inflated() -> None:
    """Compression is refused by the request (identity) and by the reader (raw bytes): a gzip
    answer stays a few kilobytes of garbage instead of inflating to 100 MB."""
    bomb = gzip.compress(BALANCE_OK[:-12] + b" " * (100 * 1024 * 1024) + BALANCE_OK[-12:], 9)

    def script(_: ScriptedServer, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Encoding: "
                     b"gzip\r\nContent-Length: " + str(len(bomb)).encode() + b"\r\n\r\n" + bomb)

    with ScriptedServer(script) as server, client_for(server) as client:
        tracemalloc.start()
        try:
            with pytest.raises(errors.ProtocolError):
                client.balance()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        request = server.requests[0].lower()
    assert b"accept-encoding: identity" in request
    assert peak < 4 * 1024 * 1024


def test_password_travels_only_in_the_body() -> None:
    def script(_: ScriptedServer, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(BALANCE_OK)).encode()
                     + b"\r\n\r\n" + BALANCE_OK)

    with ScriptedServer(script) as server, client_for(server) as client:
        assert client.balance() == 42
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert PASSWORD.encode() not in head
    assert b"<pwd>" + PASSWORD.encode() + b"</pwd>" in body
    assert head.startswith(b"POST /extxml.php HTTP/1.1\r\n")


def test_trickling_answer_is_cut_off_by_the_timeout() -> None:
    def trickle(_: ScriptedServer, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<")
        started = time.monotonic()
        while time.monotonic() - started < 3:
            conn.sendall(b"r")
            time.sleep(0.1)

    with ScriptedServer(trickle) as server, client_for(server, timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(errors.MobilgroupError):
            client.balance()
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"held for {elapsed:.1f} s with a 0.5 s timeout"
