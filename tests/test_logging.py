"""SmsHandler in-process: real dictConfig, the emulator over HTTP, budget, dedupe, failures.

Subprocess scenarios (exit, fork, Django LOGGING) are in ``test_logging_process.py``.
"""

from __future__ import annotations

import io
import itertools
import logging
import logging.config
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr
from decimal import Decimal
from typing import Any

import pytest

from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ConfigurationError
from mobilgroup_backends.logging import HandlerStats, SmsHandler
from tests.helpers import texts

# Handlers fall back to MOBILGROUP_* variables: the machine's own must not leak in.
pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")

PHONE = "79031234567"
PHONE2 = "79161234567"
CANARY = "Zx9-canary-pw-q7"  # the password of the account whose leaks we look for


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def emulator(mobilgroup_emulator: Emulator) -> Emulator:
    mobilgroup_emulator.add_account(user_id="2000", login="alerts", password=CANARY)
    return mobilgroup_emulator


@pytest.fixture
def make(emulator: Emulator) -> Iterator[Callable[..., tuple[SmsHandler, logging.Logger]]]:
    """Build a handler on a fresh, non-propagating logger; everything is closed afterwards."""
    made: list[tuple[SmsHandler, logging.Logger]] = []

    def build(name: str = "app", **kwargs: Any) -> tuple[SmsHandler, logging.Logger]:
        kwargs.setdefault("url", emulator.url(PHONE, account="2000"))
        handler = SmsHandler(**kwargs)
        # A fresh name: pytest attaches its capture handlers to existing non-propagating loggers.
        logger = logging.getLogger(f"sms-test.{next(_names)}.{name}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        made.append((handler, logger))
        return handler, logger

    yield build
    for handler, logger in made:
        logger.removeHandler(handler)
        handler.close()


_names = itertools.count()


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Put the logging tree back the way the test found it after dictConfig."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("dc-"):
            logger = logging.getLogger(name)
            for handler in logger.handlers[:]:
                logger.removeHandler(handler)
                handler.close()
    for handler in root.handlers[:]:
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved[1])


# --- dictConfig -----------------------------------------------------------------------------


def test_dictconfig_with_class(emulator: Emulator, clean_logging: None) -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"sms": {
            "class": "mobilgroup_backends.logging.SmsHandler",
            "url": emulator.url(account="2000"),
            "phones": f"+7 903 123-45-67, {PHONE2}",
            "prefix": "web1",
            "max_sms": 3,
        }},
        "loggers": {"dc-payments": {"handlers": ["sms"], "level": "DEBUG"}},
    })
    logger = logging.getLogger("dc-payments")
    handler = logger.handlers[0]
    assert isinstance(handler, SmsHandler)
    assert handler.level == logging.CRITICAL  # the default when dictConfig gives none
    assert handler.max_sms == 3
    logger.error("only an error")
    logger.critical("payments down")
    assert emulator.outbox.wait_for(1)
    handler.flush()
    [message] = emulator.outbox
    assert message.text == "[CRITICAL] web1 dc-payments: payments down"
    assert message.phones == (PHONE, PHONE2)
    assert message.user_id == "2000"
    assert handler.stats.sent == 1


def test_dictconfig_with_factory_and_level(emulator: Emulator, clean_logging: None) -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"short": {"format": "%(levelname)s/%(name)s %(message)s"}},
        "handlers": {"sms": {
            "()": SmsHandler,
            "url": emulator.url(PHONE, account="2000"),
            "level": "ERROR",
            "formatter": "short",
            "dedupe_seconds": 0,
        }},
        "loggers": {"dc-orders": {"handlers": ["sms"], "level": "DEBUG"}},
    })
    logger = logging.getLogger("dc-orders")
    handler = logger.handlers[0]
    assert isinstance(handler, SmsHandler)
    assert handler.level == logging.ERROR  # dictConfig's level wins over the default
    assert handler.dedupe_seconds == 0
    logger.warning("not sent")
    logger.error("queue stuck")
    handler.flush()
    assert emulator.outbox.wait_for(1)
    assert texts(emulator) == ["ERROR/dc-orders queue stuck"]


