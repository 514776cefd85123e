"""Messages per second through MobilgroupClient.send, against three baselines in the same run.

(a) ``MobilgroupClient.send``: validates, builds, posts over keep-alive, parses.
(b) a raw ``http.client`` keep-alive loop posting pre-built request bytes (the floor).
(c) ``requests.Session().post`` of the same pre-built bytes, the way most plugins use it.
(d) a new connection per request, as the gateway's PHP example does.

Each runs against the emulator, and against a minimal server that answers every request with the
same OK and does nothing else. Both are reported. Targets: a/c >= 1.5, a/b >= 0.6, and against
the minimal server the client's CPU per message within 1.6x of the raw loop's. The servers run in
their own processes.

A sequential client waits for every answer, so each message costs the client's CPU plus the
server's: the emulator's own CPU per exchange is added to both sides of a ratio and pulls it
towards 1. So the CPU each side spends per message is printed too (the client's from this
process, the server's from its process where the system tells): it says where the time goes
whatever the load of the machine. Ratios are medians of per-round ratios (``bench/_ratio.py``),
over rounds short enough that a busy moment hits few of them; a and c, the targeted pair, run
back to back in each round. Run: ``python bench/client_throughput.py [-n 300] [--rounds 11]``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import time
from collections.abc import Callable

import requests
from _emulator import LOGIN, PASSWORD, USER_ID, Running, emulator, minimal_server
from _ratio import Rounds, measure

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


# In the order they run in each round: a and c (the targeted pair) back to back.
CONTENDERS: dict[str, Callable[[Running, int], float]] = {
    "a MobilgroupClient.send": ours,
    "c requests.Session().post": naive_requests,
    "b raw http.client keep-alive": raw_keepalive,
    "d new connection per request": new_connection_each,
}


def against(server: Running, n: int, rounds: int) -> tuple[Rounds, dict[str, list[float]],
                                                           dict[str, list[float]]]:
    """Messages per second of every contender in interleaved rounds, with the CPU each round
    cost the client and the server per message (µs)."""
    client_cpu: dict[str, list[float]] = {name[0]: [] for name in CONTENDERS}
    server_cpu: dict[str, list[float]] = {name[0]: [] for name in CONTENDERS}

    def rate(key: str, run: Callable[[Running, int], float]) -> Callable[[], float]:
        def one_round() -> float:
            served, used = server.cpu_seconds(), time.process_time()
            took = run(server, n)
            client_cpu[key].append((time.process_time() - used) / n * 1e6)
            now = server.cpu_seconds()
            if served is not None and now is not None:
                server_cpu[key].append((now - served) / n * 1e6)
            return n / took
        return one_round

    result = measure({name[0]: rate(name[0], run) for name, run in CONTENDERS.items()}, rounds)
    return result, client_cpu, server_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=11,
                        help="interleaved rounds; ratios are medians of per-round ratios")
    args = parser.parse_args()
    print(f"bench/client_throughput.py -n {args.n} --rounds {args.rounds}  "
          f"(load average {os.getloadavg()[0]:.2f})")
    for title, server_of in (("the emulator", emulator), ("a minimal server", minimal_server)):
        with server_of() as server:
            rounds, client_cpu, server_cpu = against(server, args.n, args.rounds)
        print(f"against {title}:")
        print(f"  {'':<32} {'messages/s':>10} {'client CPU':>11} {'server CPU':>11}  (medians; "
              f"CPU in µs per message)")
        for name in sorted(CONTENDERS):
            key = name[0]
            served = (f"{statistics.median(server_cpu[key]):>11.0f}" if server_cpu[key]
                      else f"{'n/a':>11}")
            print(f"  {name:<32} {rounds.median(key):>10.0f} "
                  f"{statistics.median(client_cpu[key]):>11.0f} {served}")
        print(f"  a/b = {rounds.describe('a', 'b')}  (target >= 0.6)")
        cpu = [a / b for a, b in zip(client_cpu["a"], client_cpu["b"], strict=True)]
        print(f"  client CPU a/b = {statistics.median(cpu):.2f}x (rounds {min(cpu):.2f}-"
              f"{max(cpu):.2f})  (target <= 1.6 against the minimal server)")
        print(f"  a/c = {rounds.describe('a', 'c')}  (target >= 1.5)")
        print(f"  a/d = {rounds.describe('a', 'd')}")


if __name__ == "__main__":
    main()
