"""MobilgroupClient against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from mobilgroup_backends import MobilgroupClient, SendResult, errors, protocol
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.protocol import DeliveryStatus, MailingStatus
from tests.helpers import closed_port

PASSWORD_MARK = "demo-password"


@pytest.fixture
def client(mobilgroup_emulator: Emulator) -> Iterator[MobilgroupClient]:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), backoff=0.01, timeout=5) as client:
        yield client


# --- sending --------------------------------------------------------------------------------


def test_send_one_request_for_all_phones(client: MobilgroupClient,
                                         mobilgroup_emulator: Emulator) -> None:
    result = client.send(["+7 (903) 958-74-54", "79236411579", "79039587454"],
                         "Привет, мир! Ёлка & <тег>", sender="Shop-1", valid_hours=24)
    assert isinstance(result, SendResult)
    assert result.phones == ("79039587454", "79236411579")
    assert result.attempts == 1 and not result.accepted_earlier
    (message,) = mobilgroup_emulator.outbox
    assert message.request_id == result.request_id
    assert message.phones == ("79039587454", "79236411579")
    assert message.text == "Привет, мир! Ёлка & <тег>"
    assert message.sender == "Shop-1"
    assert message.valid_hours == 24
    assert message.transliterate is True


def test_send_unicode_and_schedule(client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    client.send("79039587454", "Код: 4521", transliterate=False, schedule="2030-01-02 03:04")
    (message,) = mobilgroup_emulator.outbox
    assert message.transliterate is False
    assert message.schedule == datetime(2030, 1, 2, 3, 4)


def test_client_default_sender(mobilgroup_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(sender="Alerts")) as client:
        assert client.send("79039587454", "x").sender == "Alerts"
    assert mobilgroup_emulator.outbox[0].sender == "Alerts"


def test_own_request_id_and_duplicate_on_first_attempt(client: MobilgroupClient) -> None:
    assert client.send("79039587454", "one", request_id=4242).request_id == 4242
    with pytest.raises(errors.DuplicateRequestId) as caught:
        client.send("79039587454", "two", request_id="4242")
    assert caught.value.code == 7


def test_invalid_input_sends_nothing(client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    for kwargs in ({"phones": "12", "text": "x"}, {"phones": "79039587454", "text": "я" * 141},
                   {"phones": "79039587454", "text": "🔥"}, {"phones": "79039587454", "text": "x",
                                                            "valid_hours": 49}):
        with pytest.raises(errors.ValidationError):
            client.send(**kwargs)
    assert len(mobilgroup_emulator.outbox) == 0
    assert mobilgroup_emulator.requests == [] or len(mobilgroup_emulator.requests) == 0


def test_replace_unencodable(client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    assert client.send("79039587454", "упал 🔥", replace_unencodable=True).text == "упал ?"
    assert mobilgroup_emulator.outbox[0].text == "упал ?"


def test_keep_alive_one_connection(client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    for i in range(20):
        client.send("79039587454", f"message {i}")
    client.balance()
    assert len(mobilgroup_emulator.outbox) == 20
    assert mobilgroup_emulator.connections == 1


def test_a_kept_pool_is_given_up_once_closed(mobilgroup_emulator: Emulator) -> None:
    # The transport keeps the pool it found for the gateway; once its connections are closed
    # (here by closing the adapter's pools under the client), the next send finds a new one.
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), timeout=5) as client:
        client.send("79039587454", "first")
        adapter = client._adapter
        adapter.close()
        client.send("79039587454", "second")
        client.send("79039587454", "third")
    assert [m.text for m in mobilgroup_emulator.outbox] == ["first", "second", "third"]
    assert mobilgroup_emulator.connections == 2


# --- status and balance ---------------------------------------------------------------------


def test_status_follows_the_lifecycle(client: MobilgroupClient,
                                      mobilgroup_emulator: Emulator) -> None:
    result = client.send(["79039587454", "79130000000", "79139999999"], "hello")
    report = client.status(result.request_id)
    assert report.request_id == result.request_id
    assert report.status is MailingStatus.STARTED
    assert [r.phone for r in report.recipients] == list(result.phones)
    mobilgroup_emulator.clock.advance(10)
    statuses = {r.phone: r.status for r in client.status(result.request_id).recipients}
    assert statuses == {"79039587454": DeliveryStatus.DELIVERED,
                        "79130000000": DeliveryStatus.SENT,
                        "79139999999": DeliveryStatus.ERROR}
    mobilgroup_emulator.clock.advance(3600)
    final = client.status(result.request_id)
    assert final.status is MailingStatus.FINISHED and final.is_complete
    assert final.by_phone()["79130000000"].status is DeliveryStatus.UNDELIVERED
    assert all(isinstance(r.time, datetime) for r in final.recipients)


def test_status_not_extended(client: MobilgroupClient) -> None:
    result = client.send("79039587454", "hello")
    report = client.status(result.request_id, extended=False)
    assert report.recipients == ()
    assert report.status is MailingStatus.STARTED


def test_balance_goes_down_per_recipient(client: MobilgroupClient) -> None:
    before = client.balance()
    assert isinstance(before, Decimal)
    client.send(["79039587454", "79236411579"], "hello")
    assert client.balance() == before - 2


# --- the gateway's refusals -----------------------------------------------------------------


def test_wrong_password(mobilgroup_emulator: Emulator) -> None:
    url = mobilgroup_emulator.url().replace(PASSWORD_MARK, "wrong-password")
    with MobilgroupClient.from_url(url) as client, pytest.raises(errors.AuthenticationFailed) as e:
        client.balance()
    assert e.value.code == 4
    assert "wrong-password" not in str(e.value)


def test_wrong_client_id(mobilgroup_emulator: Emulator) -> None:
    settings = protocol.Credentials("999", "demo", PASSWORD_MARK)
    with MobilgroupClient(settings.user_id, settings.login, settings.password,
                          endpoint=mobilgroup_emulator.endpoint) as client, \
            pytest.raises(errors.InvalidClientId):
        client.balance()


def test_blocked_and_no_money(client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    (account,) = mobilgroup_emulator.accounts.values()
    account.balance = Decimal("1")
    with pytest.raises(errors.InsufficientFunds) as caught:
        client.send(["79039587454", "79236411579"], "two recipients cost two")
    assert caught.value.code == 9
    account.blocked = True
    with pytest.raises(errors.ClientBlocked):
        client.send("79039587454", "hi")
    assert len(mobilgroup_emulator.outbox) == 0


def test_unknown_request_id(client: MobilgroupClient) -> None:
    with pytest.raises(errors.UnknownRequestId) as caught:
        client.status(123)
    assert caught.value.code == 12


# Codes 1, 2, 6, 8, 10 and 11 cannot be provoked through send(): its local checks refuse the
# input first. Hand-made documents go through the same exchange and parser instead.
RAW = '<?xml version="1.0" encoding="windows-1251"?>\n<request><user_id>1000</user_id>' \
      "<user>demo</user><pwd>demo-password</pwd>{}</request>"


@pytest.mark.parametrize(("fields", "exception"), [
    (None, errors.RequestNotParsed),
    ("<command>send</command><message>x</message><id>1</id>", errors.MissingParameters),
    ("<command>reboot</command>", errors.UnknownCommand),
    ("<command>send</command><phone>+7-903</phone><message>x</message><id>2</id>",
     errors.InvalidRecipients),
    ("<command>send</command><phone>79039587454</phone><message>" + "x" * 141
     + "</message><id>3</id>", errors.MessageTooLong),
    ("<command>send</command><phone>79039587454</phone><message>x</message>"
     "<schedule>tomorrow</schedule><id>4</id>", errors.InvalidSchedule),
])
def test_codes_send_refuses_locally(client: MobilgroupClient, fields: str | None,
                                    exception: type[errors.GatewayError]) -> None:
    body = b"this is not xml" if fields is None else RAW.format(fields).encode("cp1251")
    with pytest.raises(exception) as caught:
        client._call("send", body, None, lambda data, *_: protocol.parse_send(data))
    assert caught.value.code == exception.code


# --- faults and retries ---------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "params", "earlier"), [
    ("close_before", {}, False),
    ("http_500", {}, False),
    ("close_after", {}, True),
    ("garbage", {}, True),
    ("delay", {"seconds": 1.5}, True),
])
def test_retry_sends_exactly_once(mobilgroup_emulator: Emulator, kind: str,
                                  params: dict[str, float], earlier: bool) -> None:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), timeout=0.5, backoff=0.01) as client:
        mobilgroup_emulator.faults.next(kind, **params)
        result = client.send("79039587454", "exactly once")
    assert result.attempts == 2
    assert result.accepted_earlier is earlier
    assert [m.request_id for m in mobilgroup_emulator.outbox] == [result.request_id]


def test_retries_run_out(mobilgroup_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), retries=2, backoff=0.01) as client:
        mobilgroup_emulator.faults.next("http_500", count=3)
        with pytest.raises(errors.TransportError) as caught:
            client.send("79039587454", "never arrives")
    assert caught.value.status_code == 500
    assert caught.value.request_id is not None
    assert len(mobilgroup_emulator.outbox) == 0


def test_unreachable_gateway_is_a_transport_error_that_says_not_sent() -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}/extxml.php"
    started = time.monotonic()
    with MobilgroupClient("1", "demo", "pw", endpoint=endpoint, retries=2, backoff=0.001,
                          timeout=1) as client, \
            pytest.raises(errors.TransportError, match=r"connection .* failed") as caught:
        client.send("79039587454", "nobody listens")
    assert caught.value.maybe_sent is False
    assert caught.value.retryable is True
    assert caught.value.request_id is not None
    assert time.monotonic() - started < 5


def test_garbage_answer_without_retries(mobilgroup_emulator: Emulator) -> None:
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), retries=0) as client:
        mobilgroup_emulator.faults.next("garbage")
        with pytest.raises(errors.ProtocolError):
            client.balance()


def test_not_found_is_not_retried(mobilgroup_emulator: Emulator) -> None:
    endpoint = mobilgroup_emulator.endpoint.replace("/extxml.php", "/nope.php")
    with MobilgroupClient("1000", "demo", PASSWORD_MARK, endpoint=endpoint, backoff=0.01) as client, \
            pytest.raises(errors.TransportError) as caught:
        client.balance()
    assert caught.value.status_code == 404
    assert caught.value.retryable is False
    assert len(mobilgroup_emulator.requests) <= 1


# --- many at once ---------------------------------------------------------------------------


def test_send_many_in_order_and_failures_isolated(client: MobilgroupClient,
                                                  mobilgroup_emulator: Emulator) -> None:
    messages: list[dict[str, object]] = [
        {"phones": f"7903{i:07d}", "text": f"order {i}"} for i in range(40)]
    messages[7] = {"phones": "123", "text": "bad phone"}
    outcomes = client.send_many(messages, concurrency=8)
    assert len(outcomes) == 40
    assert isinstance(outcomes[7], errors.ValidationError)
    good = [o for i, o in enumerate(outcomes) if i != 7]
    assert all(isinstance(o, SendResult) for o in good)
    assert [o.text for o in good if isinstance(o, SendResult)] == [
        f"order {i}" for i in range(40) if i != 7]
    assert sorted(m.request_id for m in mobilgroup_emulator.outbox) == sorted(
        o.request_id for o in good if isinstance(o, SendResult))


def test_send_many_tuples_and_empty(client: MobilgroupClient) -> None:
    assert client.send_many([]) == []
    (outcome,) = client.send_many([("79039587454", "hi")])
    assert isinstance(outcome, SendResult)
    bad, good = client.send_many(["79039587454", ("79039587454", "ok")])  # type: ignore[list-item]
    assert isinstance(bad, errors.ValidationError) and bad.field == "messages[0]"
    assert not bad.maybe_sent
    assert isinstance(good, SendResult)


def test_threads_share_one_client(client: MobilgroupClient, mobilgroup_emulator: Emulator) -> None:
    for account in mobilgroup_emulator.accounts.values():
        account.balance = Decimal(10**6)
    results: list[SendResult] = []
    failures: list[BaseException] = []

    def work(n: int) -> None:
        for i in range(25):
            try:
                results.append(client.send("79039587454", f"thread {n} message {i}"))
            except BaseException as exc:  # collected, asserted below
                failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert len(results) == 200
    assert len({r.request_id for r in results}) == 200
    assert len(mobilgroup_emulator.outbox) == 200


# --- construction and logging ---------------------------------------------------------------


def test_from_env(mobilgroup_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILGROUP_URL", mobilgroup_emulator.url())
    with MobilgroupClient.from_env(retries=0) as client:
        assert client.retries == 0
        assert client.balance() > 0


def test_debug_log_masks_phones_and_never_shows_password(
        mobilgroup_emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), backoff=0.01) as client:
        mobilgroup_emulator.faults.next("http_500")
        client.send("79039587454", "hello")
        client.balance()
    text = caplog.text
    assert "send id=" in text and "7903*****54" in text and "attempt 1 failed" in text
    assert "79039587454" not in text
    assert PASSWORD_MARK not in text


def test_user_supplied_session_is_left_open(mobilgroup_emulator: Emulator) -> None:
    import requests

    session = requests.Session()
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), session=session) as client:
        client.balance()
    assert session.adapters  # still usable: the client did not close it
    session.close()


def test_a_malformed_number_in_the_answer_is_a_protocol_error(
        mobilgroup_emulator: Emulator) -> None:
    body = b"<response><result>ERROR</result><error>--4</error></response>"
    with MobilgroupClient.from_url(mobilgroup_emulator.url(), backoff=0.01) as client:
        mobilgroup_emulator.faults.next("body", count=4, body=body)
        with pytest.raises(errors.ProtocolError, match="not a number") as caught:
            client.send("79039587454", "hi")
    assert caught.value.request_id is not None
    assert len(mobilgroup_emulator.requests) == 4  # retried like any other garbled answer


def test_resend_takes_error_7_as_accepted_earlier(client: MobilgroupClient,
                                                  mobilgroup_emulator: Emulator) -> None:
    first = client.send("79039587454", "once", request_id=5151)
    again = client.send("79039587454", "once", request_id=5151, resend=True)
    assert not first.accepted_earlier and again.accepted_earlier
    assert again.request_id == 5151 and again.attempts == 1
    assert [m.request_id for m in mobilgroup_emulator.outbox] == [5151]

