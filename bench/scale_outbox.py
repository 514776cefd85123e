"""The Django outbox at 20 ms gateway latency: 2,000 rows enqueued in one transaction, then
drained by django-tasks-db's real ``db_worker`` processes; then 2,000 rows whose enqueue was lost,
sent by the sweeper. Baseline, in the same round: the same number of messages sent in-process
with ``client.send_many`` at the same number of senders at once.

The workers are started once and kept (as in production); a drain is timed end to end, from the
first ``enqueue`` until every row is accepted, enqueueing included: the workers send the first
tasks while the commit hooks still queue the rest, so a clock started after the enqueue would
leave that work out and overstate the rate. The enqueue rate is reported on its own line. Each
round measures the contenders back to back; the ratios are the median of the rounds' own ratios,
with their spread (``bench/_ratio.py``).

Before the workers start, what writing rows costs: ``outbox.enqueue`` per row and
``outbox.enqueue_many`` of them all, against ``OutboxMessage.objects.create`` of the same rows
(fields made beforehand), each in one transaction, commit (and so the tasks the commit queues)
included, in alternating order per round. Targets: enqueue/create <= 1.3 (time per row).

Run: ``python bench/scale_outbox.py [-n 2000] [--workers 4] [--sweeper-concurrency 4]
[--batch 10] [--rounds 3] [--database postgresql|sqlite] [--enqueue-only]``. ``--batch`` is
``MOBILGROUP['OUTBOX_BATCH']`` (1: one task per row). Needs the ``test`` extra (django-tasks-db,
the PostgreSQL wheel). PostgreSQL is a throw-away server (as the tests run it:
``synchronous_commit=off``), the database several workers share in production; SQLite is a file
in a temporary folder, where every commit waits for the disk and writers take turns, so it
measures the disk more than the outbox.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from _emulator import emulator
from _ratio import measure
from _scaling import send_many_rate, wait_for

HERE = Path(__file__).resolve()
# Django 6 has the Tasks framework built in; 5.2 takes it from the django-tasks backport.
TASKS_PACKAGE = "django.tasks" if find_spec("django.tasks") else "django_tasks"
#: How often an idle worker looks for a task (django-tasks-db's --interval).
WORKER_INTERVAL = "0.1"


def configure(database: dict[str, Any], url: str, task_backend: str, batch: int = 10) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "mobilgroup_backends.django",
                        "django_tasks_db", *([] if TASKS_PACKAGE == "django.tasks" else [TASKS_PACKAGE])],
        DATABASES={"default": database},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        TASKS={"default": {"BACKEND": task_backend}},
        MOBILGROUP={"URL": url, "TIMEOUT": 10, "RETRIES": 2, "OUTBOX_BATCH": batch},
        LOGGING_CONFIG=None,
    )
    django.setup()


def worker() -> None:
    """One ``db_worker`` process (started by the benchmark with its settings in the env)."""
    from django.core.management import call_command

    configure(json.loads(os.environ["BENCH_DATABASE"]), os.environ["BENCH_URL"],
              "django_tasks_db.DatabaseBackend")
    call_command("db_worker", "--no-startup-delay", "--interval", WORKER_INTERVAL, "--no-reload",
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


def enqueue_costs(n: int, rounds: int) -> None:
    """Seconds per row of enqueue, enqueue_many and objects.create (same rows), paired by round;
    printed as ratios to create."""
    from django.db import transaction
    from django_tasks_db.models import DBTaskResult

    from mobilgroup_backends.django.models import OutboxMessage
    from mobilgroup_backends.django.outbox import enqueue, enqueue_many, settings_client

    messages = [(f"7903{i:07d}", f"cost {i}") for i in range(n)]
    client = settings_client()

    def empty() -> None:  # no worker runs yet: the queued tasks are dropped with the rows
        OutboxMessage.objects.all().delete()
        DBTaskResult.objects.all().delete()

    def timed(write: Any) -> float:
        empty()
        started = time.perf_counter()
        with transaction.atomic():
            write()
        return (time.perf_counter() - started) / n

    def one_by_one() -> None:
        for phones, text in messages:
            enqueue(phones, text)

    def created() -> Any:
        prepared = [client.prepare(phones, text) for phones, text in messages]
        rows = [{"request_id": o.parts[0].request_id, "phones": list(o.phones),
                 "text": o.parts[0].text, "outgoing": o.to_dict(), "part": 1, "parts": 1,
                 "track_delivery": False, "not_after": None} for o in prepared]

        def write() -> None:
            for row in rows:
                OutboxMessage.objects.create(**row)
        return timed(write)

    rounds_of = measure({"create": created, "enqueue": lambda: timed(one_by_one),
                         "enqueue_many": lambda: timed(lambda: enqueue_many(messages))},
                        rounds, alternate=True)
    empty()
    print(f"per row, {n} rows in one transaction (commit included):")
    for name in ("create", "enqueue", "enqueue_many"):
        print(f"  {name:<13} {rounds_of.median(name) * 1e6:>7.1f} µs")
    print(f"  enqueue/create      = {rounds_of.describe('enqueue', 'create')}  (target <= 1.3)")
    print(f"  enqueue_many/create = {rounds_of.describe('enqueue_many', 'create')}")


@contextlib.contextmanager
def workers(count: int, env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = [subprocess.Popen([sys.executable, str(HERE), "--worker"], env=env)
                 for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def clear() -> None:
    """Empty the outbox and the task table, so that every round starts from the same tables;
    first let the workers record the last tasks' results (every row is accepted a moment before
    its task is marked finished)."""
    from django_tasks_db.models import DBTaskResult

    from mobilgroup_backends.django.models import OutboxMessage

    wait_for(lambda: int(not DBTaskResult.objects.filter(finished_at__isnull=True).exists()), 1,
             timeout=60, poll=0.05)
    OutboxMessage.objects.all().delete()
    DBTaskResult.objects.all().delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="rows per measurement")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per gateway answer")
    parser.add_argument("--workers", type=int, default=4, help="db_worker processes")
    parser.add_argument("--sweeper-concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=10, help="MOBILGROUP['OUTBOX_BATCH']")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median ratio counts)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--enqueue-only", action="store_true",
                        help="only what writing rows costs; no workers")
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
        configure(database, server.url, "django_tasks_db.DatabaseBackend", args.batch)
        from django.core.management import call_command
        from django.test.utils import override_settings

        from mobilgroup_backends.django.models import OutboxMessage
        from mobilgroup_backends.django.outbox import sweep

        call_command("migrate", verbosity=0)
        print(f"bench/scale_outbox.py --database {args.database} -n {args.n} "
              f"(load average {os.getloadavg()[0]:.2f})")
        enqueue_costs(args.n, max(3, args.rounds))
        if args.enqueue_only:
            return
        env = {**os.environ, "BENCH_DATABASE": json.dumps(database), "BENCH_URL": server.url,
               "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])}
        processes = stack.enter_context(workers(args.workers, env))

        def alive() -> bool:
            return all(process.poll() is None for process in processes)

        enqueue_rates: list[float] = []

        def drain() -> float:
            clear()
            started = time.perf_counter()
            enqueue_rates.append(args.n / enqueue_rows(args.n, "task"))
            wait_for(accepted_count, args.n, alive=alive, poll=0.05)
            return args.n / (time.perf_counter() - started)

        def swept() -> float:
            # Rows committed whose enqueue was lost (a backend that never runs them).
            clear()
            with override_settings(TASKS={"default": {
                    "BACKEND": f"{TASKS_PACKAGE}.backends.dummy.DummyBackend"}}):
                enqueue_rows(args.n, "sweep")
            started = time.perf_counter()
            result = sweep(stale_after=timedelta(0), concurrency=args.sweeper_concurrency)
            elapsed = time.perf_counter() - started
            assert len(result.accepted) == args.n, result
            assert not OutboxMessage.objects.exclude(state=OutboxMessage.ACCEPTED).exists()
            return args.n / elapsed

        # Every worker connected to the database and the gateway before anything is timed.
        clear()
        enqueue_rows(4 * args.workers, "warm-up")
        wait_for(accepted_count, 4 * args.workers, timeout=120, alive=alive, poll=0.05)
        contenders = {"drain": drain, "sweeper": swept,
                      "send_many": lambda: send_many_rate(server.url, args.n, args.workers)}
        if args.sweeper_concurrency != args.workers:
            contenders["send_many_sweeper"] = lambda: send_many_rate(
                server.url, args.n, args.sweeper_concurrency)
        rounds = measure(contenders, args.rounds)

    sweeper_base = "send_many_sweeper" if "send_many_sweeper" in contenders else "send_many"
    enqueue_rate = statistics.median(enqueue_rates)
    report: dict[str, Any] = {
        "database": args.database, "rows": args.n, "latency_ms": args.latency * 1000,
        "batch": args.batch, "rounds": args.rounds,
        "enqueue_rows_per_s": round(enqueue_rate),
        "drain_msg_per_s": round(rounds.median("drain"), 1),
        "sweeper_msg_per_s": round(rounds.median("sweeper"), 1),
        "send_many_msg_per_s": round(rounds.median("send_many"), 1),
        "drain_vs_send_many": round(rounds.ratio("drain", "send_many"), 2),
        "sweeper_vs_send_many": round(rounds.ratio("sweeper", sweeper_base), 2),
    }
    print(f"enqueue, one transaction (batch {args.batch}):      {enqueue_rate:>8.0f} rows/s")
    print(f"drained by {args.workers} db_worker processes:       "
          f"{rounds.median('drain'):>8.1f} messages/s")
    print(f"sent by the sweeper ({args.sweeper_concurrency} threads):          "
          f"{rounds.median('sweeper'):>8.1f} messages/s")
    print(f"baseline send_many(concurrency={args.workers}):      "
          f"{rounds.median('send_many'):>8.1f} messages/s")
    print(f"drain / baseline   = {rounds.describe('drain', 'send_many')}")
    print(f"sweeper / baseline = {rounds.describe('sweeper', sweeper_base)}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
