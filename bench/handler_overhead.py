"""What one ``logger.critical(...)`` costs the caller, and what a burst of 10,000 costs at all.

Three handlers, timed call by call in the caller's thread:

(a) ``SmsHandler`` (queue and background worker),
(b) ``logging.NullHandler`` (the floor: making the record and nothing else),
(c) a handler that sends inline through the core client, the way ``SMTPHandler`` mails,

all against the emulator adding 20 ms to each answer, as a real gateway would. Targets: (a)'s
median within 15 µs of (b)'s; (c)/(a) at least 1000.

The three are timed in interleaved rounds; each ratio is the median of the per-round ratios
(``bench/_ratio.py``). Every call logs a different message (the handler deduplicates identical
ones, which would measure a cheaper path).

Then a burst of 10,000 distinct criticals through one ``SmsHandler``: exactly ``max_sms`` + 1 SMS
reach the emulator (the budget, then one summary when the window reopens), the memory it takes
stays within the queue's bound, and the burst itself finishes well under a second. The budget's
clock stands still during the burst and is moved on afterwards, so the SMS count does not depend
on how fast this machine logs (under tracemalloc the burst is slower than the window); the burst
time is measured on its own, untraced.

Run: ``python bench/handler_overhead.py [--quick]`` (the default run takes about 15 s).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import logging
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from decimal import Decimal

from _ratio import measure

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.logging import SmsHandler
from mobilgroup_backends.logging.handler import MAX_QUEUED_CHARS

PHONE = "79031234567"
LATENCY = 0.02


class InlineSmsHandler(logging.Handler):
    """The usual way: send from ``emit``, in the caller's thread (like SMTPHandler)."""

    def __init__(self, url: str) -> None:
        super().__init__(logging.CRITICAL)
        self.client = MobilgroupClient.from_url(url, timeout=5, retries=0)
        self.phones = (PHONE,)

        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.client.send(self.phones, self.format(record)[:140])
        except Exception:
            self.errors += 1
            self.handleError(record)

    def close(self) -> None:
        self.client.close()
        super().close()


_serial = itertools.count()


