"""The gateway's side of the wire format: read a request document, write a response document.

Requests are parsed with defusedxml (no DTDs, no entities: the emulator also serves hostile-input
tests and must not be the weak link). Responses are built as text: they are flat, every value in
them has been validated to digits or a fixed word, and text building is the cheap part of the
per-request cost that throughput benchmarks measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from xml.etree.ElementTree import ParseError

from ..protocol import repair_end_tags

__all__ = ["CONTENT_TYPE", "ENCODING", "PROLOG", "TIME_FORMAT", "parse_request", "render"]

ENCODING = "windows-1251"
CONTENT_TYPE = "application/xml; charset=windows-1251"
PROLOG = '<?xml version="1.0" encoding="windows-1251"?>\n'
TIME_FORMAT = "%Y-%m-%d %H:%M"
_QUIRKY_TIME = "%Y-%m-%d\n%H:%M"

_PARSE_ERRORS = (ParseError, ValueError, LookupError, UnicodeError, RecursionError)


def parse_request(body: bytes) -> dict[str, str] | None:
    """The children of ``<request>`` as stripped text by tag, or None for error 1.

    ``</ id>`` end tags (the gateway's own examples use them) are repaired first. The first
    occurrence of a repeated element wins; elements the gateway does not know are kept but never
    read, which is how ``<translit>`` from the gateway's example is ignored.
    """
    # Imported on first use, so that starting the emulator does not pay for it.
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring

    try:
        root = fromstring(repair_end_tags(body), forbid_dtd=True, forbid_entities=True,
                          forbid_external=True)
    except (DefusedXmlException, *_PARSE_ERRORS):
        return None
    if root.tag != "request":
        return None
    fields: dict[str, str] = {}
    for child in root:
        tag = child.tag
        if isinstance(tag, str) and tag not in fields:
            fields[tag] = (child.text or "").strip()
    return fields


def render(
    error: int,
    request_id: str | None,
    *,
    quirky: bool,
    balance: str | None = None,
    status: int | None = None,
    dests: Sequence[tuple[str, int, datetime]] | None = None,
) -> bytes:
    """A complete response document in windows-1251.

    ``quirky`` reproduces the gateway's documented examples exactly: ``</ id>``,
    ``</response >``, a space after the mailing status and a line break inside ``<time>``.
    ``request_id`` None leaves ``<id>`` out (nothing usable was given to echo).
    """
    parts = [PROLOG, "<response>\n<result>", "ERROR" if error else "OK",
             "</result>\n<error>", str(error), "</error>\n"]
    if balance is not None:
        parts += ["<balance>", balance, "</balance>\n"]
    if status is not None:
        parts += ["<status>", str(status), " </status>\n" if quirky else "</status>\n"]
    if dests is not None:
        time_format = _QUIRKY_TIME if quirky else TIME_FORMAT
        parts.append("<extended>\n")
        for phone, code, changed in dests:
            parts += ["<dest><phone>", phone, "</phone><time>", changed.strftime(time_format),
                      "</time><status>", str(code), "</status></dest>\n"]
        parts.append("</extended>\n")
    if request_id is not None:
        parts += ["<id>", request_id, "</ id>\n" if quirky else "</id>\n"]
    parts.append("</response >\n" if quirky else "</response>\n")
    return "".join(parts).encode(ENCODING)
