"""``OUTBOX_SEND = "now"``: outbox rows sent by threads of the process that committed them.

A task worker polling for work adds its poll interval to every message (django-tasks-db's
``db_worker`` looks once a second by default); a one-time code should leave in milliseconds. So
right after the commit, the rows' primary keys are handed to a few threads of this process,
which send each with :func:`~mobilgroup_backends.django.dispatch.deliver`, as a task would: the
row is claimed with a lease, sent with its request id and ``resend=True``, and its outcome
recorded. No task is queued.

The row is still the record: whatever happens to the process (killed mid-send, the queue full,
exiting with rows waiting), a committed row stays pending, and the sweeper (``manage.py
mobilgroup outbox``, or the ``sweep`` call you schedule) sends it later with the same request
id. A send the gateway accepted before the process died is answered "accepted earlier" then: sent
once. A row left pending by a failure that may mend (the network) is also the sweeper's.

Bounded: :data:`THREADS` threads, at most :data:`CAPACITY` rows waiting (more are left to the
sweeper, with one log line). At exit the threads get :data:`EXIT_WAIT` seconds to finish what
is waiting. A forked child starts its own threads when it first needs them.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

from django.db import connections

__all__ = ["CAPACITY", "EXIT_WAIT", "THREADS", "submit"]

logger = logging.getLogger("mobilgroup_backends.django.outbox")

#: Threads that send; each keeps its own database connection and shares the process's client.
THREADS = 4
#: Rows waiting at most; a commit that finds no room leaves its rows to the sweeper.
CAPACITY = 10_000
#: Seconds the threads get at exit to send what is waiting.
EXIT_WAIT = 5.0
#: Seconds a thread waits idle before it lets its database connection go.
IDLE = 10.0

_STOP = -1


class _Sender:
    def __init__(self) -> None:
        self.waiting: queue.Queue[int] = queue.Queue(CAPACITY)
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.full_since: float | None = None

    def submit(self, pks: list[int]) -> None:
        if len(self.threads) < THREADS:
            self._start()
        for index, pk in enumerate(pks):
            try:
                self.waiting.put_nowait(pk)
            except queue.Full:
                if self.full_since is None:
                    self.full_since = time.monotonic()
                    logger.warning("SMS outbox: %d rows wait to be sent in this process already; "
                                   "rows %s stay pending for the sweeper (manage.py mobilgroup "
                                   "outbox)", CAPACITY, ",".join(map(str, pks[index:])))
                return
        self.full_since = None

    def _start(self) -> None:
        with self.lock:
            while len(self.threads) < THREADS:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"mobilgroup-outbox-{len(self.threads) + 1}")
                thread.start()
                self.threads.append(thread)

    def _run(self) -> None:
        from .dispatch import deliver

        try:
            while True:
                try:
                    pk = self.waiting.get(timeout=IDLE)
                except queue.Empty:
                    connections.close_all()  # this thread's: idle, let the database have it
                    continue
                if pk == _STOP:
                    return
                try:
                    deliver(pk)
                except Exception:
                    # The row stays pending (deliver records what it can); the sweeper has it.
                    logger.exception("SMS outbox row %s not sent now; the sweeper will", pk)
                    connections.close_all()  # it may be the connection that failed
        finally:
            connections.close_all()

    def stop(self, timeout: float) -> None:
        """Let the threads send what is waiting, for at most ``timeout`` seconds."""
        threads = list(self.threads)
        for _ in threads:
            try:
                self.waiting.put(_STOP, timeout=timeout)
            except queue.Full:
                break
        ends = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, ends - time.monotonic()))


_sender = _Sender()


def submit(pks: list[int]) -> None:
    """Send these committed rows from this process's threads, soon (never raises for them: a
    row that cannot be taken stays pending for the sweeper)."""
    _sender.submit(pks)


@atexit.register
def _finish_at_exit() -> None:
    if _sender.threads:
        _sender.stop(EXIT_WAIT)


def _forget_after_fork() -> None:
    global _sender
    _sender = _Sender()  # the parent's threads do not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
