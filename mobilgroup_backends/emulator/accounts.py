"""Accounts of the emulated gateway: who may log in, with what balance."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

__all__ = ["DEFAULT_ACCOUNT", "Account", "to_decimal"]

# A balance at the end of an account spec: digits with an optional fraction. No sign and no
# exponent, so that a password such as ``pw:1e5`` or ``pw:-1`` stays a password.
_BALANCE = re.compile(r"\d+(?:\.\d+)?")


def to_decimal(value: Decimal | int | str, name: str) -> Decimal:
    """``value`` as a finite Decimal; floats are refused because money must not round."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise TypeError(f"{name} must be a Decimal, an int or a numeric string, not {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite, not {value!r}")
    return number


@dataclass
class Account:
    """One client account. Mutable on purpose: tests block it or top it up while the emulator runs.

    ``sender`` is the account's default alias, which the gateway uses when a request names none.
    The password never shows in ``repr`` (accounts end up in test failure output and logs).
    """

    user_id: str
    login: str
    password: str = field(repr=False)
    balance: Decimal = Decimal("100")
    blocked: bool = False
    sender: str = "Mobilgrup"

    def __post_init__(self) -> None:
        self.user_id = str(self.user_id)
        if not self.user_id.isdigit() or not self.user_id.isascii():
            raise ValueError(f"user_id must be digits, not {self.user_id!r}")
        if not self.login or ":" in self.login:
            raise ValueError(f"login must be non-empty and without ':', not {self.login!r}")
        if not self.password:
            raise ValueError("password must not be empty")
        self.balance = to_decimal(self.balance, "balance")

    @classmethod
    def parse(cls, spec: str) -> Account:
        """An account from ``USER_ID:LOGIN:PASSWORD[:BALANCE]`` (the command line's form).

        The first ``:`` ends the user id and the second ends the login (a login may hold ``@``
        but not ``:``). Everything after that is the password, except that a last ``:`` followed
        by a plain number (``12``, ``99.50``) is the balance. So a password may contain ``:``;
        one that itself ends in ``:<number>`` needs the balance written out after it
        (``1000:demo:pw:5:100`` is password ``pw:5`` with balance 100).
        """
        user_id, sep1, rest = spec.partition(":")
        login, sep2, password = rest.partition(":")
        if not (sep1 and sep2):
            raise ValueError("an account is USER_ID:LOGIN:PASSWORD[:BALANCE]")
        balance = Decimal("100")
        head, sep3, tail = password.rpartition(":")
        if sep3 and head and _BALANCE.fullmatch(tail):
            password, balance = head, Decimal(tail)
        return cls(user_id=user_id, login=login, password=password, balance=balance)


#: The account used when an emulator is given none. Its password is obviously fake.
DEFAULT_ACCOUNT = ("1000", "demo", "demo-password")
