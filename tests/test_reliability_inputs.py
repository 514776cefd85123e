"""Bad input, everywhere: every row of the table in docs/reliability.md, as a test.

Each row names the place, the bad input, the exception the user gets and a fragment of its
message; the test asserts exactly that fragment, and that nothing reached the gateway. A last
test checks that the table in the docs lists every row, so the two cannot drift apart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from mobilgroup_backends import MobilgroupClient, errors
from mobilgroup_backends.config import parse_url
from mobilgroup_backends.emulator import Emulator

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
U = "mobilgroup://demo:pw@1000"
P = "79031234567"


class Row(NamedTuple):
    area: str
    shown: str  # the input as the table shows it
    call: Callable[[MobilgroupClient], Any]
    error: type[BaseException]
    fragment: str


def _handler(**kwargs: Any) -> Any:
    from mobilgroup_backends.logging import SmsHandler

    kwargs.setdefault("url", f"{U}/{P}")
    return SmsHandler(**kwargs)


def _send(*args: Any, **kwargs: Any) -> Callable[[MobilgroupClient], Any]:
    return lambda client: client.send(*args, **kwargs)


ROWS: list[Row] = [
    Row("phones", "`12345`", _send("12345", "x"), errors.ValidationError,
        "not a phone number: neither international nor a national number of RU"),
    Row("phones", "`+7 903 ABC-45-67`", _send("+7 903 ABC-45-67", "x"), errors.ValidationError,
        "give the number with its country code"),
    Row("phones", "16 digits", _send("7903123456789012", "x"), errors.ValidationError,
        "not a phone number: neither international nor a national number of RU"),
    Row("phones", "`[]`", _send([], "x"), errors.ValidationError, "no recipient given"),
    Row("phones", "`[79031234567]` (an int)", _send([79031234567], "x"), errors.ValidationError,
        "each phone must be a string"),
    Row("alias", "`TooLongAlias` (12 characters)", _send(P, "x", sender="TooLongAlias"),
        errors.ValidationError, "at most 9 characters"),
    Row("alias", "`Магазин` (Cyrillic)", _send(P, "x", sender="Магазин"), errors.ValidationError,
        "only latin letters, digits, space and hyphen"),
    Row("alias", "`Shop!`", _send(P, "x", sender="Shop!"), errors.ValidationError,
        "only latin letters, digits, space and hyphen"),
    Row("text", "blank", _send(P, "  "), errors.ValidationError, "the message is empty"),
    Row("text", "141 characters", _send(P, "я" * 141), errors.ValidationError,
        "141 characters, the gateway allows 140 with transliteration"),
    Row("text", "65 characters, `transliterate=False`", _send(P, "я" * 65, transliterate=False),
        errors.ValidationError, "65 characters, the gateway allows 64 without transliteration"),
    Row("text", "`b'x'` (bytes)", _send(P, b"x"), errors.ValidationError,
        "the message text must be a string"),
    Row("encoding", "`ok 🔥`", _send(P, "ok 🔥"), errors.ValidationError,
        "character '🔥' (U+1F525) at position 3 cannot be encoded in windows-1251"),
    Row("encoding", "`a\\x07b` (a control character)", _send(P, "a\x07b"),
        errors.ValidationError, "control character '\\x07' at position 1 cannot be sent"),
    Row("schedule", "`tomorrow`", _send(P, "x", schedule="tomorrow"), errors.ValidationError,
        "not a date and time the gateway understands"),
    Row("schedule", "`2030-02-30 10:00`", _send(P, "x", schedule="2030-02-30 10:00"),
        errors.ValidationError, "'YYYY-MM-DD HH:MM' (24-hour clock, Moscow time)"),
    Row("schedule", "`2030-01-01 1:00 PM`", _send(P, "x", schedule="2030-01-01 1:00 PM"),
        errors.ValidationError, "not a date and time the gateway understands"),
    Row("lifetime", "`valid_hours=0`", _send(P, "x", valid_hours=0), errors.ValidationError,
        "out of range: the gateway keeps a message 1 to 48 hours"),
    Row("lifetime", "`valid_hours=49`", _send(P, "x", valid_hours=49), errors.ValidationError,
        "out of range: the gateway keeps a message 1 to 48 hours"),
    Row("lifetime", "`valid_hours=1.5`", _send(P, "x", valid_hours=1.5), errors.ValidationError,
        "the lifetime must be a whole number of hours"),
    Row("id", "`request_id=0`", _send(P, "x", request_id=0), errors.ValidationError,
        "a positive number of at most 18 digits"),
    Row("id", "`request_id=10**18`", _send(P, "x", request_id=10**18), errors.ValidationError,
        "a positive number of at most 18 digits"),
    Row("id", "`request_id='abc'`", _send(P, "x", request_id="abc"), errors.ValidationError,
        "leave it unset to have one generated"),
    Row("id", "`status(-5)`", lambda client: client.status(-5), errors.ValidationError,
        "a positive number of at most 18 digits"),
    Row("URL", "`sms://demo:pw@1000`", lambda _: parse_url("sms://demo:pw@1000"),
        errors.ConfigurationError, "the scheme must be mobilgroup://"),
    Row("URL", "`mobilgroup://demo@1000`", lambda _: parse_url("mobilgroup://demo@1000"),
        errors.ConfigurationError, "the password is missing"),
    Row("URL", "`mobilgroup://demo:pw@shop`", lambda _: parse_url("mobilgroup://demo:pw@shop"),
        errors.ConfigurationError, "user_id: the client ID after '@' must be digits"),
    Row("URL", "`?sendr=Shop` (a typo)", lambda _: parse_url(U + "?sendr=Shop"),
        errors.ConfigurationError, "url option sendr: unknown option"),
    Row("URL", "`?valid=100`", lambda _: parse_url(U + "?valid=100"), errors.ConfigurationError,
        "valid=100: out of range"),
    Row("URL", "`?valid=x`", lambda _: parse_url(U + "?valid=x"), errors.ConfigurationError,
        "valid='x': not a number"),
    Row("URL", "`?translit=maybe`", lambda _: parse_url(U + "?translit=maybe"),
        errors.ConfigurationError, "not a yes/no value"),
    Row("URL", "`?timeout=0`", lambda _: parse_url(U + "?timeout=0"), errors.ConfigurationError,
        "give seconds, more than 0 and at most 600"),
    Row("URL", "`?retries=50`", lambda _: parse_url(U + "?retries=50"),
        errors.ConfigurationError, "give a whole number from 0 to 10"),
    Row("URL", "`/123` (a phone)", lambda _: parse_url(U + "/123"), errors.ConfigurationError,
        "phones='123': not a phone number"),
    Row("URL", "`?endpoint=ftp://x`", lambda _: MobilgroupClient.from_url(
        U + "?endpoint=ftp%3A%2F%2Fx"), errors.ConfigurationError, "not an http(s) URL"),
    Row("URL", "`?endpoint=http://sms.mobilgroup.ru/...`", lambda _: MobilgroupClient.from_url(
        U + "?endpoint=http%3A%2F%2Fsms.mobilgroup.ru%2Fextxml.php"), errors.ConfigurationError,
        "would send the password unencrypted"),
    Row("URL", "`endpoint=https://u:pw@host/...`", lambda _: MobilgroupClient(
        "1000", "demo", "pw", endpoint="https://u:pw@host/extxml.php"),
        errors.ConfigurationError, "must not carry credentials"),
    Row("environment", "no `MOBILGROUP_*` variables", lambda _: MobilgroupClient.from_env({}),
        errors.ConfigurationError, "set MOBILGROUP_URL=mobilgroup://LOGIN:PASSWORD@USER_ID"),
    Row("handler", "`max_sms=0`", lambda _: _handler(max_sms=0), errors.ConfigurationError,
        "max_sms=0: out of range; give a whole number of at least 1"),
    Row("handler", "`per_seconds=-1`", lambda _: _handler(per_seconds=-1),
        errors.ConfigurationError, "out of range; give seconds of at least 0"),
    Row("handler", "`timeout=0`", lambda _: _handler(timeout=0), errors.ConfigurationError,
        "give seconds, more than 0 and at most 600"),
    Row("handler", "`retries=11`", lambda _: _handler(retries=11), errors.ConfigurationError,
        "give a whole number from 0 to 10"),
    Row("handler", "`prefix=5`", lambda _: _handler(prefix=5), errors.ConfigurationError,
        "prefix=5: not a string"),
    Row("handler", "`queue_size=0`", lambda _: _handler(queue_size=0), errors.ConfigurationError,
        "queue_size=0: out of range; give a whole number of at least 1"),
    Row("handler", "URL without phones", lambda _: _handler(url=U), errors.ConfigurationError,
        "no phone to send alerts to"),
    Row("handler", "`phones='123'`", lambda _: _handler(url=U, phones="123"),
        errors.ConfigurationError, "phones='123': not a phone number"),
    Row("handler", "`level='LOUD'`", lambda _: _handler(level="LOUD"), errors.ConfigurationError,
        "Unknown level: 'LOUD'"),
]

DJANGO_ROWS: list[tuple[str, Any, str]] = [
    ("not set", None, "MOBILGROUP: no gateway credentials"),
    ("`'mobilgroup://...'` (a str)", "mobilgroup://x", "MOBILGROUP: must be a dict, not str"),
    ("no `PASSWORD`", {"USER_ID": "1000", "LOGIN": "demo"}, "MOBILGROUP['PASSWORD']: missing"),
    ("`SENDR` (a typo)", {"URL": U, "SENDR": "x"}, "MOBILGROUP['SENDR']: unknown key"),
    ("`SENDER: 'Far too long'`", {"URL": U, "SENDER": "Far too long"},
     "MOBILGROUP['SENDER']: 'Far too long': the gateway accepts only latin letters"),
    ("`LONG_MESSAGES: 'drop'`", {"URL": U, "LONG_MESSAGES": "drop"},
     "MOBILGROUP['LONG_MESSAGES']: 'drop': not one of split, truncate, error"),
    ("`TIMEOUT: 'fast'`", {"URL": U, "TIMEOUT": "fast"}, "MOBILGROUP['TIMEOUT']: 'fast': not a number"),
    ("`ENDPOINT: 'http://sms.mobilgroup.ru/...'`",
     {"URL": U, "ENDPOINT": "http://sms.mobilgroup.ru/extxml.php"},
     "would send the password unencrypted"),
    ("`TRACK_DELIVERY: 'maybe'`", {"URL": U, "TRACK_DELIVERY": "maybe"},
     "MOBILGROUP['TRACK_DELIVERY']: 'maybe': not a yes/no value"),
    ("`URL` with `?sendr=x`", {"URL": U + "?sendr=x"}, "MOBILGROUP['URL']: url option sendr: unknown option"),
]


@pytest.fixture(scope="module")
def module_emulator() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def client(module_emulator: Emulator, no_mobilgroup_environment: None) -> Iterator[MobilgroupClient]:
    with MobilgroupClient.from_url(module_emulator.url()) as client:
        yield client


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.area}-{r.shown}" for r in ROWS])
def test_bad_input_is_refused_before_any_request(row: Row, client: MobilgroupClient,
                                                 module_emulator: Emulator) -> None:
    before = len(module_emulator.requests)
    with pytest.raises(row.error) as caught:
        row.call(client)
    assert type(caught.value) is row.error
    assert row.fragment in str(caught.value)
    assert len(module_emulator.requests) == before  # refused locally: nothing sent, nothing charged


@pytest.mark.parametrize(("shown", "value", "fragment"), DJANGO_ROWS,
                         ids=[shown for shown, _, _ in DJANGO_ROWS])
def test_bad_django_setting_is_refused_at_start_up(shown: str, value: Any, fragment: str,
                                                   settings: Any,
                                                   no_mobilgroup_environment: None) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from mobilgroup_backends.django import SmsBackend

    settings.MOBILGROUP = value
    with pytest.raises(ImproperlyConfigured) as caught:
        SmsBackend(fail_silently=True)  # fail_silently never hides a wrong setting
    assert fragment in str(caught.value)


def _doc_rows() -> list[tuple[str, str, str]]:
    """(area, input, message) of every row of the bad-input table in the docs."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) >= 4 and not set(cells[0]) <= {"-", ":"} and cells[0] != "where":
            rows.append((cells[0], cells[1], cells[3]))
    return rows


