"""``SmsDevice``: a django-otp side-channel device that texts its token through Mobilgroup."""

from __future__ import annotations

import logging
from typing import Any

from django.db import models
from django.utils.translation import gettext, gettext_lazy
from django_otp.models import SideChannelDevice, ThrottlingMixin

from ...errors import ValidationError
from ...protocol import mask_phone
from ..codes import send_code
from ..guard import CodeRefused
from .conf import setting

__all__ = ["SmsDevice"]

logger = logging.getLogger("mobilgroup_backends.django.otp")


class SmsDevice(ThrottlingMixin, SideChannelDevice):  # type: ignore[misc]  # django-otp is untyped
    """A phone that receives one-time codes by SMS.

    ``generate_challenge()`` makes a token valid for ``OTP_MOBILGROUP_TOKEN_VALIDITY`` seconds
    and sends it at once, behind the toll-fraud guard; ``verify_token()`` checks it (once),
    with django-otp's throttling of failed attempts. ``number`` is the phone as written; it is
    normalized (international digits) when the code is sent.
    """

    number: models.CharField[str, str] = models.CharField(
        gettext_lazy("number"), max_length=32,
        help_text=gettext_lazy("The phone number, with its country code: +7 900 000-00-00."))

    class Meta(SideChannelDevice.Meta):  # type: ignore[misc]
        verbose_name = gettext_lazy("SMS device")

    def __str__(self) -> str:
        return f"{self.name or 'SMS'} ({mask_phone(''.join(c for c in self.number if c.isdigit()))})"

    def generate_challenge(self) -> str:
        """Send a new token; the text for the page (a refusal's text when the guard refused)."""
        validity = int(setting("OTP_MOBILGROUP_TOKEN_VALIDITY"))
        self.generate_token(length=int(setting("OTP_MOBILGROUP_TOKEN_LENGTH")),
                            valid_secs=validity, commit=False)
        # Stored before it is sent (a code that works only once saved must not arrive first),
        # by one UPDATE of the two columns: a person waits for this call.
        type(self).objects.filter(pk=self.pk).update(token=self.token,  # type: ignore[has-type]
                                                     valid_until=self.valid_until)
        if setting("OTP_MOBILGROUP_NO_DELIVERY"):
            logger.info("one-time code for SMS device %s made, not sent "
                        "(OTP_MOBILGROUP_NO_DELIVERY)", self.pk)
            return self._challenge_message()
        token = str(self.token)  # type: ignore[has-type]  # declared by django-otp (untyped)
        try:
            send_code(self.number, token, minutes=max(1, validity // 60), purpose="django_otp",
                      template=setting("OTP_MOBILGROUP_TOKEN_TEMPLATE"))
        except (CodeRefused, ValidationError) as exc:
            # A code that never left must not stay valid.
            self.token = None
            type(self).objects.filter(pk=self.pk).update(token=None)
            if isinstance(exc, CodeRefused):
                return gettext("The code was not sent: too many codes were asked for this "
                               "number, or codes cannot go to it. Try again later.")
            return gettext("The code was not sent: the phone number is not valid.")
        return self._challenge_message()

    def _challenge_message(self) -> str:
        message = setting("OTP_MOBILGROUP_CHALLENGE_MESSAGE")
        return str(message) if message else gettext("sent by SMS")

    def verify_token(self, token: Any) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        verified = bool(super().verify_token(str(token)))
        if verified:
            self.throttle_reset()
        else:
            self.throttle_increment()
        return verified

    def get_throttle_factor(self) -> int:
        return int(setting("OTP_MOBILGROUP_THROTTLE_FACTOR"))
