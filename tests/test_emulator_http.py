"""The emulator's transport: HTTP/1.0 and 1.1 on raw sockets, keep-alive, faults, TLS, shutdown.

Every wait is bounded; every socket is on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import trustme

from mobilgroup_backends.emulator import Emulator
from tests.helpers import wait_until

DATA = Path(__file__).parent / "data"
EXAMPLE = "1:valid@username:invalid_password"
CREDS = b"<user_id>1000</user_id><user>demo</user><pwd>demo-password</pwd>"
BALANCE = b'<?xml version="1.0" encoding="windows-1251"?><request>' + CREDS + (
    b"<command>balance</command></request>")
OK = b"<result>OK</result>"


def send_doc(request_id: int, phone: bytes = b"79991234567") -> bytes:
    return (b'<?xml version="1.0" encoding="windows-1251"?><request>' + CREDS +
            b"<command>send</command><phone>" + phone + b"</phone><message>hi</message><id>" +
            str(request_id).encode() + b"</id></request>")


@contextlib.contextmanager
def connect(emulator: Emulator, timeout: float = 5.0) -> Iterator[http.client.HTTPConnection]:
    conn = http.client.HTTPConnection(emulator.host, emulator.port, timeout=timeout)
    try:
        yield conn
    finally:
        conn.close()


def post(conn: http.client.HTTPConnection, body: bytes,
         path: str = "/extxml.php") -> tuple[int, bytes]:
    conn.request("POST", path, body, {"Content-Type": "application/xml"})
    response = conn.getresponse()
    return response.status, response.read()


def read_response(rfile: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One response from a raw socket's file: status, lower-case headers, body."""
    status_line = rfile.readline(1000)
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers: dict[str, str] = {}
    for _ in range(50):
        line = rfile.readline(1000).decode("latin-1")
        if line in ("\r\n", ""):
            break
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    body = rfile.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def read_to_eof(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    raise AssertionError("no end of stream")


def emulator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("emulator-")]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running
        assert running.errors == []


# --- the PHP example and HTTP/1.0 -----------------------------------------------------------


