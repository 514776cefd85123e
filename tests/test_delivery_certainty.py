"""What the caller is told matches what the gateway accepted: the core's delivery certainty.

Every error carries the request id and ``maybe_sent``; ``maybe_sent`` is sticky over the attempts
of one call; error 7 means "accepted earlier" only when this call (or, with ``resend=True``, an
earlier one) may have sent that id; one deadline covers a whole attempt; TLS failures are told
apart by whether the request had been written. All against the emulator, over HTTP and TLS.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import requests

from mobilgroup_backends import MobilgroupClient, SendResult, errors
from mobilgroup_backends.emulator import Account, Emulator
from tests.conftest import RunCommand

PHONE = "79039587454"


@pytest.fixture
def client(mobilgroup_emulator: Emulator) -> Iterator[MobilgroupClient]:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), timeout=1.0, retries=2,
                                   backoff=0.02) as made:
        yield made


# --- every error names its id and whether it may have been sent ---------------------------------


def test_validation_error_names_the_id_and_was_not_sent(client: MobilgroupClient) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        client.send(None, "hello", request_id=4242)  # type: ignore[arg-type]
    assert caught.value.field == "phones"
    assert caught.value.request_id == 4242
    assert caught.value.maybe_sent is False


def test_gateway_refusal_was_not_sent(mobilgroup_emulator: Emulator) -> None:
    url = mobilgroup_emulator.url().replace("demo-password", "wrong")
    with MobilgroupClient.from_url(url, retries=0) as client, \
            pytest.raises(errors.AuthenticationFailed) as caught:
        client.send(PHONE, "hello", request_id=77)
    assert (caught.value.request_id, caught.value.maybe_sent) == (77, False)


def test_garbled_answer_may_have_been_sent(client: MobilgroupClient,
                                           mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("garbage", count=3)
    with pytest.raises(errors.ProtocolError) as caught:
        client.send(PHONE, "hello", request_id=78)
    assert (caught.value.request_id, caught.value.maybe_sent) == (78, True)
    assert client.send(PHONE, "hello", request_id=78, resend=True).accepted_earlier
    assert len(mobilgroup_emulator.outbox) == 1


# --- error 7 and the attempts of one call ---------------------------------------------------------


def test_reused_id_with_a_refused_first_attempt_is_a_duplicate(
        mobilgroup_emulator: Emulator) -> None:
    """Issue item 3: no attempt of this call reached the gateway, so error 7 on the retry is
    somebody else's message with the same id, not ours: a lost message must not read as sent."""
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), retries=1, backoff=0.6) as client:
        client.send(PHONE, "the row's first message", request_id=5001)
        mobilgroup_emulator.refuse_connections(0.25)
        client.close()  # the next attempt must open a connection, and be refused
        started = time.monotonic()
        with pytest.raises(errors.DuplicateRequestId) as caught:
            client.send(PHONE, "another message, same id", request_id=5001)
        assert time.monotonic() - started >= 0.25  # the first attempt was refused, then retried
    assert (caught.value.request_id, caught.value.maybe_sent) == (5001, False)
    assert [m.text for m in mobilgroup_emulator.outbox] == ["the row's first message"]


def test_last_attempt_refused_after_one_accepted_says_maybe_sent(
        mobilgroup_emulator: Emulator) -> None:
    """Issue item 1: attempt 1 is accepted but its answer lost, the retry is refused (the
    gateway restarts). The final error must still say maybe_sent, with the id to resend."""
    mobilgroup_emulator.faults.next("restart", seconds=0.6)
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), retries=1, backoff=0.05) as client:
        with pytest.raises(errors.TransportError) as caught:
            client.send(PHONE, "restart", request_id=5002)
        assert caught.value.maybe_sent is True
        assert caught.value.request_id == 5002
        assert "failed" in str(caught.value)  # the last attempt's own story: refused
        deadline = time.monotonic() + 5
        while True:  # the gateway is back after 0.6 s
            try:
                result = client.send(PHONE, "restart", request_id=5002, resend=True)
                break
            except errors.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    assert result.accepted_earlier
    assert [m.request_id for m in mobilgroup_emulator.outbox] == [5002]


