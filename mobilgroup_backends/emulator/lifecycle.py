"""How a recipient's delivery status moves with the clock, computed when someone asks.

Nothing runs in the background: each status query derives every recipient's state from the
accepted time, the schedule, the delays and the recipient's fate. That keeps the emulator free of
timers and makes :meth:`Clock.advance` take effect immediately.

=================  =========================================================================
status             when
=================  =========================================================================
0 queued           from acceptance until ``start + send_delay`` (start = schedule, if later)
8 sent             from ``start + send_delay``
1 delivered        from ``start + send_delay + deliver_delay`` (normal recipients)
2 not delivered    from ``start + valid hours`` (undeliverable recipients; sent until then)
16 error           from ``start + send_delay`` (failing recipients)
=================  =========================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "DELIVERED",
    "ERROR",
    "FINAL",
    "FINISHED",
    "NOT_DELIVERED",
    "QUEUED",
    "SENT",
    "STARTED",
    "Fate",
    "Mailing",
    "Timing",
]

# Recipient statuses (``<dest><status>``) and mailing statuses (``<status>``) of the protocol.
QUEUED, DELIVERED, NOT_DELIVERED, SENT, ERROR = 0, 1, 2, 8, 16
FINAL = frozenset({DELIVERED, NOT_DELIVERED, ERROR})
STARTED, FINISHED = 2, 4


class Fate(enum.Enum):
    """What will become of one recipient, decided when the message is accepted."""

    DELIVER = "deliver"
    UNDELIVERABLE = "undeliverable"
    FAIL = "fail"


@dataclass(frozen=True)
class Timing:
    """The delays of the lifecycle, captured per mailing so later changes do not rewrite history."""

    send_delay: timedelta
    deliver_delay: timedelta


@dataclass(frozen=True)
class Mailing:
    """An accepted ``send``: its recipients' fates and the times that drive their statuses."""

    request_id: int
    phones: tuple[str, ...]
    fates: tuple[Fate, ...]
    received_at: datetime
    schedule: datetime | None
    valid_hours: int
    timing: Timing

    @property
    def start(self) -> datetime:
        """When sending may begin: the schedule if it lies ahead, else acceptance."""
        if self.schedule is not None and self.schedule > self.received_at:
            return self.schedule
        return self.received_at

    def recipient(self, fate: Fate, now: datetime) -> tuple[int, datetime]:
        """One recipient's status at ``now`` and the time it last changed."""
        sent_at = self.start + self.timing.send_delay
        if now < sent_at:
            return QUEUED, self.received_at
        if fate is Fate.FAIL:
            return ERROR, sent_at
        if fate is Fate.UNDELIVERABLE:
            expires = max(self.start + timedelta(hours=self.valid_hours), sent_at)
            return (NOT_DELIVERED, expires) if now >= expires else (SENT, sent_at)
        delivered_at = sent_at + self.timing.deliver_delay
        return (DELIVERED, delivered_at) if now >= delivered_at else (SENT, sent_at)

    def plan(self, fate: Fate) -> list[tuple[int, datetime]]:
        """Every status one recipient goes through, with the time it is reached, in order.

        The inbox page shows the steps already reached and the one still ahead; the status at
        ``now`` is the last step whose time has come (what :meth:`recipient` computes directly).
        """
        sent_at = self.start + self.timing.send_delay
        if fate is Fate.FAIL:
            return [(QUEUED, self.received_at), (ERROR, sent_at)]
        if fate is Fate.UNDELIVERABLE:
            expires = max(self.start + timedelta(hours=self.valid_hours), sent_at)
            return [(QUEUED, self.received_at), (SENT, sent_at), (NOT_DELIVERED, expires)]
        return [(QUEUED, self.received_at), (SENT, sent_at),
                (DELIVERED, sent_at + self.timing.deliver_delay)]

    def report(self, now: datetime) -> tuple[int, list[tuple[str, int, datetime]]]:
        """The mailing status and ``(phone, status, changed_at)`` for each recipient at ``now``."""
        pairs = zip(self.phones, self.fates, strict=True)
        dests = [(phone, *self.recipient(fate, now)) for phone, fate in pairs]
        finished = all(status in FINAL for _, status, _ in dests)
        return (FINISHED if finished else STARTED), dests
