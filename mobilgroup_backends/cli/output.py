"""What every ``mobilgroup`` command shares: exit codes and how results are shown."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from ..protocol import StatusReport

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def print_status(report: StatusReport, as_json: bool, out: TextIO | None = None) -> None:
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
