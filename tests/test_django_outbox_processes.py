"""The outbox and tracking across processes: a real task worker killed with SIGKILL mid-send, a
lost enqueue, a rolled-back transaction, the sweeper in its own process; four trackers at once on
a real PostgreSQL server.

Every Django process here is a subprocess of the test project (``python -m django ...``) sharing
one database: a SQLite file, or a database of the PostgreSQL server the ``postgres`` fixture
runs. The task backend is django-tasks-db's ``DatabaseBackend`` with its real ``db_worker``.
What went out is counted in the emulator's outbox, by request id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mobilgroup_backends.emulator import Emulator
from tests.django_project.helpers import gateway_settings
from tests.django_project.settings import TASKS_PACKAGE
from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
PHONE = "79031234567"
DATABASE_BACKEND = "django_tasks_db.DatabaseBackend"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_mobilgroup_environment")]


class Project:
    """The test project, run as separate processes against one database and the emulator."""

    def __init__(self, database: dict[str, Any], gateway: Emulator, **mobilgroup: Any) -> None:
        self.gateway = gateway
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
            "PYTHONPATH": str(ROOT),
            "TESTS_DATABASE": json.dumps(database),
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

    def shell(self, code: str, **env: str) -> Any:
        """Run Python in a Django process of the project; what it printed last, as JSON."""
        out = self.run("shell", "-c", textwrap.dedent(code), **env)
        return json.loads(out.strip().splitlines()[-1])

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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3"),
                "OPTIONS": {"timeout": 30}}
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"outbox_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def project(database: dict[str, Any], mobilgroup_emulator: Emulator) -> Iterator[Project]:
    # A short timeout keeps the killed worker's lease (twice the longest send) short.
    made = Project(database, mobilgroup_emulator, RETRIES=0, TIMEOUT=2)
    made.run("migrate", "--verbosity", "0")
    yield made
    made.stop_all()


def outbox_rows(project: Project) -> dict[str, Any]:
    return project.shell("""
        import json
        from django.utils import timezone
        from mobilgroup_backends.django.models import OutboxMessage
        rows = list(OutboxMessage.objects.values("request_id", "state", "text", "leased_until"))
        held = [r["leased_until"] for r in rows if r["leased_until"]]
        wait = max([(t - timezone.now()).total_seconds() for t in held], default=0)
        print(json.dumps({"states": {str(r["request_id"]): r["state"] for r in rows},
                          "texts": sorted(r["text"] for r in rows), "lease_left": wait}))
    """)


@pytest.mark.timeout(240)
def test_killed_worker_lost_enqueue_and_rollback_are_each_sent_exactly_once(
        project: Project) -> None:
    gateway = project.gateway
    queued = project.shell(f"""
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
    lost = project.shell(f"""
        import json
        from mobilgroup_backends.django.outbox import enqueue
        print(json.dumps(enqueue("{PHONE}", "lost enqueue").request_id))
    """, TESTS_TASK_BACKEND=f"{TASKS_PACKAGE}.backends.dummy.DummyBackend")
    expected = [*queued, lost]

    # The gateway accepts the worker's first send and holds its answer; the worker is killed.
    gateway.faults.next("delay", seconds=30)
    worker = project.start("db_worker", "--no-startup-delay", "--interval", "0.1", "--no-reload")
    assert gateway.outbox.wait_for(1, timeout=60), "the worker sent nothing"
    project.kill(worker)
    (in_flight,) = [m.request_id for m in gateway.outbox]
    assert in_flight in queued

    rows = outbox_rows(project)
    assert set(rows["states"].values()) == {"pending"}
    assert "rolled back" not in rows["texts"]
    # The killed run's lease must run out before anyone sends its row again.
    assert 0 < rows["lease_left"] < 30
    time.sleep(rows["lease_left"] + 0.5)

    out = project.run("mobilgroup", "outbox", "--stale-after", "0")
    assert "Sent 4 pending message(s): 4 accepted" in out, out
    # The tasks still queued run later, on a new worker: they find their rows sent.
    project.run("db_worker", "--batch", "--no-startup-delay", "--no-reload")

    assert Counter(m.request_id for m in gateway.outbox) == dict.fromkeys(expected, 1)
    assert "rolled back" not in {m.text for m in gateway.outbox}
    rows = outbox_rows(project)
    assert rows["states"] == {str(rid): "accepted" for rid in expected}


@pytest.mark.timeout(240)
def test_four_trackers_on_postgresql_poll_each_due_request_once(
        postgres: PostgresServer, mobilgroup_emulator: Emulator) -> None:
    gateway = mobilgroup_emulator
    gateway.account.balance = 1000
    project = Project(postgres.create_database(f"track_{uuid.uuid4().hex[:12]}"), gateway,
                      RETRIES=0, TRACK_DELIVERY=True)
    immediate = {"TESTS_TASK_BACKEND": f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"}
    project.run("migrate", "--verbosity", "0")
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
    left = project.shell("""
        import json
        from mobilgroup_backends.django.models import SmsRequest
        print(json.dumps([SmsRequest.objects.filter(state="complete").count(),
                          SmsRequest.objects.exclude(claim_token="").count()]))
    """)
    assert left == [60, 0]
