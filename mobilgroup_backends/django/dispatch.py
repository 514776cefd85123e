"""Sending outbox rows: one row by a task (:func:`deliver`), every row left behind by the
sweeper (:func:`sweep`).

Every send of a row first claims it with a lease (one conditional ``UPDATE``, so two runners
never send it at once) and then sends with the row's request id and ``resend=True``: if an earlier
run reached the gateway and died before recording it, the gateway answers the copy with error 7
and the message is recorded as accepted, sent once.

The tasks (``tasks.py``) and the queueing side (``outbox.py``) both build on this module; neither
imports the other's internals.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from ..client import MobilgroupClient, shared_client
from ..errors import ConfigurationError, MobilgroupError, UnknownRequestId, Verdict
from ..outgoing import Outgoing
from .models import OutboxMessage
from .settings import current_config

__all__ = ["DEFAULT_STALE_AFTER", "EXPIRED_ERROR", "PAUSED", "SweepResult", "deliver",
           "outgoing_of", "paused_messages", "paused_notice", "settings_client", "sweep"]

logger = logging.getLogger("mobilgroup_backends.django.outbox")

#: How long a row may stay pending before the sweeper sends it itself: long enough for a task
#: backend under load to get to it first, short enough for one-time codes.
DEFAULT_STALE_AFTER = timedelta(minutes=5)
EXPIRED_ERROR = "not sent before not_after"
#: What :func:`deliver` returns when the gateway refused the account: the row stays pending.
PAUSED = "paused"


def settings_client() -> MobilgroupClient:
    """The process's client for the ``MOBILGROUP`` settings (kept between tasks: one keep-alive
    connection per worker process, remade after ``fork``). Do not close it."""
    return shared_client(current_config().settings)


# --- sending one row ------------------------------------------------------------------------


def deliver(pk: int, *, client: MobilgroupClient | None = None) -> str:
    """Send one outbox row if it is still pending and no one else holds it; what became of it.

    Used by the task and by the sweeper. The gateway is called outside any transaction; the
    outcome (and the delivery tracking record) is written in one transaction, and only while
    this run's lease still holds. What a failure does to the row is the error's own
    :attr:`~mobilgroup_backends.errors.MobilgroupError.verdict`, nothing else:

    - ``retry``/``unknown`` (network, timeout, a garbled answer): the row stays pending for the
      next run, which resends it with the same id;
    - ``account`` (errors 3, 4, 5, 9: credentials, a blocked account, no money): the row stays
      pending and :data:`PAUSED` is returned; the outbox's work waits until the account is fixed
      (one log line when the pause begins, a ``manage.py check`` warning while it lasts);
    - ``refused``/``invalid``: marked ``rejected``, never tried again by itself (a wrong setting,
      ``ConfigurationError``, leaves it pending and is raised: fixing the setting mends it).

    Returns the row's state, :data:`PAUSED`, ``"leased"`` (another run holds it) or ``"missing"``.
    """
    if client is None:
        client = settings_client()
    now = timezone.now()
    token = secrets.token_hex(16)
    free = Q(leased_until__isnull=True) | Q(leased_until__lte=now)
    claimed = OutboxMessage.objects.filter(free, pk=pk, state=OutboxMessage.PENDING).update(
        lease_token=token, leased_until=now + _lease(client), attempts=F("attempts") + 1,
        updated_at=now)
    if claimed != 1:
        state = OutboxMessage.objects.filter(pk=pk).values_list("state", flat=True).first()
        return "leased" if state == OutboxMessage.PENDING else str(state or "missing")
    row = OutboxMessage.objects.get(pk=pk)
    if row.not_after is not None and now >= row.not_after:
        return _expire(client, row, token)
    try:
        client.send_prepared(outgoing_of(row, client), resend=True)
    except MobilgroupError as exc:
        return _failed(row, token, exc)
    except BaseException:
        _finish(row, token, OutboxMessage.PENDING, "interrupted")
        raise
    return _accepted(row, token, client)


def outgoing_of(row: OutboxMessage, client: MobilgroupClient) -> Outgoing:
    """The row's request as it goes out: the stored prepared message, as it is. A row written
    by an older version (its send keywords only) is prepared now, under its own id."""
    if row.outgoing is not None:
        return Outgoing.from_dict(row.outgoing)
    return client.prepare(row.phones, row.text, request_id=row.request_id, **row.options)


def _failed(row: OutboxMessage, token: str, exc: MobilgroupError) -> str:
    verdict = exc.verdict
    if verdict is Verdict.ACCOUNT:
        paused_before = paused_messages().exclude(pk=row.pk).exists()
        _finish(row, token, OutboxMessage.PENDING, str(exc), verdict=verdict.value)
        if not paused_before:
            logger.warning("SMS outbox paused: the gateway refuses the account (%s); messages "
                           "stay pending and are sent once it is fixed", exc)
        return PAUSED
    if verdict.try_again:
        logger.warning("SMS request %s not sent yet, left pending: %s", row.request_id, exc)
        _finish(row, token, OutboxMessage.PENDING, str(exc), verdict=verdict.value)
        return OutboxMessage.PENDING
    if isinstance(exc, ConfigurationError):
        _finish(row, token, OutboxMessage.PENDING, str(exc), verdict=verdict.value)
        raise exc
    logger.warning("SMS request %s refused: %s", row.request_id, exc)
    _finish(row, token, OutboxMessage.REJECTED, str(exc), verdict=verdict.value)
    return OutboxMessage.REJECTED


def paused_messages() -> QuerySet[OutboxMessage]:
    """The pending rows waiting for the account to be fixed (the gateway refused it)."""
    paused: QuerySet[OutboxMessage] = OutboxMessage.objects.filter(
        state=OutboxMessage.PENDING, verdict=Verdict.ACCOUNT.value)
    return paused


def _expire(client: MobilgroupClient, row: OutboxMessage, token: str) -> str:
    """Past ``not_after``: never send. But an earlier attempt may have reached the gateway with
    its answer lost; the gateway's status of the request id says whether it did."""
    if row.attempts <= 1:  # this run's claim is the first attempt: nothing went out before
        _finish(row, token, OutboxMessage.EXPIRED, EXPIRED_ERROR)
        return OutboxMessage.EXPIRED
    try:
        client.status(row.request_id, extended=False)
    except UnknownRequestId:
        _finish(row, token, OutboxMessage.EXPIRED, EXPIRED_ERROR)
        return OutboxMessage.EXPIRED
    except MobilgroupError as exc:
        _finish(row, token, OutboxMessage.PENDING, f"past not_after, status unknown: {exc}")
        return OutboxMessage.PENDING
    return _accepted(row, token, client)  # an earlier attempt got it through


