"""Signals of the Django adapter.

``pre_send(sender=backend class, message, backend)``
    Before a message is sent. A receiver may change ``message.body`` or its recipients, or raise
    :class:`CancelSend` to drop the message (its status becomes ``"cancelled"``; it is not counted
    as sent and no error is raised).

``post_send(sender=backend class, message, status, backend)``
    After every message that was not cancelled, whatever the outcome: ``status`` is the
    message's :class:`~mobilgroup_backends.django.backend.MobilgroupStatus` (``status.status`` is
    ``"queued"``, ``"failed"`` or ``"rejected"``).

``delivery_status(sender=SmsRecipient, recipient, request_id, phone, status, previous, time)``
    From delivery tracking (``manage.py mobilgroup track``), once for every recipient whose
    status changed. ``status`` and ``previous`` are
    :class:`~mobilgroup_backends.protocol.DeliveryStatus` values; ``time`` is when the gateway
    says the status changed (or None); ``recipient`` is the updated model row.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["CancelSend", "code_refused", "delivery_status", "post_send", "pre_send"]

pre_send = Signal()
post_send = Signal()
delivery_status = Signal()


class CancelSend(Exception):
    """Raise from a ``pre_send`` receiver to drop the message without an error."""

#: ``code_refused(sender=CodeRefused, phone, reason, purpose, error)``: the toll-fraud guard
#: refused a one-time code (see :mod:`mobilgroup_backends.django.guard`); nothing was sent.
code_refused = Signal()
