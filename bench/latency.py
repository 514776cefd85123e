"""How long one SMS takes to reach the gateway, path by path: p50/p95/p99 from the call (or, for
a queued message, the commit) until the gateway has it, as ratios to ``client.send``'s.

- ``client.send`` (the baseline) and Django's ``SmsBackend`` (``sms.send_sms``): the call;
- ``QueuedSmsBackend`` (``sms.send_sms`` in a transaction): from the commit, with each set-up the
  docs describe: ``OUTBOX_SEND = "now"`` (threads of the committing process), and tasks run by
  django-tasks-db's ``db_worker`` at its default poll interval (1 s) and at ``--interval 0.1``;
- Celery on Redis (``mobilgroup_backends.celery.enqueue``, a prefork worker): from the call;
- the logging handler (``logger.critical``): from the call.

The emulator runs in this process, so the moment it records a message wakes the benchmark at
once (``outbox.wait_for``); its answer leaves right after. Messages go one at a time, with a
random pause of up to 20 ms between them so that none lines up with a worker's polling. Workers
(``db_worker``, Celery) are their own processes, started and connected before anything is timed.

Run: ``python bench/latency.py [-n 60] [--database sqlite|postgresql] [--skip celery,...]``.
Needs the ``test`` extra (django-tasks-db, Celery, Redis, the PostgreSQL wheel) and a
``redis-server``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from mobilgroup_backends.emulator import Emulator  # noqa: E402

TASKS_PACKAGE = "django.tasks" if find_spec("django.tasks") else "django_tasks"
PHONE = "79031234567"
QUEUED = "mobilgroup_backends.django.QueuedSmsBackend"


def configure(database: dict[str, Any], url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "mobilgroup_backends.django", "sms",
                        "django_tasks_db",
                        *([] if TASKS_PACKAGE == "django.tasks" else [TASKS_PACKAGE])],
        DATABASES={"default": database}, USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        SMS_BACKEND="mobilgroup_backends.django.SmsBackend",
        MOBILGROUP={"URL": url, "TIMEOUT": 10, "RETRIES": 2}, LOGGING_CONFIG=None)
    django.setup()


def worker() -> None:
    """One ``db_worker`` (started by the benchmark, its settings in the environment)."""
    from django.core.management import call_command

    configure(json.loads(os.environ["BENCH_DATABASE"]), os.environ["BENCH_URL"])
    interval = os.environ.get("BENCH_INTERVAL")
    call_command("db_worker", "--no-startup-delay", "--no-reload",
                 *(["--interval", interval] if interval else []), verbosity=0)


@contextlib.contextmanager
def db_worker(database: dict[str, Any], url: str, interval: str | None) -> Iterator[None]:
    env = {**os.environ, "BENCH_DATABASE": json.dumps(database), "BENCH_URL": url,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if interval:
        env["BENCH_INTERVAL"] = interval
    process = subprocess.Popen([sys.executable, str(HERE), "--worker"], env=env)
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def timed(gateway: Emulator, n: int, send: Callable[[int], float]) -> list[float]:
    """``n`` messages one at a time; ``send(i)`` sends one and returns the moment its clock
    starts (the call, or the commit); the latency lasts until the gateway has it."""
    samples = []
    for i in range(n):
        time.sleep(random.uniform(0, 0.02))
        count = len(gateway.outbox)
        started = send(i)
        if not gateway.outbox.wait_for(count + 1, timeout=30):
            raise RuntimeError(f"message {i} did not reach the gateway in 30 s")
        samples.append(time.perf_counter() - started)
    return samples


def called(action: Callable[[int], object]) -> Callable[[int], float]:
    def send(i: int) -> float:
        started = time.perf_counter()
        action(i)
        return started
    return send


def committed(i: int) -> float:
    import sms
    from django.db import transaction

    with transaction.atomic():
        assert sms.send_sms(f"queued {i}", recipients=[PHONE],
                            connection=sms.get_connection(QUEUED)) == 1
    return time.perf_counter()


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=60, help="messages per path")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--skip", default="", help="paths to leave out, comma-separated: "
                        "poll-1s, poll-0.1s, celery, logging")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    skip = set(filter(None, args.skip.split(",")))
    print(f"bench/latency.py -n {args.n} --database {args.database}  "
          f"(load average {os.getloadavg()[0]:.2f})")
    results: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        gateway = stack.enter_context(Emulator(idle_timeout=600, price_per_sms=0))
        url = gateway.url()
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mobilgroup-lat-")))
        if args.database == "postgresql":
            from tests.postgres import PostgresServer

            postgres = PostgresServer().start()
            stack.callback(postgres.stop)
            database = postgres.database()
            database["CONN_MAX_AGE"] = 60
        else:
            database = {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": {"timeout": 60},
                        "CONN_MAX_AGE": 60, "NAME": str(folder / "latency.sqlite3")}
        configure(database, url)
        import sms
        from django.conf import settings
        from django.core.management import call_command

        from mobilgroup_backends import MobilgroupClient

        call_command("migrate", verbosity=0)
        client = stack.enter_context(MobilgroupClient.from_url(url))
        client.balance()
        results["client.send"] = timed(gateway, args.n, called(
            lambda i: client.send(PHONE, f"bare {i}")))
        sms.send_sms("warm-up", recipients=[PHONE])
        results["Django SmsBackend"] = timed(gateway, args.n, called(
            lambda i: sms.send_sms(f"direct {i}", recipients=[PHONE])))

        settings.MOBILGROUP = {**settings.MOBILGROUP, "OUTBOX_SEND": "now"}
        committed(-1)
        gateway.outbox.wait_for(len(gateway.outbox) + 1, timeout=30)
        results['queued, OUTBOX_SEND="now"'] = timed(gateway, args.n, committed)
        settings.MOBILGROUP = {**settings.MOBILGROUP, "OUTBOX_SEND": "task"}

        for interval, label in ((None, "poll-1s"), ("0.1", "poll-0.1s")):
            if label in skip:
                continue
            name = (f"queued, db_worker --interval {interval}" if interval
                    else "queued, db_worker (default 1 s poll)")
            with db_worker(database, url, interval):
                count = len(gateway.outbox)
                committed(-1)  # the worker has started and connected once this is out
                gateway.outbox.wait_for(count + 1, timeout=120)
                results[name] = timed(gateway, args.n, committed)

        if "celery" not in skip:
            results["Celery on Redis"] = celery_latency(gateway, url, folder, args.n)
        if "logging" not in skip:
            results["logging handler"] = logging_latency(gateway, url, args.n)

    base = percentiles(results["client.send"])
    print(f"  {'path':<40} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}   ratios to client.send")
    for name, samples in results.items():
        p50, p95, p99 = percentiles(samples)
        print(f"  {name:<40} {p50 * 1e3:>8.1f} {p95 * 1e3:>8.1f} {p99 * 1e3:>8.1f}   "
              f"{p50 / base[0]:>6.1f}x {p95 / base[1]:>6.1f}x {p99 / base[2]:>6.1f}x")
    print("  target: the queued paths' p95 <= 50 ms with OUTBOX_SEND=\"now\"")


def celery_latency(gateway: Emulator, url: str, folder: Path, n: int) -> list[float]:
    from mobilgroup_backends.celery import enqueue
    from tests.celery_app import Worker, make_app
    from tests.redis_server import RedisServer

    redis = RedisServer(folder).start()
    try:
        broker = redis.url()
        app = make_app(broker)
        app.conf.mobilgroup_url = url
        worker = Worker(broker, url, str(folder / "celery.log"), concurrency=2)
        try:
            count = len(gateway.outbox)
            enqueue(PHONE, "warm-up", app=app)
            if not gateway.outbox.wait_for(count + 1, timeout=120):
                raise RuntimeError(f"the Celery worker sent nothing: {worker.log_tail()}")
            return timed(gateway, n, called(lambda i: enqueue(PHONE, f"celery {i}", app=app)))
        finally:
            worker.stop()
    finally:
        redis.stop()


def logging_latency(gateway: Emulator, url: str, n: int) -> list[float]:
    from mobilgroup_backends.logging import SmsHandler

    handler = SmsHandler(url=url, phones=PHONE, max_sms=n + 10, per_seconds=1,
                         dedupe_seconds=0)
    logger = logging.getLogger("bench.latency")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        count = len(gateway.outbox)
        logger.critical("warm-up")
        gateway.outbox.wait_for(count + 1, timeout=30)
        return timed(gateway, n, called(lambda i: logger.critical("payments down %d", i)))
    finally:
        logger.removeHandler(handler)
        handler.close()


if __name__ == "__main__":
    main()
