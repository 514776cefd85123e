"""Delivery tracking: record accepted requests, ask for their reports once they are due.

The gateway asks its clients not to poll: a report is asked for once the message lifetime
(``valid``, 1 hour by default) has run out. :func:`track` therefore only looks at requests whose
``report_due_at`` has passed, asks once, and marks the request complete when every recipient has
a final status. An incomplete report is asked for again later, with growing pauses, until
:data:`GIVE_UP_AFTER` past the first due time.

Several hosts may run ``manage.py mobilgroup track`` from cron at the same minute. A run claims
each request with one conditional ``UPDATE`` (``claimed_until`` in the past or empty, state still
pending, still due) that sets a lease and a token; only the run whose ``UPDATE`` changed the row
polls it, and it writes its results only while the token is still its own. That needs nothing
but atomic single-row updates, which every database Django supports has, SQLite included.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..client import MobilgroupClient, SendResult
from ..errors import ConfigurationError, MobilgroupError, UnknownRequestId
from ..protocol import GATEWAY_TIMEZONE, DeliveryStatus, StatusReport
from .models import SmsRecipient, SmsRequest
from .signals import delivery_status

__all__ = [
    "DEFAULT_VALID_HOURS",
    "GIVE_UP_AFTER",
    "RECHECK_AFTER",
    "TrackResult",
    "record_sent",
    "track",
]

logger = logging.getLogger("mobilgroup_backends.django.tracking")

#: The gateway's default message lifetime, in hours.
DEFAULT_VALID_HOURS = 1
#: First pause before an incomplete report is asked for again; it doubles each time, up to 6 h.
RECHECK_AFTER = timedelta(minutes=15)
MAX_RECHECK = timedelta(hours=6)
#: Past the first due time, an incomplete report is no longer asked for (state "expired").
GIVE_UP_AFTER = timedelta(hours=72)


def _now() -> datetime:
    return timezone.now()


def record_sent(results: Sequence[SendResult], *, parts: int = 1, first_part: int = 1,
                valid_hours: int | None = None, sent_at: datetime | None = None) -> list[SmsRequest]:
    """Record accepted requests (one per part of a message, from part ``first_part`` on) for
    tracking."""
    sent_at = sent_at or _now()
    hours = valid_hours or DEFAULT_VALID_HOURS
    records: list[SmsRequest] = []
    with transaction.atomic():
        for number, result in enumerate(results, start=first_part):
            record = SmsRequest.objects.create(
                request_id=result.request_id,
                sender=result.sender or "",
                text_length=len(result.text),
                part=number,
                parts=parts,
                valid_hours=hours,
                sent_at=sent_at,
                report_due_at=sent_at + timedelta(hours=hours),
            )
            SmsRecipient.objects.bulk_create(
                [SmsRecipient(request=record, phone=phone) for phone in result.phones])
            records.append(record)
    return records


@dataclass
class TrackResult:
    """What one :func:`track` run did."""

    polled: list[int] = field(default_factory=list)
    complete: int = 0
    pending: int = 0
    expired: int = 0
    unknown: int = 0
    failed: int = 0
    skipped: int = 0
    changed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Change:
    recipient: SmsRecipient
    previous: DeliveryStatus
    time: datetime | None


def track(client: MobilgroupClient, *, now: datetime | None = None, limit: int | None = None,
          lease: timedelta | None = None) -> TrackResult:
    """Ask for the report of every request that is due, at most once each, and record it.

    ``delivery_status`` is sent once for every recipient whose status changed, after the change
    is committed. Errors reaching the gateway are recorded on the request, which is tried again
    on a later run; they never stop the run.
    """
    now = now or _now()
    if lease is None:
        lease = _lease(client)
    token = secrets.token_hex(16)
    result = TrackResult()
    claimable = (Q(state=SmsRequest.PENDING) & Q(report_due_at__lte=now)
                 & (Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)))
    candidates = list(SmsRequest.objects.filter(claimable).order_by("report_due_at")
                      .values_list("pk", flat=True)[:limit])
    for pk in candidates:
        claimed = SmsRequest.objects.filter(claimable, pk=pk).update(
            claimed_until=now + lease, claim_token=token)
        if claimed != 1:
            result.skipped += 1  # another run has it, or has just finished it
            continue
        record = SmsRequest.objects.get(pk=pk)
        _poll(client, record, token, now, result)
    return result


def _poll(client: MobilgroupClient, record: SmsRequest, token: str, now: datetime,
          result: TrackResult) -> None:
    try:
        report = client.status(record.request_id, extended=True)
    except UnknownRequestId as exc:
        result.polled.append(record.request_id)
        result.unknown += 1
        _release(record, token, now, state=SmsRequest.UNKNOWN, error=str(exc))
        return
    except ConfigurationError:
        _release(record, token, now, error="")
        raise
    except MobilgroupError as exc:
        result.polled.append(record.request_id)
        result.failed += 1
        result.errors.append(f"request {record.request_id}: {exc}")
        logger.warning("delivery report for request %s not fetched: %s", record.request_id, exc)
        _release(record, token, now, error=str(exc), due=now + _pause(record.polls + 1))
        return
    result.polled.append(record.request_id)
    changes = _apply(record, report, token, now)
    if changes is None:
        result.skipped += 1  # the lease ran out and another run took the request over
        return
    state = record.state
    if state == SmsRequest.COMPLETE:
        result.complete += 1
    elif state == SmsRequest.EXPIRED:
        result.expired += 1
    else:
        result.pending += 1
    result.changed += len(changes)
    for change in changes:
        recipient = change.recipient
        delivery_status.send(
            sender=SmsRecipient, recipient=recipient, request_id=record.request_id,
            phone=recipient.phone, status=recipient.delivery_status, previous=change.previous,
            time=change.time)


def _lease(client: MobilgroupClient) -> timedelta:
    """Twice the longest one status call can take, and at least a minute: a claim must outlive
    the poll it covers."""
    return timedelta(seconds=max(60.0, 2 * client.longest_call()))


def _pause(polls: int) -> timedelta:
    pause: timedelta = RECHECK_AFTER * (2 ** max(0, polls - 1))
    return min(MAX_RECHECK, pause)


def _release(record: SmsRequest, token: str, now: datetime, *, error: str,
             state: str | None = None, due: datetime | None = None) -> None:
    values: dict[str, object] = {"claimed_until": None, "claim_token": "",
                                 "last_error": error[:300], "last_polled_at": now}
    if state is not None:
        values["state"] = state
    if due is not None:
        values["report_due_at"] = due
        values["polls"] = record.polls + 1
    SmsRequest.objects.filter(pk=record.pk, claim_token=token).update(**values)


def _gateway_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if getattr(django_settings, "USE_TZ", True):
        return value.replace(tzinfo=GATEWAY_TIMEZONE)
    return value


def _apply(record: SmsRequest, report: StatusReport, token: str,
           now: datetime) -> list[_Change] | None:
    """Write the report while the claim is still ours; the changes, or None if it is not."""
    polls = record.polls + 1
    if report.is_complete:
        state = SmsRequest.COMPLETE
        due = record.report_due_at
    elif now - record.sent_at - timedelta(hours=record.valid_hours) >= GIVE_UP_AFTER:
        state = SmsRequest.EXPIRED
        due = record.report_due_at
    else:
        state = SmsRequest.PENDING
        due = now + _pause(polls)
    changes: list[_Change] = []
    with transaction.atomic():
        owned = SmsRequest.objects.filter(pk=record.pk, claim_token=token).update(
            state=state, report_due_at=due, polls=polls, last_polled_at=now,
            mailing_status=int(report.status), last_error="", claimed_until=None,
            claim_token="")
        if owned != 1:
            return None
        rows = {row.phone: row for row in SmsRecipient.objects.filter(request=record)}
        for reported in report.recipients:
            row = rows.get(reported.phone)
            when = _gateway_time(reported.time)
            if row is None:
                row = SmsRecipient.objects.create(request=record, phone=reported.phone,
                                                  status=int(reported.status), status_time=when)
                changes.append(_Change(row, DeliveryStatus.QUEUED, when))
                continue
            if row.status != int(reported.status):
                previous = row.delivery_status
                row.status = int(reported.status)
                row.status_time = when
                row.save(update_fields=("status", "status_time", "updated_at"))
                changes.append(_Change(row, previous, when))
    record.state = state
    record.report_due_at = due
    record.polls = polls
    return changes
