"""One URL, every sending path, the same message on the wire.

The same ``mobilgroup://`` URL, with every message setting of the option table set away from its
default, goes through each path; what the emulator received is compared field by field. Each
setting is chosen so that the default would show on the wire, or refuse the message outright:
a BY national number (``region``), a Unicode text (``translit=no``), a text over the limit
(``long_messages``), an emoji (``replace_unencodable``).

Adding a setting to the option table fails ``test_every_message_setting_of_the_table_is_checked``
until it is given a URL value and an expectation on the wire here (or named as one that never
reaches the wire), and then every path must carry it. A path is a function in :data:`PATHS`.
The Django paths run in real Django (``MOBILGROUP = {"URL": ...}``): ``SmsBackend`` through
django-sms, ``QueuedSmsBackend`` through django-sendsms with the task run at commit, the outbox's
``enqueue`` with its row sent by the sweeper; Celery's ``enqueue`` goes through a real Redis to
a real worker.
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
    fixture: Callable[[str], Any]  # request.getfixturevalue: the fixtures a path needs


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


def _django(wire: Wire, **settings: Any) -> None:
    """Real Django for this path (its database comes with the test's ``django_db`` mark), and
    ``MOBILGROUP`` the URL."""
    django_settings = wire.fixture("settings")
    django_settings.MOBILGROUP = {"URL": wire.url}
    for name, value in settings.items():
        setattr(django_settings, name, value)


def django_sms_backend(wire: Wire) -> bool:
    import sms

    _django(wire, SMS_BACKEND="mobilgroup_backends.django.SmsBackend")
    assert sms.send_sms(TEXT, recipients=[PHONE]) == 1
    return False


def django_queued_backend(wire: Wire) -> bool:
    import sendsms.api
    from django.db import transaction

    _django(wire, SENDSMS_BACKEND="mobilgroup_backends.django.QueuedSmsBackend")
    with transaction.atomic():  # the immediate task backend sends it at commit
        assert sendsms.api.send_sms(TEXT, None, [PHONE]) == 1
    return False


def django_outbox_swept(wire: Wire) -> bool:
    from datetime import timedelta

    from django.db import transaction

    from mobilgroup_backends.django.outbox import enqueue, sweep

    django_settings = wire.fixture("settings")
    _django(wire, TASKS={"default": {  # stored, never run: the sweeper's own send path
        "BACKEND": f"{django_settings.TASKS_PACKAGE}.backends.dummy.DummyBackend"}})
    with transaction.atomic():
        row = enqueue(PHONE, TEXT, schedule=SCHEDULE)
    assert sweep(stale_after=timedelta(0)).accepted == [row.request_id]
    return True


def celery_worker(wire: Wire) -> bool:
    from mobilgroup_backends import celery as mobilgroup_celery
    from tests.celery_app import Worker, make_app

    broker = wire.fixture("redis_server").url(15)
    wire.fixture("redis_server").client(15).flushdb()
    app = make_app(broker)
    app.conf.mobilgroup_url = wire.url
    worker = Worker(broker, wire.url, str(wire.folder / "worker.log"), concurrency=1)
    try:
        mobilgroup_celery.enqueue(PHONE, TEXT, app=app, schedule=SCHEDULE)
        assert wire.emulator.outbox.wait_for(1, timeout=60), worker.log_tail()
    finally:
        worker.stop()
    return True


PATHS: list[SendPath] = [client_from_url, client_from_env, client_prepared_and_stored,
                         command_send, command_mailing, apprise_notify, logging_dictconfig,
                         django_sms_backend, django_queued_backend, django_outbox_swept,
                         celery_worker]
#: The paths that write to Django's database (real commits: ``transaction=True``).
USES_THE_DATABASE = {django_queued_backend, django_outbox_swept}


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
@pytest.mark.parametrize("path", [
    pytest.param(path, id=path.__name__, marks=[pytest.mark.django_db(transaction=True)]
                 if path in USES_THE_DATABASE else [])
    for path in PATHS])
def test_the_same_url_puts_the_same_message_on_the_wire(
        path: SendPath, mobilgroup_emulator: Emulator, mobilgroup_command: RunCommand,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    options = {next(o.url for o in OPTIONS if o.name == name): value
               for name, (value, _, _) in URL_VALUES.items()}
    wire = Wire(mobilgroup_emulator, mobilgroup_emulator.url(**options),
                mobilgroup_emulator.url(PHONE.replace(" ", "").replace("-", ""), **options),
                tmp_path, mobilgroup_command, request.getfixturevalue)
    scheduled = path(wire)
    assert mobilgroup_emulator.outbox.wait_for(1)
    [message] = mobilgroup_emulator.outbox
    received = {field: getattr(message, field) for field in expected()}
    assert received == expected()
    assert _schedule(message) == (SCHEDULE if scheduled else None)


def _schedule(message: OutboxMessage) -> str | None:
    return message.schedule.strftime("%Y-%m-%d %H:%M") if message.schedule else None
