"""The emulator's inbox page and JSON API, over real HTTP on 127.0.0.1, and its request log."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
import requests

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.emulator.lifecycle import Fate, Mailing, Timing
from mobilgroup_backends.errors import AuthenticationFailed, TransportError
from mobilgroup_backends.protocol import fit_text
from tests.helpers import FROZEN_PASSWORD, FROZEN_START

TEXT = "Привет! Ваш код: 4521"
PHONES = ["79039587454", "79130000000", "79231119999"]  # delivered, undeliverable, failing
# A password no page or answer may show, in any spelling.


def base(emulator: Emulator) -> str:
    return f"http://127.0.0.1:{emulator.port}"


def get(frozen_emulator: Emulator, path: str, status: int = 200) -> Any:
    answer = requests.get(base(frozen_emulator) + path, timeout=10)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    return answer.json()


def post(frozen_emulator: Emulator, path: str, body: dict[str, Any], status: int = 200) -> Any:
    answer = requests.post(base(frozen_emulator) + path, json=body, timeout=10)
    assert answer.status_code == status, answer.text
    return answer.json()


def test_the_page_and_its_own_assets(frozen_emulator: Emulator) -> None:
    page = requests.get(base(frozen_emulator) + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {"/static/inbox.js", "/static/inbox.css", "/static/favicon.svg"} <= set(assets)
    for text in [page.text] + [requests.get(base(frozen_emulator) + asset, timeout=10).text
                               for asset in set(assets)]:
        # Everything the page loads comes from the emulator itself: the machines it runs on
        # may have no internet.
        assert not re.search(r"(?:src|href|url\()\s*=?\s*[\"']?(?:https?:)?//", text)
    script = requests.get(base(frozen_emulator) + "/static/inbox.js", timeout=10)
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "innerHTML" not in script.text  # texts are shown with textContent, never parsed
    assert requests.head(base(frozen_emulator) + "/", timeout=10).content == b""
    for missing in ("/static/nothing.js", "/static/../web.py", "/favicon.ico", "/static/"):
        assert requests.get(base(frozen_emulator) + missing, timeout=10).status_code == 404
    assert requests.post(base(frozen_emulator) + "/", timeout=10).status_code == 405
    assert frozen_emulator.requests == []  # the page is not an exchange with the frozen_emulator


def test_messages_newest_first_with_every_field(frozen_emulator: Emulator,
                                                frozen_client: MobilgroupClient) -> None:
    first = frozen_client.send(PHONES, TEXT, sender="Shop", valid_hours=2)
    second = frozen_client.send("79039587454", "Second", transliterate=False,
                         schedule=datetime(2026, 5, 4, 13, 30))
    messages = get(frozen_emulator, "/api/messages")
    assert [m["request_id"] for m in messages] == [str(second.request_id), str(first.request_id)]
    newest, oldest = messages
    assert oldest["text"] == TEXT and oldest["phones"] == PHONES
    assert oldest["sender"] == oldest["sender_shown"] == "Shop"
    assert (oldest["rus_sms"], oldest["limit"], oldest["length"]) == (False, 140, len(TEXT))
    assert (oldest["valid_hours"], oldest["lifetime_ends"]) == (2, "2026-05-04T14:00:00")
    assert (oldest["received_at"], oldest["schedule"]) == ("2026-05-04T12:00:00", None)
    assert (oldest["part"], oldest["parts"], oldest["status"]) == (1, 1, "started")
    assert [r["status"] for r in oldest["recipients"]] == ["queued"] * 3
    assert (newest["rus_sms"], newest["limit"], newest["sender"]) == (True, 64, None)
    assert newest["sender_shown"] == "Mobilgrup"  # the account's default alias
    assert newest["schedule"] == "2026-05-04T13:30:00"
    assert newest["lifetime_ends"] == "2026-05-04T14:30:00"  # counted from the schedule
    assert get(frozen_emulator, "/api/messages?limit=1") == [newest]


def test_statuses_and_timelines_follow_the_clock(frozen_emulator: Emulator,
                                                 frozen_client: MobilgroupClient) -> None:
    sent = frozen_client.send(PHONES, TEXT)
    path = f"/api/messages/{sent.request_id}"
    recipients = get(frozen_emulator, path)["recipients"]
    assert [r["fate"] for r in recipients] == ["deliver", "undeliverable", "fail"]
    assert [[step["status"] for step in r["timeline"]] for r in recipients] == [
        ["queued", "sent", "delivered"], ["queued", "sent", "undelivered"], ["queued", "error"]]
    assert all(step["reached"] is (step["status"] == "queued")
               for r in recipients for step in r["timeline"])

    clock = post(frozen_emulator, "/api/clock", {"advance": 60})
    assert clock["now"] == "2026-05-04T12:01:00"
    assert clock["end_of_lifetimes"] == "2026-05-04T13:00:00"
    message = get(frozen_emulator, path)
    assert [(r["status"], r["code"]) for r in message["recipients"]] == [
        ("delivered", 1), ("sent", 8), ("error", 16)]
    assert message["status"] == "started"
    # The page's answer matches what a client asking the frozen_emulator gets.
    report = frozen_client.status(sent.request_id)
    assert [int(r.status) for r in report.recipients] == [1, 8, 16]

    clock = post(frozen_emulator, "/api/clock", {"advance": "end"})
    assert clock["now"] == clock["end_of_lifetimes"] == "2026-05-04T13:00:00"
    message = get(frozen_emulator, path)
    assert [r["status"] for r in message["recipients"]] == ["delivered", "undelivered", "error"]
    assert message["status"] == "finished"
    assert all(step["reached"] for r in message["recipients"] for step in r["timeline"])
    assert post(frozen_emulator, "/api/clock", {"advance": "end"})["now"] == "2026-05-04T13:00:00"
    assert get(frozen_emulator, "/api/clock") == clock
    for wrong in ({"advance": -1}, {"advance": "soon"}, {"advance": True}, {}):
        assert "advance" in post(frozen_emulator, "/api/clock", wrong, status=400)["error"]


@pytest.mark.parametrize("fate", list(Fate))
def test_a_timeline_agrees_with_the_status_at_every_minute(fate: Fate) -> None:
    mailing = Mailing(1, ("79039587454",), (fate,), FROZEN_START, None, 1,
                      Timing(send_delay=timedelta(minutes=1), deliver_delay=timedelta(minutes=3)))
    for minute in range(90):
        now = FROZEN_START + timedelta(minutes=minute)
        reached = [step for step in mailing.plan(fate) if step[1] <= now]
        assert reached[-1] == mailing.recipient(fate, now)


def test_one_message_by_id(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    sent = frozen_client.send("79039587454", TEXT)
    assert get(frozen_emulator, f"/api/messages/{sent.request_id}")["text"] == TEXT
    assert get(frozen_emulator, f"/api/messages/{sent.request_id}?user_id=1000")["text"] == TEXT
    assert "no accepted message" in get(frozen_emulator, f"/api/messages/{sent.request_id}?user_id=9",
                                        status=404)["error"]
    assert "no accepted message" in get(frozen_emulator, "/api/messages/42", status=404)["error"]
    assert "digits" in get(frozen_emulator, "/api/messages/abc", status=400)["error"]


def test_search(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    code = frozen_client.send("79039587454", TEXT, sender="Shop")
    other = frozen_client.send("79231234567", "Order shipped")

    def found(query: str) -> list[str]:
        return [m["request_id"] for m in get(frozen_emulator, "/api/messages?q=" + quote(query))]

    assert found("ПРИВЕТ") == found("код") == [str(code.request_id)]
    assert found("+7 923") == found("7923123") == [str(other.request_id)]
    assert found(str(code.request_id)) == [str(code.request_id)]
    assert found("shop") == [str(code.request_id)]
    assert found("") == [str(other.request_id), str(code.request_id)]
    assert found("nothing like it") == []


def test_split_texts_show_their_parts(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    long_text = " ".join(["слово"] * 50)
    pieces = fit_text(long_text, 140)
    assert len(pieces) == 3
    for piece in pieces:
        frozen_client.send("79039587454", piece)
    frozen_client.send("79039587454", "Unrelated")
    frozen_client.send("79039587454", "Another, short: not a part of the one before")
    messages = get(frozen_emulator, "/api/messages")
    assert [(m["part"], m["parts"]) for m in messages] == [(1, 1), (1, 1), (3, 3), (2, 3), (1, 3)]


def test_accounts_without_passwords(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    frozen_emulator.add_account(user_id="2000", login="ops", password="other-secret", blocked=True)
    frozen_client.send(PHONES, TEXT)
    assert get(frozen_emulator, "/api/accounts") == [
        {"user_id": "1000", "login": "demo", "balance": "97", "blocked": False,
         "sender": "Mobilgrup"},
        {"user_id": "2000", "login": "ops", "balance": "100", "blocked": True,
         "sender": "Mobilgrup"},
    ]


def test_faults_from_the_api(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    faults = post(frozen_emulator, "/api/faults", {"kind": "close_after"})
    assert faults["queued"] == ["close_after"] and frozen_emulator.faults.pending == 1
    with pytest.raises(TransportError) as lost:
        frozen_client.send("79039587454", TEXT)
    assert lost.value.maybe_sent
    assert len(frozen_emulator.outbox) == 1  # processed, answer lost

    post(frozen_emulator, "/api/faults", {"kind": "http_500", "every": True})
    post(frozen_emulator, "/api/faults", {"kind": "delay", "every": True, "seconds": 0})
    assert get(frozen_emulator, "/api/faults")["random"] == ["delay", "http_500"]
    post(frozen_emulator, "/api/faults", {"kind": "delay", "every": False})
    for _ in range(3):
        with pytest.raises(TransportError):
            frozen_client.balance()
    assert requests.delete(base(frozen_emulator) + "/api/faults", timeout=10).json()["random"] == []
    assert frozen_client.balance() == 99

    rejected = get(frozen_emulator, "/api/requests?rejected=1")
    assert [r["fault"] for r in rejected] == ["http_500"] * 3 + ["close_after"]
    assert rejected[-1]["command"] == "send" and rejected[-1]["phones"] == ["79039587454"]
    assert "closed without an answer" in rejected[-1]["fault_meaning"]
    assert len(get(frozen_emulator, "/api/requests")) == 5

    assert post(frozen_emulator, "/api/faults", {"quirky": True})["quirky"] is True
    raw = requests.post(frozen_emulator.endpoint, timeout=10, data=(
        '<?xml version="1.0" encoding="windows-1251"?><request><user_id>1000</user_id>'
        "<user>demo</user><pwd>x</pwd><command>balance</command></request>"))
    assert b"</response >" in raw.content
    post(frozen_emulator, "/api/faults", {"quirky": False})
    assert frozen_emulator.quirky is False

    for wrong, words in (({"kind": "meltdown"}, "unknown fault kind"),
                         ({"kind": "body"}, "unknown fault kind"),
                         ({"kind": "delay", "seconds": "long"}, "seconds"),
                         ({"kind": "http_500", "count": 0}, "count"),
                         ({}, "kind"), ({"quirky": "yes"}, "quirky")):
        assert words in post(frozen_emulator, "/api/faults", wrong, status=400)["error"]


def test_rejected_requests_with_code_and_meaning(frozen_emulator: Emulator) -> None:
    with MobilgroupClient("1000", "demo", "wrong", endpoint=frozen_emulator.endpoint,
                          retries=0) as stranger, pytest.raises(AuthenticationFailed):
        stranger.send("79039587454", TEXT)
    rejected = get(frozen_emulator, "/api/requests?rejected=yes")
    assert len(rejected) == 1
    assert rejected[0]["error"] == 4
    assert rejected[0]["meaning"] == "wrong login and/or password"
    assert rejected[0]["command"] == "send" and rejected[0]["phones"] == ["79039587454"]
    assert get(frozen_emulator, "/api/state")["rejected"] == rejected


def test_reset(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    sent = frozen_client.send(PHONES, TEXT)
    frozen_emulator.faults.next("http_500", 5)
    state = post(frozen_emulator, "/api/reset", {})
    assert state["messages"] == [] and state["total"] == 0 and state["rejected"] == []
    assert state["accounts"][0]["balance"] == "100"
    assert frozen_emulator.faults.pending == 0
    assert frozen_emulator.requests == [] and frozen_emulator.outbox == []
    frozen_client.send(PHONES, TEXT, request_id=sent.request_id)  # the id is free again
    assert len(frozen_emulator.outbox) == 1


def test_the_state_the_page_polls(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    frozen_client.send("79039587454", TEXT)
    state = get(frozen_emulator, "/api/state?q=" + quote("привет"))
    assert set(state) == {"clock", "accounts", "faults", "messages", "matched", "offset", "total",
                          "rejected"}
    assert state["total"] == 1 and state["messages"][0]["text"] == TEXT
    assert state["matched"] == 1 and state["offset"] == 0
    nothing = get(frozen_emulator, "/api/state?q=zzz")
    assert nothing["messages"] == [] and nothing["matched"] == 0 and nothing["total"] == 1


def test_the_api_pages(frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    sent = [frozen_client.send(f"7903000{number:04d}", f"Заказ {number}").request_id
            for number in range(12)]
    newest_first = [str(request_id) for request_id in reversed(sent)]
    pages = [get(frozen_emulator, f"/api/messages?limit=5&offset={offset}")
             for offset in (0, 5, 10, 15)]
    assert [[m["request_id"] for m in found] for found in pages] == [
        newest_first[:5], newest_first[5:10], newest_first[10:], []]
    state = get(frozen_emulator, "/api/state?limit=5&offset=5")
    assert [m["request_id"] for m in state["messages"]] == newest_first[5:10]
    assert (state["matched"], state["offset"], state["total"]) == (12, 5, 12)
    # A search pages through what it found, and counts all of it.
    found = get(frozen_emulator, "/api/state?limit=2&offset=2&q=" + quote("+7 903 000-00-1"))
    assert found["matched"] == 2 and found["messages"] == []
    found = get(frozen_emulator, "/api/state?limit=1&offset=1&q=" + quote("+7 903 000-00-1"))
    assert [m["text"] for m in found["messages"]] == ["Заказ 10"]
    assert "offset" in get(frozen_emulator, "/api/messages?offset=-1", status=400)["error"]


def test_api_refusals(frozen_emulator: Emulator) -> None:
    url = base(frozen_emulator)
    # Changes must come as JSON: a form posted by another site's page cannot be.
    refused = requests.post(url + "/api/reset", data="{}", timeout=10,
                            headers={"Content-Type": "text/plain"})
    assert refused.status_code == 415 and "application/json" in refused.json()["error"]
    bad_json = requests.post(url + "/api/clock", data="{", timeout=10,
                             headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]
    assert "object" in post(frozen_emulator, "/api/clock", [1], status=400)["error"]  # type: ignore[arg-type]
    assert "/api/messages" in get(frozen_emulator, "/api/nothing", status=404)["error"]
    assert requests.put(url + "/api/clock", timeout=10).status_code == 405
    assert "limit" in get(frozen_emulator, "/api/messages?limit=many", status=400)["error"]


def test_no_password_on_the_page_or_in_the_api(frozen_emulator: Emulator,
                                               frozen_client: MobilgroupClient) -> None:
    frozen_client.send(PHONES, TEXT)
    with MobilgroupClient("1000", "demo", FROZEN_PASSWORD + "x", endpoint=frozen_emulator.endpoint,
                          retries=0) as wrong, pytest.raises(AuthenticationFailed):
        wrong.balance()
    frozen_emulator.faults.next("close_before")
    with pytest.raises(TransportError):
        frozen_client.balance()
    shown = "".join(
        requests.get(base(frozen_emulator) + path, timeout=10).text
        for path in ("/", "/static/inbox.js", "/static/inbox.css", "/api/state",
                     "/api/messages", "/api/accounts", "/api/requests", "/api/faults",
                     "/api/clock"))
    for spelling in (FROZEN_PASSWORD, quote(FROZEN_PASSWORD, safe=""), "w0rd", "&amp;Ёж", "Ёж"):
        assert spelling not in shown


def test_the_request_log(frozen_emulator: Emulator, frozen_client: MobilgroupClient,
                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mobilgroup_backends.emulator.requests"):
        sent = frozen_client.send(PHONES, TEXT)
        with MobilgroupClient("1000", "demo", "wrong", endpoint=frozen_emulator.endpoint,
                              retries=0) as stranger, pytest.raises(AuthenticationFailed):
            stranger.balance()
        frozen_emulator.faults.next("close_after")
        with pytest.raises(TransportError):
            frozen_client.send("79039587454", TEXT)
        requests.get(base(frozen_emulator) + "/api/state", timeout=10)  # the page is not logged
        # A line is written once its answer is out, so the client may be on to its next request
        # first: stopping joins every connection's thread, and the lines are matched by what they
        # say, not by the order in which the threads wrote them.
        frozen_emulator.stop()
    lines = [record.getMessage() for record in caplog.records
             if record.name == "mobilgroup_backends.emulator.requests"]
    assert len(lines) == 3, lines
    faulty = next(line for line in lines if "fault" in line)
    refused = next(line for line in lines if " balance " in line)
    accepted = next(line for line in lines if line not in (faulty, refused))
    assert re.fullmatch(
        rf"12:00:00 MSK send id {sent.request_id} to 7903\*\*\*\*\*54,7913\*\*\*\*\*00,"
        r"7923\*\*\*\*\*99 -> 0 OK \(\d+\.\d ms\)", accepted), accepted
    assert re.fullmatch(r"12:00:00 MSK balance -> 4 wrong login and/or password \(\d+\.\d ms\)",
                        refused), refused
    assert "-> 0 OK -> fault close_after: processed, then the connection was closed" in faulty
    joined = "\n".join(lines)
    assert all(phone not in joined for phone in PHONES)
    assert FROZEN_PASSWORD not in joined and TEXT not in joined


def test_the_request_log_is_silent_unless_asked(frozen_emulator: Emulator, frozen_client: MobilgroupClient,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        frozen_client.send("79039587454", TEXT)
    assert not [r for r in caplog.records if r.name.startswith("mobilgroup_backends.emulator")]
