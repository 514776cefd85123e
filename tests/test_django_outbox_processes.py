"""The outbox and tracking across processes: a real task worker killed with SIGKILL mid-send, a
lost enqueue, a rolled-back transaction, the sweeper in its own process; four trackers at once on
a real PostgreSQL server.

Every Django process here is a subprocess of the test project (``python -m django ...``) sharing
one database: a SQLite file, or a database of the PostgreSQL server the ``postgres`` fixture
runs. The task backend is django-tasks-db's ``DatabaseBackend`` with its real ``db_worker``.
What went out is counted in the emulator's outbox, by request id; what the rows say afterwards is
read with the database's own client (sqlite3, psycopg), as any other reader of the table would.

A Django process costs a second or more, so each kind of database is migrated once per test
session and copied for each test (a file copy; PostgreSQL's ``CREATE DATABASE ... TEMPLATE``),
and processes that do not depend on each other run at the same time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django_tasks_db.models import DBTaskResult

from mobilgroup_backends.django.models import OutboxMessage, SmsRequest
from mobilgroup_backends.emulator import Emulator
from tests.django_project.helpers import gateway_settings
from tests.django_project.settings import TASKS_PACKAGE
from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
PHONE = "79031234567"
DATABASE_BACKEND = "django_tasks_db.DatabaseBackend"

# One worker runs them all: one PostgreSQL server and one migrated copy of each database.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("django-processes"),
              pytest.mark.usefixtures("no_mobilgroup_environment")]


def django_env(database: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
            "PYTHONPATH": str(ROOT), "TESTS_DATABASE": json.dumps(database)}


def migrate(database: dict[str, Any]) -> None:
    done = subprocess.run([sys.executable, "-m", "django", "migrate", "--verbosity", "0",
                           "--skip-checks"],
                          cwd=ROOT, env=django_env(database), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"migrate: {done.stdout}\n{done.stderr}"


def sqlite_database(path: Path) -> dict[str, Any]:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": {"timeout": 30}}


def select(database: dict[str, Any], query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query``, read with the database's own client."""
    if database["ENGINE"].endswith("sqlite3"):
        with closing(sqlite3.connect(database["NAME"], timeout=30)) as connection:
            return connection.execute(query).fetchall()
    import psycopg

    with psycopg.connect(host=database["HOST"], port=int(database["PORT"]),
                         user=database["USER"], dbname=database["NAME"]) as connection:
        return connection.execute(query).fetchall()


