"""Delivery tracking end to end: records, `track` runs, signals, and two runs at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import sms
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection
from django.utils import timezone

from mobilgroup_backends.client import MobilgroupClient
from mobilgroup_backends.django import SmsBackend
from mobilgroup_backends.django.models import SmsRecipient, SmsRequest
from mobilgroup_backends.django.signals import delivery_status
from mobilgroup_backends.django.tracking import RECHECK_AFTER, TrackResult, record_sent, track
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.protocol import DeliveryStatus
from tests.conftest import RunCommand
from tests.django_project.helpers import run_loop

DELIVERED, UNDELIVERABLE, FAILING = "79031234567", "79030000000", "79039999999"


# The settings under test must not be mixed with MOBILGROUP_* variables of the machine.
pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"),
              pytest.mark.mobilgroup_settings(TRACK_DELIVERY=True)]


@pytest.fixture
def client(django_emulator: Emulator) -> Iterator[MobilgroupClient]:
    with SmsBackend().make_client() as made:
        yield made


@pytest.fixture
def reports() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def receiver(sender: type, **kwargs: Any) -> None:
        assert sender is SmsRecipient
        seen.append(kwargs)

    delivery_status.connect(receiver)
    yield seen
    delivery_status.disconnect(receiver)


def due(record: SmsRequest, after: timedelta = timedelta(minutes=1)) -> datetime:
    """A moment just past the record's due time: what `now` is an hour after sending."""
    return record.report_due_at + after


def run_track(*args: str) -> str:
    out = StringIO()
    call_command("mobilgroup", "track", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- recording ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_accepted_requests_are_recorded(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "VALID_HOURS": 2, "SENDER": "MyShop"}
    message = sms.Message("Your order shipped", recipients=[DELIVERED, UNDELIVERABLE])
    before = timezone.now()

    assert message.send() == 1

    assert message.mobilgroup_status.tracked is True
    record = SmsRequest.objects.get()
    assert record.request_id == django_emulator.outbox[0].request_id == message.mobilgroup_status.request_id
    assert record.text_length == len("Your order shipped")
    assert record.sender == "MyShop"
    assert record.valid_hours == 2
    assert before <= record.sent_at <= timezone.now()
    assert record.report_due_at - record.sent_at == timedelta(hours=2)
    assert record.state == SmsRequest.PENDING
    assert sorted(record.recipients.values_list("phone", "status")) == [
        (UNDELIVERABLE, DeliveryStatus.QUEUED), (DELIVERED, DeliveryStatus.QUEUED)]


@pytest.mark.django_db
def test_each_part_of_a_split_message_is_recorded(django_emulator: Emulator) -> None:
    text = " ".join(f"word{n:02d}" for n in range(40))
    assert sms.send_sms(text, recipients=[DELIVERED]) == 1
    records = list(SmsRequest.objects.order_by("part"))
    assert [(r.part, r.parts) for r in records] == [(1, 2), (2, 2)]
    assert [r.request_id for r in records] == [m.request_id for m in django_emulator.outbox]


@pytest.mark.django_db
def test_nothing_is_recorded_without_tracking_or_when_refused(django_emulator: Emulator,
                                                             settings: Any) -> None:
    django_emulator.account.blocked = True
    assert sms.send_sms("refused", recipients=[DELIVERED], fail_silently=True) == 0
    django_emulator.account.blocked = False
    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRACK_DELIVERY": False}
    assert sms.send_sms("untracked", recipients=[DELIVERED]) == 1
    assert SmsRequest.objects.count() == 0


# --- polling --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_track_end_to_end_with_the_command(django_emulator: Emulator,
                                           reports: list[dict[str, Any]]) -> None:
    message = sms.Message("Deploy finished", recipients=[DELIVERED, UNDELIVERABLE, FAILING])
    assert message.send() == 1
    request_id = message.mobilgroup_status.request_id

    out = run_track()  # the lifetime has not run out: nothing is asked
    assert "Polled 0 request(s)" in out
    assert django_emulator.status_queries(request_id) == 0

    django_emulator.clock.advance(timedelta(hours=1, minutes=5))  # past the one-hour lifetime
    SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(seconds=1))
    out = run_track()

    assert "Polled 1 request(s): 1 complete, 0 pending" in out
    assert "3 recipient status(es) changed" in out
    assert django_emulator.status_queries(request_id) == 1
    record = SmsRequest.objects.get()
    assert record.state == SmsRequest.COMPLETE and record.polls == 1
    assert record.mailing_status is not None
    statuses = dict(record.recipients.values_list("phone", "status"))
    assert statuses == {DELIVERED: DeliveryStatus.DELIVERED,
                        UNDELIVERABLE: DeliveryStatus.UNDELIVERED, FAILING: DeliveryStatus.ERROR}
    assert all(r.status_time is not None for r in record.recipients.all())
    assert sorted((r["phone"], r["status"], r["previous"]) for r in reports) == [
        (UNDELIVERABLE, DeliveryStatus.UNDELIVERED, DeliveryStatus.QUEUED),
        (DELIVERED, DeliveryStatus.DELIVERED, DeliveryStatus.QUEUED),
        (FAILING, DeliveryStatus.ERROR, DeliveryStatus.QUEUED),
    ]
    assert {r["request_id"] for r in reports} == {request_id}
    assert all(isinstance(r["recipient"], SmsRecipient) for r in reports)

    out = run_track()  # complete: never asked again, no signal again
    assert "Polled 0 request(s)" in out
    assert django_emulator.status_queries(request_id) == 1
    assert len(reports) == 3


