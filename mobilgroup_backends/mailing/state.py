"""A mailing's state file (SQLite): every request with its id, minted before the first send, and
what became of it.

The file is written in WAL mode with ``synchronous=NORMAL``: a commit is an append to the log,
with no wait for the disk, and survives the process being killed (a power cut may lose the last
commits, which the resend rule covers as well: a request not marked accepted is sent again with
the same id, and the gateway answers error 7 if it has it).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import protocol
from ..errors import ValidationError
from ..outgoing import Outgoing
from ..protocol import StatusReport
from .plan import MailingOptions, Plan

__all__ = ["ACCEPTED", "FAILED", "PENDING", "MailingState", "StoredRequest", "default_state_path"]

PENDING, ACCEPTED, FAILED = "pending", "accepted", "failed"
#: Recipients of a request that was never accepted, in reports.
NOT_SENT = "not_sent"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (
    seq INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL UNIQUE,
    text TEXT NOT NULL,
    phones TEXT NOT NULL,
    messages INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    accepted_earlier INTEGER NOT NULL DEFAULT 0,
    accepted_at TEXT,
    error TEXT,
    outgoing TEXT NOT NULL
);
CREATE TABLE recipients (
    request_id INTEGER NOT NULL REFERENCES requests (request_id),
    phone TEXT NOT NULL,
    line INTEGER NOT NULL,
    status TEXT,
    status_code INTEGER,
    status_time TEXT,
    PRIMARY KEY (request_id, phone)
);
"""


