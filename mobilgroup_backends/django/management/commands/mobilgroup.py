"""``manage.py mobilgroup balance | status ID | send PHONE... --text TEXT | track | outbox | codes``.

Exit codes and ``--json`` shapes are the stand-alone ``mobilgroup`` command's (both come from the
core: :func:`~mobilgroup_backends.errors.exit_code`, ``to_dict()`` on the results): 0 done; 1 the
gateway refused; 2 bad usage, input or settings, nothing was sent; 3 the gateway could not be
reached or did not answer with its XML.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from argparse import ArgumentParser
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ....client import MobilgroupClient, sent_to_dict
from ....errors import (
    EXIT_ACCOUNT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    MobilgroupError,
    Verdict,
    error_to_dict,
    exit_code,
)
from ....protocol import check_sender
from ...backend import SmsBackend
from ...dispatch import DEFAULT_STALE_AFTER


class _Message:
    """The smallest message object the backend reads (as django-sms's and django-sendsms's)."""

    def __init__(self, body: str, recipients: list[str], originator: str | None) -> None:
        self.body = body
        self.recipients = recipients
        self.originator = originator


class _DropNotSent(logging.Filter):
    """Drops the backend's "SMS not sent" warning while this command sends: the command itself
    reports the failure, and an error must be printed once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("SMS not sent")


