"""Tasks for Django's Tasks framework: ``django.tasks`` on Django 6.x, the ``django-tasks``
backport on 5.2 (installed with the ``django`` extra).

- :func:`send_outboxed` sends one outbox row, :func:`send_outboxed_batch` several
  (``outbox.enqueue`` queues the rows of a transaction on commit, in batches);
- :func:`track_due` asks for the delivery reports that are due (the same job as Celery's
  ``mobilgroup.track_due``): schedule it every few minutes with whatever runs periodic jobs.

All take and return JSON values only, so any task backend can store them. They run on the
``default`` task backend. Django's Tasks framework has no retries: a send that failed for a
reason another attempt may mend stays pending, and ``send_outboxed`` queues itself again with a
growing delay (the core's backoff) when the backend can run a task later, up to
:data:`TASK_ATTEMPTS` attempts; past those, and on backends that cannot defer, the sweeper
(``manage.py mobilgroup outbox``) sends it with the same request id. A row the gateway refused
the account for (``"paused"``) is queued again the same way, with the rest of its batch, however
many attempts it had: the pause ends when the account is fixed.

The tasks use ``dispatch.py`` (sending a row); ``outbox.py`` (writing rows, queueing them at
commit) uses the tasks. Nothing imports back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.tasks import task
else:
    try:
        from django.tasks import task
    except ImportError:  # Django < 6.0: the backport
        from django_tasks import task

__all__ = ["TASK_ATTEMPTS", "TASK_BACKOFF", "send_outboxed", "send_outboxed_batch", "track_due"]

#: Attempts of one row made by tasks before it is left to the sweeper.
TASK_ATTEMPTS = 5
#: The first pause before a task tries a row again (doubled each time, at most 5 minutes).
TASK_BACKOFF = 10.0


@task
def send_outboxed(pk: int) -> str:
    """Send the outbox row ``pk`` (if still pending and free); what became of it (its state, or
    ``"paused"`` when the gateway refused the account: the row stays pending)."""
    from .dispatch import deliver

    outcome = deliver(pk)
    _try_again_later([pk], outcome)
    return outcome


@task
def send_outboxed_batch(pks: list[int]) -> dict[str, int]:
    """Send the outbox rows ``pks`` one after the other, each as :func:`send_outboxed` would;
    how many ended in each state.

    ``outbox.enqueue`` queues the rows of one transaction this way, ``MOBILGROUP['OUTBOX_BATCH']``
    rows per task: the task backend's cost of one task (its row, its claim, its result) is paid
    once for them all. Each row is claimed on its own just before it is sent, so a worker killed
    mid-batch leaves the rest pending for the sweeper, and another runner never waits on them.
    When the gateway refuses the account, the rest of the batch is not tried (``"waiting"``):
    it is queued again, later, with the paused row.
    """
    from .dispatch import PAUSED, deliver, settings_client

    client = settings_client()
    outcomes: dict[str, int] = {}
    for number, pk in enumerate(pks):
        outcome = deliver(pk, client=client)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome == PAUSED:
            rest = pks[number + 1:]
            if rest:
                outcomes["waiting"] = len(rest)
            _try_again_later([pk, *rest], outcome)
            break
        _try_again_later([pk], outcome)
    return outcomes


def _try_again_later(pks: list[int], outcome: str) -> None:
    """Queue rows left pending again, after the core's backoff, when the backend can run a task
    later. Rows the account refusal paused are tried again however many attempts they had (the
    sweeper's work otherwise); others up to :data:`TASK_ATTEMPTS`."""
    from django.utils import timezone

    from ..client import backoff_delay
    from .dispatch import PAUSED
    from .models import OutboxMessage

    if outcome not in (OutboxMessage.PENDING, PAUSED) or not pks:
        return
    if not send_outboxed.get_backend().supports_defer:
        return
    attempts = OutboxMessage.objects.filter(pk=pks[0]).values_list("attempts", flat=True).first()
    if attempts is None or (outcome != PAUSED and attempts >= TASK_ATTEMPTS):
        return
    delay = backoff_delay(TASK_BACKOFF, attempts, cap=300.0)
    later = timezone.now() + timedelta(seconds=delay)
    if len(pks) == 1:
        send_outboxed.using(run_after=later).enqueue(pks[0])
    else:
        send_outboxed_batch.using(run_after=later).enqueue(pks)


@task
def track_due(limit: int | None = None) -> dict[str, Any]:
    """Fetch and record the delivery reports that are due; what was done, in
    :meth:`~mobilgroup_backends.django.tracking.TrackResult.to_dict`'s shape."""
    from .dispatch import settings_client
    from .tracking import track

    return track(settings_client(), limit=limit).to_dict()
