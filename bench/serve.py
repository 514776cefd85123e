"""Notifications per second through the alert receiver, against bare ``client.send``.

(a) ``MobilgroupClient.send`` on one kept client to the emulator: the baseline, one SMS a call.
(b) Alertmanager-style notifications (version 4 payloads, each a new group) posted with a bearer
    token to ``mobilgroup serve`` (its own process, on waitress), which reads each, derives its
    request id, passes the alert budget (set out of the way) and sends it to the same emulator.

Both send one after the other, as Alertmanager does for one receiver. Each round measures both,
in turn (alternating who goes first); the ratio b/a of notifications per second is taken per
round and its median printed with its spread (``bench/_ratio.py``). The emulator adds
``--latency`` to each answer (default 20 ms, like a real gateway), so the figure says what the
receiver adds to the gateway's time. Target: b/a >= 0.8.

Run: ``python bench/serve.py [-n 200] [--rounds 5] [--latency 0.02]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from _emulator import Running, emulator
from _ratio import measure

PHONE = "79031234567"
TOKEN = "bench-receiver-token-0123456789"

_serial = itertools.count()


def payload() -> dict[str, object]:
    """A firing notification of a group never seen before (a new id, never "accepted earlier")."""
    n = next(_serial)
    name = f"Bench{n}"
    return {
        "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "sms", "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "critical", "job": "api"},
        "commonAnnotations": {"summary": "p99 latency above 2 s"},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{"status": "firing", "labels": {"alertname": name, "instance": "api-1:9100"},
                    "annotations": {}, "startsAt": "2026-05-04T12:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                    "fingerprint": f"{n:016x}"}]}


@contextmanager
def receiver(server: Running) -> Iterator[str]:
    """``mobilgroup serve`` on a free port, its budget out of the way; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MOBILGROUP_URL": server.url.replace("?", f"/{PHONE}?", 1),
           "MOBILGROUP_RECEIVER_TOKEN": TOKEN, "MOBILGROUP_ALERT_MAX_SMS": "1000000000"}
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "serve.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "mobilgroup_backends", "serve", "--listen",
                 f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + 30
            while not re.search(r"listening on", log.read_text(errors="replace")):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the receiver did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


def bare(server: Running) -> Callable[[int], float]:
    from mobilgroup_backends import MobilgroupClient

    client = MobilgroupClient.from_url(server.url)
    client.balance()  # connected outside the timing

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            client.send(PHONE, f"[FIRING] Bench{next(_serial)} (severity=critical, job=api)")
        return n / (time.perf_counter() - started)

    return run


def through_receiver(base: str) -> Callable[[int], float]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    assert session.post(f"{base}/alertmanager", json=payload(), timeout=30).ok  # warm

    def run(n: int) -> float:
        bodies = [payload() for _ in range(n)]
        started = time.perf_counter()
        for body in bodies:
            answer = session.post(f"{base}/alertmanager", json=body, timeout=30)
            assert answer.status_code == 200 and answer.json()["outcome"] == "sent", answer.text
        return n / (time.perf_counter() - started)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200, help="notifications per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median ratio counts)")
    parser.add_argument("--latency", type=float, default=0.02,
                        help="seconds the emulator adds to each answer")
    args = parser.parse_args()
    with emulator(latency=args.latency) as server, receiver(server) as base:
        a, b = bare(server), through_receiver(base)
        rounds = measure({"a client.send": lambda: a(args.n),
                          "b mobilgroup serve": lambda: b(args.n)}, args.rounds, alternate=True)
    for name in rounds.values:
        print(f"{name:<20} {rounds.median(name):>8.1f} per second (median of rounds)")
    print(f"b/a = {rounds.describe('b mobilgroup serve', 'a client.send')}  notifications per "
          f"second through the receiver vs bare client.send (target >= 0.8)")


if __name__ == "__main__":
    main()
