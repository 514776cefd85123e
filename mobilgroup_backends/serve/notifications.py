"""What the tools post, read into one shape, with the SMS text and the request ids it goes out as.

Pure: no I/O. Each reader takes the decoded JSON body and returns a :class:`Notification`, or
raises :class:`BadPayload` naming the field that is wrong. The text is made short (status, alert
name, the most telling labels, the summary, the count of alerts); fitting it to the parts allowed
(``max_parts``) is the client's, as for every message.

The request ids are derived from the notification itself, never drawn at random, so that a
retry of the same notification (Alertmanager and Grafana retry when an answer is lost) carries
the same ids in whichever receiver process gets it, and the gateway answers "accepted earlier".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BadPayload", "Notification", "derived_request_id", "from_alertmanager", "from_grafana",
           "from_send", "request_ids"]

#: Labels worth their room in an SMS, in this order, after the group's own labels.
TELLING_LABELS = ("severity", "instance", "job", "service", "namespace", "cluster")
#: Annotations that say what is wrong, best first.
SUMMARY_ANNOTATIONS = ("summary", "message", "description")

_ID_SPAN = 9 * 10**17  # ids of 18 digits, like the client's fresh ones


class BadPayload(ValueError):
    """The body is JSON but not what the route takes: ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}; {fix}")
        self.field = field
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Notification:
    """One notification as the receiver sends it.

    ``identity`` is what makes it this notification and no other (None: nothing does, each
    request is new); ``phones`` are the recipients the payload names (empty: the route decides);
    ``labels`` and ``receiver`` are what a routing file matches.
    """

    source: str
    status: str
    text: str
    identity: tuple[Any, ...] | None
    phones: tuple[str, ...] = ()
    receiver: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    alerts: int = 1


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(name, f"must be a JSON object, not {_kind(value)}",
                         "send the tool's webhook payload unchanged")
    return value


def _strings(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    mapping = _object(value, name)
    return {str(key): str(item) for key, item in mapping.items()}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _alerts(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    alerts = body.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise BadPayload("alerts", "must be a non-empty list" if isinstance(alerts, list)
                         else f"must be a list, not {_kind(alerts)}",
                         "send the tool's webhook payload unchanged")
    return [_object(alert, f"alerts[{n}]") for n, alert in enumerate(alerts)]


def _status(body: Mapping[str, Any]) -> str:
    status = body.get("status")
    if status not in ("firing", "resolved"):
        raise BadPayload("status", f"must be 'firing' or 'resolved', not {status!r}"[:120],
                         "send the tool's webhook payload unchanged")
    return str(status)


def _group_text(body: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]], status: str) -> str:
    """``[FIRING:2] HighLatency (severity=critical, job=api): p99 above 2 s``."""
    group = _strings(body.get("groupLabels"), "groupLabels")
    common = _strings(body.get("commonLabels"), "commonLabels")
    annotations = _strings(body.get("commonAnnotations"), "commonAnnotations")
    first_labels = _strings(alerts[0].get("labels"), "alerts[0].labels")
    first_annotations = _strings(alerts[0].get("annotations"), "alerts[0].annotations")
    same = [a for a in alerts if a.get("status", status) == status]
    truncated = body.get("truncatedAlerts") or 0
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise BadPayload("truncatedAlerts", f"must be a count, not {_kind(truncated)}",
                         "send the tool's webhook payload unchanged")
    count = len(same) + (truncated if status == "firing" else 0)
    name = group.get("alertname") or common.get("alertname") or first_labels.get("alertname", "")
    shown = {k: v for k, v in group.items() if k != "alertname"}
    for key in TELLING_LABELS:
        if key in common and key not in shown:
            shown[key] = common[key]
    summary = next((source[key] for key in SUMMARY_ANNOTATIONS
                    for source in (annotations, first_annotations) if source.get(key)), "")
    head = f"[{status.upper()}:{count}]" if count > 1 else f"[{status.upper()}]"
    text = f"{head} {name}".rstrip()
    if shown:
        text += " (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"
    if summary:
        text += f": {summary}"
    return text


def _identity(source: str, body: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]],
              status: str) -> tuple[Any, ...]:
    """Group key, status, and every alert's fingerprint and start: what a retry repeats."""
    marks = sorted((str(a.get("fingerprint") or json.dumps(a.get("labels"), sort_keys=True)),
                    str(a.get("startsAt", "")), str(a.get("status", status))) for a in alerts)
    return (source, str(body.get("groupKey", "")), status, tuple(marks))


def _from_group(source: str, body: Any) -> Notification:
    body = _object(body, "the body")
    alerts = _alerts(body)
    status = _status(body)
    return Notification(
        source, status, _group_text(body, alerts, status), _identity(source, body, alerts, status),
        receiver=str(body.get("receiver", "")),
        labels=_strings(body.get("commonLabels"), "commonLabels"), alerts=len(alerts))


def from_alertmanager(body: Any) -> Notification:
    """Alertmanager's webhook payload (version 4)."""
    return _from_group("alertmanager", body)


def from_grafana(body: Any) -> Notification:
    """Grafana alerting's webhook contact point payload: Alertmanager's shape with more fields
    (``title``, ``message``, ``state``...), which the SMS leaves out: it is made the same way."""
    return _from_group("grafana", body)


def _field(body: Mapping[str, Any], *names: str) -> Any:
    return next((body[name] for name in names if body.get(name) not in (None, "")), None)


def from_send(body: Any) -> Notification:
    """``{"to": ..., "text": ..., "key": ...}``, or authentik's ``{"From", "To", "Body"}``.

    ``to`` is one phone, several separated by commas, or a list; left out, the route decides.
    ``key``, when given (the Zabbix media type gives the event's), makes a retry of the same
    request safe: it goes out once. Without one each request is a new SMS.
    """
    body = _object(body, "the body")
    text = _field(body, "text", "Body", "message")
    if not isinstance(text, str) or not text.strip():
        raise BadPayload("text", "missing or empty" if text is None else
                         f"must be a string, not {_kind(text)}",
                         'send {"to": "+79000000000", "text": "..."}')
    to = _field(body, "to", "To")
    if to is None:
        phones: tuple[str, ...] = ()
    elif isinstance(to, str):
        phones = tuple(p for p in to.replace(";", ",").split(",") if p.strip())
    elif isinstance(to, list) and all(isinstance(p, str) for p in to):
        phones = tuple(to)
    else:
        raise BadPayload("to", f"must be a phone, a comma-separated string or a list of "
                         f"strings, not {_kind(to)}", 'send "to": "+79000000000"')
    key = body.get("key")
    if key is not None and (not isinstance(key, (str, int)) or isinstance(key, bool)
                            or not str(key).strip()):
        raise BadPayload("key", "must be a non-empty string", "leave it out, or give the "
                         "event's id (a retry with the same key is sent once)")
    identity = None if key is None else ("send", str(key).strip())
    return Notification("send", "firing", text, identity, phones=phones)


def derived_request_id(*identity: Any) -> int:
    """A request id of 18 digits that is a function of ``identity`` alone."""
    digest = hashlib.sha256(json.dumps(identity, ensure_ascii=True, separators=(",", ":"),
                                       default=str).encode("ascii")).digest()
    return 10**17 + int.from_bytes(digest[:16], "big") % _ID_SPAN


def request_ids(identity: tuple[Any, ...], phones: Sequence[str], parts: int) -> list[int]:
    """One id per part of the notification whose ``identity`` is given, derived from it and its
    recipients (two routes to different phones are two requests)."""
    return [derived_request_id(identity, sorted(phones), part, parts) for part in range(parts)]