def test_without_resend_a_fresh_call_takes_error_7_as_a_duplicate(
        client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    client.send(PHONE, "first", request_id=5003)
    with pytest.raises(errors.DuplicateRequestId) as caught:
        client.send(PHONE, "first", request_id=5003)
    assert caught.value.maybe_sent is False
    assert client.send(PHONE, "first", request_id=5003, resend=True).accepted_earlier
    assert len(mobilgroup_emulator.outbox) == 1


# --- one deadline per attempt -------------------------------------------------------------------


def test_trickled_headers_cannot_hold_the_caller_past_the_timeout(
        mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("trickle_headers", interval=0.1)
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), timeout=0.5, retries=0) as client:
        started = time.monotonic()
        with pytest.raises(errors.TransportError) as caught:
            client.send(PHONE, "slowly", request_id=5004)
        elapsed = time.monotonic() - started
        # Without the deadline the trickle would hold it for the whole header block (over 10 s);
        # the margin above the 0.5 s timeout is for a busy machine, not for the client.
        assert elapsed < 3.0, elapsed
        assert caught.value.timed_out and caught.value.maybe_sent
        assert client.send(PHONE, "slowly", request_id=5004, resend=True).accepted_earlier
    assert len(mobilgroup_emulator.outbox) == 1


def test_trickled_headers_are_retried_with_the_same_id(mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("trickle_headers", interval=0.1)
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), timeout=0.4, retries=1,
                                   backoff=0.01) as client:
        result = client.send(PHONE, "slowly, once")
    assert result.accepted_earlier and result.attempts == 2
    assert len(mobilgroup_emulator.outbox) == 1


