"""Exactly once under faults: N distinct messages through MobilgroupClient while the emulator
breaks a share of the exchanges at random (seeded), then an audit of the emulator's outbox.

Every exchange is faulty with probability ``--rate``; the fault is one of: the connection closed
before the request is processed, closed after it is processed but before the answer, an HTTP 500,
an answer delayed past the client's timeout (processed), a garbage answer (processed). The client
retries each failed exchange up to ``--retries`` times with the same request id.

Printed: accepted (and how many of them were "accepted earlier", i.e. a retry found the first copy
had arrived), failed with a typed error after every retry, duplicates in the outbox (the same
text twice, or the same request id twice), and lost (neither accepted nor reported failed, or
accepted but not in the outbox). A failure is not a loss: the caller was told. With 20% faults
and 3 retries, a message fails only when all 4 of its exchanges are faulty (0.2^4 = 0.16%, about
8 in 5,000); those are resent once with the same request id, as an application should, and the
final line shows the result of that.

``--matrix`` runs the exactly-once matrix instead (``tests/exactly_once.py``): every sending path
(client ``send``, ``send_many``, the Django backend and its split messages, Apprise with its
``retry``, the logging handler) against every fault point (closed before the request is read,
closed after it was processed, HTTP 500, an answer slower than the timeout, a TLS record corrupted
after the request, connections refused on the last attempt, headers trickled), over TLS, and
prints what the caller was told and how many copies the outbox holds, per cell.

Run: ``python bench/faults.py [-n 5000] [--rate 0.2] [--seed 1] [--retries 3]`` or
``python bench/faults.py --matrix``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mobilgroup_backends import MobilgroupClient, SendResult, protocol
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import DuplicateRequestId, MobilgroupError, TransportError

#: Every fault a client must survive by retrying.
KINDS = ("close_before", "close_after", "http_500", "delay", "garbage")
USER_ID, LOGIN, PASSWORD = "1000", "faults", "faults-password"


@dataclass
class Report:
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


def _audit(emulator: Emulator, texts: dict[int, str]) -> tuple[Counter[int], Counter[str]]:
    outbox = emulator.outbox.snapshot()
    by_id = Counter(message.request_id for message in outbox)
    by_text = Counter(message.text for message in outbox)
    for message in outbox:
        if texts.get(message.request_id) != message.text:
            by_text[f"<unexpected message {message.request_id}>"] += 2  # counts as a duplicate
    return by_id, by_text


def run(
    n: int = 5000,
    *,
    rate: float = 0.2,
    seed: int = 1,
    retries: int = 3,
    timeout: float = 0.25,
    delay: float = 0.6,
    backoff: float = 0.005,
    concurrency: int = 16,
    kinds: Sequence[str] = KINDS,
    resend: bool = True,
) -> Report:
    """Send ``n`` distinct messages under seeded random faults and audit the outbox.

    ``delay`` (the delay fault) must exceed ``timeout`` (the client's): such an answer arrives
    too late, after the request was processed, which is what makes a naive retry send twice.
    """
    if delay <= timeout:
        raise ValueError("the delay fault must outlast the client's timeout")
    report = Report(messages=n)
    balance = Decimal(10 * n + 100)
    with Emulator([f"{USER_ID}:{LOGIN}:{PASSWORD}:{balance}"]) as emulator:
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
        with MobilgroupClient(USER_ID, LOGIN, PASSWORD, endpoint=emulator.endpoint,
                              timeout=timeout, retries=retries, backoff=backoff,
                              pool_size=concurrency) as client:
            emulator.faults.random(rate, seed=seed, kinds=kinds, seconds=delay)
            outcomes = client.send_many(messages, concurrency=concurrency)
            emulator.faults.clear()
            by_id, _ = _audit(emulator, texts)
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
            by_id, by_text = _audit(emulator, texts)
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
        by_id, by_text = _audit(emulator, texts)
        report.final_lost = sum(1 for rid in texts if by_id[rid] == 0)
        report.final_duplicates = (sum(c - 1 for c in by_id.values() if c > 1)
                                   + sum(c - 1 for c in by_text.values() if c > 1))
        report.exchanges = len(emulator.requests)
        report.injected = dict(emulator.faults.injected)
        if emulator.errors:
            report.unexpected.extend(repr(exc) for exc in emulator.errors)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="distinct messages")
    parser.add_argument("--rate", type=float, default=0.2, help="share of faulty exchanges")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=0.25, help="the client's timeout, s")
    parser.add_argument("--delay", type=float, default=0.6, help="the delay fault, s")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--matrix", action="store_true",
                        help="run the exactly-once matrix (every path x every fault point)")
    args = parser.parse_args()
    if args.matrix:
        raise SystemExit(matrix())
    report = run(args.n, rate=args.rate, seed=args.seed, retries=args.retries,
                 timeout=args.timeout, delay=args.delay, concurrency=args.concurrency)
    print(f"bench/faults.py -n {args.n} --rate {args.rate} --seed {args.seed} "
          f"--retries {args.retries} (client timeout {args.timeout} s, delay fault "
          f"{args.delay} s, concurrency {args.concurrency})")
    for line in report.lines():
        print(line)
    if report.unexpected:
        print("UNEXPECTED:", *report.unexpected[:10], sep="\n  ")
    ok = not (report.lost or report.duplicate_ids or report.duplicate_texts
              or report.final_lost or report.final_duplicates or report.wrongly_not_sent
              or report.unexpected)
    print("target (0 duplicates, 0 lost):", "met" if ok else "MISSED")
    raise SystemExit(0 if ok else 1)


def matrix() -> int:
    """The exactly-once matrix over TLS (a test CA), one fresh emulator per cell; 0 when every
    cell holds."""
    import os
    import ssl
    import sys
    import tempfile
    from pathlib import Path

    import django
    import trustme
    from django.conf import settings

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.exactly_once import FAULTS, PATHS, run_cell

    settings.configure(INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        ca_file = os.path.join(folder, "ca.pem")
        authority.cert_pem.write_to_path(ca_file)
        os.environ["REQUESTS_CA_BUNDLE"] = ca_file
        for name in [n for n in os.environ if n.startswith("MOBILGROUP_")]:
            del os.environ[name]
        print(f"{'path':<13} {'fault point':<24} {'copies':>6}  the caller was told")
        for path in PATHS:
            for fault in FAULTS:
                with Emulator(ssl_context=context) as gateway:
                    cell = run_cell(gateway, path, fault)
                copies = ",".join(str(n) for n in cell.copies.values()) or "0"
                mark = "" if cell.exactly_once else "  <-- NOT EXACTLY ONCE"
                failures += not cell.exactly_once
                print(f"{path:<13} {fault:<24} {copies:>6}  {cell.told}{mark}")
    print(f"{len(PATHS) * len(FAULTS) - failures} of {len(PATHS) * len(FAULTS)} cells exactly "
          f"once")
    return 1 if failures else 0


if __name__ == "__main__":
    main()
