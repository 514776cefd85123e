"""``OUTBOX_SEND = "now"``: committed outbox rows are sent by threads of the committing process,
with no task queued; a rolled-back transaction sends nothing; the sweeper still takes what they
leave. Real Django (SQLite, real commits; the sending threads use their own connections), the
dummy task backend (stores what is queued: nothing must be), the emulator over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from mobilgroup_backends.django import sender
from mobilgroup_backends.django.models import OutboxMessage
from mobilgroup_backends.django.outbox import enqueue, enqueue_many, sweep
from mobilgroup_backends.emulator import Emulator
from tests import test_django_outbox_batch as batch_tests
from tests.helpers import Rollback, sent_ids, wait_until

PHONE = "79031234567"

pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"),
              pytest.mark.django_db(transaction=True),
              pytest.mark.mobilgroup_settings(RETRIES=0, OUTBOX_SEND="now")]

stored = batch_tests.stored


@pytest.fixture(autouse=True)
def own_sender() -> Iterator[None]:
    """Each test's sender threads end with it, and the next test starts its own."""
    yield
    sender._sender.stop(5)  # the test's threads end with it
    sender._forget_after_fork()  # and the next test starts its own


def accepted() -> int:
    return OutboxMessage.objects.filter(state=OutboxMessage.ACCEPTED).count()


def test_committed_rows_leave_at_once_without_a_task(django_emulator: Emulator, stored: Any) -> None:
    with transaction.atomic():
        rows = [enqueue(PHONE, f"code {n}") for n in range(3)]
        rows += enqueue_many([(PHONE, f"order {n}") for n in range(20)])
        assert len(django_emulator.outbox) == 0  # nothing before the commit
    assert wait_until(lambda: accepted() == len(rows), timeout=20)
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
    assert stored.results == []


def test_a_rolled_back_transaction_sends_nothing(django_emulator: Emulator, stored: Any) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        enqueue(PHONE, "rolled back")
        raise Rollback
    kept = enqueue(PHONE, "autocommit")  # outside a transaction: committed, sent at once
    assert wait_until(lambda: accepted() == 1, timeout=20)
    assert sent_ids(django_emulator) == {kept.request_id: 1}
    assert not OutboxMessage.objects.filter(text="rolled back").exists()


def test_rows_that_find_no_room_are_left_to_the_sweeper(
        django_emulator: Emulator, stored: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sender, "_sender", sender._Sender())
    monkeypatch.setattr(sender, "THREADS", 0)  # no thread takes any: the queue fills up
    monkeypatch.setattr(sender, "CAPACITY", 2)
    monkeypatch.setattr(sender._sender, "waiting", sender.queue.Queue(2))
    with transaction.atomic():
        rows = enqueue_many([(PHONE, f"order {n}") for n in range(5)])
    assert "stay pending for the sweeper" in caplog.text
    assert len(django_emulator.outbox) == 0
    result = sweep(stale_after=timedelta(0))
    assert len(result.accepted) == 5
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
