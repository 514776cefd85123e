"""A mailing's plan: every row checked, rendered, and the texts grouped into gateway requests.

Nothing here talks to the gateway: a plan is made (and every bad row found) before anything is
spent. Rows that render the same text are sent as one request to up to :data:`BATCH_SIZE`
phones: fewer requests, the same messages.

A plan is never held in memory, however many rows: the rows are read from the CSV one at a
time, each checked and prepared by the client, and written in batches to a temporary SQLite
file; repeated phones and the grouping of identical texts are found by SQLite (on disk, in its
own bounded cache), and the requests are written to the plan's file in the tables a state file
holds (:data:`REQUEST_TABLES`), from which :class:`~.state.MailingState` is made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import string
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..errors import ValidationError
from ..outgoing import Outgoing
from .contacts import Contact, Contacts, template_fields

if TYPE_CHECKING:
    from ..client import MobilgroupClient

__all__ = ["BAD_ROWS_KEPT", "BATCH_SIZE", "REQUEST_TABLES", "BadRows", "MailingOptions", "Plan",
           "make_plan"]

#: Phones per request when rows share a text. The gateway takes a comma-separated list; 100
#: keeps a request small (about 1.3 kB) and one refusal (a bad number, error 8) from holding up
#: more than a hundred recipients.
BATCH_SIZE = 100
#: Bad rows a :class:`BadRows` lists (the rest are counted): enough to show what is wrong with a
#: file, bounded however bad the file is.
BAD_ROWS_KEPT = 10_000
#: Rows (and requests) written to SQLite at a time while planning.
_WRITE_BATCH = 2000

#: The tables of a plan, and of the state file made from it: every request, with its prepared
#: message (``outgoing``, :meth:`Outgoing.to_dict` as JSON), and every recipient's CSV line.
REQUEST_TABLES = """
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

#: Every rendered part of every good row (``seq`` in CSV order), in a private temporary database
#: that SQLite deletes itself when the planning connection closes.
_STAGING = """
ATTACH DATABASE '' AS staging;
CREATE TABLE staging.parts (seq INTEGER PRIMARY KEY, text TEXT NOT NULL, phone TEXT NOT NULL,
                            line INTEGER NOT NULL);
"""
#: The first row of each (text, phone): a repeat of a phone with the same text is dropped.
#: Each text's first row orders the requests, as the texts first appear in the file.
_GROUP = """
CREATE TABLE staging.kept (seq INTEGER PRIMARY KEY);
INSERT INTO staging.kept SELECT MIN(seq) FROM staging.parts GROUP BY text, phone;
CREATE TABLE staging.texts (text TEXT PRIMARY KEY, first INTEGER NOT NULL);
INSERT INTO staging.texts SELECT text, MIN(seq) FROM staging.parts GROUP BY text;
"""
_GROUPED = """
SELECT p.text, p.phone, p.line FROM staging.kept k JOIN staging.parts p ON p.seq = k.seq
JOIN staging.texts t ON t.text = p.text ORDER BY t.first, p.seq
"""


@dataclass(frozen=True)
class MailingOptions:
    """How every message of the mailing is sent, as the client applied them (part of what makes
    two runs the same mailing): its resolved settings and the schedule, never argparse alone."""

    sender: str | None = None
    schedule: str | None = None
    valid_hours: int | None = None
    transliterate: bool = True
    long_messages: str = "error"
    replace_unencodable: bool = False
    region: str = protocol.DEFAULT_REGION
    max_parts: int | None = None

    @classmethod
    def of(cls, client: MobilgroupClient, outgoing: Outgoing) -> MailingOptions:
        """The options of a mailing sent by ``client``, whose first message is ``outgoing``."""
        settings = client.settings
        return cls(sender=outgoing.sender, schedule=outgoing.schedule,
                   valid_hours=outgoing.valid_hours, transliterate=outgoing.transliterate,
                   long_messages=settings.long_messages,
                   replace_unencodable=settings.replace_unencodable, region=settings.region,
                   max_parts=settings.max_parts)

    def to_json(self) -> str:
        fields = asdict(self)
        if self.max_parts is None:  # as state files written before it was an option have it
            del fields["max_parts"]
        return json.dumps(fields, sort_keys=True, ensure_ascii=False)