def test_php_example_request_byte_for_byte() -> None:
    """HTTP/1.0 as the gateway's PHP script writes it, trailing CRLFs after the body included."""
    data = (b'<?xml version="1.0" encoding="windows-1251"?>\n<request>\n<user_id>1</user_id>\n'
            b"<user>valid@username</user>\n<pwd>invalid_password</pwd>\n"
            b"<command>status</command>\n<extended>1</extended>\n<id>123456</id>\n</request>")
    with Emulator([EXAMPLE], quirky=True) as emulator:
        with connect(emulator) as conn:
            assert OK in post(conn, (DATA / "send-request.xml").read_bytes())[1]
        with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
            sock.sendall(b"POST /extxml.php HTTP/1.0\r\n")
            sock.sendall(b"Host: sms.mobilgroup.ru\r\n")
            sock.sendall(b"Content-type: application/xml\r\n")
            sock.sendall(b"Content-length: " + str(len(data)).encode() + b"\r\n")
            sock.sendall(b"Accept: */*\r\n")
            sock.sendall(b"\r\n")
            sock.sendall(data + b"\r\n")
            sock.sendall(b"\r\n")
            reply = read_to_eof(sock)  # the server closes: HTTP/1.0 without keep-alive
        assert emulator.errors == []
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close" in head
    assert b"\r\nContent-Type: application/xml; charset=windows-1251" in head
    assert b"Content-Length: " + str(len(body)).encode() in head
    assert body.startswith(b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n')
    assert b"<dest><phone>79039587454</phone>" in body
    assert body.endswith(b"<id>123456</ id>\n</response >\n")


def test_http_10_keep_alive_when_asked(emulator: Emulator) -> None:
    request = (b"POST /extxml.php HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: " +
               str(len(BALANCE)).encode() + b"\r\n\r\n" + BALANCE)
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock, \
            sock.makefile("rb") as rfile:
        for _ in range(3):
            sock.sendall(request)
            status, headers, body = read_response(rfile)
            assert (status, headers["connection"]) == (200, "keep-alive")
            assert OK in body
    assert emulator.connections == 1


def test_blank_lines_between_keep_alive_requests_are_skipped(emulator: Emulator) -> None:
    request = (b"POST /extxml.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
               str(len(BALANCE)).encode() + b"\r\n\r\n" + BALANCE + b"\r\n\r\n")
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock, \
            sock.makefile("rb") as rfile:
        sock.sendall(request * 3)
        for _ in range(3):
            assert read_response(rfile)[0] == 200


# --- HTTP/1.1 --------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(emulator: Emulator) -> None:
    emulator.price_per_sms = 0
    with connect(emulator) as conn:
        for request_id in range(1, 201):
            status, body = post(conn, send_doc(request_id))
            assert status == 200 and OK in body
    assert emulator.connections == 1
    assert len(emulator.outbox) == 200


def test_answers_are_fast_on_one_connection(emulator: Emulator) -> None:
    """A headers-then-body write would stall ~40 ms per request on Nagle + delayed ACK."""
    with connect(emulator) as conn:
        post(conn, BALANCE)
        started = time.monotonic()
        for _ in range(300):
            post(conn, BALANCE)
        elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"300 requests took {elapsed:.2f} s"


def test_other_paths_and_methods(emulator: Emulator) -> None:
    with connect(emulator) as conn:
        assert post(conn, BALANCE, "/other.php")[0] == 404
        assert post(conn, BALANCE, "/extxml.php?x=1")[0] == 200
        conn.request("GET", "/extxml.php")
        response = conn.getresponse()
        assert (response.status, response.getheader("Allow")) == (405, "POST")
        response.read()
        conn.request("HEAD", "/extxml.php")
        response = conn.getresponse()
        assert response.status == 405 and response.read() == b""
        assert post(conn, BALANCE)[0] == 200  # still in step after all that
    assert emulator.connections == 1
    assert len(emulator.requests) == 2  # only POSTs to the endpoint are exchanges


def test_chunked_body_and_expect_continue(emulator: Emulator) -> None:
    half = len(BALANCE) // 2
    chunked = (b"POST /extxml.php HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
               f"{half:x}\r\n".encode() + BALANCE[:half] + b"\r\n" +
               f"{len(BALANCE) - half:x};ext=1\r\n".encode() + BALANCE[half:] + b"\r\n0\r\n\r\n")
    expect = (b"POST /extxml.php HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
              b"Content-Length: " + str(len(BALANCE)).encode() + b"\r\n\r\n")
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock, \
            sock.makefile("rb") as rfile:
        sock.sendall(chunked)
        assert OK in read_response(rfile)[2]
        sock.sendall(expect)
        assert rfile.readline(100) == b"HTTP/1.1 100 Continue\r\n"
        assert rfile.readline(100) == b"\r\n"
        sock.sendall(BALANCE)
        assert OK in read_response(rfile)[2]


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NONSENSE\r\n\r\n", 400),
    (b"POST /extxml.php HTTP/2.0\r\n\r\n", 505),
    (b"POST /extxml.php HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"POST /extxml.php HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"POST /extxml.php HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST /extxml.php HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /extxml.php HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"POST /" + b"x" * 10000 + b" HTTP/1.1\r\n\r\n", 431),
])
def test_bad_requests_are_refused_and_closed(emulator: Emulator, request_bytes: bytes,
                                             status: int) -> None:
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        reply = read_to_eof(sock)
    assert reply.startswith(b"HTTP/1.1 %d " % status)
    assert b"\r\nConnection: close\r\n" in reply


def test_empty_post_is_error_1(emulator: Emulator) -> None:
    with connect(emulator) as conn:
        status, body = post(conn, b"")
    assert status == 200 and b"<error>1</error>" in body


def test_peer_closing_mid_request_is_quiet(emulator: Emulator) -> None:
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
        sock.sendall(b"POST /extxml.php HTTP/1.1\r\nContent-Length: 100\r\n\r\n<request>")
    assert wait_until(lambda: emulator.open_connections == 0)
    with connect(emulator) as conn:
        assert post(conn, BALANCE)[0] == 200


