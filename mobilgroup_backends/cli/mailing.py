"""``mobilgroup mailing send|report``: a mailing from a CSV file, resumable and sent exactly once.

The work is done by :mod:`mobilgroup_backends.mailing`; this module reads the options, shows
progress (with ``rich`` when it is installed and standard error is a terminal, else a plain line
every few seconds) and prints the outcome.
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    EXIT_ACCOUNT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HIDDEN,
    ValidationError,
    error_to_dict,
)
from .output import print_json, utc_text

if TYPE_CHECKING:
    from ..client import MobilgroupClient
    from ..mailing import BadRows, Outcome, Plan, RunSummary
    from ..mailing.state import MailingState

#: Rendered messages the dry run shows.
SAMPLES = 3
#: Bad rows listed on the terminal (all of them go into --json).
SHOWN_BAD_ROWS = 50


def add_commands(commands: Any) -> None:
    from . import add_gateway_options, add_text_options

    mailing = commands.add_parser("mailing", help="send a mailing from a CSV file; its report",
                                  description="Send a mailing from a CSV file, exactly once "
                                              "however often it is interrupted.")
    actions = mailing.add_subparsers(title="mailing commands", metavar="ACTION")

    send = actions.add_parser(
        "send", help="send a text (a template over the CSV's columns) to every row",
        description="Check every row, then send. Run the same command again to resume an "
                    "interrupted mailing: what was accepted is skipped, nothing is sent twice.")
    send.add_argument("csv", metavar="CONTACTS.csv",
                      help="UTF-8 CSV, ';' or ',' separated, with a 'phone' column")
    send.add_argument("--text", required=True, metavar="TEMPLATE",
                      help="the message; {column} is replaced by the row's cell, e.g. "
                           "'Здравствуйте, {name}!'; '-' reads standard input")
    send.add_argument("--state", metavar="FILE",
                      help="the state file (default: CONTACTS.csv.mailing.sqlite beside the CSV)")
    send.add_argument("--concurrency", type=int, default=8, metavar="N",
                      help="requests in flight at once (default 8)")
    send.add_argument("--dry-run", action="store_true",
                      help="check and count everything, show the first messages; send nothing")
    send.add_argument("--price", metavar="AMOUNT",
                      help="price of one SMS message, for the dry run's cost estimate (the "
                           "gateway does not tell it)")
    add_text_options(send)
    add_gateway_options(send)
    send.set_defaults(handler=run_send)

    report = actions.add_parser(
        "report", help="ask once for every recipient's delivery status",
        description="Once the message lifetime has run out (the gateway asks not to be polled "
                    "earlier), ask once for each request's report; print every recipient's "
                    "status and write them to a CSV file.")
    report.add_argument("--state", metavar="FILE",
                        help="the mailing's state file (default: the only *.mailing.sqlite "
                             "in the current folder)")
    report.add_argument("--csv", metavar="OUT", help="also write the statuses to this CSV file")
    report.add_argument("--force", action="store_true",
                        help="ask even though the lifetime has not run out yet")
    report.add_argument("--concurrency", type=int, default=8, metavar="N",
                        help="reports asked for at once (default 8)")
    add_gateway_options(report)
    report.set_defaults(handler=run_report)


# --- send -------------------------------------------------------------------------------------


def run_send(args: argparse.Namespace) -> int:
    from ..mailing import BadRows, default_state_path, make_plan, read_contacts
    from . import _client

    _check_concurrency(args.concurrency)
    template = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    price = _price(args.price)
    contacts = read_contacts(args.csv)
    # The client holds the settings every message gets (its flags over --url over the
    # environment); it is made before the plan, so the plan is what the gateway will get. Making
    # it sends nothing: a credentials mistake costs nothing, not even a state file to delete.
    with _client(args, pool_size=args.concurrency) as client:
        try:
            plan = make_plan(contacts, template, client, schedule=args.schedule, source=args.csv)
        except BadRows as exc:
            return _print_bad_rows(exc, args.json)
        with plan:
            if args.dry_run:
                return _print_plan(plan, price, args)
            return _send(args, client, plan, template, default_state_path(args.csv))


def _check_concurrency(value: int) -> None:
    if not 1 <= value <= 64:
        raise ValidationError("--concurrency", value, "out of range",
                              "give 1 to 64 requests at once (default 8)")


def _price(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        price = Decimal(text.replace(",", "."))
    except InvalidOperation:
        price = Decimal(-1)
    if not price.is_finite() or price < 0:
        raise ValidationError("--price", text, "not a price", "give the price of one SMS, "
                              "e.g. --price 2.45")
    return price


def _print_bad_rows(exc: BadRows, as_json: bool) -> int:
    if as_json:
        # The first ten thousand of them (BAD_ROWS_KEPT), and how many there are in all.
        print_json({**error_to_dict(exc, "cli"),
                    "bad_rows": [{"line": line, "reason": reason} for line, reason in exc.rows],
                    "bad_rows_count": exc.count})
        return EXIT_USAGE
    lines = [f"  line {line}: {reason}" for line, reason in exc.rows[:SHOWN_BAD_ROWS]]
    if exc.count > SHOWN_BAD_ROWS:
        listed = "them all" if len(exc.rows) == exc.count else f"the first {len(exc.rows)}"
        lines.append(f"  ... and {exc.count - SHOWN_BAD_ROWS} more (--json lists {listed})")
    print(f"mobilgroup: {exc}\n" + "\n".join(lines), file=sys.stderr)
    return EXIT_USAGE


def _print_plan(plan: Plan, price: Decimal | None, args: argparse.Namespace) -> int:
    shape = plan.to_dict(price, SAMPLES)
    cost, samples = plan.cost(price), shape["samples"]
    if args.json:
        print_json(shape)
        return EXIT_OK
    print(f"dry run: nothing sent\n"
          f"  recipients: {plan.recipients}"
          + (f" ({plan.duplicates} repeated row(s) merged)" if plan.duplicates else "") + "\n"
          f"  requests:   {plan.requests} (rows with the same text share a request)\n"
          f"  SMS:        {plan.messages}")
    if cost is not None:
        print(f"  cost:       {cost} ({plan.messages} x {price})")
    else:
        print("  cost:       give --price (one SMS) for an estimate")
    print("first messages:")
    for sample in samples:
        print(f"  {sample['phone']}: {sample['text']}")
    return EXIT_OK


def _send(args: argparse.Namespace, client: MobilgroupClient, plan: Plan, template: str,
          default_state: Path) -> int:
    from ..mailing import MailingState, send_mailing

    path = Path(args.state) if args.state else default_state
    # Owned by this run from before it is read or built: another run is refused at once.
    state = MailingState.open_or_create(path, plan, source=args.csv, template=template)
    # The state file has what the plan's file held: deleted now, not after a run that may be
    # killed.
    plan.close()
    with state:
        state.check_same(plan, args.csv)
        counts = state.counts()
        progress = _progress(counts["messages"], counts["accepted_messages"],
                             resuming=state.runs > 0)
        stop = threading.Event()
        previous = _on_stop_signals(stop)
        try:
            summary = send_mailing(state, client, concurrency=args.concurrency,
                                   on_outcome=progress.advance, stop=stop)
        finally:
            progress.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return _print_summary(args, state, summary)


def _on_stop_signals(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C (and SIGTERM, as service managers send) asks the mailing to stop after the
    requests on the wire; a second one stops at once (still safe: see the resend rule)."""

    def ask_to_stop(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nmobilgroup: stopping after the requests on the wire (again to stop now)",
              file=sys.stderr, flush=True)

    return {signum: signal.signal(signum, ask_to_stop) for signum in (signal.SIGINT, signal.SIGTERM)}


