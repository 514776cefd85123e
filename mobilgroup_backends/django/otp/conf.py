"""The plugin's settings, named the way django-otp's own plugins name theirs (``OTP_EMAIL_*``,
``OTP_TWILIO_*``); the gateway account, the guard and sending come from ``MOBILGROUP``."""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

__all__ = ["DEFAULTS", "setting"]

DEFAULTS: dict[str, Any] = {
    # Seconds a code stays valid.
    "OTP_MOBILGROUP_TOKEN_VALIDITY": 300,
    # Digits of a code.
    "OTP_MOBILGROUP_TOKEN_LENGTH": 6,
    # The SMS text with {code} (or {token}), {site} and {minutes}; None: the translated default.
    "OTP_MOBILGROUP_TOKEN_TEMPLATE": None,
    # What generate_challenge() returns for the page to show; None: "sent by SMS", translated.
    "OTP_MOBILGROUP_CHALLENGE_MESSAGE": None,
    # Development: make the code but send nothing (the code is never logged: for a working
    # login in development, point MOBILGROUP at the emulator and read it on its inbox page).
    "OTP_MOBILGROUP_NO_DELIVERY": False,
    # ThrottlingMixin: the delay after failed verifications grows by this factor; 0 turns it off.
    "OTP_MOBILGROUP_THROTTLE_FACTOR": 1,
}


#: The values read so far. A setting a project does not define costs Django an exception on
#: every read, and generate_challenge() reads five while a person waits; ``override_settings``
#: tells of a change (``setting_changed``).
_values: dict[str, Any] = {}


def setting(name: str) -> Any:
    try:
        return _values[name]
    except KeyError:
        value = _values[name] = getattr(django_settings, name, DEFAULTS[name])
        return value


def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting in DEFAULTS:
        _values.clear()


setting_changed.connect(_forget, dispatch_uid="mobilgroup_backends.django.otp.conf")