# --- latency ---------------------------------------------------------------------------------


def test_latency_does_not_serialize_concurrent_requests() -> None:
    with Emulator(latency=0.2) as emulator:
        barrier = threading.Barrier(8, timeout=5)
        times: list[float] = []

        def one() -> None:
            with connect(emulator) as conn:
                conn.connect()
                barrier.wait()
                started = time.monotonic()
                assert OK in post(conn, BALANCE)[1]
                times.append(time.monotonic() - started)

        threads = [threading.Thread(target=one, daemon=True) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        total = time.monotonic() - started
    assert len(times) == 8
    assert min(times) >= 0.19
    assert total < 1.2, f"8 x 0.2 s took {total:.2f} s: answers were serialized"


# --- faults ----------------------------------------------------------------------------------


def test_close_before_processes_nothing(emulator: Emulator) -> None:
    emulator.faults.next("close_before")
    with connect(emulator) as conn, pytest.raises(http.client.RemoteDisconnected):
        post(conn, send_doc(1))
    assert len(emulator.outbox) == 0
    assert [(r.command, r.fault) for r in emulator.requests] == [(None, "close_before")]
    with connect(emulator) as conn:
        assert OK in post(conn, send_doc(1))[1]  # the same id is still free


def test_close_after_registers_the_send(emulator: Emulator) -> None:
    emulator.faults.next("close_after")
    with connect(emulator) as conn, pytest.raises(http.client.RemoteDisconnected):
        post(conn, send_doc(1))
    assert len(emulator.outbox) == 1
    assert [(r.command, r.error, r.fault) for r in emulator.requests] == [
        ("send", 0, "close_after")]
    with connect(emulator) as conn:
        assert b"<error>7</error>" in post(conn, send_doc(1))[1]  # the retry: accepted earlier


def test_http_500(emulator: Emulator) -> None:
    emulator.faults.next("http_500")
    emulator.faults.next("http_500", status=503)
    with connect(emulator) as conn:
        assert post(conn, send_doc(1))[0] == 500
        assert post(conn, send_doc(1))[0] == 503
        assert post(conn, send_doc(1))[0] == 200
    assert len(emulator.outbox) == 1
    assert [r.fault for r in emulator.requests] == ["http_500", "http_500", None]


def test_delay_outlasts_a_client_timeout_and_still_processes(emulator: Emulator) -> None:
    emulator.faults.next("delay", seconds=0.5)
    with connect(emulator, timeout=0.1) as conn, pytest.raises(TimeoutError):
        post(conn, send_doc(1))
    assert len(emulator.outbox) == 1
    emulator.faults.next("delay", seconds=0.2)
    with connect(emulator) as conn:
        started = time.monotonic()
        assert b"<error>0</error>" in post(conn, BALANCE)[1]
        assert 0.19 <= time.monotonic() - started < 3


def test_delay_is_cut_short_by_stop() -> None:
    emulator = Emulator().start()
    emulator.faults.next("delay", seconds=60)
    failures: list[BaseException] = []

    def client() -> None:
        try:
            with connect(emulator, timeout=30) as conn:
                post(conn, BALANCE)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    assert wait_until(lambda: len(emulator.requests) == 1)
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert not thread.is_alive() and len(failures) == 1


def test_garbage_after_processing(emulator: Emulator) -> None:
    emulator.faults.next("garbage")
    emulator.faults.next("garbage", body=b"\x00\x01")
    with connect(emulator) as conn:
        status, body = post(conn, send_doc(1))
        assert status == 200 and b"<response" not in body and body
        assert post(conn, send_doc(2)) == (200, b"\x00\x01")
    assert len(emulator.outbox) == 2


def test_body_fault_answers_exactly_and_processes_nothing(emulator: Emulator) -> None:
    bomb = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;">]><response>&b;</response>')
    emulator.faults.next("body", body=bomb)
    emulator.faults.next("body", body=b"nope", status=418, content_type="text/plain")
    with connect(emulator) as conn:
        conn.request("POST", "/extxml.php", send_doc(1))
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, bomb)
        conn.request("POST", "/extxml.php", send_doc(1))
        response = conn.getresponse()
        assert (response.status, response.read()) == (418, b"nope")
        assert response.getheader("Content-Type") == "text/plain"
    assert len(emulator.outbox) == 0


