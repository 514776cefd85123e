"""The durable outbox in one process: enqueue on commit, the task, the sweeper, QueuedSmsBackend.

Real Django (SQLite, real commits: ``transaction=True``), real Django Tasks backends (the
immediate one runs the task at commit; the dummy one stores it and never runs it, as a lost
enqueue), the emulator over HTTP. The killed-worker and PostgreSQL cases are in
test_django_outbox_processes.py.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import sendsms.api
import sms
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from mobilgroup_backends.django.models import OutboxMessage, SmsRequest
from mobilgroup_backends.django.outbox import deliver, enqueue, sweep
from mobilgroup_backends.django.tasks import TASK_ATTEMPTS, send_outboxed, track_due
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ValidationError
from tests.django_project.helpers import run_loop
from tests.helpers import Rollback, sent_ids

PHONE, OTHER = "79031234567", "79037654321"
QUEUED = "mobilgroup_backends.django.QueuedSmsBackend"

pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"),
              pytest.mark.django_db(transaction=True),
              pytest.mark.mobilgroup_settings(RETRIES=0)]


@pytest.fixture
def lost_enqueues(settings: Any) -> None:
    """A task backend that stores tasks and never runs them: every enqueue is as good as lost."""
    settings.TASKS = {"default": {"BACKEND": f"{settings.TASKS_PACKAGE}.backends.dummy.DummyBackend"}}


def test_enqueue_sends_once_the_transaction_commits(django_emulator: Emulator) -> None:
    with transaction.atomic():
        row = enqueue(PHONE, "Order 17 confirmed")
        assert row.request_id  # minted before anything is queued
        assert len(django_emulator.outbox) == 0  # not before the commit
    assert sent_ids(django_emulator) == {row.request_id: 1}
    assert django_emulator.outbox[0].text == "Order 17 confirmed"
    row.refresh_from_db()
    assert row.state == OutboxMessage.ACCEPTED
    assert row.attempts == 1 and row.accepted_at is not None and row.lease_token == ""


def test_a_rolled_back_transaction_sends_nothing(django_emulator: Emulator) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        enqueue(PHONE, "never")
        raise Rollback
    assert OutboxMessage.objects.count() == 0
    assert sweep(stale_after=timedelta(0)).tried == 0
    assert len(django_emulator.outbox) == 0


def test_bad_input_is_refused_when_queued(django_emulator: Emulator) -> None:
    with pytest.raises(ValidationError) as caught:
        enqueue("12", "hello")
    assert "phone" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        enqueue(PHONE, "x" * 141, long_messages="error")
    assert caught.value.field == "text"
    assert OutboxMessage.objects.count() == 0


def test_a_long_text_is_split_by_the_core_one_row_a_part(django_emulator: Emulator,
                                                         lost_enqueues: None) -> None:
    first = enqueue(PHONE, "x" * 200)  # LONG_MESSAGES defaults to "split" under Django
    rows = list(OutboxMessage.objects.order_by("part"))
    assert rows[0].pk == first.pk
    assert [(r.part, r.parts, len(r.text)) for r in rows] == [(1, 2, 140), (2, 2, 60)]
    assert [r.outgoing["parts"] for r in rows] == [
        [{"request_id": r.request_id, "text": r.text}] for r in rows]
    assert sorted(sweep(stale_after=timedelta(0)).accepted) == sorted(r.request_id for r in rows)
    assert [m.text for m in django_emulator.outbox] == [r.text for r in rows]


def test_options_are_stored_as_json_and_sent(django_emulator: Emulator) -> None:
    row = enqueue([PHONE, OTHER], "Привет", sender="MyShop", transliterate=False, valid_hours=3)
    stored = OutboxMessage.objects.get(pk=row.pk)
    assert stored.phones == [PHONE, OTHER]
    # The message as the core prepared it, stored as it is.
    assert stored.outgoing == {
        "account": django_emulator.account.user_id, "phones": [PHONE, OTHER],
        "parts": [{"request_id": row.request_id, "text": "Привет"}], "sender": "MyShop",
        "transliterate": False, "valid_hours": 3, "schedule": None}
    (message,) = django_emulator.outbox
    assert message.sender == "MyShop" and message.text == "Привет"
    assert set(message.phones) == {PHONE, OTHER}


def test_a_row_written_before_messages_were_prepared_is_still_sent(
        django_emulator: Emulator, lost_enqueues: None) -> None:
    """A row of an older version: its send keywords only, no prepared message."""
    row = OutboxMessage.objects.create(request_id=123456789012345670, phones=[PHONE],
                                       text="Привет", options={"transliterate": False,
                                                               "valid_hours": 3})
    assert sweep(stale_after=timedelta(0)).accepted == [row.request_id]
    [message] = django_emulator.outbox
    assert (message.request_id, message.text, message.transliterate, message.valid_hours) == (
        row.request_id, "Привет", False, 3)


def test_a_row_edited_into_nonsense_is_rejected_not_retried(
        django_emulator: Emulator, lost_enqueues: None) -> None:
    row = enqueue(PHONE, "fine")
    OutboxMessage.objects.filter(pk=row.pk).update(outgoing={**row.outgoing, "phones": ["12"]})
    assert sweep(stale_after=timedelta(0)).rejected == [row.request_id]
    row.refresh_from_db()
    assert (row.state, row.verdict) == (OutboxMessage.REJECTED, "invalid")
    assert "phone" in row.last_error and len(django_emulator.requests) == 0


def test_a_lost_enqueue_is_sent_by_the_sweeper_exactly_once(django_emulator: Emulator,
                                                             lost_enqueues: None) -> None:
    rows = [enqueue(PHONE, f"code {n}") for n in range(3)]
    assert len(django_emulator.outbox) == 0
    assert sweep().tried == 0  # younger than stale_after: left to the task backend
    result = sweep(stale_after=timedelta(0))
    assert sorted(result.accepted) == sorted(row.request_id for row in rows)
    assert sweep(stale_after=timedelta(0)).tried == 0  # nothing pending any more
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}


def test_the_sweeper_sends_many_rows_at_once(django_emulator: Emulator, lost_enqueues: None) -> None:
    django_emulator.latency = 0.05
    rows = [enqueue(PHONE, f"code {n}") for n in range(12)]
    result = sweep(stale_after=timedelta(0), concurrency=4)
    assert sorted(result.accepted) == sorted(row.request_id for row in rows)
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
    assert not OutboxMessage.objects.exclude(state=OutboxMessage.ACCEPTED).exists()


def test_an_answer_lost_after_the_gateway_accepted_is_resent_as_the_same_request(
        django_emulator: Emulator) -> None:
    django_emulator.faults.next("close_after")  # accepted, then the connection drops: no answer
    row = enqueue(PHONE, "code 4521")
    row.refresh_from_db()
    assert row.state == OutboxMessage.PENDING
    assert "connection" in row.last_error or "broke" in row.last_error
    assert sent_ids(django_emulator) == {row.request_id: 1}

    result = sweep(stale_after=timedelta(0))  # the gateway answers the copy with error 7

    assert result.accepted == [row.request_id]
    row.refresh_from_db()
    assert row.state == OutboxMessage.ACCEPTED and row.attempts == 2
    assert sent_ids(django_emulator) == {row.request_id: 1}


def test_a_failed_task_queues_itself_again_later_where_the_backend_can(
        django_emulator: Emulator, lost_enqueues: None) -> None:
    backend = send_outboxed.get_backend()
    row = enqueue(PHONE, "later")
    backend.clear()
    django_emulator.faults.next("close_before")
    before = timezone.now()

    assert send_outboxed.call(row.pk) == OutboxMessage.PENDING  # as a worker runs it

    (retry,) = backend.results
    assert retry.args == [row.pk]
    run_after = retry.task.run_after
    assert run_after is not None
    assert before + timedelta(seconds=4) < run_after <= before + timedelta(seconds=11)
    OutboxMessage.objects.filter(pk=row.pk).update(attempts=TASK_ATTEMPTS)
    django_emulator.faults.next("close_before")
    assert send_outboxed.call(row.pk) == OutboxMessage.PENDING
    assert len(backend.results) == 1  # enough: the sweeper takes it from here
    assert len(django_emulator.outbox) == 0


def test_an_unreachable_gateway_leaves_the_row_pending(django_emulator: Emulator) -> None:
    django_emulator.faults.next("close_before")
    row = enqueue(PHONE, "later")
    row.refresh_from_db()
    assert row.state == OutboxMessage.PENDING and row.last_error
    assert len(django_emulator.outbox) == 0
    assert sweep(stale_after=timedelta(0)).accepted == [row.request_id]
    assert sent_ids(django_emulator) == {row.request_id: 1}


def test_a_refusal_for_good_marks_the_row_rejected(django_emulator: Emulator) -> None:
    django_emulator.faults.next("body", status=404, body=b"not found")  # a wrong endpoint
    row = enqueue(PHONE, "wrong endpoint")
    row.refresh_from_db()
    assert (row.state, row.verdict, row.attempts) == (OutboxMessage.REJECTED, "refused", 1)
    assert "404" in row.last_error
    assert sweep(stale_after=timedelta(0)).tried == 0  # never tried again by itself
    assert len(django_emulator.requests) == 1


def test_an_account_refusal_pauses_the_outbox_until_it_is_fixed(
        django_emulator: Emulator, lost_enqueues: None, admin_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    django_emulator.account.balance = 0
    rows = [enqueue(PHONE, f"no money {n}") for n in range(5)]
    with caplog.at_level(logging.WARNING, logger="mobilgroup_backends"):
        first = sweep(stale_after=timedelta(0))
        second = sweep(stale_after=timedelta(0))
    # Each sweep spends one request on the refused account, then stops; nothing is rejected.
    assert (len(first.paused), first.waiting, first.rejected) == (1, 4, [])
    assert (len(second.paused), second.waiting) == (1, 4)
    assert first.to_dict()["paused"] == first.paused
    assert [ex.error for ex in django_emulator.requests] == [9, 9]
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {OutboxMessage.PENDING}
    [line] = [r.getMessage() for r in caplog.records if "paused" in r.getMessage()]
    assert "error 9" in line
    # While it lasts, manage.py check and the admin say so.
    out = StringIO()
    call_command("check", stdout=out, stderr=out)
    assert "mobilgroup.W003" in out.getvalue() and "5 message(s) wait" in out.getvalue()
    page = admin_client.get("/admin/mobilgroup/outboxmessage/").content.decode()
    assert "The SMS outbox is paused" in page

    django_emulator.account.balance = 100  # money added
    done = sweep(stale_after=timedelta(0))
    assert sorted(done.accepted) == sorted(row.request_id for row in rows)
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}
    out = StringIO()
    call_command("check", stdout=out, stderr=out)
    assert "mobilgroup.W003" not in out.getvalue()
    assert "paused" not in admin_client.get("/admin/mobilgroup/outboxmessage/").content.decode()


def test_a_rejected_row_is_queued_again_from_the_admin(django_emulator: Emulator,
                                                       admin_client: Any) -> None:
    django_emulator.faults.next("body", status=404, body=b"not found")
    row = enqueue(PHONE, "wrong endpoint first")
    page = admin_client.get("/admin/mobilgroup/outboxmessage/", {"state": "rejected"})
    assert page.status_code == 200 and str(row.request_id) in page.content.decode()
    # To whom and what, in the list itself; long texts and errors shortened to keep it narrow.
    columns = re.findall(r'<td class="field-(\w+)[^"]*">([^<]*)<', page.content.decode())
    shown = dict(columns)
    assert shown["recipients"] == PHONE.lstrip("+") and shown["text_start"] == "wrong endpoint first"
    assert shown["error_start"].startswith("HTTP 404") and len(shown["error_start"]) <= 40

    done = admin_client.post("/admin/mobilgroup/outboxmessage/",
                             {"action": "queue_again", "_selected_action": [row.pk]}, follow=True)

    assert "1 message(s) queued again." in done.content.decode()
    row.refresh_from_db()
    assert row.state == OutboxMessage.ACCEPTED and row.attempts == 1
    assert sent_ids(django_emulator) == {row.request_id: 1}
    assert admin_client.get(f"/admin/mobilgroup/outboxmessage/{row.pk}/change/").status_code == 200
    assert admin_client.get("/admin/mobilgroup/outboxmessage/add/").status_code == 403


def test_a_row_past_not_after_expires_instead_of_going_out(django_emulator: Emulator,
                                                           lost_enqueues: None) -> None:
    late = enqueue(PHONE, "code 1111", not_after=timedelta(seconds=-1))
    due = enqueue(PHONE, "code 2222", not_after=timezone.now() + timedelta(hours=1))
    result = sweep(stale_after=timedelta(0))
    assert result.expired == 1 and result.accepted == [due.request_id]
    late.refresh_from_db()
    assert late.state == OutboxMessage.EXPIRED
    assert deliver(late.pk) == OutboxMessage.EXPIRED  # a late task does nothing either
    assert sent_ids(django_emulator) == {due.request_id: 1}


def test_past_not_after_the_gateway_is_asked_whether_an_earlier_attempt_got_through(
        django_emulator: Emulator) -> None:
    django_emulator.faults.next("close_after")  # the gateway has it; the answer is lost
    reached = enqueue(PHONE, "code 3333")
    django_emulator.faults.next("close_before")  # this one never arrived
    missed = enqueue(PHONE, "code 4444")
    assert {r.state for r in OutboxMessage.objects.all()} == {OutboxMessage.PENDING}
    OutboxMessage.objects.update(not_after=timezone.now())

    result = sweep()  # not stale yet, but past not_after: settled now, and nothing is sent

    assert result.accepted == [reached.request_id] and result.expired == 1
    reached.refresh_from_db()
    missed.refresh_from_db()
    assert (reached.state, missed.state) == (OutboxMessage.ACCEPTED, OutboxMessage.EXPIRED)
    assert sent_ids(django_emulator) == {reached.request_id: 1}
    assert django_emulator.status_queries(reached.request_id) == 1


def test_a_leased_row_is_left_to_its_holder(django_emulator: Emulator, lost_enqueues: None) -> None:
    row = enqueue(PHONE, "busy")
    OutboxMessage.objects.filter(pk=row.pk).update(
        lease_token="someone-else", leased_until=timezone.now() + timedelta(minutes=1))
    assert deliver(row.pk) == "leased"
    assert sweep(stale_after=timedelta(0)).tried == 0
    assert len(django_emulator.outbox) == 0
    # The holder died: once its lease has run out, the row is sent.
    OutboxMessage.objects.filter(pk=row.pk).update(leased_until=timezone.now())
    assert sweep(stale_after=timedelta(0)).accepted == [row.request_id]
    assert sent_ids(django_emulator) == {row.request_id: 1}


def test_accepted_rows_are_linked_to_delivery_tracking(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRACK_DELIVERY": True, "VALID_HOURS": 2}
    enqueue(PHONE, "tracked " * 40)  # three parts
    rows = list(OutboxMessage.objects.order_by("part"))
    records = {record.request_id: record for record in SmsRequest.objects.all()}
    assert len(rows) == len(records) == 3
    for row in rows:
        record = records[row.request_id]
        assert row.tracking == record
        assert (record.part, record.parts, record.valid_hours) == (row.part, 3, 2)
        assert record.report_due_at == record.sent_at + timedelta(hours=2)
        assert list(record.recipients.values_list("phone", flat=True)) == [PHONE]


def test_a_scheduled_row_is_tracked_from_its_schedule(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRACK_DELIVERY": True, "VALID_HOURS": 2}
    later = (timezone.now() + timedelta(days=1)).replace(second=0, microsecond=0)
    row = enqueue(PHONE, "tomorrow", schedule=later)
    record = SmsRequest.objects.get(request_id=row.request_id)
    # The gateway's rule (protocol.report_due): the lifetime counts from the schedule.
    assert record.report_due_at == later + timedelta(hours=2)


def test_the_sweeper_command(django_emulator: Emulator, lost_enqueues: None) -> None:
    rows = [enqueue(PHONE, f"n{n}") for n in range(2)]
    out = StringIO()
    call_command("mobilgroup", "outbox", "--stale-after", "0", stdout=out)
    assert "Sent 2 pending message(s): 2 accepted" in out.getvalue()
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}


def test_the_sweeper_loop_runs_until_stopped(django_emulator: Emulator, lost_enqueues: None) -> None:
    rows = [enqueue(PHONE, f"n{n}") for n in range(2)]
    passes = run_loop("outbox", "--stale-after", "0")
    assert passes[0].startswith("Sent 2 pending message(s): 2 accepted")
    assert len(passes) > 2 and all(p.startswith("Sent 0 ") for p in passes[1:])
    assert sent_ids(django_emulator) == {row.request_id: 1 for row in rows}


def test_the_track_due_task(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRACK_DELIVERY": True}
    row = enqueue([PHONE, OTHER], "tracked")
    django_emulator.clock.advance(timedelta(hours=2))
    SmsRequest.objects.update(report_due_at=timezone.now())
    result = track_due.enqueue()  # the immediate backend runs it here
    assert result.return_value == {"polled": 1, "request_ids": [row.request_id], "complete": 1,
                                   "pending": 0, "expired": 0, "unknown": 0, "failed": 0,
                                   "skipped": 0, "changed": 2, "errors": [], "stopped": ""}
    assert django_emulator.status_queries(row.request_id) == 1
    assert SmsRequest.objects.get().state == SmsRequest.COMPLETE


# --- QueuedSmsBackend ---------------------------------------------------------------------------


@pytest.fixture
def queued(django_emulator: Emulator, settings: Any) -> Emulator:
    settings.SMS_BACKEND = settings.SENDSMS_BACKEND = QUEUED
    return django_emulator


def test_send_sms_returns_the_number_queued_and_sends_on_commit(queued: Emulator) -> None:
    with transaction.atomic():
        assert sms.send_sms("Your code is 4521", recipients=[PHONE]) == 1
        assert len(queued.outbox) == 0  # uncommitted: nothing sent
    (row,) = OutboxMessage.objects.all()
    assert row.state == OutboxMessage.ACCEPTED
    assert sent_ids(queued) == {row.request_id: 1}


def test_django_sendsms_goes_through_the_outbox_too(queued: Emulator) -> None:
    with transaction.atomic():
        assert sendsms.api.send_sms("Your code is 4521", None, [PHONE]) == 1
        assert len(queued.outbox) == 0
    (row,) = OutboxMessage.objects.all()
    assert row.state == OutboxMessage.ACCEPTED
    assert sent_ids(queued) == {row.request_id: 1}


def test_send_sms_in_a_rolled_back_transaction_sends_nothing(queued: Emulator) -> None:
    with pytest.raises(Rollback), transaction.atomic():
        assert sms.send_sms("Your code is 4521", recipients=[PHONE]) == 1
        raise Rollback
    assert OutboxMessage.objects.count() == 0
    assert len(queued.outbox) == 0


def test_the_message_status_names_its_request_ids_before_sending(queued: Emulator,
                                                                 lost_enqueues: None) -> None:
    text = " ".join(f"word{n:02d}" for n in range(40))  # two parts
    message = sms.Message(text, recipients=[PHONE])
    assert message.send() == 1
    status = message.mobilgroup_status  # type: ignore[attr-defined]
    assert status.status == "pending" and status.parts == 2
    rows = list(OutboxMessage.objects.order_by("part"))
    assert [(r.part, r.parts) for r in rows] == [(1, 2), (2, 2)]
    assert status.request_ids == [r.request_id for r in rows]
    assert len(queued.outbox) == 0


def test_a_bad_phone_is_rejected_before_queueing(queued: Emulator) -> None:
    assert sms.send_sms("hi", recipients=["12"], fail_silently=True) == 0
    with pytest.raises(ValidationError):
        sms.send_sms("hi", recipients=["12"])
    assert OutboxMessage.objects.count() == 0


def test_expire_after(queued: Emulator, lost_enqueues: None) -> None:
    with sms.get_connection(expire_after=600) as connection:
        assert connection.send_messages([sms.Message("code", recipients=[PHONE])]) == 1
    row = OutboxMessage.objects.get()
    assert row.not_after is not None
    assert timedelta(seconds=590) < row.not_after - row.created_at <= timedelta(seconds=601)
