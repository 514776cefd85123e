"""Faults on demand: what the next exchanges should suffer instead of (or after) a clean answer.

A fault is chosen per exchange (one request that reached the endpoint): first from the queue that
:meth:`Faults.next` fills, in order; when the queue is empty, by the seeded random source that
:meth:`Faults.random` sets up. Seeded, so that a failing chaos test fails the same way again.
"""

from __future__ import annotations

import random as _random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KINDS", "PROCESSED", "Fault", "Faults"]

#: Every fault kind, with its parameters and their defaults.
KINDS: Mapping[str, Mapping[str, Any]] = {
    # Close the connection without reading the request's meaning: nothing is processed.
    "close_before": {},
    # Process the request (an accepted send is registered), then close without answering.
    "close_after": {},
    # Answer with an HTTP error status without processing.
    "http_500": {"status": 500},
    # Process, then wait before answering (to outlast a client's timeout).
    "delay": {"seconds": 2.0},
    # Process, then answer 200 with a body that is not XML.
    "garbage": {"body": b"<html><body>502 Bad Gateway\xff\xfe</body>"},
    # Answer with exactly this body, status and extra headers (a redirect's Location, say)
    # without processing: hostile XML tests, redirects.
    "body": {"body": b"", "status": 200, "content_type": "application/xml; charset=windows-1251",
             "headers": ()},
    # Stream this many bytes of XML-looking junk under a Content-Length, without processing.
    "oversized": {"size": 200 * 1024 * 1024},
    # Process, then send the answer's status line and headers one byte per ``interval`` seconds
    # (a stalled gateway or middlebox that looks alive), then its body.
    "trickle_headers": {"interval": 0.2},
    # Process, then write a TLS record that cannot be decrypted and close (a record corrupted on
    # the way back: the client's TLS layer fails with a bad record MAC after its request went).
    "tls_corrupt_after": {},
    # Process, close without answering, then refuse connections for ``seconds`` (a gateway that
    # restarts right after accepting: the client's retry meets a refused connection).
    "restart": {"seconds": 1.0},
}

#: Kinds after which the request was processed by the gateway.
PROCESSED = frozenset({"close_after", "delay", "garbage", "trickle_headers", "tls_corrupt_after",
                       "restart"})


@dataclass(frozen=True)
class Fault:
    """One fault to inflict on one exchange: its kind and its parameters (defaults filled in)."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, kind: str, params: Mapping[str, Any]) -> Fault:
        """A fault with ``params`` checked against its kind's and the defaults filled in."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(KINDS)}")
        unknown = set(params) - set(KINDS[kind])
        if unknown:
            raise TypeError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}; "
                            f"it takes {sorted(KINDS[kind]) or 'none'}")
        return cls(kind, {**KINDS[kind], **params})

    def __getitem__(self, name: str) -> Any:
        return self.params[name]


class Faults:
    """The fault plan of one emulator. Thread-safe; changes take effect with the next exchange."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rng: _random.Random | None = None
        self._rate = 0.0
        self._pool: tuple[Fault, ...] = ()
        self.injected: dict[str, int] = dict.fromkeys(KINDS, 0)

    def next(self, kind: str, count: int = 1, **params: Any) -> None:
        """Inflict ``kind`` on the next ``count`` exchanges (after any already queued)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault.make(kind, params)
        with self._lock:
            self._queue.extend([fault] * count)

    def random(
        self,
        rate: float = 0.2,
        seed: int = 1,
        kinds: Iterable[str] = ("close_before", "close_after", "http_500"),
        **params: Any,
    ) -> None:
        """From now on, inflict one of ``kinds`` (chosen evenly) on each exchange with
        probability ``rate``, from a generator seeded with ``seed``.

        ``params`` go to every kind that takes them (e.g. ``seconds=0.3`` for ``delay``). The
        default kinds are the ones a client must survive by retrying; ``close_after`` among them
        is the one that proves a retry is not sent twice.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        chosen = tuple(kinds)
        if not chosen:
            raise ValueError("give at least one fault kind")
        unused = set(params) - {name for kind in chosen for name in KINDS.get(kind, {})}
        if unused:
            raise TypeError(f"no chosen fault kind takes {sorted(unused)}")
        pool = tuple(
            Fault.make(kind, {k: v for k, v in params.items() if k in KINDS.get(kind, {})})
            for kind in chosen
        )
        with self._lock:
            self._rng, self._rate, self._pool = _random.Random(seed), rate, pool

    def clear(self) -> None:
        """Drop the queued faults and stop random ones."""
        with self._lock:
            self._queue.clear()
            self._rng, self._rate, self._pool = None, 0.0, ()

    @property
    def pending(self) -> int:
        """How many queued faults are still waiting for an exchange."""
        with self._lock:
            return len(self._queue)

    def describe(self) -> dict[str, Any]:
        """The plan as plain data: queued kinds (next first), the kinds striking at random (none
        when the rate is 0) with their rate, and the counts injected so far."""
        with self._lock:
            randomly = [fault.kind for fault in self._pool] if self._rate > 0 else []
            return {"queued": [fault.kind for fault in self._queue], "random": randomly,
                    "rate": self._rate if randomly else 0.0, "injected": dict(self.injected)}

    def take(self) -> Fault | None:
        """The fault for the exchange now starting, or None for a clean one."""
        with self._lock:
            if self._queue:
                fault = self._queue.popleft()
            elif self._rng is not None and self._rng.random() < self._rate:
                fault = self._rng.choice(self._pool)
            else:
                return None
            self.injected[fault.kind] += 1
            return fault

    def __repr__(self) -> str:
        with self._lock:
            return f"Faults(pending={len(self._queue)}, random_rate={self._rate})"
