"""Send SMS through the Mobilgroup gateway from Django, Apprise, logging and the command line.

The core needs neither Django nor Apprise: ``import mobilgroup_backends`` loads only this file.
The names below are imported on first use, so that the pytest plugin (which every test run of
a project with this package installed loads) costs nothing until a test asks for the emulator.
Adapters live in ``mobilgroup_backends.django``, ``mobilgroup_backends.apprise`` and
``mobilgroup_backends.logging``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "MobilgroupClient": "client",
    "SendResult": "client",
    "DEFAULT_ENDPOINT": "config",
    "Settings": "config",
    "parse_url": "config",
    "redact_url": "config",
    "ConfigurationError": "errors",
    "GatewayError": "errors",
    "MobilgroupError": "errors",
    "ProtocolError": "errors",
    "TransportError": "errors",
    "ValidationError": "errors",
    "Verdict": "errors",
    "Outgoing": "outgoing",
    "DeliveryStatus": "protocol",
    "MailingStatus": "protocol",
    "RecipientStatus": "protocol",
    "StatusReport": "protocol",
    "fit_text": "protocol",
    "normalize_phones": "protocol",
}

__all__ = [
    "DEFAULT_ENDPOINT",
    "ConfigurationError",
    "DeliveryStatus",
    "GatewayError",
    "MailingStatus",
    "MobilgroupClient",
    "MobilgroupError",
    "Outgoing",
    "ProtocolError",
    "RecipientStatus",
    "SendResult",
    "Settings",
    "StatusReport",
    "TransportError",
    "ValidationError",
    "Verdict",
    "__version__",
    "fit_text",
    "normalize_phones",
    "parse_url",
    "redact_url",
]

if TYPE_CHECKING:
    from .client import MobilgroupClient, SendResult
    from .config import DEFAULT_ENDPOINT, Settings, parse_url, redact_url
    from .errors import (
        ConfigurationError,
        GatewayError,
        MobilgroupError,
        ProtocolError,
        TransportError,
        ValidationError,
        Verdict,
    )
    from .outgoing import Outgoing
    from .protocol import (
        DeliveryStatus,
        MailingStatus,
        RecipientStatus,
        StatusReport,
        fit_text,
        normalize_phones,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