def test_the_docs_table_lists_every_row() -> None:
    documented = _doc_rows()
    shown = {(area, given) for area, given, _ in documented}
    for row in ROWS:
        assert (row.area, row.shown) in shown, f"docs table lacks {row.area} {row.shown}"
        [message] = [m for a, g, m in documented if (a, g) == (row.area, row.shown)]
        assert re.sub(r"`", "", message).find(row.fragment) >= 0, (row, message)
    for area, extra in (("Django setting", DJANGO_ROWS), ("Apprise URL", APPRISE_ROWS)):
        for given, _, fragment in extra:
            [message] = [m for a, g, m in documented if (a, g) == (area, given)]
            assert fragment in message.replace("`", ""), (given, message)
    assert len(documented) == len(ROWS) + len(DJANGO_ROWS) + len(APPRISE_DOC_ROWS)


#: The Apprise plugin refuses a bad URL by logging why (Apprise's way) and loading nothing.
APPRISE_ROWS: list[tuple[str, str, str]] = [
    ("`?sender=Far%20too%20long`", f"/{P}?sender=Far%20too%20long",
     "sender='Far too long': the gateway accepts only latin letters"),
    ("`?valid=100`", f"/{P}?valid=100", "valid=100: out of range"),
    ("`?translit=maybe`", f"/{P}?translit=maybe", "translit='maybe': not a yes/no value"),
    ("`?timeout=abc`", f"/{P}?timeout=abc", "timeout='abc': not a number"),
    ("`?retries=50`", f"/{P}?retries=50", "give a whole number from 0 to 10"),
    ("no phone", "", "no valid phone number to send to"),
    ("`/123`", "/123", "Dropped invalid Mobilgroup phone number(s): '123'"),
    ("no password", "", "the password is missing"),
    ("`?sendr=x` (a typo)", f"/{P}?sendr=x", "Ignoring unknown Mobilgroup URL option(s): sendr"),
]
APPRISE_DOC_ROWS = APPRISE_ROWS


@pytest.mark.parametrize(("shown", "tail", "fragment"), APPRISE_ROWS,
                         ids=[shown for shown, _, _ in APPRISE_ROWS])
def test_bad_apprise_url_is_refused_with_a_reason(shown: str, tail: str, fragment: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    apprise = pytest.importorskip("apprise")
    import mobilgroup_backends.apprise  # noqa: F401  (registers mobilgroup://)

    url = ("mobilgroup://demo@1000/" + P) if shown == "no password" else U + tail
    caplog.set_level(logging.DEBUG, logger="apprise")
    plugin = apprise.Apprise.instantiate(url)
    assert fragment in caplog.text
    if "Ignoring" in fragment:
        assert plugin is not None  # Apprise's convention: unknown options are ignored, loudly
    else:
        assert plugin is None
