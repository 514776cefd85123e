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
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from .. import protocol
from ..client import backoff_delay
from ..errors import MobilgroupError
from ..errors import Verdict as Failure
from .store import Item, Pending, Store, Verdict

__all__ = ["MAX_FAILURE_PAUSE", "MIN_FAILURE_PAUSE", "AlertPolicy"]

#: Bounds of the pause after failures, whatever ``failure_backoff`` says.
MAX_FAILURE_PAUSE = 300.0
MIN_FAILURE_PAUSE = 0.05

#: What became of one SMS (see ``AlertPolicy._deliver``).
Delivery = Literal["sent", "unsure", "retry", "dropped"]


class Send(Protocol):
    """Sends one SMS with the text the callable makes (made late: settings read late decide its
    length limit); raises when it did not go. ``request_id`` and ``resend`` are given only to
    resend an SMS that may have reached the gateway, under its own id."""

    def __call__(self, text: Callable[[], str], *, request_id: int | None = ...,
                 resend: bool = ...) -> None: ...


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
        #: SMS whose send failed but may have reached the gateway, with their request ids:
        #: resent under those ids (never counted again in a summary, which would send them twice).
        self.unsure: deque[tuple[str, int]] = deque()
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
        else:
            outcome = self._deliver(send, lambda: self.shape(item, decision.repeats))
            if outcome == "retry":
                self.store.release(item, decision)
                self.store.defer(item)  # goes out in the summary after the pause
                self.failed += 1
            elif outcome == "dropped":
                self.store.release(item, decision)
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
        self._resend_unsure(send)
        if not final and self.clock() < self.pause_until:
            return
        claimed = self.store.claim_summary(final=final)
        if claimed is None:
            return
        pending, reservation = claimed
        outcome = self._deliver(send, lambda: self.summary_text(pending))
        if outcome in ("sent", "unsure"):
            self.summaries += 1
        elif outcome == "retry":
            self.store.unclaim(pending, reservation)
        else:
            self.failed += pending.count  # refused for good: resending the summary cannot help

    def next_timer(self) -> float | None:
        """Seconds until a held-back summary may go out; None when nothing is waiting."""
        wait = self.store.summary_wait()
        if self.unsure:
            wait = 0.0 if wait is None else min(wait, 0.0)
        if wait is None:
            return None
        return max(wait, self.pause_until - self.clock())

    def _deliver(self, send: Send, text: Callable[[], str]) -> Delivery:
        """One SMS, and what became of it, by the failure's verdict: ``sent``; ``unsure`` (it
        may have reached the gateway: the text and its request id are kept for a resend under
        that id, and it counts as handed over); ``retry`` (it surely did not go, and trying
        later can mend that: an unreachable gateway, an account out of money); ``dropped`` (it
        will not mend by itself: a refused text, a wrong endpoint; never tried again).

        Any failure pauses sending for ``failure_backoff`` seconds, doubling with each further
        failure in a row; the summary that follows the pause is the probe.
        """
        made: list[str] = []

        def making() -> str:
            made.append(text())
            return made[-1]

        try:
            send(making)
        except Exception as exc:
            self._failed(exc)
            verdict = exc.verdict if isinstance(exc, MobilgroupError) else Failure.RETRY
            if verdict is Failure.UNKNOWN and made and isinstance(exc, MobilgroupError) \
                    and exc.request_id is not None:
                self.unsure.append((made[-1], exc.request_id))
                return "unsure"
            return "retry" if verdict in (Failure.RETRY, Failure.UNKNOWN, Failure.ACCOUNT) \
                else "dropped"
        self._succeeded()
        return "sent"

    def _resend_unsure(self, send: Send) -> None:
        """Resend what may have reached the gateway, under its own id (``resend=True``): the
        client takes the gateway's "already sent" as accepted, so it goes out exactly once."""
        while self.unsure:
            text, request_id = self.unsure[0]
            try:
                send(lambda: text, request_id=request_id, resend=True)  # noqa: B023 - called now
            except Exception as exc:
                self._failed(exc)
                if not isinstance(exc, MobilgroupError) or exc.verdict.try_again \
                        or exc.verdict is Failure.ACCOUNT:
                    return  # still to be sent: again after the pause, or at exit
                self.unsure.popleft()  # refused for good: it was not sent, and will not be
                self.failed += 1
                continue
            self.unsure.popleft()
            self._succeeded()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1 and self._report is not None:
            self._report(exc)
        pause = backoff_delay(self.failure_backoff, self.failures, jitter=False,
                              cap=MAX_FAILURE_PAUSE)
        self.pause_until = self.clock() + max(pause, MIN_FAILURE_PAUSE)

    def _succeeded(self) -> None:
        self.failures = 0
        self.pause_until = 0.0
        self.sent += 1

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
