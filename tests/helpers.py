"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mobilgroup_backends import MobilgroupClient, SendResult, protocol
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import DuplicateRequestId, MobilgroupError, TransportError

#: Where the clock of the ``frozen_emulator`` fixture stands until a test moves it.
FROZEN_START = datetime(2026, 5, 4, 12, 0)
#: The password of ``frozen_emulator``'s account: no page, answer or log may show it.
FROZEN_PASSWORD = "Pa$$:w0rd<script>&Ёж"


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held. Tests
    ``assert wait_until(...)`` instead of sleeping for a guessed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def texts(emulator: Emulator) -> list[str]:
    """The texts of the emulator's outbox, in the order they arrived."""
    return [message.text for message in emulator.outbox]


class Rollback(Exception):
    """Raised inside ``transaction.atomic()`` to roll it back on purpose."""


def sent_ids(gateway: Emulator) -> Counter[int]:
    """How often each request id reached the emulator's outbox."""
    return Counter(message.request_id for message in gateway.outbox)


def in_threads(work: Callable[[int], object], count: int, timeout: float = 60.0) -> list[BaseException]:
    """Run ``work(0)`` to ``work(count - 1)`` at once, each on its own thread, and wait for them
    (``timeout`` seconds each at most); what they raised, assertions included."""
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # reported to the test, which asserts there were none
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


Script = Callable[["ScriptedServer", socket.socket], None]


