"""Helpers shared by the Django adapter's tests (plain functions, no fixtures)."""

from __future__ import annotations

import os
from typing import Any

from mobilgroup_backends.emulator import Emulator

ENV_NAMES = ("MOBILGROUP_URL", "MOBILGROUP_USER_ID", "MOBILGROUP_LOGIN", "MOBILGROUP_PASSWORD",
             "MOBILGROUP_SENDER", "MOBILGROUP_ENDPOINT")


def clean_environment() -> dict[str, str]:
    """Remove MOBILGROUP_* variables from os.environ; returns what was removed."""
    return {name: os.environ.pop(name) for name in ENV_NAMES if name in os.environ}


def gateway_settings(emulator: Emulator, **extra: Any) -> dict[str, Any]:
    """A MOBILGROUP setting pointing at the emulator, with fast retries."""
    return {"URL": emulator.url(), "RETRIES": 1, "BACKOFF": 0.01, "TIMEOUT": 5, **extra}


class Message:
    """A message object with django-sms's attribute names, for backend-level tests."""

    def __init__(self, body: str, recipients: list[str], originator: str | None = None) -> None:
        self.body = body
        self.recipients = recipients
        self.originator = originator
