"""One configuration for every adapter: the same MOBILGROUP, environment and URL give the Django
backend, its checks and the logging handler the same account, and alert options in MOBILGROUP
are accepted by everyone."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
import sms
from django.core.checks import run_checks
from django.core.management import call_command

from mobilgroup_backends.config import resolve
from mobilgroup_backends.django import SmsBackend
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.logging import SmsHandler

PHONE, PHONE2 = "79031234567", "79161234567"
SETTINGS_PW = "settings-Pw-1"
ENV_PW = "env-Pw-2"

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


@pytest.fixture
def two_accounts(mobilgroup_emulator: Emulator) -> Emulator:
    mobilgroup_emulator.add_account(user_id="3001", login="settings", password=SETTINGS_PW)
    mobilgroup_emulator.add_account(user_id="3002", login="env", password=ENV_PW)
    return mobilgroup_emulator


@pytest.fixture
def handlers() -> Iterator[list[SmsHandler]]:
    made: list[SmsHandler] = []
    yield made
    for handler in made:
        handler.close()


@pytest.mark.django_db  # Django 6 model checks consult the database
def test_alert_phones_in_mobilgroup_pass_checks_and_serve_backend_and_handler(
        mobilgroup_emulator: Emulator, settings: Any, handlers: list[SmsHandler]) -> None:
    # Exactly what docs/logging.md shows, plus the alert options of the handler.
    settings.MOBILGROUP = {"URL": mobilgroup_emulator.url(sender="Shop"),
                           "ALERT_PHONES": ["+7 903 123-45-67", PHONE2], "ALERT_MAX_SMS": 2,
                           "ALERT_PREFIX": "web1"}
    assert [m.id for m in run_checks() if (m.id or "").startswith("mobilgroup.")] == []
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()

    assert sms.send_sms("order shipped", recipients=[PHONE]) == 1
    assert mobilgroup_emulator.outbox[-1].phones == (PHONE,)

    handler = SmsHandler()
    handlers.append(handler)
    assert handler.phones == (PHONE, PHONE2)
    assert handler.max_sms == 2 and handler.prefix == "web1"
    logger = logging.getLogger("cfg-alerts")
    logger.addHandler(handler)
    try:
        logger.critical("disk full")
        handler.flush()
    finally:
        logger.removeHandler(handler)
    assert mobilgroup_emulator.outbox.wait_for(2)
    alert = mobilgroup_emulator.outbox[-1]
    assert alert.phones == (PHONE, PHONE2) and alert.sender == "Shop"
    assert alert.text == "[CRITICAL] web1 cfg-alerts: disk full"


def test_environment_and_settings_give_backend_and_handler_the_same_account(
        two_accounts: Emulator, settings: Any, monkeypatch: pytest.MonkeyPatch,
        handlers: list[SmsHandler]) -> None:
    monkeypatch.setenv("MOBILGROUP_URL", two_accounts.url(PHONE, account="3002"))
    settings.MOBILGROUP = {"URL": two_accounts.url(account="3001"), "ALERT_PHONES": [PHONE]}
    backend = SmsBackend()
    handler = SmsHandler()
    handlers.append(handler)
    assert backend.config.settings.user_id == "3001"
    assert handler._settings is not None and handler._settings.user_id == "3001"
    assert sms.send_sms("via backend", recipients=[PHONE]) == 1
    logging.getLogger("cfg-same").addHandler(handler)
    try:
        logging.getLogger("cfg-same").critical("via handler")
        handler.flush()
    finally:
        logging.getLogger("cfg-same").removeHandler(handler)
    assert two_accounts.outbox.wait_for(2)
    assert [m.user_id for m in two_accounts.outbox] == ["3001", "3001"]

    # Without the setting, both fall back to the environment's account.
    del settings.MOBILGROUP
    assert SmsBackend().config.settings.user_id == "3002"
    handler = SmsHandler()
    handlers.append(handler)
    assert handler._settings is not None and handler._settings.user_id == "3002"


def test_explicit_url_timeout_and_retries_are_given_not_defaults(
        mobilgroup_emulator: Emulator, handlers: list[SmsHandler]) -> None:
    # The handler's own defaults are short (5 s, 1 retry); a URL that says 10 and 3 means it.
    handler = SmsHandler(url=mobilgroup_emulator.url(PHONE, timeout=10, retries=3))
    handlers.append(handler)
    assert handler._settings is not None
    assert (handler._settings.timeout, handler._settings.retries) == (10.0, 3)
    handler = SmsHandler(url=mobilgroup_emulator.url(PHONE))
    handlers.append(handler)
    assert handler._settings is not None
    assert (handler._settings.timeout, handler._settings.retries) == (5.0, 1)
    handler = SmsHandler(url=mobilgroup_emulator.url(PHONE, timeout=10), timeout=2)
    handlers.append(handler)
    assert handler._settings is not None and handler._settings.timeout == 2.0


def test_resolver_records_the_layer_of_every_field(mobilgroup_emulator: Emulator) -> None:
    resolved = resolve(
        "django", arguments={"sender": "Arg"},
        setting={"URL": mobilgroup_emulator.url(valid=3), "TIMEOUT": 7},
        environ={"MOBILGROUP_RETRIES": "2", "MOBILGROUP_USER_ID": "9", "MOBILGROUP_LOGIN": "x",
                 "MOBILGROUP_PASSWORD": "y"})
    assert resolved.settings.user_id == mobilgroup_emulator.account.user_id  # never mixed
    assert resolved.sources["sender"] == "argument"
    assert resolved.sources["timeout"] == "setting"
    assert resolved.sources["valid_hours"] == "setting-url"
    assert resolved.sources["retries"] == "env"
    assert resolved.sources["user_id"] == "setting-url"
    assert not resolved.given("backoff") and resolved["backoff"] == 0.25
    assert resolved.where("timeout") == "MOBILGROUP['TIMEOUT']"
    assert resolved.where("retries") == "MOBILGROUP_RETRIES"


def test_hints_name_what_exists_where_they_are_shown(
        mobilgroup_emulator: Emulator, settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilgroup_backends import MobilgroupClient
    from mobilgroup_backends.cli import main
    from mobilgroup_backends.errors import ValidationError

    settings.MOBILGROUP = {"URL": mobilgroup_emulator.url(), "LONG_MESSAGES": "error"}
    # Django: settings keys.
    with pytest.raises(ValidationError) as caught:
        sms.send_sms("ok 🔥", recipients=[PHONE])
    assert "MOBILGROUP['REPLACE_UNENCODABLE']" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        sms.send_sms("x" * 141, recipients=[PHONE])
    assert "MOBILGROUP['LONG_MESSAGES']" in str(caught.value)
    assert "split option" not in str(caught.value) and "fit_text" not in str(caught.value)
    # Python: keyword arguments.
    with MobilgroupClient.from_url(mobilgroup_emulator.url()) as client, \
            pytest.raises(ValidationError) as caught:
        client.send(PHONE, "ok 🔥")
    assert "replace_unencodable=True" in str(caught.value)
    assert "(replace=True)" not in str(caught.value)
    # The CLI: its flags; and no send hint on a status query.
    url = mobilgroup_emulator.url()
    assert main(["send", PHONE, "--text", "ok 🔥", "--url", url]) == 2
    assert main(["send", PHONE, "--text", "x" * 141, "--url", url]) == 2
    assert main(["status", "abc", "--url", url]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "--replace-unencodable" in err[0] and "replace_unencodable=True" not in err[0]
    assert "--split" in err[1] and "split option" not in err[1]
    assert "leave it unset" not in err[2] and "--id" not in err[2]
    assert not mobilgroup_emulator.outbox


def test_an_alert_prefix_is_one_line_for_the_handler_and_the_receiver(
        mobilgroup_emulator: Emulator, handlers: list[SmsHandler]) -> None:
    """The prefix goes into every alert SMS: its line ends and runs of spaces are folded by the
    resolver, whichever adapter reads it."""
    from mobilgroup_backends.serve import make_app

    handler = SmsHandler(url=mobilgroup_emulator.url(PHONE), prefix=" web 1\n  eu-west ")
    handlers.append(handler)
    assert handler.prefix == "web 1 eu-west"
    app = make_app(mobilgroup_emulator.url(PHONE), allow_no_auth=True, prefix="web\t1\n eu")
    try:
        assert app.delivery.prefix == "web 1 eu"
    finally:
        app.close()
