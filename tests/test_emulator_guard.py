"""The emulator answers only for its own names and takes changes only from its own page: real
HTTP against a running ``mobilgroup emulator``, with the headers a hostile page or a rebound DNS
name makes a browser send (the browser itself is in tests/test_emulator_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from mobilgroup_backends import MobilgroupClient, protocol
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.emulator.guard import Guard, host_name
from tests.conftest import RunCommand
from tests.test_cli_emulator import URL_LINE, Program

#: Every route the emulator has, with a body that would change something where one does.
ROUTES: list[tuple[str, str, bytes]] = [
    ("GET", "/", b""),
    ("GET", "/static/inbox.js", b""),
    ("GET", "/api/state", b""),
    ("GET", "/api/messages", b""),
    ("GET", "/api/messages/1", b""),
    ("GET", "/api/accounts", b""),
    ("GET", "/api/clock", b""),
    ("GET", "/api/faults", b""),
    ("GET", "/api/requests", b""),
    ("POST", "/api/reset", b"{}"),
    ("POST", "/api/faults", b'{"kind": "http_500", "count": 5}'),
    ("POST", "/api/clock", b'{"advance": 86400}'),
    ("DELETE", "/api/faults", b""),
    ("POST", "/extxml.php", b""),  # filled in with a real send below
    ("GET", "/nothing-here", b""),
]
TEXT = "Ваш код 8120"
JSON = {"Content-Type": "application/json"}


class Running:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.page = program.until(r"^Inbox page:\s+(http://127\.0\.0\.1:\d+/)$").group(1)
        self.url = program.until(URL_LINE.pattern).group(1)
        program.until(r"Press Ctrl\+C")
        self.base = self.page.rstrip("/")
        self.port = int(self.base.rsplit(":", 1)[1])

    def state(self) -> dict[str, Any]:
        """What a change would show in: messages, faults, accounts, clock, every exchange."""
        state = requests.get(self.base + "/api/state", timeout=10).json()
        exchanges = requests.get(self.base + "/api/requests?limit=5000", timeout=10).json()
        return {"messages": state["messages"], "total": state["total"],
                "faults": state["faults"], "accounts": state["accounts"],
                "clock_moved": state["clock"]["end_of_lifetimes"], "requests": exchanges}


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    program = Program("emulator", "--port", "0", "--allow-host", "sms-emulator",
                      "--allow-host", "10.0.0.5", "--quiet")
    try:
        yield Running(program)
    finally:
        assert program.stop() == 0


@pytest.fixture
def sent(running: Running) -> Iterator[str]:
    """The emulator with one accepted message in it; the page's own reset afterwards."""
    with MobilgroupClient.from_url(running.url) as client:
        client.send("79039587454", TEXT)
    yield TEXT
    requests.post(running.base + "/api/reset", json={}, timeout=10).raise_for_status()


def send_body(running: Running) -> bytes:
    """A real send request, as the client writes it, for the demo account."""
    return protocol.build_send(protocol.Credentials("1000", "demo", "demo-password"),
                               phones=("79039587454",), text="Чужой текст",
                               request_id=protocol.new_request_id())


def call(running: Running, method: str, path: str, body: bytes,
         headers: dict[str, str]) -> requests.Response:
    if path == "/extxml.php":
        body = send_body(running)
        headers = {"Content-Type": "application/xml", **headers}
    elif body:
        headers = {**JSON, **headers}
    return requests.request(method, running.base + path, data=body, headers=headers, timeout=10,
                            allow_redirects=False)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080", "127.0.0.1.nip.io",
                                  "localhost.attacker.example", "", "[::2]", "10.0.0.6"])
def test_a_foreign_host_gets_421_and_nothing_else(running: Running, sent: str, method: str,
                                                  path: str, body: bytes, host: str) -> None:
    before = running.state()
    answer = call(running, method, path, body, {"Host": host})
    assert answer.status_code == 421
    assert "--allow-host" in answer.text
    assert TEXT not in answer.text and "79039587454" not in answer.text
    assert "demo" not in answer.text and "<response>" not in answer.text
    assert running.state() == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "[::1]",
                                  "sms-emulator", "10.0.0.5", "sms.mobilgroup.ru"])
def test_its_own_names_are_answered(running: Running, sent: str, host: str) -> None:
    port_host = f"{host}:{running.port}"
    shown = requests.get(running.base + "/api/messages", headers={"Host": port_host}, timeout=10)
    assert shown.status_code == 200 and [m["text"] for m in shown.json()] == [TEXT]
    # An own origin (as the page on that name sends it) may change things.
    origin = {"Host": port_host, "Origin": f"http://{port_host}", "Sec-Fetch-Site": "same-origin"}
    cleared = requests.post(running.base + "/api/reset", json={}, headers=origin, timeout=10)
    assert cleared.status_code == 200 and cleared.json()["total"] == 0
    gateway = call(running, "POST", "/extxml.php", b"", origin)
    assert gateway.status_code == 200 and b"<result>OK</result>" in gateway.content


CHANGES = [route for route in ROUTES if route[0] not in ("GET",) and route[1].startswith("/api/")]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
@pytest.mark.parametrize("content_type", [
    "text/plain; application/json", "text/plain;application/json", "text/plain",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=application/json",
    "application/jsonp", "application/json-patch", "text/plain, application/json", ""])
def test_a_change_is_taken_only_as_exactly_json(running: Running, sent: str, method: str,
                                                path: str, body: bytes,
                                                content_type: str) -> None:
    before = running.state()
    answer = requests.request(method, running.base + path, data=body or b"{}", timeout=10,
                              headers={"Content-Type": content_type})
    assert answer.status_code == 415
    assert "application/json" in answer.json()["error"]
    assert running.state() == before


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON",
                                          "application/json; charset=utf-8"])
