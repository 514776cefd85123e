"""The request log: one line per exchange with the gateway endpoint.

Lines go to the ``mobilgroup_backends.emulator.requests`` logger at INFO, so in Python they show
only where logging is configured to show them (``logging.basicConfig(level="INFO")``), and cost
nothing otherwise. ``mobilgroup emulator`` prints them on standard output. Phones are masked the
way the rest of the package logs them; the password is never part of an exchange.
"""

from __future__ import annotations

import logging

from ..errors import ERROR_MEANINGS
from ..protocol import mask_phone
from .inbox import FAULT_MEANINGS
from .records import Exchange

__all__ = ["LOGGER", "describe", "log_exchange"]

LOGGER = logging.getLogger("mobilgroup_backends.emulator.requests")

_MAX_PHONES_SHOWN = 3


def _phones(phones: tuple[str, ...]) -> str:
    shown = ",".join(mask_phone(phone) for phone in phones[:_MAX_PHONES_SHOWN])
    more = len(phones) - _MAX_PHONES_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown


def describe(exchange: Exchange, milliseconds: float) -> str:
    """``18:20:01 MSK send id 42 to 7903*****54 -> 0 OK (1.3 ms)`` (the emulator's clock, which
    keeps the gateway's Moscow time), and for errors and faults the code or fault with its
    meaning."""
    parts = [exchange.at.strftime("%H:%M:%S MSK"), exchange.command or "request (not read)"]
    if exchange.request_id is not None:
        parts.append(f"id {exchange.request_id}")
    if exchange.phones:
        parts.append("to " + _phones(exchange.phones))
    if exchange.error is not None:
        meaning = ERROR_MEANINGS.get(exchange.error, "unknown error") if exchange.error else "OK"
        parts.append(f"-> {exchange.error} {meaning}")
    if exchange.fault is not None:
        parts.append(f"-> fault {exchange.fault}: {FAULT_MEANINGS.get(exchange.fault, '')}".rstrip(": "))
    parts.append(f"({milliseconds:.1f} ms)")
    return " ".join(parts)


def log_exchange(exchange: Exchange, milliseconds: float) -> None:
    if LOGGER.isEnabledFor(logging.INFO):
        LOGGER.info("%s", describe(exchange, milliseconds))
