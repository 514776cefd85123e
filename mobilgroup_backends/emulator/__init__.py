"""A local emulator of the Mobilgroup gateway: its HTTP/XML server side, faithful to the spec.

It lets the whole package, and any application's test suite, run with no account and no
network::

    from mobilgroup_backends.emulator import Emulator

    with Emulator() as gateway:
        url = gateway.url("79991234567")   # a mobilgroup:// URL pointing at it
        ...
        assert gateway.outbox.wait_for(1)
        assert gateway.outbox[0].text == "hello"

Every other path serves the inbox page (``/``: each accepted message with its delivery
timeline, the clock, faults) and its JSON API (``/api/...``). See ``docs/emulator.md`` for the
page and the API, accounts, the clock and the delivery lifecycle, the error precedence, quirky
mode, faults, TLS and the request log. The pytest fixture ``mobilgroup_emulator`` comes from
:mod:`mobilgroup_backends.emulator.pytest_plugin`.

The emulator is a second, independent reading of the gateway's protocol: it states the facts it
serves (text limits, lifetimes, status codes, encoding, time zone, time format) itself instead of
importing the client's, so that a mistake in the client's reading fails the tests instead of
being served back to it. One test checks that both readings agree.
"""

from .accounts import Account
from .clock import Clock
from .emulator import PATH, Emulator
from .faults import KINDS as FAULT_KINDS
from .faults import Fault, Faults
from .records import Exchange, Journal, OutboxMessage

__all__ = [
    "FAULT_KINDS",
    "PATH",
    "Account",
    "Clock",
    "Emulator",
    "Exchange",
    "Fault",
    "Faults",
    "Journal",
    "OutboxMessage",
]
