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
(``manage.py mobilgroup outbox``) sends it with the same request id.
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
    """Send the outbox row ``pk`` (if still pending and free); its state afterwards."""
    from .dispatch import deliver
    from .models import OutboxMessage

    state = deliver(pk)
    if state == OutboxMessage.PENDING:
        _try_again_later(pk)
    return state


@task
def send_outboxed_batch(pks: list[int]) -> dict[str, int]:
    """Send the outbox rows ``pks`` one after the other, each as :func:`send_outboxed` would;
    how many ended in each state.

    ``outbox.enqueue`` queues the rows of one transaction this way, ``MOBILGROUP['OUTBOX_BATCH']``
    rows per task: the task backend's cost of one task (its row, its claim, its result) is paid
    once for them all. Each row is claimed on its own just before it is sent, so a worker killed
    mid-batch leaves the rest pending for the sweeper, and another runner never waits on them.
    """
    from .dispatch import deliver, settings_client
    from .models import OutboxMessage

    client = settings_client()
    states: dict[str, int] = {}
    for pk in pks:
        state = deliver(pk, client=client)
        if state == OutboxMessage.PENDING:
            _try_again_later(pk)
        states[state] = states.get(state, 0) + 1
    return states


def _try_again_later(pk: int) -> None:
    from django.utils import timezone

    from ..client import backoff_delay
    from .models import OutboxMessage

    if not send_outboxed.get_backend().supports_defer:
        return
    attempts = OutboxMessage.objects.filter(pk=pk).values_list("attempts", flat=True).first()
    if attempts is None or attempts >= TASK_ATTEMPTS:
        return
    delay = backoff_delay(TASK_BACKOFF, attempts, cap=300.0)
    send_outboxed.using(run_after=timezone.now() + timedelta(seconds=delay)).enqueue(pk)


@task
def track_due(limit: int | None = None) -> dict[str, Any]:
    """Fetch and record the delivery reports that are due; counts of what was done."""
    from .dispatch import settings_client
    from .tracking import track

    result = track(settings_client(), limit=limit)
    return {"polled": len(result.polled), "complete": result.complete,
            "pending": result.pending, "expired": result.expired, "unknown": result.unknown,
            "failed": result.failed, "changed": result.changed}
