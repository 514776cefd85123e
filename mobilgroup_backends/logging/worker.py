"""The handler's background worker: a bounded queue and one daemon thread that drains it.

What makes an alert path safe to put in any application lives here:

- ``submit`` never blocks: a full queue (or a closed worker) costs a counter, not a wait.
- The thread starts on the first item, not at construction, so that configuring logging does no
  work; it is a daemon, so a stalled gateway never keeps the process alive.
- ``flush`` and ``close`` wait at most ``flush_timeout`` each; when ``flush`` ran out of time the
  gateway is stalled, and ``close`` only asks the thread to stop, so that exit waits once.
- Inside ``logging.config.dictConfig`` (which closes the handlers it replaces while holding the
  logging lock) waiting is futile, since the thread's HTTP stack logs and needs that lock: the
  thread finishes in the background and the process waits for it at exit, again bounded.
- After ``fork`` the parent's queue and thread are not the child's: ``after_fork`` starts afresh.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["AlertWorker", "holding_logging_lock", "write_stderr"]

T = TypeVar("T")

#: Workers closed from inside a logging configuration call that are still finishing.
_FINISHING: set[AlertWorker[Any]] = set()
_FINISHING_LOCK = threading.Lock()


def write_stderr(line: str) -> None:
    """One line on stderr, the alert path's only voice; a closed or broken stderr is ignored."""
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(line)
            stream.flush()
    except Exception:  # noqa: S110 - a closed stderr must not kill the alert path
        pass


def holding_logging_lock() -> bool:
    """True when this thread holds the logging module's lock (inside ``dictConfig``)."""
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    try:
        return bool(is_owned()) if is_owned is not None else False
    except Exception:
        return False


@atexit.register
def _finish_at_exit() -> None:
    """Give workers closed by a re-configuration their ``flush_timeout`` at exit.

    Registered after ``logging`` was imported, so it runs before ``logging.shutdown``.
    """
    with _FINISHING_LOCK:
        workers = list(_FINISHING)
    if not workers:
        return
    deadline = time.monotonic() + max(worker.flush_timeout for worker in workers)
    for worker in workers:
        thread = worker.thread
        if thread is not None and worker.pid == os.getpid():
            thread.join(max(0.0, deadline - time.monotonic()))


class AlertWorker(Generic[T]):
    """A queue of at most ``queue_size`` items and the thread that hands them to ``process``.

    ``tick(final)`` runs after every item and when the timer ``next_timer()`` (seconds, or None
    for no timer) runs out; ``final`` is True on the last round before the thread stops, and
    ``finish()`` is the thread's last act. None of them may block for long or raise: what they
    raise is passed to ``on_error`` and the thread goes on.
    """

    def __init__(self, *, name: str, queue_size: int, flush_timeout: float,
                 process: Callable[[T], None], tick: Callable[[bool], None],
                 next_timer: Callable[[], float | None], finish: Callable[[], None],
                 on_error: Callable[[BaseException], None]) -> None:
        self.name = name
        self.queue_size = queue_size
        self.flush_timeout = flush_timeout
        self._process = process
        self._tick = tick
        self._next_timer = next_timer
        self._finish = finish
        self._on_error = on_error
        self.reset()

    def reset(self) -> None:
        """Fresh state: at construction, and in a forked child (the parent's is not its own)."""
        self.pid = os.getpid()
        self._mutex = threading.Lock()
        self._has_work = threading.Condition(self._mutex)
        self._drained = threading.Condition(self._mutex)
        self._queue: deque[T] = deque()
        self.thread: threading.Thread | None = None
        self.thread_ident: int | None = None
        self.closed = False
        self._stopping = False
        self._flush_requested = 0
        self._flush_done = 0
        self._flush_timed_out = False
        self.dropped = 0
        self.last_dropped: T | None = None

    def after_fork(self) -> None:
        closed = self.closed
        self.reset()
        self.closed = closed

    # --- the caller's side ----------------------------------------------------------------------

    def submit(self, item: T) -> bool:
        """Queue ``item`` for the thread; False (and counted in ``dropped``) when it is refused."""
        with self._mutex:
            if self.closed or len(self._queue) >= self.queue_size:
                self.dropped += 1
                self.last_dropped = item  # the summary shows the newest record
                return False
            self._queue.append(item)
            if self.thread is None and not self._start():
                return False
            self._has_work.notify()
            return True

    def _start(self) -> bool:
        """Start the thread (the mutex is held)."""
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: no new threads
            self.last_dropped = self._queue.pop()
            self.dropped += 1
            return False
        self.thread = thread
        return True

    def backlog(self) -> tuple[int, int, T | None]:
        """Items queued, items dropped so far and the newest dropped one (a consistent view)."""
        with self._mutex:
            return len(self._queue), self.dropped, self.last_dropped

    def wake(self) -> None:
        with self._mutex:
            self._has_work.notify()

    # --- flush and close ------------------------------------------------------------------------

    def flush(self) -> bool:
        """Wait until the queue is drained and ``tick`` has run, at most ``flush_timeout``.
        False when that time ran out (the caller's hint that the gateway is stalled)."""
        if self.pid != os.getpid():
            return True
        if holding_logging_lock():  # inside dictConfig: wake the thread, do not wait for it
            self.wake()
            return True
        done = self._wait_drained(time.monotonic() + self.flush_timeout)
        self._flush_timed_out = not done
        return done

    def _wait_drained(self, deadline: float) -> bool:
        with self._mutex:
            thread = self.thread
            if thread is None or not thread.is_alive():
                return True
            self._flush_requested += 1
            target = self._flush_requested
            self._has_work.notify()
            while self._flush_done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not thread.is_alive():
                    return self._flush_done >= target
                self._drained.wait(left)
            return True

    def close(self) -> None:
        """Stop the thread after a last round, waiting at most ``flush_timeout``. Idempotent."""
        with self._mutex:
            first = not self.closed
            self.closed = True
            thread = self.thread if self.pid == os.getpid() else None
            if first and thread is not None:
                self._stopping = True
                self._has_work.notify()
        if not (first and thread is not None and thread.is_alive()):
            return
        if holding_logging_lock():
            with _FINISHING_LOCK:
                _FINISHING.add(self)
            return
        thread.join(0.05 if self._flush_timed_out else self.flush_timeout)

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        self.thread_ident = threading.get_ident()
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
                self._tick(stopping)
            except Exception as exc:  # never let the thread die
                self._on_error(exc)
            with self._mutex:
                if not self._queue:
                    self._flush_done = max(self._flush_done, target)
                    self._drained.notify_all()
                if stopping:
                    self._flush_done = self._flush_requested
                    self._drained.notify_all()
                    self.thread_ident = None
            if stopping:
                try:
                    self._finish()
                finally:
                    with _FINISHING_LOCK:
                        _FINISHING.discard(self)
                return
