"""The ``mobilgroup`` command: send, status, balance, mailings, the emulator, a demo, Apprise
set-up and shell completion.

Exit codes (shared with ``manage.py mobilgroup``): 0 done; 1 the gateway refused (the message names
the code and its meaning); 2 bad usage or input, nothing was sent; 3 the gateway could not be
reached or did not answer with its XML; 4 ``status --wait`` gave up before every recipient had a
final status; 130 interrupted.

Modules here import the client (and so ``requests``) inside the handlers, never at the top:
``mobilgroup --help`` and shell completion stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from .. import __version__
from ..errors import ConfigurationError, MobilgroupError, ValidationError
from .output import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    print_error,
    print_json,
    print_status,
)

if TYPE_CHECKING:
    from ..client import MobilgroupClient
    from ..config import Settings
    from ..protocol import StatusReport

#: ``status --wait`` gave up (``--timeout``) before every recipient had a final status.
EXIT_NOT_FINAL = 4
#: ``status --wait``: first pause between asks once the lifetime has run out; it doubles up to
#: :data:`MAX_RECHECK_SECONDS`.
FIRST_RECHECK_SECONDS = 5.0
MAX_RECHECK_SECONDS = 600.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = args.handler(args)
    except MobilgroupError as exc:
        return print_error(exc, getattr(args, "json", False))
    except KeyboardInterrupt:
        print("mobilgroup: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result


def add_gateway_options(sub: argparse.ArgumentParser) -> None:
    """The options of every command that talks to the gateway: where the credentials come from,
    and ``--json``."""
    source = sub.add_mutually_exclusive_group()
    source.add_argument("--url", help="mobilgroup://LOGIN:PASSWORD@USER_ID?endpoint=... ('-' reads "
                                      "it from standard input; default: the environment). Other "
                                      "users can see it in the process list: prefer --url-file")
    source.add_argument("--url-file", metavar="FILE",
                        help="read the mobilgroup:// URL from the first line of FILE")
    sub.add_argument("--allow-insecure-http", action="store_true", default=None,
                     help="allow a plain http:// endpoint outside this machine, e.g. an emulator "
                          "reached as a container service (the password travels unencrypted)")
    sub.add_argument("--json", action="store_true", help="machine-readable output")


def add_text_options(sub: argparse.ArgumentParser) -> None:
    """How a text that does not fit, or cannot be carried, is handled (``send`` and mailings)."""
    sub.add_argument("--sender", help="sender alias (latin letters, digits, space, hyphen; <= 9)")
    sub.add_argument("--schedule", help="send later: 'YYYY-MM-DD HH:MM', Moscow time")
    sub.add_argument("--valid", type=int, metavar="HOURS", help="lifetime, 1 to 48 hours")
    sub.add_argument("--no-translit", action="store_true",
                     help="send as Unicode without transliteration (64 characters at most)")
    fit = sub.add_mutually_exclusive_group()
    fit.add_argument("--split", dest="long_messages", action="store_const", const="split",
                     help="send a text that is too long as several messages (default: refuse "
                          "it, or the URL's long_messages=)")
    fit.add_argument("--truncate", dest="long_messages", action="store_const", const="truncate",
                     help="cut a text that is too long, ending it with an ellipsis")
    sub.add_argument("--replace-unencodable", action="store_true", default=None,
                     help="send characters windows-1251 cannot carry (emoji...) as '?'")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilgroup", description="Send SMS through the Mobilgroup gateway.",
        epilog="Credentials come from --url-file, --url or the environment (MOBILGROUP_URL, or "
               "MOBILGROUP_USER_ID, MOBILGROUP_LOGIN, MOBILGROUP_PASSWORD).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def gateway_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text,
                                                           description=help_text)
        add_gateway_options(sub)
        return sub

    send = gateway_command("send", "send one text to one or more phones")
    send.add_argument("phones", nargs="+", metavar="PHONE",
                      help="phone numbers, as separate arguments or separated by commas")
    send.add_argument("--text", required=True, help="the message; '-' reads standard input")
    add_text_options(send)
    send.add_argument("--id", dest="request_id",
                      help="your own request id (digits); for a text sent in parts, one per "
                           "part, separated by commas")
    send.add_argument("--resend", action="store_true",
                      help="this --id may have been sent already with this same message (after "
                           "an error that said it may have been sent): never sends it twice")
    send.set_defaults(handler=_send)

    status = gateway_command("status", "show a mailing's status and every recipient's")
    status.add_argument("request_id", metavar="ID")
    status.add_argument("--wait", action="store_true",
                        help="wait until every recipient has a final status, asking again only "
                             "once the lifetime has run out (the gateway's rule)")
    status.add_argument("--valid", type=int, metavar="HOURS",
                        help="with --wait: the lifetime the message was sent with (default 1)")
    status.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --wait: give up after this long (default: the lifetime plus "
                             "one hour); exit code 4")
    status.set_defaults(handler=_status)

    balance = gateway_command("balance", "show the account balance")
    balance.set_defaults(handler=_balance)

    from . import apprise as apprise_cmd
    from . import completion as completion_cmd
    from . import emulator as emulator_cmd
    from . import mailing as mailing_cmd
    from . import serve as serve_cmd

    mailing_cmd.add_commands(commands)
    emulator_cmd.add_commands(commands)
    apprise_cmd.add_commands(commands)
    serve_cmd.add_commands(commands)
    completion_cmd.add_commands(commands, parser)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of a gateway command: its flags > ``--url`` (or ``--url-file``) > the
    environment > the defaults, by the same resolver as every adapter."""
    from ..config import resolve

    # The message options are the flags of the commands that send; status has a --valid of its
    # own (the lifetime a message was sent with), which is not a setting.
    sends = hasattr(args, "no_translit")
    flags = {"allow_insecure_http": args.allow_insecure_http}
    if sends:
        flags.update(sender=args.sender, valid_hours=args.valid,
                     transliterate=False if args.no_translit else None,
                     long_messages=args.long_messages,
                     replace_unencodable=args.replace_unencodable)
    url = _url(args)
    source = "--url-file" if getattr(args, "url_file", None) else "--url"
    return resolve("cli", arguments=flags, url=url, url_source=source).settings


