"""``SmsDevice``: a django-otp side-channel device that texts its token through Mobilgroup."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections, models, router, transaction
from django.utils.translation import gettext, gettext_lazy
from django_otp.models import SideChannelDevice, ThrottlingMixin

from ...errors import ValidationError
from ...protocol import mask_phone
from ..codes import send_code
from ..guard import CodeRefused
from .conf import setting

__all__ = ["SmsDevice"]

logger = logging.getLogger("mobilgroup_backends.django.otp")
#: The UPDATE statements of :meth:`SmsDevice._store`, by database alias, vendor and fields.
_UPDATES: dict[tuple[str, str, tuple[str, ...]], str] = {}


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
        self._store("token", "valid_until")
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
            self._store("token")
            if isinstance(exc, CodeRefused):
                return gettext("The code was not sent: too many codes were asked for this "
                               "number, or codes cannot go to it. Try again later.")
            return gettext("The code was not sent: the phone number is not valid.")
        return self._challenge_message()

    def _store(self, *names: str) -> None:
        """Write these fields of the device to its row, as ``filter(pk=...).update(...)`` would
        (no signals, no other column), with a statement made once per database and fields:
        the ORM would build it anew for every code, a third of the code's own cost."""
        model = type(self)
        alias = router.db_for_write(model, instance=self)
        connection = connections[alias]
        fields = [model._meta.get_field(name) for name in names]
        key = (alias, connection.vendor, names)
        sql = _UPDATES.get(key)
        if sql is None:
            quote = connection.ops.quote_name
            columns = ", ".join(f"{quote(field.column)} = %s" for field in fields)
            # Names from the model, quoted by the database's own rules; values are parameters.
            sql = _UPDATES[key] = (f"UPDATE {quote(model._meta.db_table)} SET {columns} "  # noqa: S608
                                   f"WHERE {quote(model._meta.pk.column)} = %s")
        params = [field.get_db_prep_save(getattr(self, field.attname), connection)
                  for field in fields]
        params.append(model._meta.pk.get_db_prep_value(self.pk, connection))
        with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
            cursor.execute(sql, params)

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
