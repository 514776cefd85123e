"""The real one-time code frameworks, driven through their views with Django's test client: the
codes travel to the emulator and are read back from it, as a project's own tests would."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from two_factor.plugins.phonenumber.models import PhoneDevice

from mobilgroup_backends.django.guard import counters
from mobilgroup_backends.django.otp.models import SmsDevice
from mobilgroup_backends.emulator import Emulator

pytestmark = pytest.mark.django_db

TWO_FACTOR_GATEWAY = "mobilgroup_backends.django.two_factor.Gateway"


def _user(django_user_model: Any, name: str, **extra: Any) -> Any:
    return django_user_model.objects.create_user(name, password=f"pw-{name}-1", **extra)


def _other_code(code: str) -> str:
    return "000000" if code != "000000" else "111111"


# --- django-two-factor-auth ---------------------------------------------------------------------


@pytest.fixture
def two_factor_site(otp_emulator: Emulator, settings: Any) -> Emulator:
    settings.ROOT_URLCONF = "tests.django_project.two_factor_urls"
    settings.TWO_FACTOR_SMS_GATEWAY = TWO_FACTOR_GATEWAY
    settings.LOGIN_URL = "two_factor:login"
    settings.TWO_FACTOR_PHONE_THROTTLE_FACTOR = 0  # a wrong token, then the right one at once
    settings.LOGIN_REDIRECT_URL = "/home/"
    return otp_emulator


def _password_step(client: Client, name: str) -> Any:
    return client.post("/account/login/", {"login_view-current_step": "auth",
                                           "auth-username": name,
                                           "auth-password": f"pw-{name}-1"})


def _token_step(client: Client, token: str) -> Any:
    return client.post("/account/login/", {"login_view-current_step": "token",
                                           "token-otp_token": token})


def test_two_factor_login_with_the_code_from_the_sms(two_factor_site: Emulator,
                                                      django_user_model: Any) -> None:
    user = _user(django_user_model, "anna")
    PhoneDevice.objects.create(user=user, name="default", number="+79000000001", method="sms")
    client = Client()

    page = _password_step(client, "anna")
    assert page.status_code == 200
    assert b"token-otp_token" in page.content  # the SMS step
    code = two_factor_site.last_code("+7 900 000-00-01", timeout=5)
    assert code is not None and len(code) == 6
    assert two_factor_site.outbox[-1].phones == ("79000000001",)
    assert two_factor_site.outbox[-1].valid_hours == 1

    wrong = _token_step(client, _other_code(code))
    assert wrong.status_code == 200 and SESSION_KEY not in client.session

    done = _token_step(client, code)
    assert done.status_code == 302 and done["Location"] == "/home/"
    assert client.session[SESSION_KEY] == str(user.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == PhoneDevice.objects.get().persistent_id
    assert client.get("/home/").content == b"hello anna"


def test_two_factor_login_refused_by_the_guard_renders_the_token_step(
        two_factor_site: Emulator, settings: Any, django_user_model: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_PER_PHONE_HOUR": 1}
    user = _user(django_user_model, "boris")
    PhoneDevice.objects.create(user=user, name="default", number="+79000000002", method="sms")

    assert _password_step(Client(), "boris").status_code == 200
    second = _password_step(Client(), "boris")

    assert second.status_code == 200 and b"token-otp_token" in second.content
    assert len(two_factor_site.outbox) == 1  # the second code was refused, not sent



def _setup(client: Client, number: str) -> Any:
    assert client.get("/account/two_factor/setup/").status_code == 200
    for step, data in (("welcome", {}), ("method", {"method-method": "sms"})):
        assert client.post("/account/two_factor/setup/",
                           {"setup_view-current_step": step, **data}).status_code == 200
    return client.post("/account/two_factor/setup/", {"setup_view-current_step": "sms",
                                                      "sms-number": number})


def test_two_factor_setup_wizard_texts_the_code_and_shows_a_refusal(
        two_factor_site: Emulator, django_user_model: Any) -> None:
    _user(django_user_model, "hanna")
    client = Client()
    client.login(username="hanna", password="pw-hanna-1")

    validation = _setup(client, "+79000000012")
    assert b"We sent you a text message" in validation.content
    code = two_factor_site.last_code("+79000000012", timeout=5)
    assert code is not None
    done = client.post("/account/two_factor/setup/", {"setup_view-current_step": "validation",
                                                      "validation-token": code})
    assert done.status_code == 302
    assert PhoneDevice.objects.get().number.as_e164 == "+79000000012"

    refused_client = Client()
    _user(django_user_model, "ivan")
    refused_client.login(username="ivan", password="pw-ivan-1")
    refused = _setup(refused_client, "+380501234567")  # not the configured region
    assert refused.status_code == 200
    assert b"encountered an issue with the selected authentication method" in refused.content
    assert len(two_factor_site.outbox) == 1
    assert counters()["refused_region"] == 1  # the guard said no, nothing else failed

def test_two_factor_make_call_is_refused_with_the_setting_named(settings: Any) -> None:
    from django.core.checks import run_checks

    from mobilgroup_backends.django.two_factor import Gateway

    with pytest.raises(ImproperlyConfigured, match=r"TWO_FACTOR_CALL_GATEWAY.*cannot make voice calls"):
        Gateway().make_call(device=None, token="123456")
    settings.TWO_FACTOR_CALL_GATEWAY = TWO_FACTOR_GATEWAY
    assert "mobilgroup.W020" in [message.id for message in run_checks()]
    settings.TWO_FACTOR_CALL_GATEWAY = "two_factor.gateways.fake.Fake"
    assert "mobilgroup.W020" not in [message.id for message in run_checks()]


# --- django-otp ---------------------------------------------------------------------------------


def test_django_otp_device_sends_and_verifies_its_token_once(otp_emulator: Emulator,
                                                              settings: Any,
                                                              django_user_model: Any) -> None:
    settings.OTP_MOBILGROUP_THROTTLE_FACTOR = 0
    device = SmsDevice.objects.create(user=_user(django_user_model, "vera"), name="phone",
                                      number="+7 900 000-00-03")

    assert device.generate_challenge() == "sent by SMS"
    code = otp_emulator.last_code("79000000003", timeout=5)
    assert code is not None and len(code) == 6
    assert "Valid 5 min." in otp_emulator.outbox[-1].text

    assert not device.verify_token(_other_code(code))
    assert device.verify_token(code)
    assert not device.verify_token(code)  # used up


def test_django_otp_admin_login_with_challenge_and_token(otp_emulator: Emulator,
                                                         settings: Any,
                                                         django_user_model: Any) -> None:
    settings.ROOT_URLCONF = "tests.django_project.django_otp_urls"
    user = _user(django_user_model, "gleb", is_staff=True)
    device = SmsDevice.objects.create(user=user, name="phone", number="+79000000004")
    client = Client()
    form = {"username": "gleb", "password": "pw-gleb-1", "otp_device": device.persistent_id}

    challenge = client.post("/otpadmin/login/", {**form, "otp_challenge": "1"})
    assert challenge.status_code == 200 and b"sent by SMS" in challenge.content
    code = otp_emulator.last_code("+79000000004", timeout=5)
    assert code is not None

    done = client.post("/otpadmin/login/", {**form, "otp_token": code})
    assert done.status_code == 302
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id


def test_django_otp_refusal_is_the_challenge_message_and_no_token_stays(
        otp_emulator: Emulator, settings: Any, django_user_model: Any) -> None:
    device = SmsDevice.objects.create(user=_user(django_user_model, "dina"), name="phone",
                                      number="+88234567890")  # an international network

    message = device.generate_challenge()

    assert "not sent" in message
    assert len(otp_emulator.outbox) == 0
    device.refresh_from_db()
    assert device.token is None


def test_django_otp_no_delivery_sends_nothing_and_logs_no_code(
        otp_emulator: Emulator, settings: Any, django_user_model: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    settings.OTP_MOBILGROUP_NO_DELIVERY = True
    device = SmsDevice.objects.create(user=_user(django_user_model, "egor"), name="phone",
                                      number="+79000000005")
    caplog.set_level("DEBUG")

    assert device.generate_challenge() == "sent by SMS"

    assert len(otp_emulator.outbox) == 0
    device.refresh_from_db()
    assert device.token and device.token not in caplog.text
    assert device.verify_token(device.token)


def test_django_otp_settings_changed_between_codes_count_at_once(
        otp_emulator: Emulator, settings: Any, django_user_model: Any) -> None:
    device = SmsDevice.objects.create(user=_user(django_user_model, "fedor"), name="phone",
                                      number="+79000000006")
    assert device.generate_challenge() == "sent by SMS"  # the plugin's settings read once
    first = otp_emulator.last_code("79000000006", timeout=5)

    settings.OTP_MOBILGROUP_TOKEN_TEMPLATE = "Code {code}"
    settings.OTP_MOBILGROUP_TOKEN_LENGTH = 8
    settings.OTP_MOBILGROUP_CHALLENGE_MESSAGE = "Look at your phone"
    assert device.generate_challenge() == "Look at your phone"
    device.refresh_from_db()
    assert otp_emulator.outbox[-1].text == f"Code {device.token}" and len(device.token) == 8
    assert device.token != first

    settings.OTP_MOBILGROUP_NO_DELIVERY = True
    device.generate_challenge()
    assert len(otp_emulator.outbox) == 2
    device.refresh_from_db()
    assert device.verify_token(device.token)  # stored, though not sent


# --- django-allauth -----------------------------------------------------------------------------


@pytest.fixture
def allauth_site(otp_emulator: Emulator, settings: Any) -> Emulator:
    settings.ROOT_URLCONF = "tests.django_project.allauth_urls"
    settings.ACCOUNT_ADAPTER = "mobilgroup_backends.django.allauth.AccountAdapter"
    settings.ACCOUNT_LOGIN_METHODS = {"phone", "username"}
    settings.ACCOUNT_SIGNUP_FIELDS = ["phone*", "username*", "password1*", "password2*"]
    settings.ACCOUNT_LOGIN_BY_CODE_ENABLED = True
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    settings.ACCOUNT_RATE_LIMITS = False
    settings.LOGIN_REDIRECT_URL = "/home/"
    return otp_emulator


def test_allauth_sign_in_by_phone_code(allauth_site: Emulator, django_user_model: Any) -> None:
    from allauth.account.adapter import get_adapter

    user = _user(django_user_model, "fedor")
    get_adapter().set_phone(user, "+79000000006", True)
    client = Client()

    asked = client.post("/accounts/login/code/", {"phone": "+79000000006"})
    assert asked.status_code == 302 and "/accounts/login/code/confirm/" in asked["Location"]
    code = allauth_site.last_code("+79000000006", timeout=5)
    assert code is not None
    assert allauth_site.outbox[-1].phones == ("79000000006",)

    done = client.post("/accounts/login/code/confirm/", {"code": code})
    assert done.status_code == 302 and done["Location"] == "/home/"
    assert client.session[SESSION_KEY] == str(user.pk)


def test_allauth_unknown_number_gets_the_no_account_text(allauth_site: Emulator) -> None:
    asked = Client().post("/accounts/login/code/", {"phone": "+79000000007"})

    assert asked.status_code == 302  # enumeration prevention: the same answer as for a user
    assert allauth_site.outbox.wait_for(1)
    assert "no account uses this number" in allauth_site.outbox[-1].text.lower()
    assert allauth_site.last_code("+79000000007") is None



def test_allauth_signup_with_a_taken_number_texts_its_owner(allauth_site: Emulator,
                                                             django_user_model: Any) -> None:
    from allauth.account.adapter import get_adapter

    get_adapter().set_phone(_user(django_user_model, "kira"), "+79000000013", True)
    signup = Client().post("/accounts/signup/", {
        "username": "kira2", "phone": "+79000000013",
        "password1": "a-long-pass-phrase-13", "password2": "a-long-pass-phrase-13"})

    assert signup.status_code == 302  # enumeration prevention: it looks like any signup
    assert allauth_site.outbox.wait_for(1)
    assert allauth_site.outbox[-1].text == "An account with this number exists."

def test_allauth_number_the_guard_refuses_is_a_form_error(allauth_site: Emulator) -> None:
    page = Client().post("/accounts/login/code/", {"phone": "+88312345678"})

    assert page.status_code == 200
    assert b"A code cannot be sent to this number now" in page.content
    assert len(allauth_site.outbox) == 0


def test_allauth_phone_storage_in_sms_devices(allauth_site: Emulator,
                                              django_user_model: Any) -> None:
    from allauth.account.adapter import get_adapter

    adapter = get_adapter()
    assert adapter._has_phone_impl
    user = _user(django_user_model, "galina")
    assert adapter.get_phone(user) is None
    adapter.set_phone(user, "8 900 000-00-08", False)
    assert adapter.get_phone(user) == ("+79000000008", False)
    assert adapter.get_user_by_phone("+79000000008") == user
    adapter.set_phone_verified(user, "+79000000008")
    assert adapter.get_phone(user) == ("+79000000008", True)
    adapter.set_phone(user, "+79000000009", False)
    assert SmsDevice.objects.filter(user=user).count() == 1
    assert adapter.get_user_by_phone("+79000000008") is None
