"""The Django SMS backend, through the real django-sms and django-sendsms APIs, against the emulator."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sendsms.api
import sms
from django.core.exceptions import ImproperlyConfigured

from mobilgroup_backends.django import MobilgroupStatus, SmsBackend
from mobilgroup_backends.django.signals import CancelSend, post_send, pre_send
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import (
    ClientBlocked,
    GatewayError,
    InsufficientFunds,
    TransportError,
    ValidationError,
)
from tests.django_project.helpers import Message
from tests.helpers import in_threads

ROOT = Path(__file__).resolve().parent.parent
PHONE, PHONE2, PHONE3 = "79031234567", "79031234568", "79031234569"


# The settings under test must not be mixed with MOBILGROUP_* variables of the machine.
pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


# --- both packages reach the gateway --------------------------------------------------------


def test_django_sms_send_sms_reaches_the_outbox(django_emulator: Emulator) -> None:
    sent = sms.send_sms("Your code is 4521", recipients=["+7 (903) 123-45-67"])

    assert sent == 1
    assert django_emulator.outbox.wait_for(1)
    [message] = django_emulator.outbox
    assert message.phones == (PHONE,)
    assert message.text == "Your code is 4521"
    assert message.sender is None  # no SENDER, no default: the account's own alias
    assert message.user_id == django_emulator.account.user_id


def test_django_sendsms_send_sms_reaches_the_outbox(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "SENDER": "MyShop"}

    sent = sendsms.api.send_sms(body="Order 17 shipped", from_phone=None, to=[PHONE, PHONE2])

    assert sent == 1
    [message] = django_emulator.outbox
    assert message.phones == (PHONE, PHONE2)
    assert message.text == "Order 17 shipped"
    assert message.sender == "MyShop"


def test_django_sms_message_object_gets_a_status(django_emulator: Emulator) -> None:
    message = sms.Message("Hello", recipients=[PHONE, PHONE2, PHONE3])

    assert message.send() == 1

    [sent] = django_emulator.outbox  # one message to many recipients is one gateway request
    status: MobilgroupStatus = message.mobilgroup_status
    assert status.status == "queued" and status.accepted
    assert status.request_id == sent.request_id
    assert status.request_ids == [sent.request_id]
    assert set(status.recipients) == {PHONE, PHONE2, PHONE3}
    assert {r.status for r in status.recipients.values()} == {"queued"}
    assert {r.request_id for r in status.recipients.values()} == {sent.request_id}


def test_send_messages_counts_only_what_the_gateway_accepted(django_emulator: Emulator) -> None:
    good, bad, also_good = (Message("one", [PHONE]), Message("two", ["not a phone"]),
                            Message("three", [PHONE2]))

    count = SmsBackend(fail_silently=True).send_messages([good, bad, also_good])

    assert count == 2
    assert [m.text for m in django_emulator.outbox] == ["one", "three"]
    assert bad.mobilgroup_status.status == "rejected"  # type: ignore[attr-defined]
    assert isinstance(bad.mobilgroup_status.error, ValidationError)  # type: ignore[attr-defined]
    assert SmsBackend().send_messages([]) == 0


# --- connections ----------------------------------------------------------------------------


def test_one_connection_is_reused_inside_a_with_block(django_emulator: Emulator) -> None:
    before = django_emulator.connections
    with sms.get_connection() as connection:
        for n in range(4):
            assert sms.Message(f"message {n}", recipients=[PHONE],
                               connection=connection).send() == 1
    assert len(django_emulator.outbox) == 4
    assert django_emulator.connections - before == 1


def test_without_a_block_sends_share_one_client_per_configuration(django_emulator: Emulator) -> None:
    """``send_sms`` without a connection makes a backend per message; they share the process's
    client for the configuration, so every message after the first reuses its connection."""
    before = django_emulator.connections
    for n in range(3):
        sms.send_sms(f"message {n}", recipients=[PHONE])
    assert len(django_emulator.outbox) == 3
    assert django_emulator.connections - before <= 1


def test_sendsms_connection_reuse_with_open_and_close(django_emulator: Emulator) -> None:
    connection = sendsms.api.get_connection()
    before = django_emulator.connections
    assert connection.open() is True
    assert connection.open() is False  # already open: nothing new
    try:
        for n in range(3):
            sendsms.api.send_sms(f"n{n}", None, [PHONE], connection=connection)
    finally:
        connection.close()
    assert django_emulator.connections - before == 1
    assert connection.client is None


def test_one_open_backend_is_safe_to_share_between_threads(django_emulator: Emulator) -> None:
    backend = SmsBackend()
    def worker(n: int) -> None:
        for k in range(5):
            assert backend.send_messages([Message(f"t{n}-{k}", [PHONE])]) == 1

    with backend:
        errors = in_threads(worker, 6, timeout=30)
    assert not errors
    assert django_emulator.outbox.wait_for(30, timeout=5)
    assert len({m.request_id for m in django_emulator.outbox}) == 30
    assert sorted(m.text for m in django_emulator.outbox) == sorted(
        f"t{n}-{k}" for n in range(6) for k in range(5))


def test_a_lost_answer_is_retried_and_sent_once(django_emulator: Emulator) -> None:
    django_emulator.faults.next("close_after")  # processed, then the answer is lost

    message = sms.Message("exactly once", recipients=[PHONE])
    assert message.send() == 1

    assert len(django_emulator.outbox) == 1
    assert message.mobilgroup_status.request_id == django_emulator.outbox[0].request_id


# --- fail_silently --------------------------------------------------------------------------


def test_gateway_refusal_raises_without_fail_silently(django_emulator: Emulator) -> None:
    django_emulator.account.blocked = True
    message = sms.Message("hi", recipients=[PHONE])

    with pytest.raises(ClientBlocked) as caught:
        message.send()

    assert caught.value.code == 5
    assert message.mobilgroup_status.status == "failed"
    assert message.mobilgroup_status.error is caught.value
    assert not django_emulator.outbox


def test_gateway_refusal_is_swallowed_with_fail_silently(django_emulator: Emulator) -> None:
    django_emulator.account.blocked = True
    message = sms.Message("hi", recipients=[PHONE, PHONE2])

    assert message.send(fail_silently=True) == 0

    status = message.mobilgroup_status
    assert status.status == "failed"
    assert isinstance(status.error, GatewayError) and status.error.code == 5
    assert {r.status for r in status.recipients.values()} == {"failed"}


def test_network_failure_both_ways(django_emulator: Emulator) -> None:
    django_emulator.faults.next("http_500", count=6)  # RETRIES is 1: two attempts per send
    with pytest.raises(TransportError):
        sms.send_sms("down", recipients=[PHONE])
    assert sms.send_sms("down", recipients=[PHONE], fail_silently=True) == 0
    assert sendsms.api.send_sms("down", None, [PHONE], fail_silently=True) == 0
    assert not django_emulator.outbox


BAD_SETTINGS = [
    ({"URL": "mobilgroup://only-login@1234"}, "MOBILGROUP['URL']"),
    ({"URL": "https://login:pw@1234"}, "MOBILGROUP['URL']"),
    ({"USER_ID": "12ab", "LOGIN": "demo", "PASSWORD": "pw"}, "MOBILGROUP['USER_ID']"),
    ({"USER_ID": "1234", "LOGIN": "demo"}, "MOBILGROUP['PASSWORD']"),
    ({"URL": "mobilgroup://demo:pw@1234", "SENDER": "Not valid!"}, "MOBILGROUP['SENDER']"),
    ({"URL": "mobilgroup://demo:pw@1234?sender=way-too-long-alias"}, "MOBILGROUP['URL']"),
    ({"URL": "mobilgroup://demo:pw@1234", "LONG_MESSAGES": "wrap"},
     "MOBILGROUP['LONG_MESSAGES']"),
    ({"URL": "mobilgroup://demo:pw@1234", "ENDPOINT": "http://sms.example.com/extxml.php"},
     "MOBILGROUP['ENDPOINT']"),
    ({"URL": "mobilgroup://demo:pw@1234", "TIMEOUT": "soon"}, "MOBILGROUP['TIMEOUT']"),
    ({"URL": "mobilgroup://demo:pw@1234", "RETRIES": 99}, "MOBILGROUP['RETRIES']"),
    ({"URL": "mobilgroup://demo:pw@1234", "VALID_HOURS": 49}, "MOBILGROUP['VALID_HOURS']"),
    ({"URL": "mobilgroup://demo:pw@1234", "TRANSLITERATE": "maybe"},
     "MOBILGROUP['TRANSLITERATE']"),
    ({"URL": "mobilgroup://demo:pw@1234", "SENDR": "Shop"}, "MOBILGROUP['SENDR']"),
    ({}, "MOBILGROUP"),
]


@pytest.mark.parametrize(("value", "named"), BAD_SETTINGS)
def test_bad_settings_raise_improperly_configured_even_with_fail_silently(
        settings: Any, value: dict[str, Any], named: str) -> None:
    settings.MOBILGROUP = value
    with pytest.raises(ImproperlyConfigured) as caught:
        sms.get_connection(fail_silently=True)
    assert str(caught.value).startswith(named)
    with pytest.raises(ImproperlyConfigured):
        sms.send_sms("x", recipients=[PHONE], fail_silently=True)
    with pytest.raises(ImproperlyConfigured):
        sendsms.api.send_sms("x", None, [PHONE], fail_silently=True)


def test_setting_that_is_not_a_dict(settings: Any) -> None:
    settings.MOBILGROUP = "mobilgroup://demo:pw@1234"
    with pytest.raises(ImproperlyConfigured, match=r"^MOBILGROUP: must be a dict"):
        SmsBackend(fail_silently=True)


def test_tracking_without_the_app_is_a_configuration_error(settings: Any) -> None:
    settings.MOBILGROUP = {"URL": "mobilgroup://demo:pw@1234", "TRACK_DELIVERY": True}
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS
                               if app != "mobilgroup_backends.django"]
    with pytest.raises(ImproperlyConfigured, match="INSTALLED_APPS"):
        SmsBackend(fail_silently=True)


def test_secrets_never_show(settings: Any, caplog: pytest.LogCaptureFixture,
                            mobilgroup_emulator: Emulator) -> None:
    secret = "Sup3r-Secret-pw"
    settings.MOBILGROUP = {"URL": f"mobilgroup://demo:{secret}@12x4"}
    with pytest.raises(ImproperlyConfigured) as caught:
        SmsBackend()
    assert secret not in str(caught.value)
    settings.MOBILGROUP = {"USER_ID": "1000", "LOGIN": "demo", "PASSWORD": secret,
                           "ENDPOINT": "ftp://example.com/"}
    with pytest.raises(ImproperlyConfigured) as caught:
        SmsBackend()
    assert secret not in str(caught.value)

    settings.MOBILGROUP = {"USER_ID": "1000", "LOGIN": "demo", "PASSWORD": secret,
                           "ENDPOINT": mobilgroup_emulator.endpoint, "RETRIES": 0}
    backend = SmsBackend(fail_silently=True)
    assert secret not in repr(backend) and secret not in repr(backend.config)
    caplog.set_level(logging.DEBUG)
    message = Message("wrong password", [PHONE])
    assert backend.send_messages([message]) == 0  # the emulator does not know this password
    assert message.mobilgroup_status.error.code == 4  # type: ignore[attr-defined]
    assert caplog.records
    assert secret not in caplog.text
    assert secret not in repr(message.mobilgroup_status)  # type: ignore[attr-defined]


# --- settings sources -----------------------------------------------------------------------


def test_environment_is_the_fallback(mobilgroup_emulator: Emulator, settings: Any,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    del settings.MOBILGROUP
    monkeypatch.setenv("MOBILGROUP_URL", mobilgroup_emulator.url(sender="EnvShop"))
    assert sms.send_sms("from env", recipients=[PHONE]) == 1
    assert mobilgroup_emulator.outbox[-1].sender == "EnvShop"

    monkeypatch.delenv("MOBILGROUP_URL")
    account = mobilgroup_emulator.account
    for name, value in {"USER_ID": account.user_id, "LOGIN": account.login,
                        "PASSWORD": account.password,
                        "ENDPOINT": mobilgroup_emulator.endpoint}.items():
        monkeypatch.setenv(f"MOBILGROUP_{name}", value)
    settings.MOBILGROUP = {"SENDER": "Settings"}  # no credentials here: they come from the env
    assert sms.send_sms("discrete env", recipients=[PHONE]) == 1
    assert mobilgroup_emulator.outbox[-1].sender == "Settings"


def test_environment_is_not_mixed_into_settings_credentials(
        mobilgroup_emulator: Emulator, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILGROUP_PASSWORD", mobilgroup_emulator.account.password)
    settings.MOBILGROUP = {"USER_ID": "1000", "LOGIN": "demo"}
    with pytest.raises(ImproperlyConfigured, match=r"MOBILGROUP\['PASSWORD'\]"):
        SmsBackend()


def test_discrete_keys_and_constructor_arguments_override(django_emulator: Emulator,
                                                          settings: Any) -> None:
    account = django_emulator.account
    settings.MOBILGROUP = {"USER_ID": account.user_id, "LOGIN": account.login,
                           "PASSWORD": account.password, "ENDPOINT": django_emulator.endpoint,
                           "SENDER": "FromSet", "VALID_HOURS": 3}
    assert sms.send_sms("a", recipients=[PHONE]) == 1
    assert (django_emulator.outbox[-1].sender, django_emulator.outbox[-1].valid_hours) == ("FromSet", 3)

    connection = sms.get_connection(sender="FromArg", valid_hours=5)
    assert sms.send_sms("b", recipients=[PHONE], connection=connection) == 1
    assert (django_emulator.outbox[-1].sender, django_emulator.outbox[-1].valid_hours) == ("FromArg", 5)

    # django-sendsms passes username/password (None unless given): None changes nothing
    connection = sendsms.api.get_connection(username=None, password=None)
    assert sendsms.api.send_sms("c", None, [PHONE], connection=connection) == 1
    assert django_emulator.outbox[-1].sender == "FromSet"
    with pytest.raises(ImproperlyConfigured, match=r"SENDER|sender"):
        sms.get_connection(sender="bad alias!")
    with pytest.raises(TypeError, match="sendr"):
        sms.get_connection(sendr="Shop")


# --- sender alias ---------------------------------------------------------------------------


@pytest.mark.parametrize(("setting_sender", "defaults", "originator", "expected"), [
    (None, {}, None, None),
    ("Setting", {}, None, "Setting"),
    (None, {"DEFAULT_FROM_SMS": "SmsDflt"}, None, "SmsDflt"),
    ("Setting", {"DEFAULT_FROM_SMS": "SmsDflt"}, None, "Setting"),
    (None, {"DEFAULT_FROM_SMS": "+15551234567"}, None, None),  # a phone, not an alias
    ("Setting", {}, "Explicit", "Explicit"),
    ("Setting", {}, "+15551234567", "Setting"),
    (None, {"SENDSMS_DEFAULT_FROM_PHONE": "SendDflt"}, None, "SendDflt"),
])
def test_sender_alias_precedence(django_emulator: Emulator, settings: Any, setting_sender: str | None,
                                 defaults: dict[str, str], originator: str | None,
                                 expected: str | None) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "SENDER": setting_sender}
    for name, value in defaults.items():
        setattr(settings, name, value)
    assert sms.send_sms("hi", originator=originator, recipients=[PHONE]) == 1
    assert django_emulator.outbox[-1].sender == expected


def test_sendsms_default_from_phone(django_emulator: Emulator, settings: Any) -> None:
    settings.SENDSMS_DEFAULT_FROM_PHONE = "SendDflt"
    assert sendsms.api.send_sms("hi", None, [PHONE]) == 1
    assert django_emulator.outbox[-1].sender == "SendDflt"
    assert sendsms.api.send_sms("hi", "Explicit", [PHONE]) == 1
    assert django_emulator.outbox[-1].sender == "Explicit"


# --- signals --------------------------------------------------------------------------------


def test_pre_send_can_cancel_and_edit(django_emulator: Emulator) -> None:
    def receiver(sender: type, message: Any, **kwargs: Any) -> None:
        if "secret" in message.body:
            raise CancelSend
        message.body = message.body.upper()

    pre_send.connect(receiver)
    try:
        cancelled = sms.Message("a secret", recipients=[PHONE])
        edited = sms.Message("shout", recipients=[PHONE])
        assert SmsBackend().send_messages([cancelled, edited]) == 1
    finally:
        pre_send.disconnect(receiver)
    assert cancelled.mobilgroup_status.status == "cancelled"
    assert [m.text for m in django_emulator.outbox] == ["SHOUT"]


def test_post_send_carries_the_status(django_emulator: Emulator) -> None:
    seen: list[tuple[Any, MobilgroupStatus]] = []

    def receiver(sender: type, message: Any, status: MobilgroupStatus, **kwargs: Any) -> None:
        assert sender is SmsBackend and isinstance(kwargs["backend"], SmsBackend)
        seen.append((message, status))

    post_send.connect(receiver)
    try:
        django_emulator.account.blocked = True
        failing = sms.Message("no", recipients=[PHONE])
        assert failing.send(fail_silently=True) == 0
        django_emulator.account.blocked = False
        ok = sms.Message("yes", recipients=[PHONE])
        assert ok.send() == 1
    finally:
        post_send.disconnect(receiver)
    assert [(m, s.status) for m, s in seen] == [(failing, "failed"), (ok, "queued")]
    assert seen[1][1].request_id == django_emulator.outbox[0].request_id


# --- text: Cyrillic, encodings, length ------------------------------------------------------


def test_cyrillic_text_arrives_intact(django_emulator: Emulator, settings: Any) -> None:
    text = "Ваш заказ №17 отправлен. Спасибо!"
    assert sms.send_sms(text, recipients=[PHONE]) == 1
    assert django_emulator.outbox[-1].text == text
    assert django_emulator.outbox[-1].transliterate is True

    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRANSLITERATE": False}
    assert sms.send_sms(text, recipients=[PHONE]) == 1
    assert django_emulator.outbox[-1].text == text
    assert django_emulator.outbox[-1].transliterate is False


def test_characters_windows_1251_cannot_carry(django_emulator: Emulator, settings: Any) -> None:
    message = sms.Message("Deploy done \U0001f680", recipients=[PHONE])
    with pytest.raises(ValidationError, match="U\\+1F680"):
        message.send()
    assert message.mobilgroup_status.status == "rejected"
    assert not django_emulator.outbox

    settings.MOBILGROUP = {**settings.MOBILGROUP, "REPLACE_UNENCODABLE": True}
    assert sms.send_sms("Deploy done \U0001f680", recipients=[PHONE]) == 1
    assert django_emulator.outbox[-1].text == "Deploy done ?"


LONG = " ".join(f"word{n:02d}" for n in range(50))  # 349 characters


def test_long_message_split_is_the_default(django_emulator: Emulator) -> None:
    message = sms.Message(LONG, recipients=[PHONE, PHONE2])

    assert message.send() == 1

    parts = [m.text for m in django_emulator.outbox]
    assert len(parts) == 3
    assert all(len(part) <= 140 for part in parts)
    assert " ".join(parts) == LONG
    status = message.mobilgroup_status
    assert status.parts == 3
    assert status.request_ids == [m.request_id for m in django_emulator.outbox]
    assert all(m.phones == (PHONE, PHONE2) for m in django_emulator.outbox)


def test_long_message_truncate(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "LONG_MESSAGES": "truncate"}
    assert sms.send_sms(LONG, recipients=[PHONE]) == 1
    [sent] = django_emulator.outbox
    assert len(sent.text) <= 140 and sent.text.endswith("…")
    assert LONG.startswith(sent.text[:-1])


def test_long_message_error(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "LONG_MESSAGES": "error"}
    message = sms.Message(LONG, recipients=[PHONE])
    with pytest.raises(ValidationError, match="349 characters"):
        message.send()
    assert message.mobilgroup_status.status == "rejected"
    quiet = sms.Message(LONG, recipients=[PHONE])
    assert quiet.send(fail_silently=True) == 0
    assert quiet.mobilgroup_status.status == "rejected"
    assert not django_emulator.outbox


def test_long_cyrillic_without_transliteration_splits_at_64(django_emulator: Emulator,
                                                            settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRANSLITERATE": False}
    text = " ".join(["Привет"] * 20)  # 139 characters
    assert sms.send_sms(text, recipients=[PHONE]) == 1
    parts = [m.text for m in django_emulator.outbox]
    assert len(parts) == 3 and all(len(part) <= 64 for part in parts)
    assert " ".join(parts) == text


# --- imports --------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_importing_the_package_does_not_import_django() -> None:
    done = _python("import sys, mobilgroup_backends, mobilgroup_backends.django\n"
                   "assert 'django' not in sys.modules, 'django imported'\n"
                   "print('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_works_without_django_sms_installed(mobilgroup_emulator: Emulator) -> None:
    code = f"""
