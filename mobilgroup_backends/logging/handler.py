"""The ``SmsHandler`` itself: configuration, the caller's side of ``logging``, and the wiring of
the worker (queue and thread) to the policy (budget, dedupe, summary, text) and the client."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..client import MobilgroupClient
from ..config import (
    Resolved,
    Settings,
    adapter_options,
    django_setting,
    django_settings_pending,
    resolve,
)
from ..errors import ConfigurationError, MobilgroupError
from .policy import AlertPolicy
from .store import Item, LocalStore, Store, make_store, parse_budget
from .worker import AlertWorker, write_stderr

__all__ = ["GUARDED_LOGGERS", "MAX_QUEUED_CHARS", "HandlerStats", "SmsHandler"]

#: Loggers whose records are never queued: the handler's own sending produces them.
GUARDED_LOGGERS = frozenset({"urllib3", "requests", "mobilgroup_backends", "redis"})

#: Characters of a record's message kept in the caller's thread (the SMS holds at most 140):
#: this is what bounds the memory of a full queue.
MAX_QUEUED_CHARS = 512

_LIVE_HANDLERS: weakref.WeakSet[SmsHandler] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for handler in list(_LIVE_HANDLERS):
        handler._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


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


class SmsHandler(logging.Handler):
    """A logging handler that texts records (CRITICAL and up by default) to on-call phones.

    Every argument is a JSON-friendly keyword, so ``dictConfig`` and Django's ``LOGGING`` can
    build it with ``"class"`` (or ``"()"``). Nothing here touches the network: the client is made
    in the worker thread, on the first record.

    :param url: ``mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE...``; what it leaves out comes from
        Django's ``settings.MOBILGROUP``, then ``MOBILGROUP_URL`` and the ``MOBILGROUP_*``
        variables (the precedence every adapter shares, docs/configuration.md).
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
    :param budget: where the budget, dedupe memory and summary live: unset for this process's
        own, or ``redis://HOST:PORT/DB?key=NAME`` for one budget shared by every process and
        host using that key (needs the ``redis`` package: the ``redis`` extra).
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
        budget: str | None = None,
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
            "failure_backoff": failure_backoff, "budget": budget}
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
        self.prefix: str = options["prefix"]
        self.failure_backoff = float(options["failure_backoff"])
        budget: str | None = options["budget"]
        if budget is not None:
            parse_budget(budget)  # refused now, with the password masked, not at the first alert
        self.budget = budget
        runtime: AlertWorker[Item] | None = getattr(self, "_runner", None)
        if runtime is not None:  # settings read late (from Django): the running parts follow
            runtime.queue_size = self.queue_size
            runtime.flush_timeout = self.flush_timeout
            self._policy.prefix = self.prefix
            self._policy.failure_backoff = self.failure_backoff

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
        self._policy.transliterate = self._settings.transliterate
        return MobilgroupClient.from_settings(self._settings)

    # --- runtime state ------------------------------------------------------------------------

    def _make_store(self) -> Store:
        return make_store(self.budget, max_sms=self.max_sms, per_seconds=self.per_seconds,
                          dedupe_seconds=self.dedupe_seconds, dedupe_size=self.dedupe_size,
                          clock=self._clock)

    def _init_runtime(self) -> None:
        """The worker and the policy: made here and again in a forked child."""
        self._pid = os.getpid()
        self._runner: AlertWorker[Item] = AlertWorker(
            name=f"SmsHandler-{id(self):x}", queue_size=self.queue_size,
            flush_timeout=self.flush_timeout, process=self._process, tick=self._tick,
            next_timer=self._next_timer, finish=self._finish,
            on_error=lambda exc: self._report(exc, "the SMS handler's worker failed"))
        self._policy = AlertPolicy(
            self._make_store(), clock=self._clock, failure_backoff=self.failure_backoff,
            prefix=self.prefix, report=lambda exc: self._report(exc, "an alert SMS could not be sent"))
        if self._settings is not None:
            self._policy.transliterate = self._settings.transliterate
        self._dropped_reported = 0

    def _after_fork(self) -> None:
        """In a forked child: a fresh queue and worker; the parent's ones are not ours.

        The client is dropped without closing (its pooled sockets belong to the parent too);
        the budget and dedupe memory start afresh (a shared budget stays shared: the child
        opens its own connection to Redis), as do the stats, which describe this process.
        """
        self._client = None
        closed = self._runner.closed
        self._init_runtime()
        self._runner.closed = closed

    # Views of the parts, for tests and debugging.
    @property
    def _worker(self) -> threading.Thread | None:
        return self._runner.thread

    @property
    def _seen(self) -> Mapping[str, Any]:
        store = self._policy.store
        return store.seen if isinstance(store, LocalStore) else {}

    @property
    def _failures(self) -> int:
        return self._policy.failures

    @property
    def _pause_until(self) -> float:
        return self._policy.pause_until

    @property
    def stats(self) -> HandlerStats:
        queued, dropped, _ = self._runner.backlog()
        policy = self._policy
        return HandlerStats(sent=policy.sent, suppressed=policy.suppressed,
                            deduplicated=policy.deduplicated, dropped=dropped,
                            failed=policy.failed, summaries=policy.summaries, queued=queued)

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} ({level}) to {len(self._phones)} phone(s)>"

    # --- the caller's side --------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit, without taking the handler's lock: ``emit`` needs none, and
        ``logging.shutdown`` holds that lock while it calls ``flush`` and ``close``."""
        if threading.get_ident() == self._runner.thread_ident:
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
            self._runner.submit(self._prepare(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _prepare(self, record: logging.LogRecord) -> Item:
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
        return Item(record.created, record.levelno, record.levelname, record.name, message,
                    exception, formatted)

    # --- flush and close ----------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until the queue is drained and due summaries are sent, at most ``flush_timeout``.

        Never raises: ``logging.shutdown`` calls it at exit, and an exception there would stop it
        before it flushed the handlers after this one.
        """
        try:
            self._runner.flush()
        except Exception as exc:
            self._report(exc, "flushing the SMS handler failed")

    def close(self) -> None:
        """Flush, send a pending summary, stop the worker; at most ``flush_timeout``. Idempotent.

        If the ``flush()`` just before (``logging.shutdown`` calls both) ran out of time, the
        gateway is stalled: close only tells the worker to stop, so that exit waits once, not
        twice. Inside ``dictConfig`` (which closes the handlers it replaces while holding the
        logging lock) the worker finishes in the background instead, and the process waits for
        it at exit, again at most ``flush_timeout``. Never raises, for ``logging.shutdown``.
        """
        try:
            self._runner.close()
        except Exception as exc:  # logging.shutdown must go on to the next handler
            self._report(exc, "closing the SMS handler failed")
        finally:
            _LIVE_HANDLERS.discard(self)
            with contextlib.suppress(Exception):
                super().close()

    # --- the worker's side --------------------------------------------------------------------

    def _process(self, item: Item) -> None:
        self._policy.process(item, self._send)

    def _tick(self, final: bool) -> None:
        """After every record and on the timer: count what the full queue refused, send a due
        summary (at close: any pending one)."""
        queued, dropped, last_dropped = self._runner.backlog()
        if dropped > self._dropped_reported and last_dropped is not None and not queued:
            # Records the full queue refused are counted in the summary too, once the worker
            # has processed everything queued before them (they are newer).
            self._policy.defer(last_dropped, dropped - self._dropped_reported)
            self._dropped_reported = dropped
        if final:
            self._policy.count_unreported_repeats()
        self._policy.summary_if_due(self._send, final=final)

    def _next_timer(self) -> float | None:
        return self._policy.next_timer()

    def _send(self, text: Callable[[], str], *, request_id: int | None = None,
              resend: bool = False) -> None:
        """One SMS to the alert phones. The text is made after the client, so that settings read
        late (from Django) decide its length limit."""
        if self._client is None:
            self._client = self._make_client()
        # Every setting (sender, valid, translit, region, unencodable characters) is the
        # client's to apply; the text is already fitted to one SMS.
        outgoing = self._client.prepare(self._phones, text(), request_id=request_id)
        self._client.send_prepared(outgoing, resend=resend)

    def _finish(self) -> None:
        """The worker's last act: close the client and the store's connection."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing sockets is best effort
                client.close()
        with contextlib.suppress(Exception):
            self._policy.store.close()

    def _report(self, exc: BaseException, what: str) -> None:
        """One line on stderr; the exception's text is built by this package without secrets."""
        known = isinstance(exc, MobilgroupError)
        reason = f"{type(exc).__name__}: {exc}" if known else type(exc).__name__
        line = (f"{type(self).__name__}: {what} ({reason}); further failures are only counted "
                f"(stats.failed) until an SMS goes out again\n")
        write_stderr(line)
