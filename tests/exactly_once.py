"""The exactly-once matrix: every sending path x every fault point, against the emulator over TLS.

A cell injects one fault on the first exchange, sends one message through one path, and then
holds the path to its promise: the emulator's outbox has the message exactly once, or the caller
was told (an error with ``maybe_sent`` and the request id) and a resend of that id with
``resend=True`` puts it there exactly once. Used by ``tests/test_exactly_once.py`` and by
``bench/faults.py --matrix``.

The Django paths need Django's settings configured (pytest-django does it for the tests; the
benchmark configures a minimal set).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mobilgroup_backends import MobilgroupClient, SendResult
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import MobilgroupError

PHONE = "79031234567"
#: Small timeouts and backoff keep the whole matrix within seconds.
TIMEOUT, RETRIES, BACKOFF = 0.5, 1, 0.02
RESTART_SECONDS = 0.5

#: Fault points: the emulator's fault kind and its parameters, inflicted on the first exchange.
FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "closed-before-read": ("close_before", {}),
    "closed-after-processing": ("close_after", {}),
    "http-500": ("http_500", {}),
    "slower-than-timeout": ("delay", {"seconds": TIMEOUT + 0.4}),
    "tls-record-corrupted": ("tls_corrupt_after", {}),
    "refused-on-last-attempt": ("restart", {"seconds": RESTART_SECONDS}),
    "headers-trickled": ("trickle_headers", {"interval": 0.1}),
}


@dataclass
class Cell:
    """What one cell saw: how the caller was told, and how many copies the outbox holds."""

    path: str
    fault: str
    told: str  # "sent", "sent (accepted earlier)", "maybe_sent -> resent", "not sent -> resent"
    copies: dict[str, int]
    parts: int = 1

    @property
    def exactly_once(self) -> bool:
        """Each part in the outbox once, and nothing else there (no second copy in disguise)."""
        return len(self.copies) == self.parts and all(n == 1 for n in self.copies.values())


def _options(gateway: Emulator, *phones: str, **extra: object) -> str:
    return gateway.url(*phones, timeout=TIMEOUT, retries=RETRIES, backoff=BACKOFF, **extra)


def _resend(send: Callable[[], Any], deadline: float) -> Any:
    """Resend until the gateway is back (a restart refuses connections for a while)."""
    while True:
        try:
            return send()
        except MobilgroupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _told(error: MobilgroupError) -> str:
    assert error.request_id is not None, f"{error!r} names no request id"
    return "maybe_sent -> resent" if error.maybe_sent else "not sent -> resent"


def _client_send(gateway: Emulator, text: str) -> str:
    with MobilgroupClient.from_url(_options(gateway)) as client:
        try:
            result = client.send(PHONE, text)
        except MobilgroupError as exc:
            rid = exc.request_id
            _resend(lambda: client.send(PHONE, text, request_id=rid, resend=True),
                    time.monotonic() + 5)
            return _told(exc)
    return "sent (accepted earlier)" if result.accepted_earlier else "sent"


def _send_many(gateway: Emulator, text: str) -> str:
    with MobilgroupClient.from_url(_options(gateway)) as client:
        (outcome,) = client.send_many([(PHONE, text)])
        if isinstance(outcome, MobilgroupError):
            rid = outcome.request_id
            _resend(lambda: client.send(PHONE, text, request_id=rid, resend=True),
                    time.monotonic() + 5)
            return _told(outcome)
    assert isinstance(outcome, SendResult)
    return "sent (accepted earlier)" if outcome.accepted_earlier else "sent"


class _Message:
    def __init__(self, body: str) -> None:
        self.body = body
        self.recipients = [PHONE]
        self.originator = None


def _django(gateway: Emulator, text: str) -> str:
    from mobilgroup_backends.django import SmsBackend

    backend = SmsBackend(url=_options(gateway))  # a long text is split by default
    message = _Message(text)
    try:
        backend.send_messages([message])
    except MobilgroupError as exc:
        # The application sends the same message object again: only what was not accepted goes.
        _resend(lambda: backend.send_messages([message]), time.monotonic() + 5)
        return _told(exc)
    return "sent"


def _apprise(gateway: Emulator, text: str) -> str:
    import apprise

    import mobilgroup_backends.apprise  # noqa: F401  registers mobilgroup://

    alerts = apprise.Apprise()
    # Apprise's own retry, after the gateway's restart: it resends the same id.
    assert alerts.add(_options(gateway, PHONE, retry=2, wait=RESTART_SECONDS + 0.2))
    assert alerts.notify(body=text), "Apprise gave up"
    return "notify() True (a retry resends the same id)"


def _logging(gateway: Emulator, text: str) -> str:
    from mobilgroup_backends.logging import SmsHandler

    handler = SmsHandler(url=_options(gateway, PHONE), failure_backoff=0.1, dedupe_seconds=0)
    logger = logging.getLogger(f"exactly-once.{id(handler):x}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.critical(text)
        deadline = time.monotonic() + 5
        while handler.stats.sent < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        logger.removeHandler(handler)
        handler.close()
    return "logged (a resend reuses the id)"


PATHS: dict[str, Callable[[Emulator, str], str]] = {
    "client.send": _client_send,
    "send_many": _send_many,
    "django": _django,
    "django-split": _django,
    "apprise": _apprise,
    "logging": _logging,
}

LONG_TEXT = " ".join(f"part{n:02d}" for n in range(30))  # 209 characters: two SMS


def run_cell(gateway: Emulator, path: str, fault: str) -> Cell:
    """One cell of the matrix on a running emulator with an empty outbox."""
    kind, params = FAULTS[fault]
    text = LONG_TEXT if path == "django-split" else f"{path} under {fault}"
    gateway.faults.next(kind, **params)
    told = PATHS[path](gateway, text)
    copies: dict[str, int] = {}
    for message in gateway.outbox:
        key = message.text if path != "logging" else message.text.split(": ", 1)[-1]
        copies[key] = copies.get(key, 0) + 1
    return Cell(path, fault, told, copies, parts=2 if path == "django-split" else 1)
