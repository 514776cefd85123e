"""What the inbox page and ``/api/`` show: the emulator's state as plain, JSON-ready data.

Nothing here touches sockets: each function reads the emulator at one moment of its clock. Request
ids are strings in JSON because they may exceed the 2**53 that JavaScript numbers hold exactly.
Passwords never appear: accounts are shown by user id, login, alias and balance only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ERROR_MEANINGS
from ..protocol import DeliveryStatus, MailingStatus
from .codes import find_code
from .gateway import TEXT_LIMIT_TRANSLIT, TEXT_LIMIT_UNICODE
from .lifecycle import Mailing
from .records import Exchange, OutboxMessage

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = [
    "FAULT_MEANINGS",
    "accounts",
    "clock",
    "end_of_lifetimes",
    "faults",
    "find_message",
    "message_parts",
    "messages",
    "page",
    "requests",
    "state",
]

#: What each fault kind does to an exchange, in the words the page and the request log use.
FAULT_MEANINGS = {
    "close_before": "connection closed before the request was read (not processed)",
    "close_after": "processed, then the connection was closed without an answer",
    "http_500": "answered with an HTTP error status (not processed)",
    "delay": "processed, answered late",
    "garbage": "processed, answered with a body that is not XML",
    "body": "answered with a body set by a test (not processed)",
    "oversized": "answered with an endless body (not processed)",
    "trickle_headers": "processed, answer headers sent one byte at a time",
    "tls_corrupt_after": "processed, then a TLS record that cannot be decrypted",
    "restart": "processed, then closed, and new connections refused for a while",
}

#: Accepted messages this close together (emulator clock) may be pieces of one split text.
_PART_GAP = timedelta(seconds=5)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _limit(message: OutboxMessage) -> int:
    return TEXT_LIMIT_TRANSLIT if message.transliterate else TEXT_LIMIT_UNICODE


def _continues(earlier: OutboxMessage, later: OutboxMessage) -> bool:
    """Whether ``later`` reads as the next piece of a text that was split before ``earlier``
    was sent: same account, recipients, alias and mode, moments apart, and ``earlier`` was cut
    because the next word did not fit (how ``protocol.fit_text`` splits)."""
    if (earlier.user_id, earlier.phones, earlier.sender, earlier.transliterate) != (
            later.user_id, later.phones, later.sender, later.transliterate):
        return False
    if not timedelta(0) <= later.received_at - earlier.received_at <= _PART_GAP:
        return False
    first_word = later.text.split(maxsplit=1)[0] if later.text.strip() else ""
    return len(earlier.text) + 1 + len(first_word) > _limit(earlier)


def message_parts(outbox: Iterable[OutboxMessage]) -> dict[int, tuple[int, int]]:
    """``(part, parts)`` by position in ``outbox`` (oldest first).

    The gateway has no notion of parts: a split text arrives as separate messages. The page
    still says "part 2 of 3" where messages read as one text cut in pieces (see
    :func:`_continues`), which is how a phone would show them.
    """
    runs: list[list[int]] = []
    open_runs: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    items = list(outbox)
    for index, message in enumerate(items):
        key = (message.user_id, message.phones)
        run = open_runs.get(key)
        if run is not None and _continues(items[run[-1]], message):
            run.append(index)
            continue
        run = [index]
        runs.append(run)
        open_runs[key] = run
    return {index: (number, len(run)) for run in runs for number, index in enumerate(run, 1)}


def _step(code: int, at: datetime, now: datetime) -> dict[str, Any]:
    return {"status": DeliveryStatus(code).name.lower(), "code": code, "at": _time(at),
            "reached": at <= now}


def _recipients(message: OutboxMessage, mailing: Mailing | None,
                now: datetime) -> list[dict[str, Any]]:
    if mailing is None:  # forgotten in a reset while this view was being built
        return [{"phone": phone, "status": None, "code": None, "since": None, "timeline": []}
                for phone in message.phones]
    views = []
    for phone, fate in zip(mailing.phones, mailing.fates, strict=True):
        code, since = mailing.recipient(fate, now)
        views.append({
            "phone": phone, "status": DeliveryStatus(code).name.lower(), "code": code,
            "since": _time(since), "fate": fate.value,
            "timeline": [_step(step, at, now) for step, at in mailing.plan(fate)],
        })
    return views


def _message(emulator: Emulator, message: OutboxMessage, now: datetime,
             part: tuple[int, int]) -> dict[str, Any]:
    mailing = emulator.gateway.mailing(message.user_id, message.request_id)
    account = emulator.accounts.get(message.user_id)
    recipients = _recipients(message, mailing, now)
    finished = mailing is not None and all(
        DeliveryStatus(r["code"]).is_final for r in recipients)
    status = MailingStatus.FINISHED if finished else MailingStatus.STARTED
    start = mailing.start if mailing is not None else message.received_at
    return {
        "request_id": str(message.request_id),
        "user_id": message.user_id,
        "phones": list(message.phones),
        "text": message.text,
        "code": find_code(message.text),
        "length": len(message.text),
        "limit": _limit(message),
        "part": part[0],
        "parts": part[1],
        "sender": message.sender,
        "sender_shown": message.sender or (account.sender if account else None),
        "rus_sms": not message.transliterate,
        "schedule": _time(message.schedule),
        "valid_hours": message.valid_hours,
        "lifetime_ends": _time(start + timedelta(hours=message.valid_hours)),
        "received_at": _time(message.received_at),
        "status": status.name.lower(),
        "status_code": int(status),
        "recipients": recipients,
    }


def _matches(message: OutboxMessage, query: str) -> bool:
    """A case-insensitive search in the text, phones, ids and alias; phones also match when the
    query is written the way people write numbers (``+7 903 ...``)."""
    needle = query.strip().lower()
    if not needle:
        return True
    haystack = " ".join((message.text, *message.phones, str(message.request_id),
                         message.sender or "", message.user_id)).lower()
    if needle in haystack:
        return True
    digits = "".join(ch for ch in needle if ch.isdigit())
    if digits and all(ch.isdigit() or ch in "+-() " for ch in needle):
        return any(digits in phone for phone in message.phones)
    return False


def page(emulator: Emulator, query: str = "", limit: int = 500,
         offset: int = 0) -> dict[str, Any]:
    """One page of the accepted messages matching ``query``, newest first: ``messages`` (at
    most ``limit``, after skipping the ``offset`` newest), ``matched`` (how many match in all)
    and ``offset``. Only the page's messages are built, so a page costs the same with 10,000
    messages in the outbox as with 10."""
    outbox = emulator.outbox.snapshot()
    if query.strip():
        hits = [index for index in range(len(outbox) - 1, -1, -1)
                if _matches(outbox[index], query)]
    else:
        hits = list(range(len(outbox) - 1, -1, -1))
    chosen = hits[offset:offset + limit]
    parts = message_parts(outbox) if chosen else {}
    now = emulator.clock.now()
    return {"messages": [_message(emulator, outbox[index], now, parts[index])
                         for index in chosen],
            "matched": len(hits), "offset": offset}


def messages(emulator: Emulator, query: str = "", limit: int = 500,
             offset: int = 0) -> list[dict[str, Any]]:
    """Accepted messages matching ``query``, newest first, at most ``limit`` after skipping the
    ``offset`` newest."""
    found: list[dict[str, Any]] = page(emulator, query, limit, offset)["messages"]
    return found


def find_message(emulator: Emulator, request_id: int,
                 user_id: str | None = None) -> dict[str, Any] | None:
    """One accepted message by request id (the newest, when accounts share an id)."""
    outbox = emulator.outbox.snapshot()
    for index in range(len(outbox) - 1, -1, -1):
        message = outbox[index]
        if message.request_id == request_id and user_id in (None, message.user_id):
            part = message_parts(outbox)[index]
            return _message(emulator, message, emulator.clock.now(), part)
    return None


def accounts(emulator: Emulator) -> list[dict[str, Any]]:
    """Every account without its password."""
    return [{"user_id": account.user_id, "login": account.login,
             "balance": format(account.balance, "f"), "blocked": account.blocked,
             "sender": account.sender}
            for account in list(emulator.accounts.values())]


def end_of_lifetimes(emulator: Emulator) -> datetime | None:
    """When every accepted message has run out of lifetime and every recipient has a final
    status; None with an empty outbox."""
    latest: datetime | None = None
    for message in emulator.outbox.snapshot():
        mailing = emulator.gateway.mailing(message.user_id, message.request_id)
        if mailing is None:
            continue
        ends = [mailing.start + timedelta(hours=mailing.valid_hours)]
        ends += [mailing.plan(fate)[-1][1] for fate in set(mailing.fates)]
        candidate = max(ends)
        if latest is None or candidate > latest:
            latest = candidate
    return latest


def clock(emulator: Emulator) -> dict[str, Any]:
    return {"now": _time(emulator.clock.now()), "frozen": emulator.clock.frozen,
            "end_of_lifetimes": _time(end_of_lifetimes(emulator))}


def faults(emulator: Emulator) -> dict[str, Any]:
    from .faults import KINDS

    return {**emulator.faults.describe(), "quirky": emulator.quirky, "kinds": list(KINDS)}


def _exchange(exchange: Exchange) -> dict[str, Any]:
    error = exchange.error
    return {
        "at": _time(exchange.at), "command": exchange.command,
        "request_id": None if exchange.request_id is None else str(exchange.request_id),
        "user_id": exchange.user_id, "phones": list(exchange.phones),
        "error": error, "meaning": ERROR_MEANINGS.get(error) if error else None,
        "fault": exchange.fault,
        "fault_meaning": FAULT_MEANINGS.get(exchange.fault) if exchange.fault else None,
    }


def requests(emulator: Emulator, *, rejected: bool = False, limit: int = 200) -> list[dict[str, Any]]:
    """Exchanges newest first; ``rejected`` keeps those answered with an error or a fault."""
    found: list[dict[str, Any]] = []
    for exchange in reversed(emulator.requests.snapshot()):
        if len(found) >= limit:
            break
        if rejected and not (exchange.error or exchange.fault):
            continue
        found.append(_exchange(exchange))
    return found


def state(emulator: Emulator, query: str = "", limit: int = 500,
          offset: int = 0) -> dict[str, Any]:
    """Everything the page shows, in one answer (the page polls this): one page of messages
    (see :func:`page`), with ``total`` the size of the whole outbox."""
    return {
        "clock": clock(emulator),
        "accounts": accounts(emulator),
        "faults": faults(emulator),
        **page(emulator, query, limit, offset),
        "total": len(emulator.outbox),
        "rejected": requests(emulator, rejected=True, limit=50),
    }
