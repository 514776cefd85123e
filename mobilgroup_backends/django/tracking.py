"""Delivery tracking: record accepted requests, ask for their reports once they are due.

The gateway asks its clients not to poll: a report is asked for once the message lifetime
(``valid``, 1 hour by default) has run out, counted from the ``schedule`` when the message was
scheduled for later (:func:`mobilgroup_backends.protocol.report_due`, the one place that rule
lives). :func:`track` therefore only looks at requests whose ``report_due_at`` has passed, asks
once, and marks the request complete when every recipient has a final status. An incomplete
report is asked for again later, with growing pauses (the core's backoff), until
:data:`GIVE_UP_AFTER` past the first due time.

A failure acts on its verdict: one that may mend itself (a timeout, HTTP 5xx) leaves the request
for a later run; one that will not (an account the gateway refuses, a 404 endpoint, an untrusted
certificate) stops the run at once instead of spending a request on every due record.

Many workers may track at once (``manage.py mobilgroup track`` from cron on several hosts,
``track --loop`` processes, the ``track_due`` task). A run claims due requests in batches: on
PostgreSQL with ``SELECT ... FOR UPDATE SKIP LOCKED`` (concurrent runs lock different rows and
never wait on each other), elsewhere with one conditional ``UPDATE`` (``claimed_until`` in the
past or empty, state still pending, still due). Either way the claim sets a lease and a token; the
run polls outside any transaction and writes its results only while the token is still its own.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from .. import protocol
from ..client import MobilgroupClient, backoff_delay
from ..errors import ConfigurationError, MobilgroupError, UnknownRequestId
from ..outgoing import Outgoing
from ..protocol import DeliveryStatus, StatusReport
from .models import SmsRecipient, SmsRequest
from .signals import delivery_status

__all__ = [
    "BATCH",
    "DEFAULT_VALID_HOURS",
    "GIVE_UP_AFTER",
    "RECHECK_AFTER",
    "TrackResult",
    "record_sent",
    "track",
]

logger = logging.getLogger("mobilgroup_backends.django.tracking")

#: The gateway's default message lifetime, in hours.
DEFAULT_VALID_HOURS = protocol.DEFAULT_VALID_HOURS
#: First pause before an incomplete report is asked for again; it doubles each time, up to 6 h.
RECHECK_AFTER = timedelta(minutes=15)
MAX_RECHECK = timedelta(hours=6)
#: Past the first due time, an incomplete report is no longer asked for (state "expired").
GIVE_UP_AFTER = timedelta(hours=72)
#: Requests one run claims at a time: few enough that parallel runs share the work.
BATCH = 10


def _now() -> datetime:
    return timezone.now()


def record_sent(outgoing: Outgoing, *, parts: int | None = None, first_part: int = 1,
                sent_at: datetime | None = None) -> list[SmsRequest]:
    """Record the accepted requests of a prepared message for tracking: one record per part of
    ``outgoing``, numbered from ``first_part`` among ``parts`` (default: its own parts; the
    outbox records one part of a longer message at a time). The report is due when the gateway's
    rule says (:func:`~mobilgroup_backends.protocol.report_due`: the lifetime, counted from the
    ``schedule`` when the message was scheduled for later)."""
    sent_at = sent_at or _now()
    hours = outgoing.valid_hours or DEFAULT_VALID_HOURS
    due = outgoing.report_due(sent_at)
    records: list[SmsRequest] = []
    with transaction.atomic():
        for number, part in enumerate(outgoing.parts, start=first_part):
            record = SmsRequest.objects.create(
                request_id=part.request_id,
                sender=outgoing.sender or "",
                text_length=len(part.text),
                part=number,
                parts=parts or len(outgoing.parts),
                valid_hours=hours,
                sent_at=sent_at,
                report_due_at=due,
            )
            SmsRecipient.objects.bulk_create(
                [SmsRecipient(request=record, phone=phone) for phone in outgoing.phones])
            records.append(record)
    return records


@dataclass
class TrackResult:
    """What one :func:`track` run did.

    ``stopped`` is set when the run stopped early on a failure that will not mend by itself (the
    account refused, the endpoint refusing every request): its verdict and the error;
    ``stopped_by`` is that error (what a command's exit code is taken from).
    """

    polled: list[int] = field(default_factory=list)
    complete: int = 0
    pending: int = 0
    expired: int = 0
    unknown: int = 0
    failed: int = 0
    skipped: int = 0
    changed: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: str = ""
    stopped_by: MobilgroupError | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The one JSON shape of a tracking run, as ``manage.py mobilgroup track --json``, the
        Django task and the Celery task give it."""
        return {"polled": len(self.polled), "request_ids": self.polled,
                "complete": self.complete, "pending": self.pending, "expired": self.expired,
                "unknown": self.unknown, "failed": self.failed, "skipped": self.skipped,
                "changed": self.changed, "errors": self.errors, "stopped": self.stopped}

    def summary(self) -> str:
        """One line for people."""
        line = (f"Polled {len(self.polled)} request(s): {self.complete} complete, "
                f"{self.pending} pending, {self.expired} expired, {self.unknown} unknown, "
                f"{self.failed} failed; {self.changed} recipient status(es) changed.")
        return f"{line} Stopped: {self.stopped}" if self.stopped else line


@dataclass(frozen=True)
class _Change:
    recipient: SmsRecipient
    previous: DeliveryStatus
    time: datetime | None


def track(client: MobilgroupClient, *, now: datetime | None = None, limit: int | None = None,
          lease: timedelta | None = None, batch: int = BATCH) -> TrackResult:
    """Ask for the report of every request that is due, at most once each, and record it.

    Requests are claimed ``batch`` at a time, with a lease long enough to poll the whole batch.
    ``delivery_status`` is sent once for every recipient whose status changed, after the change
    is committed. Errors reaching the gateway are recorded on the request, which is tried again
    on a later run; they never stop the run.
    """
    now = now or _now()
    batch = max(1, batch)
    if lease is None:
        lease = _lease(client) * batch
    token = secrets.token_hex(16)
    result = TrackResult()
    claimable = (Q(state=SmsRequest.PENDING) & Q(report_due_at__lte=now)
                 & (Q(claimed_until__isnull=True) | Q(claimed_until__lte=now)))
    seen: set[int] = set()
    while limit is None or len(seen) < limit:
        size = batch if limit is None else min(batch, limit - len(seen))
        offered, claimed = _claim(claimable, size, token, now + lease)
        if not offered:
            break
        result.skipped += offered - len(claimed)  # other runs took them first
        fresh = [pk for pk in claimed if pk not in seen]
        if not fresh and not offered - len(claimed):
            break  # nothing new can come: never poll a request twice in one run
        seen.update(fresh)
        for number, pk in enumerate(fresh):
            try:
                _poll(client, SmsRequest.objects.get(pk=pk), token, now, result)
            except BaseException:
                _hand_back(fresh[number + 1:], token)
                raise
            if result.stopped:
                _hand_back(fresh[number + 1:], token)
                return result
    return result


def _hand_back(pks: list[int], token: str) -> None:
    """Release claimed requests now rather than when the lease runs out."""
    SmsRequest.objects.filter(pk__in=pks, claim_token=token).update(claimed_until=None,
                                                                    claim_token="")


def _claim(claimable: Q, size: int, token: str, until: datetime) -> tuple[int, list[int]]:
    """Claim up to ``size`` due requests for this run: how many were offered, and the ones won.

    Where the database can skip locked rows (PostgreSQL), the due rows are locked and leased in
    one short transaction: concurrent runs each lock different rows and never wait on each
    other. Elsewhere (SQLite) one conditional ``UPDATE`` leases whichever of the candidates are
    still free, and the token says which ones this run won.
    """
    due = SmsRequest.objects.filter(claimable).order_by("report_due_at")
    alias = router.db_for_write(SmsRequest)
    if connections[alias].features.has_select_for_update_skip_locked:
        with transaction.atomic(using=alias):
            pks = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:size])
            SmsRequest.objects.filter(pk__in=pks).update(claimed_until=until, claim_token=token)
        return len(pks), pks
    candidates = list(due.values_list("pk", flat=True)[:size])
    SmsRequest.objects.filter(claimable, pk__in=candidates).update(claimed_until=until,
                                                                   claim_token=token)
    won = set(SmsRequest.objects.filter(pk__in=candidates, claim_token=token)
              .values_list("pk", flat=True))
    return len(candidates), [pk for pk in candidates if pk in won]


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
        if not exc.verdict.try_again:
            # Not this request's fault and not mended by waiting: the same answer awaits every
            # other due request. Keep this one due as it was, and stop.
            result.stopped = f"{exc.verdict.value}: {exc}"
            result.stopped_by = exc
            logger.warning("delivery tracking stopped (%s): %s", exc.verdict.value, exc)
            _release(record, token, now, error=str(exc))
            return
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
    """The pause before an incomplete report is asked for again: the core's backoff, from
    :data:`RECHECK_AFTER` up to :data:`MAX_RECHECK`."""
    return timedelta(seconds=backoff_delay(RECHECK_AFTER.total_seconds(), polls,
                                           cap=MAX_RECHECK.total_seconds()))


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
            when = reported.time
            if when is not None and not django_settings.USE_TZ:
                when = timezone.make_naive(when)  # without USE_TZ, Django keeps local naive times
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
