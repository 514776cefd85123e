"""The ``mobilgroup`` command: send, status, balance, the emulator, a demo, and Apprise set-up.

Exit codes: 0 done; 1 the gateway refused (the message names the code and its meaning); 2 bad
usage or input, nothing was sent; 3 the gateway could not be reached or did not answer with its XML.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any, TextIO

from . import __version__
from .client import MobilgroupClient, SendResult
from .config import redact_url
from .errors import GatewayError, MobilgroupError, ValidationError
from .protocol import StatusReport

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = args.handler(args)
    except ValidationError as exc:
        return _fail(args, "invalid", exc, EXIT_USAGE)
    except GatewayError as exc:
        return _fail(args, "refused", exc, EXIT_REFUSED)
    except MobilgroupError as exc:
        return _fail(args, "unreachable", exc, EXIT_UNREACHABLE)
    except KeyboardInterrupt:
        return 130
    return result


def _fail(args: argparse.Namespace, kind: str, exc: MobilgroupError, code: int) -> int:
    if getattr(args, "json", False):
        payload: dict[str, Any] = {"ok": False, "error": kind, "message": str(exc)}
        if isinstance(exc, GatewayError):
            payload["code"] = exc.code
        print(json.dumps(payload, ensure_ascii=False))
    else:
        print(f"mobilgroup: {exc}", file=sys.stderr)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilgroup", description="Send SMS through the Mobilgroup gateway.",
        epilog="Credentials come from --url or the environment (MOBILGROUP_URL, or "
               "MOBILGROUP_USER_ID, MOBILGROUP_LOGIN, MOBILGROUP_PASSWORD).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def gateway_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--url", help="mobilgroup://LOGIN:PASSWORD@USER_ID?endpoint=... "
                                       "(default: the environment)")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        return sub

    send = gateway_command("send", "send one text to one or more phones")
    send.add_argument("phones", nargs="+", metavar="PHONE")
    send.add_argument("--text", required=True, help="the message; '-' reads standard input")
    send.add_argument("--sender", help="sender alias (latin letters, digits, space, hyphen; <= 9)")
    send.add_argument("--schedule", help="send later: 'YYYY-MM-DD HH:MM', Moscow time")
    send.add_argument("--valid", type=int, metavar="HOURS", help="lifetime, 1 to 48 hours")
    send.add_argument("--no-translit", action="store_true",
                      help="send as Unicode without transliteration (64 characters at most)")
    send.add_argument("--id", dest="request_id", help="your own request id (digits)")
    send.set_defaults(handler=_send)

    status = gateway_command("status", "show a mailing's status and every recipient's")
    status.add_argument("request_id", metavar="ID")
    status.set_defaults(handler=_status)

    balance = gateway_command("balance", "show the account balance")
    balance.set_defaults(handler=_balance)

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
    emulator.set_defaults(handler=_emulator)

    demo = commands.add_parser("demo", help="show the whole job against a built-in emulator")
    demo.set_defaults(handler=_demo)

    apprise = commands.add_parser("apprise", help="make mobilgroup:// known to the apprise command")
    apprise_commands = apprise.add_subparsers(title="apprise commands", metavar="ACTION")
    install = apprise_commands.add_parser(
        "install", help="write a loader into Apprise's plugin folder")
    install.add_argument("folder", nargs="?",
                         help="the plugin folder (default: Apprise's per-user plugin folder)")
    install.add_argument("--force", action="store_true",
                         help="replace a different mobilgroup.py already in that folder")
    install.set_defaults(handler=_apprise_install)
    path = apprise_commands.add_parser(
        "path", help="print a folder to give to APPRISE_PLUGIN_PATH or --plugin-path")
    path.set_defaults(handler=_apprise_path)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _client(args: argparse.Namespace) -> MobilgroupClient:
    if args.url:
        return MobilgroupClient.from_url(args.url)
    return MobilgroupClient.from_env()


def _send(args: argparse.Namespace) -> int:
    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    with _client(args) as client:
        result = client.send(args.phones, text, sender=args.sender, schedule=args.schedule,
                             valid_hours=args.valid, transliterate=not args.no_translit,
                             request_id=args.request_id)
    _print_send(result, args.json)
    return EXIT_OK


def _print_send(result: SendResult, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        print(json.dumps({"ok": True, **asdict(result)}, ensure_ascii=False), file=out)
    else:
        print(f"accepted: request id {result.request_id}, {len(result.phones)} recipient(s)",
              file=out)


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        report = client.status(args.request_id)
    _print_status(report, args.json)
    return EXIT_OK


def _print_status(report: StatusReport, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print(json.dumps({
            "ok": True, "request_id": report.request_id, "status": report.status.name.lower(),
            "status_code": int(report.status), "complete": report.is_complete,
            "recipients": [{
                "phone": r.phone, "status": r.status.name.lower(), "status_code": int(r.status),
                "time": r.time.isoformat(sep=" ") if r.time else None,
            } for r in report.recipients],
        }, ensure_ascii=False), file=out)
        return
    print(f"request {report.request_id}: {report.status.name.lower()}", file=out)
    for r in report.recipients:
        when = r.time.strftime("%Y-%m-%d %H:%M") if r.time else "-"
        print(f"  {r.phone:<16} {r.status.name.lower():<12} {when}", file=out)


def _balance(args: argparse.Namespace) -> int:
    with _client(args) as client:
        amount = client.balance()
    if args.json:
        print(json.dumps({"ok": True, "balance": str(amount)}))
    else:
        print(amount)
    return EXIT_OK


def _emulator(args: argparse.Namespace) -> int:
    from .emulator import Account, Emulator

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


def _demo(args: argparse.Namespace) -> int:
    from .emulator import Emulator

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
                _print_status(client.status(result.request_id), False, out)
            after = client.balance()
            print(f"\nBalance: {before} -> {after} ({Decimal(before) - Decimal(after)} spent)",
                  file=out)
    print("\nAgainst the real gateway, the same thing is one URL away:\n"
          "  export MOBILGROUP_URL='mobilgroup://LOGIN:PASSWORD@USER_ID?sender=ALIAS'\n"
          "  mobilgroup send +79031234567 --text 'Hello from mobilgroup-backends'", file=out)
    return EXIT_OK


def _apprise_install(args: argparse.Namespace) -> int:
    from .apprise_plugin import install_loader

    try:
        written = install_loader(args.folder, force=args.force)
    except OSError as exc:  # someone else's file there, not a folder, no permission
        raise ValidationError("folder", args.folder or "(Apprise's plugin folder)",
                              exc.strerror or str(exc),
                              "give another folder, or --force to replace the file") from None
    print(f"wrote {written}; the apprise command now knows mobilgroup:// URLs")
    return EXIT_OK


def _apprise_path(args: argparse.Namespace) -> int:
    from .apprise_plugin import plugin_path

    print(plugin_path())
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
