"""Sending a planned mailing, concurrently, and asking for its delivery reports.

Exactly once, however often a run is interrupted: every request id is in the state file before
the first send; a run sends only what is not recorded as accepted, and a run after the first
sends with ``resend=True``, so a request the gateway already has is answered with error 7 and
counted as accepted earlier instead of being sent twice.

A run acts on each failure's verdict: one that says the account must be fixed first (wrong
credentials, a blocked account, no money) stops the run after the requests already on the wire,
instead of spending every remaining row on the same refusal; the next run, once the account is
fixed, sends the rest.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..client import MobilgroupClient
from ..errors import MobilgroupError, UnknownRequestId, Verdict, error_to_dict
from ..protocol import StatusReport
from .state import MailingState, StoredRequest

__all__ = ["Outcome", "RunSummary", "fetch_reports", "send_mailing"]


@dataclass(frozen=True)
class Outcome:
    """What became of one request in this run."""

    request: StoredRequest
    accepted: bool
    attempts: int = 1
    accepted_earlier: bool = False
    error: MobilgroupError | None = None


@dataclass
class RunSummary:
    """One run: its outcomes counted in requests and messages, and whether it was interrupted."""

    accepted_requests: int = 0
    accepted_messages: int = 0
    failed_requests: int = 0
    failed_messages: int = 0
    accepted_earlier: int = 0
    #: Failed requests whose verdict says another try cannot mend them by itself.
    refused: int = 0
    interrupted: bool = False
    #: The failure that stopped the run because the account must be fixed first, if one did.
    account_error: MobilgroupError | None = None
    seconds: float = 0.0
    #: The failures of this run, one of each kind (at most five).
    errors: list[MobilgroupError] = field(default_factory=list)

    def to_dict(self, state: MailingState) -> dict[str, Any]:
        """This run and the whole mailing so far (``state``), as JSON: what ``mobilgroup mailing
        send --json`` prints. ``stopped`` is the failure that stopped the run for its account
        (its :func:`~mobilgroup_backends.errors.error_to_dict` shape), else None."""
        counts = state.counts()
        due = state.report_due()
        return {"ok": counts["accepted_messages"] == counts["messages"],
                "interrupted": self.interrupted, "state": str(state.path),
                "messages": counts["messages"], "accepted": counts["accepted_messages"],
                "failed": counts["failed_messages"],
                "left": counts["messages"] - counts["accepted_messages"],
                "requests": counts["requests"], "accepted_earlier": counts["accepted_earlier"],
                "this_run": {"accepted": self.accepted_messages, "failed": self.failed_messages,
                             "seconds": round(self.seconds, 3)},
                "report_due": due.isoformat(timespec="minutes") if due else None,
                "stopped": (error_to_dict(self.account_error, "cli")
                            if self.account_error else None),
                "errors": [str(e) for e in self.errors]}

    def add(self, outcome: Outcome) -> None:
        size = len(outcome.request.phones)
        if outcome.accepted:
            self.accepted_requests += 1
            self.accepted_messages += size
            self.accepted_earlier += outcome.accepted_earlier
        else:
            self.failed_requests += 1
            self.failed_messages += size
            error = outcome.error
            if error is None:
                return
            if not error.verdict.try_again:
                self.refused += 1
            kind = _kind(error)
            if len(self.errors) < 5 and all(_kind(seen) != kind for seen in self.errors):
                self.errors.append(error)


def _kind(error: MobilgroupError) -> tuple[type, int | None, str]:
    """Failures alike for the summary: the same class, gateway code and verdict."""
    return type(error), getattr(error, "code", None), error.verdict.value


def send_mailing(state: MailingState, client: MobilgroupClient, *, concurrency: int = 8,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 stop: threading.Event | None = None,
                 commit_every: int = 32, commit_seconds: float = 0.25) -> RunSummary:
    """Send what the state file does not have as accepted; record each outcome as it comes.

    ``concurrency`` threads take requests in plan order; this thread writes their outcomes,
    committing every ``commit_every`` outcomes or ``commit_seconds``, so the file is never the
    bottleneck. A request whose outcome was not committed yet (the process killed) is simply sent
    again by the next run, safely.

    Setting ``stop`` (from a signal handler, say: the command line sets it on Ctrl-C) or a
    ``KeyboardInterrupt`` stops the threads from taking new requests; those on the wire finish
    and are recorded, and the summary says ``interrupted``. ``stop`` is the precise way: an
    interrupt raised between taking an outcome and writing it down leaves that request to be
    resent (safely) by the next run.
    """
    unsent = state.unsent()
    count = len(unsent)
    resend = state.runs > 0
    state.start_run()
    summary = RunSummary()
    started = time.monotonic()
    if not count:
        return summary

    def send(request: StoredRequest) -> Outcome:
        try:
            [result] = client.send_prepared(request.outgoing, resend=resend)
        except MobilgroupError as exc:
            return Outcome(request, False, error=exc)
        return Outcome(request, True, result.attempts, result.accepted_earlier)

    # The requests come from the state file a chunk at a time (this thread reads it; the
    # workers never touch it), the queue kept a few rounds ahead of the workers. None tells a
    # worker there is nothing more.
    todo: queue.SimpleQueue[StoredRequest | None] = queue.SimpleQueue()
    results: queue.SimpleQueue[Outcome | BaseException] = queue.SimpleQueue()
    stop = stop if stop is not None else threading.Event()
    workers = [threading.Thread(target=lambda: _work(todo, results, send, stop),
                                name=f"mobilgroup-mailing-{n}", daemon=True)
               for n in range(max(1, min(concurrency, count)))]
    ahead = max(64, 8 * len(workers))
    pending = iter(unsent)
    submitted = 0
    exhausted = False

    def top_up() -> None:
        nonlocal submitted, exhausted
        while not exhausted and todo.qsize() < 2 * ahead:
            request = next(pending, None)
            if request is None:
                exhausted = True
                release_workers()
            else:
                todo.put(request)
                submitted += 1

    def release_workers() -> None:
        for _ in workers:
            todo.put(None)

    top_up()
    for worker in workers:
        worker.start()
    unwritten: list[Outcome] = []
    last_commit = time.monotonic()

    def flush() -> None:
        nonlocal last_commit
        if unwritten:
            state.record((o.request.seq, o.accepted, o.attempts, o.accepted_earlier,
                          str(o.error) if o.error else None) for o in unwritten)
            unwritten.clear()
        last_commit = time.monotonic()

    def take(item: Outcome | BaseException) -> None:
        if isinstance(item, BaseException):
            raise item
        summary.add(item)
        unwritten.append(item)
        if on_outcome is not None:
            on_outcome(item)
        if item.error is not None and item.error.verdict is Verdict.ACCOUNT \
                and summary.account_error is None:
            summary.account_error = item.error

    def wind_down() -> None:
        # Those already on the wire finish (each within the client's deadline) and are
        # recorded; the rest stay unsent for the next run.
        stop.set()
        release_workers()
        for worker in workers:
            worker.join()
        while not results.empty():
            take(results.get_nowait())
        summary.interrupted = summary.account_error is None

    try:
        try:
            received = 0
            while not exhausted or received < submitted:
                if stop.is_set():
                    wind_down()
                    break
                if todo.qsize() < ahead:
                    top_up()
                try:
                    item = results.get(timeout=commit_seconds)
                except queue.Empty:
                    flush()
                    continue
                received += 1
                take(item)
                if len(unwritten) >= commit_every or time.monotonic() - last_commit > commit_seconds:
                    flush()
        except KeyboardInterrupt:
            wind_down()
    finally:
        stop.set()
        release_workers()
        flush()
        summary.seconds = time.monotonic() - started
    return summary


def _work(todo: queue.SimpleQueue[StoredRequest | None],
          results: queue.SimpleQueue[Outcome | BaseException],
          send: Callable[[StoredRequest], Outcome], stop: threading.Event) -> None:
    """One sending thread: requests from ``todo`` until None or ``stop``, outcomes to
    ``results``."""
    while not stop.is_set():
        request = todo.get()
        if request is None or stop.is_set():
            return  # a request taken after stop is left unsent, for the next run
        try:
            outcome = send(request)
        except BaseException as exc:  # a bug must stop the run, not hang it
            results.put(exc)
            return
        if outcome.error is not None and outcome.error.verdict is Verdict.ACCOUNT:
            stop.set()  # every other row would meet the same refusal: take no more
        results.put(outcome)


def fetch_reports(state: MailingState, client: MobilgroupClient, *, concurrency: int = 8,
                  ) -> tuple[int, list[str]]:
    """Ask once for the report of every accepted request and store each recipient's status.

    Returns how many reports were fetched and the errors of those that were not (an unknown id,
    the gateway out of reach): their recipients keep their previous status.
    """
    ids = state.accepted_ids()
    errors: list[str] = []
    fetched = 0

    def ask(request_id: int) -> StatusReport | MobilgroupError:
        try:
            return client.status(request_id)
        except MobilgroupError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(ids) or 1))) as pool:
        for request_id, answer in zip(ids, pool.map(ask, ids), strict=True):
            if isinstance(answer, StatusReport):
                state.save_report(answer)
                fetched += 1
            elif isinstance(answer, UnknownRequestId):
                errors.append(f"request {request_id}: the gateway does not know it (error 12)")
            else:
                errors.append(f"request {request_id}: {answer}")
    return fetched, errors
