"""``QueuedSmsBackend``: messages go to the outbox in the caller's transaction, and out by a task.

::

    SMS_BACKEND = "mobilgroup_backends.django.QueuedSmsBackend"        # django-sms
    SENDSMS_BACKEND = "mobilgroup_backends.django.QueuedSmsBackend"    # django-sendsms

``send_messages`` returns how many messages were **queued**, not how many the gateway accepted:
the send happens after the transaction commits (see ``outbox.py``). A message sent inside a
transaction that rolls back never goes out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.views.decorators.debug import sensitive_variables

from ..client import shared_client
from ..errors import ConfigurationError, ValidationError
from ..outgoing import Outgoing
from .backend import (
    REJECTED,
    MobilgroupRecipientStatus,
    MobilgroupStatus,
    SmsBackend,
    _body,
    _recipients,
)
from .settings import MobilgroupImproperlyConfigured
from .signals import post_send

__all__ = ["PENDING", "QueuedSmsBackend"]

#: ``message.mobilgroup_status.status`` of a message written to the outbox (the row's state).
PENDING = "pending"


class QueuedSmsBackend(SmsBackend):
    """Queue django-sms and django-sendsms messages in the outbox; a task sends them on commit.

    Takes :class:`SmsBackend`'s keyword arguments, and ``expire_after`` (a ``timedelta`` or
    seconds): a message still unsent that long after it was queued is not sent at all (an
    expired one-time code is worse than none).

    Each message gets ``message.mobilgroup_status`` with status ``"pending"`` and the request
    ids it will be sent with (one per part of a split text); what became of it is on its
    :class:`~mobilgroup_backends.django.models.OutboxMessage` rows. ``pre_send`` may cancel a
    message as with :class:`SmsBackend`; ``post_send`` is sent once it is queued.
    """

    @sensitive_variables()  # kwargs may hold the password
    def __init__(self, fail_silently: bool = False, *, expire_after: timedelta | float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        _require_app()
        if expire_after is not None and not isinstance(expire_after, timedelta):
            expire_after = timedelta(seconds=float(expire_after))
        self.expire_after: timedelta | None = expire_after

    def open(self) -> bool:
        return False  # nothing to open: the database connection is Django's

    def close(self) -> None:
        return None

    def send_messages(self, messages: Sequence[Any] | Iterable[Any]) -> int:
        """Write the messages to the outbox, all with one bulk insert; how many were queued (not
        yet sent). ``pre_send`` is sent for each before anything is written, ``post_send`` for
        each once they are. A message refused here (a malformed phone) is not written; without
        ``fail_silently`` its error is raised once the messages before it are written."""
        config = self.config
        client = shared_client(config.settings)
        batch: list[tuple[Any, MobilgroupStatus, Outgoing]] = []
        queued = 0
        for message in list(messages or ()):
            status = self._begin(message)
            if status is None:
                continue
            try:
                # The core applies every setting (region, sender, long messages...) once; the
                # rows keep what it made, and the worker sends that as it is.
                outgoing = client.prepare(_recipients(message), _body(message),
                                          sender=self.sender_for(message))
            except ConfigurationError as exc:
                raise MobilgroupImproperlyConfigured("MOBILGROUP", str(exc)) from None
            except ValidationError as exc:
                queued += self._write(batch)
                batch = []
                self._failed(message, status, REJECTED, exc, ())
                continue
            batch.append((message, status, outgoing))
        return queued + self._write(batch)

    def _write(self, batch: list[tuple[Any, MobilgroupStatus, Outgoing]]) -> int:
        if not batch:
            return 0
        from .outbox import enqueue_prepared_many

        config = self.config
        written = enqueue_prepared_many([outgoing for _, _, outgoing in batch], config,
                                        not_after=self.expire_after,
                                        track_delivery=config.track_delivery)
        for (message, status, outgoing), rows in zip(batch, written, strict=True):
            status.status = PENDING
            status.outgoing = outgoing
            status.sender = outgoing.sender
            status.parts = len(rows)
            status.request_ids = [row.request_id for row in rows]
            status.request_id = status.request_ids[0]
            status.recipients = {phone: MobilgroupRecipientStatus(status.request_id, PENDING)
                                 for phone in outgoing.phones}
            status.tracked = config.track_delivery
            post_send.send(sender=type(self), message=message, status=status, backend=self)
        return len(batch)


def _require_app() -> None:
    from django.apps import apps

    if not apps.is_installed("mobilgroup_backends.django"):
        raise MobilgroupImproperlyConfigured(
            "SMS_BACKEND",
            "the QueuedSmsBackend keeps messages in the outbox model: add "
            "'mobilgroup_backends.django' to INSTALLED_APPS and run migrate",
            check_id="mobilgroup.E008")