def timed_calls(handler: logging.Handler, name: str, calls: int, warmup: int = 5) -> list[float]:
    """Microseconds of each ``logger.critical`` call through ``handler`` alone, each call with a
    message of its own."""
    logger = logging.getLogger(f"bench.{name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    critical = logger.critical
    clock = time.perf_counter_ns
    try:
        serial = _serial
        for _ in range(warmup):
            critical("payments down: order %d, card processor timeout", next(serial))
        samples: list[float] = []
        append = samples.append
        gc.collect()
        for _ in range(calls):
            number = next(serial)
            started = clock()
            critical("payments down: order %d, card processor timeout", number)
            append((clock() - started) / 1000)
        return samples
    finally:
        logger.removeHandler(handler)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def item_bound(queue_size: int) -> int:
    """Bytes a full queue can hold: ``queue_size`` items of the largest size ``emit`` makes."""
    big = "x" * MAX_QUEUED_CHARS
    record = logging.LogRecord("bench." + "n" * 40, logging.CRITICAL, __file__, 1, big, None, None)
    handler = SmsHandler(url=f"mobilgroup://a:b@1/{PHONE}")
    item = handler._prepare(record)
    handler.close()
    size = sys.getsizeof(item) + sum(sys.getsizeof(field) for field in item)
    return queue_size * size


class StillClock:
    """The budget's clock: stands still until moved, so counts do not depend on speed."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


def burst(emulator: Emulator, count: int, *, max_sms: int, per_seconds: float,
          trace_memory: bool) -> dict[str, float]:
    emulator.outbox.clear()
    clock = StillClock()
    handler = SmsHandler(url=emulator.url(PHONE), max_sms=max_sms, per_seconds=per_seconds,
                         clock=clock)
    logger = logging.getLogger(f"bench.burst.{trace_memory}")
    logger.propagate = False
    logger.addHandler(handler)
    gc.collect()
    if trace_memory:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
    started = time.perf_counter()
    for i in range(count):
        logger.critical("order %d failed: card declined", i)
    elapsed = time.perf_counter() - started
    growth = 0.0
    if trace_memory:
        growth = tracemalloc.get_traced_memory()[1] - before
        tracemalloc.stop()
    handler.flush()
    within_window = len(emulator.outbox)
    # The window reopens: the timer alone must send exactly one summary, and nothing after it.
    clock.now += per_seconds
    emulator.outbox.wait_for(max_sms + 1, timeout=per_seconds + 5)
    time.sleep(min(per_seconds, 1.0) + 0.2)
    stats = handler.stats
    logger.removeHandler(handler)
    handler.close()
    return {"seconds": elapsed, "within_window": within_window, "sms": len(emulator.outbox),
            "growth": growth, "sent": stats.sent, "suppressed": stats.suppressed,
            "dropped": stats.dropped, "failed": stats.failed, "summaries": stats.summaries,
            "summary": emulator.outbox[-1].text if emulator.outbox else ""}  # type: ignore[dict-item]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a few seconds)")
    parser.add_argument("--calls", type=int, help="calls timed for (a) and (b)")
    parser.add_argument("--inline-calls", type=int, help="calls timed for (c)")
    parser.add_argument("--burst", type=int, default=10_000, help="records in the burst")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of (a), (b), (c)")
    args = parser.parse_args(argv)
    calls = args.calls or (5_000 if args.quick else 50_000)
    inline_calls = args.inline_calls or (40 if args.quick else 200)
    max_sms, per_seconds, queue_size = 5, 1.0, 1000

    with Emulator(latency=LATENCY) as emulator:
        emulator.account.balance = Decimal(10**9)  # the default 100 would run out
        # A queue that holds every call, so that each one takes the full path (append and wake
        # the worker), none the cheaper "queue full" one.
        sms = SmsHandler(url=emulator.url(PHONE), queue_size=calls + 100)
        null = logging.NullHandler()
        inline = InlineSmsHandler(emulator.url(PHONE))
        samples: dict[str, list[float]] = {"a": [], "b": [], "c": []}

        def round_of(key: str, handler: logging.Handler, count: int) -> Callable[[], float]:
            def run() -> float:
                taken = timed_calls(handler, key, count, warmup=2)
                samples[key].extend(taken)
                return statistics.median(taken)
            return run

        rounds = measure({"a": round_of("a", sms, max(1, calls // args.rounds)),
                          "b": round_of("b", null, max(1, calls // args.rounds)),
                          "c": round_of("c", inline, max(1, inline_calls // args.rounds))},
                         args.rounds)
        sms.close()
        inline.close()
        a, b, c = samples["a"], samples["b"], samples["c"]

        print(f"caller-side cost of one logger.critical(), emulator latency {LATENCY * 1000:.0f} ms, "
              f"{args.rounds} interleaved rounds")
        print(f"{'handler':<28}{'calls':>8}{'median µs':>12}{'p99 µs':>12}")
        for label, taken in (("(a) SmsHandler", a), ("(b) NullHandler", b),
                             ("(c) inline send (SMTP-like)", c)):
            print(f"{label:<28}{len(taken):>8}{statistics.median(taken):>12.2f}"
                  f"{p99(taken):>12.2f}")
        diff = statistics.median(x - y for x, y in zip(rounds.values["a"], rounds.values["b"],
                                                        strict=True))
        ratio = rounds.ratio("c", "a")
        ok_diff, ok_ratio = diff <= 15, ratio >= 1000
        print(f"a - b median (per round): {diff:.2f} µs (target <= 15: "
              f"{'ok' if ok_diff else 'MISSED'})")
        print(f"c / a: {rounds.describe('c', 'a')} (target >= 1000: "
              f"{'ok' if ok_ratio else 'MISSED'})")
        print(f"a / b: {rounds.describe('a', 'b')}")
        print(f"(a) handler stats: {sms.stats}")

        timed = burst(emulator, args.burst, max_sms=max_sms, per_seconds=per_seconds,
                      trace_memory=False)
        traced = burst(emulator, args.burst, max_sms=max_sms, per_seconds=per_seconds,
                       trace_memory=True)
    bound = item_bound(queue_size)
    # At most max_sms + 1, and at least the budget and its one summary: a run where nothing
    # reached the gateway proves nothing.
    ok_sms = all(run["within_window"] == max_sms and run["sms"] == max_sms + 1
                 and run["summaries"] == 1 and run["failed"] == 0 for run in (timed, traced))
    ok_inline = inline.errors == 0
    ok_memory = traced["growth"] <= bound
    ok_time = timed["seconds"] < 1.0
    print(f"burst of {args.burst:,} criticals (max_sms={max_sms} per {per_seconds:g} s, "
          f"queue_size={queue_size}):")
    print(f"  burst time: {timed['seconds'] * 1000:.0f} ms ({timed['seconds'] / args.burst * 1e6:.2f}"
          f" µs per record) (target < 1 s: {'ok' if ok_time else 'MISSED'})")
    for label, run in (("untraced", timed), ("under tracemalloc", traced)):
        print(f"  SMS at the emulator, {label}: {run['within_window']:.0f} in the window, "
              f"{run['sms']:.0f} in all (sent {run['sent']:.0f}, suppressed "
              f"{run['suppressed']:.0f}, dropped {run['dropped']:.0f}, summaries "
              f"{run['summaries']:.0f}) (target {max_sms} then {max_sms + 1}: "
              f"{'ok' if ok_sms else 'MISSED'})")
    print(f"  summary: {timed['summary']!r}")
    print(f"  memory growth during the burst (tracemalloc peak): {traced['growth'] / 1024:.0f} KiB,"
          f" queue bound {bound / 1024:.0f} KiB (target within: {'ok' if ok_memory else 'MISSED'})")
    if not ok_inline:
        print(f"MISSED: the inline handler failed {inline.errors} sends")
    return 0 if ok_diff and ok_ratio and ok_sms and ok_memory and ok_time and ok_inline else 1


if __name__ == "__main__":
    sys.exit(main())
