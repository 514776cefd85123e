"""django-two-factor-auth's SMS gateway: ``TWO_FACTOR_SMS_GATEWAY =
"mobilgroup_backends.django.two_factor.Gateway"``.

The code goes out at once through :func:`~mobilgroup_backends.django.codes.send_code` (the
``MOBILGROUP`` settings, the toll-fraud guard, the core's client). The gateway sends text
messages only: ``make_call`` is refused, and the system check ``mobilgroup.W020`` warns when
``TWO_FACTOR_CALL_GATEWAY`` names this class.

A refusal of the guard shows the way django-two-factor-auth shows a failed challenge: the setup
wizard (a device not saved yet) catches the exception and tells the person the code could not be
sent; at login (a confirmed device) the token step renders as usual, without a code, so the
person can still use a backup token, and the refusal is logged, signalled and counted.
"""

from __future__ import annotations

from typing import Any

from .codes import send_code
from .guard import CodeRefused
from .settings import MobilgroupImproperlyConfigured

__all__ = ["TOKEN_MINUTES", "Gateway"]

#: django-two-factor-auth accepts a TOTP token for five 30-second steps after it was made: the
#: text promises the whole minutes of that.
TOKEN_MINUTES = 2
GATEWAY_PATH = "mobilgroup_backends.django.two_factor.Gateway"


def _number(device: Any) -> str:
    number = device.number
    return str(getattr(number, "as_e164", number))


def _being_set_up(device: Any) -> bool:
    """The setup wizard's device is not saved yet (nor confirmed); a login's is both."""
    return getattr(device, "pk", None) is None or not getattr(device, "confirmed", True)


class Gateway:
    """Sends django-two-factor-auth's tokens as SMS through Mobilgroup."""

    def send_sms(self, device: Any, token: str) -> None:
        try:
            send_code(_number(device), token, minutes=TOKEN_MINUTES, purpose="two_factor")
        except CodeRefused:
            if _being_set_up(device):
                raise  # the setup wizard catches it and says the code was not sent
            # The login view does not catch: the person falls back to a backup token.

    def make_call(self, device: Any, token: str) -> None:
        raise MobilgroupImproperlyConfigured(
            "TWO_FACTOR_CALL_GATEWAY",
            f"{GATEWAY_PATH} sends text messages and cannot make voice calls; point "
            "TWO_FACTOR_CALL_GATEWAY at a gateway that calls, or leave it unset so that "
            "django-two-factor-auth offers SMS only", check_id="mobilgroup.W020")