def test_exact_json_in_any_spelling_is_taken(running: Running, sent: str,
                                             content_type: str) -> None:
    answer = requests.post(running.base + "/api/reset", data=b"{}", timeout=10,
                           headers={"Content-Type": content_type})
    assert answer.status_code == 200 and answer.json()["total"] == 0


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
@pytest.mark.parametrize("headers", [
    {"Origin": "http://attacker.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # another port of the same machine: another origin
    {"Origin": "https://127.0.0.1:{port}"},  # another scheme
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
])
def test_a_change_from_another_origin_is_refused(running: Running, sent: str, method: str,
                                                 path: str, body: bytes,
                                                 headers: dict[str, str]) -> None:
    before = running.state()
    shown = {name: value.format(port=running.port) for name, value in headers.items()}
    answer = call(running, method, path, body, shown)
    assert answer.status_code == 403
    assert "origin" in answer.json()["error"]
    assert running.state() == before


@pytest.mark.parametrize("headers", [
    {"Origin": "http://attacker.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site",
     "Content-Type": "application/x-www-form-urlencoded"},
])
def test_the_endpoint_refuses_what_a_browser_marks_cross_site(
        running: Running, sent: str, headers: dict[str, str]) -> None:
    before = running.state()
    answer = call(running, "POST", "/extxml.php", b"", headers)
    assert answer.status_code == 403 and "<response>" not in answer.text
    assert running.state() == before


def test_clients_that_are_not_browsers_work_as_before(running: Running, sent: str) -> None:
    # No Origin, no Sec-Fetch-Site: this package's client, curl, the PHP example.
    with MobilgroupClient.from_url(running.url) as client:
        assert client.balance() > 0
    assert call(running, "POST", "/extxml.php", b"", {}).status_code == 200
    # The same-origin page, and a page opened by typing its address (Sec-Fetch-Site: none).
    own = {"Origin": running.base, "Sec-Fetch-Site": "same-origin"}
    assert requests.post(running.base + "/api/faults", json={"quirky": True}, headers=own,
                         timeout=10).json()["quirky"] is True
    assert requests.delete(running.base + "/api/faults", headers=own, timeout=10).ok
    assert requests.post(running.base + "/api/faults", json={"quirky": False}, timeout=10,
                         headers={"Sec-Fetch-Site": "none"}).json()["quirky"] is False
    # Reading, even when a page elsewhere links to it (it cannot read the answer).
    assert requests.get(running.base + "/api/messages", timeout=10,
                        headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


@pytest.mark.parametrize(("given", "name"), [
    ("Emulator", "emulator"), ("emulator:8080", "emulator"), ("[::1]:80", "::1"),
    ("::1", "::1"), ("host.docker.internal.", "host.docker.internal"), ("10.0.0.5", "10.0.0.5"),
    ("", None), ("a b", None), ("x:port", None), ("[::1", None), ("[zz]:1", None),
    ("user@host", None), ("[::1]x", None),
])
def test_host_names_are_compared_normalised(given: str, name: str | None) -> None:
    assert host_name(given) == name


def test_an_allowed_host_that_is_not_a_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        Guard("127.0.0.1", ["a b"])


def test_on_every_interface_the_printed_address_is_answered() -> None:
    program = Program("emulator", "--port", "0", "--host", "0.0.0.0", "--quiet")
    try:
        page = program.until(r"^Inbox page:\s+(\S+)$").group(1)
        program.until(r"from another machine or container")
        remote = program.until(URL_LINE.pattern).group(1)
        program.until(r"Press Ctrl\+C to stop")  # serving: a Ctrl-C now is a clean stop
        host = re.search(r"endpoint=http%3A%2F%2F([^%]+)%3A", remote)
        assert host is not None
        # Sent to 127.0.0.1 (tests contact nothing else), named as another machine names it.
        named = requests.get(page + "api/messages", headers={"Host": host.group(1)}, timeout=10)
        assert named.status_code == 200
        foreign = requests.get(page + "api/messages", headers={"Host": "other.example"},
                               timeout=10)
        assert foreign.status_code == 421
    finally:
        assert program.stop() == 0


def test_allow_host_takes_only_host_names(mobilgroup_command: RunCommand) -> None:
    done = mobilgroup_command("emulator", "--allow-host", "http://emulator/")
    assert done.returncode == 2
    assert "--allow-host" in done.stderr and "host name or address" in done.stderr


def test_over_https_its_own_origin_is_the_https_one(tls_emulator: Emulator, ca_file: str) -> None:
    base = f"https://127.0.0.1:{tls_emulator.port}"
    tls_emulator.faults.next("http_500")

    def clear(origin: str) -> int:
        return requests.delete(base + "/api/faults", headers={"Origin": origin}, timeout=10,
                               verify=ca_file).status_code

    assert clear(f"http://127.0.0.1:{tls_emulator.port}") == 403  # the scheme differs
    assert tls_emulator.faults.pending == 1
    assert clear(base) == 200
    assert tls_emulator.faults.pending == 0


def test_an_absolute_target_is_checked_as_its_host(running: Running, sent: str) -> None:
    import socket

    for target, status in ((b"http://attacker.example/api/messages", b"421"),
                           (f"http://127.0.0.1:{running.port}/api/messages".encode(), b"200")):
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert (TEXT.encode() in answer) == (status == b"200")