import sys
sys.modules["sms"] = None  # as if django-sms were not installed
import django
from django.conf import settings
settings.configure(MOBILGROUP={{"URL": {mobilgroup_emulator.url()!r}}},
                   SENDSMS_BACKEND="mobilgroup_backends.django.SmsBackend")
django.setup()
from mobilgroup_backends.django import SmsBackend
from mobilgroup_backends.django.backend import _LocalBaseSmsBackend
assert SmsBackend.__mro__[1] is _LocalBaseSmsBackend
import sendsms.api
with sendsms.api.get_connection() as connection:
    print(sendsms.api.send_sms("no django-sms", None, ["79031234567"], connection=connection))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert [m.text for m in mobilgroup_emulator.outbox] == ["no django-sms"]


# --- split messages: per part, and a re-send sends only what was not accepted ---------------------


def test_split_message_reports_each_part_and_resends_only_the_rest(django_emulator: Emulator) -> None:
    django_emulator.account.balance = Decimal(1)  # one SMS to one phone: part 1 only
    message = sms.Message(LONG, recipients=[PHONE])
    with pytest.raises(InsufficientFunds):
        message.send()
    status: MobilgroupStatus = message.mobilgroup_status
    assert status.status == "failed" and status.parts == 3
    first, second, third = status.part_results
    assert (first.status, second.status, third.status) == ("queued", "failed", "pending")
    assert [m.request_id for m in django_emulator.outbox] == [first.request_id]
    assert isinstance(second.error, InsufficientFunds) and not second.maybe_sent
    assert len({p.request_id for p in status.part_results}) == 3

    django_emulator.account.balance = Decimal(10)
    assert message.send() == 1  # the same message object again
    assert message.mobilgroup_status.status == "queued"
    assert [m.request_id for m in django_emulator.outbox] == [p.request_id for p in status.part_results]
    assert " ".join(m.text for m in django_emulator.outbox) == LONG  # each part exactly once