def test_a_trickled_body_is_cut_at_the_deadline_too(mobilgroup_emulator: Emulator) -> None:
    """A hand-made server: an answer whose body arrives a byte at a time."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = False

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n")
            for _ in range(100):
                if stop:
                    break
                try:
                    conn.sendall(b" ")
                except OSError:
                    break
                time.sleep(0.05)

    import threading

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        with MobilgroupClient("1", "demo", "x", endpoint=f"http://127.0.0.1:{port}/extxml.php",
                              timeout=0.5, retries=0) as client:
            started = time.monotonic()
            with pytest.raises(errors.TransportError) as caught:
                client.send(PHONE, "body")
            assert time.monotonic() - started < 1.2
            assert caught.value.timed_out and caught.value.maybe_sent
    finally:
        stop = True
        server.join(5)
        listener.close()


# --- TLS failures by phase ----------------------------------------------------------------------


def test_corrupted_record_after_the_request_may_have_been_sent(tls_emulator: Emulator,
                                                               ca_file: str) -> None:
    tls_emulator.faults.next("tls_corrupt_after")
    with MobilgroupClient.from_url(tls_emulator.url(), ca_bundle=ca_file, retries=0) as client:
        with pytest.raises(errors.TransportError) as caught:
            client.send(PHONE, "tls", request_id=5005)
        error = caught.value
        assert error.maybe_sent and error.retryable and error.request_id == 5005
        assert "after the request was sent" in str(error)
        assert "not trusted" not in str(error)
        assert client.send(PHONE, "tls", request_id=5005, resend=True).accepted_earlier
    assert len(tls_emulator.outbox) == 1


def test_corrupted_record_is_retried_with_the_same_id(tls_emulator: Emulator,
                                                      ca_file: str) -> None:
    tls_emulator.faults.next("tls_corrupt_after")
    with MobilgroupClient.from_url(tls_emulator.url(), ca_bundle=ca_file, retries=1,
                                   backoff=0.01) as client:
        result = client.send(PHONE, "tls retried")
    assert result.accepted_earlier and result.attempts == 2
    assert len(tls_emulator.outbox) == 1


def test_untrusted_certificate_is_not_sent_and_not_retried(tls_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(tls_emulator.url(), retries=3, backoff=5) as client:
        started = time.monotonic()
        with pytest.raises(errors.TransportError) as caught:
            client.send(PHONE, "never", request_id=5006)
        assert time.monotonic() - started < 2  # no backoff: not retried
    assert not caught.value.maybe_sent and not caught.value.retryable
    assert caught.value.request_id == 5006
    assert tls_emulator.requests == [] or all(r.command is None for r in tls_emulator.requests)
    assert tls_emulator.outbox == []


def test_a_session_with_verify_false_still_verifies(tls_emulator: Emulator,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    session = requests.Session()
    session.verify = False
    with caplog.at_level(logging.WARNING, "mobilgroup_backends.client"):
        client = MobilgroupClient.from_url(tls_emulator.url(), session=session, retries=0)
    assert "verify=False" in caplog.text and "verified anyway" in caplog.text
    with client, pytest.raises(errors.TransportError) as caught:
        client.send(PHONE, "never")
    assert "TLS failed before the request was sent" in str(caught.value)
    assert tls_emulator.outbox == []


def test_a_callers_session_keeps_the_deadline(mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("trickle_headers", interval=0.1)
    with requests.Session() as session, MobilgroupClient.from_url(
            mobilgroup_emulator.url(), session=session, timeout=0.4, retries=0) as client:
        started = time.monotonic()
        with pytest.raises(errors.TransportError):
            client.send(PHONE, "slowly")
        assert time.monotonic() - started < 1.2


# --- input errors are the package's own -----------------------------------------------------


@pytest.mark.parametrize(("call", "field"), [
    (lambda c: c.send(None, "x"), "phones"),
    (lambda c: c.send(12345, "x"), "phones"),
    (lambda c: c.send(PHONE, "x", request_id="9" * 5000), "request_id"),
    (lambda c: c.send(PHONE, "x", request_id=10**5000), "request_id"),
    (lambda c: c.status(10**5000), "request_id"),
    (lambda c: c.send(PHONE, "x", schedule=datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc)),
     "schedule"),
    (lambda c: c.send(PHONE, b"bytes"), "text"),
])
def test_bad_input_is_a_validation_error(client: MobilgroupClient, call: object,
                                         field: str, mobilgroup_emulator: Emulator) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        call(client)  # type: ignore[operator]
    assert caught.value.field == field and caught.value.fix
    assert not caught.value.maybe_sent
    assert len(str(caught.value)) < 400
    assert mobilgroup_emulator.requests == []


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"password": 12345}, "password"),
    ({"password": "pa\x00ss"}, "password"),
    ({"password": "pa\x1bss"}, "password"),
    ({"login": "de\nmo"}, "login"),
    ({"login": 7}, "login"),
    ({"user_id": None}, "user_id"),
])
def test_bad_credentials_are_configuration_errors(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"user_id": "1000", "login": "demo", "password": "secret-pw"}
    arguments.update(kwargs)
    with pytest.raises(errors.ConfigurationError) as caught:
        MobilgroupClient(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field and caught.value.fix
    assert "pa\x00ss" not in str(caught.value) and "12345" not in str(caught.value)


def test_carriage_returns_arrive_as_carriage_returns() -> None:
    password = "pass\rword"
    with Emulator([Account("1000", "demo", password)]) as gateway:
        with MobilgroupClient("1000", "demo", password, endpoint=gateway.endpoint) as client:
            client.send(PHONE, "line one\rline two\r\nthree")
        (message,) = gateway.outbox
    assert message.text == "line one\rline two\r\nthree"


def test_cli_shows_no_traceback_for_bad_input(mobilgroup_emulator: Emulator,
                                             mobilgroup_command: RunCommand) -> None:
    for argv in (["send", PHONE, "--text", "x", "--id", "9" * 5000],
                 ["status", "9" * 5000],
                 ["send", PHONE, "--text", "x", "--schedule", "9999-99-99 99:99"]):
        done = mobilgroup_command(*argv, "--url", mobilgroup_emulator.url())
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert len(done.stderr) < 500


def test_cli_says_how_to_resend_after_maybe_sent(mobilgroup_emulator: Emulator,
                                                 mobilgroup_command: RunCommand) -> None:
    mobilgroup_emulator.faults.next("close_after", count=10)
    url = mobilgroup_emulator.url(retries=0)
    done = mobilgroup_command("send", PHONE, "--text", "x", "--id", "91", "--url", url)
    assert "--id 91 --resend" in done.stderr
    mobilgroup_emulator.faults.clear()
    done = mobilgroup_command("send", PHONE, "--text", "x", "--id", "91", "--resend",
                              "--url", mobilgroup_emulator.url(), "--json")
    assert done.returncode == 0, done.stderr
    assert '"request_ids": [91]' in done.stdout
    assert len(mobilgroup_emulator.outbox) == 1


def test_cli_resends_a_text_sent_in_parts_under_every_part_s_id(
        mobilgroup_emulator: Emulator, mobilgroup_command: RunCommand) -> None:
    text = " ".join(["слово"] * 50)  # three parts
    # Part 1 is answered (after no delay at all); part 2 is processed, but its answer is not
    # XML: it may have been sent, and part 3 was not.
    mobilgroup_emulator.faults.next("delay", seconds=0)
    mobilgroup_emulator.faults.next("garbage")
    url = mobilgroup_emulator.url(retries=0)
    done = mobilgroup_command("send", PHONE, "--text", text, "--split", "--url", url)
    assert done.returncode == 3
    said = re.search(r"--id ([0-9]+),([0-9]+),([0-9]+) --resend", done.stderr)
    assert said is not None, done.stderr
    ids = [int(said[n]) for n in (1, 2, 3)]
    assert [m.request_id for m in mobilgroup_emulator.outbox] == ids[:2]

    done = mobilgroup_command("send", PHONE, "--text", text, "--split", "--id", said.group(0)
                              .split()[1], "--resend", "--url", url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["request_ids"] == ids
    assert [m.request_id for m in mobilgroup_emulator.outbox] == ids  # each part once


# --- send_many --------------------------------------------------------------------------------


def test_send_many_never_raises_for_a_row(client: MobilgroupClient,
                                          mobilgroup_emulator: Emulator) -> None:
    rows: list[object] = [
        {"phones": PHONE, "text": "one"},
        {"phones": None, "text": "no phones"},
        {"phones": PHONE, "text": "three", "colour": "red"},
        "not a row",
        {"phones": PHONE, "text": "five", "request_id": "9" * 5000},
        (PHONE, "six"),
    ]
    outcomes = client.send_many(rows, concurrency=3)  # type: ignore[arg-type]
    assert [type(o).__name__ for o in outcomes] == [
        "SendResult", "ValidationError", "ValidationError", "ValidationError", "ValidationError",
        "SendResult"]
    assert outcomes[1].field == "phones"  # type: ignore[union-attr]
    assert isinstance(outcomes[1], errors.MobilgroupError) and outcomes[1].request_id is not None
    assert sorted(m.text for m in mobilgroup_emulator.outbox) == ["one", "six"]


def test_send_many_row_errors_name_their_ids_for_a_resend(client: MobilgroupClient,
                                                          mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.faults.next("close_after", count=3)
    first, second = client.send_many([(PHONE, "lost answer"), (PHONE, "fine")], concurrency=1)
    assert isinstance(first, errors.TransportError) and first.maybe_sent
    assert isinstance(second, SendResult)
    again = client.send(PHONE, "lost answer", request_id=first.request_id, resend=True)
    assert again.accepted_earlier
    assert sorted(m.text for m in mobilgroup_emulator.outbox) == ["fine", "lost answer"]


def test_send_many_says_when_concurrency_is_lowered(mobilgroup_emulator: Emulator,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), pool_size=2) as client, \
            caplog.at_level(logging.WARNING, "mobilgroup_backends.client"):
        outcomes = client.send_many([(PHONE, f"m{i}") for i in range(4)], concurrency=10)
    assert all(isinstance(o, SendResult) for o in outcomes)
    assert "concurrency=10 lowered to the client's pool_size=2" in caplog.text


# --- the core's backoff, for code that schedules its own retries ---------------------------------


def test_retry_delay_and_longest_call() -> None:
    client = MobilgroupClient("1", "demo", "pw", timeout=2.0, retries=2, backoff=0.5)
    assert 0.25 <= client.retry_delay(1) <= 0.5
    assert 0.5 <= client.retry_delay(2) <= 1.0
    assert client.retry_delay(50) <= 30.0
    assert client.longest_call() == pytest.approx(2 * 3 * 2.0 + 0.5 + 1.0)


# --- the emulator's own limits ------------------------------------------------------------------


def test_repeated_header_lines_count_against_the_cap(mobilgroup_emulator: Emulator) -> None:
    with socket.create_connection(("127.0.0.1", mobilgroup_emulator.port), timeout=5) as sock:
        sock.sendall(b"POST /extxml.php HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Same: a\r\n" * 4000
                     + b"\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")


def test_a_byte_now_and_then_does_not_keep_the_connection() -> None:
    gateway = Emulator(idle_timeout=0.8)
    with gateway, socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        started = time.monotonic()
        closed_after = None
        for _ in range(40):  # a byte every 0.1 s, never idle for the whole idle_timeout
            try:
                sock.sendall(b"P")
                sock.settimeout(0.1)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None and closed_after < 2.0


# --- one client per configuration per process ---------------------------------------------------


def test_shared_client_is_one_per_configuration_and_rebuilt_after_fork(
        mobilgroup_emulator: Emulator) -> None:
    import os

    from mobilgroup_backends.client import shared_client
    from mobilgroup_backends.config import parse_url

    settings = parse_url(mobilgroup_emulator.url())[0]
    client = shared_client(settings)
    assert shared_client(parse_url(mobilgroup_emulator.url())[0]) is client
    assert shared_client(settings.with_(timeout=3.0)) is not client
    client.send(PHONE, "parent")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own client, never the parent's sockets
        try:
            child = shared_client(settings)
            child.send(PHONE, "child")
            os.write(write, b"new" if child is not client else b"same")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"new"
    os.close(read)
    client.send(PHONE, "parent again")
    assert sorted(m.text for m in mobilgroup_emulator.outbox) == ["child", "parent",
                                                                  "parent again"]
