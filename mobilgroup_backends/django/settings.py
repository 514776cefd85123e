"""Reading the ``MOBILGROUP`` Django setting, through the core's resolver.

Where settings come from, strongest first (the same for every adapter; see
docs/configuration.md): keyword arguments of the backend (``sms.get_connection(sender="Shop")``),
its ``url=`` argument, the keys of ``MOBILGROUP``, ``MOBILGROUP["URL"]``, the environment
(``MOBILGROUP_URL``, then ``MOBILGROUP_*``), the defaults. The account comes whole from one place.

Every problem raises :class:`MobilgroupImproperlyConfigured` (an ``ImproperlyConfigured``) naming
the setting, its value (the password masked) and the fix. ``fail_silently`` never hides it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from ..config import BY_NAME, SETTING_KEYS, SETTING_NAME, Resolved, Settings, resolve_cached
from ..errors import HIDDEN, ConfigurationError, PicklableError, ValidationError
from ..protocol import check_sender

__all__ = [
    "KNOWN_KEYS",
    "SETTING_NAME",
    "BackendConfig",
    "MobilgroupImproperlyConfigured",
    "current_config",
    "load_config",
    "load_resolved",
    "valid_alias",
]

#: Every key ``MOBILGROUP`` understands (the option table's, alert options included).
KNOWN_KEYS: tuple[str, ...] = SETTING_KEYS
# Check ids (see checks.py) by the option that is wrong.
_CHECK_IDS = {"setting": "mobilgroup.E002", "account": "mobilgroup.E003",
              "sender": "mobilgroup.E005", "long_messages": "mobilgroup.E006",
              "endpoint": "mobilgroup.E007"}


class MobilgroupImproperlyConfigured(PicklableError, ImproperlyConfigured):
    """A missing or malformed Mobilgroup setting.

    ``setting`` names it as the project wrote it (``MOBILGROUP['SENDER']``, ``sender= argument``,
    ``MOBILGROUP_URL environment variable``); ``check_id`` is the system check that reports it.
    ``also`` holds the other mistakes of the same settings, each an error of its own, and the text
    names them all; ``own_text`` is this one's alone, and ``hint`` its fix.
    """

    message_first = False

    def __init__(self, setting: str, message: str, *, check_id: str = "mobilgroup.E004",
                 hint: str = "", also: tuple[MobilgroupImproperlyConfigured, ...] = ()) -> None:
        self.setting = setting
        self.check_id = check_id
        self.own_text = f"{setting}: {message}"
        self.hint = hint
        self.also = also
        super().__init__("".join([self.own_text, *(f"\nalso {other}" for other in also)]))

    def fields_from_message(self, message: str) -> dict[str, Any]:
        return {"setting": message.partition(":")[0], "check_id": "mobilgroup.E004",
                "own_text": message.partition("\nalso ")[0], "hint": "", "also": ()}


@dataclass(frozen=True)
class BackendConfig:
    """Everything the Django adapter needs, checked. ``settings`` is the core's view of it (every
    message setting: the core applies them, ``long_messages`` included)."""

    settings: Settings
    track_delivery: bool = False
    #: Rows of one transaction that one task sends (``MOBILGROUP['OUTBOX_BATCH']``).
    outbox_batch: int = 10
    #: How committed rows leave (``MOBILGROUP['OUTBOX_SEND']``): ``"task"`` or ``"now"``.
    outbox_send: str = "task"

    @property
    def allow_insecure_http(self) -> bool:
        return self.settings.allow_insecure_http

    def __repr__(self) -> str:
        return f"BackendConfig({self.settings!r}, track_delivery={self.track_delivery!r})"


def valid_alias(value: object) -> str | None:
    """``value`` when it is a sender alias the gateway accepts, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return check_sender(value)
    except ValidationError:
        return None


def improperly_configured(exc: ConfigurationError) -> MobilgroupImproperlyConfigured:
    """The core's error in Django's words: the setting as written, and a fix in settings keys."""
    if exc.option == "account" and exc.field == "url":
        label, head = SETTING_NAME, ""
    elif exc.source:
        label = exc.source
        head = exc.field if exc.value is HIDDEN else f"{exc.field}={exc.value!r}"
    else:
        label, head = exc.field, "" if exc.value is HIDDEN else repr(exc.value)
        if label in BY_NAME:
            label = f"{label}= argument"
    hint = exc.hint_for("django")
    message = "; ".join(part for part in (": ".join(p for p in (head, exc.problem) if p), hint)
                        if part)
    check_id = "mobilgroup.E001" if exc.field == SETTING_NAME else _CHECK_IDS.get(
        exc.option or "", "mobilgroup.E004")
    return MobilgroupImproperlyConfigured(
        label, message, check_id=check_id, hint=hint,
        also=tuple(improperly_configured(other) for other in exc.also))


@sensitive_variables()  # its locals hold the password
def load_resolved(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Resolved:
    """Every option of the Django adapter, resolved (and remembered) by the core; the one-time
    code guard reads its limits here. Errors are :class:`MobilgroupImproperlyConfigured`."""
    arguments = dict(overrides or {})
    url = arguments.pop("url", None)
    try:
        return resolve_cached("django", arguments=arguments, url=url,
                              setting=getattr(django_settings, SETTING_NAME, None),
                              environ=os.environ if environ is None else environ,
                              url_source="url= argument")
    except ConfigurationError as exc:
        raise improperly_configured(exc) from None


def _resolved_now() -> Resolved:
    """:func:`load_resolved` of the settings alone (no overrides, the process's environment):
    what a backend per ``send_sms``, an ``enqueue`` and a one-time code ask for, one call
    shorter. No password passes through its locals."""
    try:
        return resolve_cached("django", arguments={}, url=None,
                              setting=getattr(django_settings, SETTING_NAME, None),
                              environ=os.environ, url_source="url= argument")
    except ConfigurationError as exc:
        raise improperly_configured(exc) from None


@sensitive_variables()  # its locals hold the password
def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> BackendConfig:
    """The adapter's configuration from ``overrides``, the setting and the environment.

    ``overrides`` uses the constructor's keyword names (``url``, ``sender``,
    ``track_delivery``...); None values are ignored, so that callers such as django-sendsms,
    which pass ``username=None``, do not erase settings. Cheap to call for every message: the
    core remembers the resolution until a setting, an override or a variable changes.
    """
    if overrides or environ is not None:
        return _config_of(load_resolved(overrides, environ))
    return current_config()


def current_config() -> BackendConfig:
    """``load_config()``: the configuration of the settings and the process's environment alone,
    what a backend per ``send_sms``, every ``enqueue`` and every task asks for. One call shorter
    than :func:`load_config`, and not wrapped for Django's error reports: no password passes
    through its locals (nor through :func:`_resolved_now`'s)."""
    return _config_of(_resolved_now())


def _config_of(resolved: Resolved) -> BackendConfig:
    """The configuration made of a resolution: the same object for the same resolution (the
    core hands back the very same one while no setting changed)."""
    global _last_config
    last = _last_config  # one tuple, read at once: another thread may replace it
    if last is not None and last[0] is resolved:
        return last[1]
    config = BackendConfig(
        settings=resolved.settings,
        track_delivery=resolved["track_delivery"],
        outbox_batch=resolved["outbox_batch"],
        outbox_send=resolved["outbox_send"],
    )
    _last_config = (resolved, config)
    return config


#: The last resolution :func:`load_config` was given and the configuration it made of it: the
#: core hands back the very same object while no setting changed.
_last_config: tuple[Any, BackendConfig] | None = None
