"""``mobilgroup emulator`` and ``mobilgroup demo``: a local gateway, and the whole job against it."""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from typing import Any

from ..client import MobilgroupClient
from ..config import redact_url
from ..errors import ValidationError
from .output import EXIT_OK, print_status


def add_commands(commands: Any) -> None:
    emulator = commands.add_parser("emulator", help="run a local emulator of the gateway",
                                   description="Run a local emulator of the gateway.")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    emulator.add_argument("--account", action="append", default=[],
                          metavar="USER_ID:LOGIN:PASSWORD[:BALANCE]",
                          help="an account (repeatable); default: 1000:demo:demo-password")
    emulator.add_argument("--quirky", action="store_true",
                          help="answer with the '</ id>' form of the gateway's examples")
    emulator.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    emulator.add_argument("--history-limit", type=_positive_int, default=None, metavar="N",
                          help="keep only the newest N outbox and request entries (long runs)")
    emulator.set_defaults(handler=run_emulator)

    demo = commands.add_parser("demo", help="show the whole job against a built-in emulator")
    demo.set_defaults(handler=run_demo)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run_emulator(args: argparse.Namespace) -> int:
    from ..emulator import Account, Emulator

    try:
        accounts = [Account.parse(spec) for spec in args.account]
    except ValueError as exc:
        raise ValidationError("--account", "***", str(exc),
                              "write it as USER_ID:LOGIN:PASSWORD[:BALANCE]") from None
    emulator = Emulator(host=args.host, port=args.port, accounts=accounts or None,
                        quirky=args.quirky, latency=args.latency, history_limit=args.history_limit)
    try:
        try:
            emulator.start()
        except OSError as exc:  # the port is taken, or the address is not this machine's
            raise ValidationError("--port", args.port, exc.strerror or str(exc),
                                  "pick a free port, or --port 0 for any free one") from None
        print(f"Mobilgroup emulator on {emulator.endpoint}", flush=True)
        for account in emulator.accounts.values():
            print(f"  account {account.user_id} login {account.login} balance {account.balance}:"
                  f" {redact_url(emulator.url(account=account.user_id))}", flush=True)
        print("Press Ctrl+C to stop.", flush=True)
        emulator.serve_forever()
    finally:
        emulator.stop()
    return EXIT_OK


def run_demo(args: argparse.Namespace) -> int:
    from ..emulator import Emulator

    out = sys.stdout
    with Emulator() as emulator:
        url = emulator.url()
        print(f"Started a local emulator of the gateway: {emulator.endpoint}", file=out)
        with MobilgroupClient.from_url(url) as client:
            before = client.balance()
            print(f"Balance: {before}", file=out)
            text = "Привет! Ваш код подтверждения: 4521"
            phones = ["+7 (903) 958-74-54", "+7 923 641-15-79", "+7 913 000-00-00"]
            print(f"Sending {text!r} to {', '.join(phones)} ...", file=out)
            started = time.perf_counter()
            result = client.send(phones, text, sender="Demo", valid_hours=1)
            took = (time.perf_counter() - started) * 1000
            print(f"Accepted in {took:.1f} ms as request {result.request_id}, "
                  f"to {', '.join(result.phones)}", file=out)
            for label, seconds in (("right away", 0), ("after 2 seconds", 2),
                                   ("after 10 seconds", 8), ("after the 1-hour lifetime", 3600)):
                emulator.clock.advance(seconds)
                print(f"\nDelivery reports {label} (emulator clock {emulator.clock.now():%H:%M}):",
                      file=out)
                print_status(client.status(result.request_id), False, out)
            after = client.balance()
            print(f"\nBalance: {before} -> {after} ({Decimal(before) - Decimal(after)} spent)",
                  file=out)
    print("\nAgainst the real gateway, the same thing is one URL away:\n"
          "  export MOBILGROUP_URL='mobilgroup://LOGIN:PASSWORD@USER_ID?sender=ALIAS'\n"
          "  mobilgroup send +79031234567 --text 'Hello from mobilgroup-backends'", file=out)
    return EXIT_OK
