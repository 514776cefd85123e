"""An exception reporter filter that also hides passwords inside ``mobilgroup://`` URLs.

Django's own filter hides a setting when its *name* looks secret (``PASSWORD``, ``SECRET_KEY``),
so ``MOBILGROUP["PASSWORD"]`` is hidden on the debug page and in error emails, but the password
inside ``MOBILGROUP["URL"]`` is not. Use this one::

    DEFAULT_EXCEPTION_REPORTER_FILTER = "mobilgroup_backends.django.debug.SafeExceptionReporterFilter"

The check ``mobilgroup.W012`` suggests it when a URL with a password is configured, in
``MOBILGROUP`` or in the environment (``MOBILGROUP_URL``: under ``runserver`` the environment is
part of ``request.META``, which the debug page shows).
"""

from __future__ import annotations

import re
from typing import Any

from django.views import debug

from ..config import SCHEME, redact_url

__all__ = ["SafeExceptionReporterFilter"]

_PREFIX = f"{SCHEME}:"
_PACKAGE = __name__.split(".", 1)[0]


class SafeExceptionReporterFilter(debug.SafeExceptionReporterFilter):
    """Django's filter, plus ``mobilgroup://`` URLs with their password masked wherever they are:
    in any setting and any frame variable, nested in dicts, lists and tuples. In this package's
    own frames, variables and keys named like secrets (``password``) are hidden as well."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        # Also request.META's entries: get_safe_request_meta cleanses them through here.
        if isinstance(key, str) and key.upper() == _URL_VARIABLE and isinstance(value, str) \
                and not value.lstrip().lower().startswith(_PREFIX):
            return self.cleansed_substitute  # MOBILGROUP_URL, whatever it holds
        return _redact(super().cleanse_setting(key, value))

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        if str(tb_frame.f_globals.get("__name__", "")).startswith(_PACKAGE):
            return [(name, self.cleanse_setting(name, value)) for name, value in variables]
        return [(name, _redact(value)) for name, value in variables]


_URL_VARIABLE = "MOBILGROUP_URL"
# A mobilgroup:// URL anywhere in a text (a command line, a message), up to white space or a quote.
_EMBEDDED_URL = re.compile(rf"{SCHEME}://[^\s'\"<>]+", re.IGNORECASE)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        if _PREFIX not in value.lower():
            return value
        stripped = value.strip()
        if stripped.lower().startswith(_PREFIX) and not any(c.isspace() for c in stripped):
            return redact_url(stripped)
        return _EMBEDDED_URL.sub(lambda match: redact_url(match.group()), value)
    if isinstance(value, dict):
        return {key: _redact(item) for key, item in value.items()}
    if type(value) in (list, tuple):  # not their subclasses: named tuples keep their shape
        return type(value)(_redact(item) for item in value)
    return value