class Plan:
    """A checked mailing: its numbers, a few of its messages, its identity, and its requests in
    a temporary SQLite file (:attr:`path`), deleted by :meth:`close` (or when the plan is
    garbage-collected)."""

    def __init__(self, path: Path, *, requests: int, messages: int, recipients: int,
                 duplicates: int, fingerprint: dict[str, str], options: MailingOptions,
                 samples: list[tuple[str, str]]) -> None:
        self.path = path
        #: Gateway requests to make.
        self.requests = requests
        #: SMS messages to send: one per phone per request (a split text is several requests).
        self.messages = messages
        #: Rows that will get a message (after merging repeats of a phone with the same text).
        self.recipients = recipients
        #: Rows dropped because the same phone already gets the same text.
        self.duplicates = duplicates
        #: The source file's and the template's digests, and the options: a mailing's identity.
        self.fingerprint = fingerprint
        self.options = options
        #: The first requests' first phone and text, as the dry run shows them.
        self.samples = samples
        self._remove = weakref.finalize(self, _unlink, path)

    def close(self) -> None:
        """Delete the plan's file (a state file made from it keeps its own copy). Idempotent."""
        self._remove()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def cost(self, price: Decimal | None) -> Decimal | None:
        return None if price is None else price * self.messages

    def to_dict(self, price: Decimal | None = None, samples: int = 3) -> dict[str, Any]:
        """The plan as JSON, as the dry run prints it: its numbers, the cost at ``price`` (None
        without one) and the first ``samples`` messages."""
        cost = self.cost(price)
        return {"ok": True, "dry_run": True, **describe(self),
                "cost": str(cost) if cost is not None else None,
                "samples": [{"phone": phone, "text": text}
                            for phone, text in self.samples[:samples]]}


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


class BadRows(ValidationError):
    """Rows that cannot be sent; nothing was sent. ``rows`` holds (line, reason) pairs of the
    first :data:`BAD_ROWS_KEPT` of them; ``count`` is how many there are in all."""

    def __init__(self, source: str, rows: list[tuple[int, str]], count: int | None = None) -> None:
        self.rows = rows
        self.count = len(rows) if count is None else count
        super().__init__("CSV", source, f"{self.count} row(s) cannot be sent, so nothing was "
                         "sent", "fix or remove them and run the same command again")


def make_plan(contacts: Contacts, template: str, client: MobilgroupClient, *,
              schedule: datetime | str | None = None, source: str = "CSV",
              batch_size: int = BATCH_SIZE, folder: str | Path | None = None) -> Plan:
    """Check every row, render its text and group the texts into requests.

    Every message is made by ``client.prepare``: the client's settings (sender, lifetime,
    transliteration, region, long texts, unencodable characters) apply as they do to any send.
    Nothing is sent. Raises :class:`BadRows` listing the rows that cannot be sent (a phone that
    is not one, an empty cell the template uses, a text too long or not encodable), and
    :class:`~mobilgroup_backends.errors.ValidationError` for a template or option mistake.

    The plan's requests are written to a temporary file in ``folder`` (default: the system's
    temporary folder; as large as the state file); memory does not grow with the rows.
    """
    if not template.strip():
        raise ValidationError("--text", template, "the template is empty",
                              "give the message, e.g. 'Здравствуйте, {name}!'")
    fields = template_fields(template, contacts.columns)
    check_padding(template, client.settings.transliterate)
    fd, name = tempfile.mkstemp(prefix="mobilgroup-mailing-", suffix=".plan.sqlite",
                                dir=folder)
    os.close(fd)
    path = Path(name)
    try:
        db = sqlite3.connect(path)
        try:
            # Nobody else reads this file until it is whole: no journal, no waiting for the disk.
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.executescript(_STAGING + REQUEST_TABLES)
            first, rows, parts = _check_rows(db, contacts, template, fields, client, schedule,
                                             source)
            db.executescript(_GROUP)
            requests, messages, samples = _write_requests(db, client, schedule, batch_size)
            db.commit()
        finally:
            db.close()
    except BaseException:
        _unlink(path)
        raise
    options = MailingOptions.of(client, first)
    fingerprint = {"csv_sha256": contacts.sha256,
                   "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
                   "options": options.to_json()}
    duplicates = parts - messages
    return Plan(path, requests=requests, messages=messages, recipients=rows - duplicates,
                duplicates=duplicates, fingerprint=fingerprint, options=options,
                samples=samples)