def test_resent_part_that_may_have_arrived_is_not_sent_twice(django_emulator: Emulator,
                                                            settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "RETRIES": 0}
    django_emulator.faults.next("close_after")  # part 1 accepted, its answer lost
    message = sms.Message(LONG, recipients=[PHONE])
    with pytest.raises(TransportError):
        message.send()
    first = message.mobilgroup_status.part_results[0]
    assert first.status == "failed" and first.maybe_sent
    assert message.send() == 1
    parts = message.mobilgroup_status.part_results
    assert parts[0].accepted_earlier and all(p.accepted for p in parts)
    assert len(django_emulator.outbox) == 3  # part 1 once, though it was sent twice


@pytest.mark.parametrize(("body", "expected"), [(b"hello bytes", "hello bytes"),
                                                ("привет".encode(), "привет")])
def test_bytes_bodies_are_decoded(django_emulator: Emulator, body: bytes, expected: str) -> None:
    assert SmsBackend().send_messages([Message(body, [PHONE])]) == 1
    assert [m.text for m in django_emulator.outbox] == [expected]


def test_bytes_that_are_not_utf8_are_refused(django_emulator: Emulator) -> None:
    message = Message(b"\xff\xfe", [PHONE])
    with pytest.raises(ValidationError) as caught:
        SmsBackend().send_messages([message])
    assert caught.value.field == "body" and "b'" not in str(caught.value)
    assert message.mobilgroup_status.status == "rejected"
    assert django_emulator.outbox == []