def test_reconfiguring_closes_the_old_handler_and_delivers_its_alerts(
        emulator: Emulator, clean_logging: None) -> None:
    def config(prefix: str) -> dict[str, Any]:
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"sms": {"class": "mobilgroup_backends.logging.SmsHandler",
                                 "url": emulator.url(PHONE, account="2000"), "prefix": prefix}},
            "loggers": {"dc-re": {"handlers": ["sms"], "level": "DEBUG"}},
        }

    logging.config.dictConfig(config("first"))
    logger = logging.getLogger("dc-re")
    old = logger.handlers[0]
    assert isinstance(old, SmsHandler)
    logger.critical("before reconfiguring")  # queued; dictConfig must flush it out
    worker = old._worker
    assert worker is not None
    started = time.monotonic()
    logging.config.dictConfig(config("second"))
    assert time.monotonic() - started < 1.0  # dictConfig is not held up by the network
    # The old worker finishes the old handler's alerts in the background, then stops.
    worker.join(5)
    assert not worker.is_alive()
    new = logger.handlers[0]
    assert isinstance(new, SmsHandler) and new is not old
    logger.critical("after reconfiguring")
    assert emulator.outbox.wait_for(2)
    assert texts(emulator) == ["[CRITICAL] first dc-re: before reconfiguring",
                               "[CRITICAL] second dc-re: after reconfiguring"]
    old.close()  # a second close is harmless
    logger.critical("after reconfiguring")  # deduplicated by the new handler
    new.flush()
    assert new.stats.deduplicated == 1
    assert old.stats.sent == 1


# --- the caller's side ----------------------------------------------------------------------


def test_constructor_does_no_network_io_and_starts_no_thread(emulator: Emulator) -> None:
    threads = threading.active_count()
    handler = SmsHandler(url=emulator.url(PHONE, account="2000"))
    try:
        assert threading.active_count() == threads
        assert len(emulator.requests) == 0
        assert handler._client is None and handler._worker is None
        assert handler.phones == (PHONE,)
    finally:
        handler.close()


def test_emit_never_blocks_on_a_stalled_gateway(make: Callable[..., Any],
                                                emulator: Emulator) -> None:
    emulator.faults.next("delay", count=5, seconds=3)
    handler, logger = make(timeout=1, retries=0, queue_size=50, flush_timeout=0.2)
    durations = []
    for i in range(200):
        started = time.perf_counter()
        logger.critical("stalled %d", i)
        durations.append(time.perf_counter() - started)
    # Waiting on the gateway would cost at least the client's 1 s timeout in one emit; the
    # bound leaves room for a busy machine descheduling the thread (speed is bench/'s job).
    assert max(durations) < 0.5, max(durations)
    assert sum(durations) < 1.0
    stats = handler.stats
    assert stats.dropped >= 200 - 50 - 1  # the worker holds one, the queue 50
    assert stats.sent == 0


