"""The summary at a handler's exit tells the same truth whether the budget is this process's or a
fleet's in Redis: repeats the dedupe held back and no later copy reported are counted in it.

Real Redis server (``tests/redis_server.py``), the real store and handler, the emulator over
HTTP for the handler's SMS.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable

import pytest

from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.logging import SmsHandler
from mobilgroup_backends.logging.store import Item, Store, Verdict, make_store
from tests.redis_server import RedisServer

PHONE = "79031234567"
SUMMARY = re.compile(r"^\+(\d+) more CRITICAL since ")
_keys = (f"exit-{n}-{time.time_ns()}" for n in itertools.count())

Budget = Callable[[], "str | None"]


@pytest.fixture(params=["local", "redis"])
def budget(request: pytest.FixtureRequest) -> Budget:
    """A new budget per call: this process's own, or a new key on the real Redis server."""
    if request.param == "local":
        return lambda: None
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: f"{server.url(0)}?key={next(_keys)}"


def item(message: str) -> Item:
    return Item(time.time(), 50, "CRITICAL", "app", message, "", None)


def store_for(budget: str | None, **limits: float) -> Store:
    options = {"max_sms": 3, "per_seconds": 60, "dedupe_seconds": 600, "dedupe_size": 16, **limits}
    return make_store(budget, clock=time.monotonic, **options)  # type: ignore[arg-type]


def test_unreported_repeats_are_in_the_summary_at_exit(budget: Budget) -> None:
    store = store_for(budget())
    assert store.admit(item("disk full"), paused=False).verdict is Verdict.SEND
    for _ in range(5):
        assert store.admit(item("disk full"), paused=False).verdict is Verdict.DUPLICATE
    assert store.claim_summary(final=True) is None  # nothing held back by the budget
    store.flush_repeats()
    claimed = store.claim_summary(final=True)
    assert claimed is not None
    pending, _ = claimed
    assert pending.count == 5
    assert pending.last is not None and pending.last.message == "disk full"


def test_repeats_and_budget_suppression_add_up_in_one_summary(budget: Budget) -> None:
    store = store_for(budget(), max_sms=1)
    assert store.admit(item("disk full"), paused=False).verdict is Verdict.SEND
    for _ in range(3):
        assert store.admit(item("disk full"), paused=False).verdict is Verdict.DUPLICATE
    for n in range(4):
        assert store.admit(item(f"other {n}"), paused=False).verdict is Verdict.SUPPRESSED
    store.flush_repeats()
    claimed = store.claim_summary(final=True)
    assert claimed is not None and claimed[0].count == 7


def test_repeats_reported_by_a_later_copy_are_not_counted_again(budget: Budget) -> None:
    store = store_for(budget(), dedupe_seconds=0.3)
    assert store.admit(item("disk full"), paused=False).verdict is Verdict.SEND
    assert store.admit(item("disk full"), paused=False).verdict is Verdict.DUPLICATE
    time.sleep(0.4)  # the dedupe window is over: the next copy goes out and reports the repeat
    decision = store.admit(item("disk full"), paused=False)
    assert decision.verdict is Verdict.SEND and decision.repeats == 1
    store.flush_repeats()
    assert store.claim_summary(final=True) is None


def test_the_fleet_s_repeats_are_counted_once_by_whichever_process_exits_first(
        redis_server: RedisServer) -> None:
    key = f"{redis_server.url(0)}?key={next(_keys)}"
    first, second = store_for(key), store_for(key)
    assert first.admit(item("disk full"), paused=False).verdict is Verdict.SEND
    for store in (first, second, second, first, second):
        assert store.admit(item("disk full"), paused=False).verdict is Verdict.DUPLICATE
    second.flush_repeats()
    claimed = second.claim_summary(final=True)
    assert claimed is not None and claimed[0].count == 5  # both processes' repeats
    first.flush_repeats()
    assert first.claim_summary(final=True) is None  # taken already: not counted twice


def script_calls(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
               for name in ("eval", "evalsha", "evalsha_ro", "eval_ro"))


def test_every_remembered_repeat_goes_in_one_script_call(redis_server: RedisServer) -> None:
    """At exit each round trip counts against flush_timeout: one call, however many alerts."""
    store = store_for(f"{redis_server.url(0)}?key={next(_keys)}", max_sms=100, dedupe_size=64)
    for n in range(40):
        assert store.admit(item(f"alert {n}"), paused=False).verdict is Verdict.SEND
        for _ in range(2):
            assert store.admit(item(f"alert {n}"), paused=False).verdict is Verdict.DUPLICATE
    before = script_calls(redis_server)
    store.flush_repeats()
    assert script_calls(redis_server) - before == 1
    claimed = store.claim_summary(final=True)
    assert claimed is not None and claimed[0].count == 80


def test_the_alerts_remembered_for_exit_stay_bounded(redis_server: RedisServer) -> None:
    """Remembered on a duplicate and on a send given back: both keep to dedupe_size."""
    store = store_for(f"{redis_server.url(0)}?key={next(_keys)}", max_sms=100, dedupe_size=4,
                      dedupe_seconds=0.3)
    for n in range(10):
        assert store.admit(item(f"alert {n}"), paused=False).verdict is Verdict.SEND
        assert store.admit(item(f"alert {n}"), paused=False).verdict is Verdict.DUPLICATE
    time.sleep(0.4)  # the dedupe window is over: the next copies go out, carrying a repeat
    for n in range(10):
        decision = store.admit(item(f"alert {n}"), paused=False)
        assert decision.verdict is Verdict.SEND and decision.repeats == 1
        store.release(item(f"alert {n}"), decision)  # the SMS failed: the repeat is given back
    assert len(store._repeated) == 4  # type: ignore[attr-defined]


def test_the_handler_s_exit_summary_is_the_same_with_either_budget(
        budget: Budget, mobilgroup_emulator: Emulator) -> None:
    handler = SmsHandler(url=mobilgroup_emulator.url(PHONE), budget=budget(), max_sms=5,
                         dedupe_seconds=600, flush_timeout=10)
    logger = logging.getLogger(f"tests.exit.{next(_keys)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for _ in range(10):
            logger.critical("payment gateway down")
        handler.flush()
    finally:
        logger.removeHandler(handler)
        handler.close()
    texts = [message.text for message in mobilgroup_emulator.outbox]
    assert len(texts) == 2, texts
    assert "payment gateway down" in texts[0]
    match = SUMMARY.match(texts[1])
    assert match is not None and int(match.group(1)) == 9, texts
    assert handler.stats.deduplicated == 9 and handler.stats.summaries == 1
