"""One-time codes in message texts: what the inbox page highlights, ``/api/last-code`` and
``Emulator.last_code()`` return, so that a login test reads the code in one line."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .records import OutboxMessage

__all__ = ["find_code", "last_code_message", "phone_digits"]

# A code stands on its own (not inside a longer number, not a phone "+7...", a decimal or a
# date) and is one of the shapes code generators make: digits (123456), digits in dashed groups
# (123-456-789), letters and digits in dashed groups (BCDF-GHJK, allauth's default), or one word
# mixing capitals and digits (A7K2Q9). The first one in the text is taken.
_CODE = re.compile(r"""
    (?<![\w+.,:-])
    (?:
        \d{4,9}
      | \d{3,4}(?:-\d{3,4}){1,2}
      | [A-Z0-9]{3,5}(?:-[A-Z0-9]{3,5}){1,2}
      | (?=[A-Z]*\d)(?=\d*[A-Z])[A-Z0-9]{4,10}
    )
    (?![\w-]|[.,:]\d)
""", re.VERBOSE)


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