def test_emit_never_raises(make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    handler, logger = make()
    stderr = io.StringIO()
    monkeypatch.setattr(logging, "raiseExceptions", True)
    with redirect_stderr(stderr):
        logger.critical("%d apples", "not a number")  # formatting fails in the caller's thread
    assert "Logging error" in stderr.getvalue()  # reported through handleError
    monkeypatch.setattr(logging, "raiseExceptions", False)
    with redirect_stderr(stderr):
        logger.critical("%d apples", "not a number")
    handler.flush()
    assert handler.stats == HandlerStats()


def test_records_after_close_are_dropped_not_sent(make: Callable[..., Any],
                                                  emulator: Emulator) -> None:
    handler, logger = make()
    handler.close()
    logger.critical("too late")
    assert handler.stats.dropped == 1
    assert handler._worker is None
    handler.close()
    assert len(emulator.requests) == 0


# --- recursion ------------------------------------------------------------------------------


class Echo(logging.Handler):
    """A root handler that logs again about every record it sees from urllib3 on the thread
    ``thread()`` names (the alert handler's own worker): a worst case. Records of other threads
    (a library's background sender left by another test in this process) are only kept."""

    def __init__(self, thread: Callable[[], int | None]) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.thread = thread

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if (record.name.startswith("urllib3") and record.levelno == logging.DEBUG
                and record.thread == self.thread()):
            logging.getLogger("audit").warning("saw %s", record.name)


def test_recursion_guard_with_root_handler_at_debug(emulator: Emulator) -> None:
    root = logging.getLogger()
    saved_level = root.level
    handler = SmsHandler(url=emulator.url(PHONE, account="2000"), level=logging.DEBUG,
                         dedupe_seconds=0, max_sms=50)
    echo = Echo(lambda: handler._runner.thread_ident)
    root.addHandler(handler)
    root.addHandler(echo)
    root.setLevel(logging.DEBUG)
    try:
        logging.getLogger("app").critical("the only alert")
        assert emulator.outbox.wait_for(1)
        handler.flush()
        # Records of other threads from the loggers the handler itself uses: never queued.
        for name in ("urllib3.connectionpool", "requests", "mobilgroup_backends.client"):
            logging.getLogger(name).critical("from the sending stack")
        handler.flush()
        time.sleep(0.2)
    finally:
        root.removeHandler(handler)
        root.removeHandler(echo)
        root.setLevel(saved_level)
        handler.close()
    names = {record.name for record in echo.records}
    # The sending really did log through the root at DEBUG, and the echo logged again from
    # the worker thread: all of it reached the root logger, none of it the gateway.
    assert "urllib3.connectionpool" in names and "mobilgroup_backends.client" in names
    assert "audit" in names
    assert texts(emulator) == ["[CRITICAL] app: the only alert"]
    assert handler.stats.sent == 1
    assert handler.stats.failed == 0


# --- budget and summaries -------------------------------------------------------------------


def test_burst_is_capped_and_a_timer_sends_the_summary(make: Callable[..., Any],
                                                       emulator: Emulator) -> None:
    # The budget's clock stands still during the burst, so the count cannot depend on how fast
    # this machine logs (bench/handler_overhead.py measures that).
    clock = FakeClock()
    handler, logger = make(max_sms=3, per_seconds=0.5, prefix="web1", clock=clock)
    for i in range(1000):
        logger.critical("db down %d", i)
    handler.flush()
    assert len(emulator.outbox) == 3
    stats = handler.stats
    assert stats.sent == 3 and stats.suppressed + stats.dropped == 997
    # No further record comes: the timer alone sends the summary when the window reopens.
    clock.advance(0.5)
    assert emulator.outbox.wait_for(4, timeout=5)
    time.sleep(0.6)
    assert len(emulator.outbox) == 4  # max_sms + 1
    summary = emulator.outbox[3].text
    assert re.fullmatch(r"web1 \+997 more CRITICAL since \d\d:\d\d UTC, last: \S+app: db down 999",
                        summary), summary
    assert handler.stats.summaries == 1


def test_budget_window_follows_the_injected_clock(make: Callable[..., Any],
                                                  emulator: Emulator) -> None:
    clock = FakeClock()
    handler, logger = make(max_sms=2, per_seconds=300, clock=clock)
    for i in range(5):
        logger.critical("alert %d", i)
    handler.flush()
    assert len(emulator.outbox) == 2
    assert handler.stats.suppressed == 3
    clock.advance(299)
    handler.flush()
    assert len(emulator.outbox) == 2  # the window is still closed
    clock.advance(2)
    handler.flush()  # wakes the worker, which sees the window open
    assert emulator.outbox.wait_for(3, timeout=2)
    assert "+3 more CRITICAL since" in emulator.outbox[2].text
    assert emulator.outbox[2].text.endswith("app: alert 4")
    # The summary took one slot of the new window; one more alert fits, the next is held.
    logger.critical("alert 5")
    logger.critical("alert 6")
    handler.flush()
    assert texts(emulator)[3].endswith("app: alert 5")
    assert len(emulator.outbox) == 4
    assert handler.stats.suppressed == 4


def test_close_sends_the_pending_summary(make: Callable[..., Any], emulator: Emulator) -> None:
    handler, logger = make(max_sms=1, per_seconds=300)
    for i in range(4):
        logger.critical("disk %d full", i)
    handler.close()
    assert len(emulator.outbox) == 2
    assert emulator.outbox[1].text.startswith("+3 more CRITICAL since ")
    handler.close()
    assert len(emulator.outbox) == 2


# --- dedupe ---------------------------------------------------------------------------------


def test_dedupe_counts_repeats_and_says_so_next_time(make: Callable[..., Any],
                                                     emulator: Emulator) -> None:
    clock = FakeClock()
    handler, logger = make(dedupe_seconds=60, clock=clock)
    for _ in range(5):
        logger.critical("replica lag")
    logger.error("replica lag")  # another level: another message
    handler.flush()
    assert len(emulator.outbox) == 1
    assert handler.stats.deduplicated == 4
    clock.advance(61)
    logger.critical("replica lag")
    handler.flush()
    assert emulator.outbox.wait_for(2)
    assert emulator.outbox[1].text.endswith("app: replica lag (repeated 4x)")


@pytest.mark.parametrize(("size", "sent"), [(2, 4), (3, 3)])
def test_dedupe_memory_is_an_lru_with_a_cap(make: Callable[..., Any], emulator: Emulator,
                                           size: int, sent: int) -> None:
    handler, logger = make(dedupe_size=size, max_sms=10)
    for text in ("a", "b", "c", "a"):
        logger.critical(text)
    handler.flush()
    assert len(emulator.outbox) == sent
    assert len(handler._seen) == min(size, 3)
    assert handler.stats.deduplicated == 4 - sent


def test_lru_keeps_the_recently_repeated(make: Callable[..., Any], emulator: Emulator) -> None:
    handler, logger = make(dedupe_size=2, max_sms=10)
    for text in ("a", "b", "a", "c", "a"):  # the repeat of "a" makes "b" the oldest
        logger.critical(text)
    handler.flush()
    assert [t.rsplit(": ", 1)[1] for t in texts(emulator)] == ["a", "b", "c"]


# --- SMS text -------------------------------------------------------------------------------


def test_sms_text_is_shaped_for_a_phone(make: Callable[..., Any], emulator: Emulator) -> None:
    handler, logger = make(prefix="shop", dedupe_seconds=0, max_sms=10)
    try:
        raise ConnectionResetError("db socket closed")
    except ConnectionResetError:
        logger.critical("order\n failed", exc_info=True)
    logger.critical("Ошибка 🔥 " + "x" * 300)
    handler.flush()
    assert emulator.outbox.wait_for(2)
    first, second = texts(emulator)
    assert first.endswith("app: order failed | ConnectionResetError: db socket closed")
    assert "Traceback" not in first
    assert len(second) == 140 and second.endswith("…")
    assert "Ошибка ? xxx" in second


def test_unicode_limit_from_the_url(make: Callable[..., Any], emulator: Emulator) -> None:
    handler, logger = make(url=emulator.url(PHONE, account="2000", translit="no"))
    logger.critical("y" * 100)
    handler.flush()
    assert emulator.outbox.wait_for(1)
    [message] = emulator.outbox
    assert len(message.text) == 64 and not message.transliterate


# --- gateway down ---------------------------------------------------------------------------


def test_gateway_down_then_back(make: Callable[..., Any], emulator: Emulator) -> None:
    stderr = io.StringIO()
    handler, logger = make(failure_backoff=0.3, timeout=1)
    emulator.stop()
    with redirect_stderr(stderr):
        logger.critical("first while down")
        logger.critical("second while down")
        handler.flush()
        assert handler.stats.failed == 2
        emulator.start()  # same port
        # The pause ends, the summary goes out as the probe, with what was missed.
        assert emulator.outbox.wait_for(1, timeout=5)
        logger.critical("after recovery")
        assert emulator.outbox.wait_for(2, timeout=5)
        handler.flush()
    summary, after = texts(emulator)
    assert re.fullmatch(r"\+2 more CRITICAL since \d\d:\d\d UTC, last: \S+app: second while down",
                        summary), summary
    assert after.endswith("app: after recovery")
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1, lines  # one line per failure burst, not per record
    assert "could not be sent" in lines[0] and "TransportError" in lines[0]
    assert CANARY not in stderr.getvalue()
    assert handler.stats.sent == 2 and handler.stats.summaries == 1


def test_repeated_failures_back_off(make: Callable[..., Any], emulator: Emulator) -> None:
    clock = FakeClock()
    handler, logger = make(failure_backoff=10, clock=clock, dedupe_seconds=0)
    emulator.stop()
    with redirect_stderr(io.StringIO()):
        logger.critical("down 1")
        handler.flush()
        attempts = handler._failures
        for i in range(20):
            logger.critical("down again %d", i)
        handler.flush()
        assert handler._failures == attempts == 1  # paused: no new attempt
        assert handler.stats.failed == 21
        clock.advance(11)
        handler.flush()  # the probe (the summary) fails: the pause doubles
        assert handler._failures == 2
        assert handler._pause_until == pytest.approx(clock.now + 20)
        emulator.start()
        clock.advance(21)
        handler.flush()
    assert emulator.outbox.wait_for(1)
    assert emulator.outbox[0].text.startswith("+21 more CRITICAL since")


def test_an_alert_refused_for_good_is_not_retried_nor_summarised(
        make: Callable[..., Any], emulator: Emulator) -> None:
    # The first exchange meets a 404 (a wrong endpoint will not mend by itself): that alert is
    # dropped and counted, never put in a summary to be tried again.
    clock = FakeClock()
    handler, logger = make(failure_backoff=10, clock=clock, dedupe_seconds=0)
    emulator.faults.next("body", status=404)
    with redirect_stderr(io.StringIO()) as stderr:
        logger.critical("lost to a 404")
        handler.flush()
        assert handler.stats.failed == 1 and handler._failures == 1
        clock.advance(11)
        logger.critical("after the pause")
        handler.flush()
    assert emulator.outbox.wait_for(1)
    [text] = texts(emulator)  # no summary of the lost one
    assert text.endswith("app: after the pause")
    assert len(emulator.requests) == 2
    assert "HTTP 404" in stderr.getvalue()


def test_an_account_refusal_is_summarised_once_money_is_added(
        make: Callable[..., Any], emulator: Emulator) -> None:
    clock = FakeClock()
    handler, logger = make(failure_backoff=10, clock=clock, dedupe_seconds=0)
    emulator.accounts["2000"].balance = Decimal(0)
    with redirect_stderr(io.StringIO()):
        logger.critical("no money")
        handler.flush()
        assert handler.stats.failed == 1
        emulator.accounts["2000"].balance = Decimal(10)
        clock.advance(11)
        handler.flush()  # the pause is over: the summary is the probe
    assert emulator.outbox.wait_for(1)
    assert re.fullmatch(r"\+1 more CRITICAL since \d\d:\d\d UTC, last: \S+app: no money",
                        texts(emulator)[0])


def test_the_url_s_valid_hours_and_sender_reach_the_gateway(
        make: Callable[..., Any], emulator: Emulator) -> None:
    handler, logger = make(url=emulator.url(PHONE, account="2000", valid=24, sender="Ops"))
    logger.critical("with a lifetime")
    handler.flush()
    assert emulator.outbox.wait_for(1)
    [message] = emulator.outbox
    assert (message.valid_hours, message.sender) == (24, "Ops")


# --- configuration --------------------------------------------------------------------------


def test_settings_from_the_environment(emulator: Emulator,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILGROUP_URL", emulator.url(PHONE, account="2000"))
    handler = SmsHandler(phones=[PHONE2])
    assert handler.phones == (PHONE2,)  # phones given win over the URL's
    handler.close()
    handler = SmsHandler()
    assert handler.phones == (PHONE,)
    handler.close()


@pytest.mark.parametrize(("kwargs", "field"), [
    ({}, "url"),
    ({"url": "mobilgroup://alerts:" + CANARY + "@2000"}, "phones"),
    ({"url": "mobilgroup://alerts:" + CANARY + "@2000/123"}, "phones"),
    ({"url": "mobilgroup://alerts:" + CANARY + "@20x0/" + PHONE}, "user_id"),
    ({"url": "mobilgroup://alerts:" + CANARY + "@2000/" + PHONE + "?sendr=x"}, "url option sendr"),
    ({"url": "mobilgroup://a:b@2000/" + PHONE, "max_sms": 0}, "max_sms"),
    ({"url": "mobilgroup://a:b@2000/" + PHONE, "per_seconds": -1}, "per_seconds"),
    ({"url": "mobilgroup://a:b@2000/" + PHONE, "timeout": 0}, "timeout"),
])
def test_bad_configuration_is_refused_at_start_up(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SmsHandler(**kwargs)
    assert caught.value.field == field
    assert CANARY not in str(caught.value)


def test_password_absent_from_everything_captured(make: Callable[..., Any], emulator: Emulator,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    everything = logging.StreamHandler(stream)
    everything.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    saved = root.level
    root.addHandler(everything)
    root.setLevel(logging.DEBUG)
    try:
        handler, logger = make(failure_backoff=0.1, timeout=1)
        logger.critical("sent normally")
        emulator.outbox.wait_for(1)
        emulator.faults.next("garbage")
        emulator.faults.next("http_500", count=2)
        logger.critical("to a broken gateway")
        handler.flush()
        emulator.stop()
        logger.critical("to no gateway")
        handler.flush()
        emulator.start()
        logging.getLogger("app").critical("handler: %r stats: %r", handler, handler.stats)
        handler.close()
    finally:
        root.removeHandler(everything)
        root.setLevel(saved)
    captured = capfd.readouterr()
    seen = stream.getvalue() + captured.out + captured.err + repr(handler) + repr(vars(handler))
    assert "mobilgroup_backends.client DEBUG" in seen  # the client did log, at every level
    assert "could not be sent" in seen
    assert CANARY not in seen


def test_records_dropped_by_a_full_queue_are_counted_in_the_summary(
        make: Callable[..., Any], emulator: Emulator) -> None:
    clock = FakeClock()
    emulator.faults.next("delay", seconds=0.3)  # the worker is stuck on the first send
    handler, logger = make(max_sms=2, per_seconds=300, queue_size=5, clock=clock)
    for i in range(50):
        logger.critical("alert %d", i)
    handler.flush()
    stats = handler.stats
    assert stats.dropped >= 40
    assert stats.sent + stats.suppressed + stats.dropped == 50
    clock.advance(301)
    handler.flush()
    assert emulator.outbox.wait_for(3)
    summary = emulator.outbox[2].text
    # The newest record was one of those dropped, and it is the one the summary shows.
    assert re.fullmatch(r"\+48 more CRITICAL since \d\d:\d\d UTC, last: \S+app: alert 49", summary), summary
