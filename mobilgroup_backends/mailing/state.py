"""A mailing's state file (SQLite): every request with its id, minted before the first send, and
what became of it.

The file is written in WAL mode with ``synchronous=NORMAL``: a commit is an append to the log,
with no wait for the disk, and survives the process being killed (a power cut may lose the last
commits, which the resend rule covers as well: a request not marked accepted is sent again with
the same id, and the gateway answers error 7 if it has it).

One run owns a state file at a time (:mod:`.lock`: an OS lock held for the run). A new file is
built under a unique temporary name and linked into place only if no file is there (``os.link``
fails rather than replace one). Every ``sqlite3.Error`` leaves this module as a
:class:`~mobilgroup_backends.errors.ValidationError` naming the state file, what is wrong with it
and what to do; a file locked by another program is told at once, not waited for.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from .. import protocol
from ..errors import ValidationError
from ..outgoing import Outgoing
from ..protocol import StatusReport
from .lock import RunLock
from .plan import MailingOptions, Plan

__all__ = ["ACCEPTED", "FAILED", "PENDING", "MailingState", "StoredRequest", "UnsentRequests",
           "default_state_path"]

PENDING, ACCEPTED, FAILED = "pending", "accepted", "failed"
#: Recipients of a request that was never accepted, in reports.
NOT_SENT = "not_sent"

_META_TABLE = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
#: Requests read back at a time by :meth:`MailingState.unsent`.
UNSENT_CHUNK = 500


#: Seconds a statement waits for a lock another program holds on the file. Runs of this package
#: never wait on each other (the run lock), so a lock is someone else's: told, not waited out.
BUSY_TIMEOUT = 0.5
#: What every state file's ``meta`` table holds.
_META_KEYS = ("csv_sha256", "template_sha256", "options", "runs")

P = ParamSpec("P")
R = TypeVar("R")


def state_error(path: Path, exc: sqlite3.Error) -> ValidationError:
    """What a failure of SQLite on a state file means, and what to do about it."""
    text = str(exc)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        problem = (f"the state file is locked by another program ({text}), such as an SQLite "
                   "browser or a backup tool")
        fix = "close that program, then run the same command again"
    elif "readonly" in lowered or "read-only" in lowered:
        problem = f"the state file cannot be written ({text})"
        fix = (f"make it and its folder writable (chmod u+w {path}), or copy it somewhere "
               "writable and give --state the copy")
    elif "unable to open" in lowered:
        problem = f"the state file cannot be opened ({text})"
        fix = "check the path, and that you may read and write the file and its folder"
    else:
        problem = f"damaged, or not a mailing state file ({text})"
        fix = (f"mailing report --state {path} shows what can still be read from it; give "
               "--state a new file to start the mailing afresh (requests this file recorded as "
               "sent would then be sent again)")
    return ValidationError("--state", str(path), problem, fix)


def _sqlite_errors(method: Callable[P, R]) -> Callable[P, R]:
    """A :class:`MailingState` method whose ``sqlite3.Error`` becomes :func:`state_error`."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as exc:
            state = args[0]
            assert isinstance(state, MailingState)
            raise state_error(state.path, exc) from None

    return guarded


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

    def __init__(self, path: str | Path, *, run_lock: RunLock | None = None) -> None:
        """Open an existing state file, owning it until :meth:`close`. ``run_lock`` is the lock
        already taken for it (by :meth:`create` or :meth:`open_or_create`)."""
        self.path = Path(path)
        if run_lock is None:  # no lock file beside a wrong path
            _must_be_a_file(self.path)
        self._lock = run_lock or RunLock.take(self.path)
        try:
            self._db, self._meta = _open(self.path)
        except BaseException:
            self._lock.release()
            raise

    # --- life -----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, plan: Plan, *, source: str, template: str) -> MailingState:
        """Write a new state file with every request's id, all at once: a file either holds the
        whole plan or does not exist. A file already at ``path`` is refused, never replaced."""
        path = Path(path)
        lock = RunLock.take(path)
        try:
            if not _build(path, plan, source=source, template=template):
                raise ValidationError("--state", str(path), "the file exists already",
                                      "give another path, or run mailing send to resume")
            return cls(path, run_lock=lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open_or_create(cls, path: str | Path, plan: Plan, *, source: str,
                       template: str) -> MailingState:
        """The state file at ``path`` (to resume), or a new one for ``plan``: owned by this
        run either way, from before it is read or built. Another run's is refused at once."""
        path = Path(path)
        lock = RunLock.take(path)
        try:
            _forget_unfinished_builds(path)
            if not path.exists():
                _build(path, plan, source=source, template=template)
            return cls(path, run_lock=lock)
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            self._lock.release()

    def __enter__(self) -> MailingState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- identity -------------------------------------------------------------------------

    @_sqlite_errors
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

    @_sqlite_errors
    def start_run(self) -> int:
        runs = self.runs + 1
        with self._db:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'runs'", (str(runs),))
        self._meta["runs"] = str(runs)
        return runs

    # --- sending --------------------------------------------------------------------------

    def unsent(self) -> UnsentRequests:
        """Requests not known to be accepted, in plan order: read from the file a chunk at a
        time as they are iterated, never all at once."""
        return UnsentRequests(self)

    @_sqlite_errors
    def unsent_after(self, seq: int, limit: int = UNSENT_CHUNK) -> list[StoredRequest]:
        """Up to ``limit`` requests not known to be accepted whose ``seq`` is past ``seq``, in
        plan order (the next chunk; ``seq=-1`` for the first)."""
        try:
            rows = self._db.execute("SELECT seq, outgoing FROM requests WHERE seq > ? AND "
                                    "state != 'accepted' ORDER BY seq LIMIT ?",
                                    (seq, limit)).fetchall()
        except sqlite3.OperationalError as exc:
            if "outgoing" not in str(exc):
                raise
            # no outgoing column: written by an older version
            raise ValidationError(
                "--state", str(self.path), "written by an earlier version of this package, "
                "which stored requests another way", "finish the mailing with that version, or "
                "give another --state file to start it anew") from None
        return [StoredRequest(seq, Outgoing.from_dict(json.loads(data))) for seq, data in rows]

    @_sqlite_errors
    def unsent_count(self) -> int:
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM requests WHERE state != 'accepted'").fetchone()
        return int(count)

    @_sqlite_errors
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

    @_sqlite_errors
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

    @_sqlite_errors
    def errors(self, limit: int = 5) -> list[str]:
        rows = self._db.execute("SELECT DISTINCT error FROM requests WHERE state = 'failed' "
                                "LIMIT ?", (limit,))
        return [error for (error,) in rows if error]

    # --- reports --------------------------------------------------------------------------

    @_sqlite_errors
    def report_due(self) -> datetime | None:
        """When the gateway's rule allows asking for the reports of every accepted request
        (UTC), or None when nothing was accepted."""
        (last,) = self._db.execute(
            "SELECT MAX(accepted_at) FROM requests WHERE state = 'accepted'").fetchone()
        if last is None:
            return None
        options = self.options
        schedule = protocol.schedule_time(options.schedule) if options.schedule else None
        return protocol.report_due(datetime.fromisoformat(last), options.valid_hours, schedule)

    @_sqlite_errors
    def accepted_ids(self) -> list[int]:
        return [rid for (rid,) in self._db.execute(
            "SELECT request_id FROM requests WHERE state = 'accepted' ORDER BY seq")]

    @_sqlite_errors
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
        try:
            rows = self._db.execute(
                "SELECT r.line, r.phone, r.request_id, q.state, r.status, r.status_code, "
                "r.status_time FROM recipients r JOIN requests q USING (request_id) "
                "ORDER BY r.line, q.seq").fetchall()
        except sqlite3.Error as exc:
            raise state_error(self.path, exc) from None
        for line, phone, rid, state, status, code, when in rows:
            if state != ACCEPTED:
                status, code = NOT_SENT, None
            yield {"line": line, "phone": phone, "request_id": rid,
                   "status": status or "unknown", "status_code": code, "time": when}


class UnsentRequests:
    """The requests of a state file not known to be accepted: ``len()`` counts them, iterating
    reads them in plan order, :data:`UNSENT_CHUNK` at a time (outcomes may be recorded between
    chunks: each chunk starts past the last request read)."""

    def __init__(self, state: MailingState) -> None:
        self._state = state

    def __len__(self) -> int:
        return self._state.unsent_count()

    def __iter__(self) -> Iterator[StoredRequest]:
        last = -1
        while True:
            chunk = self._state.unsent_after(last)
            yield from chunk
            if len(chunk) < UNSENT_CHUNK:
                return
            last = chunk[-1].seq


def _open(path: Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """A connection to the state file at ``path`` and its ``meta``, the file checked whole."""
    _must_be_a_file(path)
    try:
        # mode=rw: never create an empty database where a state file was expected.
        db = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=rw", uri=True,
                             timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise state_error(path, exc) from None
    try:  # the first statement is where SQLite finds out the file is not a database
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Every page read once (indexes not cross-checked): a damaged file is refused before
        # the first send, not halfway through a mailing.
        problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("; ".join(map(str, problems)))
        meta = {str(key): str(value) for key, value in db.execute("SELECT key, value FROM meta")}
        if any(key not in meta for key in _META_KEYS):
            raise sqlite3.DatabaseError("its meta table holds no mailing")
        try:
            MailingOptions(**json.loads(meta["options"]))
        except (ValueError, TypeError):
            raise sqlite3.DatabaseError("its options are not a mailing's") from None
        db.execute("SELECT seq, request_id, text, phones, messages, state, attempts, "
                   "accepted_earlier, accepted_at, error FROM requests LIMIT 0")
        db.execute("SELECT request_id, phone, line, status, status_code, status_time "
                   "FROM recipients LIMIT 0")
        # The run will write: a read-only file, or one another program holds, is told now.
        db.execute("UPDATE meta SET value = value WHERE key = 'runs'")
        db.rollback()
    except sqlite3.Error as exc:
        db.close()
        raise state_error(path, exc) from None
    return db, meta


def _must_be_a_file(path: Path) -> None:
    if not path.is_file():
        raise ValidationError("--state", str(path), "not a file" if path.exists() else
                              "no such file", "give the state file mailing send wrote")


def _build(path: Path, plan: Plan, *, source: str, template: str) -> bool:
    """Build the state file for ``plan`` beside ``path`` under a unique name, then link it into
    place; False when a file was there already (it is left as it is)."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".new")
    except OSError as exc:
        raise ValidationError("--state", str(path), f"cannot write beside it "
                              f"({exc.strerror or exc})",
                              "give --state a file in a folder you can write to") from None
    os.close(fd)
    building = Path(name)
    try:
        # The plan's file holds every request already: copied (by the kernel, not through
        # memory), with the mailing's identity added.
        shutil.copyfile(plan.path, building)
        db = sqlite3.connect(building)
        try:
            # No journal and no waiting for the disk while building: until it is linked into
            # place the file is nobody's, and a build cut short is simply built again.
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            _fill(db, plan, source=source, template=template)
        finally:
            db.close()
        try:
            os.link(building, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links; the run lock keeps other runs out
            if path.exists():
                return False
            os.replace(building, path)
        return True
    except sqlite3.Error as exc:
        raise state_error(path, exc) from None
    except OSError as exc:  # the copy of the plan: a full disk, say
        raise ValidationError("--state", str(path), f"cannot write beside it "
                              f"({exc.strerror or exc})",
                              "free some space, or give --state a file on another disk") from None
    finally:
        building.unlink(missing_ok=True)


def _forget_unfinished_builds(path: Path) -> None:
    """Delete what a run killed while building ``path`` left (only the run holding the lock
    builds, so under the lock every such file is a dead run's)."""
    for leftover in path.parent.glob(glob.escape(path.name) + ".*.new"):
        leftover.unlink(missing_ok=True)


def _fill(db: sqlite3.Connection, plan: Plan, *, source: str, template: str) -> None:
    with db:
        db.execute(_META_TABLE)
        meta = {**plan.fingerprint, "source": source, "template": template,
                "created_at": _now(), "runs": "0"}
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
