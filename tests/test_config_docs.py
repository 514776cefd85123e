"""docs/configuration.md lists every option of the option table, as the table says it."""

from __future__ import annotations

from pathlib import Path

from mobilgroup_backends.config import ADAPTERS, OPTIONS, Option

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _range(option: Option) -> str:
    kinds = {"digits": "digits", "text": "text", "secret": "text (secret)",
             "alias": "latin letters, digits, space, hyphen; at most 9",
             "url": "an https:// URL", "phones": "phone numbers", "bool": "yes / no",
             "hours": "1 to 48 hours", "region": "a country code (RU, KZ...)",
             "choice": "split, truncate, error", "redis-url": "a redis:// URL",
             "regions": "country codes (RU, KZ...; 001)", "task-or-now": "task, now"}
    if option.kind in kinds or option.low is None:
        return kinds.get(option.kind, option.kind)
    unit = "seconds" if option.kind.startswith("seconds") else "whole number"
    low = f"more than {option.low:g}" if option.kind == "seconds>0" else f"{option.low:g}"
    return f"{unit}, {low} to {option.high:g}" if option.high is not None else \
        f"{unit}, at least {option.low:g}"


def _shown(value: object) -> str:
    if value in (None, (), ""):
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _default(option: Option) -> str:
    own = ", ".join(f"{adapter} {_shown(value)}"
                    for adapter, value in option.adapter_defaults.items())
    return f"`{_shown(option.default)}`" + (f" ({own})" if own else "")


def _url(option: Option) -> str:
    if option.name in ("user_id", "login", "password"):
        return "`LOGIN:PASSWORD@USER_ID`"
    if option.name == "phones":
        return "`/PHONE`, `to=`"
    keys = [option.url, *option.url_aliases] if option.url else []
    return ", ".join(f"`{key}=`" for key in keys)


def _users(option: Option) -> str:
    if len(option.adapters) == len(ADAPTERS):
        return "all"
    return ", ".join(sorted(option.adapters))


def table() -> str:
    """The option table as docs/configuration.md shows it."""
    lines = ["| option | URL | `MOBILGROUP` | environment | value | default | used by | meaning |",
             "|---|---|---|---|---|---|---|---|"]
    for option in OPTIONS:
        lines.append(f"| `{option.name}` | {_url(option)} | `{option.setting}` | "
                     f"`{option.env}` | {_range(option)} | {_default(option)} | "
                     f"{_users(option)} | {option.doc} |")
    return "\n".join(lines)


def test_the_configuration_page_shows_the_option_table() -> None:
    assert table() in DOC.read_text(encoding="utf-8"), (
        "docs/configuration.md's option table differs from config.OPTIONS; paste:\n" + table())
