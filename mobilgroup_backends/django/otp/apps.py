from __future__ import annotations

from django.apps import AppConfig


class OtpMobilgroupConfig(AppConfig):
    """django-otp's SMS device through Mobilgroup (label ``otp_mobilgroup``, the way django-otp
    labels its plugins: ``otp_email``, ``otp_totp``)."""

    name = "mobilgroup_backends.django.otp"
    label = "otp_mobilgroup"
    verbose_name = "OTP SMS (Mobilgroup)"
    default_auto_field = "django.db.models.AutoField"
