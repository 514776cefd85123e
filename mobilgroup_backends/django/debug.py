"""An exception reporter filter that also hides passwords inside ``mobilgroup://`` URLs.

Django's own filter hides a setting when its *name* looks secret (``PASSWORD``, ``SECRET_KEY``),
so ``MOBILGROUP["PASSWORD"]`` is hidden on the debug page and in error emails, but the password
inside ``MOBILGROUP["URL"]`` is not. Use this one::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "mobilgroup_backends.django.debug.SafeExceptionReporterFilter"

The check ``mobilgroup.W012`` suggests it when a URL with a password is configured.
"""

from __future__ import annotations

from typing import Any

from django.views import debug

from ..config import SCHEME, redact_url

__all__ = ["SafeExceptionReporterFilter"]

_PREFIX = f"{SCHEME}:"


class SafeExceptionReporterFilter(debug.SafeExceptionReporterFilter):
    """Django's filter, plus ``mobilgroup://`` URLs with their password masked wherever they are
    (in any setting, nested in dicts and lists, and in frame variables)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return _redact(cleansed)

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        return [(name, _redact(value))
                for name, value in super().get_traceback_frame_variables(request, tb_frame)]


def _redact(value: Any) -> Any:
    if isinstance(value, str) and value.lower().startswith(_PREFIX):
        return redact_url(value)
    return value
