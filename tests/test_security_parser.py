"""Property tests of the response parser: hostile bytes in, only typed errors out.

Whatever the answer holds, ``parse_send``/``parse_status``/``parse_balance`` either return a typed
value or raise :class:`ProtocolError` (not the gateway's XML) or a :class:`GatewayError` (the
gateway's XML saying ERROR). Documents built from strategies, in every form the gateway is known
to write (quirky end tags, white space inside values, windows-1251 or UTF-8), round-trip into the
right typed values.

How many examples each property gets is the Hypothesis profile's choice (tests/conftest.py): a
quick sample by default, many more with HYPOTHESIS_PROFILE=ci.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from mobilgroup_backends import errors, protocol
from mobilgroup_backends.protocol import DeliveryStatus, MailingStatus

DATA = Path(__file__).parent / "data"
CORPUS = sorted(path.read_bytes() for path in DATA.glob("*response*.xml"))
PARSERS = ("send", "status", "balance")
ALLOWED = (errors.ProtocolError, errors.GatewayError)


def parse(kind: str, data: bytes) -> object:
    if kind == "send":
        return protocol.parse_send(data)
    if kind == "status":
        return protocol.parse_status(data, 1)
    return protocol.parse_balance(data)


def only_typed_errors(data: bytes) -> None:
    for kind in PARSERS:
        with contextlib.suppress(*ALLOWED):
            parse(kind, data)


# --- any bytes ------------------------------------------------------------------------------


@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x00")
@example(b"<")
@example(b"\xff\xfe<\x00")
@example(b"<response>")
@example(b"<response><result>OK</result><error>0</error></response>")
@example(b"<response><result>OK</result><error>99999999999999999999999</error></response>")
@example(b"<response><result>OK</result><error>0</error><status>x</status></response>")
@example(b"<response><result>OK</result><error>0</error><balance>NaN</balance></response>")
@example(b"<response><result>OK</result><error>0</error><balance>1e999999999</balance></response>")
@example(b"<response><result>OK</result><error>0</error><status>1</status>"
         b"<extended><dest><time>1</time></dest></extended></response>")
@example(b'<?xml version="1.0" encoding="nonexistent"?><response/>')
@example(b'<?xml version="1.0" encoding="utf-16"?><response/>')
@example(b"<" + b"a>" * 100_000)
def test_any_bytes_give_only_typed_errors(data: bytes) -> None:
    only_typed_errors(data)


_MUTATION = st.tuples(st.integers(0, 4096), st.integers(0, 3), st.binary(max_size=8))


@given(st.sampled_from(CORPUS), st.lists(_MUTATION, max_size=6))
def test_mutated_gateway_answers_give_only_typed_errors(
        seed: bytes, mutations: list[tuple[int, int, bytes]]) -> None:
    data = bytearray(seed)
    for position, action, chunk in mutations:
        at = position % (len(data) + 1)
        if action == 0:
            data[at:at] = chunk  # insert
        elif action == 1:
            del data[at:at + len(chunk) + 1]  # delete
        elif action == 2:
            data[at:at + len(chunk)] = chunk  # overwrite
        else:
            data = data[:at]  # truncate
    only_typed_errors(bytes(data))


_NAMES = st.sampled_from(["response", "result", "error", "id", "status", "balance", "extended",
                          "dest", "phone", "time", "request", "x"])
_VALUES = st.one_of(
    st.sampled_from(["OK", "ERROR", "0", "1", "2", "4", "7", "12", "-1", " 0 ", "1.5", "1,5",
                     "2007-03-12\n23:24", "2007-02-30 25:61", "79039587454", "", "&amp;",
                     "&lt;", "&#0;", "&#x41;", "&bogus;", "]]>", "<![CDATA[1]]>"]),
    st.text(max_size=12),
)


@st.composite
def xmlish(draw: st.DrawFn, depth: int = 0) -> str:
    """Text shaped like the gateway's answers: nested elements from its vocabulary, odd values."""
    name = draw(_NAMES)
    close = draw(st.sampled_from([f"</{name}>", f"</ {name}>", f"</{name} >", "", f"</{name}x>"]))
    if depth < 3 and draw(st.booleans()):
        inner = "".join(draw(st.lists(xmlish(depth + 1), max_size=5)))
    else:
        inner = draw(_VALUES)
    return f"<{name}>{inner}{close}"


@given(st.lists(xmlish(), min_size=1, max_size=6),
       st.sampled_from(["windows-1251", "utf-8", "utf-16", "koi8-r", "latin-1"]),
       st.booleans())
def test_xml_shaped_answers_give_only_typed_errors(parts: list[str], encoding: str,
                                                   wrap: bool) -> None:
    body = "".join(parts)
    if wrap:
        body = f"<response><result>OK</result><error>0</error>{body}</response>"
    text = f'<?xml version="1.0" encoding="{encoding}"?>\n{body}'
    only_typed_errors(text.encode(encoding, "replace"))


