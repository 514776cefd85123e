"""The alert policy: which records become an SMS, which are counted for a summary, and the text.

Pure: no threads, no queue, no network of its own. It is handed records one at a time and a
``send(text)`` function, and reads time from an injected clock, so tests drive it step by step.
The budget, dedupe memory and pending summary live in a store (this process's, or Redis for a
whole fleet); the pause after failed sends is this process's own, since it is this process that
cannot reach the gateway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .. import protocol
from .store import Item, Pending, Store, Verdict

__all__ = ["MAX_FAILURE_PAUSE", "MIN_FAILURE_PAUSE", "AlertPolicy"]

#: Bounds of the pause after failures, whatever ``failure_backoff`` says.
MAX_FAILURE_PAUSE = 300.0
MIN_FAILURE_PAUSE = 0.05

Send = Callable[[Callable[[], str]], None]
"""Sends one SMS with the text the callable makes (made late: settings read late decide its
length limit); raises when it did not go."""


class AlertPolicy:
    """Budget, dedupe, pending summary, failure pause and text shaping for one handler."""

    def __init__(self, store: Store, *, clock: Callable[[], float], failure_backoff: float,
                 prefix: str = "", report: Callable[[BaseException], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.failure_backoff = failure_backoff
        self.prefix = prefix
        self.transliterate = True
        self._report = report
        self.failures = 0
        self.pause_until = 0.0
        self.sent = self.suppressed = self.deduplicated = self.failed = self.summaries = 0

    # --- decisions ----------------------------------------------------------------------------

    def process(self, item: Item, send: Send) -> None:
        """Send ``item``, or count it (deduplicated, held back, failed) for the summary."""
        paused = self.clock() < self.pause_until
        if not paused:
            self.summary_if_due(send, final=False)
            paused = self.clock() < self.pause_until
        decision = self.store.admit(item, paused=paused)
        if decision.verdict is Verdict.DUPLICATE:
            self.deduplicated += 1
        elif decision.verdict is Verdict.HELD:
            self.failed += 1
        elif decision.verdict is Verdict.SUPPRESSED:
            self.suppressed += 1
        elif not self._deliver(send, lambda: self.shape(item, decision.repeats)):
            self.store.release(item, decision)
            self.store.defer(item)
            self.failed += 1

    def defer(self, item: Item, count: int = 1) -> None:
        """Count records that never reached the policy (a full queue) in the next summary."""
        self.store.defer(item, count)

    def count_unreported_repeats(self) -> None:
        """At exit: repeats the dedupe held back and no later copy reported go in the summary."""
        self.store.flush_repeats()

    def summary_if_due(self, send: Send, *, final: bool) -> None:
        """Send the summary of held-back records when the budget allows (at close: anyway)."""
        if not final and self.clock() < self.pause_until:
            return
        claimed = self.store.claim_summary(final=final)
        if claimed is None:
            return
        pending, reservation = claimed
        if self._deliver(send, lambda: self.summary_text(pending)):
            self.summaries += 1
        else:
            self.store.unclaim(pending, reservation)

    def next_timer(self) -> float | None:
        """Seconds until a held-back summary may go out; None when nothing is waiting."""
        wait = self.store.summary_wait()
        if wait is None:
            return None
        return max(wait, self.pause_until - self.clock())

    def _deliver(self, send: Send, text: Callable[[], str]) -> bool:
        """One SMS; False (and the failure accounted) when it did not go.

        A failure pauses sending for ``failure_backoff`` seconds, doubling with each further
        failure in a row; the summary that follows the pause is the probe.
        """
        try:
            send(text)
        except Exception as exc:
            self.failures += 1
            if self.failures == 1 and self._report is not None:
                self._report(exc)
            pause = min(self.failure_backoff * 2 ** (self.failures - 1), MAX_FAILURE_PAUSE)
            self.pause_until = self.clock() + max(pause, MIN_FAILURE_PAUSE)
            return False
        self.failures = 0
        self.pause_until = 0.0
        self.sent += 1
        return True

    # --- SMS text -----------------------------------------------------------------------------

    def shape(self, item: Item, repeats: int = 0) -> str:
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

    def summary_text(self, pending: Pending) -> str:
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
        limit = protocol.text_limit(self.transliterate)
        fitted = protocol.fit_text(text, limit - len(note), "truncate")[0] + note
        return protocol.check_text(fitted, transliterate=self.transliterate, replace=True)
