"""What every ``mobilgroup`` command shares: exit codes and how results and errors are shown.

The JSON shapes come from the result and error types themselves (``to_dict()``,
:func:`~mobilgroup_backends.errors.error_to_dict`), so ``manage.py mobilgroup`` prints the same.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    MobilgroupError,
    error_to_dict,
    exit_code,
)

if TYPE_CHECKING:
    from ..protocol import StatusReport

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "print_error",
    "print_json",
    "print_status",
    "utc_text",
]


def print_json(payload: dict[str, Any], out: TextIO | None = None) -> None:
    print(json.dumps(payload, ensure_ascii=False), file=out or sys.stdout, flush=True)


def print_error(exc: MobilgroupError, as_json: bool) -> int:
    """Show ``exc`` once (JSON on standard output, or one line on standard error); its exit code."""
    if as_json:
        print_json(error_to_dict(exc, "cli"))
    else:
        print(f"mobilgroup: {exc.describe('cli')}", file=sys.stderr, flush=True)
        if exc.maybe_sent and exc.request_id is not None:
            print(f"mobilgroup: it may have been sent; to make sure it goes out exactly once, "
                  f"repeat the same command with --id {exc.request_id} --resend", file=sys.stderr,
                  flush=True)
    return exit_code(exc)


def utc_text(moment: datetime) -> str:
    """A moment as the command line shows every time: in UTC, and saying so (the gateway's
    reports are in Moscow time, the machine's clock in its own zone)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def print_status(report: StatusReport, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print_json({"ok": True, **report.to_dict()}, out)
        return
    print(f"request {report.request_id}: {report.status.name.lower()}", file=out)
    for r in report.recipients:
        when = utc_text(r.time) if r.time else "-"
        print(f"  {r.phone:<16} {r.status.name.lower():<12} {when}", file=out)
