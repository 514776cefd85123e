"""The inbox page and its JSON API: every path of the emulator other than the gateway's endpoint.

``GET /`` is the page; ``/static/...`` its own assets from the package (no external resources:
the page works with no internet); ``/api/...`` the JSON that the page and tests in any language
use. Which requests are answered at all (their ``Host``, ``Origin``, ``Content-Type``) is decided
before this module sees them, by :mod:`.guard`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from . import inbox
from .faults import KINDS

if TYPE_CHECKING:
    from .emulator import Emulator
    from .server import Connection, HttpRequest

__all__ = ["Web"]

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
JSON_TYPE = "application/json; charset=utf-8"
MAX_LIMIT = 5000


class ApiError(Exception):
    """A request the API refuses: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _static(name: str) -> bytes | None:
    if "/" in name or name.startswith(".") or not any(name.endswith(s) for s in _STATIC_TYPES):
        return None
    path = resources.files(__package__).joinpath("static").joinpath(name)
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _query(request: HttpRequest) -> dict[str, str]:
    parsed = parse_qs(urlsplit(request.target).query, keep_blank_values=True)
    return {key: values[-1] for key, values in parsed.items()}


def _int(value: str | None, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()):
        raise ApiError(400, f"{name} must be a whole number, not {value!r}")
    return int(value)


