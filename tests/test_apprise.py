"""The Apprise plugin through the real Apprise library, against the emulator over HTTP.

Every test adds a ``mobilgroup://`` URL to a real ``apprise.Apprise`` (or a real config file) and
checks what the emulator received, and what Apprise's logger said when it failed.
"""

from __future__ import annotations

import inspect
import logging
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apprise
import pytest
from apprise.exception import AppriseImproperlyConfigured
from apprise.manager_plugins import NotificationManager
from apprise.plugins.smsc import NotifySMSC

from mobilgroup_backends.apprise import DEFAULT_BACKOFF, DEFAULT_RETRIES, NotifyMobilgroup, register
from mobilgroup_backends.emulator import Emulator
from tests.helpers import closed_port

PASSWORD = "demo-password"
PHONE = "79991234567"
LONG_TEXT = " ".join(f"word{i:03d}" for i in range(60))  # 479 characters, many words


@pytest.fixture
def warnings_(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Apprise's log at DEBUG; afterwards, no record anywhere may show the password."""
    caplog.set_level(logging.DEBUG, logger="apprise")
    caplog.set_level(logging.DEBUG, logger="mobilgroup_backends")
    yield caplog
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()


def apprise_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "apprise" and r.levelno >= logging.WARNING]


def plugin_for(url: str) -> NotifyMobilgroup:
    plugin = apprise.Apprise.instantiate(url)
    assert isinstance(plugin, NotifyMobilgroup), url
    return plugin


# --- registration -------------------------------------------------------------------------------


def test_import_registers_the_schema_once() -> None:
    manager = NotificationManager()
    assert manager["mobilgroup"] is NotifyMobilgroup
    assert register() is False  # already there: nothing changes
    assert manager["mobilgroup"] is NotifyMobilgroup
    assert apprise.Apprise.instantiate("mobilgroup://demo:pw@1000/79991234567") is not None


