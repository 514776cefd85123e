"""Send SMS through the Mobilgroup gateway from Django, Apprise, logging and the command line.

The core needs neither Django nor Apprise: ``import mobilgroup_backends`` loads only the client,
the protocol and the errors. Adapters live in ``mobilgroup_backends.django``,
``mobilgroup_backends.apprise`` and ``mobilgroup_backends.logging``.
"""

__version__ = "0.1.0"

from .client import MobilgroupClient, SendResult
from .config import DEFAULT_ENDPOINT, Settings, parse_url, redact_url
from .errors import (
    ConfigurationError,
    GatewayError,
    MobilgroupError,
    ProtocolError,
    TransportError,
    ValidationError,
)
from .protocol import (
    DeliveryStatus,
    MailingStatus,
    RecipientStatus,
    StatusReport,
    fit_text,
    normalize_phones,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "ConfigurationError",
    "DeliveryStatus",
    "GatewayError",
    "MailingStatus",
    "MobilgroupClient",
    "MobilgroupError",
    "ProtocolError",
    "RecipientStatus",
    "SendResult",
    "Settings",
    "StatusReport",
    "TransportError",
    "ValidationError",
    "__version__",
    "fit_text",
    "normalize_phones",
    "parse_url",
    "redact_url",
]
