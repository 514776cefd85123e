"""The gateway's state and its three commands, with no sockets: request bytes in, reply out.

Checks run in a fixed, documented order, so that a request with several faults always gets the
same error code (the gateway's description gives the codes but not their order):

1 not XML, or the root is not ``<request>`` → 2 ``user_id``/``user``/``pwd``/``command`` missing
→ 3 unknown or non-numeric ``user_id`` → 4 wrong login or password → 5 blocked → 6 unknown
command. Then for ``send``: 2 ``phone``/``message``/``id`` missing or ``id`` not a number → 8 bad
recipients → 10 text too long → 11 bad ``schedule`` → 2 ``valid`` not 1..48 → 7 ``id`` used before
→ 9 balance too low. For ``status``: 2 ``id`` missing or not a number → 12 unknown ``id``.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeAlias

from .accounts import Account
from .clock import Clock
from .lifecycle import Fate, Mailing, Timing
from .records import Journal, OutboxMessage
from .wire import parse_request, render

__all__ = ["MAX_REQUEST_ID", "Gateway", "PhoneRule", "Reply", "phone_predicate"]

#: A rule choosing recipients: a predicate, a regular expression searched in the phone, or None.
PhoneRule: TypeAlias = Callable[[str], bool] | str | re.Pattern[str] | None

#: Ids are "digits" in the gateway's words; the emulator takes any that fit a signed 64-bit
#: integer, which is what a database behind the real gateway would store.
MAX_REQUEST_ID = 2**63 - 1
MAX_VALID_HOURS = 48
TEXT_LIMIT_TRANSLIT = 140
TEXT_LIMIT_UNICODE = 64

_PHONE = re.compile(r"[0-9]{10,15}")
_SCHEDULE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}")


def phone_predicate(rule: PhoneRule) -> Callable[[str], bool]:
    """``rule`` as a predicate on a phone number."""
    if rule is None:
        return lambda phone: False
    if isinstance(rule, (str, re.Pattern)):
        pattern = re.compile(rule)
        return lambda phone: pattern.search(phone) is not None
    return rule


def _number(text: str | None) -> int | None:
    """A request id from its text: ASCII digits that fit the id range, else None."""
    if not text or len(text) > 19 or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= MAX_REQUEST_ID else None


def _flag(text: str | None) -> bool:
    """``extended``/``rus_sms``: anything but empty or a zero number counts as set."""
    if not text:
        return False
    if text.isascii() and text.isdigit():
        return int(text) != 0
    return True


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True)
class Reply:
    """What a request came to: the command (if one was read), the error code, and the answer.

    ``phones`` are the recipients a ``send`` named, as given (for the request log and the inbox
    page's list of rejected requests).
    """

    command: str | None
    error: int
    request_id: int | None
    user_id: str | None
    body: bytes
    phones: tuple[str, ...] = ()


class Gateway:
    """Accounts, their request ids and mailings, and the rules of the three commands.

    One lock guards all state; the work done under it is a few dictionary lookups, so concurrent
    requests do not queue behind each other for long. Settings are plain attributes that tests
    may change at any time; a mailing keeps the delays and fates it was accepted with.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        price_per_sms: Decimal = Decimal("1"),
        send_delay: timedelta = timedelta(seconds=1),
        deliver_delay: timedelta = timedelta(seconds=5),
        undeliverable: PhoneRule = r"0000$",
        failing: PhoneRule = r"9999$",
        quirky: bool = False,
        history_limit: int | None = None,
    ) -> None:
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        self.outbox: Journal[OutboxMessage] = Journal(history_limit)
        self.price_per_sms = price_per_sms
        self.send_delay = send_delay
        self.deliver_delay = deliver_delay
        self.undeliverable = undeliverable
        self.failing = failing
        self.quirky = quirky
        self._mailings: dict[str, dict[int, Mailing]] = {}
        self._lock = threading.Lock()

    # --- settings whose setters normalise -------------------------------------------------

    @property
    def undeliverable(self) -> Callable[[str], bool]:
        return self._undeliverable

    @undeliverable.setter
    def undeliverable(self, rule: PhoneRule) -> None:
        self._undeliverable = phone_predicate(rule)

    @property
    def failing(self) -> Callable[[str], bool]:
        return self._failing

    @failing.setter
    def failing(self, rule: PhoneRule) -> None:
        self._failing = phone_predicate(rule)

    def add_account(self, account: Account) -> Account:
        """Add ``account``, replacing one with the same user id (its used ids are kept)."""
        with self._lock:
            self.accounts[account.user_id] = account
        return account

    def mailing(self, user_id: str, request_id: int) -> Mailing | None:
        """The accepted mailing with this id, for tests that look behind the wire."""
        with self._lock:
            return self._mailings.get(user_id, {}).get(request_id)

    def forget(self) -> None:
        """Forget every accepted mailing and empty the outbox: their ids may be used again."""
        with self._lock:
            self._mailings.clear()
            self.outbox.clear()

    # --- commands -----------------------------------------------------------------------------

    def handle(self, body: bytes) -> Reply:
        """Answer one request document."""
        fields = parse_request(body)
        if fields is None:
            return self._reply(None, 1, None, None)
        reply = self._handle(fields)
        phones = fields.get("phone")
        if reply.command == "send" and phones:
            return replace(reply, phones=tuple(phones.split(",")))
        return reply

    def _handle(self, fields: dict[str, str]) -> Reply:
        get = fields.get
        user_id, login, password, command = get("user_id"), get("user"), get("pwd"), get("command")
        request_id = _number(get("id"))
        if not (user_id and login and password and command):
            return self._reply(command, 2, request_id, user_id)
        with self._lock:
            account = self.accounts.get(user_id)
            if account is None:
                return self._reply(command, 3, request_id, user_id)
            if not (_same(login, account.login) & _same(password, account.password)):
                return self._reply(command, 4, request_id, user_id)
            if account.blocked:
                return self._reply(command, 5, request_id, user_id)
            if command == "send":
                return self._send(account, fields, request_id)
            if command == "status":
                return self._status(account, fields, request_id)
            if command == "balance":
                balance = format(account.balance, "f")
                body = render(0, "0", quirky=self.quirky, balance=balance)
                return Reply(command, 0, None, user_id, body)
        return self._reply(command, 6, request_id, user_id)

    def _reply(self, command: str | None, error: int, request_id: int | None,
               user_id: str | None) -> Reply:
        echo = None if request_id is None else str(request_id)
        body = render(error, echo, quirky=self.quirky)
        return Reply(command, error, request_id, user_id, body)

    def _send(self, account: Account, fields: dict[str, str], request_id: int | None) -> Reply:
        user_id = account.user_id
        phone_list, text = fields.get("phone"), fields.get("message")
        if not phone_list or not text or request_id is None:
            return self._reply("send", 2, request_id, user_id)
        phones = tuple(phone_list.split(","))
        if not all(_PHONE.fullmatch(phone) for phone in phones):
            return self._reply("send", 8, request_id, user_id)
        unicode = _flag(fields.get("rus_sms"))
        if len(text) > (TEXT_LIMIT_UNICODE if unicode else TEXT_LIMIT_TRANSLIT):
            return self._reply("send", 10, request_id, user_id)
        schedule: datetime | None = None
        schedule_text = fields.get("schedule")
        if schedule_text:
            try:
                if not _SCHEDULE.fullmatch(schedule_text):
                    raise ValueError(schedule_text)
                schedule = datetime.strptime(schedule_text, "%Y-%m-%d %H:%M")
            except ValueError:
                return self._reply("send", 11, request_id, user_id)
        valid_hours = 1
        valid_text = fields.get("valid")
        if valid_text:
            valid_hours = _number(valid_text) or 0
            if not 1 <= valid_hours <= MAX_VALID_HOURS:
                return self._reply("send", 2, request_id, user_id)
        used = self._mailings.setdefault(user_id, {})
        if request_id in used:
            return self._reply("send", 7, request_id, user_id)
        cost = self.price_per_sms * len(phones)
        if account.balance < cost:
            return self._reply("send", 9, request_id, user_id)
        account.balance -= cost
        now = self.clock.now()
        fates = tuple(self._fate(phone) for phone in phones)
        timing = Timing(self.send_delay, self.deliver_delay)
        used[request_id] = Mailing(request_id, phones, fates, now, schedule, valid_hours, timing)
        sender = fields.get("sender") or None
        self.outbox.append(OutboxMessage(request_id, user_id, phones, text, sender, not unicode,
                                         schedule, valid_hours, now))
        return self._reply("send", 0, request_id, user_id)

    def _fate(self, phone: str) -> Fate:
        if self._failing(phone):
            return Fate.FAIL
        if self._undeliverable(phone):
            return Fate.UNDELIVERABLE
        return Fate.DELIVER

    def _status(self, account: Account, fields: dict[str, str], request_id: int | None) -> Reply:
        user_id = account.user_id
        if request_id is None:
            return self._reply("status", 2, None, user_id)
        mailing = self._mailings.get(user_id, {}).get(request_id)
        if mailing is None:
            return self._reply("status", 12, request_id, user_id)
        status, dests = mailing.report(self.clock.now())
        extended = dests if _flag(fields.get("extended")) else None
        body = render(0, str(request_id), quirky=self.quirky, status=status, dests=extended)
        return Reply("status", 0, request_id, user_id, body)

    def __repr__(self) -> str:
        return f"Gateway(accounts={list(self.accounts)!r}, quirky={self.quirky!r})"
