"""Tasks for Django's Tasks framework: ``django.tasks`` on Django 6.x, the ``django-tasks``
backport on 5.2 (installed with the ``django`` extra).

- :func:`send_outboxed` sends one outbox row (``outbox.enqueue`` queues it on commit);
- :func:`track_due` asks for the delivery reports that are due (the same job as Celery's
  ``mobilgroup.track_due``): schedule it every few minutes with whatever runs periodic jobs.

Both take and return JSON values only, so any task backend can store them. They run on the
``default`` task backend. Neither retries by itself (Django's Tasks framework has no retries):
a send that failed for a reason another attempt may mend stays pending, and the sweeper
(``manage.py mobilgroup outbox``) sends it later with the same request id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.tasks import task
else:
    try:
        from django.tasks import task
    except ImportError:  # Django < 6.0: the backport
        from django_tasks import task

__all__ = ["send_outboxed", "track_due"]


@task
def send_outboxed(pk: int) -> str:
    """Send the outbox row ``pk`` (if still pending and free); its state afterwards."""
    from .outbox import deliver

    return deliver(pk)


@task
def track_due(limit: int | None = None) -> dict[str, Any]:
    """Fetch and record the delivery reports that are due; counts of what was done."""
    from .tracking import track
    from .workers import worker_client

    result = track(worker_client(), limit=limit)
    return {"polled": len(result.polled), "complete": result.complete,
            "pending": result.pending, "expired": result.expired, "unknown": result.unknown,
            "failed": result.failed, "changed": result.changed}