def _client(args: argparse.Namespace, settings: Settings | None = None,
            **options: Any) -> MobilgroupClient:
    """The client of a gateway command; ``options`` are the client's own (``pool_size``)."""
    from ..client import MobilgroupClient

    return MobilgroupClient.from_settings(settings or _settings(args), **options)


def _url(args: argparse.Namespace) -> str | None:
    """The URL given by ``--url``, ``--url -`` (standard input) or ``--url-file``; never shown."""
    if getattr(args, "url_file", None):
        from ..config import first_line

        line = first_line(args.url_file, "--url-file",
                          "give a file whose first line is the mobilgroup:// URL")
        return _nonempty(line, "--url-file", args.url_file)
    if args.url == "-":
        if getattr(args, "text", None) == "-":
            raise ValidationError("--url", "-", "standard input cannot give both the URL and "
                                  "the text", "use --url-file FILE for the URL")
        return _nonempty(sys.stdin.readline(), "--url", "-")
    return str(args.url) if args.url else None


def _nonempty(line: str, option: str, shown: str) -> str:
    url = line.strip()
    if not url:
        raise ConfigurationError(option, shown, "no URL there (the first line is empty)",
                                 "write mobilgroup://LOGIN:PASSWORD@USER_ID on the first line")
    return url


def _send(args: argparse.Namespace) -> int:
    waiting = _WaitingLine.for_stderr()
    with _client(args, on_attempt=waiting) as client, waiting or contextlib.nullcontext():
        text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
        # One string: the client splits it on commas, so "79031234567,79231234567" works too.
        ids = args.request_id.split(",") if args.request_id else None
        outgoing = client.prepare(",".join(args.phones), text, schedule=args.schedule,
                                  request_id=ids)
        try:
            sent = client.send_prepared(outgoing, resend=args.resend)
        except MobilgroupError as exc:
            # A resend needs the ids of every part, not only of the part that failed.
            return print_error(exc, args.json, request_ids=outgoing.request_ids)
    if args.json:
        print_json(sent.to_dict())
    else:
        ids = ", ".join(str(i) for i in sent.request_ids)
        how = f" in {len(sent)} parts" if len(sent) > 1 else ""
        print(f"accepted: request id {ids}, {len(outgoing.phones)} recipient(s){how}")
    return EXIT_OK


