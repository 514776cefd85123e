"""The deadline of a whole call, and answers that do not belong to the request.

A scripted server on 127.0.0.1 reads each request and never answers; the emulator answers
another request's id. Both end in errors that say what happened and how to resend safely.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from mobilgroup_backends import MobilgroupClient, errors
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import Verdict
from tests.conftest import RunCommand
from tests.helpers import ScriptedServer, sent_ids

PHONE = "+7 900 000-00-02"


def silent(server: ScriptedServer, conn: socket.socket) -> None:
    """Read the request (done already), then hold the connection without a word until the client
    hangs up or the server stops."""
    conn.settimeout(0.05)
    while not server.stop.is_set():
        try:
            if not conn.recv(4096):
                return
        except TimeoutError:
            continue


def test_the_deadline_bounds_every_attempt_and_pause_of_a_send() -> None:
    with ScriptedServer(silent) as server, MobilgroupClient(
            "1000", "demo", "pw", endpoint=server.endpoint, deadline=2.5, timeout=1, retries=10,
            backoff=0.25) as client:
        started = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded) as caught:
            client.send(PHONE, "are you there?")
        spent = time.monotonic() - started
    error = caught.value
    assert spent < 4.0
    assert error.maybe_sent is True and error.verdict is Verdict.UNKNOWN
    assert error.request_id is not None
    assert 2 <= error.attempts <= 4 and len(server.requests) == error.attempts
    assert abs(error.elapsed - spent) < 0.5
    assert f"{error.attempts} attempt(s)" in str(error) and "deadline is 2.5 s" in str(error)
    assert f"after {error.elapsed:.1f} s" in str(error)


def test_the_deadline_bounds_status_and_balance_too() -> None:
    with ScriptedServer(silent) as server, MobilgroupClient(
            "1000", "demo", "pw", endpoint=server.endpoint, deadline=1.2, timeout=0.5,
            retries=10, backoff=0.05) as client:
        for call in (client.balance, lambda: client.status(123456)):
            started = time.monotonic()
            with pytest.raises(errors.DeadlineExceeded) as caught:
                call()
            assert time.monotonic() - started < 2.2
            assert caught.value.attempts >= 2


def test_the_deadline_comes_from_the_url_and_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = "mobilgroup://demo:pw@1000?deadline=7.5&endpoint=http://127.0.0.1:9/"
    assert MobilgroupClient.from_url(url).deadline == 7.5
    monkeypatch.setenv("MOBILGROUP_URL", "mobilgroup://demo:pw@1000?endpoint=http://127.0.0.1:9/")
    monkeypatch.setenv("MOBILGROUP_DEADLINE", "12")
    assert MobilgroupClient.from_env().deadline == 12.0
    assert MobilgroupClient("1", "l", "p").deadline == 20.0
    with pytest.raises(errors.ConfigurationError) as caught:
        MobilgroupClient.from_url("mobilgroup://demo:pw@1000?deadline=0")
    assert caught.value.field == "deadline" and "more than 0" in str(caught.value)


def test_every_attempt_is_announced_to_the_hook() -> None:
    seen: list[tuple[str, int, int]] = []
    with ScriptedServer(silent) as server, MobilgroupClient(
            "1000", "demo", "pw", endpoint=server.endpoint, deadline=5, timeout=0.2, retries=2,
            backoff=0.01, on_attempt=lambda *call: seen.append(call)) as client, \
            pytest.raises(errors.TransportError):
        client.balance()
    assert seen == [("balance", 1, 3), ("balance", 2, 3), ("balance", 3, 3)]


def other_id_answer(request_id: int) -> bytes:
    return (f'<?xml version="1.0" encoding="windows-1251"?>\n<response><result>OK</result>'
            f"<error>0</error><id>{request_id}</id></response>\n").encode()


def test_an_answer_naming_another_request_is_not_this_one_s(frozen_emulator: Emulator,
                                                            frozen_client: MobilgroupClient) -> None:
    frozen_emulator.faults.next("body", body=other_id_answer(111111111111111111))
    with pytest.raises(errors.ProtocolError) as caught:
        frozen_client.send(PHONE, "whose answer?", request_id=222222222222222222)
    error = caught.value
    assert error.request_id == 222222222222222222 and error.maybe_sent
    assert error.verdict is Verdict.UNKNOWN
    assert "111111111111111111" in str(error)
    # The resend it calls for goes out once.
    result = frozen_client.send(PHONE, "whose answer?", request_id=error.request_id, resend=True)
    assert result.request_id == 222222222222222222
    assert sent_ids(frozen_emulator) == {222222222222222222: 1}


def test_a_retry_settles_an_answer_naming_another_request(frozen_emulator: Emulator) -> None:
    frozen_emulator.faults.next("body", body=other_id_answer(111111111111111111))
    with MobilgroupClient.from_url(frozen_emulator.url(retries=2), backoff=0.01) as client:
        result = client.send(PHONE, "whose answer?")
    assert result.attempts == 2 and not result.accepted_earlier
    assert sent_ids(frozen_emulator) == {result.request_id: 1}


def test_the_command_line_waits_no_longer_than_its_deadline_and_shows_it_on_a_terminal(
        on_a_terminal: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    with ScriptedServer(silent) as server:
        url = (f"mobilgroup://demo:pw@1000?endpoint={quote(server.endpoint, safe='')}"
               f"&deadline=1.5&timeout=0.6&retries=10&backoff=0.05")
        started = time.monotonic()
        code, shown = on_a_terminal("send", PHONE, "--text", "hello?", url=url, cwd=tmp_path)
        spent = time.monotonic() - started
    assert code == 3 and spent < 3.0
    assert "waiting for the gateway..." in shown
    assert "waiting for the gateway (attempt 2 of 11)..." in shown
    assert "deadline is 1.5 s" in shown and "--resend" in shown
    said = re.search(r"gave up after ([0-9.]+) s and ([0-9]+) attempt", shown)
    assert said is not None and abs(float(said[1]) - spent) < 0.6


def test_the_command_line_adds_nothing_to_a_log(mobilgroup_command: RunCommand) -> None:
    with ScriptedServer(silent) as server:
        url = (f"mobilgroup://demo:pw@1000?endpoint={quote(server.endpoint, safe='')}"
               f"&deadline=0.5&timeout=0.2&backoff=0.05")
        done = mobilgroup_command("send", PHONE, "--text", "hello?", url=url)
    assert done.returncode == 3 and "waiting" not in done.stderr
    assert done.stderr.startswith("mobilgroup: send gave up after ")


def test_balance_and_status_show_the_waiting_line_on_a_terminal_and_wipe_it(
        on_a_terminal: Callable[..., tuple[int, str]], tmp_path: Path,
        mobilgroup_emulator: Emulator) -> None:
    code, shown = on_a_terminal("balance", url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert code == 0
    assert "waiting for the gateway..." in shown and shown.rstrip().endswith("\x1b[K")
    mobilgroup_emulator.faults.next("http_500")
    code, shown = on_a_terminal("status", "123456", url=mobilgroup_emulator.url(backoff=0.01),
                                cwd=tmp_path)
    assert code == 1 and "(attempt 2 of 4)" in shown and "gateway error 12" in shown
