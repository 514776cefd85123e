"""The emulator's clock: the gateway's local time, which tests move forward instead of sleeping."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

__all__ = ["GATEWAY_TIMEZONE", "Clock", "gateway_now"]

#: The gateway's local time: Moscow, UTC+3 all year since 2014 (restated from the protocol, like
#: every fact the emulator serves; see the package's docstring).
GATEWAY_TIMEZONE = timezone(timedelta(hours=3), "MSK")


def gateway_now() -> datetime:
    """The current wall-clock time in the gateway's time zone, naive, truncated to the minute.

    The gateway reads ``schedule`` as its own local time, so the emulator keeps that time too:
    a client that converts an aware datetime to the gateway's zone then agrees with it.
    """
    now = datetime.now(GATEWAY_TIMEZONE).replace(tzinfo=None)
    return now.replace(second=0, microsecond=0)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Clock:
    """Naive gateway-local time that runs with real time, can jump forward, and can be frozen.

    Running is what a person at the command line expects (a message is delivered a few seconds
    after it was sent); frozen is what a test wants at the edges of the lifecycle, where a few
    real milliseconds must not decide the outcome. Thread-safe.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        if start is not None and start.tzinfo is not None:
            raise ValueError("the clock keeps naive gateway-local time; give a naive datetime")
        self._lock = threading.Lock()
        self._base = gateway_now() if start is None else start
        self._mark = time.monotonic()
        self._frozen = frozen

    def now(self) -> datetime:
        """The emulated gateway-local time (naive)."""
        with self._lock:
            return self._now()

    def _now(self) -> datetime:
        if self._frozen:
            return self._base
        return self._base + timedelta(seconds=time.monotonic() - self._mark)

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move the clock forward (never back: the lifecycle only moves forward). Returns now."""
        step = _seconds(seconds)
        if step < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._base += timedelta(seconds=step)
            return self._now()

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive, gateway-local), e.g. the start of a day under test."""
        if when.tzinfo is not None:
            raise ValueError("the clock keeps naive gateway-local time; give a naive datetime")
        with self._lock:
            self._base, self._mark = when, time.monotonic()

    def freeze(self) -> None:
        """Stop following real time; only :meth:`advance` and :meth:`set` move the clock."""
        with self._lock:
            self._base, self._frozen = self._now(), True

    def thaw(self) -> None:
        """Follow real time again from the current reading."""
        with self._lock:
            self._base, self._mark, self._frozen = self._now(), time.monotonic(), False

    @property
    def frozen(self) -> bool:
        return self._frozen

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running"
        return f"Clock({self.now():%Y-%m-%d %H:%M:%S}, {state})"