class _WaitingLine:
    """On a terminal, one line on standard error saying the command is waiting for the gateway
    and which attempt it is on (the client's ``on_attempt``), wiped when the call is over."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown = False

    @classmethod
    def for_stderr(cls) -> _WaitingLine | None:
        """One for standard error when it is a terminal; None for a file or a pipe (logs)."""
        return cls(sys.stderr) if sys.stderr.isatty() else None

    def __call__(self, command: str, number: int, most: int) -> None:
        again = f" (attempt {number} of {most})" if number > 1 else ""
        print(f"\rmobilgroup: waiting for the gateway{again}...", end="", file=self.out,
              flush=True)
        self.shown = True

    def __enter__(self) -> _WaitingLine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.shown:
            print("\r\033[K", end="", file=self.out, flush=True)  # back to the line's start


def _status(args: argparse.Namespace) -> int:
    from ..protocol import check_valid_hours

    valid = check_valid_hours(args.valid)
    # --wait sleeps between asks for hours: a "waiting for the gateway" line would mislead then.
    waiting = None if args.wait else _WaitingLine.for_stderr()
    with _client(args, on_attempt=waiting) as client, waiting or contextlib.nullcontext():
        report = client.status(args.request_id)
        if args.wait:
            report = _wait(client, report, valid, args.timeout)
    print_status(report, args.json)
    if args.wait and not report.is_complete:
        print("mobilgroup: not every recipient has a final status yet; ask again later",
              file=sys.stderr)
        return EXIT_NOT_FINAL
    return EXIT_OK


def _wait(client: MobilgroupClient, report: StatusReport, valid_hours: int | None,
          timeout: float | None) -> StatusReport:
    """Ask again until every recipient's status is final: first once the lifetime has run out
    (counted from the latest time the report shows), then after growing pauses."""
    from ..client import backoff_delay
    from ..protocol import DEFAULT_VALID_HOURS, GATEWAY_TIMEZONE, report_due

    hours = valid_hours or DEFAULT_VALID_HOURS
    limit = timeout if timeout is not None else (hours + 1) * 3600.0
    deadline = time.monotonic() + limit
    rechecks = 0
    while not report.is_complete:
        now = datetime.now(GATEWAY_TIMEZONE)
        times = [r.time for r in report.recipients if not r.is_final and r.time is not None]
        # Report times are shown to the minute: a status shown at 12:00 may be from 12:00:59.
        due = report_due(max(times) + timedelta(minutes=1), hours) if times else now
        wait = (due - now).total_seconds()
        if wait <= 0:
            rechecks += 1
            wait = backoff_delay(FIRST_RECHECK_SECONDS, rechecks, jitter=False,
                                 cap=MAX_RECHECK_SECONDS)
        if time.monotonic() + wait > deadline:
            return report
        time.sleep(wait)
        report = client.status(report.request_id)
    return report


def _balance(args: argparse.Namespace) -> int:
    waiting = _WaitingLine.for_stderr()
    with _client(args, on_attempt=waiting) as client, waiting or contextlib.nullcontext():
        amount = client.balance()
    if args.json:
        print_json({"ok": True, "balance": str(amount)})
    else:
        print(amount)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