def aware(value: datetime | str | None) -> datetime | None:
    """A timestamp column as an aware datetime (SQLite keeps Django's UTC times as text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return value


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outbox-template") / "db.sqlite3"
    migrate(sqlite_database(path))
    return path


@pytest.fixture(scope="session")
def migrated_postgres(postgres: PostgresServer) -> str:
    """The name of a migrated database to copy: PostgreSQL copies a template in milliseconds."""
    name = f"migrated_{uuid.uuid4().hex[:12]}"
    migrate(postgres.create_database(name))
    return name


class Project:
    """The test project, run as separate processes against one database and the emulator."""

    def __init__(self, database: dict[str, Any], gateway: Emulator, **mobilgroup: Any) -> None:
        self.database = database
        self.gateway = gateway
        self.options = mobilgroup
        self.env = {
            **django_env(database),
            "TESTS_MOBILGROUP": json.dumps(gateway_settings(gateway, **mobilgroup)),
            "TESTS_TASK_BACKEND": DATABASE_BACKEND,
        }
        self.workers: list[subprocess.Popen[str]] = []

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "django", *args]

    def run(self, *args: str, timeout: float = 90, **env: str) -> str:
        done = subprocess.run(self.command(*args), cwd=ROOT, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout

    def begin_shell(self, code: str, **env: str) -> subprocess.Popen[str]:
        """Start Python in a Django process of the project; ``shell_result`` waits for it."""
        return subprocess.Popen(self.command("shell", "-c", textwrap.dedent(code)), cwd=ROOT,
                                env={**self.env, **env}, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def shell_result(self, process: subprocess.Popen[str], timeout: float = 90) -> Any:
        """What a shell started by ``begin_shell`` printed last, as JSON."""
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, f"{process.args}: {out}\n{err}"
        return json.loads(out.strip().splitlines()[-1])

    def shell(self, code: str, **env: str) -> Any:
        """Run Python in a Django process of the project; what it printed last, as JSON."""
        return self.shell_result(self.begin_shell(code, **env))

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(self.command(*args), cwd=ROOT, env=self.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own group, to kill it whole
        self.workers.append(process)
        return process

    def kill(self, process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()

    def stop_all(self) -> None:
        for process in self.workers:
            self.kill(process)


def migrated_database(request: pytest.FixtureRequest, folder: Path, kind: str) -> dict[str, Any]:
    """A migrated database of its own (``kind``: sqlite or postgresql), copied from the session's."""
    name = f"outbox_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        path = folder / f"{name}.sqlite3"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return sqlite_database(path)
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(name, template=request.getfixturevalue("migrated_postgres"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A migrated database of its own for the test."""
    return migrated_database(request, tmp_path, request.param)


def killable_project(database: dict[str, Any], gateway: Emulator, batch: int = 10) -> Project:
    """A project whose sends a test kills mid-answer; ``batch``: ``OUTBOX_BATCH``, rows per task."""
    # A short timeout keeps the killed worker's lease (twice the longest send: 8 s) short, yet
    # leaves a loaded machine 2 s to kill the worker after the gateway accepted its send and
    # before the client gives up on the answer.
    return Project(database, gateway, RETRIES=0, TIMEOUT=2, OUTBOX_BATCH=batch)


@pytest.fixture
def project(database: dict[str, Any], mobilgroup_emulator: Emulator) -> Iterator[Project]:
    made = killable_project(database, mobilgroup_emulator)
    yield made
    made.stop_all()


def outbox_rows(project: Project) -> dict[int, tuple[str, str, datetime | None]]:
    """The outbox table: request id -> (state, text, leased until)."""
    table = OutboxMessage._meta.db_table
    rows = select(project.database,
                  f'SELECT request_id, state, text, leased_until FROM "{table}"')  # noqa: S608
    return {int(rid): (state, text, aware(until)) for rid, state, text, until in rows}


def killed_mid_send(project: Project) -> list[int]:
    """The kill test's first part, for one project: its worker is SIGKILLed while the gateway
    holds the answer to a send it accepted; meanwhile the application commits three rows, rolls
    one back, and another process's enqueue is lost. The rows' request ids, the lost one last."""
    gateway = project.gateway
    # The gateway accepts the worker's first send and holds its answer; the worker is killed.
    gateway.faults.next("delay", seconds=30)
    # The worker waits for tasks while the application makes them: no need to start it after.
    worker = project.start("db_worker", "--no-startup-delay", "--interval", "0.1", "--no-reload")
    application = project.begin_shell(f"""
        import json
        from django.db import transaction
        from mobilgroup_backends.django.outbox import enqueue
        with transaction.atomic():
            ids = [enqueue("{PHONE}", f"code {{n}}").request_id for n in range(3)]
        try:
            with transaction.atomic():
                enqueue("{PHONE}", "rolled back")
                raise RuntimeError("the view failed")
        except RuntimeError:
            pass
        print(json.dumps(ids))
    """)
    # This process's task backend keeps the task in memory and never runs it: the row is
    # committed, its enqueue is lost when the process ends.
    lost_enqueue = project.begin_shell(f"""
        import json
        from mobilgroup_backends.django.outbox import enqueue
        print(json.dumps(enqueue("{PHONE}", "lost enqueue").request_id))
    """, TESTS_TASK_BACKEND=f"{TASKS_PACKAGE}.backends.dummy.DummyBackend")
    try:
        assert gateway.outbox.wait_for(1, timeout=60), "the worker sent nothing"
        project.kill(worker)
        killed_at = datetime.now(timezone.utc)
    finally:
        queued = project.shell_result(application)
        lost = project.shell_result(lost_enqueue)
    (in_flight,) = [m.request_id for m in gateway.outbox]
    assert in_flight in queued

    rows = outbox_rows(project)
    assert sorted(rows) == sorted([*queued, lost])  # the rolled-back row is not there
    assert {state for state, _, _ in rows.values()} == {"pending"}
    # The killed run's lease outlives it: no one may send its row again before it runs out.
    lease = rows[in_flight][2]
    assert lease is not None and killed_at < lease < killed_at + timedelta(seconds=30)
    return [*queued, lost]


def sent_once_by_the_sweeper_and_the_next_worker(project: Project, expected: list[int]) -> None:
    """The kill test's second part, once the killed run's lease has run out."""
    gateway = project.gateway
    out = project.run("mobilgroup", "outbox", "--stale-after", "0")
    assert "Sent 4 pending message(s): 4 accepted" in out, out
    # The tasks still queued run later, on a new worker: they find their rows sent.
    project.run("db_worker", "--batch", "--no-startup-delay", "--no-reload")

    assert Counter(m.request_id for m in gateway.outbox) == dict.fromkeys(expected, 1)
    assert "rolled back" not in {m.text for m in gateway.outbox}
    # The three committed rows went out as one task each, or as one task for all three.
    table = DBTaskResult._meta.db_table
    tasks = select(project.database, f'SELECT COUNT(*) FROM "{table}"')  # noqa: S608
    assert tasks == [(3 if project.options["OUTBOX_BATCH"] == 1 else 1,)]
    rows = outbox_rows(project)
    assert {rid: state for rid, (state, _, _) in rows.items()} == dict.fromkeys(expected,
                                                                                "accepted")


@pytest.mark.timeout(240)
def test_killed_worker_lost_enqueue_and_rollback_are_each_sent_exactly_once(
        database: dict[str, Any], mobilgroup_emulator: Emulator, request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    """With a task per row (``OUTBOX_BATCH`` 1) and one task for the transaction's rows (10),
    side by side: two projects, each with its own database and gateway, so that one wait for
    the killed runs' leases (8 s) serves both. Each is killed the moment its own gateway
    accepted, by a thread of its own, so neither waits for the other."""
    kind = request.node.callspec.params["database"]
    with Emulator() as other_gateway:
        projects = [killable_project(database, mobilgroup_emulator, batch=1),
                    killable_project(migrated_database(request, tmp_path, kind), other_gateway)]
        try:
            with ThreadPoolExecutor(len(projects)) as runs:
                expected = list(runs.map(killed_mid_send, projects))
            leases = [until for project in projects for _, _, until in outbox_rows(project).values()
                      if until is not None]
            time.sleep(max(0.0, (max(leases) - datetime.now(timezone.utc)).total_seconds()) + 0.2)
            for project, ids in zip(projects, expected, strict=True):
                sent_once_by_the_sweeper_and_the_next_worker(project, ids)
        finally:
            for project in projects:
                project.stop_all()


@pytest.mark.timeout(240)
def test_four_trackers_on_postgresql_poll_each_due_request_once(
        postgres: PostgresServer, migrated_postgres: str, mobilgroup_emulator: Emulator) -> None:
    gateway = mobilgroup_emulator
    gateway.account.balance = 1000
    database = postgres.create_database(f"track_{uuid.uuid4().hex[:12]}",
                                        template=migrated_postgres)
    project = Project(database, gateway, RETRIES=0, TRACK_DELIVERY=True)
    immediate = {"TESTS_TASK_BACKEND": f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"}
    request_ids = project.shell(f"""
        import json
        from datetime import timedelta
        from django.db import transaction
        from django.utils import timezone
        from mobilgroup_backends.django.models import SmsRequest
        from mobilgroup_backends.django.outbox import enqueue
        with transaction.atomic():
            ids = [enqueue(["{PHONE}", "7903555{{:04d}}".format(n)], f"n{{n}}").request_id
                   for n in range(60)]
        assert SmsRequest.objects.count() == 60
        SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(seconds=1))
        print(json.dumps(ids))
    """, **immediate)
    assert len(request_ids) == 60
    gateway.clock.advance(timedelta(hours=2))  # every report is final
    gateway.latency = 0.05  # each poll takes a while, so that the trackers overlap

    trackers = [project.start("mobilgroup", "track") for _ in range(4)]
    outputs = []
    for tracker in trackers:
        out, _ = tracker.communicate(timeout=120)
        assert tracker.returncode == 0, out
        outputs.append(out)

    polled = [int(out.split("Polled ")[1].split(" ")[0]) for out in outputs]
    assert sum(polled) == 60, outputs
    assert sum(1 for count in polled if count) >= 2, f"the trackers did not overlap: {polled}"
    assert all(gateway.status_queries(rid) == 1 for rid in request_ids)
    assert "FOR UPDATE SKIP LOCKED" in postgres.log
    table = SmsRequest._meta.db_table
    left = select(database, f'SELECT state, claim_token FROM "{table}"')  # noqa: S608
    assert sorted(left) == [("complete", "")] * 60


@pytest.mark.timeout(240)
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_an_account_out_of_money_pauses_the_worker_until_money_is_added(
        project: Project) -> None:
    """Error 9 mid-batch: the worker spends one request on it, not one per row; the rows stay
    pending (not rejected); once money is added the worker's own deferred retry sends them,
    every recipient once."""
    gateway = project.gateway
    gateway.account.balance = 3  # three messages' worth (one recipient each)
    worker = project.start("db_worker", "--no-startup-delay", "--interval", "0.1", "--no-reload")
    expected = project.shell(f"""
        import json
        from django.db import transaction
        from mobilgroup_backends.django.outbox import enqueue
        with transaction.atomic():
            ids = [enqueue("{PHONE}", f"order {{n}}").request_id for n in range(8)]
        print(json.dumps(ids))
    """)
    deadline = time.monotonic() + 60
    while sum(1 for ex in gateway.requests if ex.error == 9) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the worker would be sending the rest now, if it did not pause
    refused = [ex for ex in gateway.requests if ex.command == "send" and ex.error == 9]
    assert len(refused) == 1, [ex.error for ex in gateway.requests]
    assert len(gateway.outbox) == 3
    states = Counter(state for state, _, _ in outbox_rows(project).values())
    assert states == {"accepted": 3, "pending": 5}

    gateway.account.balance = 100  # money added: the deferred retry (the core's backoff) resumes
    assert gateway.outbox.wait_for(8, timeout=90), [ex.error for ex in gateway.requests]
    deadline = time.monotonic() + 30
    while (Counter(state for state, _, _ in outbox_rows(project).values()) != {"accepted": 8}
           and time.monotonic() < deadline):
        time.sleep(0.2)
    project.kill(worker)
    assert Counter(m.request_id for m in gateway.outbox) == dict.fromkeys(expected, 1)
    assert {state for state, _, _ in outbox_rows(project).values()} == {"accepted"}


@pytest.mark.timeout(240)
def test_a_process_killed_while_its_threads_send_leaves_each_row_to_go_out_once(
        project: Project) -> None:
    """``OUTBOX_SEND = "now"``: the committing process sends its rows itself, and is killed
    while the gateway holds the answer to one of them; the sweeper sends what is left, each
    exactly once."""
    gateway = project.gateway
    gateway.faults.next("delay", seconds=30)  # accepted, its answer held: the process dies
    application = project.begin_shell(f"""
        import json, time
        from django.db import transaction
        from mobilgroup_backends.django.outbox import enqueue
        with transaction.atomic():
            ids = [enqueue("{PHONE}", f"code {{n}}").request_id for n in range(6)]
        print(json.dumps(ids), flush=True)
        time.sleep(120)
    """, TESTS_MOBILGROUP=json.dumps(gateway_settings(
        gateway, RETRIES=0, TIMEOUT=2, OUTBOX_SEND="now")), TESTS_TASK_BACKEND=(
        f"{TASKS_PACKAGE}.backends.dummy.DummyBackend"))  # a queued task would show here
    try:
        assert application.stdout is not None
        line = ""
        while not line.startswith("["):  # the shell may say something first
            line = application.stdout.readline()
            assert line, "the process ended before it wrote its rows"
        ids = json.loads(line)
        assert gateway.outbox.wait_for(1, timeout=60), "the process sent nothing"
    finally:
        application.kill()
        application.communicate(timeout=30)
    killed_at = datetime.now(timezone.utc)
    rows = outbox_rows(project)
    assert sorted(rows) == sorted(ids)
    assert "pending" in {state for state, _, _ in rows.values()}  # one was in flight at least
    leases = [until for state, _, until in rows.values() if state == "pending" and until]
    wait = max((until - killed_at).total_seconds() for until in leases) if leases else 0
    time.sleep(max(0.0, wait) + 0.2)

    project.run("mobilgroup", "outbox", "--stale-after", "0")
    assert Counter(m.request_id for m in gateway.outbox) == dict.fromkeys(ids, 1)
    assert {state for state, _, _ in outbox_rows(project).values()} == {"accepted"}
    table = DBTaskResult._meta.db_table
    assert select(project.database, f'SELECT COUNT(*) FROM "{table}"') == [(0,)]  # noqa: S608
