"""The alert policy on its own: an injected clock, a list for an outbox, no threads, no network."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from mobilgroup_backends.logging.policy import MAX_FAILURE_PAUSE, AlertPolicy
from mobilgroup_backends.logging.store import Item, LocalStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outbox:
    """The ``send`` the policy is given: keeps texts, or fails while ``down``."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.down = False

    def __call__(self, text: Callable[[], str]) -> None:
        if self.down:
            raise ConnectionError("gateway down")
        self.texts.append(text())


def item(message: str, *, level: int = logging.CRITICAL, name: str = "app", at: float = 0.0,
         exception: str = "") -> Item:
    return Item(1_700_000_000.0 + at, level, logging.getLevelName(level), name, message,
                exception, None)


def make(clock: Clock, *, max_sms: int = 2, per_seconds: float = 60, dedupe_seconds: float = 600,
         dedupe_size: int = 256, failure_backoff: float = 10, prefix: str = "",
         reports: list[BaseException] | None = None) -> AlertPolicy:
    store = LocalStore(max_sms=max_sms, per_seconds=per_seconds, dedupe_seconds=dedupe_seconds,
                       dedupe_size=dedupe_size, clock=clock)
    return AlertPolicy(store, clock=clock, failure_backoff=failure_backoff, prefix=prefix,
                       report=None if reports is None else reports.append)


def test_the_budget_holds_back_and_one_summary_follows_when_it_reopens() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock)
    for n in range(5):
        policy.process(item(f"down {n}", at=n), outbox)
    assert outbox.texts == ["[CRITICAL] app: down 0", "[CRITICAL] app: down 1"]
    assert (policy.sent, policy.suppressed) == (2, 3)
    assert policy.next_timer() == pytest.approx(60)
    policy.summary_if_due(outbox, final=False)
    assert len(outbox.texts) == 2  # not yet: the window is still full
    clock.now += 60
    assert policy.next_timer() == 0
    policy.summary_if_due(outbox, final=False)
    assert outbox.texts[2].startswith("+3 more CRITICAL since ")
    assert outbox.texts[2].endswith("last: app: down 4")
    assert policy.summaries == 1 and policy.next_timer() is None
    policy.summary_if_due(outbox, final=False)
    assert len(outbox.texts) == 3


def test_the_summary_at_close_goes_even_when_the_budget_is_spent() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, max_sms=1)
    policy.process(item("a"), outbox)
    policy.process(item("b"), outbox)
    policy.summary_if_due(outbox, final=True)
    assert [text.split(" since")[0] for text in outbox.texts] == ["[CRITICAL] app: a", "+1 more CRITICAL"]


def test_dedupe_sends_once_and_the_next_copy_tells_how_often_it_repeated() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, max_sms=10)
    for _ in range(4):
        policy.process(item("disk full"), outbox)
    assert outbox.texts == ["[CRITICAL] app: disk full"]
    assert policy.deduplicated == 3
    clock.now += 601
    policy.process(item("disk full"), outbox)
    assert outbox.texts[1] == "[CRITICAL] app: disk full (repeated 3x)"


def test_level_and_logger_are_part_of_what_makes_alerts_the_same() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, max_sms=10)
    policy.process(item("x"), outbox)
    policy.process(item("x", level=logging.ERROR), outbox)
    policy.process(item("x", name="other"), outbox)
    assert len(outbox.texts) == 3 and policy.deduplicated == 0


def test_repeats_no_later_copy_reported_are_counted_at_close() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, max_sms=10)
    for _ in range(3):
        policy.process(item("flapping"), outbox)
    policy.count_unreported_repeats()
    policy.summary_if_due(outbox, final=True)
    assert outbox.texts[-1].startswith("+2 more CRITICAL since ")


def test_the_dedupe_memory_is_bounded() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, max_sms=100, dedupe_size=2)
    for text in ("a", "b", "c", "a"):
        policy.process(item(text), outbox)
    assert len(outbox.texts) == 4  # "a" was forgotten to make room for "c"
    assert isinstance(policy.store, LocalStore) and len(policy.store.seen) == 2


def test_a_failure_pauses_sending_and_the_summary_is_the_probe() -> None:
    clock, outbox = Clock(), Outbox()
    reports: list[BaseException] = []
    policy = make(clock, max_sms=10, failure_backoff=10, reports=reports)
    outbox.down = True
    policy.process(item("first"), outbox)
    assert (policy.failed, policy.failures) == (1, 1)
    assert policy.pause_until == clock.now + 10
    for n in range(5):
        policy.process(item(f"while paused {n}"), outbox)
    assert policy.failed == 6 and policy.failures == 1  # no new attempt while paused
    assert len(reports) == 1  # one line on stderr per failure burst, not one per record
    clock.now += 10
    policy.summary_if_due(outbox, final=False)  # the probe fails: the pause doubles
    assert policy.failures == 2 and policy.pause_until == clock.now + 20
    outbox.down = False
    clock.now += 20
    policy.summary_if_due(outbox, final=False)
    assert outbox.texts == [outbox.texts[0]] and outbox.texts[0].startswith("+6 more CRITICAL")
    assert policy.failures == 0 and policy.pause_until == 0


def test_the_pause_is_capped() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, failure_backoff=60)
    outbox.down = True
    for _ in range(10):
        clock.now = max(clock.now, policy.pause_until)
        policy.process(item(f"x{clock.now}"), outbox)
    assert policy.pause_until - clock.now == MAX_FAILURE_PAUSE


def test_a_failed_send_gives_its_budget_slot_back() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, max_sms=1, failure_backoff=0)
    outbox.down = True
    policy.process(item("lost"), outbox)
    outbox.down = False
    clock.now += 1
    policy.process(item("next"), outbox)
    assert outbox.texts[0].startswith("+1 more CRITICAL")  # the summary took the one slot
    assert policy.suppressed == 1


def test_texts_carry_prefix_and_exception_and_fit_one_sms() -> None:
    clock, outbox = Clock(), Outbox()
    policy = make(clock, prefix="web1", max_sms=10)
    policy.process(item("payments " * 40, exception="TimeoutError: upstream"), outbox)
    [text] = outbox.texts
    assert text.startswith("[CRITICAL] web1 app: payments payments")
    assert len(text) <= 140
    policy.transliterate = False
    policy.process(item("другое " * 40), outbox)
    assert len(outbox.texts[1]) <= 64
