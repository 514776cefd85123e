"""Exactly once under faults: nothing lost, nothing sent twice, through the real client.

The emulator breaks a seeded share of the exchanges (closed before or after processing, HTTP 500,
an answer later than the client's timeout, garbage); the outbox is audited afterwards. The full
run (5,000 messages) is ``python bench/faults.py``; this is the same code, smaller.
"""

from __future__ import annotations

import time

import pytest

from mobilgroup_backends import MobilgroupClient, SendResult, errors
from mobilgroup_backends.emulator import Emulator
from tests.helpers import FAULT_KINDS, send_under_faults


def test_exactly_once_under_random_faults() -> None:
    started = time.monotonic()
    report = send_under_faults(300, rate=0.2, seed=7, retries=3, timeout=0.2, delay=0.5,
                              concurrency=8)
    assert time.monotonic() - started < 20
    assert report.unexpected == []
    assert sum(report.injected.values()) >= 40  # the faults really happened
    assert all(report.injected[kind] > 0 for kind in FAULT_KINDS)
    assert report.accepted + report.failed_total == 300
    assert report.accepted_earlier > 0  # retries met error 7 and took it as "accepted earlier"
    assert report.duplicate_ids == report.duplicate_texts == 0
    assert report.lost == 0
    assert report.wrongly_not_sent == 0
    # 0.2 ** 4: a message fails only when all four of its exchanges are faulty.
    assert report.failed_total <= 5
    assert set(report.failed) <= {"TransportError", "ProtocolError"}
    assert report.final_lost == report.final_duplicates == 0


def test_every_message_accepted_with_enough_retries() -> None:
    report = send_under_faults(200, rate=0.2, seed=3, retries=8, timeout=0.2, delay=0.5,
                              concurrency=8, resend=False)
    assert report.unexpected == []
    assert report.accepted == 200 and report.failed_total == 0
    assert report.lost == report.duplicate_ids == report.duplicate_texts == 0


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_alone_every_exchange_but_the_last(kind: str) -> None:
    """Three faulty exchanges in a row, then a clean one: one message, delivered once."""
    with Emulator() as emulator, MobilgroupClient.from_url(
            emulator.url(), timeout=0.2, retries=3, backoff=0.001) as client:
        params = {"seconds": 0.5} if kind == "delay" else {}
        emulator.faults.next(kind, 3, **params)
        result = client.send("79039587454", f"once through {kind}")
        assert isinstance(result, SendResult)
        assert result.attempts == 4
        processed = kind in ("close_after", "delay", "garbage")
        assert result.accepted_earlier is processed
        assert [m.request_id for m in emulator.outbox] == [result.request_id]
        assert [m.text for m in emulator.outbox] == [f"once through {kind}"]


@pytest.mark.parametrize(("kind", "error", "maybe_sent", "delivered"), [
    ("close_before", errors.TransportError, True, False),
    ("close_after", errors.TransportError, True, True),
    ("http_500", errors.TransportError, True, False),
    ("delay", errors.TransportError, True, True),
    ("garbage", errors.ProtocolError, None, True),
])
def test_retries_exhausted_are_reported_typed(kind: str, error: type[errors.MobilgroupError],
                                              maybe_sent: bool | None, delivered: bool) -> None:
    """When every attempt fails the caller gets a typed error carrying the request id; an error
    that says "maybe sent" is the only kind after which the message may be in the outbox."""
    with Emulator() as emulator, MobilgroupClient.from_url(
            emulator.url(), timeout=0.2, retries=2, backoff=0.001) as client:
        params = {"seconds": 0.5} if kind == "delay" else {}
        emulator.faults.next(kind, 3, **params)
        with pytest.raises(error) as caught:
            client.send("79039587454", "all attempts fail", request_id=123456789)
        assert type(caught.value) is error
        assert caught.value.request_id == 123456789
        if maybe_sent is not None:
            assert isinstance(caught.value, errors.TransportError)
            assert caught.value.maybe_sent is maybe_sent
        assert len(emulator.outbox) == (1 if delivered else 0)
        # Resending with the same id never sends twice: error 7 says the first copy arrived.
        if delivered:
            with pytest.raises(errors.DuplicateRequestId):
                client.send("79039587454", "all attempts fail", request_id=123456789)
        else:
            client.send("79039587454", "all attempts fail", request_id=123456789)
        assert len(emulator.outbox) == 1


def test_protocol_error_after_retries_names_the_request_id() -> None:
    with Emulator() as emulator, MobilgroupClient.from_url(
            emulator.url(), retries=1, backoff=0.001) as client:
        emulator.faults.next("garbage", 2)
        with pytest.raises(errors.ProtocolError) as caught:
            client.send("79039587454", "garbled twice", request_id=123456789)
    assert caught.value.request_id == 123456789
