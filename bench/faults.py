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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mobilgroup_backends.emulator import Emulator
from tests.helpers import FAULT_KINDS as KINDS  # noqa: F401 - what the command runs
from tests.helpers import send_under_faults as run


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
    import tempfile

    import django
    import trustme
    from django.conf import settings

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
