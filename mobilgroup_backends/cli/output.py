"""What every ``mobilgroup`` command shares: exit codes and how results and errors are shown.

The JSON shapes come from the result and error types themselves (``to_dict()``,
:func:`~mobilgroup_backends.errors.error_to_dict`), so ``manage.py mobilgroup`` prints the same.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
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
]


def print_json(payload: dict[str, Any], out: TextIO | None = None) -> None:
    print(json.dumps(payload, ensure_ascii=False), file=out or sys.stdout, flush=True)


def print_error(exc: MobilgroupError, as_json: bool,
                request_ids: Sequence[int] = ()) -> int:
    """Show ``exc`` once (JSON on standard output, or one line on standard error); its exit code.

    ``request_ids`` are the ids of every part of the message the error belongs to (a text sent
    in parts): a resend needs them all, in order.
    """
    ids = list(request_ids) or ([exc.request_id] if exc.request_id is not None else [])
    if as_json:
        payload = error_to_dict(exc, "cli")
        if len(ids) > 1:
            payload["request_ids"] = ids
        print_json(payload)
    else:
        print(f"mobilgroup: {exc.describe('cli')}", file=sys.stderr, flush=True)
        if exc.maybe_sent and ids:
            print(f"mobilgroup: it may have been sent; to make sure it goes out exactly once, "
                  f"repeat the same command with --id {','.join(map(str, ids))} --resend",
                  file=sys.stderr, flush=True)
    return exit_code(exc)


def print_status(report: StatusReport, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        print_json({"ok": True, **report.to_dict()}, out)
        return
    print(f"request {report.request_id}: {report.status.name.lower()}", file=out)
    for r in report.recipients:
        when = r.time.strftime("%Y-%m-%d %H:%M") if r.time else "-"
        print(f"  {r.phone:<16} {r.status.name.lower():<12} {when}", file=out)