def _python(code: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_reload_replaces_the_class_and_a_foreign_plugin_is_left_alone() -> None:
    out = _python("""
        import importlib, logging
        import mobilgroup_backends.apprise as m
        from apprise.manager_plugins import NotificationManager
        first = m.NotifyMobilgroup
        importlib.reload(m)
        manager = NotificationManager()
        print(manager["mobilgroup"] is m.NotifyMobilgroup, first is not m.NotifyMobilgroup)
        print(m.register())
    """).stdout
    assert out.splitlines() == ["True True", "False"]
    done = _python("""
        import logging
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        from apprise.plugins.smsc import NotifySMSC
        from apprise.manager_plugins import NotificationManager
        class NotifyOther(NotifySMSC):
            secure_protocol = "mobilgroup"
        NotificationManager().add(NotifyOther, schemas={"mobilgroup"})
        import mobilgroup_backends.apprise as m
        print(NotificationManager()["mobilgroup"].__name__)
    """)
    assert done.stdout.strip() == "NotifyOther"
    assert "mobilgroup:// is already handled by __main__.NotifyOther" in done.stderr


def test_importing_the_package_does_not_import_apprise() -> None:
    out = _python("""
        import sys, mobilgroup_backends.apprise_plugin as p
        p.plugin_path(); p.default_plugin_folder()
        print("apprise" in sys.modules)
    """).stdout
    assert out.strip() == "False"


# --- sending ------------------------------------------------------------------------------------


def test_one_phone(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    alerts = apprise.Apprise()
    assert alerts.add(mobilgroup_emulator.url(PHONE))
    assert alerts.notify(body="disk full on db-1")
    assert mobilgroup_emulator.outbox.wait_for(1)
    [message] = mobilgroup_emulator.outbox
    assert message.phones == (PHONE,)
    assert message.text == "disk full on db-1"
    assert message.transliterate is True
    assert message.sender is None
    assert apprise_warnings(warnings_) == []


def test_several_phones_go_in_one_request(mobilgroup_emulator: Emulator) -> None:
    url = mobilgroup_emulator.url(PHONE, "+7 (999) 000-00-01", to="79990000002,79990000003", sender="Shop",
                      valid=6)
    alerts = apprise.Apprise()
    assert alerts.add(url)
    assert len(alerts) == 1  # one gateway request
    assert alerts.notify(body="deploy finished")
    [message] = mobilgroup_emulator.outbox
    assert message.phones == (PHONE, "79990000001", "79990000002", "79990000003")
    assert message.sender == "Shop"
    assert message.valid_hours == 6
    assert len(mobilgroup_emulator.requests) == 1


def test_phones_beyond_the_batch_size_take_more_requests(mobilgroup_emulator: Emulator) -> None:
    phones = [f"7999000000{i}" for i in range(5)]
    plugin = plugin_for(mobilgroup_emulator.url(*phones))
    plugin.default_batch_size = 2
    assert len(plugin) == 3
    assert plugin.notify(body="batched")
    assert [m.phones for m in mobilgroup_emulator.outbox] == [tuple(phones[0:2]), tuple(phones[2:4]),
                                                  tuple(phones[4:])]
    assert len({m.request_id for m in mobilgroup_emulator.outbox}) == 3


def test_invalid_phones_are_dropped_with_a_warning(mobilgroup_emulator: Emulator,
                                                   warnings_: pytest.LogCaptureFixture) -> None:
    plugin = plugin_for(mobilgroup_emulator.url(PHONE, "12345", to="not-a-phone"))
    assert plugin.targets == [PHONE]
    [warning] = apprise_warnings(warnings_)
    assert "'12345'" in warning and "'not-a-phone'" in warning
    assert plugin.notify(body="still sent")
    assert mobilgroup_emulator.outbox[0].phones == (PHONE,)


def test_no_valid_phone_is_a_configuration_error(mobilgroup_emulator: Emulator,
                                                 warnings_: pytest.LogCaptureFixture) -> None:
    assert apprise.Apprise().add(mobilgroup_emulator.url("12345")) is False
    assert apprise.Apprise().add(mobilgroup_emulator.url()) is False
    with pytest.raises(AppriseImproperlyConfigured, match="no valid phone"):
        NotifyMobilgroup(**(NotifyMobilgroup.parse_url(mobilgroup_emulator.url("123")) or {}))
    assert any("no valid phone" in w for w in apprise_warnings(warnings_))


@pytest.mark.parametrize(("url", "problem"), [
    ("mobilgroup://demo@1000/79991234567", "the password is missing"),
    ("mobilgroup://:pw@1000/79991234567", "the login is missing"),
    ("mobilgroup://demo:pw@/79991234567", "user_id"),
    ("mobilgroup://demo:pw@abc/79991234567", "user_id"),
    ("mobilgroup://demo:pw@1000/79991234567?sender=Far-too-long-alias", "sender"),
    ("mobilgroup://demo:pw@1000/79991234567?valid=49", "valid=49: out of range"),
    ("mobilgroup://demo:pw@1000/79991234567?valid=soon", "valid"),
    ("mobilgroup://demo:pw@1000/79991234567?translit=maybe", "translit"),
    ("mobilgroup://demo:pw@1000/79991234567?endpoint=ftp%3A%2F%2F127.0.0.1%2Fx", "endpoint"),
    ("mobilgroup://demo:pw@1000/79991234567?retries=11", "retries"),
    ("mobilgroup://demo:pw@1000/79991234567?timeout=0", "timeout"),
])
def test_bad_settings_are_refused_when_the_url_is_added(
        url: str, problem: str, warnings_: pytest.LogCaptureFixture) -> None:
    url = url.replace(":pw@", f":{PASSWORD}@")
    assert apprise.Apprise().add(url) is False
    assert any(problem in w for w in apprise_warnings(warnings_)), apprise_warnings(warnings_)


def test_one_client_and_one_connection_per_plugin(mobilgroup_emulator: Emulator) -> None:
    plugin = plugin_for(mobilgroup_emulator.url(PHONE, retries=1, backoff=0.05))
    client = plugin.client
    assert client is plugin.client
    assert (client.retries, client.backoff) == (1, 0.05)
    for i in range(3):
        assert plugin.notify(body=f"alert {i}")
    assert plugin.client is client
    assert [m.text for m in mobilgroup_emulator.outbox] == ["alert 0", "alert 1", "alert 2"]
    assert mobilgroup_emulator.connections == 1  # the keep-alive session is reused


def test_default_retries_timeout_and_throttle_are_small(mobilgroup_emulator: Emulator) -> None:
    plugin = plugin_for(mobilgroup_emulator.url(PHONE))
    assert (plugin.client.retries, plugin.client.backoff) == (DEFAULT_RETRIES, DEFAULT_BACKOFF)
    assert DEFAULT_RETRIES <= 3 and DEFAULT_BACKOFF <= 0.5
    assert plugin.client.timeout == 4.0  # Apprise's own socket timeouts
    assert plugin_for(mobilgroup_emulator.url(PHONE, rto=7)).client.timeout == 7.0
    assert plugin_for(mobilgroup_emulator.url(PHONE, timeout=2.5)).client.timeout == 2.5
    assert NotifyMobilgroup.request_rate_per_sec <= 0.5
    started = time.monotonic()
    assert plugin.notify(body=LONG_TEXT)  # four SMS
    assert len(mobilgroup_emulator.outbox) == 4
    assert time.monotonic() - started < 2.0


# --- failures -----------------------------------------------------------------------------------


def _fails_with(url: str, caplog: pytest.LogCaptureFixture, *needles: str,
                body: str = "alert") -> str:
    alerts = apprise.Apprise()
    assert alerts.add(url)
    assert not alerts.notify(body=body)
    [warning] = [w for w in apprise_warnings(caplog) if "Failed to send Mobilgroup SMS" in w]
    for needle in needles:
        assert needle in warning, warning
    return warning


def test_wrong_password(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    url = mobilgroup_emulator.url(PHONE).replace(f":{PASSWORD}@", ":wrong-password@")
    warning = _fails_with(url, warnings_, "error 4", "wrong login and/or password")
    assert "wrong-password" not in warning
    assert not mobilgroup_emulator.outbox


def test_blocked_account(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.accounts["1000"].blocked = True
    _fails_with(mobilgroup_emulator.url(PHONE), warnings_, "error 5", "blocked")


def test_insufficient_funds(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.accounts["1000"].balance = Decimal(1)  # enough for one recipient, not two
    _fails_with(mobilgroup_emulator.url(PHONE, "79990000001"), warnings_, "error 9", "not enough money",
                "top up")
    assert not mobilgroup_emulator.outbox


def test_too_long_with_overflow_upstream_is_not_sent(mobilgroup_emulator: Emulator,
                                                     warnings_: pytest.LogCaptureFixture) -> None:
    _fails_with(mobilgroup_emulator.url(PHONE, overflow="upstream"), warnings_, "479 characters",
                "error 10", "overflow=split", body=LONG_TEXT)
    assert not mobilgroup_emulator.requests  # refused before it could cost anything


def test_gateway_refusing_the_length_names_code_10(mobilgroup_emulator: Emulator,
                                                   warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.faults.next("body", body=(
        b'<?xml version="1.0" encoding="windows-1251"?>\n<response><result>ERROR</result>'
        b"<error>10</error></response>"))
    _fails_with(mobilgroup_emulator.url(PHONE), warnings_, "error 10",
                "exceeds the allowed number of characters")


def test_unreachable_gateway(warnings_: pytest.LogCaptureFixture) -> None:
    endpoint = quote(f"http://127.0.0.1:{closed_port()}/extxml.php", safe="")
    url = f"mobilgroup://demo:{PASSWORD}@1000/{PHONE}?endpoint={endpoint}&backoff=0.01"
    started = time.monotonic()
    _fails_with(url, warnings_, "network error", "connection refused")
    assert time.monotonic() - started < 5


def test_timeout(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.faults.next("delay", seconds=1.5)
    _fails_with(mobilgroup_emulator.url(PHONE, timeout=0.3, retries=0), warnings_, "timeout", "0.3 s")


def test_garbage_answer(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.faults.next("garbage", count=3)
    _fails_with(mobilgroup_emulator.url(PHONE, backoff=0.01), warnings_, "protocol error")
    assert len(mobilgroup_emulator.requests) == 3  # the first try and two retries, then it gave up


def test_http_500(mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.faults.next("http_500", count=3)
    _fails_with(mobilgroup_emulator.url(PHONE, backoff=0.01), warnings_, "HTTP error", "500")


def test_lost_answer_is_retried_without_sending_twice(mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("close_after")  # processed, but the answer never arrives
    alerts = apprise.Apprise()
    alerts.add(mobilgroup_emulator.url(PHONE, backoff=0.01))
    assert alerts.notify(body="exactly once")
    assert [m.text for m in mobilgroup_emulator.outbox] == ["exactly once"]


def test_apprise_retry_reuses_the_request_id(mobilgroup_emulator: Emulator,
                                             warnings_: pytest.LogCaptureFixture) -> None:
    # The client gives up at once (retries=0); Apprise's own retry=1 sends again, with the same
    # request id, and the gateway's "already sent" answer counts as delivered.
    mobilgroup_emulator.faults.next("close_after")
    alerts = apprise.Apprise()
    assert alerts.add(mobilgroup_emulator.url(PHONE, retries=0, retry=1, wait=0))
    assert alerts.notify(body="once only")
    assert [m.text for m in mobilgroup_emulator.outbox] == ["once only"]
    ids = {r.request_id for r in mobilgroup_emulator.requests}
    assert len(ids) == 1 and len(mobilgroup_emulator.requests) == 2
    assert any("accepted earlier" in r.getMessage() for r in warnings_.records)


def test_a_refusal_that_will_not_mend_is_not_retried(
        mobilgroup_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    mobilgroup_emulator.accounts["1000"].balance = Decimal(0)
    alerts = apprise.Apprise()
    assert alerts.add(mobilgroup_emulator.url(PHONE, retry=2, wait=0))
    assert not alerts.notify(body="no money")
    assert [r.error for r in mobilgroup_emulator.requests] == [9]  # Apprise's retries spent no request on it
    said = [r.getMessage() for r in warnings_.records]
    assert any("error 9" in line and "Not retried" in line for line in said)
    assert sum("not retried:" in line for line in said) == 2


def test_nothing_sent_is_retried_by_apprise(mobilgroup_emulator: Emulator) -> None:
    # A connection refused (nothing sent: the verdict is "retry"), then the gateway is back.
    mobilgroup_emulator.refuse_connections(0.3)
    alerts = apprise.Apprise()
    assert alerts.add(mobilgroup_emulator.url(PHONE, retries=0, retry=3, wait=0.2))
    assert alerts.notify(body="back again")
    assert [m.text for m in mobilgroup_emulator.outbox] == ["back again"]


# --- text ---------------------------------------------------------------------------------------


def test_title_is_folded_into_the_body(mobilgroup_emulator: Emulator) -> None:
    alerts = apprise.Apprise()
    alerts.add(mobilgroup_emulator.url(PHONE))
    assert alerts.notify(title="db-1", body="disk full")
    assert [m.text for m in mobilgroup_emulator.outbox] == ["db-1\ndisk full"]


def test_overflow_split_sends_parts_in_order(mobilgroup_emulator: Emulator) -> None:
    alerts = apprise.Apprise()
    alerts.add(mobilgroup_emulator.url(PHONE))
    assert alerts.notify(title="report", body=LONG_TEXT)
    texts = [m.text for m in mobilgroup_emulator.outbox]
    assert len(texts) == 4
    assert all(len(t) <= 140 for t in texts)
    assert texts[0].startswith("report\nword000 ")
    assert " ".join(texts).replace("\n", " ") == f"report {LONG_TEXT}"
    assert [m.request_id for m in mobilgroup_emulator.outbox] \
        == [r.request_id for r in mobilgroup_emulator.requests]


def test_split_without_transliteration_uses_64_characters(mobilgroup_emulator: Emulator) -> None:
    plugin = plugin_for(mobilgroup_emulator.url(PHONE, translit="no"))
    assert plugin.body_maxlen == 64
    assert plugin_for(mobilgroup_emulator.url(PHONE)).body_maxlen == 140
    text = "Внимание: " + " ".join(["диск"] * 30)
    assert plugin.notify(body=text)
    texts = [m.text for m in mobilgroup_emulator.outbox]
    assert len(texts) == 3 and all(len(t) <= 64 for t in texts)
    assert " ".join(texts) == text
    assert all(m.transliterate is False for m in mobilgroup_emulator.outbox)


def test_overflow_truncate_sends_one_sms(mobilgroup_emulator: Emulator) -> None:
    alerts = apprise.Apprise()
    alerts.add(mobilgroup_emulator.url(PHONE, overflow="truncate"))
    assert alerts.notify(body=LONG_TEXT)
    [message] = mobilgroup_emulator.outbox
    assert len(message.text) <= 140 and message.text.endswith("…")
    assert message.text.startswith("word000 word001")


def test_emoji_is_replaced_not_fatal(mobilgroup_emulator: Emulator) -> None:
    alerts = apprise.Apprise()
    alerts.add(mobilgroup_emulator.url(PHONE))
    assert alerts.notify(body="db-1 🔥 диск заполнен ✓")
    assert [m.text for m in mobilgroup_emulator.outbox] == ["db-1 ? диск заполнен ?"]


# --- URLs ---------------------------------------------------------------------------------------


def test_privacy_url_masks_the_password(mobilgroup_emulator: Emulator) -> None:
    plugin = plugin_for(mobilgroup_emulator.url(PHONE))
    private = plugin.url(privacy=True)
    assert PASSWORD not in private
    assert private.startswith("mobilgroup://demo:****@1000/79991234567?")
    assert PASSWORD in plugin.url()


def test_url_round_trips_every_option(mobilgroup_emulator: Emulator) -> None:
    account = mobilgroup_emulator.add_account(user_id="2000", login="valid@username",
                                  password="p@ss:w/rd?&=%# x")
    url = mobilgroup_emulator.url("+7 999 123-45-67", account="2000", to="79990000001;79990000002",
                      **{"from": "My Shop"}, valid=12, translit="no", timeout=3,
                      retries=1, backoff=0.1, overflow="truncate", verify="no")
    plugin = plugin_for(url)
    assert (plugin.user, plugin.password) == ("valid@username", account.password)
    assert plugin.targets == [PHONE, "79990000001", "79990000002"]
    assert plugin.sender == "My Shop"
    assert (plugin.valid_hours, plugin.transliterate, plugin.endpoint) == (
        12, False, mobilgroup_emulator.endpoint)
    assert (plugin.timeout, plugin.settings.retries, plugin.settings.backoff) == (3.0, 1, 0.1)
    assert plugin.overflow_mode.value == "truncate" and plugin.verify_certificate is False

    again = plugin_for(plugin.url())
    assert again.url() == plugin.url()
    assert again.settings == plugin.settings
    assert (again.targets, again.overflow_mode) == (plugin.targets, plugin.overflow_mode)
    assert again.notify(body="round trip")
    [message] = mobilgroup_emulator.outbox
    assert (message.user_id, message.sender, message.valid_hours) == ("2000", "My Shop", 12)
    assert "p%40ss" not in plugin.url(privacy=True) and "****" in plugin.url(privacy=True)


def test_defaults_leave_the_url_short(mobilgroup_emulator: Emulator) -> None:
    url = plugin_for(f"mobilgroup://demo:{PASSWORD}@1000/{PHONE}").url()
    # Apprise's own defaults (2 retries, its 4 s socket timeouts, long texts split, emoji
    # replaced) are printed, so that the URL means the same as MOBILGROUP_URL, where their
    # absence means the table's 3, 10 s, error and no.
    assert url.startswith(f"mobilgroup://demo:{PASSWORD}@1000/{PHONE}?timeout=4&retries=2&"
                          "long_messages=split&replace_unencodable=yes&overflow=split&")
    for option in ("sender=", "valid=", "translit=", "endpoint=", "backoff=", "region=",
                   "allow_insecure_http="):
        assert option not in url


def test_url_identifier_is_the_account_not_the_targets(mobilgroup_emulator: Emulator) -> None:
    one = plugin_for(mobilgroup_emulator.url(PHONE))
    other_phones = plugin_for(mobilgroup_emulator.url("79990000001", sender="Shop"))
    other_login = plugin_for(mobilgroup_emulator.url(PHONE).replace("demo:", "ops:"))
    assert one.url_id() == other_phones.url_id()
    assert one.url_id() != other_login.url_id()
    assert PHONE not in repr(one.url_identifier)


def test_unknown_option_is_named_but_not_its_value(mobilgroup_emulator: Emulator,
                                                   warnings_: pytest.LogCaptureFixture) -> None:
    assert apprise.Apprise().add(mobilgroup_emulator.url(PHONE, sendr="Sup3rSecretValue"))
    [warning] = apprise_warnings(warnings_)
    assert "sendr" in warning and "Sup3rSecretValue" not in warning


# --- TLS ----------------------------------------------------------------------------------------


def test_untrusted_certificate_fails_even_with_verify_no(
        tls_emulator: Emulator, warnings_: pytest.LogCaptureFixture) -> None:
    _fails_with(tls_emulator.url(PHONE), warnings_, "TLS")
    alerts = apprise.Apprise()
    assert alerts.add(tls_emulator.url(PHONE, verify="no"))
    assert not alerts.notify(body="the password must not go to an unchecked server")
    assert "ignores verify=no" in warnings_.text
    assert not tls_emulator.outbox


def test_private_ca_trusted_through_the_environment(
        tls_emulator: Emulator, ca_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    alerts = apprise.Apprise()
    assert alerts.add(tls_emulator.url(PHONE))
    assert alerts.notify(body="trusted through REQUESTS_CA_BUNDLE")
    assert [m.text for m in tls_emulator.outbox] == ["trusted through REQUESTS_CA_BUNDLE"]


# --- config files -------------------------------------------------------------------------------


def test_yaml_config_file(mobilgroup_emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "alerts.yml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        urls:
          - mobilgroup://demo:{PASSWORD}@1000:
            - to: {PHONE}, 79990000001
              from: Ops
              valid: 2
              endpoint: {mobilgroup_emulator.endpoint}
              tag: ops
            - to: 79990000009
              endpoint: {mobilgroup_emulator.endpoint}
              translit: no
              tag: dev
        """), encoding="utf-8")
    config = apprise.AppriseConfig()
    assert config.add(str(path))
    alerts = apprise.Apprise()
    alerts.add(config)
    assert len(alerts) == 2
    assert alerts.notify(body="from yaml", tag="ops")
    [message] = mobilgroup_emulator.outbox
    assert (message.phones, message.sender, message.valid_hours, message.transliterate) == (
        (PHONE, "79990000001"), "Ops", 2, True)
    assert alerts.notify(body="dev only", tag="dev")
    dev = mobilgroup_emulator.outbox[1]
    assert dev.phones == ("79990000009",) and not dev.transliterate


def test_text_config_file(mobilgroup_emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "alerts.txt"
    path.write_text(f"# on-call phones\nops={mobilgroup_emulator.url(PHONE, sender='Ops')}\n"
                    f"dev={mobilgroup_emulator.url('79990000009')}\n", encoding="utf-8")
    config = apprise.AppriseConfig(paths=[str(path)])
    alerts = apprise.Apprise()
    alerts.add(config)
    assert alerts.notify(body="from text config", tag="ops")
    assert [(m.phones, m.sender) for m in mobilgroup_emulator.outbox] == [((PHONE,), "Ops")]


# --- details ------------------------------------------------------------------------------------


_VALID_TYPE = re.compile(r"^((choice|list):)?(string|bool|int|float)$")
_TEMPLATE_TOKEN = re.compile(r"\{([^}]+)\}")


def check_details(entry: dict[str, object], plugin: type) -> None:
    """The consistency rules Apprise holds its own plugins to (tokens, args, templates and
    ``__init__`` agree), so ``apprise --details`` and URL builders describe it correctly."""
    details = entry["details"]
    assert isinstance(details, dict)
    tokens, args = details["tokens"], details["args"]
    mapped: set[str] = set()
    for section in ("tokens", "args", "kwargs"):
        for key, arg in details[section].items():
            if "alias_of" in arg:
                assert section != "tokens"
                target = arg["alias_of"]
                assert target != key and (target in tokens or target in args), key
                continue
            assert isinstance(arg["name"], str) and arg["name"], key
            assert _VALID_TYPE.match(arg["type"]), key
            if arg["type"].endswith("bool"):
                assert isinstance(arg.get("default"), bool), key
            if "min" in arg or "max" in arg:
                assert arg["type"].endswith(("int", "float")), key
            if "min" in arg and "max" in arg:
                assert arg["min"] < arg["max"], key
            if "regex" in arg:
                pattern = arg["regex"][0]
                re.compile(pattern)
                assert pattern.startswith("^") and pattern.endswith("$"), key
            if arg["type"].startswith("list"):
                assert arg.get("delim"), key
            if arg["type"].startswith("choice"):
                assert arg["values"], key
                if "default" in arg:
                    assert arg["default"] in arg["values"], key
            mapped.add(arg.get("map_to", key))
    init_args = set(inspect.signature(plugin).parameters) - {"kwargs"}
    generic = {"user", "password", "port", "host", "schema", "fullpath", "format", "overflow",
               "verify", "cto", "rto", "emojis", "store", "tz", "retry", "wait", "optional",
               "redirect", "tag"}
    assert init_args <= mapped, init_args - mapped
    assert mapped <= init_args | generic, mapped - init_args - generic
    for template in details["templates"]:
        assert template.count("{") == template.count("}")
        for name in _TEMPLATE_TOKEN.findall(template):
            assert name in tokens, name
    required = {k for k, v in tokens.items() if v.get("required") and "alias_of" not in v}
    used = {n for t in details["templates"] for n in _TEMPLATE_TOKEN.findall(t)}
    assert required <= used


def _entry(schema: str) -> dict[str, object]:
    for entry in apprise.Apprise().details(show_requirements=True, show_disabled=True)["schemas"]:
        if schema in (entry["secure_protocols"] or ()) or schema in (entry["protocols"] or ()):
            return dict(entry)
    raise AssertionError(f"{schema}:// is not in Apprise's details")


def test_details_describe_the_plugin_consistently() -> None:
    check_details(_entry("smsc"), NotifySMSC)  # the same rules hold for Apprise's own SMS plugin
    entry = _entry("mobilgroup")
    check_details(entry, NotifyMobilgroup)
    assert entry["service_name"] == "Mobilgroup SMS"
    assert entry["enabled"] is True
    details = entry["details"]
    assert isinstance(details, dict)
    assert list(details["templates"]) == ["{schema}://{user}:{password}@{user_id}/{targets}"]
    assert details["tokens"]["password"]["private"] is True
    assert details["args"]["overflow"]["default"] == "split"
    assert details["args"]["translit"]["default"] is True
    assert {"sender", "from", "to", "valid", "translit", "endpoint", "timeout", "retries",
            "backoff"} <= set(details["args"])


def test_details_check_catches_a_mismatch() -> None:
    class NotifyBroken(NotifyMobilgroup):  # an __init__ argument no token or arg describes
        def __init__(self, surprise: str | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    with pytest.raises(AssertionError):
        check_details(_entry("mobilgroup"), NotifyBroken)
