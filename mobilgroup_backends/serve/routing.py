"""Who gets a notification: ``?to=`` on the route, else a routing file, else the URL's phones.

A routing file is JSON: keys ``receiver:NAME`` (Alertmanager's or Grafana's receiver, i.e. the
contact point) or ``LABEL=VALUE`` (matched against the notification's common labels), each with
the phones it sends to::

    {"receiver:db-team": ["+79000000001"], "severity=critical": "+79000000002,+79000000003"}

Every key that matches adds its phones (in the file's order, each phone once); when none matches
the default recipients get it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, ValidationError
from ..protocol import normalize_phones
from .notifications import Notification

__all__ = ["Routes", "load_routes"]


class Routes:
    """Routing rules, phones already normalized."""

    def __init__(self, rules: Mapping[str, Sequence[str]] | None = None) -> None:
        self.rules: dict[str, tuple[str, ...]] = {key: tuple(value)
                                                  for key, value in (rules or {}).items()}

    def every_phone(self) -> tuple[str, ...]:
        """Every phone some rule names, each once (who gets the summary without defaults)."""
        return tuple(dict.fromkeys(phone for phones in self.rules.values() for phone in phones))

    def phones_for(self, notification: Notification) -> tuple[str, ...]:
        found: list[str] = []
        for key, phones in self.rules.items():
            if key.startswith("receiver:"):
                hit = key[len("receiver:"):] == notification.receiver
            else:
                label, _, value = key.partition("=")
                hit = notification.labels.get(label) == value
            if hit:
                found.extend(phone for phone in phones if phone not in found)
        return tuple(found)


def load_routes(path: str | Path, *, region: str) -> Routes:
    """The routing file at ``path``; a :class:`ConfigurationError` naming what is wrong."""
    shown = str(path)
    try:
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError("--routes", shown, exc.strerror or str(exc),
                                 "give the path of a JSON routing file") from None
    except ValueError as exc:
        raise ConfigurationError("--routes", shown, f"not JSON ({exc})",
                                 'write {"receiver:NAME": ["PHONE"], "LABEL=VALUE": ["PHONE"]}'
                                 ) from None
    if not isinstance(data, dict):
        raise ConfigurationError("--routes", shown, "must hold a JSON object",
                                 'write {"receiver:NAME": ["PHONE"], "LABEL=VALUE": ["PHONE"]}')
    rules: dict[str, tuple[str, ...]] = {}
    for key, value in data.items():
        if not key.startswith("receiver:") and "=" not in key:
            raise ConfigurationError(f"--routes {key!r}", shown, "not a rule",
                                     "name a receiver (receiver:NAME) or a label (LABEL=VALUE)")
        try:
            rules[key] = normalize_phones(value, region=region)
        except ValidationError as exc:
            raise ConfigurationError(f"--routes {key!r}", exc.value, exc.problem, exc.fix) from None
    return Routes(rules)
