"""The client's direct path: requests written straight onto a connection the pool keeps alive.

A server that keeps connections open answers each request by a script of its own, so that what
comes back on a kept-alive connection (chunks, a close, a stall, a hang-up, an error status) is
exactly what the test says. Every test checks what the server got as well as what the client
says.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.errors import TransportError

#: What the server does with one request: gets the connection and the request's id.
Answer = Callable[[socket.socket, bytes], None]

DOCUMENT = (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n<result>OK</result>\n'
            b"<error>0</error>\n<id>%s</id>\n</response>\n")


def ok(conn: socket.socket, request_id: bytes) -> None:
    body = DOCUMENT % request_id
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: %d"
                 b"\r\n\r\n%s" % (len(body), body))


def chunked(conn: socket.socket, request_id: bytes) -> None:
    body = DOCUMENT % request_id
    half = len(body) // 2
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: "
                 b"chunked\r\nX-Folded: one\r\n two\r\n\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n"
                 % (half, body[:half], len(body) - half, body[half:]))


def closing(conn: socket.socket, request_id: bytes) -> None:
    body = DOCUMENT % request_id
    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(body), body))
    conn.shutdown(socket.SHUT_RDWR)


def unavailable(conn: socket.socket, request_id: bytes) -> None:
    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")


def hang_up(conn: socket.socket, request_id: bytes) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def endless_header(conn: socket.socket, request_id: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: yes\r\n" * 200 + b"\r\n")


def garbled(conn: socket.socket, request_id: bytes) -> None:
    conn.sendall(b"<html>not HTTP at all</html>\r\n\r\n")
    conn.shutdown(socket.SHUT_RDWR)


def trickle(conn: socket.socket, request_id: bytes) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n":
        conn.sendall(bytes([byte]))
        time.sleep(0.05)


class KeepAliveServer:
    """Answers the n-th request it gets (over any connection) with ``answers[n]``; keeps each
    connection open until the client or an answer closes it. ``connections`` counts the
    connections accepted, ``requests`` keeps each request's head and body."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}/extxml.php"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        data = b""
        with conn:
            while not self.stop.is_set():
                if b"\r\n\r\n" not in data:
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not chunk:
                        return
                    data += chunk
                    continue
                head, _, data = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                self.requests.append((head, body))
                request_id = body.split(b"<id>", 1)[1].split(b"</id>", 1)[0]
                try:
                    self.answers[len(self.requests) - 1](conn, request_id)
                except OSError:
                    return

    def __enter__(self) -> KeepAliveServer:
        self.threads[0].start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def client_of(server: KeepAliveServer, **options: object) -> MobilgroupClient:
    return MobilgroupClient("1234", "login", "secret", endpoint=server.endpoint, backoff=0.01,
                            **options)  # type: ignore[arg-type]


def test_one_connection_carries_every_request_with_the_same_head() -> None:
    with KeepAliveServer([ok] * 4) as server, client_of(server) as client:
        ids = [client.send("+79000000001", f"text {n}").request_id for n in range(4)]
    assert server.connections == 1
    assert [int(body.split(b"<id>")[1].split(b"</id>")[0]) for _, body in server.requests] == ids
    heads = [head.split(b"\r\n") for head, _ in server.requests]
    # The first goes out through requests (it connects), the rest are written directly: the
    # server gets the same fields from both.
    for (_head, body), lines in zip(server.requests, heads, strict=True):
        assert lines[0] == b"POST /extxml.php HTTP/1.1"
        assert f"Content-Length: {len(body)}".encode() in lines
        assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
        assert any(line.startswith(b"User-Agent: mobilgroup-backends/") for line in lines)
    names = [sorted(line.split(b":")[0].lower() for line in lines[1:]) for lines in heads]
    assert names[1:] == [names[0]] * 3


def test_a_chunked_answer_with_a_folded_header_is_read_and_the_connection_kept() -> None:
    with KeepAliveServer([ok, chunked, ok]) as server, client_of(server) as client:
        results = [client.send("+79000000001", "hello") for _ in range(3)]
    assert all(result.attempts == 1 for result in results)
    assert server.connections == 1


def test_a_connection_the_server_closes_is_not_reused() -> None:
    with KeepAliveServer([ok, closing, ok]) as server, client_of(server) as client:
        for _ in range(3):
            client.send("+79000000001", "hello")
    assert server.connections == 2
    assert len(server.requests) == 3


def test_an_error_status_on_a_kept_connection_is_retried_under_the_same_id() -> None:
    with KeepAliveServer([ok, unavailable, ok]) as server, client_of(server) as client:
        client.send("+79000000001", "first")
        result = client.send("+79000000001", "second")
    assert result.attempts == 2
    assert server.requests[1][1] == server.requests[2][1]  # the very request, sent again


def test_a_hang_up_after_the_request_was_written_may_have_sent_it() -> None:
    with KeepAliveServer([ok, hang_up]) as server, client_of(server, retries=0) as client:
        client.send("+79000000001", "first")
        with pytest.raises(TransportError) as caught:
            client.send("+79000000001", "second")
    assert caught.value.maybe_sent is True
    assert caught.value.retryable is True
    assert caught.value.request_id == int(server.requests[1][1].split(b"<id>")[1].split(b"<")[0])


def test_an_answer_trickling_on_a_kept_connection_ends_at_the_attempt_deadline() -> None:
    with KeepAliveServer([ok, trickle]) as server, \
            client_of(server, retries=0, timeout=0.4) as client:
        client.send("+79000000001", "first")
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            client.send("+79000000001", "second")
        took = time.monotonic() - started
    assert caught.value.timed_out is True
    assert caught.value.maybe_sent is True
    assert took < 1.5  # one 0.4 s attempt, though each byte came well inside it


def test_send_many_workers_share_the_kept_connections_and_keep_the_order() -> None:
    rows = [("+79000000001", f"row {n}") for n in range(40)]
    with KeepAliveServer([ok] * 40) as server, client_of(server, pool_size=4) as client:
        outcomes = client.send_many(rows, concurrency=4)
    assert [o.text for o in outcomes] == [text for _, text in rows]  # type: ignore[union-attr]
    sent = {int(body.split(b"<id>")[1].split(b"</id>")[0]) for _, body in server.requests}
    assert sent == {o.request_id for o in outcomes}  # type: ignore[union-attr]
    assert server.connections <= 4


@pytest.mark.parametrize("answer", [endless_header, garbled], ids=["101-headers", "not-http"])
def test_an_answer_that_is_not_http_on_a_kept_connection_is_refused(answer: Answer) -> None:
    with KeepAliveServer([ok, answer, ok]) as server, client_of(server) as client:
        client.send("+79000000001", "first")
        result = client.send("+79000000001", "second")  # retried, on a new connection
    assert result.attempts == 2
    assert server.requests[1][1] == server.requests[2][1]
    assert server.connections == 2