def _request_id(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise ApiError(400, f"a request id is digits, not {text!r}")
    return int(text)


class Web:
    """Routes the page, its assets and the API for one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._routes: dict[tuple[str, str], Callable[[HttpRequest], Any]] = {
            ("GET", "/api/state"): self._state,
            ("GET", "/api/messages"): self._messages,
            ("GET", "/api/accounts"): lambda request: inbox.accounts(self.emulator),
            ("GET", "/api/clock"): lambda request: inbox.clock(self.emulator),
            ("POST", "/api/clock"): self._move_clock,
            ("GET", "/api/faults"): lambda request: inbox.faults(self.emulator),
            ("POST", "/api/faults"): self._set_faults,
            ("DELETE", "/api/faults"): self._clear_faults,
            ("GET", "/api/requests"): self._requests,
            ("POST", "/api/reset"): self._reset,
        }

    # --- HTTP ----------------------------------------------------------------------------------

    def handle(self, request: HttpRequest, conn: Connection) -> None:
        path = request.path
        method = "GET" if request.method == "HEAD" else request.method
        if path.startswith("/api/"):
            self._api(method, request, conn)
            return
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        body = _static(name) if path == "/" or path.startswith("/static/") else None
        if body is None:
            conn.respond(404, b"not found: the gateway is POST /extxml.php, the inbox page is /\n")
            return
        if method != "GET":
            conn.respond(405, b"the inbox page is read with GET\n", headers=(("Allow", "GET"),))
            return
        suffix = name[name.rfind("."):]
        conn.respond(200, body, _STATIC_TYPES[suffix], headers=_SECURITY_HEADERS)

    def _api(self, method: str, request: HttpRequest, conn: Connection) -> None:
        try:
            payload = self._route(method, request)
        except ApiError as exc:
            self._json(conn, exc.status, {"error": str(exc)})
            return
        self._json(conn, 200, payload)

    def _route(self, method: str, request: HttpRequest) -> Any:
        path = request.path.rstrip("/")
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler(request)
        if path.startswith("/api/messages/") and method == "GET":
            return self._message(request, path.removeprefix("/api/messages/"))
        if any(route_path == path for _, route_path in self._routes):
            raise ApiError(405, f"{path} does not take {method}")
        raise ApiError(404, f"no API at {path}; see /api/state, /api/messages, /api/accounts, "
                            "/api/clock, /api/faults, /api/requests, /api/reset")

    @staticmethod
    def _json(conn: Connection, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        conn.respond(status, body, JSON_TYPE, headers=_SECURITY_HEADERS)

    @staticmethod
    def _body(request: HttpRequest) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    # --- reading -------------------------------------------------------------------------------

    def _state(self, request: HttpRequest) -> Any:
        query = _query(request)
        limit = min(_int(query.get("limit"), "limit", 500), MAX_LIMIT)
        return inbox.state(self.emulator, query.get("q", ""), limit)

    def _messages(self, request: HttpRequest) -> Any:
        query = _query(request)
        limit = min(_int(query.get("limit"), "limit", 500), MAX_LIMIT)
        return inbox.messages(self.emulator, query.get("q", ""), limit)

    def _message(self, request: HttpRequest, request_id: str) -> Any:
        user_id = _query(request).get("user_id")
        found = inbox.find_message(self.emulator, _request_id(request_id), user_id or None)
        if found is None:
            raise ApiError(404, f"no accepted message with request id {request_id}")
        return found

    def _requests(self, request: HttpRequest) -> Any:
        query = _query(request)
        rejected = query.get("rejected", "") not in ("", "0", "no", "false")
        limit = min(_int(query.get("limit"), "limit", 200), MAX_LIMIT)
        return inbox.requests(self.emulator, rejected=rejected, limit=limit)

    # --- changing ------------------------------------------------------------------------------

    def _move_clock(self, request: HttpRequest) -> Any:
        """``{"advance": SECONDS}`` or ``{"advance": "end"}`` (past every message's lifetime)."""
        step = self._body(request).get("advance")
        clock = self.emulator.clock
        if step == "end":
            end = inbox.end_of_lifetimes(self.emulator)
            now = clock.now()
            seconds = max((end - now).total_seconds(), 0.0) if end is not None else 0.0
        elif isinstance(step, (int, float)) and not isinstance(step, bool) and 0 <= step <= 10**8:
            seconds = float(step)
        else:
            raise ApiError(400, f"advance must be seconds (0 or more) or \"end\", not {step!r}")
        clock.advance(seconds)
        return inbox.clock(self.emulator)

    def _set_faults(self, request: HttpRequest) -> Any:
        """``{"kind": K, "count": N}`` queues a fault for the next N requests; ``{"kind": K,
        "every": true}`` adds it to those striking every request, ``"every": false`` removes
        it; ``{"quirky": BOOL}`` switches the ``</ id>`` form."""
        body = self._body(request)
        faults = self.emulator.faults
        if "quirky" in body:
            if not isinstance(body["quirky"], bool):
                raise ApiError(400, "quirky must be true or false")
            self.emulator.quirky = body["quirky"]
        kind = body.get("kind")
        if kind is not None:
            if kind not in KINDS or kind in ("body", "oversized"):
                usable = [name for name in KINDS if name not in ("body", "oversized")]
                raise ApiError(400, f"unknown fault kind {kind!r}; kinds: {', '.join(usable)}")
            params: dict[str, Any] = {}
            if kind == "delay" and "seconds" in body:
                seconds = body["seconds"]
                if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) \
                        or not 0 <= seconds <= 600:
                    raise ApiError(400, "seconds must be a number from 0 to 600")
                params["seconds"] = float(seconds)
            if "every" in body:
                every = set(faults.describe()["random"])
                if body["every"]:
                    every.add(kind)
                else:
                    every.discard(kind)
                if every:
                    faults.random(rate=1.0, kinds=sorted(every), **params)
                else:
                    faults.random(rate=0.0)
            else:
                count = body.get("count", 1)
                if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1000:
                    raise ApiError(400, "count must be a whole number from 1 to 1000")
                faults.next(kind, count, **params)
        elif "quirky" not in body:
            raise ApiError(400, "give a fault \"kind\" (with \"count\" or \"every\"), "
                                "or \"quirky\": true/false")
        return inbox.faults(self.emulator)

    def _clear_faults(self, request: HttpRequest) -> Any:
        self.emulator.faults.clear()
        return inbox.faults(self.emulator)

    def _reset(self, request: HttpRequest) -> Any:
        """Back to a fresh start, except the clock: see :meth:`Emulator.reset`."""
        self.emulator.reset()
        return inbox.state(self.emulator)
