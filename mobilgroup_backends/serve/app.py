"""The receiver as a WSGI application: routes, authentication, bounded bodies, answers."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ..client import MobilgroupClient
from ..config import BY_NAME, LAYERS, Resolved, django_setting, first_line, resolve
from ..errors import HIDDEN, ConfigurationError, MobilgroupError, ValidationError, error_to_dict
from ..logging.store import make_store
from ..protocol import mask_phone
from .delivery import Delivery, answer_status
from .metrics import CONTENT_TYPE_LATEST, ReceiverMetrics
from .notifications import BadPayload, Notification, from_alertmanager, from_grafana, from_send
from .routing import Routes, load_routes

__all__ = ["MAX_BODY", "ReceiverApp", "make_app"]

logger = logging.getLogger("mobilgroup_backends.serve")

#: The largest body a route reads (bytes): Alertmanager's payload for a group of a thousand
#: alerts fits; a larger one is answered 413 without being read.
MAX_BODY = 1024 * 1024

StartResponse = Callable[..., Any]

#: Route → the reader of its payload.
READERS: Mapping[str, Callable[[Any], Notification]] = {
    "/alertmanager": from_alertmanager, "/grafana": from_grafana, "/send": from_send}

_NO_TOKEN_FIX = ("set MOBILGROUP_RECEIVER_TOKEN (or MOBILGROUP_RECEIVER_TOKEN_FILE) to a long "  # noqa: S105
                 "random token, or, on a loopback address only, allow requests without one "
                 "(--no-auth)")


class HttpError(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, status: int, reason: str, message: str, **more: Any) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.payload = {"ok": False, "error": reason, "message": message, **more}


_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                405: "Method Not Allowed", 413: "Content Too Large", 422: "Unprocessable Content",
                500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def read_token(resolved: Resolved) -> str | None:
    """The token from ``receiver_token``, or the first line of ``receiver_token_file``."""
    token: str | None = resolved["receiver_token"]
    path: str | None = resolved["receiver_token_file"]
    if path is None or (token is not None and _layer(resolved, "receiver_token")
                        <= _layer(resolved, "receiver_token_file")):
        return token  # the token, unless the file was given in a stronger place (--token-file)
    where = resolved.where("receiver_token_file")
    line = first_line(path, where, "give a file whose first line is the token")
    try:
        value: str | None = BY_NAME["receiver_token"].parse(where, line)
    except ConfigurationError as exc:
        exc.value = HIDDEN
        raise
    if value is None:
        raise ConfigurationError(where, path, "the first line is empty",
                                 "write the token on the first line")
    return value


def _layer(resolved: Resolved, name: str) -> int:
    """How strong the place that set ``name`` is (0: an argument in code, a flag)."""
    return LAYERS.index(resolved.sources.get(name, LAYERS[-1]))


class ReceiverApp:
    """The alert receiver: a WSGI application (``mobilgroup serve`` runs it on waitress).

    Make it with :func:`make_app`. ``close()`` stops its summary thread and its connections.
    """

    def __init__(self, delivery: Delivery, *, token: str | None, default_phones: tuple[str, ...],
                 routes: Routes, max_body: int = MAX_BODY,
                 metrics: ReceiverMetrics | None = None) -> None:
        self.delivery = delivery
        self.default_phones = default_phones
        self.routes = routes
        self.max_body = max_body
        self.metrics = metrics or ReceiverMetrics()
        self._token = token
        self._closed = threading.Event()

    def __repr__(self) -> str:
        auth = "token" if self._token else "no authentication"
        return f"<ReceiverApp ({auth}) to {len(self.default_phones)} default phone(s)>"

    # --- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = (environ.get("PATH_INFO", "") or "/").rstrip("/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/healthz":
                self._only(method, "GET", "HEAD")
                return self._answer(start_response, 200, {"ok": True})
            if path == "/metrics":
                self._only(method, "GET", "HEAD")
                body = self.metrics.render()
                start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                          ("Content-Length", str(len(body)))])
                return [body]
            reader = READERS.get(path)
            if reader is None:
                raise HttpError(404, "not_found", f"no route {path[:80]!r}: POST to "
                                "/alertmanager, /grafana or /send")
            self._only(method, "POST")
            self._authenticate(environ)
            return self._answer(start_response, 200, self._notify(path, reader, environ))
        except HttpError as exc:
            if exc.reason not in ("gateway", "sending"):
                self.metrics.refused.labels(exc.reason).inc()
            extra = [("WWW-Authenticate", 'Bearer realm="mobilgroup", Basic realm="mobilgroup"')] \
                if exc.status == 401 else []
            if exc.status == 405:
                extra = [("Allow", "GET, HEAD" if path in ("/healthz", "/metrics") else "POST")]
            return self._answer(start_response, exc.status, exc.payload, extra)
        except Exception:  # a bug here: 500, so that the tool retries, and the traceback logged
            logger.exception("the receiver failed on %s %s", method[:10], path[:80])
            return self._answer(start_response, 500, {
                "ok": False, "error": "internal", "message": "the receiver failed; its log "
                "says why"})

    def _only(self, method: str, *allowed: str) -> None:
        if method not in allowed:
            raise HttpError(405, "method", f"{method[:10]} is not allowed here; use "
                            f"{' or '.join(allowed)}")

    def _answer(self, start_response: StartResponse, status: int, payload: Mapping[str, Any],
                headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n"
        start_response(f"{status} {_STATUS_TEXT.get(status, '')}".rstrip(),
                       [("Content-Type", "application/json; charset=utf-8"),
                        ("Content-Length", str(len(body))), *(headers or [])])
        return [body]

    # --- the request ---------------------------------------------------------------------------

    def _authenticate(self, environ: Mapping[str, Any]) -> None:
        """A bearer token, or basic authentication whose password is the token (any user name)."""
        if self._token is None:
            return
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, credentials = header.strip().partition(" ")
        given = ""
        if scheme.lower() == "bearer":
            given = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            given = decoded.partition(":")[2]
        if not given:
            raise HttpError(401, "unauthorized", "no credentials: send 'Authorization: Bearer "
                            "TOKEN' (or basic authentication with the token as password)")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self._token.encode("utf-8")):
            raise HttpError(401, "unauthorized", "wrong token")

    def _body(self, environ: Mapping[str, Any]) -> Any:
        """The JSON body, at most ``max_body`` bytes."""
        limit = self.max_body
        length_text = str(environ.get("CONTENT_LENGTH") or "").strip()
        too_large = HttpError(413, "too_large", f"the body is over {limit} bytes; for "
                              "Alertmanager set max_alerts on the webhook config")
        if length_text:
            if not length_text.isdigit():
                raise HttpError(400, "bad_json", "Content-Length is not a number")
            if int(length_text) > limit:
                raise too_large
        stream = environ["wsgi.input"]
        data = stream.read(min(int(length_text), limit + 1) if length_text else limit + 1)
        if len(data) > limit:
            raise too_large
        try:
            return json.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "bad_json", "the body is not UTF-8 text; send JSON") from None
        except ValueError as exc:
            raise HttpError(400, "bad_json", f"the body is not JSON ({exc}); send the tool's "
                            "webhook payload, or {\"to\": \"PHONE\", \"text\": \"...\"}") from None
        except RecursionError:
            raise HttpError(400, "bad_json", "the body's JSON nests too deeply; send the tool's "
                            "webhook payload") from None

    def _recipients(self, environ: Mapping[str, Any],
                    notification: Notification) -> tuple[str | tuple[str, ...], str | None]:
        """The phones as the request names them (``?to=``, else the body's ``to``), read by the
        client with every other setting, and where the request named them; else the routing
        file's or the default ones (read at start-up), and None."""
        wanted = ",".join(parse_qs(str(environ.get("QUERY_STRING", ""))).get("to", []))
        if wanted:
            return wanted, "?to="
        if notification.phones:
            return notification.phones, "to"
        phones = self.routes.phones_for(notification) or self.default_phones
        if not phones:  # the receiver's set-up: 5xx, so the tool keeps it until it is fixed
            raise HttpError(500, "no_recipient", "no recipient: add ?to=PHONE to the webhook URL, "
                            "give \"to\" in the body, or put default phones in the receiver's "
                            "URL (mobilgroup://...@USER_ID/PHONE)", field="to")
        return phones, None

    def _notify(self, route: str, reader: Callable[[Any], Notification],
                environ: Mapping[str, Any]) -> dict[str, Any]:
        body = self._body(environ)
        try:
            notification = reader(body)
        except BadPayload as exc:
            raise HttpError(400, "bad_payload", str(exc), field=exc.field) from None
        phones, named_in = self._recipients(environ, notification)
        name = route.lstrip("/")
        counted = self.metrics.notifications
        try:
            outcome = self.delivery.deliver(notification, phones)
        except MobilgroupError as exc:
            if named_in and isinstance(exc, ValidationError) and exc.field == "phones":
                raise HttpError(400, "bad_payload", f"{named_in}: {exc.problem}; {exc.fix}",
                                field=named_in) from None
            status = answer_status(exc)
            counted.labels(name, "failed" if status >= 500 else "invalid").inc()
            logger.warning("%s notification (%s) not sent, answered %d: %s", name,
                           notification.status, status, exc)
            raise HttpError(status, "gateway" if status != 422 else "sending", str(exc),
                            **{k: v for k, v in error_to_dict(exc).items()
                               if k not in ("ok", "message", "error")}) from None
        counted.labels(name, outcome.verdict).inc()
        if outcome.verdict == "held":
            self.metrics.held.labels(name).inc()
        if outcome.parts:
            self.metrics.sms.labels(name, str(outcome.accepted_earlier).lower()).inc(outcome.parts)
        logger.info("%s notification (%s, %d alert(s)) to %s: %s%s", name, notification.status,
                    notification.alerts, ", ".join(mask_phone(p) for p in outcome.phones),
                    outcome.verdict, " (accepted earlier)" if outcome.accepted_earlier else "")
        return {"ok": True, "outcome": outcome.verdict,
                "request_ids": [str(i) for i in outcome.request_ids],
                "accepted_earlier": outcome.accepted_earlier}

    def close(self) -> None:
        """Stop the summary thread (sending a pending summary) and close the connections."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self.delivery.close()
        finally:
            self.delivery.client.close()


def make_app(url: str | None = None, *, allow_no_auth: bool = False,
             routes: str | Path | None = None, max_body: int = MAX_BODY,
             url_source: str = "url", **options: Any) -> ReceiverApp:
    """The receiver, configured by the resolver every adapter uses.

    ``url`` (``mobilgroup://LOGIN:PASSWORD@USER_ID/PHONE...``) or ``MOBILGROUP_URL`` and the
    ``MOBILGROUP_*`` variables (and Django's ``MOBILGROUP`` when Django is set up) give the
    account and the default recipients; ``options`` are options of the table by name
    (``receiver_token``, ``max_sms``, ``budget``, ``max_parts``, ``prefix``...). Without a token
    it refuses to be made unless ``allow_no_auth`` (only for a server on a loopback address).
    ``routes`` is a routing file (:mod:`.routing`). ``url_source`` names ``url`` in errors
    (``--url``...).
    """
    resolved = resolve("serve", arguments=options, url=url, setting=django_setting(),
                       url_source=url_source)
    token = read_token(resolved)
    if token is None and not allow_no_auth:
        raise ConfigurationError("receiver_token", HIDDEN, "no token: anyone who reaches the "
                                 "receiver could send SMS at your expense", _NO_TOKEN_FIX,
                                 option="receiver_token")
    settings = resolved.settings
    table = load_routes(routes, region=settings.region) if routes is not None else Routes()
    store = make_store(resolved["budget"], max_sms=resolved["max_sms"],
                       per_seconds=resolved["per_seconds"],
                       dedupe_seconds=resolved["dedupe_seconds"],
                       dedupe_size=resolved["dedupe_size"], clock=time.monotonic)
    summary_phones = settings.phones or table.every_phone()
    if not summary_phones:
        logger.warning("no default recipients: notifications need ?to= on the webhook URL, and "
                       "those the alert budget holds back cannot be summarised; put phones in "
                       "the URL (mobilgroup://...@USER_ID/PHONE) or MOBILGROUP_ALERT_PHONES")
    metrics = ReceiverMetrics()
    client = MobilgroupClient.from_settings(settings)
    delivery = Delivery(client, store, prefix=resolved["prefix"],
                        failure_backoff=resolved["failure_backoff"],
                        summary_phones=summary_phones,
                        observe=metrics.latency.observe,
                        on_summary=metrics.summaries.inc)
    return ReceiverApp(delivery, token=token, default_phones=settings.phones, routes=table,
                       max_body=max_body, metrics=metrics)
