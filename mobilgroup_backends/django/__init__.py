"""The Django adapter: ``SMS_BACKEND = "mobilgroup_backends.django.SmsBackend"`` (sends now) or
``"mobilgroup_backends.django.QueuedSmsBackend"`` (outbox, sent by a task once committed).

Works with django-sms (``SMS_BACKEND``) and django-sendsms (``SENDSMS_BACKEND``). Add
``"mobilgroup_backends.django"`` to ``INSTALLED_APPS`` (app label ``mobilgroup``) for the system
checks, the ``mobilgroup`` management command and delivery tracking. See docs/django.md.

Nothing is imported until it is used, so importing this package costs nothing and loads no model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import MobilgroupRecipientStatus, MobilgroupStatus, SmsBackend
    from .queued import QueuedSmsBackend

__all__ = ["MobilgroupRecipientStatus", "MobilgroupStatus", "QueuedSmsBackend", "SmsBackend"]


def __getattr__(name: str) -> Any:
    if name == "QueuedSmsBackend":
        from . import queued

        value: Any = queued.QueuedSmsBackend
    elif name in __all__:
        from . import backend

        value = getattr(backend, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Kept as a module attribute: django-sms imports the backend by name for every message.
    globals()[name] = value
    return value