def default_state_path(csv_path: str | Path) -> Path:
    """``CONTACTS.csv`` -> ``CONTACTS.csv.mailing.sqlite``, beside it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".mailing.sqlite")


@dataclass(frozen=True)
class StoredRequest:
    #: The request's place in the plan: outcomes are written by it, so that requests sent
    #: together are rows stored together (a commit then writes few pages).
    seq: int
    #: The message as the client prepared it, sent as it is by every run.
    outgoing: Outgoing

    @property
    def request_id(self) -> int:
        return self.outgoing.request_ids[0]

    @property
    def text(self) -> str:
        return self.outgoing.text

    @property
    def phones(self) -> tuple[str, ...]:
        return self.outgoing.phones


class MailingState:
    """One mailing's state file. Use from one thread (the one that records outcomes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, timeout=30)
        try:  # the first statement is where SQLite finds out the file is not a database
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._meta = dict(self._db.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError:
            self._db.close()
            raise ValidationError("--state", str(path), "not a mailing state file",
                                  "give the file a mailing send wrote, or another path") from None

    # --- life -----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, plan: Plan, *, source: str, template: str) -> MailingState:
        """Write a new state file with every request's id, all at once: a file either holds the
        whole plan or does not exist (it is built beside and renamed into place)."""
        path = Path(path)
        building = path.with_name(path.name + ".new")
        building.unlink(missing_ok=True)
        db = sqlite3.connect(building)
        # No journal and no waiting for the disk while building: until the rename below the
        # file is nobody's, and a build cut short is simply built again.
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        try:
            with db:
                db.executescript(_SCHEMA)
                meta = {**plan.fingerprint, "source": source, "template": template,
                        "created_at": _now(), "runs": "0"}
                db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
                # The ids were minted by the client's prepare; the UNIQUE column refuses a
                # repeat, however unlikely.
                db.executemany(
                    "INSERT INTO requests (request_id, seq, text, phones, messages, outgoing) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(request.outgoing.request_ids[0], seq, request.text,
                      ",".join(request.phones), len(request.phones),
                      json.dumps(request.outgoing.to_dict(), ensure_ascii=False))
                     for seq, request in enumerate(plan.requests)])
                db.executemany(
                    "INSERT INTO recipients (request_id, phone, line) VALUES (?, ?, ?)",
                    [(request.outgoing.request_ids[0], phone, line) for request in plan.requests
                     for phone, line in zip(request.phones, request.lines, strict=True)])
        finally:
            db.close()
        os.replace(building, path)
        return cls(path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MailingState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- identity -------------------------------------------------------------------------

    def check_same(self, plan: Plan, source: str) -> None:
        """Refuse to resume with another file, template or options than the mailing began with."""
        what = {"csv_sha256": f"the CSV file differs from {self._meta.get('source')!r} as it "
                              "was when the mailing began",
                "template_sha256": f"the text template differs from "
                                   f"{self._meta.get('template')!r}",
                "options": f"the options differ from {self._meta.get('options')}"}
        for key, problem in what.items():
            if self._meta.get(key) != plan.fingerprint.get(key):
                raise ValidationError(
                    "--state", str(self.path), f"this state file belongs to another mailing: "
                    f"{problem}", "run the mailing exactly as it began to resume it, or give "
                    "another --state file to start a new mailing")

    @property
    def options(self) -> MailingOptions:
        return MailingOptions(**json.loads(self._meta["options"]))

    @property
    def runs(self) -> int:
        """How many runs have started sending (0: no request can have reached the gateway)."""
        return int(self._meta.get("runs", "0"))

    def start_run(self) -> int:
        runs = self.runs + 1
        with self._db:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'runs'", (str(runs),))
        self._meta["runs"] = str(runs)
        return runs

    # --- sending --------------------------------------------------------------------------

    def unsent(self) -> list[StoredRequest]:
        """Requests not known to be accepted, in plan order."""
        try:
            rows = self._db.execute("SELECT seq, outgoing FROM requests "
                                    "WHERE state != 'accepted' ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # no outgoing column: written by an older version
            raise ValidationError(
                "--state", str(self.path), "written by an earlier version of this package, "
                "which stored requests another way", "finish the mailing with that version, or "
                "give another --state file to start it anew") from None
        return [StoredRequest(seq, Outgoing.from_dict(json.loads(data))) for seq, data in rows]

    def record(self, outcomes: Iterable[tuple[int, bool, int, bool, str | None]]) -> None:
        """Write outcomes (seq, accepted, attempts, accepted earlier, error) at once."""
        now = _now()
        with self._db:
            self._db.executemany(
                "UPDATE requests SET state = ?, attempts = attempts + ?, accepted_earlier = ?, "
                "accepted_at = CASE WHEN ? THEN ? ELSE accepted_at END, error = ? "
                "WHERE seq = ?",
                [(ACCEPTED if ok else FAILED, attempts, int(earlier), ok, now, error, seq)
                 for seq, ok, attempts, earlier, error in outcomes])

    def counts(self) -> dict[str, int]:
        """Requests and messages by state, and in all."""
        totals = {f"{state}_{unit}": 0 for state in (PENDING, ACCEPTED, FAILED)
                  for unit in ("requests", "messages")}
        for state, requests, messages in self._db.execute(
                "SELECT state, COUNT(*), SUM(messages) FROM requests GROUP BY state"):
            totals[f"{state}_requests"], totals[f"{state}_messages"] = requests, messages
        totals["requests"] = sum(totals[f"{s}_requests"] for s in (PENDING, ACCEPTED, FAILED))
        totals["messages"] = sum(totals[f"{s}_messages"] for s in (PENDING, ACCEPTED, FAILED))
        (totals["accepted_earlier"],) = self._db.execute(
            "SELECT COUNT(*) FROM requests WHERE accepted_earlier").fetchone()
        return totals

    def errors(self, limit: int = 5) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT error FROM requests WHERE state = 'failed' "
                                "LIMIT ?", (limit,))
        return [error for (error,) in rows if error]

    # --- reports --------------------------------------------------------------------------

    def report_due(self) -> datetime | None:
        """When the gateway's rule allows asking for the reports of every accepted request
        (UTC), or None when nothing was accepted."""
        (last,) = self._db.execute(
            "SELECT MAX(accepted_at) FROM requests WHERE state = 'accepted'").fetchone()
        if last is None:
            return None
        options = self.options
        schedule = None
        if options.schedule:
            schedule = datetime.strptime(options.schedule, protocol.SCHEDULE_FORMAT).replace(
                tzinfo=protocol.GATEWAY_TIMEZONE)
        return protocol.report_due(datetime.fromisoformat(last), options.valid_hours, schedule)

    def accepted_ids(self) -> list[int]:
        return [rid for (rid,) in self._db.execute(
            "SELECT request_id FROM requests WHERE state = 'accepted' ORDER BY seq")]

    def save_report(self, report: StatusReport) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE recipients SET status = ?, status_code = ?, status_time = ? "
                "WHERE request_id = ? AND phone = ?",
                [(r.status.name.lower(), int(r.status),
                  r.time.strftime(protocol.SCHEDULE_FORMAT) if r.time else None,
                  report.request_id, r.phone) for r in report.recipients])

    def recipients(self) -> Iterator[dict[str, Any]]:
        """Every recipient in CSV order, with the last status a report gave."""
        rows = self._db.execute(
            "SELECT r.line, r.phone, r.request_id, q.state, r.status, r.status_code, "
            "r.status_time FROM recipients r JOIN requests q USING (request_id) "
            "ORDER BY r.line, q.seq")
        for line, phone, rid, state, status, code, when in rows:
            if state != ACCEPTED:
                status, code = NOT_SENT, None
            yield {"line": line, "phone": phone, "request_id": rid,
                   "status": status or "unknown", "status_code": code, "time": when}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
