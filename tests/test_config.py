"""Settings from URLs, the environment and arguments: parsed, checked, and never leaking."""

from __future__ import annotations

import pytest

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.config import (
    DEFAULT_ENDPOINT,
    Settings,
    parse_url,
    redact_url,
    settings_from_env,
)
from mobilgroup_backends.errors import ConfigurationError

SECRET = "Pa:ss/w@rd?&"
FULL = ("mobilgroup://valid%40username:Pa%3Ass%2Fw%40rd%3F%26@1234/79031234567/+79236411579"
        "?sender=My-Shop&valid=24&translit=no&endpoint=http%3A%2F%2F127.0.0.1%3A8080%2Fextxml.php"
        "&timeout=2.5&retries=1&to=79130000001,79130000002")


def test_full_url() -> None:
    settings, extras = parse_url(FULL)
    assert extras == {}
    assert settings.user_id == "1234"
    assert settings.login == "valid@username"
    assert settings.password == SECRET
    assert settings.phones == ("79031234567", "79236411579", "79130000001", "79130000002")
    assert settings.sender == "My-Shop"
    assert settings.valid_hours == 24
    assert settings.transliterate is False
    assert settings.endpoint == "http://127.0.0.1:8080/extxml.php"
    assert settings.timeout == 2.5
    assert settings.retries == 1


def test_url_round_trip_and_privacy() -> None:
    settings, _ = parse_url(FULL)
    assert parse_url(settings.to_url())[0] == settings
    private = settings.to_url(privacy=True)
    assert "Pa" not in private and "***" in private
    assert SECRET not in repr(settings) and "Pa%3A" not in repr(settings)


def test_minimal_url_defaults() -> None:
    settings, _ = parse_url("mobilgroup://demo:pw@1")
    assert settings.endpoint == DEFAULT_ENDPOINT
    assert settings.phones == () and settings.sender is None and settings.transliterate


def test_from_alias_and_extra_keys() -> None:
    settings, extras = parse_url("mobilgroup://demo:pw@1?from=Shop&overflow=truncate",
                                 extra_keys=frozenset({"overflow"}))
    assert settings.sender == "Shop"
    assert extras == {"overflow": "truncate"}


