"""One URL, every sending path, the same message on the wire.

The same ``mobilgroup://`` URL, with every message setting of the option table set away from its
default, goes through each path; what the emulator received is compared field by field. Each
setting is chosen so that the default would show on the wire, or refuse the message outright:
a BY national number (``region``), a Unicode text (``translit=no``), a text over the limit
(``long_messages``), an emoji (``replace_unencodable``).

Adding a setting to the option table fails ``test_every_message_setting_of_the_table_is_checked``
until it is given a URL value and an expectation on the wire here (or named as one that never
reaches the wire), and then every path must carry it. A path is a function in :data:`PATHS`;
the Django and Celery paths add themselves the same way.
"""

from __future__ import annotations

import json
import logging
import logging.config
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apprise
import pytest

import mobilgroup_backends.apprise  # noqa: F401 - registers mobilgroup:// with Apprise
from mobilgroup_backends import MobilgroupClient, Outgoing
from mobilgroup_backends.config import OPTIONS
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.emulator.records import OutboxMessage
from tests.conftest import RunCommand

PHONE = "8 029 123-45-67"  # a national number of Belarus: only region=BY reads it
TEXT = "Привет 👍 " + "ещё " * 20  # 88 characters, an emoji among them
SCHEDULE = "2026-05-04 15:30"

#: Every message setting of the option table: its value in the URL, and what the gateway must
#: then receive, as (field of the emulator's outbox message, value).
URL_VALUES: dict[str, tuple[str, str, Any]] = {
    "sender": ("Ops", "sender", "Ops"),
    "transliterate": ("no", "transliterate", False),
    "valid_hours": ("24", "valid_hours", 24),
    "region": ("BY", "phones", ("375291234567",)),
    # Cut to the 64 characters of a Unicode SMS, ending in an ellipsis (the default refuses it).
    "long_messages": ("truncate", "text", "Привет ? ещё ещё ещё ещё ещё ещё ещё ещё ещё ещё ещё "
                                          "ещё ещё ещ…"),
    # The emoji goes out as '?' (the default refuses it): see the text above.
    "replace_unencodable": ("yes", "text", None),
}
#: Settings that never shape a message: the account, where and how to reach the gateway, and
#: the alert recipients (the paths that use them put them in the URL).
NOT_ON_THE_WIRE = {"user_id", "login", "password", "endpoint", "timeout", "retries", "backoff",
                   "deadline", "allow_insecure_http", "phones"}


@dataclass(frozen=True)
class Wire:
    """What a path gets: the emulator, the URL with every message setting (and, for the paths
    that take recipients from it, the phone), the phone, the text, and a folder of its own."""

    emulator: Emulator
    url: str
    url_with_phone: str
    folder: Path
    mobilgroup: RunCommand


#: A path sends TEXT to PHONE through one adapter, with the schedule when it takes one, and
#: says whether it did (a path that takes none sends now).
SendPath = Callable[[Wire], bool]


def client_from_url(wire: Wire) -> bool:
    with MobilgroupClient.from_url(wire.url) as client:
        client.send(PHONE, TEXT, schedule=SCHEDULE)
    return True


def client_from_env(wire: Wire) -> bool:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOBILGROUP_URL", wire.url)
        client = MobilgroupClient.from_env()
    with client:
        client.send(PHONE, TEXT, schedule=SCHEDULE)
    return True


def client_prepared_and_stored(wire: Wire) -> bool:
    with MobilgroupClient.from_url(wire.url) as client:
        stored = json.dumps(client.prepare(PHONE, TEXT, schedule=SCHEDULE).to_dict())
        client.send_prepared(Outgoing.from_dict(json.loads(stored)))
    return True


def command_send(wire: Wire) -> bool:
    done = wire.mobilgroup("send", PHONE, "--text", TEXT, "--schedule", SCHEDULE, url=wire.url)
    assert done.returncode == 0, done.stderr
    return True


def command_mailing(wire: Wire) -> bool:
    (wire.folder / "people.csv").write_text(f"phone;name\n{PHONE};Анна\n", encoding="utf-8")
    done = wire.mobilgroup("mailing", "send", "people.csv", "--text", TEXT, "--schedule",
                           SCHEDULE, url=wire.url, cwd=wire.folder)
    assert done.returncode == 0, done.stderr
    return True


def apprise_notify(wire: Wire) -> bool:
    alerts = apprise.Apprise()
    assert alerts.add(wire.url_with_phone)
    assert alerts.notify(body=TEXT)
    return False


def logging_dictconfig(wire: Wire) -> bool:
    name = "wire-conformance.alerts"
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False, "incremental": False,
        "formatters": {"bare": {"format": "%(message)s"}},
        "handlers": {"sms": {"class": "mobilgroup_backends.logging.SmsHandler",
                             "url": wire.url_with_phone, "formatter": "bare"}},
        "loggers": {name: {"handlers": ["sms"], "propagate": False, "level": "CRITICAL"}},
    })
    logger = logging.getLogger(name)
    try:
        logger.critical(TEXT)
        for handler in logger.handlers:
            handler.flush()
    finally:
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
            handler.close()
    return False


PATHS: list[SendPath] = [client_from_url, client_from_env, client_prepared_and_stored,
                         command_send, command_mailing, apprise_notify, logging_dictconfig]


def expected() -> dict[str, Any]:
    fields = {field: value for _, field, value in URL_VALUES.values() if value is not None}
    assert "?" in fields["text"] and "👍" in TEXT  # what replace_unencodable is seen by
    return fields


def test_every_message_setting_of_the_table_is_checked() -> None:
    in_settings = {option.name for option in OPTIONS if option.in_settings}
    assert in_settings - NOT_ON_THE_WIRE == set(URL_VALUES), textwrap.dedent("""
        A setting of the option table is neither checked on the wire nor named as one that never
        reaches it: give it a URL value and what the gateway must receive in URL_VALUES.""")
    assert not NOT_ON_THE_WIRE & set(URL_VALUES)


@pytest.mark.usefixtures("no_mobilgroup_environment")
@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.__name__)
def test_the_same_url_puts_the_same_message_on_the_wire(
        path: SendPath, mobilgroup_emulator: Emulator, mobilgroup_command: RunCommand,
        tmp_path: Path) -> None:
    options = {next(o.url for o in OPTIONS if o.name == name): value
               for name, (value, _, _) in URL_VALUES.items()}
    wire = Wire(mobilgroup_emulator, mobilgroup_emulator.url(**options),
                mobilgroup_emulator.url(PHONE.replace(" ", "").replace("-", ""), **options),
                tmp_path, mobilgroup_command)
    scheduled = path(wire)
    assert mobilgroup_emulator.outbox.wait_for(1)
    [message] = mobilgroup_emulator.outbox
    received = {field: getattr(message, field) for field in expected()}
    assert received == expected()
    assert _schedule(message) == (SCHEDULE if scheduled else None)


def _schedule(message: OutboxMessage) -> str | None:
    return message.schedule.strftime("%Y-%m-%d %H:%M") if message.schedule else None
