"""System checks (``manage.py check``; ``--deploy`` adds the deployment ones).

=================  =======================================================================
mobilgroup.E001    ``MOBILGROUP`` is not a dict
mobilgroup.E002    ``MOBILGROUP`` has a key this package does not know (a typo)
mobilgroup.E003    ``SMS_BACKEND``/``SENDSMS_BACKEND`` is ours, but no credentials are set
mobilgroup.E004    a credential or number setting is malformed (URL, USER_ID, TIMEOUT...)
mobilgroup.E005    ``SENDER`` is not an alias the gateway accepts
mobilgroup.E006    ``LONG_MESSAGES`` is not ``error``, ``split`` or ``truncate``
mobilgroup.E007    ``ENDPOINT`` is not an http(s) URL, or plain http outside loopback
mobilgroup.W001    the app is installed but no credentials are set and no backend uses them
mobilgroup.W002    ``DEFAULT_FROM_SMS``/``SENDSMS_DEFAULT_FROM_PHONE`` is not a valid alias
mobilgroup.W003    the gateway refuses the account (errors 3, 4, 5, 9) and outbox messages wait
                   for it to be fixed (read from the outbox table while it lasts)
mobilgroup.W010    (deploy) ``ENDPOINT`` is not the real gateway
mobilgroup.W011    (deploy) ``ALLOW_INSECURE_HTTP`` is on, or the endpoint is plain http
mobilgroup.W012    (deploy) ``MOBILGROUP['URL']`` carries the password, and Django's error
                   reports would show it (they hide secret-looking setting *names* only)
=================  =======================================================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from ..config import DEFAULT_ENDPOINT
from .settings import (
    KNOWN_KEYS,
    BackendConfig,
    MobilgroupImproperlyConfigured,
    load_config,
    unknown_keys,
    valid_alias,
)

__all__ = ["check_deploy", "check_settings"]

BACKEND_PATHS = {"mobilgroup_backends.django.SmsBackend",
                 "mobilgroup_backends.django.backend.SmsBackend",
                 "mobilgroup_backends.django.QueuedSmsBackend",
                 "mobilgroup_backends.django.queued.QueuedSmsBackend"}
_HINTS = {
    "mobilgroup.E001": "MOBILGROUP = {'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'}",
    "mobilgroup.E003": "Set MOBILGROUP = {'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'}, or the "
                       "MOBILGROUP_URL environment variable.",
    "mobilgroup.E005": "Use an alias registered for your account: latin letters, digits, space "
                       "and hyphen, at most 9 characters; or leave SENDER unset.",
    "mobilgroup.E006": "Use 'split' (the default), 'truncate' or 'error'.",
    "mobilgroup.E007": "Leave ENDPOINT unset for the real gateway.",
}


def _backends_using_us() -> list[str]:
    return [name for name in ("SMS_BACKEND", "SENDSMS_BACKEND")
            if getattr(django_settings, name, None) in BACKEND_PATHS]


def _config_or_error() -> tuple[BackendConfig | None, MobilgroupImproperlyConfigured | None]:
    try:
        return load_config(), None
    except MobilgroupImproperlyConfigured as exc:
        return None, exc


@register(Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None,
                   **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    raw = getattr(django_settings, "MOBILGROUP", None)
    if isinstance(raw, dict):
        for key in unknown_keys(raw):
            messages.append(Error(
                f"MOBILGROUP[{key!r}] is not a setting of mobilgroup-backends.",
                hint=f"Known keys: {', '.join(KNOWN_KEYS)}.", id="mobilgroup.E002"))
    config, error = _config_or_error()
    if error is not None and error.check_id != "mobilgroup.E002":
        if error.check_id == "mobilgroup.E003":
            users = _backends_using_us()
            if users:
                messages.append(Error(
                    f"{' and '.join(users)} use{'s' if len(users) == 1 else ''} "
                    f"mobilgroup_backends.django.SmsBackend, but {error}",
                    hint=_HINTS["mobilgroup.E003"], id="mobilgroup.E003"))
            else:
                messages.append(Warning(
                    f"The mobilgroup app is installed but {error}; the mobilgroup management "
                    f"command and delivery tracking cannot reach the gateway.",
                    hint=_HINTS["mobilgroup.E003"], id="mobilgroup.W001"))
        else:
            messages.append(Error(str(error), hint=_HINTS.get(error.check_id),
                                  id=error.check_id))
    messages.extend(_default_sender_warnings(config))
    return messages


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
