"""One alert budget for a fleet: the Redis store against a real Redis server, and real processes
(forked and spawned) logging a storm through ``SmsHandler``, counted in the emulator's outbox."""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import re
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path

import pytest

from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ConfigurationError
from mobilgroup_backends.logging import SmsHandler
from mobilgroup_backends.logging.store import Item, RedisStore, Verdict, make_store
from tests.fleet_child import GATEWAY_LATENCY, MAX_CALL_SECONDS, storm
from tests.redis_server import RedisServer

PHONE = "79031234567"
SUMMARY = re.compile(r"^\+(\d+) more CRITICAL since ")
_keys = (f"fleet-{n}-{time.time_ns()}" for n in itertools.count())


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def item(message: str) -> Item:
    return Item(time.time(), 50, "CRITICAL", "app", message, "", None)


def stores(server: RedisServer, count: int, clock: Clock, **limits: float) -> list[RedisStore]:
    """``count`` stores on one key: as many processes sharing one budget."""
    key = next(_keys)
    options = {"max_sms": 3, "per_seconds": 60, "dedupe_seconds": 600, "dedupe_size": 16, **limits}
    made = [make_store(f"{server.url(0)}?key={key}", clock=clock, **options)  # type: ignore[arg-type]
            for _ in range(count)]
    assert all(isinstance(store, RedisStore) for store in made)
    return made  # type: ignore[return-value]


def test_the_budget_and_dedupe_are_shared_by_every_store_on_a_key(redis_server: RedisServer) -> None:
    clock = Clock()
    fleet = stores(redis_server, 4, clock)
    verdicts = [fleet[n % 4].admit(item(f"m{n}"), paused=False).verdict for n in range(10)]
    assert verdicts.count(Verdict.SEND) == 3
    assert verdicts.count(Verdict.SUPPRESSED) == 7
    # The same alert from another process is a duplicate, and its repeats travel with it.
    other = stores(redis_server, 2, clock, max_sms=10)
    assert other[0].admit(item("same"), paused=False).verdict is Verdict.SEND
    assert other[1].admit(item("same"), paused=False).verdict is Verdict.DUPLICATE
    assert other[0].admit(item("same"), paused=False).verdict is Verdict.DUPLICATE


def test_exactly_one_summary_per_window_for_the_whole_fleet(redis_server: RedisServer) -> None:
    clock = Clock()
    fleet = stores(redis_server, 4, clock, max_sms=1)
    for n in range(9):
        fleet[n % 4].admit(item(f"m{n}"), paused=False)
    claims = [store.claim_summary(final=True) for store in fleet]
    won = [claim for claim in claims if claim is not None]
    assert len(won) == 1
    pending, _ = won[0]
    assert pending.count == 8 and pending.last is not None and pending.last.message == "m8"
    # More held back in the same window waits for the next one, whoever closes next.
    fleet[1].admit(item("late"), paused=False)
    assert all(store.claim_summary(final=True) is None for store in fleet)


def test_a_failed_summary_is_put_back(redis_server: RedisServer) -> None:
    clock = Clock()
    first, second = stores(redis_server, 2, clock, max_sms=1)
    for n in range(3):
        first.admit(item(f"m{n}"), paused=False)
    claimed = first.claim_summary(final=True)
    assert claimed is not None
    first.unclaim(*claimed)
    again = second.claim_summary(final=True)
    assert again is not None and again[0].count == 2


