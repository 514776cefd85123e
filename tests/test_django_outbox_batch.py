"""The outbox queues the rows of one transaction together: one commit hook, one task per
``OUTBOX_BATCH`` rows, whichever API wrote them and in however many savepoints, and still nothing
for a rolled-back transaction or savepoint. A task backend that cannot load never fails the
caller's commit: the rows stay pending and the sweeper sends them.

Real Django (SQLite, real commits), the real dummy task backend (it stores what is queued, as a
broker would, and runs nothing) and the immediate one (runs each task at commit), the real
django-sms and django-sendsms entry points, the emulator over HTTP. The suite runs on Django 5.2
(the ``django-tasks`` backport) and 6.x (``django.tasks``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sendsms.api
import sms
from django.db import transaction
from django.utils import timezone

from mobilgroup_backends.django.models import OutboxMessage
from mobilgroup_backends.django.outbox import enqueue, requeue, sweep
from mobilgroup_backends.django.tasks import send_outboxed, send_outboxed_batch
from mobilgroup_backends.emulator import Emulator
from tests.helpers import Rollback, sent_ids

PHONE, OTHER = "79031234567", "79037654321"

pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"),
              pytest.mark.django_db(transaction=True),
              pytest.mark.mobilgroup_settings(RETRIES=0, OUTBOX_BATCH=10)]


@pytest.fixture
def queued_backend(settings: Any) -> None:
    settings.SMS_BACKEND = settings.SENDSMS_BACKEND = "mobilgroup_backends.django.QueuedSmsBackend"


@pytest.fixture
def stored(settings: Any) -> Any:
    """The dummy task backend: what was queued, not run."""
    settings.TASKS = {"default": {"BACKEND": f"{settings.TASKS_PACKAGE}.backends.dummy.DummyBackend"}}
    backend = send_outboxed.get_backend()
    backend.clear()
    return backend


def queued(backend: Any) -> list[tuple[str, list[Any]]]:
    return [(result.task.name, list(result.args)) for result in backend.results]


def queued_pks(backend: Any) -> list[int]:
    pks: list[int] = []
    for name, args in queued(backend):
        pks.extend(args[0] if name == "send_outboxed_batch" else args)
    return pks


def test_the_rows_of_a_transaction_are_queued_in_batches(django_emulator: Emulator, stored: Any) -> None:
    with transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(25)]
        assert stored.results == []  # nothing before the commit
    pks = [row.pk for row in rows]
    assert queued(stored) == [("send_outboxed_batch", [pks[:10]]),
                              ("send_outboxed_batch", [pks[10:20]]),
                              ("send_outboxed_batch", [pks[20:]])]
    # A worker runs them: each row sent once, under its own id.
    for _, (batch,) in queued(stored):
        assert send_outboxed_batch.call(batch) == {OutboxMessage.ACCEPTED: len(batch)}
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
    # A real redelivery: the worker sent the first batch and died before recording it, so its
    # rows are pending under a lease that ran out, and the broker runs the task again.
    first = rows[:10]
    OutboxMessage.objects.filter(pk__in=pks[:10]).update(
        state=OutboxMessage.PENDING, accepted_at=None, lease_token="dead-worker",
        leased_until=timezone.now() - timedelta(seconds=1))
    assert send_outboxed_batch.call(pks[:10]) == {OutboxMessage.ACCEPTED: 10}
    ids = {row.request_id for row in first}
    sends = [ex for ex in django_emulator.requests if ex.command == "send" and ex.request_id in ids]
    assert len(sends) == 20
    assert [ex.error for ex in sends[10:]] == [7] * 10  # each resend: "accepted earlier"
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}  # nothing sent twice
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {OutboxMessage.ACCEPTED}


def test_one_row_is_one_task_and_a_batch_of_one_is_a_task_per_row(
        django_emulator: Emulator, stored: Any, settings: Any) -> None:
    with transaction.atomic():
        row = enqueue(PHONE, "alone")
    assert queued(stored) == [("send_outboxed", [row.pk])]
    stored.clear()
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OUTBOX_BATCH": 1}
    with transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(3)]
    assert queued(stored) == [("send_outboxed", [row.pk]) for row in rows]


def test_rows_of_a_rolled_back_savepoint_are_not_queued(django_emulator: Emulator, stored: Any) -> None:
    with transaction.atomic():
        with pytest.raises(Rollback), transaction.atomic():  # the first rows, in a savepoint
            lost = [enqueue(PHONE, f"lost {n}") for n in range(3)]
            raise Rollback
        kept = [enqueue(PHONE, f"kept {n}") for n in range(3)]
        with transaction.atomic():  # a savepoint released into the transaction
            kept += [enqueue(PHONE, f"inner {n}") for n in range(2)]
        kept.append(enqueue(PHONE, "last"))
    assert sorted(queued_pks(stored)) == sorted(row.pk for row in kept)
    assert not OutboxMessage.objects.filter(  # SQLite reuses the pks of rolled-back rows
        request_id__in=[row.request_id for row in lost]).exists()


def test_after_a_rollback_the_next_transaction_is_queued(django_emulator: Emulator, stored: Any) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        enqueue(PHONE, "never")
        raise Rollback
    with transaction.atomic():
        rows = [enqueue(PHONE, f"then {n}") for n in range(2)]
    assert queued_pks(stored) == [row.pk for row in rows]
    with transaction.atomic():
        third = enqueue(PHONE, "and again")
    assert queued_pks(stored) == [*(row.pk for row in rows), third.pk]


def test_outside_a_transaction_each_row_is_queued_at_once(django_emulator: Emulator, stored: Any) -> None:
    first = enqueue(PHONE, "one")
    assert queued_pks(stored) == [first.pk]
    second = enqueue(PHONE, "two")
    assert queued_pks(stored) == [first.pk, second.pk]


def test_a_batch_is_sent_at_commit_once_each(django_emulator: Emulator) -> None:
    """The immediate backend runs the batch task at commit: the whole path, end to end."""
    with transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(12)]
        assert len(django_emulator.outbox) == 0
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {OutboxMessage.ACCEPTED}


def test_a_batch_leaves_a_failed_row_pending_and_sends_the_others(
        django_emulator: Emulator, stored: Any) -> None:
    with transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(3)]
    stored.clear()
    django_emulator.faults.next("close_before")  # the first send finds the gateway unreachable
    assert send_outboxed_batch.call([row.pk for row in rows]) == {
        OutboxMessage.PENDING: 1, OutboxMessage.ACCEPTED: 2}
    # The pending row is queued again on its own, later (the backend can defer).
    assert queued(stored) == [("send_outboxed", [rows[0].pk])]
    assert sent_ids(django_emulator) == {rows[1].request_id: 1, rows[2].request_id: 1}


def test_requeued_rows_are_queued_in_batches(django_emulator: Emulator, stored: Any) -> None:
    with transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(4)]
    OutboxMessage.objects.update(state=OutboxMessage.REJECTED)
    stored.clear()
    assert requeue(OutboxMessage.objects.all()) == 4
    [(name, [pks])] = queued(stored)
    assert name == "send_outboxed_batch" and sorted(pks) == [row.pk for row in rows]


def test_every_api_in_one_transaction_is_one_batch(
        django_emulator: Emulator, stored: Any, queued_backend: None) -> None:
    with transaction.atomic():
        sms.send_sms("Order 1", recipients=[PHONE])  # django-sms
        sms.send_sms("Order 2", recipients=[OTHER])
        sendsms.api.send_sms("Order 3", None, [PHONE])  # django-sendsms
        row = enqueue(OTHER, "Order 4")  # the outbox itself
        assert stored.results == []
    rows = list(OutboxMessage.objects.order_by("pk"))
    assert [r.text for r in rows] == ["Order 1", "Order 2", "Order 3", "Order 4"]
    assert rows[-1].pk == row.pk
    assert queued(stored) == [("send_outboxed_batch", [[r.pk for r in rows]])]


def test_a_rolled_back_savepoint_takes_its_rows_out_of_the_batch(
        django_emulator: Emulator, stored: Any, queued_backend: None) -> None:
    with transaction.atomic():
        first = enqueue(PHONE, "kept before")  # the batch's hook belongs to the transaction
        with pytest.raises(Rollback), transaction.atomic():
            sms.send_sms("lost", recipients=[PHONE])
            enqueue(PHONE, "lost too")
            raise Rollback
        last = enqueue(PHONE, "kept after")  # SQLite may give it a rolled-back row's pk
    assert [r.text for r in OutboxMessage.objects.order_by("pk")] == ["kept before", "kept after"]
    assert queued(stored) == [("send_outboxed_batch", [[first.pk, last.pk]])]


def test_a_batch_begun_in_a_rolled_back_savepoint_does_not_lose_later_rows(
        django_emulator: Emulator, stored: Any, queued_backend: None) -> None:
    with transaction.atomic():
        with pytest.raises(Rollback), transaction.atomic():
            enqueue(PHONE, "lost")
            raise Rollback
        kept = [enqueue(PHONE, "kept 1")]
        sendsms.api.send_sms("kept 2", None, [PHONE])
    kept.append(OutboxMessage.objects.get(text="kept 2"))
    assert queued(stored) == [("send_outboxed_batch", [[r.pk for r in kept]])]


@pytest.mark.parametrize("written_by", ["enqueue", "send_sms"])
def test_a_task_backend_that_cannot_load_never_fails_the_commit(
        django_emulator: Emulator, settings: Any, caplog: pytest.LogCaptureFixture, queued_backend: None,
        written_by: str) -> None:
    settings.TASKS = {"default": {"BACKEND": "no_such_package.backends.Backend"}}
    with caplog.at_level(logging.WARNING, logger="mobilgroup_backends"), transaction.atomic():
        if written_by == "enqueue":
            enqueue(PHONE, "Order 5 confirmed")
            enqueue(OTHER, "Order 6 confirmed")
        else:
            sms.send_sms("Order 5 confirmed", recipients=[PHONE])
            sms.send_sms("Order 6 confirmed", recipients=[OTHER])
    # The caller's transaction committed; the rows wait for the sweeper.
    rows = list(OutboxMessage.objects.order_by("pk"))
    assert [r.state for r in rows] == [OutboxMessage.PENDING] * 2
    [line] = [r for r in caplog.records if r.name.startswith("mobilgroup_backends")]
    assert "not queued" in line.getMessage() and "no_such_package" in line.getMessage()
    assert all(str(r.pk) in line.getMessage() for r in rows)
    assert len(django_emulator.outbox) == 0
    assert sorted(sweep(stale_after=timedelta(0)).accepted) == sorted(r.request_id for r in rows)
    assert sent_ids(django_emulator) == {r.request_id: 1 for r in rows}


@pytest.fixture
def refused_task(settings: Any) -> Iterator[Callable[[list[int]], None]]:
    """django-tasks-db's real backend, in the tests' database, and a way to make the database
    itself refuse the task of one batch (a trigger that aborts its insert)."""
    from django.db import connection
    from django_tasks_db.models import DBTaskResult

    if connection.vendor != "sqlite":
        pytest.skip("the refusing trigger is SQLite's")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    table = DBTaskResult._meta.db_table

    def refuse(batch: list[int]) -> None:
        pattern = f"%[{batch[0]}, {batch[1]}, %"  # the task's JSON arguments: [[pk, pk, ...]]
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TRIGGER refuse_one_task BEFORE INSERT ON {table} "
                           f"WHEN NEW.args_kwargs LIKE '{pattern}' "
                           f"BEGIN SELECT RAISE(ABORT, 'task refused by the test'); END")

    yield refuse
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS refuse_one_task")


def test_a_task_the_database_refuses_leaves_its_batch_to_the_sweeper_and_queues_the_others(
        django_emulator: Emulator, refused_task: Callable[[list[int]], None],
        caplog: pytest.LogCaptureFixture) -> None:
    """The tasks of one commit are written with no savepoint each; when one fails they are
    written again one savepoint each, so that only the refused batch waits for the sweeper."""
    from django_tasks_db.models import DBTaskResult

    with caplog.at_level(logging.WARNING, logger="mobilgroup_backends"), transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(25)]
        pks = [row.pk for row in rows]
        refused_task(pks[10:20])
    # The caller's transaction committed, every row in it, and the connection still works.
    assert list(OutboxMessage.objects.order_by("pk").values_list("pk", "state")) == [
        (pk, OutboxMessage.PENDING) for pk in pks]
    tasks = [result.args_kwargs["args"][0] for result in DBTaskResult.objects.order_by("enqueued_at")]
    assert sorted(tasks) == [pks[:10], pks[20:]]
    [line] = [r.getMessage() for r in caplog.records if "not queued" in r.getMessage()]
    assert ",".join(map(str, pks[10:20])) in line and "task refused by the test" in line
    # The queued batches run; the sweeper sends the refused one: every message once.
    for batch in tasks:
        assert send_outboxed_batch.call(batch) == {OutboxMessage.ACCEPTED: len(batch)}
    assert sorted(sweep(stale_after=timedelta(0)).accepted) == sorted(
        row.request_id for row in rows[10:20])
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}


def test_a_task_run_at_once_whose_query_fails_does_not_undo_the_other_batches(
        django_emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """The immediate backend runs each batch's task at commit and catches what it raises, so a
    task whose query failed leaves the block that queued it marked for rollback without an
    error: that block would end rolled back in silence, every batch of the commit with it."""
    from django.db import connection

    table = OutboxMessage._meta.db_table
    with caplog.at_level(logging.WARNING, logger="mobilgroup_backends"), transaction.atomic():
        rows = [enqueue(PHONE, f"order {n}") for n in range(25)]
        pks = [row.pk for row in rows]
        with connection.cursor() as cursor:  # the claim of the 13th row fails, as a lock would
            cursor.execute(f"CREATE TRIGGER refuse_one_claim BEFORE UPDATE ON {table} "
                           f"WHEN OLD.id = {pks[12]} "
                           f"BEGIN SELECT RAISE(ABORT, 'claim refused by the test'); END")
    try:
        states = dict(OutboxMessage.objects.values_list("pk", "state"))
        assert states == {pk: OutboxMessage.PENDING if pk in pks[10:20] else OutboxMessage.ACCEPTED
                          for pk in pks}
        [line] = [r.getMessage() for r in caplog.records if "not queued" in r.getMessage()]
        assert ",".join(map(str, pks[10:20])) in line
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS refuse_one_claim")
    # The sweeper sends the batch left behind, with the ids its rolled-back sends used: each once.
    assert sorted(sweep(stale_after=timedelta(0)).accepted) == sorted(
        row.request_id for row in rows[10:20])
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}


def test_outside_a_transaction_a_task_backend_that_cannot_load_is_logged(
        django_emulator: Emulator, settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings.TASKS = {"default": {"BACKEND": "no_such_package.backends.Backend"}}
    with caplog.at_level(logging.WARNING, logger="mobilgroup_backends"):
        row = enqueue(PHONE, "autocommit")
    assert OutboxMessage.objects.get(pk=row.pk).state == OutboxMessage.PENDING
    assert "not queued" in caplog.text
    assert sweep(stale_after=timedelta(0)).accepted == [row.request_id]


def test_many_rows_of_savepoints_are_looked_up_in_chunks(django_emulator: Emulator, stored: Any) -> None:
    with transaction.atomic():
        kept = [enqueue(PHONE, "first")]  # the batch's hook belongs to the transaction
        with transaction.atomic():  # a savepoint released: its rows are looked up at commit
            kept += [enqueue(PHONE, f"order {n}") for n in range(520)]
        with pytest.raises(Rollback), transaction.atomic():
            [enqueue(PHONE, f"lost {n}") for n in range(3)]
            raise Rollback
    assert sorted(queued_pks(stored)) == sorted(row.pk for row in kept)