def _check_rows(db: sqlite3.Connection, contacts: Contacts, template: str,
                fields: tuple[str, ...], client: MobilgroupClient,
                schedule: datetime | str | None, source: str) -> tuple[Outgoing, int, int]:
    """Check and render every row, writing each part's text and phone to the staging table: the
    first row's message, the good rows and the parts written. Raises :class:`BadRows`."""
    bad: list[tuple[int, str]] = []
    bad_count = 0
    first: Outgoing | None = None
    rows = parts = 0
    pending: list[tuple[int, str, str, int]] = []
    for record in contacts.records():
        if isinstance(record, Contact):
            try:
                outgoing = _render(record.cells, template, fields, client, schedule)
            except ValidationError as exc:
                if exc.field == "schedule":
                    raise  # the same for every row: an option mistake, not a row's
                reason = _reason(exc)
            else:
                first = first or outgoing
                rows += 1
                if bad_count:
                    continue  # nothing will be sent: only the bad rows are still of interest
                for part in outgoing.parts:
                    pending.append((parts, part.text, outgoing.phones[0], record.line))
                    parts += 1
                if len(pending) >= _WRITE_BATCH:
                    _write_parts(db, pending)
                continue
        else:
            reason = record.reason
        bad_count += 1
        if len(bad) < BAD_ROWS_KEPT:
            bad.append((record.line, reason))
    if bad_count:
        raise BadRows(source, bad, bad_count)
    if first is None:
        raise ValidationError("CSV", source, "no rows to send", "add rows below the header")
    _write_parts(db, pending)
    return first, rows, parts


def _write_parts(db: sqlite3.Connection, pending: list[tuple[int, str, str, int]]) -> None:
    db.executemany("INSERT INTO staging.parts VALUES (?, ?, ?, ?)", pending)
    pending.clear()


def _write_requests(db: sqlite3.Connection, client: MobilgroupClient,
                    schedule: datetime | str | None,
                    batch_size: int) -> tuple[int, int, list[tuple[str, str]]]:
    """Prepare a request for every ``batch_size`` phones of each text and write it with its
    recipients: the number of requests, of messages, and the first few (phone, text)."""
    requests: list[tuple[int, int, str, str, int, str]] = []
    recipients: list[tuple[int, str, int]] = []
    samples: list[tuple[str, str]] = []
    count = messages = 0

    def flush() -> None:
        db.executemany("INSERT INTO requests (seq, request_id, text, phones, messages, outgoing) "
                       "VALUES (?, ?, ?, ?, ?, ?)", requests)
        db.executemany("INSERT INTO recipients (request_id, phone, line) VALUES (?, ?, ?)",
                       recipients)
        requests.clear()
        recipients.clear()

    for text, batch in _batches(db.execute(_GROUPED), batch_size):
        phones = [phone for phone, _ in batch]
        outgoing = client.prepare(phones, text, schedule=schedule)
        # The ids were minted by the client's prepare; the UNIQUE column refuses a repeat,
        # however unlikely.
        request_id = outgoing.request_ids[0]
        requests.append((count, request_id, outgoing.parts[0].text, ",".join(outgoing.phones),
                         len(outgoing.phones),
                         json.dumps(outgoing.to_dict(), ensure_ascii=False)))
        recipients.extend((request_id, phone, line)
                          for phone, (_, line) in zip(outgoing.phones, batch, strict=True))
        if len(samples) < 3:
            samples.append((outgoing.phones[0], outgoing.parts[0].text))
        count += 1
        messages += len(outgoing.phones)
        if len(requests) >= _WRITE_BATCH // 10:
            flush()
    flush()
    return count, messages, samples


