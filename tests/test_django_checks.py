"""System checks: each one fires on its mistake and stays silent when the settings are right."""

from __future__ import annotations

from importlib.util import find_spec
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mobilgroup_backends.django.checks import check_task_backend
from tests.django_project import settings as settings_module

GOOD_URL = "mobilgroup://demo:pw@1234?sender=MyShop"
LOCAL_URL = "mobilgroup://demo:pw@1234?endpoint=http%3A%2F%2F127.0.0.1%3A8080%2Fextxml.php"


# The settings under test must not be mixed with MOBILGROUP_* variables of the machine. From Django
# 6.0 on, the model checks ask the database what it supports (the outbox's JSONField), as
# `manage.py check` does in a real project.
pytestmark = [pytest.mark.usefixtures("no_mobilgroup_environment"), pytest.mark.django_db]


def ids(deploy: bool = False) -> list[str]:
    return sorted(message.id for message in run_checks(include_deployment_checks=deploy)
                  if message.id and message.id.startswith("mobilgroup."))


def test_silent_when_settings_are_right(settings: Any) -> None:
    settings.MOBILGROUP = {"URL": GOOD_URL}
    assert ids() == []
    assert ids(deploy=True) == []
    settings.MOBILGROUP = {"USER_ID": "1234", "LOGIN": "demo", "PASSWORD": "pw",
                           "SENDER": "MyShop", "LONG_MESSAGES": "truncate", "TIMEOUT": 5,
                           "RETRIES": 2, "VALID_HOURS": 24, "TRANSLITERATE": False,
                           "TRACK_DELIVERY": True}
    settings.DEFAULT_FROM_SMS = "+15551234567"  # ignored anyway: SENDER wins
    assert ids() == []
    del settings.DEFAULT_FROM_SMS
    settings.MOBILGROUP = {"URL": LOCAL_URL}
    assert ids() == []  # an emulator on loopback is fine outside --deploy


