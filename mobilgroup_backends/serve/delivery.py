"""Sending a notification: the alert budget first, then the message the client prepared.

The client makes the SMS (:meth:`~mobilgroup_backends.client.MobilgroupClient.prepare`), every
setting applied as for any message: ``max_parts`` (the receiver's default: one), the last part
cut with an ellipsis, transliteration, characters the gateway cannot carry replaced. The receiver
only gives the parts ids derived from the notification, and sends it as it is with
``resend=True``.

The budget, dedupe memory and pending summary are the logging handler's
(:mod:`mobilgroup_backends.logging.store`, this process's or a whole fleet's in Redis), and so is
the summary SMS (:class:`~mobilgroup_backends.logging.policy.AlertPolicy`): a notification the
budget holds back is counted, answered as handled, and told in one summary when the window
reopens. The store is not thread-safe and the server runs requests on several threads: one lock
serialises the store's decisions (never a gateway exchange of a notification).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..client import MobilgroupClient, Sent
from ..errors import MobilgroupError
from ..errors import Verdict as Failure
from ..logging.policy import AlertPolicy
from ..logging.store import Item, Store, Verdict
from ..outgoing import Outgoing
from .notifications import Notification, request_ids

__all__ = ["Delivery", "Outcome", "answer_status"]

#: Characters of a notification kept for the summary (the store may keep it in Redis): an SMS
#: shows fewer anyway.
MAX_KEPT_CHARS = 512

#: The summary thread looks at the budget at least this often (seconds).
SUMMARY_POLL = 5.0

#: The answer to a failed send, by the error's verdict. 5xx whenever the notification can still
#: go out later, so that Alertmanager and Grafana try again (with the same ids: nothing goes
#: twice): 503 when trying again can mend it (the gateway down, the answer lost), 502 when the
#: set-up must be fixed first (the account blocked or out of money; the endpoint refusing HTTP,
#: an untrusted certificate, a request the gateway refuses for good). 422 when the local checks
#: refuse the notification as it is, which the tools do not retry.
STATUS_BY_VERDICT: dict[Failure, int] = {
    Failure.RETRY: 503, Failure.UNKNOWN: 503, Failure.ACCOUNT: 502, Failure.REFUSED: 502,
    Failure.INVALID: 422}


def answer_status(exc: MobilgroupError) -> int:
    """The HTTP status a failed send is answered with (:data:`STATUS_BY_VERDICT`)."""
    return STATUS_BY_VERDICT[exc.verdict]


@dataclass(frozen=True)
class Outcome:
    """What became of one notification: ``verdict`` is ``sent``, ``held`` (the budget, counted
    for the summary) or ``duplicate`` (dedupe); ``phones`` its recipients as the gateway gets
    them; ``request_ids`` those of its parts."""

    verdict: str
    phones: tuple[str, ...]
    request_ids: tuple[int, ...] = ()
    accepted_earlier: bool = False
    parts: int = 0


class Delivery:
    """Budget, sending and the summary thread of one receiver."""

    def __init__(self, client: MobilgroupClient, store: Store, *, prefix: str,
                 failure_backoff: float, summary_phones: Sequence[str],
                 observe: Callable[[float], None] = lambda seconds: None,
                 on_summary: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.prefix = prefix
        self.summary_phones = tuple(summary_phones)
        self.observe = observe
        self.on_summary = on_summary
        self.policy = AlertPolicy(store, clock=clock, failure_backoff=failure_backoff,
                                  prefix=prefix, report=self._report)
        # The summary is fitted to one SMS of the client's kind.
        self.policy.transliterate = client.settings.transliterate
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread: threading.Thread | None = None

    def text(self, notification: Notification) -> str:
        """The SMS text: one line, after the prefix."""
        text = f"{self.prefix} {notification.text}" if self.prefix else notification.text
        return " ".join(text.split())

    def deliver(self, notification: Notification, phones: str | Sequence[str]) -> Outcome:
        """Send ``notification`` to ``phones`` (read by the client, as any message's) within the
        budget; raise what the gateway raised (the budget slot is then given back: the tool
        retries, and the retry takes one again). A notification the client refuses to make (a
        ``ValidationError``: its phones, its text) takes no slot."""
        text = self.text(notification)
        outgoing = self.client.prepare(phones, text)
        if notification.identity is not None:
            # Derived ids are this notification's own: the gateway's "this id was sent already"
            # then means this very SMS went out before (an earlier try, another replica).
            outgoing = outgoing.with_request_ids(
                request_ids(notification.identity, outgoing.phones, len(outgoing.parts)))
        item = Item(time.time(), logging.CRITICAL if notification.status == "firing"
                    else logging.INFO, notification.status.upper(),
                    notification.receiver or notification.source,
                    text[:MAX_KEPT_CHARS], "", None)
        with self._lock:
            decision = self.policy.store.admit(item, paused=False)
        if decision.verdict is Verdict.DUPLICATE:
            return Outcome("duplicate", outgoing.phones)
        if decision.verdict is not Verdict.SEND:
            self._start_summaries()
            return Outcome("held", outgoing.phones)
        try:
            sent = self._send(outgoing, resend=notification.identity is not None)
        except BaseException:
            with self._lock:
                self.policy.store.release(item, decision)
            raise
        earlier = all(result.accepted_earlier for result in sent)
        if earlier:  # another process (or an earlier try) sent it and spent the budget on it
            with self._lock:
                self.policy.store.release(item, decision)
        return Outcome("sent", outgoing.phones, outgoing.request_ids, earlier,
                       len(outgoing.parts))

    def _send(self, outgoing: Outgoing, *, resend: bool) -> Sent:
        started = time.perf_counter()
        try:
            return self.client.send_prepared(outgoing, resend=resend)
        finally:
            self.observe(time.perf_counter() - started)

    # --- the summary of what the budget held back ----------------------------------------------

    def _send_summary(self, text: Callable[[], str], *, request_id: int | None = None,
                      resend: bool = False) -> None:
        """The policy's sender: a summary gets a fresh id, a resend of one the id it had."""
        self._send(self.client.prepare(self.summary_phones, text(), request_id=request_id),
                   resend=resend)

    def summary_if_due(self, *, final: bool = False) -> None:
        """Send the pending summary if the budget has room (at close: anyway)."""
        with self._lock:
            before = self.policy.summaries
            self.policy.summary_if_due(self._send_summary, final=final)
            sent = self.policy.summaries - before
        for _ in range(sent):
            self.on_summary()

    def _start_summaries(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._summaries, daemon=True,
                                                name="mobilgroup-serve-summary")
                self._thread.start()

    def _summaries(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                wait = self.policy.next_timer()
                self._wake.wait(SUMMARY_POLL if wait is None else
                                min(max(wait, 0.05), SUMMARY_POLL))
                if self._closed:
                    return
            try:
                self.summary_if_due()
            except Exception as exc:  # the thread must live on; the next poll tries again
                self._report(exc)

    def close(self, *, final_summary: bool = True) -> None:
        """Stop the summary thread; send a pending summary (bounded by the client's timeout)."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(SUMMARY_POLL * 2)
        if final_summary:
            with contextlib.suppress(Exception):
                self.summary_if_due(final=True)
        with contextlib.suppress(Exception):
            self.policy.store.close()

    def _report(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}" if isinstance(exc, MobilgroupError) \
            else type(exc).__name__
        logging.getLogger("mobilgroup_backends.serve").warning(
            "the summary SMS could not be sent (%s); trying again later", reason)

