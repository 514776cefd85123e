"""A mailing's plan: every row checked, rendered, and the texts grouped into gateway requests.

Nothing here talks to the gateway: a plan is made (and every bad row found) before anything is
spent. Rows that render the same text are sent as one request to up to :data:`BATCH_SIZE`
phones: fewer requests, the same messages.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import protocol
from ..errors import ValidationError
from ..outgoing import Outgoing
from .contacts import Contacts, template_fields

if TYPE_CHECKING:
    from ..client import MobilgroupClient

__all__ = ["BATCH_SIZE", "BadRows", "MailingOptions", "Plan", "PlannedRequest", "make_plan"]

#: Phones per request when rows share a text. The gateway takes a comma-separated list; 100
#: keeps a request small (about 1.3 kB) and one refusal (a bad number, error 8) from holding up
#: more than a hundred recipients.
BATCH_SIZE = 100


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

    @classmethod
    def of(cls, client: MobilgroupClient, outgoing: Outgoing) -> MailingOptions:
        """The options of a mailing sent by ``client``, whose first message is ``outgoing``."""
        settings = client.settings
        return cls(sender=outgoing.sender, schedule=outgoing.schedule,
                   valid_hours=outgoing.valid_hours, transliterate=outgoing.transliterate,
                   long_messages=settings.long_messages,
                   replace_unencodable=settings.replace_unencodable, region=settings.region)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class PlannedRequest:
    """One request to make: a prepared message of one part, with the CSV line of each phone."""

    outgoing: Outgoing
    lines: tuple[int, ...]

    @property
    def text(self) -> str:
        return self.outgoing.parts[0].text

    @property
    def phones(self) -> tuple[str, ...]:
        return self.outgoing.phones


@dataclass(frozen=True)
class Plan:
    requests: tuple[PlannedRequest, ...]
    #: Rows that will get a message (after merging repeats of a phone with the same text).
    recipients: int
    #: Rows dropped because the same phone already gets the same text.
    duplicates: int
    #: The source file's and the template's digests, and the options: a mailing's identity.
    fingerprint: dict[str, str] = field(default_factory=dict)
    options: MailingOptions = field(default_factory=MailingOptions)

    @property
    def messages(self) -> int:
        """SMS messages to send: one per phone per request (a split text is several requests)."""
        return sum(len(request.phones) for request in self.requests)

    def cost(self, price: Decimal | None) -> Decimal | None:
        return None if price is None else price * self.messages

    def to_dict(self, price: Decimal | None = None, samples: int = 3) -> dict[str, Any]:
        """The plan as JSON, as the dry run prints it: its numbers, the cost at ``price`` (None
        without one) and the first ``samples`` messages."""
        cost = self.cost(price)
        return {"ok": True, "dry_run": True, **describe(self),
                "cost": str(cost) if cost is not None else None,
                "samples": [{"phone": request.phones[0], "text": request.text}
                            for request in self.requests[:samples]]}


class BadRows(ValidationError):
    """Rows that cannot be sent; nothing was sent. ``rows`` holds (line, reason) pairs."""

    def __init__(self, source: str, rows: list[tuple[int, str]]) -> None:
        self.rows = rows
        super().__init__("CSV", source, f"{len(rows)} row(s) cannot be sent, so nothing was sent",
                         "fix or remove them and run the same command again")


def make_plan(contacts: Contacts, template: str, client: MobilgroupClient, *,
              schedule: datetime | str | None = None, source: str = "CSV",
              batch_size: int = BATCH_SIZE) -> Plan:
    """Check every row, render its text and group the texts into requests.

    Every message is made by ``client.prepare``: the client's settings (sender, lifetime,
    transliteration, region, long texts, unencodable characters) apply as they do to any send.
    Nothing is sent. Raises :class:`BadRows` listing every row that cannot be sent (a phone that
    is not one, an empty cell the template uses, a text too long or not encodable), and
    :class:`~mobilgroup_backends.errors.ValidationError` for a template or option mistake.
    """
    if not template.strip():
        raise ValidationError("--text", template, "the template is empty",
                              "give the message, e.g. 'Здравствуйте, {name}!'")
    fields = template_fields(template, contacts.columns)
    check_padding(template, client.settings.transliterate)
    bad: list[tuple[int, str]] = list(contacts.malformed)
    by_text: dict[str, dict[str, int]] = {}
    duplicates = 0
    first: Outgoing | None = None
    for row in contacts.rows:
        try:
            outgoing = _render(row.cells, template, fields, client, schedule)
        except ValidationError as exc:
            if exc.field == "schedule":
                raise  # the same for every row: an option mistake, not a row's
            bad.append((row.line, _reason(exc)))
            continue
        first = first or outgoing
        for part in outgoing.parts:
            phones = by_text.setdefault(part.text, {})
            if outgoing.phones[0] in phones:
                duplicates += 1
                continue
            phones[outgoing.phones[0]] = row.line
    if bad:
        raise BadRows(source, sorted(bad))
    if first is None:
        raise ValidationError("CSV", source, "no rows to send", "add rows below the header")
    requests: list[PlannedRequest] = []
    for text, phones in by_text.items():
        numbers, lines = list(phones), list(phones.values())
        for start in range(0, len(numbers), batch_size):
            batch = client.prepare(numbers[start:start + batch_size], text, schedule=schedule)
            requests.append(PlannedRequest(batch, tuple(lines[start:start + batch_size])))
    options = MailingOptions.of(client, first)
    digest = hashlib.sha256(contacts.data).hexdigest()
    fingerprint = {"csv_sha256": digest,
                   "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
                   "options": options.to_json()}
    return Plan(tuple(requests), recipients=len(contacts.rows) - duplicates,
                duplicates=duplicates, fingerprint=fingerprint, options=options)


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
    return {"requests": len(plan.requests), "messages": plan.messages,
            "recipients": plan.recipients, "duplicates": plan.duplicates}