def _accepted(row: OutboxMessage, token: str, client: MobilgroupClient) -> str:
    """Record that the gateway has the request, with its tracking record, in one transaction."""
    # One statement needs no transaction of its own.
    with (transaction.atomic(using=router.db_for_write(OutboxMessage)) if row.track_delivery
          else contextlib.nullcontext()):
        if not _finish(row, token, OutboxMessage.ACCEPTED, "", verdict="",
                       accepted_at=timezone.now()):
            # The lease ran out mid-send and another run holds the row: its resend is answered
            # as "accepted earlier" and it records the outcome.
            return OutboxMessage.PENDING
        if row.track_delivery:
            from .tracking import record_sent

            records = record_sent(outgoing_of(row, client), parts=row.parts,
                                  first_part=row.part)
            OutboxMessage.objects.filter(pk=row.pk).update(tracking=records[0])
    if row.verdict == Verdict.ACCOUNT.value:
        # The account works again: the rest of the paused rows are ordinary pending rows.
        resumed = paused_messages().update(verdict="")
        logger.warning("SMS outbox resumed: the gateway accepts the account again; %d paused "
                       "message(s) follow", resumed)
    return OutboxMessage.ACCEPTED


def _lease(client: MobilgroupClient) -> timedelta:
    """Twice the longest one send can take: the claim must outlive the send it covers."""
    return timedelta(seconds=2 * client.longest_call())


def _finish(row: OutboxMessage, token: str, state: str, error: str, **values: Any) -> bool:
    """Write the outcome and release the lease, if the lease is still this run's."""
    written = OutboxMessage.objects.filter(pk=row.pk, lease_token=token).update(
        state=state, last_error=error[:300], lease_token="", leased_until=None,
        updated_at=timezone.now(), **values)
    return int(written) == 1


def paused_notice() -> str | None:
    """One sentence while the outbox is paused (the gateway refused the account), else None:
    what ``manage.py check`` (mobilgroup.W003) and the admin show."""
    last = paused_messages().order_by("-updated_at").values_list("last_error", flat=True).first()
    if last is None:
        return None
    waiting = OutboxMessage.objects.filter(state=OutboxMessage.PENDING).count()
    return (f"The SMS outbox is paused: the gateway refuses the account ({last}); "
            f"{waiting} message(s) wait for it to be fixed.")


# --- the sweeper ----------------------------------------------------------------------------


