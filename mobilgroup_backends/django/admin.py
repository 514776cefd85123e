"""A read-only admin for the outbox and the delivery tracking records, filtered by state and
date; rejected or expired outbox messages can be queued again."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.text import Truncator

from .models import OutboxMessage, SmsRecipient, SmsRequest

#: Characters of a text or an error shown in a list; the row's own page shows all of it.
_SHOWN_CHARACTERS = 40


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SmsRecipientInline(_ReadOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = SmsRecipient
    fields = ("phone", "status", "status_time", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(SmsRequest)
class SmsRequestAdmin(_ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("request_id", "sent_at", "report_due_at", "state", "mailing_status",
                    "recipient_count", "polls", "last_error")
    list_filter = ("state", "recipients__status", "sent_at", "report_due_at")
    date_hierarchy = "sent_at"
    search_fields = ("=request_id", "recipients__phone")
    readonly_fields = ("request_id", "sender", "text_length", "part", "parts", "valid_hours",
                       "sent_at", "report_due_at", "state", "mailing_status", "polls",
                       "last_polled_at", "last_error", "claimed_until")
    exclude = ("claim_token",)
    inlines = (SmsRecipientInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SmsRequest]:
        queryset: QuerySet[SmsRequest] = super().get_queryset(request)
        annotated: QuerySet[SmsRequest] = queryset.annotate(_recipients=Count("recipients"))
        return annotated

    @admin.display(description="recipients", ordering="_recipients")
    def recipient_count(self, obj: SmsRequest) -> int:
        return int(getattr(obj, "_recipients", 0))


@admin.register(SmsRecipient)
class SmsRecipientAdmin(_ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("phone", "status", "status_time", "request", "updated_at")
    list_filter = ("status", "status_time", "updated_at")
    date_hierarchy = "updated_at"
    search_fields = ("phone", "=request__request_id")
    list_select_related = ("request",)
    readonly_fields = ("request", "phone", "status", "status_time", "updated_at")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(_ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    # What tells one row from another (to whom, what), the rest shortened: the list fits a
    # 1280 px screen beside the filters. Every field is whole on the row's own page.
    list_display = ("request_id", "state", "recipients", "text_start", "created_at", "attempts",
                    "error_start")
    list_filter = ("state", "created_at", "accepted_at")
    date_hierarchy = "created_at"
    search_fields = ("=request_id", "text")
    readonly_fields = ("request_id", "phones", "text", "options", "part", "parts",
                       "track_delivery", "state", "attempts", "last_error", "not_after",
                       "leased_until", "created_at", "updated_at", "accepted_at", "tracking")
    exclude = ("lease_token",)
    actions = ("queue_again",)

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from django.contrib import messages

        from .checks import PAUSED_HINT
        from .dispatch import paused_notice

        notice = paused_notice()
        if notice is not None:
            self.message_user(request, f"{notice} {PAUSED_HINT}", level=messages.WARNING)
        return super().changelist_view(request, extra_context)

    @admin.display(description="to")
    def recipients(self, row: OutboxMessage) -> str:
        phones = list(row.phones or ())
        more = f" +{len(phones) - 1}" if len(phones) > 1 else ""
        return f"{phones[0]}{more}" if phones else ""

    @admin.display(description="text", ordering="text")
    def text_start(self, row: OutboxMessage) -> str:
        return Truncator(row.text).chars(_SHOWN_CHARACTERS)

    @admin.display(description="last error", ordering="last_error")
    def error_start(self, row: OutboxMessage) -> str:
        return Truncator(row.last_error).chars(_SHOWN_CHARACTERS)

    @admin.action(description="Queue the selected rejected or expired messages again")
    def queue_again(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        from .outbox import requeue

        count = requeue(queryset)
        self.message_user(request, f"{count} message(s) queued again.")
