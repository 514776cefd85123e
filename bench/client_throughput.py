"""Messages per second through MobilgroupClient.send, against three baselines in the same run.

(a) ``MobilgroupClient.send``: validates, builds, posts over keep-alive, parses.
(b) a raw ``http.client`` keep-alive loop posting pre-built request bytes (the floor).
(c) ``requests.Session().post`` of the same pre-built bytes, the way most plugins use it.
(d) a new connection per request, as the gateway's PHP example does.

Each runs against the emulator, and against a minimal server that answers every request with the
same OK and does nothing else (the floor: the emulator's own CPU per exchange pulls every ratio
towards 1). Both are reported. Targets: a/c >= 1.5, a/b >= 0.4. The servers run in their own
processes. Run: ``python bench/client_throughput.py [-n 2000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import http.client
import time
from collections.abc import Callable

import requests
from _emulator import LOGIN, PASSWORD, USER_ID, Running, emulator, minimal_server
from _ratio import measure

from mobilgroup_backends import MobilgroupClient, protocol

CREDS = protocol.Credentials(USER_ID, LOGIN, PASSWORD)
TEXT = "Ваш код подтверждения: 4521"
PHONE = "79031234567"
HEADERS = {"Content-Type": "application/xml; charset=windows-1251"}


def documents(n: int) -> list[bytes]:
    return [protocol.build_send(CREDS, phones=(PHONE,), text=TEXT,
                                request_id=protocol.new_request_id()) for _ in range(n)]


def ours(server: Running, n: int) -> float:
    with MobilgroupClient.from_url(server.url) as client:
        client.balance()  # connect outside the timing, as the baselines do
        started = time.perf_counter()
        for _ in range(n):
            client.send(PHONE, TEXT)
        return time.perf_counter() - started


def raw_keepalive(server: Running, n: int) -> float:
    bodies = documents(n)
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.connect()
    started = time.perf_counter()
    for body in bodies:
        connection.request("POST", "/extxml.php", body, HEADERS)
        answer = connection.getresponse().read()
        assert b"<result>OK</result>" in answer, answer
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def naive_requests(server: Running, n: int) -> float:
    bodies = documents(n)
    with requests.Session() as session:
        session.post(server.endpoint, data=documents(1)[0], headers=HEADERS, timeout=10)
        started = time.perf_counter()
        for body in bodies:
            answer = session.post(server.endpoint, data=body, headers=HEADERS, timeout=10)
            assert b"<result>OK</result>" in answer.content, answer.content
        return time.perf_counter() - started


def new_connection_each(server: Running, n: int) -> float:
    bodies = documents(n)
    started = time.perf_counter()
    for body in bodies:
        connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
        connection.request("POST", "/extxml.php", body, {**HEADERS, "Connection": "close"})
        answer = connection.getresponse().read()
        connection.close()
        assert b"<result>OK</result>" in answer, answer
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds; ratios are medians of per-round ratios")
    args = parser.parse_args()
    contenders: dict[str, Callable[[Running, int], float]] = {
        "a MobilgroupClient.send": ours,
        "b raw http.client keep-alive": raw_keepalive,
        "c requests.Session().post": naive_requests,
        "d new connection per request": new_connection_each,
    }
    for title, server_of in (("the emulator", emulator), ("a minimal server", minimal_server)):
        with server_of() as server:
            # Interleaved rounds, so that drift hits every contender alike; messages per second.
            def rate(run: Callable[[Running, int], float], server: Running = server) -> Callable[[], float]:
                return lambda: args.n / run(server, args.n)

            rounds = measure({name[0]: rate(run) for name, run in contenders.items()}, args.rounds)
        print(f"against {title}:")
        for name in contenders:
            print(f"  {name:<32} {rounds.median(name[0]):>8.0f} messages/s (median of rounds)")
        print(f"  a/b = {rounds.describe('a', 'b')}  (target >= 0.4)")
        print(f"  a/c = {rounds.describe('a', 'c')}  (target >= 1.5)")
        print(f"  a/d = {rounds.describe('a', 'd')}")


if __name__ == "__main__":
    main()
