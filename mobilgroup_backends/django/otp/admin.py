"""The admin of SMS devices (registered when ``django.contrib.admin`` is installed)."""

from __future__ import annotations

import contextlib

from django.contrib import admin
from django.contrib.admin.exceptions import AlreadyRegistered

from .models import SmsDevice


class SmsDeviceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("user", "name", "number", "confirmed")
    list_filter = ("confirmed",)
    raw_id_fields = ("user",)
    search_fields = ("name", "number")
    # The pending token is a secret of its owner, not something for staff to read.
    exclude = ("token",)
    readonly_fields = ("valid_until", "throttling_failure_timestamp", "throttling_failure_count")


# Imported twice when a project's own admin module imports it too.
with contextlib.suppress(AlreadyRegistered):
    admin.site.register(SmsDevice, SmsDeviceAdmin)
