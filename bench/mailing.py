"""A mailing of 2,000 rows with the gateway taking 20 ms per answer, in one run:

1. personalised rows (one text, so one request, per row): the mailing engine (CSV read, plan,
   ids minted into the SQLite state file, concurrent sends, every outcome recorded) against
   ``client.send_many`` of the same messages at the same concurrency. Target >= 0.9x: the state
   file must not be the bottleneck.
2. 2,000 identical texts: the engine, which groups them into requests of 100 phones, against
   one request per phone (``send_many``).

Run: ``python bench/mailing.py [-n 2000] [--latency 0.02] [--concurrency 16] [--repeat 3]``.

``--rss 10000,100000,1000000`` measures instead the memory of whole ``mobilgroup mailing send``
runs (each its own process, against the emulator with no latency): the peak resident set size
and the rate per row at each size, personalised rows (``--same`` for identical texts). Target:
the peak does not grow with the rows (1M personalised rows <= 150 MB), the rate stays flat.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _emulator import emulator
from _ratio import measure

from mobilgroup_backends import MobilgroupClient, SendResult
from mobilgroup_backends.mailing import (
    MailingState,
    make_plan,
    read_contacts,
    send_mailing,
)

TEMPLATE = "Здравствуйте, {name}! Ваш заказ {order} готов к выдаче"


def write_csv(path: Path, count: int, *, same: bool) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("phone;name;order\n")
        for i in range(count):
            out.write(f"7903{i:07d};" + ("Анна;A-1" if same else f"Клиент {i};N-{i}") + "\n")


#: ``mobilgroup`` run so that it reports its own peak memory on standard error. The peak of
#: the process's own memory (Linux's VmHWM) is the figure: ``ru_maxrss`` of a child also counts
#: the parent's pages it shared between fork and exec, so it can be no less than this script.
PEAK_REPORTING = """
import resource, sys
from mobilgroup_backends.cli import main
code = main(sys.argv[1:])
try:
    with open('/proc/self/status') as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f'peak KiB {peak}', file=sys.stderr)