def test_unreachable_redis_falls_back_to_the_local_budget_with_one_line(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    clock = Clock()
    [store] = stores(server, 1, clock, max_sms=2)
    assert store.admit(item("before"), paused=False).verdict is Verdict.SEND
    server.kill()
    err = io.StringIO()
    with redirect_stderr(err):
        started = time.monotonic()
        verdicts = [store.admit(item(f"m{n}"), paused=False).verdict for n in range(5)]
        elapsed = time.monotonic() - started
    assert verdicts == [Verdict.SEND, Verdict.SEND] + [Verdict.SUPPRESSED] * 3  # the local budget
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and "using this process's own" in lines[0]
    assert elapsed < 2  # one failed attempt, then Redis is left alone for a while
    server.stop()


def test_the_budget_url_is_checked_up_front_without_showing_its_password(
        mobilgroup_emulator: Emulator) -> None:
    with pytest.raises(ConfigurationError) as refused:
        SmsHandler(url=mobilgroup_emulator.url(PHONE), budget="http://:s3cret-pw@cache:6379/0")
    assert refused.value.field == "budget"
    assert "s3cret-pw" not in str(refused.value)
    with pytest.raises(ConfigurationError):
        SmsHandler(url=mobilgroup_emulator.url(PHONE), budget="redis://cache/0?key=has space")


@pytest.fixture
def slow_emulator() -> Iterator[Emulator]:
    with Emulator(price_per_sms=0, latency=GATEWAY_LATENCY) as emulator:
        yield emulator


def _run_fleet(slow_emulator: Emulator, budget: str, folder: Path, *, records: int, max_sms: int,
               kill: RedisServer | None = None) -> list[dict[str, object]]:
    """Eight processes, half forked and half spawned, each running ``storm``."""
    processes = []
    for index in range(8):
        context = multiprocessing.get_context("fork" if index % 2 else "spawn")
        process = context.Process(target=storm, args=(
            index, slow_emulator.url(PHONE), budget, str(folder), records, max_sms, kill is not None))
        process.start()
        processes.append(process)
    try:
        deadline = time.monotonic() + 60
        while not all((folder / f"stormed-{n}").exists() for n in range(8)):
            assert time.monotonic() < deadline, "the storm did not finish"
            assert all(p.is_alive() or p.exitcode == 0 for p in processes), "a child died"
            time.sleep(0.02)
        if kill is not None:
            kill.kill()
            (folder / "redis-killed").touch()
        else:
            (folder / "all-stormed").touch()
        for process in processes:
            process.join(60)
        assert [p.exitcode for p in processes] == [0] * 8, [
            (folder / f"stderr-{n}").read_text() for n in range(8)]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
    return [json.loads((folder / f"result-{n}.json").read_text()) for n in range(8)]


@pytest.mark.slow
def test_a_fleet_storm_sends_at_most_max_sms_and_exactly_one_summary(
        slow_emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    records, max_sms = 40, 3
    budget = f"{redis_server.url(0)}?key={next(_keys)}"
    results = _run_fleet(slow_emulator, budget, tmp_path, records=records, max_sms=max_sms)
    texts = [message.text for message in slow_emulator.outbox]
    summaries = [text for text in texts if SUMMARY.match(text)]
    alerts = [text for text in texts if not SUMMARY.match(text)]
    assert len(alerts) <= max_sms
    assert len(summaries) == 1
    # The one summary accounts for every record the fleet held back.
    match = SUMMARY.match(summaries[0])
    assert match is not None and int(match.group(1)) == 8 * records - len(alerts)
    assert all(float(r["slowest"]) < MAX_CALL_SECONDS for r in results)  # type: ignore[arg-type]


@pytest.mark.slow
def test_redis_killed_mid_storm_the_fleet_falls_back_and_never_blocks(
        slow_emulator: Emulator, tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        budget = f"{server.url(0)}?key={next(_keys)}"
        results = _run_fleet(slow_emulator, budget, tmp_path, records=30, max_sms=2, kill=server)
    finally:
        server.stop()
    for n, result in enumerate(results):
        assert float(result["slowest"]) < MAX_CALL_SECONDS  # type: ignore[arg-type]
        assert float(result["close_seconds"]) < 5 + GATEWAY_LATENCY  # type: ignore[arg-type]
        lines = (tmp_path / f"stderr-{n}").read_text().splitlines()
        assert sum("unreachable" in line for line in lines) == 1, lines
    # Each process fell back to its own budget: alerts made after the kill still went out.
    assert any(message.text.startswith("[CRITICAL] fleet.") and "after-kill" in message.text
               for message in slow_emulator.outbox)
