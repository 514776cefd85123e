"""``mobilgroup serve``: an alert receiver that texts Alertmanager, Grafana and Zabbix notifications.

Routes: ``POST /alertmanager`` (Alertmanager's webhook, version 4), ``POST /grafana`` (Grafana
alerting's webhook contact point), ``POST /send`` (``{"to", "text", "key"}``; also authentik's
"Generic" SMS provider and the Zabbix media type shipped in ``zabbix/``), ``GET /healthz`` and
``GET /metrics`` (Prometheus).

What it promises:

- **Authentication is required**: a bearer token (``MOBILGROUP_RECEIVER_TOKEN`` or a token file)
  or basic authentication with the token as password; without it, 401 and nothing is sent.
- **Exactly once**: each SMS part's request id is derived from the notification (group key,
  status, the alerts' fingerprints and start times, the recipients), and sent with
  ``resend=True``: a retry, in this process or another replica, is answered "accepted earlier"
  by the gateway and never sent twice.
- **Never a storm**: the logging handler's alert budget (``max_sms`` per ``per_seconds``, local or
  fleet-wide with ``budget=redis://...``) holds back what is over it, answered 200 and told in one
  summary SMS when the window reopens.
- **Nothing lost**: a failure that trying again can mend (the gateway down, an answer lost, the
  account to be fixed) is answered 5xx so that the tool retries; a payload that is not what the
  route takes is answered 400 naming the field; bodies are bounded (413).

:func:`make_app` builds the WSGI application for any server; ``mobilgroup serve`` runs it on
waitress (the ``serve`` extra).
"""

from __future__ import annotations

from importlib import resources

from .app import MAX_BODY, ReceiverApp, make_app

__all__ = ["MAX_BODY", "ReceiverApp", "make_app", "zabbix_media_type"]


def zabbix_media_type() -> str:
    """The Zabbix webhook media type (YAML, importable into Zabbix 6.0 and later) that posts
    alerts to the receiver's ``/send`` route (``mobilgroup serve --zabbix-media-type``)."""
    return (resources.files(__name__) / "zabbix" / "mobilgroup_sms.yaml").read_text("utf-8")
