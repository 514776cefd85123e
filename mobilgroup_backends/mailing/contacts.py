"""Reading a mailing's contacts: a CSV file with a ``phone`` column, and a text template that
names the other columns (``Здравствуйте, {name}! Ваш заказ {order} готов``).

Spreadsheets export CSV as UTF-8 with or without a byte order mark, separated by ``;`` (the
Russian locale) or ``,``: the separator is taken from the header line, where no quoting hides it.

A file is never held in memory: :func:`read_contacts` reads it once in chunks (checking that it
is UTF-8 and taking its digest) and its header; :meth:`Contacts.records` reads the rows again,
one at a time, as often as they are needed.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ValidationError

__all__ = ["PHONE_COLUMN", "Contact", "Contacts", "Malformed", "read_contacts", "template_fields"]

#: The column that holds each recipient's phone (its case does not matter).
PHONE_COLUMN = "phone"
_SEPARATORS = (";", ",", "\t")
#: Bytes read at a time while checking and digesting the file.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Contact:
    """One row of the file: its line number (1 is the header) and its cells by column name."""

    line: int
    cells: dict[str, str]

    @property
    def phone(self) -> str:
        return self.cells[PHONE_COLUMN]


@dataclass(frozen=True)
class Malformed:
    """A row whose cell count is wrong: its line and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class Contacts:
    """A checked file: its path, column names and separator, and the SHA-256 of its bytes (what
    a mailing's fingerprint is made of). The rows are read from the file by :meth:`records`."""

    path: Path
    columns: tuple[str, ...]
    separator: str
    sha256: str

    def records(self) -> Iterator[Contact | Malformed]:
        """Every row after the header, in file order (blank lines skipped): a :class:`Contact`,
        or a :class:`Malformed` row whose cell count differs from the header's. A file changed
        since :func:`read_contacts` (its digest, the mailing's identity, would not be the one
        of the rows read) raises :class:`ValidationError` once read to the end."""
        try:
            raw = self.path.open("rb", buffering=0)
        except OSError as exc:
            raise ValidationError("CSV", str(self.path), exc.strerror or str(exc),
                                  "give the path of a CSV file with a 'phone' column") from None
        digesting = _Digesting(raw)
        changed = ValidationError("CSV", str(self.path), "changed while it was being read",
                                  "run the same command again once the file is written whole")
        with io.TextIOWrapper(io.BufferedReader(digesting, _CHUNK), encoding="utf-8-sig",
                              newline="") as handle:
            try:
                yield from self._records(handle)
            except UnicodeDecodeError:  # it was UTF-8 when read_contacts checked it
                raise changed from None
        if digesting.digest.hexdigest() != self.sha256:
            raise changed

    def _records(self, handle: io.TextIOWrapper) -> Iterator[Contact | Malformed]:
        reader = csv.reader(handle, delimiter=self.separator)
        next(reader, None)
        width = len(self.columns)
        for line, cells in _numbered(reader):
            if not any(cell.strip() for cell in cells):
                continue  # a blank line, as spreadsheets leave at the end
            if len(cells) != width:
                yield Malformed(line, f"{len(cells)} cells, the header has {width} "
                                      f"(separator {self.separator!r})")
                continue
            yield Contact(line, {name: cell.strip()
                                 for name, cell in zip(self.columns, cells, strict=True)
                                 if name})


class _Digesting(io.RawIOBase):
    """A file read through this is digested (SHA-256) as it is read."""

    def __init__(self, raw: io.FileIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer) or 0
        self.digest.update(memoryview(buffer)[:count])
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


def read_contacts(path: str | Path) -> Contacts:
    """Check ``path`` and read its header; a file that cannot be a contact list raises
    :class:`ValidationError`. The rows are not read yet: see :meth:`Contacts.records`."""
    shown = str(path)
    path = Path(path)
    try:
        digest = _check_utf8(path, shown)
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header_line = handle.readline()
            separator = max(_SEPARATORS, key=header_line.count)
            handle.seek(0)
            header = next(csv.reader(handle, delimiter=separator), None)
    except OSError as exc:
        raise ValidationError("CSV", shown, exc.strerror or str(exc),
                              "give the path of a CSV file with a 'phone' column") from None
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
    return Contacts(path, columns, separator, digest)


def _check_utf8(path: Path, shown: str) -> str:
    """The file's SHA-256, read in chunks, once it is known to be UTF-8 text throughout."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes of the file before the chunk being decoded
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            digest.update(chunk)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # Positions count from the bytes still pending from the chunk before.
                position = offset - pending + exc.start
                raise ValidationError(
                    "CSV", shown, f"not UTF-8 text (byte {position + 1})",
                    "save it as UTF-8 (in Excel: 'CSV UTF-8'; in LibreOffice: character set "
                    "Unicode (UTF-8))") from None
            if not chunk:
                return digest.hexdigest()
            offset += len(chunk)


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
