"""One-time codes: their texts, and sending them at once through the core, behind the guard.

Every plug point (``two_factor.Gateway``, the django-otp ``SmsDevice``, the allauth
``AccountAdapter``) sends through :func:`send_code`: the ``MOBILGROUP`` settings as the Django
backend resolves them, the toll-fraud guard (:mod:`.guard`), then the process's shared client
(one keep-alive connection), never the outbox: a person is waiting at a form. Request ids,
retries, ``maybe_sent`` and the deadline are the client's.

The texts are translatable (Russian and English ship with the app ``mobilgroup_backends.django``)
and short enough for one SMS in either alphabet; a site name too long for that is shortened. The
code itself is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext, gettext_noop

from ..client import SendResult, shared_client
from ..errors import ConfigurationError, ValidationError
from ..protocol import MAX_TEXT_UNICODE, mask_phone
from .guard import GuardLimits, admit
from .settings import MobilgroupImproperlyConfigured, load_resolved

__all__ = ["CODE_VALID_HOURS", "code_text", "notice_text", "send_code", "send_notice", "site_name"]

logger = logging.getLogger("mobilgroup_backends.django.codes")

#: A code is worthless after minutes: it lives the gateway's shortest lifetime, so a phone that
#: was off for a day does not get yesterday's code.
CODE_VALID_HOURS = 1
#: What the texts are measured against: one SMS even without transliteration.
ONE_SMS = MAX_TEXT_UNICODE


#: The texts by kind: (with a site name, without one), each translated when it is used.
_TEXTS = {
    "code": (gettext_noop("{code} is your {site} code. Valid {minutes} min."),
             gettext_noop("{code} is your code. Valid {minutes} min.")),
    "unknown_account": (gettext_noop("{site}: no account uses this number."),
                        gettext_noop("No account uses this number.")),
    "account_exists": (gettext_noop("{site}: an account with this number exists."),
                       gettext_noop("An account with this number exists.")),
}


def site_name(request: Any = None, *, sender: str | None = None) -> str:
    """The name of the site for the texts: the Sites framework's current site when it is
    installed, else the ``SENDER`` alias (``sender``, or the setting's), else nothing."""
    from django.apps import apps

    if apps.is_installed("django.contrib.sites"):
        from django.contrib.sites.shortcuts import get_current_site

        name = getattr(get_current_site(request), "name", "")
        if name:
            return str(name)
    if sender is None:
        sender = load_resolved().settings.sender
    return sender or ""


def _render(kind: str, template: str | None, site: str, limit: int, **values: Any) -> str:
    """The text, with the site name shortened until it fits ``limit``."""
    texts = _TEXTS[kind]
    text = ""
    for size in range(len(site), -1, -1):
        name = site[:size].rstrip()
        # Only the text used is translated (a look-up in the active catalogue each time).
        chosen = template if template is not None else gettext(texts[0] if name else texts[1])
        text = chosen.format(site=name, **values).strip()
        if len(text) <= limit:
            return text
    raise ValidationError("text", text, f"{len(text)} characters, more than one SMS ({limit})",
                          "shorten the text template")


def code_text(code: str, *, minutes: int, site: str | None = None, template: str | None = None,
              limit: int = ONE_SMS) -> str:
    """The SMS carrying ``code``: ``template`` (``{code}``/``{token}``, ``{site}``,
    ``{minutes}``) or the translated default."""
    return _render("code", template, site_name() if site is None else site, limit, code=code,
                   token=code, minutes=minutes)


def notice_text(kind: str, *, site: str | None = None, limit: int = ONE_SMS) -> str:
    """allauth's texts without a code: ``"unknown_account"`` or ``"account_exists"``."""
    return _render(kind, None, site_name() if site is None else site, limit)


def send_code(phone: Any, code: str, *, minutes: int, purpose: str,
              template: str | None = None) -> SendResult:
    """Send ``code`` to ``phone`` now, in :func:`code_text`, once the guard admits it.

    Raises :class:`~.guard.CodeRefused` (nothing sent), ``ValidationError`` (a malformed
    number or template: nothing sent) or another ``MobilgroupError`` from the client
    (``maybe_sent`` says whether it may have gone out). ``purpose`` names the plug point in logs
    and the signal.
    """
    return _send(phone, lambda site: code_text(code, minutes=minutes, site=site,
                                               template=template), purpose)


def send_notice(phone: Any, kind: str, *, purpose: str) -> SendResult:
    """Send one of allauth's texts without a code (see :func:`notice_text`), like a code."""
    return _send(phone, lambda site: notice_text(kind, site=site), purpose)


def _send(phone: Any, text_for: Callable[[str], str], purpose: str) -> SendResult:
    # Resolved once for the text, the guard and the client: a person is waiting.
    resolved = load_resolved()
    core = resolved.settings
    try:
        client = shared_client(core)
    except ConfigurationError as exc:
        raise MobilgroupImproperlyConfigured("MOBILGROUP", str(exc)) from None
    # The core applies every setting (sender, alphabet, region...); a code must fit one SMS,
    # whatever LONG_MESSAGES says for other texts, and lives the gateway's shortest lifetime.
    outgoing = client.prepare([phone], text_for(site_name(sender=core.sender or "")),
                              valid_hours=CODE_VALID_HOURS, long_messages="error")
    number = outgoing.phones[0]
    admit(number, purpose=purpose, limits=GuardLimits.from_resolved(resolved))
    (result,) = client.send_prepared(outgoing)
    if logger.isEnabledFor(logging.INFO):  # the masked phone is made only for a line written
        logger.info("one-time code (%s) sent to %s: request id %s", purpose, mask_phone(number),
                    result.request_id)
    return result