@pytest.mark.parametrize(("url", "field", "fix"), [
    ("http://demo:pw@1", "url", "mobilgroup://"),
    ("mobilgroup://1", "url", "LOGIN:PASSWORD@USER_ID"),
    ("mobilgroup://demo@1", "url", "LOGIN:PASSWORD@USER_ID"),
    ("mobilgroup://demo:pw@abc", "user_id", "numeric"),
    ("mobilgroup://demo:pw@1?sendr=Shop", "url option sendr", "did you mean sender?"),
    ("mobilgroup://demo:pw@1?zzz=Shop", "url option zzz", "one of"),
    ("mobilgroup://demo:pw@1?sender=Far+Too+Long", "sender", "alias"),
    ("mobilgroup://demo:pw@1?valid=72", "valid", "1 to 48"),
    ("mobilgroup://demo:pw@1?valid=soon", "valid", "number"),
    ("mobilgroup://demo:pw@1?translit=maybe", "translit", "yes or no"),
    ("mobilgroup://demo:pw@1/12", "phones", "country code"),
    ("mobilgroup://demo:pw@1?timeout=0", "timeout", "more than 0"),
    ("mobilgroup://demo:pw@1?retries=99", "retries", "0 to 10"),
])
def test_bad_urls_name_the_field_and_the_fix(url: str, field: str, fix: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url(url)
    assert caught.value.field == field
    assert fix in str(caught.value)
    assert "pw" not in str(caught.value).replace("pw@", "")  # the password never shows


def test_bad_url_error_masks_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url("mobilgroup://demo:TopSecret1@1?bogus=1")
    assert "TopSecret1" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        parse_url("mobilgroup://demo:TopSecret1@notdigits")
    assert "TopSecret1" not in str(caught.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("mobilgroup://a%40b:secret@1/7903?sender=x", "mobilgroup://a%40b:***@1/7903?sender=x"),
    # more than one '@': everything up to the last one is masked, whatever it was
    ("mobilgroup://l:se/cr@et@1?endpoint=http://x@y", "mobilgroup://***@***"),
    ("mobilgroup://demo:v7?fI?m,2iT@1000", "mobilgroup://***@1000"),
    ("mobilgroup://token@1", "mobilgroup://***@1"),
    ("not a url", "not a url"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_env_url_wins() -> None:
    env = {"MOBILGROUP_URL": "mobilgroup://u:p@5?sender=A", "MOBILGROUP_USER_ID": "6",
           "MOBILGROUP_LOGIN": "x", "MOBILGROUP_PASSWORD": "y"}
    assert settings_from_env(env).user_id == "5"


def test_env_parts() -> None:
    settings = settings_from_env({
        "MOBILGROUP_USER_ID": "6", "MOBILGROUP_LOGIN": "valid@username",
        "MOBILGROUP_PASSWORD": "p@ss:word", "MOBILGROUP_SENDER": "Shop",
        "MOBILGROUP_ENDPOINT": "http://127.0.0.1:1/extxml.php"})
    assert (settings.user_id, settings.login, settings.password, settings.sender) == (
        "6", "valid@username", "p@ss:word", "Shop")
    assert settings.endpoint == "http://127.0.0.1:1/extxml.php"


def test_env_missing_names_every_variable() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_from_env({"MOBILGROUP_LOGIN": "x"})
    assert "MOBILGROUP_USER_ID" in str(caught.value)
    assert "MOBILGROUP_PASSWORD" in str(caught.value)
    assert "MOBILGROUP_LOGIN," not in str(caught.value)


def test_settings_with_rechecks() -> None:
    settings = Settings(user_id="1", login="l", password="p")
    with pytest.raises(ConfigurationError, match="sender"):
        settings.with_(sender="not valid!")


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:9/extxml.php", "http://localhost:9/x", "http://[::1]:9/x",
    "https://sms.example.com/extxml.php",
])
def test_allowed_endpoints(endpoint: str) -> None:
    MobilgroupClient("1", "l", "p", endpoint=endpoint).close()


@pytest.mark.parametrize(("endpoint", "problem"), [
    ("http://sms.example.com/extxml.php", "unencrypted"),
    ("http://10.0.0.5/extxml.php", "unencrypted"),
    ("ftp://127.0.0.1/x", "not an http"),
    ("127.0.0.1:8080", "not an http"),
    ("https://user:pw@sms.example.com/", "credentials"),
])
def test_refused_endpoints(endpoint: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        MobilgroupClient("1", "l", "p", endpoint=endpoint)
    assert caught.value.field == "endpoint"
    assert ":pw@" not in str(caught.value)


def test_insecure_http_opt_in() -> None:
    client = MobilgroupClient("1", "l", "p", endpoint="http://sms.example.com/extxml.php",
                              allow_insecure_http=True)
    assert client.endpoint.startswith("http://")
    client.close()


def test_client_repr_hides_password() -> None:
    with MobilgroupClient.from_url("mobilgroup://demo:TopSecret1@1") as client:
        assert "TopSecret1" not in repr(client)
        assert "TopSecret1" not in repr(client.credentials)
        assert "TopSecret1" not in str(vars(client).get("credentials"))


def test_every_unknown_url_option_at_once_each_with_its_likely_meaning() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_url("mobilgroup://demo:pw@1?sendr=Shop&valdi=3&qqqq=1")
    first, *others = (caught.value, *caught.value.also)
    assert [error.field for error in (first, *others)] == [
        "url option sendr", "url option valdi", "url option qqqq"]
    assert str(caught.value).splitlines() == [
        "url option sendr: unknown option; did you mean sender?",
        "also url option valdi: unknown option; did you mean valid?",
        "also " + others[1].describe()]
    assert "one of: allow_insecure_http" in others[1].describe()
