"""Conformance: the same URL, the same MOBILGROUP and the same environment, fed to every adapter
(the Django backend, the logging handler through a real dictConfig, the Apprise plugin through
real Apprise, the CLI, the client), give the same account, endpoint and options."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Callable, Iterator
from typing import Any

import apprise
import pytest

import mobilgroup_backends.apprise  # noqa: F401  (registers mobilgroup://)
from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.apprise import NotifyMobilgroup
from mobilgroup_backends.cli import _client as cli_client
from mobilgroup_backends.cli import _parser, main
from mobilgroup_backends.config import Settings
from mobilgroup_backends.django import SmsBackend
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.logging import SmsHandler

PHONE = "79031234567"
pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")

#: What "the same configuration" means: the account, the endpoint and the options that shape
#: every request.
View = tuple[str, str, str, str | None, float, int, float]


def view_of_settings(settings: Settings) -> View:
    return (settings.user_id, settings.login, settings.endpoint, settings.sender,
            settings.timeout, settings.retries, settings.backoff)


def view_of_client(client: MobilgroupClient) -> View:
    return (client.credentials.user_id, client.credentials.login, client.endpoint, client.sender,
            client.timeout, client.retries, client.backoff)


@pytest.fixture
def accounts(mobilgroup_emulator: Emulator) -> Emulator:
    mobilgroup_emulator.add_account(user_id="4001", login="from-url", password="u@rl/Pw?#1")
    mobilgroup_emulator.add_account(user_id="4002", login="from-setting", password="s:et&Pw2")
    mobilgroup_emulator.add_account(user_id="4003", login="from-env", password="e[nv]Pw3")
    return mobilgroup_emulator


@pytest.fixture
def handler_from_dictconfig() -> Iterator[Callable[[dict[str, Any]], SmsHandler]]:
    made: list[tuple[logging.Logger, SmsHandler]] = []

    def make(options: dict[str, Any]) -> SmsHandler:
        name = f"conformance-{len(made)}"
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"sms": {"class": "mobilgroup_backends.logging.SmsHandler", **options}},
            "loggers": {name: {"handlers": ["sms"], "level": "CRITICAL"}},
        })
        logger = logging.getLogger(name)
        [handler] = logger.handlers
        assert isinstance(handler, SmsHandler)
        made.append((logger, handler))
        return handler

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)
        handler.close()


def every_adapter_with_a_url(url: str, make_handler: Callable[[dict[str, Any]], SmsHandler],
                             ) -> dict[str, View]:
    handler = make_handler({"url": url})
    assert handler._settings is not None
    plugin = apprise.Apprise.instantiate(url)
    assert isinstance(plugin, NotifyMobilgroup)
    cli = cli_client(_parser().parse_args(["balance", "--url", url]))
    client = MobilgroupClient.from_url(url)
    views = {
        "django": view_of_settings(SmsBackend(url=url).config.settings),
        "logging": view_of_settings(handler._settings),
        "apprise": view_of_settings(plugin.settings),
        "apprise client": view_of_client(plugin.client),
        "cli": view_of_client(cli),
        "client": view_of_client(client),
    }
    cli.close()
    client.close()
    return views


def test_the_same_url_gives_every_adapter_the_same_configuration(
        accounts: Emulator, settings: Any, monkeypatch: pytest.MonkeyPatch,
        handler_from_dictconfig: Callable[[dict[str, Any]], SmsHandler]) -> None:
    # Apprise's own arguments ride along, as NotifyMobilgroup.url() prints them.
    url = accounts.url(PHONE, account="4001", sender="Shop", timeout=7, retries=2, backoff=0.05,
                       format="text", overflow="split", rto=4, cto=4, emojis="no")
    # Weaker layers that must not leak into the account, and fill only what the URL leaves out.
    settings.MOBILGROUP = {"URL": accounts.url(account="4002"), "SENDER": "Other",
                           "REGION": "KZ", "ALERT_PHONES": [PHONE]}
    monkeypatch.setenv("MOBILGROUP_URL", accounts.url(account="4003", sender="EnvShop"))
    views = every_adapter_with_a_url(url, handler_from_dictconfig)
    expected = ("4001", "from-url", accounts.endpoint, "Shop", 7.0, 2, 0.05)
    assert views == dict.fromkeys(views, expected)

    # The URL leaves the region out: the adapters that read MOBILGROUP take it from there.
    assert SmsBackend(url=url).config.settings.region == "KZ"
    plugin = apprise.Apprise.instantiate(url)
    assert isinstance(plugin, NotifyMobilgroup) and plugin.settings.region == "KZ"


def test_the_same_setting_and_environment_give_every_adapter_the_same_configuration(
        accounts: Emulator, settings: Any, monkeypatch: pytest.MonkeyPatch,
        handler_from_dictconfig: Callable[[dict[str, Any]], SmsHandler]) -> None:
    settings.MOBILGROUP = {"URL": accounts.url(account="4002", sender="SetShop"),
                           "TIMEOUT": 6, "RETRIES": 0, "BACKOFF": 0.2,
                           "ALERT_PHONES": [PHONE], "LONG_MESSAGES": "truncate"}
    monkeypatch.setenv("MOBILGROUP_URL", accounts.url(account="4003"))
    monkeypatch.setenv("MOBILGROUP_SENDER", "EnvShop")
    handler = handler_from_dictconfig({})
    assert handler._settings is not None
    expected = ("4002", "from-setting", accounts.endpoint, "SetShop", 6.0, 0, 0.2)
    assert view_of_settings(SmsBackend().config.settings) == expected
    assert view_of_settings(handler._settings) == expected

    # Without Django's setting, the environment alone: every adapter, the CLI and the client.
    del settings.MOBILGROUP
    monkeypatch.setenv("MOBILGROUP_TIMEOUT", "8")
    monkeypatch.setenv("MOBILGROUP_RETRIES", "1")
    monkeypatch.setenv("MOBILGROUP_BACKOFF", "0.1")
    monkeypatch.setenv("MOBILGROUP_ALERT_PHONES", PHONE)
    handler = handler_from_dictconfig({})
    assert handler._settings is not None
    cli = cli_client(_parser().parse_args(["balance"]))
    client = MobilgroupClient.from_env()
    expected = ("4003", "from-env", accounts.endpoint, "EnvShop", 8.0, 1, 0.1)
    assert view_of_settings(SmsBackend().config.settings) == expected
    assert view_of_settings(handler._settings) == expected
    assert view_of_client(cli) == expected
    assert view_of_client(client) == expected
    cli.close()
    client.close()


def test_an_apprise_printed_url_works_as_mobilgroup_url(
        accounts: Emulator, settings: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        handler_from_dictconfig: Callable[[dict[str, Any]], SmsHandler]) -> None:
    plugin = apprise.Apprise.instantiate(
        accounts.url(PHONE, account="4001", sender="Shop", valid=4, timeout=4, backoff=1))
    assert isinstance(plugin, NotifyMobilgroup)
    printed = plugin.url()
    assert "format=text" in printed and "overflow=split" in printed and "retry=" in printed
    monkeypatch.setenv("MOBILGROUP_URL", printed)
    del settings.MOBILGROUP

    expected = view_of_settings(plugin.settings)
    with MobilgroupClient.from_env() as client:
        assert view_of_client(client) == expected
    assert view_of_settings(SmsBackend().config.settings) == expected
    handler = handler_from_dictconfig({})
    assert handler._settings is not None and view_of_settings(handler._settings) == expected
    assert handler.phones == (PHONE,)

    assert main(["send", PHONE, "--text", "from the printed URL", "--json"]) == 0
    message = accounts.outbox[-1]
    assert (message.user_id, message.sender, message.valid_hours) == ("4001", "Shop", 4)
    capsys.readouterr()