def _print_summary(args: argparse.Namespace, state: MailingState, summary: RunSummary) -> int:
    counts = state.counts()
    due = state.report_due()
    rate = summary.accepted_messages / summary.seconds if summary.seconds else 0.0
    resume = (f"run the same command again to resume (mobilgroup mailing send {args.csv} with "
              f"the same --text and options"
              + (f", --state {state.path}" if args.state else "") + "): nothing is sent twice")
    if args.json:
        print_json(summary.to_dict(state))
    else:
        print(f"{counts['accepted_messages']} of {counts['messages']} SMS accepted "
              f"({counts['accepted_requests']} of {counts['requests']} requests"
              + (f"; {counts['accepted_earlier']} found accepted earlier"
                 if counts["accepted_earlier"] else "")
              + f"), {counts['failed_messages']} failed; this run: "
              f"{summary.accepted_messages} in {summary.seconds:.1f} s ({rate:.0f} SMS/s)")
        print(f"state: {state.path}")
        for error in summary.errors:
            if error is not summary.account_error:
                print(f"  failed: {error}", file=sys.stderr)
        if due and counts["accepted_messages"] == counts["messages"]:
            print(f"delivery reports: mobilgroup mailing report --state {state.path} "
                  f"(after {utc_text(due)})")
    if summary.interrupted:
        print(f"mobilgroup: interrupted; {resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.account_error is not None:
        left = counts["messages"] - counts["accepted_messages"]
        print(f"mobilgroup: stopped: the account must be fixed first: "
              f"{summary.account_error.describe('cli')}; {left} SMS not sent. Fix the account "
              f"(add money, unblock it, correct the credentials), then "
              f"{resume.replace('to resume', 'to send the rest')}", file=sys.stderr)
        return EXIT_ACCOUNT
    if counts["failed_messages"] or counts["pending_messages"]:
        print(f"mobilgroup: {counts['messages'] - counts['accepted_messages']} SMS not accepted; "
              f"{resume.replace('to resume', 'to retry them')}", file=sys.stderr)
        return EXIT_REFUSED if summary.refused == summary.failed_requests else EXIT_UNREACHABLE
    return EXIT_OK


class _PlainProgress:
    """A line on standard error every few seconds: for logs, pipes, and without ``rich``."""

    EVERY = 2.0

    def __init__(self, total: int, done: int) -> None:
        self.total, self.sent, self.failed = total, done, 0
        self.started = self.shown = time.monotonic()
        self.this_run = 0

    def advance(self, outcome: Outcome) -> None:
        size = len(outcome.request.phones)
        if outcome.accepted:
            self.sent += size
            self.this_run += size
        else:
            self.failed += size
        if time.monotonic() - self.shown >= self.EVERY:
            self.show()

    def show(self) -> None:
        self.shown = time.monotonic()
        rate = self.this_run / max(self.shown - self.started, 1e-9)
        left = self.total - self.sent - self.failed
        print(f"sent {self.sent}/{self.total}, failed {self.failed}, left {left}, "
              f"{rate:.0f} SMS/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.show()


class _RichProgress(_PlainProgress):
    def __init__(self, total: int, done: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        super().__init__(total, done)
        self.bar = Progress(
            TextColumn("mailing"), BarColumn(),
            TextColumn("sent {task.fields[sent]} · failed {task.fields[failed]} · "
                       "left {task.fields[left]} · {task.fields[rate]} SMS/s"),
            TimeRemainingColumn(), console=Console(stderr=True))
        self.task = self.bar.add_task("mailing", total=total, completed=done, **self._fields())
        self.bar.start()

    def _fields(self) -> dict[str, Any]:
        rate = self.this_run / max(time.monotonic() - self.started, 1e-9)
        return {"sent": self.sent, "failed": self.failed,
                "left": self.total - self.sent - self.failed, "rate": f"{rate:.0f}"}

    def show(self) -> None:
        self.shown = time.monotonic()
        self.bar.update(self.task, completed=self.sent + self.failed, **self._fields())

    def advance(self, outcome: Outcome) -> None:
        super().advance(outcome)
        self.show()  # rich redraws at its own pace; this only updates the numbers

    def close(self) -> None:
        self.show()
        self.bar.stop()


def _progress(total: int, done: int, *, resuming: bool) -> _PlainProgress:
    if resuming and done:
        print(f"resuming: {done} of {total} SMS were accepted before; sending the rest",
              file=sys.stderr)
    if sys.stderr.isatty():
        try:
            return _RichProgress(total, done)
        except ImportError:
            pass
    return _PlainProgress(total, done)


# --- report -----------------------------------------------------------------------------------


def run_report(args: argparse.Namespace) -> int:
    from ..mailing import MailingState, fetch_reports
    from . import _client

    _check_concurrency(args.concurrency)
    path = Path(args.state) if args.state else _only_state_file()
    if not path.is_file():
        raise ValidationError("--state", str(path), "no such file",
                              "give the state file mailing send wrote")
    with MailingState(path) as state:
        due = state.report_due()
        if due is None:
            raise ValidationError("--state", str(path), "no request of this mailing was "
                                  "accepted, so there is no report to ask for",
                                  "send the mailing first (mailing send)")
        now = datetime.now(timezone.utc)
        if now < due and not args.force:
            minutes = int((due - now).total_seconds() // 60) + 1
            raise ValidationError(
                "delivery report", HIDDEN, f"too early: the gateway gives reports only once the "
                f"message lifetime has run out, after {utc_text(due)} (in {minutes} min)",
                "ask then, or add --force to ask now (statuses may not be final)")
        with _client(args, pool_size=args.concurrency) as client:
            fetched, errors = fetch_reports(state, client, concurrency=args.concurrency)
        recipients = list(state.recipients())
    totals = Counter(r["status"] for r in recipients)
    if args.csv:
        _write_csv(Path(args.csv), recipients)
    if args.json:
        print_json({"ok": not errors, "fetched": fetched, "errors": errors,
                    "summary": dict(totals), "recipients": recipients})
    else:
        for r in recipients:
            print(f"{r['line']:>6}  {r['phone']:<16} {r['status']:<12} {r['time'] or '-'}")
        print("summary: " + ", ".join(f"{count} {status}" for status, count in totals.most_common())
              + (f"; written to {args.csv}" if args.csv else ""))
        for error in errors:
            print(f"mobilgroup: {error}", file=sys.stderr)
    return EXIT_UNREACHABLE if errors and not fetched else EXIT_OK


def _only_state_file() -> Path:
    found = sorted(Path.cwd().glob("*.mailing.sqlite"))
    if len(found) != 1:
        raise ValidationError("--state", None, f"{len(found)} *.mailing.sqlite files in "
                              "the current folder", "name the mailing's state file with --state")
    return found[0]


def _write_csv(path: Path, recipients: list[dict[str, Any]]) -> None:
    columns = ("line", "phone", "request_id", "status", "status_code", "time")
    try:
        # UTF-8 with a byte order mark: spreadsheets then open it with the right characters.
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(recipients)
    except OSError as exc:
        raise ValidationError("--csv", str(path), exc.strerror or str(exc),
                              "give a path in a folder you can write to") from None