# --- valid documents round-trip -------------------------------------------------------------


@st.composite
def document_form(draw: st.DrawFn) -> tuple[str, bool, str]:
    """The encoding, whether the gateway's quirky end tags are used, and a padding."""
    return (draw(st.sampled_from(["windows-1251", "utf-8"])), draw(st.booleans()),
            draw(st.sampled_from(["", " ", "  \n", "\t"])))


def render(fields: list[tuple[str, str]], form: tuple[str, bool, str],
           extended: str = "") -> bytes:
    encoding, quirky, pad = form
    close_id = "</ id>" if quirky else "</id>"
    lines = [f'<?xml version="1.0" encoding="{encoding}"?>{pad}', f"<response>{pad}"]
    for name, value in fields:
        end = close_id if name == "id" else f"</{name}>"
        lines.append(f"<{name}>{pad}{value}{pad}{end}{pad}")
        if name == "status" and extended:
            lines.append(extended)
    lines.append("</response >" if quirky else "</response>")
    return "\n".join(lines).encode(encoding)


_IDS = st.integers(1, protocol.MAX_REQUEST_ID)
_PHONES = st.from_regex(r"[1-9][0-9]{9,14}", fullmatch=True)
_TIMES = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda moment: moment.replace(second=0, microsecond=0))


@given(_IDS, document_form())
def test_send_ok_round_trips(request_id: int, form: tuple[str, bool, str]) -> None:
    data = render([("result", "OK"), ("error", "0"), ("id", str(request_id))], form)
    assert protocol.parse_send(data).request_id == request_id


@given(st.integers(1, 12) | st.integers(13, 10**6), st.none() | _IDS, document_form(),
       st.sampled_from(["ERROR", "error", "OK"]))
def test_error_answers_raise_the_code(code: int, request_id: int | None,
                                      form: tuple[str, bool, str], result: str) -> None:
    fields = [("result", result), ("error", str(code))]
    if request_id is not None:
        fields.append(("id", str(request_id)))
    data = render(fields, form)
    for kind in PARSERS:
        try:
            parse(kind, data)
        except errors.GatewayError as exc:
            assert exc.code == code
            assert exc.request_id == request_id
            assert type(exc) is type(errors.error_for_code(code))
        else:
            raise AssertionError(f"error {code} was not raised by parse_{kind}")


@given(st.decimals(min_value=-10**9, max_value=10**12, places=2, allow_nan=False,
                   allow_infinity=False), st.booleans(), document_form())
def test_balance_round_trips(balance: Decimal, comma: bool, form: tuple[str, bool, str]) -> None:
    text = format(balance, "f")
    if comma:
        text = text.replace(".", ",")
    data = render([("result", "OK"), ("error", "0"), ("balance", text), ("id", "1")], form)
    parsed = protocol.parse_balance(data).balance
    assert isinstance(parsed, Decimal) and parsed == balance


_DESTS = st.lists(st.tuples(_PHONES, _TIMES, st.integers(0, 999_999_999), st.booleans()), max_size=30)


@given(_IDS, st.integers(0, 10**6), _DESTS, document_form())
def test_status_round_trips(request_id: int, status: int,
                            dests: list[tuple[str, datetime, int, bool]],
                            form: tuple[str, bool, str]) -> None:
    parts = []
    for phone, moment, code, broken in dests:
        # The gateway's example breaks the line inside <time>.
        when = moment.strftime("%Y-%m-%d\n%H:%M" if broken else "%Y-%m-%d %H:%M")
        parts.append(f"<dest><phone>{phone}</phone><time>{when}</time>"
                     f"<status> {code} </status></dest>")
    extended = "<extended>\n" + "\n".join(parts) + "\n</extended>"
    data = render([("result", "OK"), ("error", "0"), ("status", str(status)),
                   ("id", str(request_id))], form, extended=extended)
    report = protocol.parse_status(data, 1)
    assert report.request_id == request_id
    assert isinstance(report.status, MailingStatus) and int(report.status) == status
    assert [(r.phone, r.time, int(r.status)) for r in report.recipients] == [
        (phone, moment.replace(tzinfo=protocol.GATEWAY_TIMEZONE), code)
        for phone, moment, code, _ in dests]
    assert all(isinstance(r.status, DeliveryStatus) for r in report.recipients)
    assert all(r.status.is_known == (int(r.status) in (0, 1, 2, 8, 16)) for r in report.recipients)


def test_corpus_examples_parse() -> None:
    """The seed corpus (the gateway's own examples) parses, so mutations start from valid input."""
    assert len(CORPUS) >= 4
    outcomes = []
    for data in CORPUS:
        for kind in PARSERS:
            try:
                outcomes.append(type(parse(kind, data)).__name__)
            except ALLOWED as exc:
                outcomes.append(type(exc).__name__)
    assert "StatusReport" in outcomes and "BalanceResponse" in outcomes
    assert "AuthenticationFailed" in outcomes and "SendResponse" in outcomes
