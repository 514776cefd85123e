"""Secret-safe configuration: whatever the password holds, encoded or not, no error text, repr,
log line or redacted URL shows a piece of it; the endpoint guard reads the host as the transport
does; digits are ASCII digits; phones are read as people write them."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.cli import main
from mobilgroup_backends.config import (
    check_endpoint,
    parse_url,
    redact_url,
    resolve,
)
from mobilgroup_backends.errors import ConfigurationError, ValidationError
from mobilgroup_backends.logging import SmsHandler
from mobilgroup_backends.protocol import (
    check_request_id,
    check_schedule,
    check_valid_hours,
    normalize_phones,
)

CANARY = "Kq9Zx"
DELIMITERS = list("@/?#&[]%:;=+ \t\n\\'\"<>{}|^`~!$()*,.")
pieces = st.text(st.one_of(st.sampled_from(DELIMITERS), st.characters(codec="utf-8")),
                 max_size=12)

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


def wide(text: str) -> str:
    """``text`` with its digits full-width (U+FF10...), which int() would read."""
    return text.translate({ord("0") + i: 0xFF10 + i for i in range(10)})


def leaks(text: str) -> bool:
    """True when ``text`` shows the canary, raw or percent-encoded in any common way."""
    return any(form in text for form in (CANARY, quote(CANARY), "Kq9", "9Zx"))


def outcome(call: Any) -> str:
    """Everything a failing or succeeding call lets a user see."""
    try:
        result = call()
    except ValidationError as exc:  # ConfigurationError included; nothing else may escape
        return f"{exc} {exc!r} {exc.describe('cli')} {exc.describe('django')} {exc.value!r}"
    return repr(result)


@given(before=pieces, after=pieces, encode=st.booleans())
def test_no_password_shows_anywhere(before: str, after: str, encode: bool) -> None:
    password = before + CANARY + after
    written = quote(password, safe="") if encode else password
    url = f"mobilgroup://demo:{written}@1000/79031234567?sender=Shop"
    assert not leaks(redact_url(url)), redact_url(url)
    seen = outcome(lambda: parse_url(url))
    assert not leaks(seen), seen
    seen = outcome(lambda: resolve("logging", environ={"MOBILGROUP_URL": url}))
    assert not leaks(seen), seen
    if encode and not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", password):
        # A percent-encoded password always works (but for what XML cannot carry), whole.
        assert parse_url(url)[0].password == password


@given(before=pieces, after=pieces)
def test_no_password_shows_from_the_handler_or_the_client(before: str, after: str) -> None:
    url = f"mobilgroup://demo:{before}{CANARY}{after}@1000/79031234567"
    seen = outcome(lambda: MobilgroupClient.from_url(url))
    assert not leaks(seen), seen

    def make_handler() -> str:
        handler = SmsHandler(url=url)
        handler.close()
        return f"{handler!r} {vars(handler)!r}"

    seen = outcome(make_handler)
    assert not leaks(seen), seen


@pytest.mark.parametrize("url", [
    f"mobilgroup://demo:Se@{CANARY}@1000",             # an '@' not encoded
    f"mobilgroup://demo:{CANARY}/x?y#z@1000",          # delimiters not encoded
    f"mobilgroup://demo:v7?fI?m,{CANARY}@1000",        # the case seen in the wild
    f"mobilgroup://demo:[{CANARY}]@1000",               # brackets: no bare ValueError
    f"mobilgroup://demo:{CANARY}@[1000]",
    f"mobilgroup://demo:{CANARY}@{CANARY}",            # the user id forgotten
    f"mobilgroup://demo:a@{CANARY}",
])
def test_ambiguous_urls_say_percent_encode_and_show_nothing(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    text = str(caught.value)
    assert "percent-encode" in text or "%40" in text
    assert not leaks(text) and "demo" not in text.split("login")[0][-5:]
    assert not leaks(redact_url(url))
    # The CLI shows the same, on standard error and in JSON.
    assert main(["balance", "--url", url]) == 2
    assert main(["balance", "--url", url, "--json"]) == 2
    captured = capsys.readouterr()
    assert "percent-encode" in captured.err or "%40" in captured.err
    assert not leaks(captured.out + captured.err)


@pytest.mark.django_db  # Django 6.1 runs the model checks against every database: run_checks() may connect
def test_django_and_apprise_show_nothing_of_an_ambiguous_password(
        settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    import apprise
    from django.core.checks import run_checks
    from django.core.exceptions import ImproperlyConfigured

    import mobilgroup_backends.apprise  # noqa: F401
    from mobilgroup_backends.django import SmsBackend

    url = f"mobilgroup://demo:Se@{CANARY}/x@1000/79031234567"
    settings.MOBILGROUP = {"URL": url}
    with pytest.raises(ImproperlyConfigured) as caught:
        SmsBackend()
    assert "percent-encode" in str(caught.value) and not leaks(str(caught.value))
    messages = [f"{m.msg} {m.hint}" for m in run_checks() if (m.id or "").startswith("mobilgroup")]
    assert messages and not any(leaks(m) for m in messages)

    caplog.set_level(logging.DEBUG)
    assert apprise.Apprise.instantiate(url) is None
    ours = [r.getMessage() for r in caplog.records if "Mobilgroup configuration" in r.getMessage()]
    assert ours and "percent-encode" in ours[0]
    assert not any(leaks(message) for message in ours)


@pytest.mark.parametrize(("url", "shown"), [
    ("mobilgroup://a%40b:secret@1/7903?sender=x", "mobilgroup://a%40b:***@1/7903?sender=x"),
    ("mobilgroup://demo:pa@ss@1000", "mobilgroup://***@1000"),
    ("mobilgroup://demo:pa/ss@1000?x=1", "mobilgroup://***@1000?x=1"),
    ("mobilgroup://demo:pa%zzss@1000", "mobilgroup://***@1000"),
    ("mobilgroup://demo:p%C3%A4ss@1000", "mobilgroup://demo:***@1000"),
    ("mobilgroup://demo:secret", "mobilgroup://demo:***"),
    ("https://host:8443/x", "https://host:8443/x"),
])
def test_redact_url_masks_up_to_the_last_at_when_in_doubt(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- the endpoint guard -------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "problem"), [
    ("http://sms.mobilgroup.ru\\.localhost/extxml.php", "backslash"),
    ("http://sms.mobilgroup.ru#.localhost/extxml.php", "'#'"),
    ("http://127.0.0.1@sms.mobilgroup.ru/extxml.php", "credentials"),
    ("http://\u0455ms.localhost/extxml.php", "non-ASCII"),
    ("http://[::1/extxml.php", "not an http"),
    ("http://sms.mobilgroup.ru:99999/extxml.php", "not an http"),
    ("http://sms.mobilgroup.ru/extxml.php", "unencrypted"),
])
def test_endpoints_the_transport_would_read_differently_are_refused(endpoint: str,
                                                                    problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        check_endpoint(endpoint)
    assert caught.value.field == "endpoint"


def test_the_backslash_endpoint_is_refused_from_every_layer(capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    endpoint = quote("http://sms.mobilgroup.ru\\.localhost/extxml.php", safe="")
    url = f"mobilgroup://demo:pw@1000?endpoint={endpoint}"
    with pytest.raises(ConfigurationError, match="backslash"):
        MobilgroupClient.from_url(url)
    monkeypatch.setenv("MOBILGROUP_URL", url)
    with pytest.raises(ConfigurationError, match="backslash"):
        MobilgroupClient.from_env()
    assert main(["balance"]) == 2
    assert "backslash" in capsys.readouterr().err


def test_insecure_http_is_an_explicit_choice_in_every_layer_and_warns_once(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = "http://sms-emulator.internal:8080/extxml.php"
    url = f"mobilgroup://demo:pw@1000?endpoint={quote(endpoint, safe='')}"
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    assert "allow_insecure_http=True" in caught.value.hint_for("python")
    assert "--allow-insecure-http" in caught.value.describe("cli")
    assert "ALLOW_INSECURE_HTTP" in caught.value.describe("django")

    caplog.set_level(logging.WARNING, logger="mobilgroup_backends.config")
    assert parse_url(url + "&allow_insecure_http=yes")[0].endpoint == endpoint
    monkeypatch.setenv("MOBILGROUP_URL", url)
    monkeypatch.setenv("MOBILGROUP_ALLOW_INSECURE_HTTP", "yes")
    assert resolve("client").settings.allow_insecure_http
    monkeypatch.delenv("MOBILGROUP_ALLOW_INSECURE_HTTP")
    # Accepted: what stops the command is the phone, checked before anything goes out (so no
    # name of that host is ever looked up).
    assert main(["send", "12", "--text", "x", "--url", url, "--allow-insecure-http"]) == 2
    refusal = capsys.readouterr().err
    assert "phone" in refusal and "endpoint" not in refusal
    assert main(["send", "12", "--text", "x", "--url", url]) == 2
    assert "endpoint" in capsys.readouterr().err  # the same command without the flag
    warnings = [r for r in caplog.records if "allow_insecure_http" in r.getMessage()]
    assert len(warnings) == 1 and "pw" not in warnings[0].getMessage()


# --- digits and brackets ------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: parse_url("mobilgroup://demo:pw@" + wide("1000")),
    lambda: parse_url("mobilgroup://demo:pw@1000?valid=" + wide("2")),
    lambda: parse_url("mobilgroup://demo:pw@1000?timeout=" + wide("5")),
    lambda: parse_url("mobilgroup://demo:pw@1000?retries=²"),
    lambda: MobilgroupClient(wide("1000"), "demo", "pw"),
    lambda: check_request_id(wide("123")),
    lambda: check_request_id("²"),
    lambda: check_schedule(wide("2030-01-01 10:00")),
    lambda: check_valid_hours(wide("4")),
    lambda: resolve("client", environ={"MOBILGROUP_USER_ID": "٣", "MOBILGROUP_LOGIN": "l",
                                       "MOBILGROUP_PASSWORD": "p"}),
], ids=["url user id", "url valid", "url timeout", "url retries", "client user id",
        "request id", "superscript id", "schedule", "valid hours", "env user id"])
def test_non_ascii_digits_are_refused(call: Any) -> None:
    with pytest.raises(ValidationError):
        call()


def test_valid_hours_out_of_range_does_not_talk_of_whole_hours() -> None:
    with pytest.raises(ValidationError) as caught:
        check_valid_hours(49)
    assert "whole" not in caught.value.problem and "1 to 48" in str(caught.value)


# --- phones -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "sent"), [
    ("8 (903) 958-74-54", "79039587454"),
    ("8-903-958-74-54", "79039587454"),
    ("9039587454", "79039587454"),
    ("(903) 958-74-54", "79039587454"),
    ("+7 903 958-74-54", "79039587454"),
    ("79039587454", "79039587454"),
    ("380501234567", "380501234567"),
    ("+380 50 123 4567", "380501234567"),
    ("0079039587454", "79039587454"),
    ("+7 123 000-00-00", "71230000000"),  # a range newer than the metadata: '+' says "as written"
])
def test_phones_as_people_write_them(written: str, sent: str) -> None:
    assert normalize_phones(written) == (sent,)


def test_phone_number_objects_and_regions() -> None:
    number = phonenumbers.parse("+79039587454")
    assert normalize_phones([number, "89039587454"]) == ("79039587454",)
    assert normalize_phones("8 701 123 4567", region="KZ") == ("77011234567",)
    settings, _ = parse_url("mobilgroup://demo:pw@1000/87011234567?region=kz")
    assert settings.phones == ("77011234567",) and settings.region == "KZ"
    with pytest.raises(ConfigurationError, match="region"):
        parse_url("mobilgroup://demo:pw@1000?region=XX")


@pytest.mark.parametrize("written", ["12345", "71230000000", "+888 1234 5678", "8 (903) 958-74"])
def test_a_number_that_is_neither_is_refused_naming_it_and_the_region(written: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_phones(written)
    assert repr(written) in str(caught.value) and "RU" in str(caught.value)
