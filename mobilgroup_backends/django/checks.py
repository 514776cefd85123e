"""System checks (``manage.py check``; ``--deploy`` adds the deployment ones).

=================  =======================================================================
mobilgroup.E001    ``MOBILGROUP`` is not a dict
mobilgroup.E002    ``MOBILGROUP`` has a key this package does not know (a typo)
mobilgroup.E003    ``SMS_BACKEND``/``SENDSMS_BACKEND`` is ours, but no credentials are set
mobilgroup.E004    a credential or number setting is malformed (URL, USER_ID, TIMEOUT...)
mobilgroup.E005    ``SENDER`` is not an alias the gateway accepts
mobilgroup.E006    ``LONG_MESSAGES`` is not ``error``, ``split`` or ``truncate``
mobilgroup.E007    ``ENDPOINT`` is not an http(s) URL, or plain http outside loopback
mobilgroup.E008    a queued backend is set, but the ``TASKS`` backend cannot be loaded (or
                   this Django has no Tasks framework)
mobilgroup.E009    a queued backend is set, but the app of the ``TASKS`` backend is not in
                   ``INSTALLED_APPS`` (``django_tasks_db``)
mobilgroup.E010    a queued backend is set, but the ``TASKS`` backend never runs a task
mobilgroup.W001    the app is installed but no credentials are set and no backend uses them
mobilgroup.W002    ``DEFAULT_FROM_SMS``/``SENDSMS_DEFAULT_FROM_PHONE`` is not a valid alias
mobilgroup.W003    the gateway refuses the account (errors 3, 4, 5, 9) and outbox messages wait
                   for it to be fixed (read from the outbox table while it lasts)
mobilgroup.W004    a queued backend is set, but ``TASKS`` is not: Django's default backend
                   sends within the request, with no worker
mobilgroup.W020    ``TWO_FACTOR_CALL_GATEWAY`` names the SMS gateway, which cannot make calls
mobilgroup.W010    (deploy) ``ENDPOINT`` is not the real gateway
mobilgroup.W011    (deploy) ``ALLOW_INSECURE_HTTP`` is on, or the endpoint is plain http
mobilgroup.W012    (deploy) ``MOBILGROUP['URL']`` carries the password, and Django's error
                   reports would show it (they hide secret-looking setting *names* only)
=================  =======================================================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.util import find_spec
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from ..config import DEFAULT_ENDPOINT
from .settings import (
    BackendConfig,
    MobilgroupImproperlyConfigured,
    load_config,
    valid_alias,
)

__all__ = ["check_call_gateway", "check_deploy", "check_settings", "check_task_backend"]

BACKEND_PATHS = {"mobilgroup_backends.django.SmsBackend",
                 "mobilgroup_backends.django.backend.SmsBackend",
                 "mobilgroup_backends.django.QueuedSmsBackend",
                 "mobilgroup_backends.django.queued.QueuedSmsBackend"}
QUEUED_BACKEND_PATHS = {path for path in BACKEND_PATHS if "Queued" in path}
#: What docs/django.md sets up: the fix every task backend message points to.
_TASKS_HINT = ("pip install django-tasks-db; INSTALLED_APPS += ['django_tasks_db']; TASKS = "
               "{'default': {'BACKEND': 'django_tasks_db.DatabaseBackend'}}; then manage.py "
               "migrate, and run manage.py db_worker beside the web processes.")
_HINTS = {
    "mobilgroup.E001": "MOBILGROUP = {'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'}",
    "mobilgroup.E003": "Set MOBILGROUP = {'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'}, or the "
                       "MOBILGROUP_URL environment variable.",
    "mobilgroup.E005": "Use an alias registered for your account: latin letters, digits, space "
                       "and hyphen, at most 9 characters; or leave SENDER unset.",
    "mobilgroup.E006": "Use 'split' (the default), 'truncate' or 'error'.",
    "mobilgroup.E007": "Leave ENDPOINT unset for the real gateway.",
}


def _backends_using_us(paths: set[str] = BACKEND_PATHS) -> list[str]:
    return [name for name in ("SMS_BACKEND", "SENDSMS_BACKEND")
            if getattr(django_settings, name, None) in paths]


def _config_or_error() -> tuple[BackendConfig | None, MobilgroupImproperlyConfigured | None]:
    try:
        return load_config(), None
    except MobilgroupImproperlyConfigured as exc:
        return None, exc


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None,
                   **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    config, first = _config_or_error()
    # Every mistake at once, each as its own message with its own fix.
    for error in (first, *first.also) if first is not None else ():
        if error.check_id == "mobilgroup.E002":
            messages.append(Error(f"{error.setting} is not a setting of mobilgroup-backends.",
                                  hint=_capital(error.hint), id=error.check_id))
        elif error.check_id == "mobilgroup.E003":
            users = _backends_using_us()
            if users:
                messages.append(Error(
                    f"{' and '.join(users)} use{'s' if len(users) == 1 else ''} "
                    f"mobilgroup_backends.django.SmsBackend, but {error.own_text}",
                    hint=_HINTS["mobilgroup.E003"], id="mobilgroup.E003"))
            else:
                messages.append(Warning(
                    f"The mobilgroup app is installed but {error.own_text}; the mobilgroup management "
                    f"command and delivery tracking cannot reach the gateway.",
                    hint=_HINTS["mobilgroup.E003"], id="mobilgroup.W001"))
        else:
            messages.append(Error(error.own_text, hint=_HINTS.get(error.check_id),
                                  id=error.check_id))
    messages.extend(_default_sender_warnings(config))
    return messages


def _capital(hint: str) -> str:
    return hint[:1].upper() + hint[1:]


def _default_sender_warnings(config: BackendConfig | None) -> list[CheckMessage]:
    if config is not None and config.settings.sender:
        return []  # SENDER wins over both defaults; they are never used
    messages: list[CheckMessage] = []
    for name in ("DEFAULT_FROM_SMS", "SENDSMS_DEFAULT_FROM_PHONE"):
        value = getattr(django_settings, name, None)
        if value and valid_alias(value) is None:
            messages.append(Warning(
                f"{name}={value!r} is not a sender alias the Mobilgroup gateway accepts, so it is "
                f"ignored and messages go out with the account's default alias.",
                hint="Set MOBILGROUP['SENDER'] to an alias registered for your account (latin "
                     "letters, digits, space, hyphen, at most 9 characters).",
                id="mobilgroup.W002"))
    return messages


@register(Tags.compatibility)
def check_call_gateway(app_configs: Sequence[AppConfig] | None = None,
                       **kwargs: Any) -> list[CheckMessage]:
    from .two_factor import GATEWAY_PATH

    if getattr(django_settings, "TWO_FACTOR_CALL_GATEWAY", None) != GATEWAY_PATH:
        return []
    return [Warning(
        f"TWO_FACTOR_CALL_GATEWAY is {GATEWAY_PATH!r}: Mobilgroup sends text messages and "
        f"cannot make voice calls, so every call would fail.",
        hint="Leave TWO_FACTOR_CALL_GATEWAY unset (django-two-factor-auth then offers SMS only) "
             "or name a gateway that makes calls; TWO_FACTOR_SMS_GATEWAY is the setting for "
             "this one.", id="mobilgroup.W020")]


@register(Tags.compatibility)
def check_paused_outbox(app_configs: Sequence[AppConfig] | None = None,
                        **kwargs: Any) -> list[CheckMessage]:
    """W003: the outbox is paused because the gateway refuses the account. Read from the
    outbox table, so it shows in ``manage.py check`` while it lasts (and never fails a check
    run on a database without the table yet)."""
    from django.apps import apps
    from django.db import DatabaseError

    if not apps.is_installed("mobilgroup_backends.django"):
        return []
    from .dispatch import paused_notice

    try:
        notice = paused_notice()
    except (DatabaseError, RuntimeError):
        # Not migrated yet, no database reachable here, or database access refused (test
        # runners block it outside database tests): a check must never fail for that.
        return []
    if notice is None:
        return []
    return [Warning(notice, hint=PAUSED_HINT, id="mobilgroup.W003")]


PAUSED_HINT = ("Fix the account (add money, check the credentials, ask the provider to unblock "
               "it): the waiting messages are then sent by the tasks or the sweeper (manage.py "
               "mobilgroup outbox), each once.")


@register(Tags.compatibility)
def check_task_backend(app_configs: Sequence[AppConfig] | None = None,
                       **kwargs: Any) -> list[CheckMessage]:
    """A queued backend hands each message to the ``default`` task backend: it must load, have
    its app installed, and run tasks. Checked here, because the first ``send_sms`` is otherwise
    where the mistake shows."""
    users = _backends_using_us(QUEUED_BACKEND_PATHS)
    if not users:
        return []
    who = f"{' and '.join(users)} queue{'s' if len(users) == 1 else ''} messages for a task"
    framework = "django.tasks" if find_spec("django.tasks") else "django_tasks"
    if framework == "django_tasks" and find_spec("django_tasks") is None:
        import django

        return [Error(f"{who}, but Django {django.get_version()} has no Tasks framework.",
                      hint="pip install django-tasks (Django 6 has it built in). " + _TASKS_HINT,
                      id="mobilgroup.E008")]
    tasks = getattr(django_settings, "TASKS", None)
    if not tasks:
        return [Warning(
            f"{who}, but TASKS is not set: Django's default ImmediateBackend would send each "
            f"message inside the request that queued it, with no worker and no retries.",
            hint=_TASKS_HINT, id="mobilgroup.W004")]
    return _task_backend_errors(who, tasks)


def _task_backend_errors(who: str, tasks: Any) -> list[CheckMessage]:
    from django.apps import apps
    from django.utils.module_loading import import_string

    params = tasks.get("default") if isinstance(tasks, dict) else None
    path = params.get("BACKEND") if isinstance(params, dict) else None
    if not isinstance(path, str):
        return [Error(f"{who} on TASKS['default'], which is not set.", hint=_TASKS_HINT,
                      id="mobilgroup.E008")]
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        return [Error(f"{who}, but the TASKS backend {path!r} cannot be loaded: {exc}.",
                      hint=_TASKS_HINT, id="mobilgroup.E008")]
    package = backend_class.__module__.partition(".")[0]
    if find_spec(f"{package}.models") is not None and not apps.is_installed(package):
        return [Error(
            f"{who}, but the TASKS backend {path!r} keeps tasks in the app {package!r}, which is "
            f"not in INSTALLED_APPS.",
            hint=f"INSTALLED_APPS += [{package!r}], then manage.py migrate.", id="mobilgroup.E009")]
    if backend_class.__name__ == "DummyBackend":
        return [Error(f"{who}, but the TASKS backend {path!r} never runs a task: no message "
                      f"would be sent.", hint=_TASKS_HINT, id="mobilgroup.E010")]
    return []


@register(Tags.security, deploy=True)
def check_deploy(app_configs: Sequence[AppConfig] | None = None,
                 **kwargs: Any) -> list[CheckMessage]:
    config, _ = _config_or_error()
    if config is None:
        return []  # check_settings reports it
    messages: list[CheckMessage] = []
    endpoint = config.settings.endpoint
    if endpoint != DEFAULT_ENDPOINT:
        messages.append(Warning(
            f"MOBILGROUP ENDPOINT is {endpoint!r}, not the real gateway ({DEFAULT_ENDPOINT}): "
            f"messages will not reach phones.",
            hint="Remove ENDPOINT (and endpoint= from the URL) in production settings.",
            id="mobilgroup.W010"))
    if config.allow_insecure_http or urlsplit(endpoint).scheme == "http":
        messages.append(Warning(
            "The Mobilgroup password travels over plain http.",
            hint="Use the https:// endpoint and remove ALLOW_INSECURE_HTTP.",
            id="mobilgroup.W011"))
    where = _url_shows_password()
    if where:
        messages.append(Warning(
            f"{where} carries the password, and Django's error pages and error emails hide "
            f"settings and request.META entries by name only, so they would show it.",
            hint=f"Set DEFAULT_EXCEPTION_REPORTER_FILTER = {FILTER_PATH!r}, or move the password "
                 "to MOBILGROUP['PASSWORD'] (use USER_ID, LOGIN and PASSWORD instead of URL).",
            id="mobilgroup.W012"))
    return messages


FILTER_PATH = "mobilgroup_backends.django.debug.SafeExceptionReporterFilter"


def _url_shows_password() -> str:
    """Where a ``mobilgroup://`` URL with its password would show in error reports, or ""."""
    from django.utils.module_loading import import_string

    from .debug import SafeExceptionReporterFilter

    setting = getattr(django_settings, "MOBILGROUP", None)
    places = []
    if isinstance(setting, dict) and isinstance(setting.get("URL"), str):
        places.append("MOBILGROUP['URL']")
    if os.environ.get("MOBILGROUP_URL", "").strip():
        # The environment is in request.META under runserver (and some WSGI servers).
        places.append("the environment variable MOBILGROUP_URL")
    if not places:
        return ""
    filter_class = import_string(django_settings.DEFAULT_EXCEPTION_REPORTER_FILTER)
    if issubclass(filter_class, SafeExceptionReporterFilter):
        return ""
    where = " and ".join(places)
    return where[0].upper() + where[1:]