def test_silent_with_credentials_from_the_environment(settings: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    del settings.MOBILGROUP
    monkeypatch.setenv("MOBILGROUP_URL", GOOD_URL)
    assert ids() == []


@pytest.mark.parametrize(("value", "expected"), [
    ("mobilgroup://demo:pw@1234", "mobilgroup.E001"),
    ({"URL": GOOD_URL, "SENDR": "x"}, "mobilgroup.E002"),
    ({"URL": "mobilgroup://demo@1234"}, "mobilgroup.E004"),
    ({"USER_ID": "abc", "LOGIN": "demo", "PASSWORD": "pw"}, "mobilgroup.E004"),
    ({"URL": GOOD_URL, "TIMEOUT": 0}, "mobilgroup.E004"),
    ({"URL": GOOD_URL, "SENDER": "Bad_alias!"}, "mobilgroup.E005"),
    ({"URL": "mobilgroup://demo:pw@1234?sender=ten-chars!"}, "mobilgroup.E005"),
    ({"URL": GOOD_URL, "LONG_MESSAGES": "wrap"}, "mobilgroup.E006"),
    ({"URL": GOOD_URL, "ENDPOINT": "http://sms.mobilgroup.ru/extxml.php"}, "mobilgroup.E007"),
    ({"URL": GOOD_URL, "ENDPOINT": "sms.mobilgroup.ru"}, "mobilgroup.E007"),
])
def test_each_error_fires(settings: Any, value: Any, expected: str) -> None:
    settings.MOBILGROUP = value
    assert ids() == [expected]


def test_backend_without_credentials_is_an_error(settings: Any) -> None:
    del settings.MOBILGROUP
    settings.SMS_BACKEND = "mobilgroup_backends.django.SmsBackend"
    settings.SENDSMS_BACKEND = "sendsms.backends.locmem.SmsBackend"
    [message] = [m for m in run_checks() if m.id == "mobilgroup.E003"]
    assert "SMS_BACKEND uses mobilgroup_backends.django.SmsBackend" in message.msg
    settings.MOBILGROUP = {"USER_ID": "1234", "LOGIN": "demo"}
    assert ids() == ["mobilgroup.E003"]


def test_app_without_credentials_and_without_our_backend_is_a_warning(settings: Any) -> None:
    del settings.MOBILGROUP
    settings.SMS_BACKEND = "sms.backends.locmem.SmsBackend"
    settings.SENDSMS_BACKEND = "sendsms.backends.locmem.SmsBackend"
    assert ids() == ["mobilgroup.W001"]


@pytest.mark.parametrize("name", ["DEFAULT_FROM_SMS", "SENDSMS_DEFAULT_FROM_PHONE"])
def test_default_sender_that_is_not_an_alias_warns(settings: Any, name: str) -> None:
    settings.MOBILGROUP = {"URL": "mobilgroup://demo:pw@1234"}
    setattr(settings, name, "+15551234567")
    assert ids() == ["mobilgroup.W002"]
    setattr(settings, name, "MyShop")
    assert ids() == []


def test_deploy_checks(settings: Any) -> None:
    settings.MOBILGROUP = {"URL": LOCAL_URL}
    assert ids(deploy=True) == ["mobilgroup.W010", "mobilgroup.W011"]
    settings.MOBILGROUP = {"URL": GOOD_URL, "ENDPOINT": "https://staging.example.com/extxml.php"}
    assert ids(deploy=True) == ["mobilgroup.W010"]
    settings.MOBILGROUP = {"URL": GOOD_URL, "ALLOW_INSECURE_HTTP": True}
    assert ids(deploy=True) == ["mobilgroup.W011"]
    assert ids() == []


def test_messages_never_carry_the_password(settings: Any) -> None:
    secret = "Sup3r-Secret-pw"
    for value in ({"URL": f"mobilgroup://demo:{secret}@12ab"},
                  {"USER_ID": "1", "LOGIN": "demo", "PASSWORD": secret, "SENDER": "bad!!"},
                  {"USER_ID": "1", "LOGIN": "demo", "PASSWORD": secret, "TIMEOUT": -1},
                  {"URL": f"mobilgroup://demo:{secret}@1?endpoint=http%3A%2F%2Fexample.com"}):
        settings.MOBILGROUP = value
        messages = [m for m in run_checks() if (m.id or "").startswith("mobilgroup.")]
        assert messages, value
        assert all(secret not in f"{m.msg} {m.hint}" for m in messages)


def test_manage_py_check_reports_them(settings: Any) -> None:
    settings.MOBILGROUP = {"URL": GOOD_URL, "LONG_MESSAGES": "wrap"}
    with pytest.raises(SystemCheckError, match=r"mobilgroup\.E006"):
        call_command("check", stdout=StringIO(), stderr=StringIO())
    settings.MOBILGROUP = {"URL": GOOD_URL}
    out = StringIO()
    call_command("check", stdout=out)
    assert "no issues" in out.getvalue()



QUEUED = "mobilgroup_backends.django.QueuedSmsBackend"
TASKS_PACKAGE = "django.tasks" if find_spec("django.tasks") else "django_tasks"
WITHOUT_TASKS_DB = [app for app in settings_module.INSTALLED_APPS if app != "django_tasks_db"]


# The Tasks framework's own check loads every backend and raises on one that does not load
# (where it runs at all): these call this package's check alone.
@pytest.mark.parametrize(("tasks", "apps", "expected"), [
    # Not set: Django's default sends inside the request, with no worker.
    (None, None, "mobilgroup.W004"),
    # What a typo or a missing `pip install django-tasks-db` looks like.
    ({"default": {"BACKEND": "django_tasks_db.DatabaseBackedn"}}, None, "mobilgroup.E008"),
    ({"default": {"BACKEND": "no_such_package.Backend"}}, None, "mobilgroup.E008"),
    ({"other": {"BACKEND": f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"}}, None,
     "mobilgroup.E008"),
    # The docs' backend without its app in INSTALLED_APPS.
    ({"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}, WITHOUT_TASKS_DB,
     "mobilgroup.E009"),
    ({"default": {"BACKEND": f"{TASKS_PACKAGE}.backends.dummy.DummyBackend"}}, None,
     "mobilgroup.E010"),
])
def test_a_queued_backend_needs_a_task_backend_that_works(
        settings: Any, tasks: Any, apps: list[str] | None, expected: str) -> None:
    settings.MOBILGROUP = {"URL": GOOD_URL}
    settings.SENDSMS_BACKEND = QUEUED
    if tasks is None:
        del settings.TASKS
    else:
        settings.TASKS = tasks
    if apps is not None:
        settings.INSTALLED_APPS = apps
    [message] = check_task_backend()
    assert message.id == expected
    assert "SENDSMS_BACKEND queues messages for a task" in message.msg
    assert "INSTALLED_APPS += ['django_tasks_db']" in (message.hint or "")
    # The same settings with a backend that sends now need no task backend at all.
    settings.SENDSMS_BACKEND = "mobilgroup_backends.django.SmsBackend"
    assert check_task_backend() == []


def test_a_queued_backend_with_the_documented_task_backend_passes(settings: Any) -> None:
    settings.MOBILGROUP = {"URL": GOOD_URL}
    settings.SMS_BACKEND = QUEUED
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    assert "django_tasks_db" in settings.INSTALLED_APPS
    assert check_task_backend() == []
    settings.TASKS = {"default": {"BACKEND": f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"}}
    assert check_task_backend() == []  # chosen on purpose (tests, a small site): no worker needed


def test_every_mistake_of_the_setting_in_one_run(settings: Any) -> None:
    """Four mistakes, four messages, each with its fix: no fixing them one run at a time."""
    settings.MOBILGROUP = {"URL": "mobilgroup://shop@example.com:pw@1234", "SENDR": "Shop",
                           "SENDER": "My Shop!", "TIMEOUT": "ten"}
    messages = {m.id: m for m in run_checks() if (m.id or "").startswith("mobilgroup.")}
    [misspelt] = [m for m in run_checks() if m.id == "mobilgroup.E002"]
    assert "MOBILGROUP['SENDR']" in misspelt.msg and misspelt.hint == "Did you mean SENDER?"
    [timeout, url] = sorted((m for m in run_checks() if m.id == "mobilgroup.E004"),
                            key=lambda m: m.msg)
    assert url.msg.startswith("MOBILGROUP['URL']: more than one '@'") and "%40" in url.msg
    assert timeout.msg.startswith("MOBILGROUP['TIMEOUT']: 'ten': not a number")
    assert "MOBILGROUP['SENDER']: 'My Shop!'" in messages["mobilgroup.E005"].msg
    assert sorted(messages) == ["mobilgroup.E002", "mobilgroup.E004", "mobilgroup.E005"]
    with pytest.raises(SystemCheckError) as caught:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "System check identified 4 issues" in str(caught.value)
