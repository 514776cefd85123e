"""Helpers shared by the Django adapter's tests (plain functions, no fixtures)."""

from __future__ import annotations

from typing import Any

from mobilgroup_backends.emulator import Emulator


def gateway_settings(emulator: Emulator, **extra: Any) -> dict[str, Any]:
    """A MOBILGROUP setting pointing at the emulator, with fast retries."""
    return {"URL": emulator.url(), "RETRIES": 1, "BACKOFF": 0.01, "TIMEOUT": 5, **extra}


class Message:
    """A message object with django-sms's attribute names, for backend-level tests."""

    def __init__(self, body: str | bytes, recipients: list[str],
                 originator: str | None = None) -> None:
        self.body = body
        self.recipients = recipients
        self.originator = originator
