"""Reading the ``MOBILGROUP`` Django setting.

Sources, from weakest to strongest:

1. the environment (``MOBILGROUP_URL``, or ``MOBILGROUP_USER_ID``, ``_LOGIN``, ``_PASSWORD``,
   ``_SENDER``, ``_ENDPOINT``), read only when neither the setting nor the constructor gives any
   credentials (``URL``, ``USER_ID``, ``LOGIN`` or ``PASSWORD``);
2. ``MOBILGROUP["URL"]``;
3. the discrete keys of ``MOBILGROUP`` (``USER_ID``, ``SENDER``, ``TIMEOUT``, ...);
4. keyword arguments given to the backend's constructor (``sms.get_connection(sender="Shop")``).

Every problem raises :class:`MobilgroupImproperlyConfigured` (an ``ImproperlyConfigured``) naming
the setting, its value (the password masked) and the fix. ``fail_silently`` never hides it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

from ..config import DEFAULT_ENDPOINT, Settings, parse_bool, parse_url
from ..errors import ConfigurationError, ValidationError
from ..protocol import check_sender

__all__ = [
    "DEFAULT_LONG_MESSAGES",
    "KNOWN_KEYS",
    "LONG_MESSAGE_MODES",
    "SETTING_NAME",
    "BackendConfig",
    "MobilgroupImproperlyConfigured",
    "load_config",
    "valid_alias",
]

SETTING_NAME = "MOBILGROUP"
LongMessages = Literal["error", "split", "truncate"]
LONG_MESSAGE_MODES: tuple[LongMessages, ...] = ("error", "split", "truncate")
#: Too-long texts are split into several messages by default: a text built from a template in
#: production must not be lost (``error``) or lose its end, where codes and links usually sit
#: (``truncate``). See docs/django.md.
DEFAULT_LONG_MESSAGES: LongMessages = "split"

#: Every key ``MOBILGROUP`` understands, with the constructor keyword that overrides it.
KNOWN_KEYS: dict[str, str] = {
    "URL": "url",
    "USER_ID": "user_id",
    "LOGIN": "login",
    "PASSWORD": "password",
    "SENDER": "sender",
    "ENDPOINT": "endpoint",
    "TIMEOUT": "timeout",
    "RETRIES": "retries",
    "BACKOFF": "backoff",
    "TRANSLITERATE": "transliterate",
    "VALID_HOURS": "valid_hours",
    "LONG_MESSAGES": "long_messages",
    "REPLACE_UNENCODABLE": "replace_unencodable",
    "TRACK_DELIVERY": "track_delivery",
    "ALLOW_INSECURE_HTTP": "allow_insecure_http",
}
_CREDENTIAL_KEYS = ("URL", "USER_ID", "LOGIN", "PASSWORD")
_ENV_KEYS = {"USER_ID": "user_id", "LOGIN": "login", "PASSWORD": "password",
             "SENDER": "sender", "ENDPOINT": "endpoint"}
# Which key a field of the core Settings comes from, to name it in errors.
_FIELD_KEYS = {"user_id": "USER_ID", "login": "LOGIN", "password": "PASSWORD",
               "sender": "SENDER", "endpoint": "ENDPOINT", "timeout": "TIMEOUT",
               "retries": "RETRIES", "valid_hours": "VALID_HOURS",
               "transliterate": "TRANSLITERATE", "backoff": "BACKOFF",
               "allow_insecure_http": "ALLOW_INSECURE_HTTP"}
# Check ids (see checks.py) by the key that is wrong.
_CHECK_IDS = {"SENDER": "mobilgroup.E005", "LONG_MESSAGES": "mobilgroup.E006",
              "ENDPOINT": "mobilgroup.E007", "ALLOW_INSECURE_HTTP": "mobilgroup.E004"}


class MobilgroupImproperlyConfigured(ImproperlyConfigured):
    """A missing or malformed Mobilgroup setting.

    ``setting`` names it as the project wrote it (``MOBILGROUP['SENDER']``, ``sender= argument``,
    ``MOBILGROUP_URL environment variable``); ``check_id`` is the system check that reports it.
    """

    def __init__(self, setting: str, message: str, *, check_id: str = "mobilgroup.E004") -> None:
        self.setting = setting
        self.check_id = check_id
        super().__init__(f"{setting}: {message}")


@dataclass(frozen=True)
class BackendConfig:
    """Everything the Django adapter needs, checked. ``settings`` is the core's view of it."""

    settings: Settings
    long_messages: LongMessages = DEFAULT_LONG_MESSAGES
    replace_unencodable: bool = False
    track_delivery: bool = False

    @property
    def allow_insecure_http(self) -> bool:
        return self.settings.allow_insecure_http

    def __repr__(self) -> str:
        return (f"BackendConfig({self.settings!r}, long_messages={self.long_messages!r}, "
                f"track_delivery={self.track_delivery!r})")


