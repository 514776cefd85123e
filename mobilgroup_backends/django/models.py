"""The app's records: the durable outbox and delivery tracking.

One :class:`OutboxMessage` per gateway request queued with ``outbox.enqueue`` (or the
``QueuedSmsBackend``), sent by a task or the sweeper; see ``outbox.py``.

Delivery tracking (``MOBILGROUP = {..., "TRACK_DELIVERY": True}``): one :class:`SmsRequest` per
request the gateway accepted, one :class:`SmsRecipient` per phone of it. ``manage.py mobilgroup
track`` fills in the statuses once the reports are due; see ``tracking.py`` for how several hosts
share that work without polling a request twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.db import models
from django.db.models import Q

from ..protocol import DeliveryStatus

__all__ = ["OutboxMessage", "SmsRecipient", "SmsRequest"]

DELIVERY_CHOICES = [(int(status), status.name.lower()) for status in DeliveryStatus]


class SmsRequest(models.Model):
    """One request the gateway accepted: one text (or one part of a split text) to its phones."""

    PENDING, COMPLETE, EXPIRED, UNKNOWN = "pending", "complete", "expired", "unknown"
    STATES = (
        (PENDING, "pending"),
        (COMPLETE, "complete"),
        (EXPIRED, "expired (gave up waiting for a final report)"),
        (UNKNOWN, "unknown to the gateway"),
    )

    request_id: models.BigIntegerField[Any, int] = models.BigIntegerField(unique=True)
    sender: models.CharField[Any, str] = models.CharField(max_length=9, blank=True)
    text_length: models.PositiveIntegerField[Any, int] = models.PositiveIntegerField()
    part: models.PositiveSmallIntegerField[Any, int] = models.PositiveSmallIntegerField(default=1)
    parts: models.PositiveSmallIntegerField[Any, int] = models.PositiveSmallIntegerField(default=1)
    valid_hours: models.PositiveSmallIntegerField[Any, int] = models.PositiveSmallIntegerField(
        help_text="message lifetime in hours; the report is asked for once it has run out")
    sent_at: models.DateTimeField[Any, datetime] = models.DateTimeField(db_index=True)
    report_due_at: models.DateTimeField[Any, datetime] = models.DateTimeField()
    state: models.CharField[Any, str] = models.CharField(max_length=10, choices=STATES, default=PENDING)
    mailing_status: models.SmallIntegerField[Any, int | None] = models.SmallIntegerField(
        null=True, blank=True)
    polls: models.PositiveIntegerField[Any, int] = models.PositiveIntegerField(default=0)
    last_polled_at: models.DateTimeField[Any, datetime | None] = models.DateTimeField(null=True, blank=True)
    last_error: models.CharField[Any, str] = models.CharField(max_length=300, blank=True)
    claimed_until: models.DateTimeField[Any, datetime | None] = models.DateTimeField(null=True, blank=True)
    claim_token: models.CharField[Any, str] = models.CharField(max_length=32, blank=True)

    objects: ClassVar[models.Manager[SmsRequest]] = models.Manager()

    class Meta:
        verbose_name = "SMS request"
        verbose_name_plural = "SMS requests"
        ordering = ("-sent_at",)
        # Only pending requests are ever looked up by due time: the index stays as small as the
        # backlog, however many completed requests accumulate.
        indexes = (models.Index(fields=("report_due_at",), condition=Q(state="pending"),
                                name="mobilgroup_due_pending_idx"),)

    def __str__(self) -> str:
        return f"request {self.request_id}"


class SmsRecipient(models.Model):
    """One phone of a request and its latest delivery status."""

    request: models.ForeignKey[Any, SmsRequest] = models.ForeignKey(
        SmsRequest, on_delete=models.CASCADE, related_name="recipients")
    phone: models.CharField[Any, str] = models.CharField(max_length=15)
    status: models.SmallIntegerField[Any, int] = models.SmallIntegerField(
        choices=DELIVERY_CHOICES, default=int(DeliveryStatus.QUEUED))
    status_time: models.DateTimeField[Any, datetime | None] = models.DateTimeField(
        null=True, blank=True, help_text="when the gateway says the status last changed")
    updated_at: models.DateTimeField[Any, datetime] = models.DateTimeField(auto_now=True)

    objects: ClassVar[models.Manager[SmsRecipient]] = models.Manager()

    class Meta:
        verbose_name = "SMS recipient"
        verbose_name_plural = "SMS recipients"
        ordering = ("request", "phone")
        constraints = (models.UniqueConstraint(fields=("request", "phone"),
                                               name="mobilgroup_recipient_unique"),)

    def __str__(self) -> str:
        return f"{self.phone}: {self.delivery_status.name.lower()}"

    @property
    def delivery_status(self) -> DeliveryStatus:
        """The status as an enum (an undocumented code is kept as ``UNKNOWN_<code>``)."""
        return DeliveryStatus(self.status)


class OutboxMessage(models.Model):
    """One gateway request waiting to be sent, or what became of it (a split text is one row per
    part).

    ``outgoing`` is the request as the core prepared it (every setting applied, the phones
    normalised, the part's text and request id), sent as it is; ``phones`` and ``text`` repeat
    it for the admin and for searching. ``request_id`` is minted when the row is written, before
    anything is queued, and every attempt sends with it (``resend=True``): whoever runs the send
    again, a task backend after a crash or the sweeper, the gateway sees the same id and a copy
    is answered with error 7 instead of going out twice.
    """

    PENDING, ACCEPTED, REJECTED, EXPIRED = "pending", "accepted", "rejected", "expired"
    STATES = (
        (PENDING, "pending"),
        (ACCEPTED, "accepted by the gateway"),
        (REJECTED, "refused (by the gateway, or as invalid)"),
        (EXPIRED, "expired before it could be sent"),
    )

    request_id: models.BigIntegerField[Any, int] = models.BigIntegerField(unique=True)
    phones: models.JSONField[Any, list[str]] = models.JSONField(
        help_text="the recipients, checked and normalised when queued")
    text: models.TextField[Any, str] = models.TextField()
    options: models.JSONField[Any, dict[str, Any]] = models.JSONField(
        default=dict, blank=True,
        help_text="rows written before the prepared message was stored: the send's keywords")
    outgoing: models.JSONField[Any, dict[str, Any] | None] = models.JSONField(
        null=True, blank=True,
        help_text="the prepared request, exactly as it is sent (Outgoing.to_dict(): one part)")
    part: models.PositiveSmallIntegerField[Any, int] = models.PositiveSmallIntegerField(default=1)
    parts: models.PositiveSmallIntegerField[Any, int] = models.PositiveSmallIntegerField(default=1)
    track_delivery: models.BooleanField[Any, bool] = models.BooleanField(default=False)
    state: models.CharField[Any, str] = models.CharField(max_length=10, choices=STATES,
                                                         default=PENDING)
    attempts: models.PositiveIntegerField[Any, int] = models.PositiveIntegerField(default=0)
    last_error: models.CharField[Any, str] = models.CharField(max_length=300, blank=True)
    verdict: models.CharField[Any, str] = models.CharField(
        max_length=10, blank=True,
        help_text="the verdict on the last failure (see errors.Verdict); 'account' while the "
                  "gateway refuses the account and the row waits for it to be fixed")
    not_after: models.DateTimeField[Any, datetime | None] = models.DateTimeField(
        null=True, blank=True, help_text="not sent after this moment (state expired instead)")
    lease_token: models.CharField[Any, str] = models.CharField(max_length=32, blank=True)
    leased_until: models.DateTimeField[Any, datetime | None] = models.DateTimeField(
        null=True, blank=True)
    created_at: models.DateTimeField[Any, datetime] = models.DateTimeField(auto_now_add=True)
    updated_at: models.DateTimeField[Any, datetime] = models.DateTimeField(auto_now=True)
    accepted_at: models.DateTimeField[Any, datetime | None] = models.DateTimeField(
        null=True, blank=True)
    tracking: models.OneToOneField[Any, SmsRequest | None] = models.OneToOneField(
        SmsRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbox",
        help_text="the delivery tracking record, once accepted (TRACK_DELIVERY)")

    objects: ClassVar[models.Manager[OutboxMessage]] = models.Manager()

    class Meta:
        verbose_name = "outbox message"
        verbose_name_plural = "outbox messages"
        ordering = ("-created_at",)
        # The sweeper looks for pending rows untouched for a while; finished rows never enter it.
        indexes = (models.Index(fields=("updated_at",), condition=Q(state="pending"),
                                name="mobilgroup_outbox_pending_idx"),)

    def __str__(self) -> str:
        return f"outbox request {self.request_id} ({self.state})"