class ScriptedServer:
    """Accepts connections; reads each request (head and Content-Length body); runs ``script``.

    ``requests`` keeps every request's raw bytes, ``sent`` counts the body bytes the script got
    out before the client hung up.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.sent = 0
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/extxml.php"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(self._read(conn))
                    self.script(self, conn)
                except OSError:
                    pass

    @staticmethod
    def _read(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()


# --- exactly once under random faults (also run at scale by bench/faults.py) ---------------

#: Every fault a client must survive by retrying (``bench/faults.py`` and the reliability tests).
FAULT_KINDS = ("close_before", "close_after", "http_500", "delay", "garbage")
_FAULTS_ACCOUNT = ("1000", "faults", "faults-password")


@dataclass
class FaultReport:
    """What became of every message, from the client's outcomes and the emulator's outbox."""

    messages: int
    accepted: int = 0
    accepted_earlier: int = 0
    retried: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    failed_but_delivered: int = 0
    wrongly_not_sent: int = 0
    duplicate_texts: int = 0
    duplicate_ids: int = 0
    lost: int = 0
    unexpected: list[str] = field(default_factory=list)
    resent_accepted: int = 0
    resent_failed: int = 0
    final_lost: int = 0
    final_duplicates: int = 0
    exchanges: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def lines(self) -> list[str]:
        injected = ", ".join(f"{k} {v}" for k, v in self.injected.items() if v)
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())) or "-"
        return [
            f"messages:                         {self.messages}",
            f"exchanges:                        {self.exchanges} "
            f"({sum(self.injected.values())} faulty: {injected})",
            f"accepted:                         {self.accepted} "
            f"(after a retry: {self.retried}; of them accepted earlier: {self.accepted_earlier})",
            f"failed with a typed error:        {self.failed_total} ({failed})",
            f"  of them delivered once anyway:  {self.failed_but_delivered} "
            f"(the error said it may have been sent)",
            f"  said 'not sent' but delivered:  {self.wrongly_not_sent}",
            f"duplicates in the outbox:         {self.duplicate_texts + self.duplicate_ids} "
            f"(same text twice: {self.duplicate_texts}, same id twice: {self.duplicate_ids})",
            f"lost:                             {self.lost}",
            f"resent with the same id:          {self.resent_accepted + self.resent_failed} "
            f"(accepted or accepted earlier: {self.resent_accepted}, failed: {self.resent_failed})",
            f"after the resend: lost {self.final_lost}, duplicates {self.final_duplicates}, "
            f"delivered {self.messages - self.final_lost} of {self.messages}",
            f"time:                             {self.seconds:.1f} s",
        ]


def audit_outbox(emulator: Emulator, texts: dict[int, str]) -> tuple[Counter[int], Counter[str]]:
    outbox = emulator.outbox.snapshot()
    by_id = Counter(message.request_id for message in outbox)
    by_text = Counter(message.text for message in outbox)
    for message in outbox:
        if texts.get(message.request_id) != message.text:
            by_text[f"<unexpected message {message.request_id}>"] += 2  # counts as a duplicate
    return by_id, by_text


def send_under_faults(
    n: int = 5000,
    *,
    rate: float = 0.2,
    seed: int = 1,
    retries: int = 3,
    timeout: float = 0.25,
    delay: float = 0.6,
    backoff: float = 0.005,
    concurrency: int = 16,
    kinds: Sequence[str] = FAULT_KINDS,
    resend: bool = True,
) -> FaultReport:
    """Send ``n`` distinct messages under seeded random faults and audit the outbox.

    ``delay`` (the delay fault) must exceed ``timeout`` (the client's): such an answer arrives
    too late, after the request was processed, which is what makes a naive retry send twice.
    """
    if delay <= timeout:
        raise ValueError("the delay fault must outlast the client's timeout")
    report = FaultReport(messages=n)
    balance = Decimal(10 * n + 100)
    user_id, login, password = _FAULTS_ACCOUNT
    with Emulator([f"{user_id}:{login}:{password}:{balance}"]) as emulator:
        ids = set[int]()
        while len(ids) < n:
            ids.add(protocol.new_request_id())
        # The request id is chosen by the caller, as an application with a database row per
        # message does: then even a message that failed can be resent, or looked up, by its id.
        messages: list[dict[str, Any]] = [
            {"phones": f"7903{i % 10_000_000:07d}", "text": f"Заказ {i} готов, код {seed}-{i}",
             "request_id": request_id}
            for i, request_id in enumerate(ids)
        ]
        texts = {m["request_id"]: m["text"] for m in messages}
        started = time.perf_counter()
        with MobilgroupClient(user_id, login, password, endpoint=emulator.endpoint,
                              timeout=timeout, retries=retries, backoff=backoff,
                              pool_size=concurrency) as client:
            emulator.faults.random(rate, seed=seed, kinds=kinds, seconds=delay)
            outcomes = client.send_many(messages, concurrency=concurrency)
            emulator.faults.clear()
            by_id, _ = audit_outbox(emulator, texts)
            failed_messages: list[dict[str, Any]] = []
            for message, outcome in zip(messages, outcomes, strict=True):
                rid = message["request_id"]
                delivered = by_id[rid] > 0
                if isinstance(outcome, SendResult):
                    report.accepted += 1
                    report.retried += outcome.attempts > 1
                    report.accepted_earlier += outcome.accepted_earlier
                    if not delivered or outcome.request_id != rid:
                        report.lost += 1
                elif isinstance(outcome, MobilgroupError):
                    report.failed[type(outcome).__name__] += 1
                    failed_messages.append(message)
                    if delivered:
                        report.failed_but_delivered += 1
                        if isinstance(outcome, TransportError) and not outcome.maybe_sent:
                            report.wrongly_not_sent += 1
                else:  # send_many returns only the two; anything else is a bug
                    report.unexpected.append(repr(outcome))
                    report.lost += 1
            by_id, by_text = audit_outbox(emulator, texts)
            report.duplicate_ids = sum(c - 1 for c in by_id.values() if c > 1)
            report.duplicate_texts = sum(c - 1 for c in by_text.values() if c > 1)
            # What an application does with a failure: send it again, with the same id. Error 7
            # on that first attempt then means the earlier copy got through.
            if resend:
                for message in failed_messages:
                    try:
                        client.send(**message)
                    except DuplicateRequestId:
                        pass
                    except MobilgroupError:
                        report.resent_failed += 1
                        continue
                    report.resent_accepted += 1
        report.seconds = time.perf_counter() - started
        by_id, by_text = audit_outbox(emulator, texts)
        report.final_lost = sum(1 for rid in texts if by_id[rid] == 0)
        report.final_duplicates = (sum(c - 1 for c in by_id.values() if c > 1)
                                   + sum(c - 1 for c in by_text.values() if c > 1))
        report.exchanges = len(emulator.requests)
        report.injected = dict(emulator.faults.injected)
        if emulator.errors:
            report.unexpected.extend(repr(exc) for exc in emulator.errors)
    return report
