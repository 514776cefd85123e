"""``mobilgroup emulator``: a local gateway with an inbox page, for development and tests.

Kept light on purpose: it needs the emulator and the standard library, never an HTTP client
library or a web framework (the demo, which does, lives in :mod:`.demo`).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import ValidationError
from .output import EXIT_OK

if TYPE_CHECKING:
    from ..emulator import Emulator

#: Listening on one of these means "every interface": clients elsewhere need a real address.
_EVERY_INTERFACE = {"", "0.0.0.0", "::"}  # noqa: S104 - names compared, nothing bound here


def add_commands(commands: Any) -> None:
    emulator = commands.add_parser(
        "emulator", help="run a local emulator of the gateway, with an inbox page",
        description="Run a local emulator of the gateway. Every message it accepts shows up on "
                    "its inbox page; each request is logged on standard output.")
    emulator.add_argument("--host", default="127.0.0.1",
                          help="address to listen on; 0.0.0.0 serves other machines and "
                               "containers too (default: 127.0.0.1)")
    emulator.add_argument("--allow-host", action="append", default=[], type=_host,
                          metavar="NAME",
                          help="also answer requests sent to this host name or address "
                               "(repeatable): a container's service name, host.docker.internal; "
                               "127.0.0.1, localhost, [::1] and --host are always answered")
    emulator.add_argument("--port", type=port_number, default=8080,
                          help="port to listen on; 0 picks a free port (default: 8080)")
    emulator.add_argument("--account", action="append", default=[],
                          metavar="USER_ID:LOGIN:PASSWORD[:BALANCE]",
                          help="an account (repeatable); default: 1000:demo:demo-password")
    emulator.add_argument("--quirky", action="store_true",
                          help="answer with the '</ id>' form of the gateway's examples")
    emulator.add_argument("--latency", type=float, default=0.0, help="seconds added per answer")
    emulator.add_argument("--history-limit", type=_positive_int, default=None, metavar="N",
                          help="keep only the newest N outbox and request entries (long runs)")
    emulator.add_argument("--quiet", action="store_true",
                          help="do not print a line per request")
    emulator.set_defaults(handler=run_emulator)

    from . import demo

    demo.add_command(commands)


def port_number(text: str) -> int:
    """A TCP port for ``--port``: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 65535, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be from 0 to 65535 (0 picks a free port), not {value}")
    return value


def _host(text: str) -> str:
    from ..emulator.guard import host_name

    if host_name(text) is None:
        raise argparse.ArgumentTypeError(
            f"must be a host name or address such as emulator or 10.0.0.5, not {text!r}")
    return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def reachable_host(host: str) -> str:
    """The address other machines and containers reach this one by, when ``host`` is every
    interface: the address this machine's name resolves to, or the name itself."""
    if host not in _EVERY_INTERFACE:
        return host
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        return name
    return name if ipaddress.ip_address(address).is_loopback else address


def start_emulator(emulator: Emulator, port: int) -> None:
    """Start it, turning "address in use" and the like into a usage error (exit 2)."""
    try:
        emulator.start()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise ValidationError("--port", port, exc.strerror or str(exc),
                              "pick a free port, or --port 0 for any free one") from None


def print_addresses(emulator: Emulator, out: TextIO) -> None:
    """The page, the endpoint, and for each account a URL that works when pasted."""
    host = emulator.host
    local = "127.0.0.1" if host in _EVERY_INTERFACE else host
    print(f"Inbox page:  http://{_bracket(local)}:{emulator.port}/", file=out)
    print(f"Endpoint:    {emulator.endpoint.replace(f'//{host}:', f'//{_bracket(local)}:', 1)}",
          file=out)
    remote = reachable_host(host) if host in _EVERY_INTERFACE else None
    for account in emulator.accounts.values():
        print(f"Account {account.user_id} (login {account.login}, balance {account.balance}):",
              file=out)
        print(f"  MOBILGROUP_URL='{emulator.url(account=account.user_id, host=local)}'", file=out)
        if remote is not None:
            # Plain http to a host that is not loopback: the client refuses that unless told.
            url = emulator.url(account=account.user_id, host=remote, allow_insecure_http="yes")
            print(f"  from another machine or container:\n  MOBILGROUP_URL='{url}'", file=out)
    print("These are the emulator's own local test accounts, not secrets: the URLs are printed "
          "in full so that they work when pasted.", file=out)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def log_requests(out: TextIO) -> logging.Handler:
    """Print the emulator's request log (one line per exchange) on ``out``."""
    from ..emulator.requestlog import LOGGER

    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    return handler


def run_emulator(args: argparse.Namespace) -> int:
    from ..emulator import Account, Emulator

    try:
        accounts = [Account.parse(spec) for spec in args.account]
    except ValueError as exc:
        raise ValidationError("--account", "***", str(exc),
                              "write it as USER_ID:LOGIN:PASSWORD[:BALANCE]") from None
    allowed = list(args.allow_host)
    if args.host in _EVERY_INTERFACE:  # the address printed for other machines must work
        allowed.append(reachable_host(args.host))
    emulator = Emulator(host=args.host, port=args.port, accounts=accounts or None,
                        quirky=args.quirky, latency=args.latency, history_limit=args.history_limit,
                        allowed_hosts=allowed)
    out = sys.stdout
    handler = None if args.quiet else log_requests(out)
    try:
        start_emulator(emulator, args.port)
        where = "every interface" if args.host in _EVERY_INTERFACE else emulator.host
        print(f"Mobilgroup emulator listening on {where}, port {emulator.port}", file=out)
        print_addresses(emulator, out)
        print("Press Ctrl+C to stop." + ("" if args.quiet else " Requests:"), file=out, flush=True)
        emulator.serve_forever()
    finally:
        emulator.stop()
        if handler is not None:
            from ..emulator.requestlog import LOGGER

            LOGGER.removeHandler(handler)
    return EXIT_OK