@dataclass
class SweepResult:
    """What one :func:`sweep` run did: the request ids it sent or tried, by outcome.

    ``paused`` holds the request id the gateway refused the account for (errors 3, 4, 5, 9): the
    sweep stopped there, and ``waiting`` rows were left pending, untried, until it is fixed.
    """

    accepted: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    paused: list[int] = field(default_factory=list)
    waiting: int = 0
    expired: int = 0
    skipped: int = 0

    @property
    def tried(self) -> int:
        return len(self.accepted) + len(self.pending) + len(self.rejected) + len(self.paused)

    def to_dict(self) -> dict[str, Any]:
        """The one JSON shape of a sweep, as ``manage.py mobilgroup outbox --json``, the Django
        task and the Celery task give it."""
        return {"tried": self.tried, "accepted": self.accepted, "pending": self.pending,
                "rejected": self.rejected, "paused": self.paused, "waiting": self.waiting,
                "expired": self.expired, "skipped": self.skipped}

    def summary(self) -> str:
        """One line for people."""
        line = (f"Sent {self.tried} pending message(s): {len(self.accepted)} accepted, "
                f"{len(self.pending)} still pending, {len(self.rejected)} rejected; "
                f"{self.expired} expired.")
        if self.paused:
            line += (f" Paused: the gateway refuses the account; {self.waiting + len(self.paused)}"
                     " message(s) wait until it is fixed.")
        return line


def sweep(*, stale_after: timedelta = DEFAULT_STALE_AFTER, limit: int | None = None,
          concurrency: int = 1, client: MobilgroupClient | None = None) -> SweepResult:
    """Send, here and now, every row left pending longer than ``stale_after``; expire the rows
    past their ``not_after``.

    This is what recovers a lost enqueue, a task backend that never ran the task, and a worker
    killed mid-send, whatever task backend is used. Rows a task holds (an unexpired lease) are
    left to it. ``concurrency`` threads send at once (each with its own database connection),
    over the one client's pooled connections. When the gateway refuses the account, the sweep
    stops: the rows not tried yet wait (``waiting``) for a later sweep, and each sweep while the
    account is refused costs one request.
    """
    if client is None:
        client = settings_client()
    now = timezone.now()
    free = Q(leased_until__isnull=True) | Q(leased_until__lte=now)
    pending = OutboxMessage.objects.filter(free, state=OutboxMessage.PENDING)
    result = SweepResult()
    # Never tried: expired at once. Tried before: deliver() asks the gateway whether it has it.
    result.expired = pending.filter(not_after__lte=now, attempts=0).update(
        state=OutboxMessage.EXPIRED, last_error=EXPIRED_ERROR, updated_at=now)
    due = Q(updated_at__lte=now - stale_after) | Q(not_after__lte=now)
    stale = list(pending.filter(due).order_by("updated_at")
                 .values_list("pk", "request_id")[:limit])
    stop = threading.Event()
    if concurrency <= 1 or len(stale) <= 1:
        outcomes = _deliver_share(stale, client, stop, own_thread=False)
    else:
        shares = [stale[n::concurrency] for n in range(min(concurrency, len(stale)))]
        with ThreadPoolExecutor(len(shares), thread_name_prefix="mobilgroup-sweep") as pool:
            runs = [pool.submit(_deliver_share, share, client, stop) for share in shares]
            outcomes = [outcome for run in runs for outcome in run.result()]
    lists = {OutboxMessage.ACCEPTED: result.accepted, OutboxMessage.PENDING: result.pending,
             OutboxMessage.REJECTED: result.rejected, PAUSED: result.paused}
    for request_id, outcome in outcomes:
        if outcome in lists:
            lists[outcome].append(request_id)
        elif outcome == OutboxMessage.EXPIRED:
            result.expired += 1
        else:
            result.skipped += 1  # a task got to it first
    result.waiting = len(stale) - len(outcomes)
    return result


def _deliver_share(rows: list[tuple[int, int]], client: MobilgroupClient, stop: threading.Event,
                   *, own_thread: bool = True) -> list[tuple[int, str]]:
    """Deliver ``rows`` in order until one finds the account refused (``stop`` tells the other
    threads too)."""
    outcomes: list[tuple[int, str]] = []
    try:
        for pk, request_id in rows:
            if stop.is_set():
                break
            outcome = deliver(pk, client=client)
            outcomes.append((request_id, outcome))
            if outcome == PAUSED:
                stop.set()
        return outcomes
    finally:
        if own_thread:
            connections.close_all()  # this thread's own connections