raise SystemExit(code)
"""


def peak_of(done: str) -> float:
    """The peak (MiB) a run of :data:`PEAK_REPORTING` printed last on standard error."""
    for line in reversed(done.splitlines()):
        if line.startswith("peak KiB "):
            return int(line.split()[2]) / 1024
    raise SystemExit(f"no peak reported: {done[-2000:]}")


def run_engine(client: MobilgroupClient, folder: Path, name: str, count: int, *, same: bool,
               concurrency: int) -> tuple[float, float, int]:
    """Seconds to read and check the CSV (as the baseline builds its list of messages, outside
    the measurement); seconds from the checked plan to every outcome recorded (ids minted into
    a new state file, sends, outcomes written); requests."""
    source = folder / f"{name}.csv"
    write_csv(source, count, same=same)
    started_reading = time.perf_counter()
    plan = make_plan(read_contacts(source), TEMPLATE, client, source=str(source))
    planned = started = time.perf_counter()
    with plan, MailingState.create(folder / f"{name}.sqlite", plan, source=str(source),
                                   template=TEMPLATE) as state:
        summary = send_mailing(state, client, concurrency=concurrency)
        took = time.perf_counter() - started
        counts = state.counts()
    if summary.failed_requests or counts["accepted_messages"] != count:
        raise SystemExit(f"the mailing did not go out whole: {counts}")
    return planned - started_reading, took, plan.requests


def run_send_many(client: MobilgroupClient, count: int, *, same: bool,
                  concurrency: int) -> float:
    messages = [{"phones": f"7903{i:07d}",
                 "text": TEMPLATE.format(name="Анна" if same else f"Клиент {i}",
                                         order="A-1" if same else f"N-{i}")}
                for i in range(count)]
    started = time.perf_counter()
    outcomes = client.send_many(messages, concurrency=concurrency)
    took = time.perf_counter() - started
    if not all(isinstance(o, SendResult) for o in outcomes):
        raise SystemExit("send_many failed on some rows")
    return took


def peak_rss(sizes: list[int], *, same: bool, concurrency: int) -> None:
    """Peak RSS (MiB) and rows per second of ``mobilgroup mailing send`` at each size."""
    print(f"mobilgroup mailing send, {'identical' if same else 'personalised'} texts, "
          f"concurrency {concurrency}  (load average {os.getloadavg()[0]:.2f})")
    print(f"  {'rows':>9} {'peak RSS MiB':>13} {'rows/s':>9}")
    with emulator() as server, tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            source, state = Path(tmp) / f"{size}.csv", Path(tmp) / f"{size}.sqlite"
            write_csv(source, size, same=same)
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", PEAK_REPORTING, "mailing", "send", str(source),
                 "--text", TEMPLATE, "--state", str(state), "--concurrency", str(concurrency)],
                env={**os.environ, "MOBILGROUP_URL": server.url}, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, check=False)
            took = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"mailing send failed ({done.returncode}): "
                                 f"{done.stderr[-2000:]}")
            print(f"  {size:>9} {peak_of(done.stderr):>13.1f} {size / took:>9.0f}")
            source.unlink()
            state.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="rows per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; ratios are medians of per-round ratios")
    parser.add_argument("--rss", metavar="SIZES",
                        help="peak RSS of mailing send at these row counts (comma-separated)")
    parser.add_argument("--same", action="store_true", help="with --rss: identical texts")
    args = parser.parse_args()
    if args.rss:
        peak_rss([int(size) for size in args.rss.split(",")], same=args.same,
                 concurrency=args.concurrency)
        return
    n, c = args.n, args.concurrency
    with emulator(latency=args.latency) as server, \
            MobilgroupClient.from_url(server.url, pool_size=c) as client, \
            tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_send_many(client, c * 4, same=False, concurrency=c)  # open every pooled connection
        turns = itertools.count()
        readings: list[float] = []
        requests = grouped_requests = 0

        def personal() -> float:
            nonlocal requests
            read, took, requests = run_engine(client, folder, f"personal{next(turns)}", n,
                                              same=False, concurrency=c)
            readings.append(read)
            return took

        def same() -> float:
            nonlocal grouped_requests
            took, _, grouped_requests = run_engine(client, folder, f"same{next(turns)}", n,
                                                   same=True, concurrency=c)
            return took

        # Interleaved rounds: a busy machine slows both sides of a ratio alike.
        rounds = measure({
            "baseline": lambda: run_send_many(client, n, same=False, concurrency=c),
            "engine": personal, "grouped": same,
            "per_phone": lambda: run_send_many(client, n, same=True, concurrency=c),
        }, args.repeat)
        baseline, engine = rounds.median("baseline"), rounds.median("engine")
        grouped, per_phone = rounds.median("grouped"), rounds.median("per_phone")
        reading = statistics.median(readings)
    print(f"{n} personalised rows, {args.latency * 1000:g} ms per answer, concurrency {c}:")
    print(f"  send_many:                {n / baseline:>8.1f} SMS/s ({n} requests)")
    print(f"  mailing engine:           {n / engine:>8.1f} SMS/s ({requests} requests, "
          f"state file included)")
    print(f"  engine / send_many = {rounds.describe('baseline', 'engine')}  (target >= 0.9x)")
    print(f"  (before either: the CSV read and every row checked in {reading * 1000:.0f} ms)")
    print(f"{n} identical texts:")
    print(f"  one request per phone:    {n / per_phone:>8.1f} SMS/s ({n} requests)")
    print(f"  grouped by the engine:    {n / grouped:>8.1f} SMS/s ({grouped_requests} requests)")
    print(f"  grouped / per phone = {rounds.describe('per_phone', 'grouped')}")


if __name__ == "__main__":
    main()