@pytest.mark.django_db
def test_an_incomplete_report_is_asked_again_later(
        django_emulator: Emulator, client: MobilgroupClient, reports: list[dict[str, Any]]) -> None:
    django_emulator.clock.freeze()
    assert sms.send_sms("slow", recipients=[DELIVERED]) == 1
    record = SmsRequest.objects.get()
    django_emulator.clock.advance(2)  # handed on ("sent"), not yet delivered
    now = due(record)

    first = track(client, now=now)

    assert (first.polled, first.pending, first.changed) == ([record.request_id], 1, 1)
    assert reports[-1]["status"] == DeliveryStatus.SENT
    record.refresh_from_db()
    assert record.state == SmsRequest.PENDING and record.polls == 1
    # The core's backoff, jittered over its upper half.
    assert now + RECHECK_AFTER / 2 <= record.report_due_at <= now + RECHECK_AFTER
    assert track(client, now=now + timedelta(minutes=5)).polled == []  # not due yet

    django_emulator.clock.advance(10)
    later = track(client, now=now + RECHECK_AFTER)
    assert (later.complete, later.changed) == (1, 1)
    assert reports[-1]["status"] == DeliveryStatus.DELIVERED
    assert reports[-1]["previous"] == DeliveryStatus.SENT
    assert django_emulator.status_queries(record.request_id) == 2


@pytest.mark.django_db
def test_tracking_gives_up_after_three_days(django_emulator: Emulator, client: MobilgroupClient) -> None:
    django_emulator.clock.freeze()
    assert sms.send_sms("stuck", recipients=[UNDELIVERABLE]) == 1  # stays "sent" meanwhile
    record = SmsRequest.objects.get()
    result = track(client, now=due(record, timedelta(hours=72)))
    assert result.expired == 1
    record.refresh_from_db()
    assert record.state == SmsRequest.EXPIRED
    assert track(client, now=due(record, timedelta(hours=100))).polled == []


@pytest.mark.django_db
def test_a_request_the_gateway_does_not_know(django_emulator: Emulator, client: MobilgroupClient) -> None:
    [record] = record_sent(client.prepare(DELIVERED, "x", request_id=123456789))
    result = track(client, now=due(record))
    assert (result.polled, result.unknown) == ([123456789], 1)
    record.refresh_from_db()
    assert record.state == SmsRequest.UNKNOWN
    assert "12" in record.last_error


@pytest.mark.django_db
def test_an_unreachable_gateway_is_tried_again_on_a_later_run(
        django_emulator: Emulator, reports: list[dict[str, Any]]) -> None:
    assert sms.send_sms("x", recipients=[DELIVERED]) == 1
    django_emulator.clock.advance(timedelta(hours=2))
    SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(seconds=1))
    django_emulator.faults.next("http_500", count=2)  # RETRIES is 1

    with pytest.raises(CommandError) as caught:
        run_track()

    assert caught.value.returncode == 3
    record = SmsRequest.objects.get()
    assert record.state == SmsRequest.PENDING
    assert "HTTP 500" in record.last_error
    assert record.report_due_at > timezone.now()
    assert record.claimed_until is None
    assert not reports
    assert "Polled 0 request(s)" in run_track("--limit", "5")  # its next try is not due yet
    assert track_now(record).complete == 1
    assert len(reports) == 1


def track_now(record: SmsRequest) -> TrackResult:
    with SmsBackend().make_client() as made:
        return track(made, now=due(record))


