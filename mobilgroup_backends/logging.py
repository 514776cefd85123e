"""``SmsHandler``: ``logger.critical("payments down")`` puts a short SMS on the on-call phone.

Configured from ``logging.config.dictConfig`` or Django's ``LOGGING`` alone::

    "handlers": {
        "sms": {
            "class": "mobilgroup_backends.logging.SmsHandler",
            "url": "mobilgroup://LOGIN:PASSWORD@USER_ID/79031234567?sender=Alerts",
            "prefix": "web1",
        },
    }

What the handler promises, because an alert path must never hurt the application it watches:

- **It never blocks the caller.** ``emit`` formats the record in the caller's thread and puts a
  small tuple on a bounded queue; a full queue costs a counter, not a wait. The network is used
  only by one daemon worker thread, started on the first record.
- **It never raises into the caller.** Problems go through ``handleError`` (caller side) or one
  line on stderr per failure burst (worker side).
- **It never floods.** At most ``max_sms`` SMS per ``per_seconds``; what the budget holds back is
  counted and, when the window reopens, one summary SMS tells how many and shows the last one.
  The same message within ``dedupe_seconds`` is sent once; the next copy says how often it
  repeated.
- **It never loops.** Records made while the handler sends (in its worker thread, or from the
  ``urllib3``, ``requests`` and ``mobilgroup_backends`` loggers) are never queued.
- **It never hangs the exit.** ``flush`` and ``close`` wait at most ``flush_timeout``; the worker
  is a daemon thread, so a stalled gateway cannot keep the process alive.
- **It survives fork** (gunicorn, uWSGI, Celery prefork): a child gets its own queue and worker.
- **It never leaks the password**: not in its repr, its stderr lines or its exceptions.

Configuration goes through the core's resolver, with the precedence every adapter shares:
keywords > ``url`` > Django's ``settings.MOBILGROUP`` (read when Django is already imported and
configured: this module never imports Django itself) > ``MOBILGROUP_URL`` > ``MOBILGROUP_*`` >
the defaults, which for alerts are short: 5 s timeout, 1 retry.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import protocol
from .client import MobilgroupClient
from .config import (
    Resolved,
    Settings,
    adapter_options,
    django_setting,
    django_settings_pending,
    resolve,
)
from .errors import ConfigurationError, MobilgroupError

__all__ = ["HandlerStats", "SmsHandler"]

#: Loggers whose records are never queued: the handler's own sending produces them.
GUARDED_LOGGERS = frozenset({"urllib3", "requests", "mobilgroup_backends"})

#: Characters of a record's message kept in the caller's thread (the SMS holds at most 140):
#: this is what bounds the memory of a full queue.
MAX_QUEUED_CHARS = 512

#: Bounds of the pause after failures, whatever ``failure_backoff`` says.
MAX_FAILURE_PAUSE = 300.0
MIN_FAILURE_PAUSE = 0.05


@dataclass(frozen=True)
class HandlerStats:
    """What became of the records the handler was given (a snapshot; for tests and health checks).

    ``sent``: SMS the gateway accepted (summaries included; ``summaries`` counts those alone).
    ``suppressed``: records the budget held back (they are counted in the next summary).
    ``deduplicated``: repeats of a message sent within ``dedupe_seconds``.
    ``dropped``: records refused because the queue was full (or the handler was closed).
    ``failed``: records that could not be sent (gateway down, retries exhausted, or skipped
    while the handler pauses after repeated failures); the next summary counts them too.
    """

    sent: int = 0
    suppressed: int = 0
    deduplicated: int = 0
    dropped: int = 0
    failed: int = 0
    summaries: int = 0
    queued: int = 0


class _Item(NamedTuple):
    """One queued record: only what the SMS needs, already formatted in the caller's thread."""

    created: float
    levelno: int
    levelname: str
    name: str
    message: str
    exception: str
    formatted: str | None


@dataclass
class _Seen:
    """Dedupe memory of one message: when it last went out and how often it repeated since."""

    sent_at: float
    repeats: int = 0
    #: The newest repeat, for the summary at exit when no later copy reported the repeats.
    last: _Item | None = None


