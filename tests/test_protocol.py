"""The wire format: the gateway's own examples byte for byte, local checks, request documents."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest

from mobilgroup_backends import errors, protocol
from mobilgroup_backends.protocol import GATEWAY_TIMEZONE as MSK
from mobilgroup_backends.protocol import Credentials, DeliveryStatus, MailingStatus

DATA = Path(__file__).parent / "data"
CREDS = Credentials("1", "valid@username", "s3cr<e>t&pw")


def example(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --- the gateway's examples -----------------------------------------------------------------


def test_examples_are_the_quirky_bytes_of_the_spec() -> None:
    # The copies must keep the quirks, or the tests below prove nothing.
    assert b"</ id>" in example("send-response-ok.xml")
    assert b"</response >" in example("status-response-extended.xml")
    assert b"<status>0 </status>" in example("status-response-extended.xml")
    with pytest.raises(ElementTree.ParseError):
        ElementTree.fromstring(example("send-response-ok.xml"))


def test_parse_send_ok_example() -> None:
    assert protocol.parse_send(example("send-response-ok.xml")).request_id == 123456


def test_parse_send_error_example_raises_its_class() -> None:
    with pytest.raises(errors.AuthenticationFailed) as caught:
        protocol.parse_send(example("send-response-error-4.xml"))
    assert caught.value.code == 4
    assert caught.value.request_id == 123456
    assert "wrong login" in str(caught.value)


def test_parse_status_extended_example() -> None:
    report = protocol.parse_status(example("status-response-extended.xml"), 1)
    assert report.request_id == 123456
    # "0 " is stripped, and 0 is not a documented mailing status: kept as data.
    assert report.status == 0
    assert not report.status.is_known
    assert report.status.name == "UNKNOWN_0"
    assert [(r.phone, r.status, r.time) for r in report.recipients] == [
        ("79039587454", DeliveryStatus.DELIVERED, datetime(2007, 3, 12, 23, 24, tzinfo=MSK)),
        ("79236411579", DeliveryStatus.UNDELIVERED, datetime(2007, 3, 12, 23, 23, tzinfo=MSK)),
    ]
    assert report.is_complete
    assert report.by_phone()["79236411579"].status is DeliveryStatus.UNDELIVERED


def test_parse_balance_example() -> None:
    assert protocol.parse_balance(example("balance-response.xml")).balance == Decimal(1234)


def test_balance_with_fraction_and_comma() -> None:
    body = b"<response><result>OK</result><error>0</error><balance>12,50</balance></response>"
    assert protocol.parse_balance(body).balance == Decimal("12.50")


@pytest.mark.parametrize("code", range(1, 13))
def test_every_error_code_has_its_class(code: int) -> None:
    body = (f'<?xml version="1.0" encoding="windows-1251"?>\n<response><result>ERROR</result>'
            f"<error>{code}</error><id>77</id></response>").encode()
    with pytest.raises(errors.GatewayError) as caught:
        protocol.parse_send(body)
    assert caught.value.code == code
    assert type(caught.value) is not errors.GatewayError
    assert caught.value.meaning == errors.ERROR_MEANINGS[code]


def test_unknown_error_code_is_a_plain_gateway_error() -> None:
    with pytest.raises(errors.GatewayError) as caught:
        protocol.parse_send(b"<response><result>ERROR</result><error>99</error></response>")
    assert type(caught.value) is errors.GatewayError
    assert caught.value.code == 99


def test_unknown_delivery_status_is_kept() -> None:
    assert DeliveryStatus(32).name == "UNKNOWN_32"
    assert DeliveryStatus(32) == 32
    assert not DeliveryStatus(32).is_final
    assert MailingStatus(4) is MailingStatus.FINISHED


@pytest.mark.parametrize("body", [
    b"",
    b"   \n",
    b"not xml at all",
    b"<html><body>502 Bad Gateway</body></html>",
    b"<response><result>OK</result>",  # truncated
    b"<response><error>0</error></response>",  # no result
    b"<response><result>OK</result></response>",  # no error
    b"<response><result>MAYBE</result><error>3</error></response>",
    b"<response><result>OK</result><error>zero</error></response>",
    b'<?xml version="1.0" encoding="no-such-charset"?><response/>',
    b"<response><result>OK</result><error>0</error><balance>lots</balance></response>",
    b"<response><result>OK</result><error>0</error><balance>NaN</balance></response>",
    b"<response><result>OK</result><error>0<oops></error></response>",
    b"<response><result>OK</result><error>0</error></ response  extra>",
    b"<response><result>ERROR</result><error>--5</error></response>",
    b"<response><result>OK</result><error>99999999999999999999999</error></response>",
])
def test_garbage_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(errors.ProtocolError):
        protocol.parse_balance(body)


@pytest.mark.parametrize("body", [
    b"<response><result>OK</result><error>0</error><id>--1</id></response>",
    b"<response><result>OK</result><error>0</error><id>1e5</id></response>",
])
def test_malformed_id_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(errors.ProtocolError, match="<id> is not a number"):
        protocol.parse_send(body)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b"<response><result>&b;</result><error>0</error></response>",
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<response><result>OK</result><error>0</error><balance>&x;</balance></response>",
    b'<!DOCTYPE response SYSTEM "http://127.0.0.1:9/evil.dtd"><response/>',
])
def test_dtds_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(errors.ProtocolError, match=r"hostile|not well-formed"):
        protocol.parse_balance(body)


def test_status_time_with_seconds_and_folded_whitespace() -> None:
    body = (b"<response><result>OK</result><error>0</error><status> 4 </status><extended>"
            b"<dest><phone>79031234567</phone><time>2026-01-02\r\n  03:04:05</time>"
            b"<status>8</status></dest></extended><id>5</id></response>")
    report = protocol.parse_status(body, 5)
    assert report.status is MailingStatus.FINISHED
    when = report.recipients[0].time
    assert when == datetime(2026, 1, 2, 3, 4, 5, tzinfo=MSK)
    # Aware, in the gateway's zone: the same instant in UTC is three hours earlier.
    assert when is not None and when.utcoffset() == timedelta(hours=3)
    assert when.astimezone(timezone.utc) == datetime(2026, 1, 2, 0, 4, 5, tzinfo=timezone.utc)
    assert report.recipients[0].status is DeliveryStatus.SENT
    assert not report.is_complete


def test_padded_times_do_not_stay_in_memory() -> None:
    # The parser remembers the <time> texts it has read; a gateway padding each one with
    # 100 KB of whitespace must not make it keep hundreds of answers' worth of them.
    padding = " " * 100_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for minute in range(600):
            when = f"2026-01-02 {minute // 60:02d}:{minute % 60:02d}"
            body = _status_answer("utf-8", "79031234567", when.replace(" ", padding))
            report = protocol.parse_status(body, 1)
            assert report.recipients[0].time == datetime.fromisoformat(when).replace(tzinfo=MSK)
        del body, report
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 2_000_000, f"{kept} bytes kept after parsing 600 padded answers"


def _status_answer(declaration: str, phone: str, when: str, encoding: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="{declaration}"?>\n<response><result>OK</result>'
            f"<error>0</error><status>4</status><extended><dest><phone>{phone}</phone>"
            f"<time>{when}</time><status>1</status></dest></extended><id>7</id></response>"
            ).encode(encoding or declaration)


@pytest.mark.parametrize("declaration", ["windows-1251", "utf-8", "koi8-r", "latin-1"])
def test_ascii_and_non_ascii_answers_read_alike_in_every_declared_encoding(
        declaration: str) -> None:
    # An all-ASCII answer takes a shorter way through the parser than one with other bytes
    # (here a phone written with a letter the encoding has): both must read the declaration.
    letter = "Я" if declaration != "latin-1" else "é"
    ascii_report = protocol.parse_status(_status_answer(declaration, "79031234567",
                                                         "2026-01-02 03:04"), 1)
    other_report = protocol.parse_status(_status_answer(declaration, f"7903123456{letter}",
                                                         "2026-01-02 03:04"), 1)
    assert ascii_report.recipients[0].time == other_report.recipients[0].time == datetime(
        2026, 1, 2, 3, 4, tzinfo=MSK)
    assert other_report.recipients[0].phone == f"7903123456{letter}"


def test_an_encoding_nobody_knows_is_refused_even_when_the_bytes_are_ascii() -> None:
    with pytest.raises(errors.ProtocolError):
        protocol.parse_status(_status_answer("x-" + "a" * 60, "79031234567", "2026-01-02 03:04",
                                             encoding="ascii"), 1)


@pytest.mark.parametrize("when", ["2026-01-02T03:04", "2026-01-02 03", "20260102 0304",
                                  "٢٠٢٦-01-02 03:04", "2026-02-30 03:04", "2026-01-02 24:00",
                                  "2026-01-02 03:04+03:00"])
def test_status_time_in_any_other_form_is_a_protocol_error(when: str) -> None:
    with pytest.raises(errors.ProtocolError, match="<time> is not a date and time"):
        protocol.parse_status(_status_answer("utf-8", "79031234567", when), 1)


# --- request documents ----------------------------------------------------------------------


def _fields(document: bytes) -> dict[str, str]:
    root = ElementTree.fromstring(document)
    assert root.tag == "request"
    return {child.tag: child.text or "" for child in root}


def test_build_send_is_windows_1251_with_prolog_and_escaped() -> None:
    document = protocol.build_send(
        CREDS, phones=("79039587454", "79236411579"), text="Привет & <b>", request_id=123456,
        sender="Mobilgrup", transliterate=False, schedule="2007-03-12 23:22", valid_hours=24)
    assert document.startswith(b'<?xml version="1.0" encoding="windows-1251"?>')
    assert "Привет".encode("cp1251") in document
    assert _fields(document) == {
        "user_id": "1", "user": "valid@username", "pwd": "s3cr<e>t&pw", "command": "send",
        "phone": "79039587454,79236411579", "sender": "Mobilgrup", "message": "Привет & <b>",
        "rus_sms": "1", "schedule": "2007-03-12 23:22", "valid": "24", "id": "123456",
    }


def test_build_send_leaves_out_defaults() -> None:
    fields = _fields(protocol.build_send(CREDS, phones=("79039587454",), text="hi", request_id=9))
    assert set(fields) == {"user_id", "user", "pwd", "command", "phone", "message", "id"}


def test_build_status_and_balance() -> None:
    assert _fields(protocol.build_status(CREDS, 42)) == {
        "user_id": "1", "user": "valid@username", "pwd": "s3cr<e>t&pw", "command": "status",
        "extended": "1", "id": "42"}
    assert "extended" not in _fields(protocol.build_status(CREDS, 42, extended=False))
    assert _fields(protocol.build_balance(CREDS))["command"] == "balance"


def test_unencodable_password_is_named_and_masked() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        protocol.build_balance(Credentials("1", "user", "pässwörd☃"))
    assert caught.value.field == "password"
    assert "pässwörd☃" not in str(caught.value)


def test_credentials_repr_hides_password() -> None:
    assert "s3cr" not in repr(CREDS)
    assert "s3cr" not in str(CREDS)


# --- local checks ---------------------------------------------------------------------------


def test_phones_are_normalised_and_deduplicated_in_order() -> None:
    assert protocol.normalize_phones(["+7 (903) 958-74-54", "79236411579", "79039587454"]) == (
        "79039587454", "79236411579")
    assert protocol.normalize_phones("79039587454, +7 923 641-15-79;") == (
        "79039587454", "79236411579")
    assert protocol.normalize_phones("0044 20 7946 0018") == ("442079460018",)


@pytest.mark.parametrize("phones", [
    [], "", " , ", ["12345"], ["7903958745412345678"], ["+7 903 CALL-ME"],
    ["\uff17\uff19\uff10\uff13\uff19\uff15\uff18\uff17\uff14\uff15\uff14"],
    [79039587454],
])
def test_bad_phones_are_refused_with_field_and_fix(phones: object) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        protocol.normalize_phones(phones)  # type: ignore[arg-type]
    assert caught.value.field == "phones"
    assert caught.value.fix
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("sender", ["MyShop", "A-1 b", "123456789"])
def test_good_sender(sender: str) -> None:
    assert protocol.check_sender(sender) == sender


@pytest.mark.parametrize("sender", ["TooLongName", "Магазин", "shop!", "a_b"])
def test_bad_sender(sender: str) -> None:
    with pytest.raises(errors.ValidationError, match="sender="):
        protocol.check_sender(sender)


def test_empty_sender_means_default() -> None:
    assert protocol.check_sender("") is None
    assert protocol.check_sender(None) is None


def test_text_limits_count_characters() -> None:
    assert protocol.check_text("я" * 140) == "я" * 140
    assert protocol.check_text("я" * 64, transliterate=False) == "я" * 64
    with pytest.raises(errors.ValidationError, match="141 characters, the gateway allows 140"):
        protocol.check_text("я" * 141)
    with pytest.raises(errors.ValidationError, match="65 characters, the gateway allows 64"):
        protocol.check_text("я" * 65, transliterate=False)


def test_empty_text_refused() -> None:
    with pytest.raises(errors.ValidationError, match="empty"):
        protocol.check_text("  ")


def test_unencodable_character_is_named_with_position() -> None:
    with pytest.raises(errors.ValidationError) as caught:
        protocol.check_text("Сервер упал 🔥 опять")
    message = str(caught.value)
    assert "U+1F525" in message and "position 12" in message and "replace" in message


def test_replacement_mode_keeps_length_and_replaces() -> None:
    assert protocol.check_text("упал 🔥\x07!", replace=True) == "упал ??!"


def test_control_characters_refused() -> None:
    with pytest.raises(errors.ValidationError, match="control character"):
        protocol.check_text("a\x00b")


def test_schedule_forms() -> None:
    assert protocol.check_schedule(datetime(2030, 1, 2, 3, 4)) == "2030-01-02 03:04"
    aware = datetime(2030, 1, 2, 0, 4, tzinfo=timezone.utc)
    assert protocol.check_schedule(aware) == "2030-01-02 03:04"  # Moscow is UTC+3
    assert protocol.check_schedule(datetime(2030, 1, 2, 3, 4, tzinfo=timezone(
        timedelta(hours=3)))) == "2030-01-02 03:04"
    assert protocol.check_schedule(" 2030-01-02 23:59 ") == "2030-01-02 23:59"
    assert protocol.check_schedule(None) is None


@pytest.mark.parametrize("value", ["2030-13-01 10:00", "2030-01-01 24:00", "tomorrow",
                                   "2030-01-01T10:00", "2030-1-1 1:00", 1700000000])
def test_bad_schedule(value: object) -> None:
    with pytest.raises(errors.ValidationError, match="YYYY-MM-DD HH:MM"):
        protocol.check_schedule(value)  # type: ignore[arg-type]


def test_valid_hours() -> None:
    assert protocol.check_valid_hours(1) == 1
    assert protocol.check_valid_hours(48) == 48
    assert protocol.check_valid_hours("12") == 12
    for bad in (0, 49, -1, 1.5, True, "two"):
        with pytest.raises(errors.ValidationError, match="from 1 to 48"):
            protocol.check_valid_hours(bad)  # type: ignore[arg-type]


def test_request_ids() -> None:
    assert protocol.check_request_id(1) == 1
    assert protocol.check_request_id("999999999999999999") == 10**18 - 1
    for bad in (0, -5, 10**18, "12a", "", True, 1.0):
        with pytest.raises(errors.ValidationError, match="request_id"):
            protocol.check_request_id(bad)  # type: ignore[arg-type]


def test_generated_ids_are_18_digits_and_distinct() -> None:
    ids = {protocol.new_request_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(len(str(i)) == 18 for i in ids)


def test_fit_text_split_on_words_in_order() -> None:
    text = "Disk /var is full on db-1; writes are failing since 14:03, restart the replica now."
    parts = protocol.fit_text(text, 30)
    assert all(len(part) <= 30 for part in parts)
    assert " ".join(parts) == text
    assert protocol.fit_text("x" * 65, 30) == ["x" * 30, "x" * 30, "x" * 5]


def test_fit_text_truncate_with_ellipsis() -> None:
    (only,) = protocol.fit_text("word " * 50, 140, "truncate")
    assert len(only) <= 140 and only.endswith("…")
    assert protocol.fit_text("short", 140, "truncate") == ["short"]


def test_mask_phone() -> None:
    assert protocol.mask_phone("79039587454") == "7903*****54"