class Command(BaseCommand):
    help = "Talk to the Mobilgroup SMS gateway: balance, status, send, and delivery tracking."
    # The command reports its own settings problems precisely (exit code 2); the project's other
    # checks must not stop a balance query or a cron `track` run.
    requires_system_checks: list[str] = []  # noqa: RUF012 - Django's own attribute type

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="ACTION")
        actions.required = True
        kwargs: dict[str, Any] = {}
        if hasattr(parser, "called_from_command_line"):
            kwargs["called_from_command_line"] = parser.called_from_command_line

        def action(name: str, help_text: str) -> ArgumentParser:
            sub: ArgumentParser = actions.add_parser(name, help=help_text, description=help_text,
                                                     **kwargs)
            # Accepted after the action too ("track -v 2"), as people type it; SUPPRESS keeps
            # the value given before the action when it is not repeated here.
            sub.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3],
                             default=argparse.SUPPRESS, help="verbosity level")
            return sub

        balance = action("balance", "Print the account balance.")
        balance.add_argument("--json", action="store_true", help="print JSON")

        status = action("status", "Print a request's mailing status and each recipient's.")
        status.add_argument("request_id", metavar="REQUEST_ID")
        status.add_argument("--json", action="store_true", help="print JSON")

        send = action("send", "Send one text to one or more phones through the SMS backend "
                              "(signals, LONG_MESSAGES and delivery tracking apply).")
        send.add_argument("phones", nargs="+", metavar="PHONE")
        send.add_argument("--text", required=True, help="the message text")
        send.add_argument("--sender", help="sender alias (default: the SENDER setting)")
        send.add_argument("--json", action="store_true", help="print JSON")

        track = action("track", "Fetch the delivery reports that are due and record them "
                                "(safe to run from cron on several hosts at once).")
        track.add_argument("--limit", type=int, default=None,
                           help="poll at most this many requests in this run")
        track.add_argument("--loop", action="store_true",
                           help="keep running, one run every --interval seconds")
        track.add_argument("--interval", type=float, default=60.0,
                           help="seconds between runs with --loop (default 60)")
        track.add_argument("--json", action="store_true", help="print JSON, one line a run")

        outbox = action("outbox", "Send the outbox rows left pending longer than --stale-after "
                                  "(a lost enqueue, a killed worker), and expire those past "
                                  "their not_after (safe to run on several hosts at once).")
        outbox.add_argument("--stale-after", type=float, metavar="SECONDS",
                            default=DEFAULT_STALE_AFTER.total_seconds(),
                            help="leave younger pending rows to the task backend "
                                 f"(default {DEFAULT_STALE_AFTER.total_seconds():g})")
        outbox.add_argument("--limit", type=int, default=None,
                            help="send at most this many rows in this run")
        outbox.add_argument("--concurrency", type=int, default=4,
                            help="rows sent at once (default 4)")
        outbox.add_argument("--loop", action="store_true",
                            help="keep running, one run every --interval seconds")
        outbox.add_argument("--interval", type=float, default=30.0,
                            help="seconds between runs with --loop (default 30)")
        outbox.add_argument("--json", action="store_true", help="print JSON, one line a run")

        codes = action("codes", "Print the one-time code guard's counts: codes sent this hour, "
                                "refusals today by reason, and the limits.")
        codes.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        handler = getattr(self, f"_{options['action']}")
        try:
            handler(options)
        except ImproperlyConfigured as exc:
            self._fail(options, {"ok": False, "error": "invalid", "message": str(exc)}, EXIT_USAGE)
        except MobilgroupError as exc:
            self._fail(options, error_to_dict(exc, "django"), exit_code(exc))

    def _fail(self, options: dict[str, Any], payload: dict[str, Any], code: int) -> NoReturn:
        if not options.get("json"):
            raise CommandError(f"{payload['error']}: {payload['message']}", returncode=code)
        # With --json the error is printed once, as JSON on standard output, not again by Django.
        self.stdout.write(json.dumps(payload, ensure_ascii=False))
        if getattr(self, "_called_from_command_line", False):
            sys.exit(code)
        raise CommandError(payload["message"], returncode=code)

    def _codes(self, options: dict[str, Any]) -> None:
        from ...guard import REASONS, GuardLimits, counters

        limits = GuardLimits.from_settings()
        counts = counters(limits)  # a cache that is down raises here: the command says so
        if options["json"]:
            self.stdout.write(json.dumps({"ok": True, **counts, "limits": {
                "per_phone_hour": limits.per_phone_hour, "per_phone_day": limits.per_phone_day,
                "per_hour": limits.per_hour, "regions": list(limits.regions)}}))
            return
        self.stdout.write(f"One-time codes sent this hour: {counts['sent_this_hour']} of "
                          f"{limits.per_hour} (cache {limits.cache!r})")
        refused = ", ".join(f"{reason} {counts['refused_' + reason]}" for reason in REASONS)
        self.stdout.write(f"Refused today: {sum(counts['refused_' + r] for r in REASONS)} "
                          f"({refused})")
        self.stdout.write(f"Limits: {limits.per_phone_hour} per phone per hour, "
                          f"{limits.per_phone_day} per phone per day, regions "
                          f"{', '.join(limits.regions)}")

    def _client(self) -> MobilgroupClient:
        return SmsBackend().make_client()

    def _balance(self, options: dict[str, Any]) -> None:
        with self._client() as client:
            balance = client.balance()
        if options["json"]:
            self.stdout.write(json.dumps({"ok": True, "balance": str(balance)}))
        else:
            self.stdout.write(f"Balance: {balance}")

    def _status(self, options: dict[str, Any]) -> None:
        with self._client() as client:
            report = client.status(options["request_id"], extended=True)
        if options["json"]:
            self.stdout.write(json.dumps({"ok": True, **report.to_dict()}, ensure_ascii=False))
            return
        self.stdout.write(f"Request {report.request_id}: mailing "
                          f"{report.status.name.lower()} ({int(report.status)})")
        for recipient in report.recipients:
            when = recipient.time.strftime("%Y-%m-%d %H:%M") if recipient.time else "-"
            self.stdout.write(f"  {recipient.phone}  {recipient.status.name.lower():<11}  {when}")

    def _send(self, options: dict[str, Any]) -> None:
        # An alias given here is checked, not ignored as an invalid originator would be.
        sender = check_sender(options["sender"])
        message = _Message(options["text"], list(options["phones"]), sender)
        # The backend logs a failure as well as raising it; here the command reports it, once.
        quiet = _DropNotSent()
        backend_logger = logging.getLogger("mobilgroup_backends.django")
        backend_logger.addFilter(quiet)
        try:
            with SmsBackend(fail_silently=False) as backend:
                backend.send_messages([message])
        finally:
            backend_logger.removeFilter(quiet)
        status = message.mobilgroup_status  # type: ignore[attr-defined]  # set by the backend
        if options["json"]:
            self.stdout.write(json.dumps(
                {**sent_to_dict(status.request_ids, status.recipients, status.sender),
                 "tracked": status.tracked}, ensure_ascii=False))
            return
        ids = ", ".join(str(rid) for rid in status.request_ids)
        parts = f" in {status.parts} parts" if status.parts > 1 else ""
        self.stdout.write(f"Sent to {len(status.recipients)} recipient(s){parts}: "
                          f"request id {ids}")

    def _repeat(self, options: dict[str, Any], run: Callable[[MobilgroupClient], None]) -> None:
        """One run, or with ``--loop`` one every ``--interval`` seconds until interrupted (Ctrl-C
        or SIGINT stops it cleanly, between runs or in one: claims are released or run out)."""
        with self._client() as client:
            if not options["loop"]:
                run(client)
                return
            try:
                while True:
                    started = time.monotonic()
                    run(client)
                    time.sleep(max(0.0, options["interval"] - (time.monotonic() - started)))
            except KeyboardInterrupt:
                return

    def _outbox(self, options: dict[str, Any]) -> None:
        from ...dispatch import sweep

        stale_after = timedelta(seconds=options["stale_after"])

        def run(client: MobilgroupClient) -> None:
            result = sweep(stale_after=stale_after, limit=options["limit"],
                           concurrency=options["concurrency"], client=client)
            if options["json"]:
                self.stdout.write(json.dumps({"ok": True, **result.to_dict()}))
            else:
                self.stdout.write(result.summary())

        self._repeat(options, run)

    def _track(self, options: dict[str, Any]) -> None:
        self._repeat(options, lambda client: self._track_once(client, options))

    def _track_once(self, client: MobilgroupClient, options: dict[str, Any]) -> None:
        from ...tracking import track

        result = track(client, limit=options["limit"])
        if options["json"]:
            self.stdout.write(json.dumps({"ok": True, **result.to_dict()}, ensure_ascii=False))
        else:
            self.stdout.write(result.summary())
            for error in result.errors:
                self.stderr.write(error)
        if result.stopped_by is not None and not options["loop"]:
            # Stopped on a failure that will not mend by waiting: its verdict says which exit.
            stopped = result.stopped_by
            raise CommandError(f"delivery tracking stopped: {stopped.describe('django')}",
                               returncode=EXIT_ACCOUNT if stopped.verdict is Verdict.ACCOUNT
                               else exit_code(stopped))
        if result.failed and result.failed == len(result.polled) and not options["loop"]:
            raise CommandError("no delivery report could be fetched", returncode=EXIT_UNREACHABLE)

