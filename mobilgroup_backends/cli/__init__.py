"""The ``mobilgroup`` command: send, status, balance, the emulator, a demo, and Apprise set-up.

Exit codes: 0 done; 1 the gateway refused (the message names the code and its meaning); 2 bad
usage or input, nothing was sent; 3 the gateway could not be reached or did not answer with its XML.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .. import __version__
from ..client import MobilgroupClient, SendResult
from ..errors import GatewayError, MobilgroupError, ValidationError
from .output import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, print_status


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
        payload["request_id"] = exc.request_id
        payload["maybe_sent"] = exc.maybe_sent
        print(json.dumps(payload, ensure_ascii=False))
    else:
        print(f"mobilgroup: {exc}", file=sys.stderr)
        if exc.maybe_sent and exc.request_id is not None:
            print(f"mobilgroup: it may have been sent; to make sure it goes out exactly once, "
                  f"repeat the same command with --id {exc.request_id} --resend", file=sys.stderr)
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
    send.add_argument("--resend", action="store_true",
                      help="this --id may have been sent already with this same message (after "
                           "an error that said it may have been sent): never sends it twice")
    send.set_defaults(handler=_send)

    status = gateway_command("status", "show a mailing's status and every recipient's")
    status.add_argument("request_id", metavar="ID")
    status.set_defaults(handler=_status)

    balance = gateway_command("balance", "show the account balance")
    balance.set_defaults(handler=_balance)

    from . import apprise as apprise_cmd
    from . import emulator as emulator_cmd

    emulator_cmd.add_commands(commands)
    apprise_cmd.add_commands(commands)
    return parser


def _client(args: argparse.Namespace) -> MobilgroupClient:
    if args.url:
        return MobilgroupClient.from_url(args.url)
    return MobilgroupClient.from_env()


def _send(args: argparse.Namespace) -> int:
    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    with _client(args) as client:
        result = client.send(args.phones, text, sender=args.sender, schedule=args.schedule,
                             valid_hours=args.valid, transliterate=not args.no_translit,
                             request_id=args.request_id, resend=args.resend)
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
    print_status(report, args.json)
    return EXIT_OK


def _balance(args: argparse.Namespace) -> int:
    with _client(args) as client:
        amount = client.balance()
    if args.json:
        print(json.dumps({"ok": True, "balance": str(amount)}))
    else:
        print(amount)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
