"""What one ``logger.critical(...)`` costs the caller, and what a burst of 10,000 costs at all.

Three handlers, timed call by call in the caller's thread:

(a) ``SmsHandler`` (queue and background worker),
(b) ``logging.NullHandler`` (the floor: making the record and nothing else),
(c) a handler that sends inline through the core client, the way ``SMTPHandler`` mails,

all against the emulator adding 20 ms to each answer, as a real gateway would. Targets: (a)'s
median within 15 µs of (b)'s; (c)/(a) at least 1000.

Then a burst of 10,000 distinct criticals through one ``SmsHandler``: at most ``max_sms`` + 1 SMS
reach the emulator (the budget, then one summary when the window reopens), the memory it takes
stays within the queue's bound, and the burst itself finishes well under a second.

Run: ``python bench/handler_overhead.py [--quick]`` (the default run takes about 15 s).
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from decimal import Decimal

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.logging import MAX_QUEUED_CHARS, SmsHandler

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


def timed_calls(handler: logging.Handler, name: str, calls: int, warmup: int = 5) -> list[float]:
    """Microseconds of each ``logger.critical`` call through ``handler`` alone."""
    logger = logging.getLogger(f"bench.{name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    critical = logger.critical
    clock = time.perf_counter_ns
    try:
        for _ in range(warmup):
            critical("payments down: %s", "card processor timeout")
        samples: list[float] = []
        append = samples.append
        gc.collect()
        for _ in range(calls):
            started = clock()
            critical("payments down: %s", "card processor timeout")
            append((clock() - started) / 1000)
        return samples
    finally:
        logger.removeHandler(handler)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def item_bound(queue_size: int) -> int:
    """Bytes a full queue can hold: ``queue_size`` items of the largest size ``emit`` makes."""
    big = "x" * MAX_QUEUED_CHARS
    record = logging.LogRecord("bench." + "n" * 40, logging.CRITICAL, __file__, 1, big, None, None)
    handler = SmsHandler(url=f"mobilgroup://a:b@1/{PHONE}")
    item = handler._prepare(record)
    handler.close()
    size = sys.getsizeof(item) + sum(sys.getsizeof(field) for field in item)
    return queue_size * size


def burst(emulator: Emulator, count: int, *, max_sms: int, per_seconds: float,
          trace_memory: bool) -> dict[str, float]:
    emulator.outbox.clear()
    handler = SmsHandler(url=emulator.url(PHONE), max_sms=max_sms, per_seconds=per_seconds)
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
    # The window reopens after per_seconds: then the timer sends exactly one summary.
    wait_until(lambda: handler.stats.summaries == 1, per_seconds + 5)
    time.sleep(0.2)
    stats = handler.stats
    logger.removeHandler(handler)
    handler.close()
    return {"seconds": elapsed, "sms": len(emulator.outbox), "growth": growth,
            "sent": stats.sent, "suppressed": stats.suppressed, "dropped": stats.dropped,
            "failed": stats.failed, "summaries": stats.summaries,
            "summary": emulator.outbox[-1].text if emulator.outbox else ""}  # type: ignore[dict-item]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a few seconds)")
    parser.add_argument("--calls", type=int, help="calls timed for (a) and (b)")
    parser.add_argument("--inline-calls", type=int, help="calls timed for (c)")
    parser.add_argument("--burst", type=int, default=10_000, help="records in the burst")
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
        a = timed_calls(sms, "sms", calls)
        b = timed_calls(null, "null", calls)
        c = timed_calls(inline, "inline", inline_calls, warmup=2)
        sms.close()
        inline.close()

        print(f"caller-side cost of one logger.critical(), emulator latency {LATENCY * 1000:.0f} ms")
        print(f"{'handler':<28}{'calls':>8}{'median µs':>12}{'p99 µs':>12}")
        for label, samples in (("(a) SmsHandler", a), ("(b) NullHandler", b),
                               ("(c) inline send (SMTP-like)", c)):
            print(f"{label:<28}{len(samples):>8}{statistics.median(samples):>12.2f}"
                  f"{p99(samples):>12.2f}")
        diff = statistics.median(a) - statistics.median(b)
        ratio = statistics.median(c) / statistics.median(a)
        ok_diff, ok_ratio = diff <= 15, ratio >= 1000
        print(f"a - b median: {diff:.2f} µs (target <= 15: {'ok' if ok_diff else 'MISSED'})")
        print(f"c / a median: {ratio:,.0f}x (target >= 1000: {'ok' if ok_ratio else 'MISSED'})")
        print(f"a / b median: {statistics.median(a) / statistics.median(b):.1f}x")
        print(f"(a) handler stats: {sms.stats}")

        timed = burst(emulator, args.burst, max_sms=max_sms, per_seconds=per_seconds,
                      trace_memory=False)
        traced = burst(emulator, args.burst, max_sms=max_sms, per_seconds=per_seconds,
                       trace_memory=True)
    bound = item_bound(queue_size)
    # At most max_sms + 1, and at least the budget and its one summary: a run where nothing
    # reached the gateway proves nothing.
    ok_sms = all(run["sms"] == max_sms + 1 and run["summaries"] == 1 and run["failed"] == 0
                 for run in (timed, traced))
    ok_inline = inline.errors == 0
    ok_memory = traced["growth"] <= bound
    ok_time = timed["seconds"] < 1.0
    print(f"burst of {args.burst:,} criticals (max_sms={max_sms} per {per_seconds:g} s, "
          f"queue_size={queue_size}):")
    print(f"  burst time: {timed['seconds'] * 1000:.0f} ms ({timed['seconds'] / args.burst * 1e6:.2f}"
          f" µs per record) (target < 1 s: {'ok' if ok_time else 'MISSED'})")
    print(f"  SMS at the emulator: {timed['sms']:.0f} (sent {timed['sent']:.0f}, suppressed "
          f"{timed['suppressed']:.0f}, dropped {timed['dropped']:.0f}) (target <= {max_sms + 1}: "
          f"{'ok' if ok_sms else 'MISSED'})")
    print(f"  summary: {timed['summary']!r}")
    print(f"  memory growth during the burst (tracemalloc peak): {traced['growth'] / 1024:.0f} KiB,"
          f" queue bound {bound / 1024:.0f} KiB (target within: {'ok' if ok_memory else 'MISSED'})")
    if not ok_inline:
        print(f"MISSED: the inline handler failed {inline.errors} sends")
    return 0 if ok_diff and ok_ratio and ok_sms and ok_memory and ok_time and ok_inline else 1


if __name__ == "__main__":
    sys.exit(main())
