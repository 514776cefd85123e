"""The optional Django app: system checks, the ``mobilgroup`` command, delivery tracking."""

from __future__ import annotations

from django.apps import AppConfig


class MobilgroupConfig(AppConfig):
    name = "mobilgroup_backends.django"
    label = "mobilgroup"
    verbose_name = "Mobilgroup SMS"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