def valid_alias(value: object) -> str | None:
    """``value`` when it is a sender alias the gateway accepts, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return check_sender(value)
    except ValidationError:
        return None


def _label(key: str, sources: Mapping[str, str]) -> str:
    source = sources.get(key, "setting")
    if source == "argument":
        return f"{KNOWN_KEYS.get(key, key.lower())}= argument"
    if source == "url":
        return f"{SETTING_NAME}['URL']"
    if source == "env-url":
        return "MOBILGROUP_URL environment variable"
    if source == "env":
        return f"MOBILGROUP_{key} environment variable"
    return f"{SETTING_NAME}[{key!r}]"


def _raw_setting() -> dict[str, Any]:
    raw = getattr(django_settings, SETTING_NAME, None)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise MobilgroupImproperlyConfigured(
            SETTING_NAME, f"must be a dict, not {type(raw).__name__}; write "
            f"{SETTING_NAME} = {{'URL': 'mobilgroup://LOGIN:PASSWORD@USER_ID'}}",
            check_id="mobilgroup.E001")
    return dict(raw)


def unknown_keys(raw: Mapping[str, Any]) -> list[str]:
    return sorted(str(key) for key in raw if key not in KNOWN_KEYS)


@sensitive_variables()  # its locals hold the password
def load_config(overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> BackendConfig:
    """The adapter's configuration from the setting, the environment and ``overrides``.

    ``overrides`` uses the constructor's keyword names (``sender``, ``track_delivery``...); None
    values are ignored, so that callers such as django-sendsms, which pass ``username=None``, do
    not erase settings.
    """
    raw = _raw_setting()
    unknown = unknown_keys(raw)
    if unknown:
        raise MobilgroupImproperlyConfigured(
            f"{SETTING_NAME}[{unknown[0]!r}]",
            f"unknown key; the known keys are {', '.join(KNOWN_KEYS)}",
            check_id="mobilgroup.E002")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    by_keyword = {keyword: key for key, keyword in KNOWN_KEYS.items()}
    strange = sorted(set(overrides or {}) - set(by_keyword))
    if strange:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(strange)}; the known ones "
                        f"are {', '.join(by_keyword)}")
    given = {by_keyword[name]: value for name, value in (overrides or {}).items()
             if value is not None}

    has_credentials = any(raw.get(key) for key in _CREDENTIAL_KEYS) or any(
        key in given for key in _CREDENTIAL_KEYS)
    if not has_credentials:
        _from_environment(os.environ if environ is None else environ, values, sources)

    url = given.get("URL", raw.get("URL"))
    if url:
        url_source = "argument" if "URL" in given else "setting"
        try:
            parsed = parse_url(url)[0]
        except ConfigurationError as exc:
            raise _improper("URL", {"URL": url_source}, exc) from None
        _take_settings(parsed, "url" if url_source == "setting" else "argument", values, sources)
    for layer, source in ((raw, "setting"), (given, "argument")):
        for key, value in layer.items():
            if key != "URL" and value is not None:
                values[key] = value
                sources[key] = source
    return _build(values, sources)


@sensitive_variables()  # its locals hold the password
def _from_environment(env: Mapping[str, str], values: dict[str, Any],
                      sources: dict[str, str]) -> None:
    url = env.get("MOBILGROUP_URL", "").strip()
    if url:
        try:
            parsed = parse_url(url)[0]
        except ConfigurationError as exc:
            raise _improper("URL", {"URL": "env-url"}, exc) from None
        _take_settings(parsed, "env-url", values, sources)
        return
    for key in _ENV_KEYS:
        value = env.get(f"MOBILGROUP_{key}", "")
        if value.strip():
            values[key] = value if key == "PASSWORD" else value.strip()
            sources[key] = "env"


@sensitive_variables()  # its locals hold the password
def _take_settings(parsed: Settings, source: str, values: dict[str, Any],
                   sources: dict[str, str]) -> None:
    taken = {"USER_ID": parsed.user_id, "LOGIN": parsed.login, "PASSWORD": parsed.password,
             "SENDER": parsed.sender, "ENDPOINT": parsed.endpoint,
             "TIMEOUT": parsed.timeout, "RETRIES": parsed.retries,
             "TRANSLITERATE": parsed.transliterate, "VALID_HOURS": parsed.valid_hours}
    for key, value in taken.items():
        values[key] = value
        sources[key] = source


def _improper(key: str, sources: Mapping[str, str], exc: ValidationError) -> \
        MobilgroupImproperlyConfigured:
    field_key = _FIELD_KEYS.get(exc.field, key)
    check_id = _CHECK_IDS.get(field_key, "mobilgroup.E004")
    label = _label(field_key if field_key in sources else key, sources)
    shown = "'***'" if field_key == "PASSWORD" else repr(exc.value)
    message = f"{shown}: {exc.problem}" + (f"; {exc.fix}" if exc.fix else "")
    return MobilgroupImproperlyConfigured(label, message, check_id=check_id)


@sensitive_variables()  # its locals hold the password
def _build(values: dict[str, Any], sources: dict[str, str]) -> BackendConfig:
    missing = [key for key in ("USER_ID", "LOGIN", "PASSWORD") if not values.get(key)]
    if missing:
        if len(missing) == 3:
            raise MobilgroupImproperlyConfigured(
                SETTING_NAME, "no gateway credentials; set MOBILGROUP = {'URL': "
                "'mobilgroup://LOGIN:PASSWORD@USER_ID'} (or the keys USER_ID, LOGIN and "
                "PASSWORD), or the MOBILGROUP_URL environment variable",
                check_id="mobilgroup.E003")
        raise MobilgroupImproperlyConfigured(
            f"{SETTING_NAME}[{missing[0]!r}]", "missing; give USER_ID, LOGIN and PASSWORD "
            "together, or one URL", check_id="mobilgroup.E003")

    def flag(key: str, default: bool) -> bool:
        if key not in values:
            return default
        try:
            return parse_bool(key, values[key])
        except ConfigurationError as exc:
            raise _improper(key, sources, exc) from None

    def bad(key: str, value: Any, problem: str) -> MobilgroupImproperlyConfigured:
        return MobilgroupImproperlyConfigured(_label(key, sources), f"{value!r}: {problem}",
                                              check_id=_CHECK_IDS.get(key, "mobilgroup.E004"))

    def number(key: str, kind: type[int] | type[float], default: Any) -> Any:
        value = values.get(key, default)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise bad(key, value, "not a number") from None
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, kind if kind is int else (int, float)):
            raise bad(key, value, f"not a {'whole ' if kind is int else ''}number")
        return value

    endpoint = values.get("ENDPOINT") or DEFAULT_ENDPOINT
    if not isinstance(endpoint, str):
        raise bad("ENDPOINT", endpoint, "not a URL")
    backoff = number("BACKOFF", float, 0.25)

    sender = values.get("SENDER") or None
    try:
        core = Settings(
            user_id=str(values["USER_ID"]).strip(),
            login=str(values["LOGIN"]),
            password=str(values["PASSWORD"]),
            sender=sender,
            endpoint=endpoint,
            transliterate=flag("TRANSLITERATE", True),
            valid_hours=number("VALID_HOURS", int, None),
            timeout=number("TIMEOUT", float, 10.0),
            retries=number("RETRIES", int, 3),
            backoff=float(backoff),
            allow_insecure_http=flag("ALLOW_INSECURE_HTTP", False),
        )
    except ConfigurationError as exc:
        raise _improper(_FIELD_KEYS.get(exc.field, "URL"), sources, exc) from None

    long_messages = values.get("LONG_MESSAGES", DEFAULT_LONG_MESSAGES)
    if long_messages not in LONG_MESSAGE_MODES:
        raise MobilgroupImproperlyConfigured(
            _label("LONG_MESSAGES", sources),
            f"{long_messages!r}: unknown mode; use one of {', '.join(LONG_MESSAGE_MODES)}",
            check_id="mobilgroup.E006")
    return BackendConfig(
        settings=core,
        long_messages=cast(LongMessages, long_messages),
        replace_unencodable=flag("REPLACE_UNENCODABLE", False),
        track_delivery=flag("TRACK_DELIVERY", False),
    )
