"""Settings from keyword arguments, a ``mobilgroup://`` URL, or the environment.

One URL form configures every adapter, the way a database URL does::

    mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE1/PHONE2?sender=ALIAS&valid=HOURS&translit=yes&endpoint=URL

Everything here is checked before any request is made, and every error names the setting and
shows its value with the password masked.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .errors import ConfigurationError, ValidationError
from .protocol import check_credentials, check_sender, check_valid_hours, normalize_phones

__all__ = [
    "DEFAULT_ENDPOINT",
    "SCHEME",
    "Settings",
    "check_endpoint",
    "is_loopback",
    "parse_bool",
    "parse_url",
    "redact_url",
    "settings_from_env",
]

DEFAULT_ENDPOINT = "https://sms.mobilgroup.ru/extxml.php"
SCHEME = "mobilgroup"
MASK = "***"

_TRUE = {"1", "yes", "true", "on", "y"}
_FALSE = {"0", "no", "false", "off", "n"}


def parse_bool(name: str, value: object) -> bool:
    """``yes``/``no``-style settings (URL query, environment) as a bool, or a ConfigurationError."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(name, value, "not a yes/no value", "use yes or no (1/0, true/false)")


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine."""
    host = host.lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, allow_insecure_http: bool = False) -> str:
    """The gateway address, refused when it would expose the password.

    Every request carries the password in its body, so plain ``http://`` is allowed only to this
    machine (the emulator) unless the caller explicitly opts in.
    """
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            "endpoint", endpoint, "not an http(s) URL",
            f"leave it unset for the real gateway ({DEFAULT_ENDPOINT}) or give a full URL")
    if parts.username or parts.password:
        raise ConfigurationError(
            "endpoint", f"{parts.scheme}://***@{parts.hostname}", "must not carry credentials",
            "put login and password in the mobilgroup:// URL or settings, not in the endpoint")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise ConfigurationError(
            "endpoint", endpoint, "plain http outside this machine would send the password "
            "unencrypted", "use https://, or allow insecure http explicitly if you really mean it")
    return endpoint


@dataclass(frozen=True)
class Settings:
    """Everything needed to talk to the gateway, plus the defaults an adapter sends with.

    ``phones`` are default recipients (alert targets); the client itself does not use them.
    """

    user_id: str
    login: str
    password: str = field(repr=False)
    sender: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    phones: tuple[str, ...] = ()
    transliterate: bool = True
    valid_hours: int | None = None
    timeout: float = 10.0
    retries: int = 3
    backoff: float = 0.25
    allow_insecure_http: bool = False

    def __post_init__(self) -> None:
        try:
            check_credentials(self.user_id, self.login, self.password)
        except ValidationError as exc:
            raise ConfigurationError(exc.field, exc.value, exc.problem, exc.fix) from None
        if not str(self.user_id).isdigit():
            raise ConfigurationError(
                "user_id", self.user_id, "the client ID must be digits",
                "copy the numeric client ID from your Mobilgroup account")
        if not self.login:
            raise ConfigurationError("login", self.login, "the login is empty",
                                     "give the account login")
        if not self.password:
            raise ConfigurationError("password", "", "the password is empty",
                                     "give the account password")
        try:
            check_sender(self.sender)
            check_valid_hours(self.valid_hours)
        except ValidationError as exc:
            raise ConfigurationError(exc.field, exc.value, exc.problem, exc.fix) from None
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout <= 600):
            raise ConfigurationError("timeout", self.timeout, "out of range",
                                     "give seconds, more than 0 and at most 600")
        if not (isinstance(self.retries, int) and 0 <= self.retries <= 10):
            raise ConfigurationError("retries", self.retries, "out of range",
                                     "give a whole number from 0 to 10")
        if not (isinstance(self.backoff, (int, float)) and 0 <= self.backoff <= 60):
            raise ConfigurationError("backoff", self.backoff, "out of range",
                                     "give seconds from 0 to 60")
        check_endpoint(self.endpoint, self.allow_insecure_http)

    def __repr__(self) -> str:
        return (f"Settings(user_id={self.user_id!r}, login={self.login!r}, password='***', "
                f"sender={self.sender!r}, endpoint={self.endpoint!r}, phones={self.phones!r})")

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def to_url(self, *, privacy: bool = False) -> str:
        """The ``mobilgroup://`` URL for these settings; ``privacy`` masks the password."""
        password = MASK if privacy else quote(self.password, safe="")
        path = "".join("/" + phone for phone in self.phones)
        query: list[str] = []
        if self.sender:
            query.append("sender=" + quote(self.sender, safe=""))
        if self.valid_hours is not None:
            query.append(f"valid={self.valid_hours}")
        if not self.transliterate:
            query.append("translit=no")
        if self.endpoint != DEFAULT_ENDPOINT:
            query.append("endpoint=" + quote(self.endpoint, safe=""))
        if self.timeout != 10.0:
            query.append(f"timeout={self.timeout:g}")
        if self.retries != 3:
            query.append(f"retries={self.retries}")
        tail = ("?" + "&".join(query)) if query else ""
        return f"{SCHEME}://{quote(self.login, safe='')}:{password}@{self.user_id}{path}{tail}"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs.

    Errs on the side of hiding: everything between the login and the ``@`` that ends the user
    part is masked, even when the password was not percent-encoded as it should be, and a
    malformed URL with no ``@`` loses everything after its login.
    """
    scheme, colon, rest = url.partition(":")
    if not colon:
        return url
    slashes = len(rest) - len(rest.lstrip("/"))
    prefix, rest = f"{scheme}:{rest[:slashes]}", rest[slashes:]
    query = rest.find("?")
    at = (rest if query < 0 else rest[:query]).rfind("@")
    if at < 0:
        at = rest.rfind("@")
    if at < 0:
        login, colon, after = rest.partition(":")
        port = after.split("/", 1)[0]
        if not colon or (scheme.lower() != SCHEME and port.isdigit()):
            return url  # host:port, not login:password (a mobilgroup:// URL has no port)
        return f"{prefix}{login}:{MASK}"
    login, colon, _ = rest[:at].partition(":")
    shown = f"{login}:{MASK}" if colon else MASK
    return f"{prefix}{shown}@{rest[at + 1:]}"


_URL_KEYS = {"sender", "from", "valid", "translit", "endpoint", "timeout", "retries", "to"}


def parse_url(url: str, *, extra_keys: frozenset[str] = frozenset()) -> tuple[Settings, dict[str, str]]:
    """Settings from a ``mobilgroup://`` URL, and any query options named in ``extra_keys``.

    Unknown options are refused (a typo such as ``sendr=`` must not silently fall back to the
    default alias); an adapter that understands more options passes their names in ``extra_keys``.
    """
    shown = redact_url(url) if isinstance(url, str) else url
    if not isinstance(url, str):
        raise ConfigurationError("url", shown, "not a string", f"give a {SCHEME}:// URL")
    parts = urlsplit(url.strip())
    if parts.scheme != SCHEME:
        raise ConfigurationError(
            "url", shown, f"the scheme must be {SCHEME}://",
            f"write it as {SCHEME}://LOGIN:PASSWORD@USER_ID/PHONE?sender=ALIAS")
    userinfo, at, host = parts.netloc.rpartition("@")
    login, colon, password = userinfo.partition(":")
    if not at or not colon or not login or not password:
        raise ConfigurationError(
            "url", shown, "login and password are missing",
            f"write it as {SCHEME}://LOGIN:PASSWORD@USER_ID (percent-encode '@' as %40)")
    phones: list[str] = [unquote(p) for p in parts.path.split("/") if p]
    options: dict[str, str] = {}
    extras: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "to":
            phones.extend(p for p in value.replace(";", ",").split(",") if p.strip())
        elif key in _URL_KEYS:
            options["sender" if key == "from" else key] = value
        elif key in extra_keys:
            extras[key] = value
        else:
            known = ", ".join(sorted(_URL_KEYS | extra_keys))
            raise ConfigurationError(f"url option {key}", value, "unknown option",
                                     f"remove it or use one of: {known}")
    kwargs: dict[str, Any] = {
        "user_id": unquote(host),
        "login": unquote(login),
        "password": unquote(password),
        "sender": options.get("sender") or None,
    }
    if phones:
        kwargs["phones"] = _phones(phones)
    if "valid" in options:
        kwargs["valid_hours"] = _number("valid", options["valid"], int)
    if "translit" in options:
        kwargs["transliterate"] = parse_bool("translit", options["translit"])
    if options.get("endpoint"):
        kwargs["endpoint"] = options["endpoint"]
    if "timeout" in options:
        kwargs["timeout"] = _number("timeout", options["timeout"], float)
    if "retries" in options:
        kwargs["retries"] = _number("retries", options["retries"], int)
    return Settings(**kwargs), extras


def _phones(phones: Any) -> tuple[str, ...]:
    try:
        return normalize_phones(phones)
    except ValidationError as exc:
        raise ConfigurationError("phones", exc.value, exc.problem, exc.fix) from None


def _number(name: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(name, value, "not a number",
                                 f"give a {'whole ' if kind is int else ''}number") from None


ENV_PREFIX = "MOBILGROUP_"


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``MOBILGROUP_URL``, or from ``MOBILGROUP_USER_ID``, ``_LOGIN``, ``_PASSWORD``,
    ``_SENDER`` and ``_ENDPOINT``. The URL wins when both are set."""
    env = os.environ if environ is None else environ
    url = env.get("MOBILGROUP_URL", "").strip()
    if url:
        return parse_url(url)[0]
    missing = [name for name in ("USER_ID", "LOGIN", "PASSWORD") if not env.get(ENV_PREFIX + name)]
    if missing:
        names = ", ".join(ENV_PREFIX + name for name in missing)
        raise ConfigurationError(
            "environment", names, "not set",
            "set MOBILGROUP_URL=mobilgroup://LOGIN:PASSWORD@USER_ID, or MOBILGROUP_USER_ID, "
            "MOBILGROUP_LOGIN and MOBILGROUP_PASSWORD")
    kwargs: dict[str, Any] = {
        "user_id": env[ENV_PREFIX + "USER_ID"].strip(),
        "login": env[ENV_PREFIX + "LOGIN"].strip(),
        "password": env[ENV_PREFIX + "PASSWORD"],
        "sender": env.get(ENV_PREFIX + "SENDER") or None,
    }
    if env.get(ENV_PREFIX + "ENDPOINT"):
        kwargs["endpoint"] = env[ENV_PREFIX + "ENDPOINT"].strip()
    return Settings(**kwargs)
