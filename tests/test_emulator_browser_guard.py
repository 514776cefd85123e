"""A hostile page in a real headless Chromium tries every trick against a running emulator:
nothing changes, while the inbox page's own buttons still work.

The hostile page is served from another port on 127.0.0.1 (another origin, the same site), and
again under a name that Chromium resolves to 127.0.0.1 (``--host-resolver-rules``): what DNS
rebinding makes of a name an attacker owns.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from tests.helpers import wait_until
from tests.test_emulator_browser import LIVE, REBOUND, browser

__all__ = ["browser"]  # the module's Chromium fixture, shared

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chromium")]

TEXT = "Код входа: 7719"

#: Each trick as the page runs it; ``EMULATOR`` is the emulator's origin as the page names it.
ATTACK = """<!doctype html><meta charset="utf-8"><title>prize</title>
<iframe name="sink" style="display:none"></iframe>
<form id="form" method="post" enctype="text/plain" target="sink" action="EMULATOR/extxml.php">
<input type="hidden" id="xml"></form>
<form id="reset" method="post" target="sink" action="EMULATOR/api/reset"><input name="x" value="{}"></form>
<script>
const E = "EMULATOR";
const xml = '<?xml version="1.0" encoding="utf-8"?><request><user_id>1000</user_id>' +
  '<user>demo</user><pwd>demo-password</pwd><command>send</command><phone>79230000002</phone>' +
  '<message>fetch</message><id>770000000002</id></request>';
const results = {};
async function attempt(name, run) {
  try { const answer = await run(); results[name] = answer.type + " " + answer.status; }
  catch (error) { results[name] = "failed: " + error; }
}
async function main() {
  // A text/plain form posts "name=value": cut the XML at its first "=" to post it whole.
  const formXml = xml.replace("fetch", "form").replace("770000000002", "770000000001");
  const field = document.getElementById("xml");
  field.name = formXml.slice(0, formXml.indexOf("="));
  field.value = formXml.slice(formXml.indexOf("=") + 1);
  const sloppy = "text/plain; application/json";
  await attempt("reset", () => fetch(E + "/api/reset", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": sloppy}, body: "{}"}));
  await attempt("faults", () => fetch(E + "/api/faults", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": sloppy}, body: '{"kind": "http_500", "count": 5}'}));
  await attempt("clock", () => fetch(E + "/api/clock", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": sloppy}, body: '{"advance": 86400}'}));
  await attempt("plain", () => fetch(E + "/api/reset", {method: "POST", mode: "no-cors",
    body: "{}"}));
  await attempt("cors-json", () => fetch(E + "/api/reset", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: "{}"}));
  await attempt("delete", () => fetch(E + "/api/faults", {method: "DELETE"}));
  await attempt("extxml", () => fetch(E + "/extxml.php", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: xml}));
  await attempt("read", () => fetch(E + "/api/messages").then(async answer => {
    results["read-text"] = await answer.text(); return answer; }));
  document.getElementById("form").submit();
  await new Promise(done => setTimeout(done, 300));
  document.getElementById("reset").submit();
  await new Promise(done => setTimeout(done, 300));
  document.title = "done";
}
main();
</script>"""


class _Attacker(BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(page: str) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = type("Attacker", (_Attacker,), {"page": page.encode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def seen(emulator: Emulator) -> dict[str, Any]:
    return {"outbox": [m.request_id for m in emulator.outbox], "faults": emulator.faults.describe(),
            "clock": emulator.clock.now(), "requests": len(emulator.requests),
            "balance": emulator.account.balance, "quirky": emulator.quirky}


@pytest.mark.parametrize("named", ["127.0.0.1", REBOUND])
def test_a_hostile_page_changes_nothing(browser: Browser, frozen_emulator: Emulator,
                                        frozen_client: MobilgroupClient, named: str) -> None:
    frozen_client.send("79039587454", TEXT)
    frozen_emulator.faults.next("delay", 1, seconds=0.0)  # one pending fault to wipe
    before = seen(frozen_emulator)
    target = f"http://{named}:{frozen_emulator.port}"
    server, thread = serve(ATTACK.replace("EMULATOR", target))
    context = browser.new_context()
    try:
        page = context.new_page()
        # Under the rebound name, the page's requests carry that name in Host.
        where = f"http://{named}:{server.server_address[1]}/"
        page.goto(where)
        page.wait_for_function("document.title === 'done'", timeout=15000)
        results = page.evaluate("results")
        if named == REBOUND:
            # Rebound, the page may read and send what it likes: the emulator still says 421.
            rebound = context.new_page()
            answer = rebound.goto(f"{target}/api/messages")
            assert answer is not None and answer.status == 421
            assert TEXT not in rebound.content()
            assert TEXT not in str(results)
    finally:
        context.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert "failed" in results["cors-json"]  # the preflight is never granted
    assert seen(frozen_emulator) == before, results
    assert frozen_emulator.errors == []


def test_the_inbox_pages_own_buttons_still_work(browser: Browser,
                                                frozen_emulator: Emulator,
                                                frozen_client: MobilgroupClient) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://localhost:{frozen_emulator.port}/")
        page.wait_for_selector("#live:text('live')", timeout=LIVE)
        sent = frozen_client.send("79039587454", TEXT)
        page.wait_for_selector(f'li.message[data-request-id="{sent.request_id}"]', timeout=LIVE)
        page.click('button[data-fault="close_after"]')
        assert wait_until(lambda: frozen_emulator.faults.pending == 1, timeout=3)
        page.click("#clear-faults")
        assert wait_until(lambda: frozen_emulator.faults.pending == 0, timeout=3)
        page.click("#advance-hour")
        assert wait_until(lambda: frozen_emulator.clock.now().hour == 13, timeout=3)
        page.click("#clear")
        assert wait_until(lambda: len(frozen_emulator.outbox) == 0, timeout=3)
    finally:
        context.close()
