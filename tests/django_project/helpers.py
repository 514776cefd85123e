"""Helpers shared by the Django adapter's tests (plain functions, no fixtures)."""

from __future__ import annotations

import _thread
import threading
import time
from io import StringIO
from typing import Any

from django.core.management import call_command

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


def run_loop(*args: str, passes: int = 3, timeout: float = 30.0) -> list[str]:
    """``manage.py mobilgroup ARGS --loop --interval 0.2``, stopped with Ctrl-C once it has
    printed ``passes`` lines (or after ``timeout`` seconds): its lines."""
    out = StringIO()
    running = threading.Event()

    def stop_after_passes() -> None:
        deadline = time.monotonic() + timeout
        while running.is_set() and out.getvalue().count("\n") < passes:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if running.is_set():
            _thread.interrupt_main()

    running.set()
    watcher = threading.Thread(target=stop_after_passes, daemon=True)
    watcher.start()
    try:
        call_command("mobilgroup", *args, "--loop", "--interval", "0.2", stdout=out)
    finally:
        running.clear()
        watcher.join(5)
    return out.getvalue().splitlines()