def _batches(rows: Iterator[tuple[str, str, int]],
             size: int) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Consecutive rows of one text, ``size`` at most at a time: (text, [(phone, line)])."""
    text: str | None = None
    batch: list[tuple[str, int]] = []
    for row_text, phone, line in rows:
        if batch and (row_text != text or len(batch) >= size):
            assert text is not None
            yield text, batch
            batch = []
        text = row_text
        batch.append((phone, line))
    if batch:
        assert text is not None
        yield text, batch


#: A standard format spec, as ``str.format`` reads it for text: [[fill]align][sign][z][#][0]
#: [width][grouping][.precision][type]. Only the width matters here; the rest is checked when
#: the first row is rendered.
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.\d*)?[a-zA-Z%]?", re.S)


def check_padding(template: str, transliterate: bool) -> None:
    """Refuse a format that pads a field wider than a whole message, before any row is built:
    ``{name:>400000000}`` would build a 400 MB text per row only for the length check to
    refuse it. A format with a field of its own (``{name:{width}}``) is refused too."""
    limit = protocol.text_limit(transliterate)
    for _, name, spec, _conversion in string.Formatter().parse(template):
        if name is None or not spec:
            continue
        if "{" in spec or "}" in spec:
            raise ValidationError("--text", template, f"the format of {{{name}}} holds a field "
                                  "of its own", f"write a plain width, e.g. {{{name}:>10}}")
        match = _SPEC.fullmatch(spec)
        width = int(match["width"]) if match and match["width"] else 0
        if match is None or width > limit:
            raise ValidationError(
                "--text", template, f"{{{name}:{spec}}} pads the field wider than a whole "
                f"message ({limit} characters)" if match else
                f"{{{name}:{spec}}} is not a format for text",
                f"pad to at most {limit} characters, e.g. {{{name}:>10}}")


def _render(cells: dict[str, str], template: str, fields: tuple[str, ...],
            client: MobilgroupClient, schedule: datetime | str | None) -> Outgoing:
    """One row's message, prepared by the client (one part, or the parts of a split text)."""
    empty = [name for name in fields if not cells[name]]
    if empty:
        raise ValidationError(empty[0], "", "empty, and the template uses it",
                              "fill it in, or remove the row")
    try:
        text = template.format_map({name: cells[name] for name in fields})
    except ValueError as exc:  # a format the cell's text cannot take, such as {amount:d}
        raise ValidationError("--text", template, str(exc),
                              "use {column} without a number format: cells are text") from None
    outgoing = client.prepare(cells["phone"], text, schedule=schedule)
    if len(outgoing.phones) != 1:
        raise ValidationError("phone", cells["phone"], "one phone per row",
                              "put each phone on its own row")
    return outgoing


def _reason(exc: ValidationError) -> str:
    hint = exc.hint_for("cli")
    return f"{exc.field} {exc.value!r}: {exc.problem}" + (f"; {hint}" if hint else "")


def describe(plan: Plan) -> dict[str, Any]:
    """The plan in numbers, as the dry run shows it."""
    return {"requests": plan.requests, "messages": plan.messages,
            "recipients": plan.recipients, "duplicates": plan.duplicates}
