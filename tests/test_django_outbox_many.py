"""``outbox.enqueue_many``: many messages written with one bulk insert, all or none, queued by one
commit hook in batches, and sent once each; ``QueuedSmsBackend`` queues a list of messages with
it. Real Django (SQLite, real commits), the dummy task backend (stores what is queued) and the
immediate one (runs each task at commit), the emulator over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
import sms
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from mobilgroup_backends.django.models import OutboxMessage
from mobilgroup_backends.django.outbox import enqueue_many
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ValidationError
from tests import test_django_outbox_batch as batch_tests
from tests.helpers import Rollback, sent_ids

PHONE = "79031234567"

# The batch tests' fixture: the dummy task backend (their MOBILGROUP keys are marked below).
stored = batch_tests.stored

pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"),
              pytest.mark.django_db(transaction=True),
              pytest.mark.mobilgroup_settings(RETRIES=0, OUTBOX_BATCH=10)]


def test_thousands_of_rows_cost_a_few_statements_and_one_task_per_batch(
        django_emulator: Emulator, stored: Any) -> None:
    messages = [(PHONE, f"order {n}") for n in range(1200)]
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        rows = enqueue_many(messages)
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    # Up to 500 rows an INSERT; SQLite takes as many as its 999 parameters allow (some 50).
    assert 1 <= len(inserts) <= len(messages) // 40
    assert [row.text for row in rows] == [text for _, text in messages]
    assert [row.pk for row in rows] == list(
        OutboxMessage.objects.order_by("pk").values_list("pk", flat=True))
    batches = [list(result.args[0]) for result in stored.results]
    assert len(batches) == 120
    assert [pk for batch in batches for pk in batch] == [row.pk for row in rows]


def test_every_message_is_sent_once_at_commit(django_emulator: Emulator) -> None:
    prepared_elsewhere = {"phones": "+7 903 765-43-21", "text": "a mapping", "sender": "Shop"}
    with transaction.atomic():
        rows = enqueue_many([(PHONE, "a tuple"), prepared_elsewhere, (PHONE, "x" * 200)])
        assert len(django_emulator.outbox) == 0
    assert [row.parts for row in rows] == [1, 1, 2, 2]  # the long text: a row a part
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
    assert [m.sender for m in django_emulator.outbox if m.text == "a mapping"] == ["Shop"]
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {OutboxMessage.ACCEPTED}


def test_a_bad_message_writes_nothing_and_is_named(django_emulator: Emulator, stored: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        enqueue_many([(PHONE, "fine"), ("not a phone", "bad"), (PHONE, "fine too")])
    assert caught.value.field.startswith("messages[1].")
    with pytest.raises(ValidationError) as caught:
        enqueue_many([(PHONE, "fine"), {"phones": PHONE, "text": "x", "colour": "red"}])
    assert caught.value.field == "messages[1]"
    assert "colour" in str(caught.value)
    assert not OutboxMessage.objects.exists()
    assert stored.results == []


def test_a_rolled_back_transaction_leaves_no_row_and_queues_nothing(
        django_emulator: Emulator, stored: Any) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        enqueue_many([(PHONE, f"order {n}") for n in range(30)])
        raise Rollback
    assert not OutboxMessage.objects.exists()
    assert stored.results == []


def test_the_queued_backend_writes_a_list_of_messages_at_once(
        django_emulator: Emulator, settings: Any) -> None:
    settings.SMS_BACKEND = "mobilgroup_backends.django.QueuedSmsBackend"
    messages = [sms.Message(f"order {n}", recipients=[PHONE]) for n in range(20)]
    messages.append(sms.Message("no recipient", recipients=[]))
    with CaptureQueriesContext(connection) as queries, transaction.atomic(), \
            sms.get_connection(fail_silently=True) as backend:
        assert backend.send_messages(messages) == 20
    inserts = [q for q in queries.captured_queries
               if q["sql"].startswith("INSERT") and "outbox" in q["sql"]]
    assert len(inserts) == 1
    statuses = [m.mobilgroup_status for m in messages]
    assert [s.status for s in statuses] == ["pending"] * 20 + ["rejected"]
    assert sent_ids(django_emulator) == {s.request_id: 1 for s in statuses[:20]}
