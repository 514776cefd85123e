"""What the emulator saw: accepted messages (the outbox) and every exchange, for assertions."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar, overload

__all__ = ["Exchange", "Journal", "OutboxMessage"]

T = TypeVar("T")


@dataclass(frozen=True)
class OutboxMessage:
    """One message the gateway accepted (``command=send`` answered OK, or about to be).

    ``sender`` is the alias the request named, ``None`` when it named none (the gateway then uses
    the account's default alias). ``transliterate`` is False only for ``rus_sms`` other than 0.
    ``received_at`` is the emulator's clock when the request was accepted.
    """

    request_id: int
    user_id: str
    phones: tuple[str, ...]
    text: str
    sender: str | None
    transliterate: bool
    schedule: datetime | None
    valid_hours: int
    received_at: datetime


@dataclass(frozen=True)
class Exchange:
    """One request that reached the endpoint, and what became of it.

    ``command`` and ``error`` are None when the request was not processed (a fault answered in
    its place); ``fault`` names the injected fault kind, if any; ``request_id`` is the ``id`` the
    request carried when it was a number; ``phones`` the recipients a ``send`` named.
    """

    command: str | None
    error: int | None
    fault: str | None
    request_id: int | None
    user_id: str | None
    at: datetime
    phones: tuple[str, ...] = ()


class Journal(Generic[T]):
    """An append-only, thread-safe list that tests can read and wait on.

    Server threads append while the test thread reads; every read copies under the lock, so
    iteration never sees a list changing under it. ``maxlen`` bounds it (oldest dropped) for long
    benchmark runs, where an unbounded history would only cost memory.
    """

    def __init__(self, maxlen: int | None = None) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._changed = threading.Condition()

    def append(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def snapshot(self) -> list[T]:
        """A copy of the items as they are now."""
        with self._changed:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` items are present or ``timeout`` seconds pass.

        Returns whether the count was reached, so that a test can ``assert outbox.wait_for(2)``
        instead of sleeping for a guessed time.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._changed:
            while len(self._items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        with self._changed:
            if isinstance(index, slice):
                return list(self._items)[index]
            return self._items[index]

    def __iter__(self) -> Iterator[T]:
        return iter(self.snapshot())

    def __eq__(self, other: object) -> bool:
        """Equal to a list (or another journal) with the same items, so ``outbox == []`` works."""
        if isinstance(other, Journal):
            return self.snapshot() == other.snapshot()
        if isinstance(other, list):
            return self.snapshot() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __bool__(self) -> bool:
        return len(self) > 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.snapshot()!r})"
