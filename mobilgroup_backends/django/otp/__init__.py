"""The django-otp plugin: add ``"mobilgroup_backends.django.otp"`` to ``INSTALLED_APPS`` (after
``"django_otp"``) for :class:`~mobilgroup_backends.django.otp.models.SmsDevice`. See docs/otp.md."""
