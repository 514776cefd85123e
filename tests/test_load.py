"""Load and concurrency: threads sharing a client, ids from many processes, many connections."""

from __future__ import annotations

import multiprocessing
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import pytest

from mobilgroup_backends import MobilgroupClient, SendResult, protocol
from mobilgroup_backends.emulator import Emulator
from tests.request_ids import request_ids

BALANCE_REQUEST = (b'<?xml version="1.0" encoding="windows-1251"?>\n<request><user_id>1000'
                   b"</user_id><user>demo</user><pwd>demo-password</pwd><command>balance"
                   b"</command></request>\n")


def test_sixteen_threads_share_one_client() -> None:
    threads_count, per_thread = 16, 125
    results: list[SendResult] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    with Emulator() as emulator:
        emulator.account.balance = Decimal(10**6)
        with MobilgroupClient.from_url(emulator.url(), pool_size=16, timeout=10) as client:

            def work(n: int) -> None:
                for i in range(per_thread):
                    try:
                        result = client.send(f"7903{n:03d}{i:04d}", f"thread {n} message {i}")
                    except BaseException as exc:  # collected, asserted below
                        with lock:
                            failures.append(exc)
                    else:
                        with lock:
                            results.append(result)

            started = time.monotonic()
            threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            elapsed = time.monotonic() - started
        outbox = emulator.outbox.snapshot()
        connections = emulator.connections
        assert emulator.errors == []
    total = threads_count * per_thread
    assert failures == []
    assert len(results) == total
    assert len({r.request_id for r in results}) == total  # no duplicate id
    assert sorted(m.request_id for m in outbox) == sorted(r.request_id for r in results)
    assert Counter(m.text for m in outbox) == Counter(r.text for r in results)  # none lost
    assert all(len(m.phones) == 1 for m in outbox)
    assert {m.text for m in outbox} == {f"thread {n} message {i}" for n in range(threads_count)
                                        for i in range(per_thread)}
    assert connections <= 16  # the pool, not a connection per send
    assert elapsed < 60


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_request_ids_from_eight_processes_never_collide(method: str) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    # Warm the generator in the parent first: a forked child inherits whatever state it has.
    request_ids(10)
    context = multiprocessing.get_context(method)
    with context.Pool(8) as pool:
        batches = pool.map(request_ids, [10_000] * 8, chunksize=1)
    ids = [rid for batch in batches for rid in batch]
    assert len(ids) == 80_000
    assert len(set(ids)) == 80_000
    assert all(10**17 <= rid <= protocol.MAX_REQUEST_ID for rid in ids)


@pytest.fixture
def enough_file_descriptors() -> Iterator[None]:
    """Two descriptors per connection (both ends live in this process), plus headroom."""
    needed = 2 * 1000 + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit on open files is {hard}, below the {needed} needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_emulator_holds_a_thousand_connections_and_still_answers(
        enough_file_descriptors: None) -> None:
    held: list[socket.socket] = []
    with Emulator(idle_timeout=60) as emulator:
        try:
            for i in range(1000):
                sock = socket.create_connection((emulator.host, emulator.port), timeout=10)
                if i % 2:  # half are mid-request: a head sent, the body still to come
                    sock.sendall(b"POST /extxml.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
                                 + str(len(BALANCE_REQUEST)).encode() + b"\r\n\r\n")
                held.append(sock)
                if len(held) % 100 == 0:
                    # Let the emulator accept each hundred before the next: a burst larger than
                    # the listen backlog (128) would wait for SYN retransmits, a second each.
                    deadline = time.monotonic() + 10
                    while emulator.open_connections < len(held) and time.monotonic() < deadline:
                        time.sleep(0.005)
            deadline = time.monotonic() + 30
            while emulator.open_connections < 1000 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert emulator.open_connections >= 1000

            # Other clients are answered promptly while the thousand are held.
            with MobilgroupClient.from_url(emulator.url(), timeout=5, retries=0) as client:
                slowest = 0.0
                for i in range(20):
                    started = time.monotonic()
                    client.send("79039587454", f"while a thousand wait {i}")
                    slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0

            # And every held connection is still served when it finally speaks.
            for i, sock in enumerate(held):
                sock.sendall(BALANCE_REQUEST if i % 2 else
                             b"POST /extxml.php HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                             b"Content-Length: " + str(len(BALANCE_REQUEST)).encode()
                             + b"\r\n\r\n" + BALANCE_REQUEST)
            answered = 0
            for sock in held:
                data = b""
                while b"</response>" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                answered += data.startswith(b"HTTP/1.1 200 ") and b"<error>0</error>" in data
            assert answered == 1000
        finally:
            for sock in held:
                sock.close()
        assert len(emulator.outbox) == 20
        assert emulator.errors == []
