"""Reading a mailing's contacts: a CSV file with a ``phone`` column, and a text template that
names the other columns (``Здравствуйте, {name}! Ваш заказ {order} готов``).

Spreadsheets export CSV as UTF-8 with or without a byte order mark, separated by ``;`` (the
Russian locale) or ``,``: the separator is taken from the header line, where no quoting hides it.
"""

from __future__ import annotations

import csv
import io
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ValidationError

__all__ = ["PHONE_COLUMN", "Contact", "Contacts", "read_contacts", "template_fields"]

#: The column that holds each recipient's phone (its case does not matter).
PHONE_COLUMN = "phone"
_SEPARATORS = (";", ",", "\t")


@dataclass(frozen=True)
class Contact:
    """One row of the file: its line number (1 is the header) and its cells by column name."""

    line: int
    cells: dict[str, str]

    @property
    def phone(self) -> str:
        return self.cells[PHONE_COLUMN]


@dataclass(frozen=True)
class Contacts:
    """A whole file: the column names, the rows, the rows whose cell count is wrong (line and
    reason), and the file's bytes (what a mailing's fingerprint is made of)."""

    columns: tuple[str, ...]
    rows: tuple[Contact, ...]
    malformed: tuple[tuple[int, str], ...]
    data: bytes


def read_contacts(path: str | Path) -> Contacts:
    """Read ``path``; a file that cannot be a contact list raises :class:`ValidationError`."""
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError("CSV", shown, exc.strerror or str(exc),
                              "give the path of a CSV file with a 'phone' column") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            "CSV", shown, f"not UTF-8 text (byte {exc.start + 1})",
            "save it as UTF-8 (in Excel: 'CSV UTF-8'; in LibreOffice: character set Unicode "
            "(UTF-8))") from None
    header_line = text.split("\n", 1)[0]
    separator = max(_SEPARATORS, key=header_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise ValidationError("CSV", shown, "the file is empty",
                              "the first line names the columns, e.g. 'phone;name'")
    columns = tuple(_column(cell) for cell in header)
    if PHONE_COLUMN not in columns:
        raise ValidationError("CSV", shown, f"no '{PHONE_COLUMN}' column (columns: "
                              f"{', '.join(columns)})",
                              f"name the column of phone numbers '{PHONE_COLUMN}' in the first line")
    repeated = sorted({c for c in columns if columns.count(c) > 1 and c})
    if repeated:
        raise ValidationError("CSV", shown, f"column(s) {', '.join(repeated)} appear twice",
                              "give every column its own name")
    rows: list[Contact] = []
    malformed: list[tuple[int, str]] = []
    for line, cells in _numbered(reader):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, as spreadsheets leave at the end
        if len(cells) != len(columns):
            malformed.append((line, f"{len(cells)} cells, the header has {len(columns)} "
                                    f"(separator {separator!r})"))
            continue
        rows.append(Contact(line, {name: cell.strip() for name, cell in zip(columns, cells, strict=True)
                                   if name}))
    return Contacts(columns, tuple(rows), tuple(malformed), data)


def _column(cell: str) -> str:
    name = cell.strip()
    return PHONE_COLUMN if name.lower() == PHONE_COLUMN else name


def _numbered(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """Each record with the line it starts on (a quoted cell may span lines)."""
    line = 2
    for cells in reader:
        yield line, cells
        line = reader.line_num + 1  # type: ignore[attr-defined]


def template_fields(template: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns ``template`` names, after checking that each exists and is a plain name.

    Only ``{column}`` (with an optional format such as ``{amount:>8}``) is allowed: positional
    fields and attribute or index access (``{0}``, ``{name.upper}``) are refused.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValidationError("--text", template, f"not a valid template: {exc}",
                              "write columns as {name}; a literal brace as {{ or }}") from None
    names: list[str] = []
    for _, name, _spec, _conversion in parsed:
        if name is None:
            continue
        if name not in columns:
            raise ValidationError("--text", template, f"{{{name}}} is not a column of the CSV",
                                  f"use the CSV's columns: {', '.join('{' + c + '}' for c in columns)}")
        if name not in names:
            names.append(name)
    return tuple(names)
