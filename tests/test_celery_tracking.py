"""Celery-sent messages in the Django app's delivery tracking: recorded once when the worker has
the app and ``TRACK_DELIVERY`` on, then polled by ``mobilgroup.track_due``. Real Celery tasks
(run in this process, as a worker's pool process runs them), real Django (SQLite), the emulator
over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from django.db import OperationalError, connection
from django.utils import timezone

from mobilgroup_backends import celery as mobilgroup_celery
from mobilgroup_backends.django.models import SmsRequest
from mobilgroup_backends.emulator import Emulator

PHONE = "79031234567"
REQUEST_ID = 223456789012345678

pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"), pytest.mark.django_db]


@pytest.fixture
def app(mobilgroup_emulator: Emulator) -> Celery:
    app = Celery("tracking", broker="memory://")
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(retries=0)
    return app


def send(app: Celery, request_id: int = REQUEST_ID, **options: Any) -> dict[str, Any]:
    outcome = app.tasks[mobilgroup_celery.SEND_TASK].apply((request_id, [PHONE], "Order 7"),
                                                           options)
    assert outcome.successful(), outcome.traceback
    result: dict[str, Any] = outcome.result
    return result


def test_with_track_delivery_the_send_is_recorded_once_and_polled(
        app: Celery, settings: Any, mobilgroup_emulator: Emulator) -> None:
    settings.MOBILGROUP = {"TRACK_DELIVERY": True}
    assert send(app, valid_hours=2)["tracked"] is True
    [record] = SmsRequest.objects.all()
    assert record.request_id == REQUEST_ID and record.valid_hours == 2
    assert list(record.recipients.values_list("phone", flat=True)) == [PHONE]

    # The broker hands the task out again (a lost acknowledgement): sent once, recorded once.
    again = send(app, valid_hours=2)
    assert again["accepted_earlier"] is True and again["tracked"] is True
    assert SmsRequest.objects.count() == 1
    assert [message.request_id for message in mobilgroup_emulator.outbox] == [REQUEST_ID]

    # Once its report is due, beat's track_due asks for it.
    SmsRequest.objects.update(report_due_at=timezone.now() - timedelta(minutes=1))
    outcome = app.tasks[mobilgroup_celery.TRACK_TASK].apply()
    assert outcome.successful(), outcome.traceback
    assert outcome.result["polled"] == 1
    status_requests = [ex for ex in mobilgroup_emulator.requests if ex.request_id == REQUEST_ID
                       and ex.command == "status"]
    assert len(status_requests) == 1


def test_without_track_delivery_nothing_is_recorded(app: Celery, settings: Any) -> None:
    settings.MOBILGROUP = {}
    assert send(app)["tracked"] is False
    assert SmsRequest.objects.count() == 0


def test_track_delivery_in_the_celery_url_is_honoured(
        app: Celery, mobilgroup_emulator: Emulator) -> None:
    app.conf.mobilgroup_secret_url = mobilgroup_emulator.url(retries=0, track_delivery="yes")
    assert send(app)["tracked"] is True
    assert SmsRequest.objects.filter(request_id=REQUEST_ID).exists()


@contextmanager
def refused_inserts(table: str, times: int) -> Iterator[list[str]]:
    """The database refuses the first ``times`` inserts into ``table`` (as a dropped connection
    or a lock timeout would), through Django's own hook on every query."""
    refused: list[str] = []

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                context: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT") and table in sql and len(refused) < times:
            refused.append(sql)
            raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield refused


@pytest.mark.parametrize("refusals", [2, 100], ids=["passing", "lasting"])
def test_a_database_error_runs_the_task_again(
        app: Celery, settings: Any, mobilgroup_emulator: Emulator,
        caplog: pytest.LogCaptureFixture, refusals: int) -> None:
    """Each run resends under the same id (answered "accepted earlier") and tries to record
    again; only when the last allowed run fails too is one error logged."""
    settings.MOBILGROUP = {"TRACK_DELIVERY": True}
    caplog.set_level(logging.ERROR, logger="mobilgroup_backends.celery")
    with refused_inserts(SmsRequest._meta.db_table, times=refusals) as refused:
        result = send(app)
    runs = min(refusals + 1, mobilgroup_celery.MAX_RETRIES + 1)
    assert len([ex for ex in mobilgroup_emulator.requests if ex.command == "send"]) == runs
    assert [message.request_id for message in mobilgroup_emulator.outbox] == [REQUEST_ID]
    recorded = refusals < runs
    assert len(refused) == (refusals if recorded else runs)
    assert result["tracked"] is recorded
    assert SmsRequest.objects.filter(request_id=REQUEST_ID).count() == int(recorded)
    if recorded:
        assert result["accepted_earlier"] is True
        assert not caplog.records
    else:
        [record] = caplog.records
        assert str(REQUEST_ID) in record.getMessage()
        assert "OperationalError" in record.getMessage()