def test_oversized_answer_stops_quietly_when_the_client_leaves(emulator: Emulator) -> None:
    emulator.faults.next("oversized")
    emulator.faults.next("oversized", size=300_000)
    request = (b"POST /extxml.php HTTP/1.1\r\nContent-Length: " + str(len(BALANCE)).encode() +
               b"\r\n\r\n" + BALANCE)
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock, \
            sock.makefile("rb") as rfile:
        sock.sendall(request)
        assert rfile.readline(100) == b"HTTP/1.1 200 OK\r\n"
        head = b""
        for _ in range(20):
            head += rfile.readline(1000)
            if head.endswith(b"\r\n\r\n"):
                break
        assert b"Content-Length: %d\r\n" % (200 * 1024 * 1024) in head
        assert rfile.read(100_000).startswith(b'<?xml version="1.0" encoding="windows-1251"?>')
    # The client left after 100 kB of 200 MB; the server's thread ends without a fuss.
    assert wait_until(lambda: emulator.open_connections == 0)
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as sock:
        sock.sendall(request)
        reply = read_to_eof(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert len(body) == 300_000 and head.endswith(b"\r\nContent-Length: 300000")
    assert [r.fault for r in emulator.requests] == ["oversized", "oversized"]
    assert len(emulator.outbox) == 0


def test_latency_applies_to_faulty_answers_too(emulator: Emulator) -> None:
    emulator.latency = 0.2
    emulator.faults.next("http_500")
    with connect(emulator) as conn:
        started = time.monotonic()
        assert post(conn, BALANCE)[0] == 500
        assert time.monotonic() - started >= 0.19


def test_faults_queue_in_order_and_clear(emulator: Emulator) -> None:
    faults = emulator.faults
    faults.next("http_500", count=2)
    faults.next("garbage")
    assert faults.pending == 3
    with connect(emulator) as conn:
        codes = [post(conn, BALANCE)[0] for _ in range(4)]
    assert codes == [500, 500, 200, 200]
    assert [r.fault for r in emulator.requests] == ["http_500", "http_500", "garbage", None]
    faults.next("close_before", count=5)
    faults.clear()
    assert faults.pending == 0
    with connect(emulator) as conn:
        assert post(conn, BALANCE)[0] == 200


def test_fault_arguments_are_checked(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        emulator.faults.next("explode")
    with pytest.raises(TypeError):
        emulator.faults.next("http_500", seconds=1)
    with pytest.raises(ValueError):
        emulator.faults.next("delay", count=0)
    with pytest.raises(ValueError):
        emulator.faults.random(rate=1.5)
    with pytest.raises(TypeError):
        emulator.faults.random(kinds=("http_500",), size=10)


def _random_run(seed: int) -> list[str | None]:
    with Emulator() as emulator:
        emulator.faults.random(rate=0.5, seed=seed, kinds=("http_500", "garbage"))
        with connect(emulator) as conn:
            for _ in range(40):
                post(conn, BALANCE)
        return [r.fault for r in emulator.requests]


def test_random_faults_are_seeded() -> None:
    first, again, other = _random_run(1), _random_run(1), _random_run(2)
    assert first == again
    assert first != other
    assert {"http_500", "garbage", None} == set(first)


def test_random_faults_with_parameters_then_cleared(emulator: Emulator) -> None:
    emulator.faults.random(rate=1.0, seed=3, kinds=("delay",), seconds=0.05)
    with connect(emulator) as conn:
        assert post(conn, BALANCE)[0] == 200
        assert emulator.requests[-1].fault == "delay"
        emulator.faults.clear()
        post(conn, BALANCE)
    assert emulator.requests[-1].fault is None


def test_random_close_after_never_sends_twice() -> None:
    """What the client's safe retries rely on: resend the same id until an answer arrives."""
    with Emulator(freeze_clock=True) as emulator:
        emulator.faults.random(rate=0.4, seed=7)
        for request_id in range(1, 31):
            for _attempt in range(50):
                try:
                    with connect(emulator) as conn:
                        status, body = post(conn, send_doc(request_id))
                except (OSError, http.client.HTTPException):
                    continue
                if status == 200:
                    assert b"<error>0</error>" in body or b"<error>7</error>" in body
                    break
        assert [m.request_id for m in emulator.outbox] == list(range(1, 31))
        assert emulator.faults.injected["close_after"] > 0


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def test_tls(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_context, client_context = tls
    with Emulator(ssl_context=server_context) as emulator:
        assert emulator.endpoint.startswith("https://127.0.0.1:")
        assert emulator.url().count("https%3A%2F%2F127.0.0.1") == 1
        conn = http.client.HTTPSConnection(emulator.host, emulator.port, timeout=5,
                                           context=client_context)
        with contextlib.closing(conn):
            for request_id in range(1, 6):
                assert OK in post(conn, send_doc(request_id))[1]
        assert emulator.connections == 1
        # Plain HTTP to the TLS port gets nowhere, and does not disturb the server.
        with connect(emulator) as plain, pytest.raises((OSError, http.client.HTTPException)):
            post(plain, BALANCE)
        # Nor does a client that never shakes hands.
        idle = socket.create_connection((emulator.host, emulator.port), timeout=5)
        with idle:
            started = time.monotonic()
            emulator.stop()
            assert time.monotonic() - started < 3
        assert emulator.errors == []
    assert emulator_threads() == []


# --- life ------------------------------------------------------------------------------------


def test_clean_shutdown_closes_idle_keep_alive_connections() -> None:
    before = set(threading.enumerate())
    with Emulator() as emulator:
        conns = [http.client.HTTPConnection(emulator.host, emulator.port, timeout=5)
                 for _ in range(3)]
        for conn in conns:
            assert post(conn, BALANCE)[0] == 200  # now idle, kept alive
        assert wait_until(lambda: emulator.open_connections == 3)
        started = time.monotonic()
    assert time.monotonic() - started < 3
    assert emulator_threads() == []
    assert set(threading.enumerate()) <= before
    for conn in conns:
        with pytest.raises((OSError, http.client.HTTPException)):
            post(conn, BALANCE)
        conn.close()
    assert not emulator.running


def test_stop_is_idempotent_and_restart_keeps_the_endpoint() -> None:
    emulator = Emulator().start()
    endpoint = emulator.endpoint
    with connect(emulator) as conn:
        post(conn, send_doc(1))
    emulator.stop()
    emulator.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", int(endpoint.split(":")[2]
                                                                         .split("/")[0])), 1):
        pass
    with emulator:
        assert emulator.endpoint == endpoint
        with connect(emulator) as conn:
            assert b"<error>7</error>" in post(conn, send_doc(1))[1]  # state survives
        assert emulator.connections == 2
        with pytest.raises(RuntimeError):
            emulator.start()
    assert emulator_threads() == []


def test_serve_forever_returns_when_stopped_elsewhere() -> None:
    emulator = Emulator()
    thread = threading.Thread(target=emulator.serve_forever, daemon=True)
    thread.start()
    assert wait_until(lambda: emulator.running)
    with connect(emulator) as conn:
        assert post(conn, BALANCE)[0] == 200
    emulator.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert emulator_threads() == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
def test_serve_forever_stops_on_ctrl_c() -> None:
    code = ("from mobilgroup_backends.emulator import Emulator\n"
            "e = Emulator().start()\n"
            "print(e.endpoint, flush=True)\n"
            "e.serve_forever()\n"
            "print('stopped', e.running, flush=True)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        endpoint = process.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        time.sleep(0.3)  # let it get from print() into serve_forever()
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0
    assert out.strip() == "stopped False"
