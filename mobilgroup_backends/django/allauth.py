"""django-allauth's phone codes through Mobilgroup: ``ACCOUNT_ADAPTER =
"mobilgroup_backends.django.allauth.AccountAdapter"``.

:class:`PhoneSmsMixin` sends allauth's three texts (the verification or login code, "no account
uses this number", "an account with this number exists") at once, behind the toll-fraud guard,
and refuses a number the guard would refuse already in the form (``clean_phone``), the way
allauth shows a problem with an input. A refusal at the moment of sending (a limit reached
meanwhile) sends nothing and raises nothing: allauth's flows do not expect an error there, and
must not tell a bot which numbers have accounts.

:class:`AccountAdapter` adds phone storage: the numbers live in django-otp devices of this
package (:class:`~mobilgroup_backends.django.otp.models.SmsDevice`, ``confirmed`` = verified), so
the apps ``django_otp`` and ``mobilgroup_backends.django.otp`` must be installed. Projects that
keep the phone on their own user model put the mixin in front of their own adapter instead.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.utils.translation import gettext

from ..errors import ValidationError
from ..protocol import normalize_phones
from .codes import send_code, send_notice
from .guard import CodeRefused, would_admit
from .settings import load_config

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

__all__ = ["AccountAdapter", "PhoneSmsMixin"]


def _international(phone: str) -> str:
    return normalize_phones([phone], region=load_config().settings.region)[0]


def _minutes(kwargs: dict[str, Any]) -> int:
    from allauth.account import app_settings

    # Login codes carry ``reauthentication``; phone verification codes do not.
    seconds = (app_settings.LOGIN_BY_CODE_TIMEOUT if "reauthentication" in kwargs
               else app_settings.PHONE_VERIFICATION_TIMEOUT)
    return max(1, int(seconds) // 60)


class PhoneSmsMixin:
    """The sending half: put it before your own adapter class."""

    def clean_phone(self, phone: str) -> str:
        phone = super().clean_phone(phone)  # type: ignore[misc]
        try:
            number = _international(phone)
        except ValidationError:
            raise forms.ValidationError(gettext("Enter a valid phone number.")) from None
        if would_admit(number) is not None:
            raise forms.ValidationError(gettext(
                "A code cannot be sent to this number now: too many codes were asked for it, "
                "or codes cannot go to it."), code="mobilgroup_refused")
        return phone

    # A refusal is logged, signalled and counted by the guard; see the module's docstring.

    def send_verification_code_sms(self, user: AbstractBaseUser, phone: str, code: str,
                                   **kwargs: Any) -> None:
        with contextlib.suppress(CodeRefused):
            send_code(phone, code, minutes=_minutes(kwargs), purpose="allauth_code")

    def send_unknown_account_sms(self, phone: str, **kwargs: Any) -> None:
        with contextlib.suppress(CodeRefused):
            send_notice(phone, "unknown_account", purpose="allauth_unknown_account")

    def send_account_already_exists_sms(self, phone: str) -> None:
        with contextlib.suppress(CodeRefused):
            send_notice(phone, "account_exists", purpose="allauth_account_exists")


class AccountAdapter(PhoneSmsMixin, DefaultAccountAdapter):  # type: ignore[misc]
    """allauth's default adapter, with phone codes sent through Mobilgroup and phone numbers
    stored in :class:`~mobilgroup_backends.django.otp.models.SmsDevice` rows."""

    device_name = "phone"

    def _devices(self) -> Any:
        from .otp.models import SmsDevice

        return SmsDevice.objects

    def set_phone(self, user: AbstractBaseUser, phone: str, verified: bool) -> None:
        number = _international(phone)
        devices = self._devices()
        devices.filter(user=user, name=self.device_name).exclude(number=number).delete()
        devices.update_or_create(user=user, name=self.device_name,
                                 defaults={"number": number, "confirmed": verified})

    def get_phone(self, user: AbstractBaseUser) -> tuple[str, bool] | None:
        device = self._devices().filter(user=user, name=self.device_name).first()
        if device is None:
            return None
        return "+" + device.number, bool(device.confirmed)

    def set_phone_verified(self, user: AbstractBaseUser, phone: str) -> None:
        self._devices().filter(user=user, name=self.device_name,
                               number=_international(phone)).update(confirmed=True)

    def get_user_by_phone(self, phone: str) -> AbstractBaseUser | None:
        try:
            number = _international(phone)
        except ValidationError:
            return None
        devices = self._devices().filter(name=self.device_name, number=number)
        device = devices.order_by("-confirmed", "pk").select_related("user").first()
        return None if device is None else device.user
