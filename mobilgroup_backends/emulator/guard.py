"""Which requests the emulator answers at all: the one check before any route is looked at.

A browser on the developer's machine can reach the emulator too, and the inbox holds one-time
codes. Two ways a web page would otherwise use it:

- **DNS rebinding**: a name the attacker owns is made to resolve to 127.0.0.1, and the page then
  reads and changes the emulator as its "own" origin. The browser still sends the attacker's name
  in ``Host``, so only requests for one of the emulator's own names are answered (421 otherwise).
- **Cross-site requests**: a page cannot read the answers, but it can send "simple" requests
  without asking first (a form post, a ``no-cors`` fetch with a text body). A change through the
  API is taken only as exactly ``application/json`` (a type no simple request can have) and not
  from another origin; the gateway's endpoint refuses what a browser marks as cross-site. Clients
  that are not browsers (curl, the gateway's PHP example, this package's client) send neither
  ``Origin`` nor ``Sec-Fetch-Site`` and are served as before.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

from ..config import DEFAULT_ENDPOINT
from .server import Connection, HttpRequest

__all__ = ["LOCAL_NAMES", "Guard", "Refusal", "host_name"]

#: Names every emulator answers to, wherever it listens: this machine's, and the real gateway's
#: (the gateway's PHP example writes it in ``Host`` whatever it connects to, and a name mapped
#: to the emulator in /etc/hosts is the developer's doing, never a web page's).
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "::1", str(urlsplit(DEFAULT_ENDPOINT).hostname)})
#: Listening on one of these is listening everywhere: it names no host of its own.
_EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names compared, nothing bound
#: What ``Sec-Fetch-Site`` says of a request a page on another origin made.
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})
_READING = frozenset({"GET", "HEAD"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Refusal:
    """Why a request is not answered: its status and a message that names no request data."""

    status: int
    message: str

    def answer(self, request: HttpRequest, conn: Connection) -> None:
        """Say no: in JSON on the API (as its other errors), in plain text elsewhere."""
        if request.path.startswith("/api/"):
            body = json.dumps({"error": self.message}).encode()
            conn.respond(self.status, body, "application/json; charset=utf-8")
        else:
            conn.respond(self.status, f"{self.message}\n".encode())


def host_name(value: str) -> str | None:
    """The name of a ``Host`` value or a ``--allow-host`` name, normalised for comparison
    (lower case, no port, no brackets, no trailing dot); None when it is not a host at all."""
    text = value.strip().lower()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        try:
            return str(ipaddress.IPv6Address(inside))
        except ValueError:
            return None
    if text.count(":") > 1:  # a bare IPv6 address, as given to --allow-host
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            return None
    name, colon, port = text.partition(":")
    if colon and not port.isdigit():
        return None
    name = name.rstrip(".")
    if not name or any(c in name for c in "/\\@?#% \t"):
        return None
    return name


def _media_type(content_type: str) -> str:
    message = Message()
    message["content-type"] = content_type
    return message.get_content_type()


class Guard:
    """The names an emulator answers to, and the checks every request passes first.

    ``listen_host`` is the address it listens on (a name of its own unless it is every
    interface); ``allowed_hosts`` more names (a container's service name, a machine's address).
    """

    def __init__(self, listen_host: str, allowed_hosts: Iterable[str] = (), *,
                 tls: bool = False) -> None:
        self.tls = tls
        names = set(LOCAL_NAMES)
        if listen_host not in _EVERY_INTERFACE:
            names.add(host_name(listen_host) or listen_host)
        for given in allowed_hosts:
            name = host_name(given)
            if name is None:
                raise ValueError(f"not a host name or address: {given!r}")
            names.add(name)
        self.names = frozenset(names)

    def refusal(self, request: HttpRequest, *, endpoint: bool) -> Refusal | None:
        """None when the request may be answered; ``endpoint`` when it is for the gateway's
        endpoint rather than the page or its API."""
        host = request.headers.get("host")
        if "://" in request.target:  # the absolute form names the host too, and wins over Host
            host = urlsplit(request.target).netloc
        # HTTP/1.0 clients (the gateway's PHP example) may send no Host; a browser always does.
        if host is not None and host_name(host) not in self.names:
            return Refusal(421, "this emulator answers only for its own host names; start it "
                                "with --allow-host NAME to serve another name")
        site = request.headers.get("sec-fetch-site", "").strip().lower()
        origin = request.headers.get("origin")
        foreign_origin = origin is not None and not self._own_origin(origin, host)
        if endpoint:
            if foreign_origin or site == "cross-site":
                return Refusal(403, "the gateway endpoint does not take requests from web pages "
                                    "of other sites")
            return None
        if request.method in _READING or not request.path.startswith("/api/"):
            return None
        if foreign_origin or site in _FOREIGN_SITES:
            return Refusal(403, "changes are taken only from the inbox page itself, not from "
                                "pages of other origins")
        # A bodiless DELETE (or PUT...) needs no type: a page cannot send one to another origin
        # without the browser asking first (a preflight, never granted). A POST it can.
        bodiless = (request.method != "POST" and not request.body
                    and "content-type" not in request.headers)
        if not bodiless and _media_type(request.headers.get("content-type", "")) != (
                "application/json"):
            return Refusal(415, "send changes as JSON with 'Content-Type: application/json'")
        return None

    def _own_origin(self, origin: str, host: str | None) -> bool:
        """Whether ``origin`` is the emulator's own: the scheme it serves, and the very host and
        port the request was sent to (so that a mapped container port still counts as its own)."""
        if host is None:
            return False
        try:
            parts, own = urlsplit(origin.strip()), urlsplit("//" + host.strip())
            scheme = "https" if self.tls else "http"
            origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
            host_port = own.port or _DEFAULT_PORTS[scheme]
        except ValueError:  # "null", a malformed port
            return False
        return (parts.scheme == scheme and parts.hostname is not None
                and host_name(parts.hostname) == host_name(host) and origin_port == host_port)
