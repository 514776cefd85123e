"""One-time codes in message texts: what the inbox page highlights, ``/api/last-code`` and
``Emulator.last_code()`` return, so that a login test reads the code in one line."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .records import OutboxMessage

__all__ = ["find_code", "last_code_message", "phone_digits"]

# A run of 4 to 8 digits on its own: not part of a longer number, not a phone ("+7..."), not a
# decimal or a time. Codes are what texts hold such runs for; the first one is taken.
_CODE = re.compile(r"(?<![\d+.,:])\d{4,8}(?![\d.,:]\d)(?!\d)")


def find_code(text: str) -> str | None:
    """The one-time code in ``text``, or None."""
    found = _CODE.search(text)
    return found.group() if found else None


def phone_digits(phone: str) -> str:
    """A phone as the gateway writes it (digits only): ``+7 900 000-00-00`` -> ``79000000000``."""
    return "".join(ch for ch in phone if ch.isdigit())


def last_code_message(outbox: Iterable[OutboxMessage],
                      phone: str) -> tuple[OutboxMessage, str] | None:
    """The newest accepted message to ``phone`` that carries a code, and the code."""
    wanted = phone_digits(phone)
    for message in reversed(list(outbox)):
        if wanted in message.phones:
            code = find_code(message.text)
            if code is not None:
                return message, code
    return None