class _Pending:
    """Records not delivered yet (held by the budget, or failed): the next summary's content."""

    __slots__ = ("count", "last", "levelno", "since")

    def __init__(self) -> None:
        self.count = 0
        self.since = 0.0
        self.levelno = 0
        self.last: _Item | None = None

    def add(self, item: _Item, count: int = 1) -> None:
        if self.count == 0 or item.created < self.since:
            self.since = item.created
        self.count += count
        self.levelno = max(self.levelno, item.levelno)
        if self.last is None or item.created >= self.last.created:
            self.last = item


_LIVE_HANDLERS: weakref.WeakSet[SmsHandler] = weakref.WeakSet()
#: Handlers closed from inside a logging configuration call whose workers are still finishing.
_FINISHING: set[SmsHandler] = set()
_FINISHING_LOCK = threading.Lock()


def _holding_logging_lock() -> bool:
    """True when this thread holds the logging module's lock (inside ``dictConfig``).

    Then waiting for the worker is futile: its HTTP stack logs (urllib3), and a logger whose
    level cache was cleared by the configuration needs that very lock to answer.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    try:
        return bool(is_owned()) if is_owned is not None else False
    except Exception:
        return False


@atexit.register
def _finish_at_exit() -> None:
    """Give workers of handlers closed by a re-configuration their ``flush_timeout`` at exit.

    Registered after ``logging`` was imported, so it runs before ``logging.shutdown``.
    """
    with _FINISHING_LOCK:
        handlers = list(_FINISHING)
    if not handlers:
        return
    deadline = time.monotonic() + max(handler.flush_timeout for handler in handlers)
    for handler in handlers:
        worker = handler._worker
        if worker is not None and handler._pid == os.getpid():
            worker.join(max(0.0, deadline - time.monotonic()))


def _reinit_after_fork() -> None:
    for handler in list(_LIVE_HANDLERS):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


class SmsHandler(logging.Handler):
    """A logging handler that texts records (CRITICAL and up by default) to on-call phones.

    Every argument is a JSON-friendly keyword, so ``dictConfig`` and Django's ``LOGGING`` can
    build it with ``"class"`` (or ``"()"``). Nothing here touches the network: the client is made
    in the worker thread, on the first record.

    :param url: ``mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE...``; default ``MOBILGROUP_URL`` (or
        the ``MOBILGROUP_*`` variables), else Django's ``settings.MOBILGROUP``.
    :param phones: who gets the alerts (one string, comma-separated, or a list); default the
        URL's phones, else ``MOBILGROUP["ALERT_PHONES"]``.
    :param level: default CRITICAL (a ``level`` in dictConfig still wins).
    :param max_sms: at most this many SMS per ``per_seconds`` (default 5 per 300 s).
    :param dedupe_seconds: the same message (level, logger, text) is sent once in this time
        (default 600; 0 turns dedupe off). ``dedupe_size`` bounds its memory (default 256).
    :param queue_size: records waiting for the worker; more are dropped and counted (1000).
    :param timeout: seconds per gateway exchange (5) and ``retries`` after a failure (1), so a
        dead gateway costs the worker seconds, not minutes. A URL's own ``timeout=`` or
        ``retries=`` wins over these defaults.
    :param flush_timeout: the most ``flush()`` and ``close()`` wait, each (default 5 s).
    :param prefix: put in every SMS after the level, e.g. the host or the application name.
    :param failure_backoff: after a failed SMS, stop trying for this many seconds, doubling with
        each further failure in a row, up to 300 (default 10). Records meanwhile count as failed
        and go into the summary sent when the pause ends.
    :param clock: the monotonic clock of the budget, dedupe and backoff (for tests).
    """

    def __init__(
        self,
        url: str | None = None,
        phones: str | Iterable[str] | None = None,
        level: int | str = logging.CRITICAL,
        *,
        max_sms: int | None = None,
        per_seconds: float | None = None,
        dedupe_seconds: float | None = None,
        dedupe_size: int | None = None,
        queue_size: int | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        flush_timeout: float | None = None,
        prefix: str | None = None,
        failure_backoff: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Everything is checked before logging.Handler.__init__ registers the handler with
        # logging: a handler refused here must not linger in logging's list, where
        # logging.shutdown (at exit, and in every later dictConfig) would call it half-built.
        # None means "not given": the resolver then takes MOBILGROUP, the environment or the
        # table's default for alerts, and knows which one it took.
        self._arguments: dict[str, Any] = {
            "phones": phones, "max_sms": max_sms, "per_seconds": per_seconds,
            "dedupe_seconds": dedupe_seconds, "dedupe_size": dedupe_size,
            "queue_size": queue_size, "timeout": timeout, "retries": retries,
            "flush_timeout": flush_timeout, "prefix": prefix,
            "failure_backoff": failure_backoff}
        self._clock = clock
        self._apply_options(adapter_options("logging", self._arguments))
        # Resolved now when possible (a wrong setting must show at start-up), else in the worker
        # (Django imported, settings not configured yet). The URL is parsed now and not kept.
        self._settings: Settings | None = None
        self._phones: tuple[str, ...] = ()
        self._resolve(url, deferrable=True)
        self._client: MobilgroupClient | None = None
        try:
            super().__init__(level)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                "level", level, f"not a logging level ({exc})",
                "give a level name such as CRITICAL or ERROR, or its number",
                option="level") from None
        self._init_runtime()
        _LIVE_HANDLERS.add(self)

    # --- configuration ------------------------------------------------------------------------

    def _apply_options(self, options: Mapping[str, Any]) -> None:
        self.max_sms: int = options["max_sms"]
        self.per_seconds = float(options["per_seconds"])
        self.dedupe_seconds = float(options["dedupe_seconds"])
        self.dedupe_size: int = options["dedupe_size"]
        self.queue_size: int = options["queue_size"]
        self.flush_timeout = float(options["flush_timeout"])
        self.prefix = " ".join(str(options["prefix"]).split())
        self.failure_backoff = float(options["failure_backoff"])

    def _resolve(self, url: str | None, *, deferrable: bool) -> bool:
        """Find settings and phones. False when they must wait for Django's settings."""
        django = django_setting()
        if url is None and django is None and deferrable and django_settings_pending():
            return False
        resolved: Resolved = resolve("logging", arguments=self._arguments, url=url,
                                     setting=django)
        if not resolved.settings.phones:
            raise ConfigurationError(
                "phones", None, "no phone to send alerts to",
                "give phones=[...], put them in the URL (mobilgroup://...@USER_ID/PHONE), or set "
                'MOBILGROUP["ALERT_PHONES"]', option="phones")
        self._apply_options(resolved.values)
        self._settings = resolved.settings
        self._phones = resolved.settings.phones
        return True

    @property
    def phones(self) -> tuple[str, ...]:
        """The recipients (empty until Django's settings could be read, if they come from there)."""
        return self._phones

    def _make_client(self) -> MobilgroupClient:
        if self._settings is None:
            self._resolve(None, deferrable=False)
        assert self._settings is not None
        return MobilgroupClient.from_settings(self._settings)

    # --- runtime state ------------------------------------------------------------------------

    def _init_runtime(self) -> None:
        """Queue, worker and limiter state: made here and again in a forked child."""
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._has_work = threading.Condition(self._mutex)
        self._drained = threading.Condition(self._mutex)
        self._queue: deque[_Item] = deque()
        self._worker: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._closed = False
        self._stopping = False
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_timed_out = False
        self._dropped = 0
        self._last_dropped: _Item | None = None
        # Owned by the worker thread alone:
        self._sent_at: deque[float] = deque()
        self._seen: OrderedDict[tuple[int, str, str], _Seen] = OrderedDict()
        self._pending = _Pending()
        #: SMS that may have reached the gateway, with their ids, to be resent (resend=True).
        self._unsure: deque[tuple[str, int]] = deque()
        self._dropped_reported = 0
        self._failures = 0
        self._pause_until = 0.0
        self._sent = self._suppressed = self._deduplicated = self._failed = self._summaries = 0

    def _after_fork(self) -> None:
        """In a forked child: a fresh queue and worker; the parent's ones are not ours.

        The client is dropped without closing (its pooled sockets belong to the parent too);
        the budget and dedupe memory start afresh, as do the stats, which describe this process.
        """
        self._client = None
        closed = getattr(self, "_closed", False)
        self._init_runtime()
        self._closed = closed

    @property
    def stats(self) -> HandlerStats:
        with self._mutex:
            dropped, queued = self._dropped, len(self._queue)
        return HandlerStats(sent=self._sent, suppressed=self._suppressed,
                            deduplicated=self._deduplicated, dropped=dropped,
                            failed=self._failed, summaries=self._summaries, queued=queued)

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} ({level}) to {len(self._phones)} phone(s)>"

    # --- the caller's side --------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit, without taking the handler's lock: ``emit`` needs none, and
        ``logging.shutdown`` holds that lock while it calls ``flush`` and ``close``."""
        if threading.get_ident() == self._worker_ident:
            return False
        name = record.name
        if name.partition(".")[0] in GUARDED_LOGGERS:
            return False
        result = self.filter(record)
        if result:
            if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter may swap it
                record = result
            self.emit(record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record for the worker. Never blocks on the network and never raises."""
        try:
            if self._pid != os.getpid():
                self._after_fork()
            item = self._prepare(record)
            with self._mutex:
                if self._closed or len(self._queue) >= self.queue_size:
                    self._dropped += 1
                    self._last_dropped = item  # so that the summary shows the newest record
                    return
                self._queue.append(item)
                if self._worker is None:
                    self._start_worker()
                self._has_work.notify()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _prepare(self, record: logging.LogRecord) -> _Item:
        message = record.getMessage()
        if len(message) > MAX_QUEUED_CHARS:
            message = message[:MAX_QUEUED_CHARS]
        exception = ""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            exception = f"{type(exc).__name__}: {exc}"[:MAX_QUEUED_CHARS]
        formatted: str | None = None
        formatter = self.formatter
        if formatter is not None:
            # The formatter's line, without the traceback an SMS has no room for.
            record.message = message
            if formatter.usesTime():
                record.asctime = formatter.formatTime(record, formatter.datefmt)
            formatted = formatter.formatMessage(record)[:MAX_QUEUED_CHARS]
        return _Item(record.created, record.levelno, record.levelname, record.name, message,
                     exception, formatted)

    def _start_worker(self) -> None:
        """Start the worker (the mutex is held)."""
        worker = threading.Thread(target=self._run, name=f"SmsHandler-{id(self):x}", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # interpreter shutting down: no new threads
            self._queue.pop()
            self._dropped += 1
            return
        self._worker = worker

    # --- flush and close ----------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until the queue is drained and due summaries are sent, at most ``flush_timeout``.

        Never raises: ``logging.shutdown`` calls it at exit, and an exception there would stop it
        before it flushed the handlers after this one.
        """
        try:
            self._flush()
        except Exception as exc:
            self._report(exc, "flushing the SMS handler failed")

    def _flush(self) -> None:
        if self._pid != os.getpid():
            return
        if _holding_logging_lock():  # inside dictConfig: wake the worker, do not wait for it
            with self._mutex:
                self._has_work.notify()
            return
        self._flush_timed_out = not self._wait_drained(time.monotonic() + self.flush_timeout)

    def _wait_drained(self, deadline: float) -> bool:
        with self._mutex:
            worker = self._worker
            if worker is None or not worker.is_alive():
                return True
            self._flush_requested += 1
            target = self._flush_requested
            self._has_work.notify()
            while self._flush_done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not worker.is_alive():
                    return self._flush_done >= target
                self._drained.wait(left)
            return True

    def close(self) -> None:
        """Flush, send a pending summary, stop the worker; at most ``flush_timeout``. Idempotent.

        If the ``flush()`` just before (``logging.shutdown`` calls both) ran out of time, the
        gateway is stalled: close only tells the worker to stop, so that exit waits once, not
        twice. Inside ``dictConfig`` (which closes the handlers it replaces while holding the
        logging lock) the worker finishes in the background instead, and the process waits for
        it at exit, again at most ``flush_timeout``.
        """
        try:
            self._close()
        except Exception as exc:  # logging.shutdown must go on to the next handler
            self._report(exc, "closing the SMS handler failed")
        finally:
            _LIVE_HANDLERS.discard(self)
            with contextlib.suppress(Exception):
                super().close()

    def _close(self) -> None:
        with self._mutex:
            first = not self._closed
            self._closed = True
            worker = self._worker if self._pid == os.getpid() else None
            if first and worker is not None:
                self._stopping = True
                self._has_work.notify()
        if first and worker is not None and worker.is_alive():
            if _holding_logging_lock():
                with _FINISHING_LOCK:
                    _FINISHING.add(self)
                return
            wait = 0.05 if self._flush_timed_out else self.flush_timeout
            worker.join(wait)

    # --- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        self._worker_ident = threading.get_ident()
        while True:
            with self._mutex:
                while (not self._queue and not self._stopping
                       and self._flush_requested == self._flush_done):
                    wait = self._next_timer()
                    if wait is not None and wait <= 0:
                        break
                    self._has_work.wait(wait)
                target = self._flush_requested
                item = self._queue.popleft() if self._queue else None
                stopping = self._stopping and not self._queue
            try:
                if item is not None:
                    self._process(item)
                self._summary_if_due(final=stopping)
            except Exception as exc:  # never let the worker die
                self._report(exc, "the SMS handler's worker failed")
            with self._mutex:
                if not self._queue:
                    self._flush_done = max(self._flush_done, target)
                    self._drained.notify_all()
                if stopping:
                    self._flush_done = self._flush_requested
                    self._drained.notify_all()
                    self._worker_ident = None
            if stopping:
                self._finish()
                return

    def _finish(self) -> None:
        """The worker's last act: close the client and leave the set of finishing handlers."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing sockets is best effort
                client.close()
        with _FINISHING_LOCK:
            _FINISHING.discard(self)

    def _next_timer(self) -> float | None:
        """Seconds until a held-back summary may go out; None when there is nothing to send."""
        if self._pending.count == 0 and not self._unsure:
            return None
        now = self._clock()
        return max(self._budget_opens(now), self._pause_until) - now

    def _budget_opens(self, now: float) -> float:
        sent = self._sent_at
        while sent and now - sent[0] >= self.per_seconds:
            sent.popleft()
        if len(sent) < self.max_sms:
            return now
        return sent[0] + self.per_seconds

    def _process(self, item: _Item) -> None:
        now = self._clock()
        key = (item.levelno, item.name, item.message)
        seen = self._seen.get(key)
        if seen is not None and self.dedupe_seconds > 0 and now - seen.sent_at < self.dedupe_seconds:
            seen.repeats += 1
            seen.last = item
            self._seen.move_to_end(key)
            self._deduplicated += 1
            return
        if now < self._pause_until:
            self._failed += 1
            self._pending.add(item)
            return
        self._summary_if_due(final=False)
        if self._budget_opens(now) > now:
            self._suppressed += 1
            self._pending.add(item)
            return
        repeats = seen.repeats if seen is not None else 0
        delivered = self._deliver(lambda: self._shape(item, repeats))
        if delivered is not False:  # sent, or kept to be resent under its id
            self._seen[key] = _Seen(self._clock())
            self._seen.move_to_end(key)
            while len(self._seen) > self.dedupe_size:
                self._seen.popitem(last=False)
        else:
            self._failed += 1
            self._pending.add(item)

    def _summary_if_due(self, *, final: bool) -> None:
        """Send the summary of held-back records when the budget allows (or at close)."""
        with self._mutex:
            dropped, last_dropped = self._dropped, self._last_dropped
            caught_up = not self._queue
        self._resend_unsure(final=final)
        pending = self._pending
        if final:
            # Repeats the dedupe held back and no later copy reported: the exit summary counts
            # them, so that 999 repeats of one alert are never silently lost.
            for seen in self._seen.values():
                if seen.repeats and seen.last is not None:
                    pending.add(seen.last, seen.repeats)
                    seen.repeats = 0
        if dropped > self._dropped_reported and last_dropped is not None and caught_up:
            # Records the full queue refused are counted in the summary too, once the worker
            # has processed everything queued before them (they are newer).
            pending.add(last_dropped, dropped - self._dropped_reported)
            self._dropped_reported = dropped
        if pending.count == 0 or pending.last is None:
            return
        now = self._clock()
        if not final and (now < self._pause_until or self._budget_opens(now) > now):
            return
        if self._deliver(lambda: self._summary_text(pending)) is not False:
            self._summaries += 1
            self._pending = _Pending()

    def _resend_unsure(self, *, final: bool) -> None:
        """Resend, under their own ids, the SMS that may have reached the gateway: the client
        then takes "already sent" as accepted, so none goes out twice and none is lost."""
        while self._unsure and (final or self._clock() >= self._pause_until):
            text, request_id = self._unsure.popleft()
            outcome = self._deliver(lambda: text, request_id=request_id)  # noqa: B023 - called now
            if outcome is None:  # still unknown: again after the pause, or at exit
                self._unsure.appendleft((text, request_id))
                return
            if outcome is False:
                self._failed += 1  # refused for good (e.g. the account): counted, not retried

    def _deliver(self, text: Callable[[], str], *, request_id: int | None = None) -> bool | None:
        """One SMS to the alert phones: True when accepted, False (and the failure accounted)
        when surely not sent, None when it may have reached the gateway: it is then kept with
        its request id and resent with ``resend=True`` once the pause ends (or at exit).

        The text is made after the client, so that settings read late (from Django) decide its
        length limit. A failure pauses sending for ``failure_backoff`` seconds, doubling with
        each further failure in a row; the summary that follows the pause is the probe.
        """
        resend = request_id is not None
        rid = request_id if request_id is not None else protocol.new_request_id()
        message = ""
        try:
            if self._client is None:
                self._client = self._make_client()
            message = text()
            self._client.send(self._phones, message, transliterate=self._transliterate,
                              replace_unencodable=True, request_id=rid, resend=resend)
        except Exception as exc:
            self._failures += 1
            if self._failures == 1:
                self._report(exc, "an alert SMS could not be sent")
            pause = min(self.failure_backoff * 2 ** (self._failures - 1), MAX_FAILURE_PAUSE)
            self._pause_until = self._clock() + max(pause, MIN_FAILURE_PAUSE)
            if isinstance(exc, MobilgroupError) and exc.maybe_sent and message:
                if not resend:
                    self._unsure.append((message, rid))
                return None  # the client keeps maybe_sent for a failed resend too
            return False
        self._failures = 0
        self._pause_until = 0.0
        self._sent += 1
        self._sent_at.append(self._clock())
        return True

    def _report(self, exc: BaseException, what: str) -> None:
        """One line on stderr; the exception's text is built by this package without secrets."""
        known = isinstance(exc, MobilgroupError)
        reason = f"{type(exc).__name__}: {exc}" if known else type(exc).__name__
        line = (f"{type(self).__name__}: {what} ({reason}); further failures are only counted "
                f"(stats.failed) until an SMS goes out again\n")
        try:
            stream = sys.stderr
            if stream is not None:
                stream.write(line)
                stream.flush()
        except Exception:  # noqa: S110 - a closed stderr must not kill the alert path
            pass

    # --- SMS text -----------------------------------------------------------------------------

    @property
    def _transliterate(self) -> bool:
        return self._settings.transliterate if self._settings is not None else True

    def _limit(self) -> int:
        return protocol.text_limit(self._transliterate)

    def _shape(self, item: _Item, repeats: int = 0) -> str:
        """``[CRITICAL] prefix logger: message | Error: text``, fitted to one SMS."""
        if item.formatted is not None:
            text = item.formatted
        else:
            head = f"[{item.levelname}] " + (f"{self.prefix} " if self.prefix else "")
            text = f"{head}{item.name}: {item.message}"
        if item.exception:
            text += f" | {item.exception}"
        note = f" (repeated {repeats}x)" if repeats else ""
        return self._fit(text, note)

    def _summary_text(self, pending: _Pending) -> str:
        last = pending.last
        assert last is not None
        since = time.strftime("%H:%M", time.localtime(pending.since))
        level = logging.getLevelName(pending.levelno)
        head = f"{self.prefix} " if self.prefix else ""
        text = f"{head}+{pending.count} more {level} since {since}, last: {last.name}: {last.message}"
        if last.exception:
            text += f" | {last.exception}"
        return self._fit(text)

    def _fit(self, text: str, note: str = "") -> str:
        text = " ".join(text.split())
        fitted = protocol.fit_text(text, self._limit() - len(note), "truncate")[0] + note
        return protocol.check_text(fitted, transliterate=self._transliterate, replace=True)