@pytest.mark.django_db(transaction=True)
def test_track_loop_polls_what_becomes_due_until_stopped(django_emulator: Emulator) -> None:
    assert sms.send_sms("Deploy finished", recipients=[DELIVERED]) == 1
    django_emulator.clock.advance(timedelta(hours=2))
    SmsRequest.objects.update(report_due_at=timezone.now())
    passes = run_loop("track")
    assert passes[0].startswith("Polled 1 request(s): 1 complete")
    assert len(passes) > 2 and all(p.startswith("Polled 0 ") for p in passes[1:])
    assert django_emulator.status_queries(django_emulator.outbox[0].request_id) == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_poll_each_request_once(django_emulator: Emulator,
                                                    reports: list[dict[str, Any]]) -> None:
    for n in range(8):
        assert sms.send_sms(f"n{n}", recipients=[DELIVERED, f"7903555000{n}"]) == 1
    request_ids = {m.request_id for m in django_emulator.outbox}
    django_emulator.clock.advance(timedelta(hours=2))
    django_emulator.latency = 0.05  # each poll takes a while, so that the two runs overlap
    now = timezone.now() + timedelta(hours=1, minutes=1)
    start = threading.Barrier(2)
    results: list[TrackResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with SmsBackend().make_client() as made:
                start.wait(10)
                results.append(track(made, now=now, batch=2))
        except BaseException as exc:
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors
    first, second = results
    assert first.polled and second.polled, "the two runs did not overlap"
    assert not set(first.polled) & set(second.polled)
    assert set(first.polled) | set(second.polled) == request_ids
    assert all(django_emulator.status_queries(rid) == 1 for rid in request_ids)
    assert len(reports) == 16  # one per recipient, each once
    assert SmsRequest.objects.filter(state=SmsRequest.COMPLETE).count() == 8
    assert not SmsRequest.objects.exclude(claim_token="").exists()


@pytest.mark.django_db
def test_read_only_admin_with_filters(django_emulator: Emulator, admin_client: Any) -> None:
    assert sms.send_sms("x", recipients=[DELIVERED, UNDELIVERABLE]) == 1
    record = SmsRequest.objects.get()
    base = "/admin/mobilgroup/smsrequest/"

    page = admin_client.get(base)
    assert page.status_code == 200
    assert str(record.request_id) in page.content.decode()
    assert "By state" in page.content.decode()  # the filters are there
    filtered = admin_client.get(base, {"state": SmsRequest.COMPLETE})
    assert str(record.request_id) not in filtered.content.decode()
    by_status = admin_client.get(base, {"recipients__status": int(DeliveryStatus.QUEUED)})
    assert str(record.request_id) in by_status.content.decode()
    assert admin_client.get(f"{base}{record.pk}/change/").status_code == 200
    assert admin_client.get(f"{base}add/").status_code == 403
    assert admin_client.post(f"{base}{record.pk}/delete/").status_code == 403
    recipients = admin_client.get("/admin/mobilgroup/smsrecipient/", {"status": 0})
    assert recipients.status_code == 200 and UNDELIVERABLE in recipients.content.decode()


@pytest.mark.django_db
def test_a_failure_that_will_not_mend_stops_the_run_after_one_request(
        django_emulator: Emulator, client: MobilgroupClient) -> None:
    records = [record for n in range(4)
               for record in record_sent(client.prepare(DELIVERED, f"n{n}"))]
    SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(seconds=1))
    before = {record.pk: SmsRequest.objects.get(pk=record.pk).report_due_at for record in records}
    django_emulator.faults.next("body", count=10, status=404, body=b"not found")  # a wrong endpoint

    result = track(client)

    assert len(django_emulator.requests) == 1  # not one request per due report
    assert (len(result.polled), result.failed) == (1, 1)
    assert result.stopped.startswith("refused:") and "404" in result.stopped
    assert result.to_dict()["stopped"] == result.stopped
    # Every record is still due as it was, none claimed: the next run asks again.
    after = {r.pk: (r.report_due_at, r.claim_token, r.polls) for r in SmsRequest.objects.all()}
    assert after == {pk: (due_at, "", 0) for pk, due_at in before.items()}


@pytest.mark.django_db
def test_track_and_outbox_print_their_json_shape(django_emulator: Emulator,
                                                  client: MobilgroupClient) -> None:
    [record] = record_sent(client.prepare(DELIVERED, "never sent"))  # unknown to the gateway
    SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(seconds=1))
    printed = json.loads(run_track("--json"))
    assert printed == {"ok": True, "polled": 1, "request_ids": [record.request_id],
                       "complete": 0, "pending": 0, "expired": 0, "unknown": 1, "failed": 0,
                       "skipped": 0, "changed": 0, "errors": [], "stopped": ""}
    out = StringIO()
    call_command("mobilgroup", "outbox", "--stale-after", "0", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"ok": True, "tried": 0, "accepted": [], "pending": [],
                                          "rejected": [], "paused": [], "waiting": 0,
                                          "expired": 0, "skipped": 0}


@pytest.mark.django_db
@pytest.mark.parametrize(("failure", "exit_status"), [("account blocked", 5), ("endpoint 404", 3)])
def test_a_command_stopped_by_a_failure_exits_as_its_verdict_says(
        django_emulator: Emulator, client: MobilgroupClient, manage_command: RunCommand,
        failure: str, exit_status: int) -> None:
    record_sent(client.prepare(DELIVERED, "report me"))
    SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(seconds=1))
    if failure == "account blocked":
        django_emulator.account.blocked = True
    else:
        django_emulator.faults.next("body", count=10, status=404, body=b"not found")

    done = manage_command("track")

    assert done.returncode == exit_status, done.stderr
    assert "delivery tracking stopped" in done.stderr
    assert len(django_emulator.requests) == 1
