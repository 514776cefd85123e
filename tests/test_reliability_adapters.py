"""Exactly once under faults through the adapters: the Django backend and the logging handler
(the Apprise plugin's run is in ``test_reliability_apprise.py``).

The emulator breaks 20% of the exchanges (seeded); each adapter runs with the client's retries
and a timeout shorter than the delay fault. Afterwards the outbox is audited against what each
adapter reported: nothing delivered twice, nothing lost, every failure reported.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import MobilgroupError
from tests.helpers import FAULT_KINDS

PHONE = "79031234567"


@pytest.fixture
def faulty(mobilgroup_emulator: Emulator, no_mobilgroup_environment: None) -> Iterator[Emulator]:
    mobilgroup_emulator.account.balance = Decimal(10**6)
    yield mobilgroup_emulator
    mobilgroup_emulator.faults.clear()


class _Message:
    """A message with django-sms's attribute names."""

    def __init__(self, body: str, recipients: list[str]) -> None:
        self.body = body
        self.recipients = recipients
        self.originator: str | None = None


def test_django_backend_exactly_once_under_faults(faulty: Emulator, settings: Any) -> None:
    from mobilgroup_backends.django import SmsBackend

    settings.MOBILGROUP = {"URL": faulty.url(), "RETRIES": 3, "BACKOFF": 0.001, "TIMEOUT": 0.2}
    messages = [_Message(f"Django order {i} is ready", [f"7903{i:07d}"]) for i in range(150)]
    faulty.faults.random(0.2, seed=11, kinds=FAULT_KINDS, seconds=0.5)
    started = time.monotonic()
    with SmsBackend(fail_silently=True) as backend:
        sent = backend.send_messages(messages)
    assert time.monotonic() - started < 20
    faulty.faults.clear()
    assert sum(faulty.faults.injected.values()) >= 20

    outbox = faulty.outbox.snapshot()
    by_id = Counter(m.request_id for m in outbox)
    by_text = Counter(m.text for m in outbox)
    assert max(by_id.values()) == 1 and max(by_text.values()) == 1  # nothing twice
    statuses = [m.mobilgroup_status for m in messages]
    assert sent == sum(s.status == "queued" for s in statuses)
    for message, status in zip(messages, statuses, strict=True):
        assert status.status in ("queued", "failed")  # every message has an outcome
        if status.status == "queued":
            assert by_id[status.request_id] == 1  # accepted and in the outbox: not lost
            [delivered] = [m for m in outbox if m.request_id == status.request_id]
            assert delivered.text == message.body
        else:
            assert isinstance(status.error, MobilgroupError)
    assert sent >= 145  # 0.2 ** 4 per message: a failure after every retry is rare


def test_logging_handler_exactly_once_under_faults(faulty: Emulator) -> None:
    from mobilgroup_backends.logging import SmsHandler

    handler = SmsHandler(url=faulty.url(PHONE), max_sms=10_000, per_seconds=1, dedupe_seconds=0,
                         timeout=0.2, retries=3, failure_backoff=0.01, flush_timeout=60)
    logger = logging.getLogger(f"reliability.faults.{os.getpid()}.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    faulty.faults.random(0.2, seed=5, kinds=FAULT_KINDS, seconds=0.5)
    try:
        started = time.perf_counter()
        for i in range(100):
            logger.critical("alert %d: payments down", i)
        caller_time = time.perf_counter() - started
        handler.flush()
        faulty.faults.clear()
        handler.close()
    finally:
        logger.removeHandler(handler)
        faulty.faults.clear()
    assert caller_time < 0.5  # the caller never waits for the network, faults or not
    assert sum(faulty.faults.injected.values()) >= 15

    texts = [m.text for m in faulty.outbox.snapshot()]
    assert max(Counter(texts).values()) == 1
    single = [int(found.group(1)) for text in texts
              if not text.startswith("+") and (found := re.search(r"alert (\d+):", text))]
    summaries = [int(found.group(1)) for text in texts if (found := re.match(r"\+(\d+) more", text))]
    assert len(single) == len(set(single))  # no record delivered twice
    stats = handler.stats
    assert stats.sent == len(texts) and stats.summaries == len(summaries)
    # Every record went out on its own, or is counted in a summary that went out: none lost.
    assert len(single) + sum(summaries) == 100
    assert stats.dropped == stats.suppressed == stats.deduplicated == 0
    assert len(single) >= 90
