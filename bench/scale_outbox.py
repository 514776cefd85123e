"""The Django outbox at 20 ms gateway latency: 2,000 rows enqueued in one transaction, then
drained by django-tasks-db's real ``db_worker`` processes; then 2,000 rows whose enqueue was lost,
sent by the sweeper. Baseline, in the same run: the same messages sent in-process with
``client.send_many`` at the same number of senders at once.

Run: ``python bench/scale_outbox.py [-n 2000] [--workers 4] [--sweeper-concurrency 4]
[--database postgresql|sqlite]``. Needs the ``test`` extra (django-tasks-db, the PostgreSQL
wheel). PostgreSQL is a throw-away server (as the tests run it: ``synchronous_commit=off``), the
database several workers share in production; SQLite is a file in a temporary folder, where every
commit waits for the disk and writers take turns, so it measures the disk more than the outbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from _emulator import emulator

from mobilgroup_backends import MobilgroupClient, SendResult

HERE = Path(__file__).resolve()
# Django 6 has the Tasks framework built in; 5.2 takes it from the django-tasks backport.
TASKS_PACKAGE = "django.tasks" if find_spec("django.tasks") else "django_tasks"


def configure(database: dict[str, Any], url: str, task_backend: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "mobilgroup_backends.django",
                        "django_tasks_db", *([] if TASKS_PACKAGE == "django.tasks" else [TASKS_PACKAGE])],
        DATABASES={"default": database},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        TASKS={"default": {"BACKEND": task_backend}},
        MOBILGROUP={"URL": url, "TIMEOUT": 10, "RETRIES": 2},
        LOGGING_CONFIG=None,
    )
    django.setup()


def worker() -> None:
    """One ``db_worker`` process (started by the benchmark with its settings in the env)."""
    from django.core.management import call_command

    configure(json.loads(os.environ["BENCH_DATABASE"]), os.environ["BENCH_URL"],
              "django_tasks_db.DatabaseBackend")
    call_command("db_worker", "--no-startup-delay", "--interval", "0.05", "--no-reload",
                 verbosity=0)


def accepted_count() -> int:
    from mobilgroup_backends.django.models import OutboxMessage

    return int(OutboxMessage.objects.filter(state=OutboxMessage.ACCEPTED).count())


def enqueue_rows(n: int, text: str) -> float:
    from django.db import transaction

    from mobilgroup_backends.django.outbox import enqueue

    started = time.perf_counter()
    with transaction.atomic():
        for i in range(n):
            enqueue(f"7903{i:07d}", f"{text} {i}")
    return time.perf_counter() - started


def drain_with_workers(n: int, workers: int, env: dict[str, str]) -> float:
    processes = [subprocess.Popen([sys.executable, str(HERE), "--worker"], env=env)
                 for _ in range(workers)]
    started = time.perf_counter()
    try:
        deadline = started + 600
        while accepted_count() < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {accepted_count()} of {n} sent in 600 s")
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a worker died")
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def send_many_rate(url: str, n: int, concurrency: int) -> float:
    messages = [{"phones": f"7904{i:07d}", "text": f"baseline {i}"} for i in range(n)]
    with MobilgroupClient.from_url(url, timeout=10, retries=2) as client:
        client.balance()
        started = time.perf_counter()
        outcomes = client.send_many(messages, concurrency=concurrency)
        elapsed = time.perf_counter() - started
    assert all(isinstance(o, SendResult) for o in outcomes)
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="rows per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per gateway answer")
    parser.add_argument("--workers", type=int, default=4, help="db_worker processes")
    parser.add_argument("--sweeper-concurrency", type=int, default=4)
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(emulator(latency=args.latency))
        if args.database == "postgresql":
            sys.path.insert(0, str(HERE.parent.parent))
            from tests.postgres import PostgresServer

            postgres = PostgresServer().start()
            stack.callback(postgres.stop)
            database = postgres.database()
            database["CONN_MAX_AGE"] = 60  # workers keep their connection, as they should
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mobilgroup-bench-"))
            database = {"ENGINE": "django.db.backends.sqlite3", "OPTIONS": {"timeout": 60},
                        "CONN_MAX_AGE": 60,
                        "NAME": os.path.join(folder, "outbox.sqlite3")}
        configure(database, server.url, "django_tasks_db.DatabaseBackend")
        from django.core.management import call_command

        from mobilgroup_backends.django.models import OutboxMessage
        from mobilgroup_backends.django.outbox import sweep

        call_command("migrate", verbosity=0)
        env = {**os.environ, "BENCH_DATABASE": json.dumps(database), "BENCH_URL": server.url,
               "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])}

        enqueued = enqueue_rows(args.n, "task")
        drained = drain_with_workers(args.n, args.workers, env)

        # The sweeper: rows committed whose enqueue was lost (a backend that never runs them).
        from django.test.utils import override_settings

        with override_settings(TASKS={"default": {
                "BACKEND": f"{TASKS_PACKAGE}.backends.dummy.DummyBackend"}}):
            enqueue_rows(args.n, "sweep")
        started = time.perf_counter()
        result = sweep(stale_after=timedelta(0), concurrency=args.sweeper_concurrency)
        swept = time.perf_counter() - started
        assert len(result.accepted) == args.n, result
        assert not OutboxMessage.objects.exclude(state=OutboxMessage.ACCEPTED).exists()

        base_workers = send_many_rate(server.url, args.n, args.workers)
        base_sweeper = (base_workers if args.sweeper_concurrency == args.workers
                        else send_many_rate(server.url, args.n, args.sweeper_concurrency))

    drain_rate, sweep_rate = args.n / drained, args.n / swept
    report: dict[str, Any] = {
        "database": args.database, "rows": args.n, "latency_ms": args.latency * 1000,
        "enqueue_rows_per_s": round(args.n / enqueued),
        "drain_msg_per_s": round(drain_rate, 1), "sweeper_msg_per_s": round(sweep_rate, 1),
        "send_many_msg_per_s": round(base_workers, 1),
    }
    print(f"enqueue, one transaction:                 {args.n / enqueued:>8.0f} rows/s")
    print(f"drained by {args.workers} db_worker processes:       {drain_rate:>8.1f} messages/s")
    print(f"sent by the sweeper ({args.sweeper_concurrency} threads):          {sweep_rate:>8.1f} messages/s")
    print(f"baseline send_many(concurrency={args.workers}):      {base_workers:>8.1f} messages/s")
    print(f"drain / baseline = {drain_rate / base_workers:.2f}x;  "
          f"sweeper / baseline = {sweep_rate / base_sweeper:.2f}x")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
