"""The emulator's gateway behaviour over real HTTP: commands, error codes, accounts, the clock.

Requests go through ``http.client`` to 127.0.0.1, never through the package's own client, so the
emulator is checked against the spec and not against the code it is meant to test.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import pytest

from mobilgroup_backends.emulator import Account, Emulator, OutboxMessage
from tests.helpers import wait_until

DATA = Path(__file__).parent / "data"
T0 = datetime(2024, 5, 1, 12, 0)
CREDS = {"user_id": "1000", "user": "demo", "pwd": "demo-password"}
EXAMPLE = "1:valid@username:invalid_password"  # the account the gateway's examples log in as


def example(name: str) -> bytes:
    return (DATA / name).read_bytes()


def document(encoding: str = "windows-1251", **fields: object) -> bytes:
    """A request document; ``None`` values leave the element out."""
    body = "".join(f"<{name}>{escape(str(value))}</{name}>\n"
                   for name, value in fields.items() if value is not None)
    text = f'<?xml version="1.0" encoding="{encoding}"?>\n<request>\n{body}</request>\n'
    return text.encode(encoding)


def post(emulator: Emulator, body: bytes) -> bytes:
    conn = http.client.HTTPConnection(emulator.host, emulator.port, timeout=5)
    try:
        conn.request("POST", "/extxml.php", body, {"Content-Type": "application/xml"})
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/xml; charset=windows-1251"
        return data
    finally:
        conn.close()


def parse(data: bytes) -> ElementTree.Element:
    assert data.startswith(b'<?xml version="1.0" encoding="windows-1251"?>\n')
    return ElementTree.fromstring(re.sub(rb"</\s+(\w+)\s*>", rb"</\1>", data))


def answer(data: bytes) -> dict[str, str]:
    return {child.tag: (child.text or "").strip() for child in parse(data)}


def call(emulator: Emulator, **fields: object) -> dict[str, str]:
    return answer(post(emulator, document(**{**CREDS, **fields})))


def send(emulator: Emulator, **fields: object) -> dict[str, str]:
    defaults = {"command": "send", "phone": "79991234567", "message": "hello", "id": 1}
    return call(emulator, **{**defaults, **fields})


def dests(emulator: Emulator, request_id: int) -> tuple[str, list[tuple[str, str, str]]]:
    root = parse(post(emulator, document(**CREDS, command="status", id=request_id, extended=1)))
    found = [(d.findtext("phone", ""), d.findtext("status", ""),
              " ".join(d.findtext("time", "").split())) for d in root.iter("dest")]
    return root.findtext("status", "").strip(), found


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(start_time=T0, freeze_clock=True) as running:
        yield running


# --- the gateway's own examples, byte for byte ------------------------------------------------


def test_send_example_is_accepted_and_quirky_answer_matches_the_spec_bytes() -> None:
    with Emulator([EXAMPLE], quirky=True) as emulator:
        assert post(emulator, example("send-request.xml")) == example("send-response-ok.xml")
        message = emulator.outbox[0]
    assert message.request_id == 123456
    assert message.user_id == "1"
    assert message.phones == ("79039587454", "79236411579")
    assert message.text == "test sms message"
    assert message.sender == "Mobilgrup"
    assert message.transliterate is True  # <translit>1</translit> is not a parameter: ignored
    assert message.schedule == datetime(2007, 3, 12, 23, 22)
    assert message.valid_hours == 24


def test_send_example_with_wrong_password_matches_the_error_4_example() -> None:
    with Emulator(["1:valid@username:another"], quirky=True) as emulator:
        data = post(emulator, example("send-request.xml"))
    assert data == example("send-response-error-4.xml")


def test_send_example_against_the_default_account_is_error_3() -> None:
    with Emulator() as emulator:
        assert answer(post(emulator, example("send-request.xml")))["error"] == "3"


def test_status_and_balance_examples() -> None:
    with Emulator([EXAMPLE], quirky=True, freeze_clock=True) as emulator:
        post(emulator, example("send-request.xml"))
        assert b"<status>2 </status>" in post(emulator, example("status-request.xml"))
        emulator.clock.advance(6)  # the schedule is long past: sent at once, then delivered
        status = post(emulator, example("status-request.xml"))
        balance = post(emulator, example("balance-request.xml"))
    assert status.endswith(b"<status>4 </status>\n<id>123456</ id>\n</response >\n")
    assert b"<extended>" not in status  # the example request does not ask for it
    # The balance example's shape, with our balance and id: same elements, same quirks.
    shape = re.sub(rb" +\n", b"\n", example("balance-response.xml"))
    assert balance == shape.replace(b"123456", b"0").replace(b"1234", b"98")


def test_status_example_on_a_fresh_gateway_is_error_12() -> None:
    with Emulator([EXAMPLE]) as emulator:
        assert answer(post(emulator, example("status-request.xml"))) == {
            "result": "ERROR", "error": "12", "id": "123456"}


# --- answers ---------------------------------------------------------------------------------


def test_well_formed_answers_by_default(emulator: Emulator) -> None:
    data = post(emulator, document(**CREDS, command="send", phone="79991234567",
                                   message="hi", id=5))
    assert data == (b'<?xml version="1.0" encoding="windows-1251"?>\n<response>\n'
                    b"<result>OK</result>\n<error>0</error>\n<id>5</id>\n</response>\n")
    ElementTree.fromstring(data)  # no repair needed


def test_quirky_can_be_switched_at_runtime(emulator: Emulator) -> None:
    send(emulator, id=1)
    emulator.quirky = True
    emulator.clock.advance(1)
    data = post(emulator, document(**CREDS, command="status", id=1, extended=1))
    assert b"</ id>\n</response >\n" in data
    assert b"<status>2 </status>" in data
    assert b"<time>2024-05-01\n12:00</time>" in data  # the example's line break inside <time>
    with pytest.raises(ElementTree.ParseError):
        ElementTree.fromstring(data)
    emulator.quirky = False
    assert b"</id>\n</response>\n" in post(emulator, document(**CREDS, command="balance"))


def test_error_answer_echoes_the_id_only_when_it_is_a_number(emulator: Emulator) -> None:
    assert call(emulator, pwd="wrong", command="send", id=77) == {
        "result": "ERROR", "error": "4", "id": "77"}
    assert call(emulator, pwd="wrong", command="send", id="x7") == {"result": "ERROR", "error": "4"}
    assert answer(post(emulator, b"junk")) == {"result": "ERROR", "error": "1"}


def test_balance_answer(emulator: Emulator) -> None:
    assert call(emulator, command="balance") == {
        "result": "OK", "error": "0", "balance": "100", "id": "0"}


def test_values_are_stripped_and_unknown_elements_ignored(emulator: Emulator) -> None:
    body = document(user_id=" 1000 ", user="\n demo\n", pwd=" demo-password ",
                    command=" send ", phone=" 79991234567 ", message="  hi there \n",
                    id=" 9 ", translit="1", colour="blue")
    assert answer(post(emulator, body))["error"] == "0"
    assert emulator.outbox[0].text == "hi there"


# --- errors and their precedence ------------------------------------------------------------


def test_error_precedence_one_fault_removed_at_a_time() -> None:
    """A request with every fault at once, repaired one fault per step: the codes come out in
    the documented order."""
    with Emulator(["1000:demo:demo-password:1"], start_time=T0, freeze_clock=True) as emulator:
        assert send(emulator, id=1)["error"] == "0"  # id 1 is now used, balance is 0
        emulator.accounts["1000"].balance = Decimal("1")
        assert answer(post(emulator, b"<request><user_id>1000</user_id>"))["error"] == "1"
        assert answer(post(emulator, b"<?xml version='1.0'?><reply/>"))["error"] == "1"
        fields: dict[str, object] = {
            "user_id": "x1000", "user": "demo", "pwd": None, "command": "sned",
            "phone": "+79991234567", "message": "z" * 141, "id": None,
            "schedule": "tomorrow", "valid": "49"}
        emulator.accounts["1000"].blocked = True
        steps: list[tuple[str, dict[str, object]]] = [
            ("2", {"pwd": "wrong"}),
            ("3", {"user_id": "1000"}),
            ("4", {"pwd": "demo-password"}),
            ("5", {}),  # unblocked below
            ("6", {"command": "send"}),
            ("2", {"id": 1}),
            ("8", {"phone": "79991234567,79991234568"}),
            ("10", {"message": "hello"}),
            ("11", {"schedule": "2024-05-01 13:00"}),
            ("2", {"valid": "48"}),
            ("7", {"id": 2}),
            ("9", {"phone": "79991234567"}),
            ("0", {}),
        ]
        seen = []
        for expected, repair in steps:
            code = answer(post(emulator, document(**fields)))["error"]
            seen.append(code)
            assert code == expected, (seen, fields)
            fields.update(repair)
            if expected == "5":
                emulator.accounts["1000"].blocked = False
        assert seen == [code for code, _ in steps]


def test_status_precedence(emulator: Emulator) -> None:
    assert call(emulator, pwd="bad", command="status")["error"] == "4"
    assert call(emulator, command="status")["error"] == "2"
    assert call(emulator, command="status", id="abc")["error"] == "2"
    assert call(emulator, command="status", id=404)["error"] == "12"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"user_id": None}, "2"),
        ({"user": ""}, "2"),
        ({"pwd": "   "}, "2"),
        ({"command": None}, "2"),
        ({"user_id": "999"}, "3"),
        ({"user": "Demo"}, "4"),
        ({"pwd": "demo-passwordX"}, "4"),
        ({"command": "SEND"}, "6"),
        ({"command": "stats"}, "6"),
        ({"phone": None}, "2"),
        ({"message": None}, "2"),
        ({"message": "  "}, "2"),
        ({"id": None}, "2"),
        ({"id": "12a"}, "2"),
        ({"id": "-5"}, "2"),
        ({"id": str(2**63)}, "2"),
        ({"phone": "+79991234567"}, "8"),
        ({"phone": "799912345"}, "8"),  # 9 digits
        ({"phone": "7999123456789012"}, "8"),  # 16 digits
        ({"phone": "79991234567,"}, "8"),
        ({"phone": "79991234567, 79991234568"}, "8"),
        ({"phone": "79991234567;79991234568"}, "8"),
        ({"phone": "7999-123-45-67"}, "8"),
        ({"message": "z" * 141}, "10"),
        ({"message": "z" * 65, "rus_sms": 1}, "10"),
        ({"schedule": "2024-05-01T13:00"}, "11"),
        ({"schedule": "2024-05-01 13:00:00"}, "11"),
        ({"schedule": "2024-02-30 13:00"}, "11"),
        ({"schedule": "2024-05-01 24:00"}, "11"),
        ({"schedule": "01.05.2024 13:00"}, "11"),
        ({"valid": "0"}, "2"),
        ({"valid": "49"}, "2"),
        ({"valid": "1.5"}, "2"),
        ({"valid": "x"}, "2"),
    ],
)
def test_error_codes(emulator: Emulator, fields: dict[str, object], code: str) -> None:
    base: dict[str, object] = {**CREDS, "command": "send", "phone": "79991234567",
                               "message": "hello", "id": 3}
    assert answer(post(emulator, document(**{**base, **fields})))["error"] == code
    assert len(emulator.outbox) == 0


def test_blocked_client_is_error_5_for_every_command(emulator: Emulator) -> None:
    emulator.account.blocked = True
    for command in ("send", "status", "balance", "nonsense"):
        assert call(emulator, command=command, id=1)["error"] == "5"


@pytest.mark.parametrize("body", [
    b"", b"   ", b"not xml at all", b"<request>", b"<response><result>OK</result></response>",
    b'<?xml version="1.0"?><!DOCTYPE request [<!ENTITY x "y">]><request>&x;</request>',
    b'<?xml version="1.0"?><!DOCTYPE request SYSTEM "http://127.0.0.1:9/x.dtd"><request/>',
    "<?xml version='1.0' encoding='utf-8'?><request>Привет</request>".encode("windows-1251"),
])
def test_error_1(emulator: Emulator, body: bytes) -> None:
    assert answer(post(emulator, body)) == {"result": "ERROR", "error": "1"}


def test_user_id_must_be_ascii_digits(emulator: Emulator) -> None:
    fullwidth = "\uff11\uff10\uff10\uff10"  # 1000 in fullwidth digits: str.isdigit() says yes
    body = document("utf-8", **{**CREDS, "user_id": fullwidth}, command="balance")
    assert answer(post(emulator, body))["error"] == "3"
    body = document("utf-8", **CREDS, command="send", phone="79991234567", message="x",
                    id=fullwidth)
    assert answer(post(emulator, body))["error"] == "2"


def test_history_limit_keeps_the_newest() -> None:
    with Emulator(history_limit=3) as emulator:
        for request_id in range(1, 6):
            send(emulator, id=request_id)
        assert [m.request_id for m in emulator.outbox] == [3, 4, 5]
        assert [r.request_id for r in emulator.requests] == [3, 4, 5]
        assert emulator.outbox[0].request_id == 3 and emulator.outbox[1:][0].request_id == 4


def test_duplicate_id_is_per_account() -> None:
    with Emulator(["1000:demo:demo-password", "2000:other:pw"]) as emulator:
        assert send(emulator, id=42)["error"] == "0"
        assert send(emulator, id=42)["error"] == "7"
        assert send(emulator, id="042")["error"] == "7"  # the same number
        other = {"user_id": "2000", "user": "other", "pwd": "pw"}
        assert answer(post(emulator, document(**other, command="send", phone="79991234567",
                                              message="x", id=42)))["error"] == "0"
        assert answer(post(emulator, document(**other, command="status", id=43)))["error"] == "12"
        assert len(emulator.outbox) == 2


# --- text length ----------------------------------------------------------------------------


def test_length_counts_characters_not_bytes(emulator: Emulator) -> None:
    cyrillic = "Ж" * 64
    assert send(emulator, id=1, message="z" * 140)["error"] == "0"
    assert send(emulator, id=2, message=cyrillic, rus_sms=1)["error"] == "0"
    # The same text in a UTF-8 document is 128 bytes, still 64 characters.
    body = document("utf-8", **CREDS, command="send", phone="79991234567",
                    message=cyrillic, id=3, rus_sms=1)
    assert answer(post(emulator, body))["error"] == "0"
    assert send(emulator, id=4, message="Ж" * 65, rus_sms=1)["error"] == "10"
    assert send(emulator, id=5, message="Ж" * 140, rus_sms=0)["error"] == "0"
    assert [m.transliterate for m in emulator.outbox] == [True, False, False, True]
    assert emulator.outbox[1].text == cyrillic


# --- money ----------------------------------------------------------------------------------


def test_balance_decreases_per_recipient(emulator: Emulator) -> None:
    emulator.price_per_sms = "0.50"
    send(emulator, id=1)
    assert call(emulator, command="balance")["balance"] == "99.50"
    send(emulator, id=2, phone="79991234567,79991234568,79991234569")
    assert call(emulator, command="balance")["balance"] == "98.00"
    assert emulator.account.balance == Decimal("98.00")


def test_not_enough_money_charges_nothing_and_keeps_the_id_free(emulator: Emulator) -> None:
    emulator.account.balance = Decimal("1")
    assert send(emulator, id=1, phone="79991234567,79991234568")["error"] == "9"
    assert emulator.account.balance == Decimal("1")
    assert send(emulator, id=1)["error"] == "0"  # the refused id was not registered
    assert emulator.account.balance == Decimal("0")
    assert send(emulator, id=2)["error"] == "9"
    emulator.price_per_sms = 0
    assert send(emulator, id=2)["error"] == "0"


# --- accounts -------------------------------------------------------------------------------


def test_default_account() -> None:
    emulator = Emulator()
    assert list(emulator.accounts) == ["1000"]
    account = emulator.account
    assert (account.login, account.password, account.balance) == ("demo", "demo-password", 100)
    assert (account.blocked, account.sender) == (False, "Mobilgrup")


@pytest.mark.parametrize(
    ("spec", "login", "password", "balance"),
    [
        ("1:valid@username:invalid_password", "valid@username", "invalid_password", "100"),
        ("1:demo:pw:250", "demo", "pw", "250"),
        ("1:demo:pw:99.50", "demo", "pw", "99.50"),
        ("1:demo:a:b:c", "demo", "a:b:c", "100"),
        ("1:demo:pw:5:100", "demo", "pw:5", "100"),
        ("1:demo:pw:1e5", "demo", "pw:1e5", "100"),
        ("1:demo:pw:-1", "demo", "pw:-1", "100"),
        ("1:demo:12", "demo", "12", "100"),  # a password alone is never taken for a balance
    ],
)
def test_account_parse(spec: str, login: str, password: str, balance: str) -> None:
    account = Account.parse(spec)
    assert (account.user_id, account.login, account.password) == ("1", login, password)
    assert account.balance == Decimal(balance)


@pytest.mark.parametrize("spec", ["1", "1:demo", "1:demo:", "x:demo:pw", ":demo:pw", "1::pw"])
def test_account_parse_refuses(spec: str) -> None:
    with pytest.raises(ValueError):
        Account.parse(spec)


def test_account_repr_hides_the_password() -> None:
    account = Account("1", "demo", "s3cret-pw")
    assert "s3cret" not in repr(account)
    emulator = Emulator([account])
    assert "s3cret" not in repr(emulator) and "s3cret" not in repr(emulator.accounts)


def test_add_account_at_runtime(emulator: Emulator) -> None:
    assert call(emulator, user_id="77", user="late", pwd="pw", command="balance")["error"] == "3"
    emulator.add_account(user_id="77", login="late", password="pw", balance="5")
    assert call(emulator, user_id="77", user="late", pwd="pw", command="balance") == {
        "result": "OK", "error": "0", "balance": "5", "id": "0"}
    with pytest.raises(TypeError):
        emulator.add_account("79:a:b", login="c")
    with pytest.raises(TypeError):
        emulator.add_account(user_id="79")
    emulator.add_account("78:x@y:p:w:3")
    assert call(emulator, user_id="78", user="x@y", pwd="p:w", command="balance")["balance"] == "3"


def test_url_points_at_the_emulator() -> None:
    with Emulator(["5:valid@username:p@ss:w/rd&x"]) as emulator:
        url = emulator.url("79991234567", "79991234568", sender="Shop", valid=2)
        parts = urlsplit(url)
        assert parts.scheme == "mobilgroup"
        assert url.startswith("mobilgroup://valid%40username:p%40ss%3Aw%2Frd%26x@5/")
        assert parts.path == "/79991234567/79991234568"
        query = parse_qs(parts.query)
        assert query == {"endpoint": [emulator.endpoint], "sender": ["Shop"], "valid": ["2"]}
        assert "endpoint=http%3A%2F%2F127.0.0.1%3A" in url
        assert unquote(parts.netloc.rpartition("@")[0].partition(":")[2]) == "p@ss:w/rd&x"
        assert emulator.url(account="5").endswith("@5?endpoint=" + parts.query.split("=")[1]
                                                  .split("&")[0])


def test_endpoint_needs_a_running_emulator() -> None:
    emulator = Emulator()
    with pytest.raises(RuntimeError):
        _ = emulator.endpoint
    with emulator:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/extxml\.php", emulator.endpoint)
        assert emulator.host == "127.0.0.1" and emulator.port > 0


# --- observation ----------------------------------------------------------------------------


def test_outbox_records_accepted_messages_only(emulator: Emulator) -> None:
    send(emulator, id=1, sender="Shop", valid=5, schedule="2024-05-01 12:30", rus_sms=1)
    send(emulator, id=1)  # error 7: not recorded
    send(emulator, id=2, phone="123")  # error 8: not recorded
    assert len(emulator.outbox) == 1
    assert emulator.outbox[0] == OutboxMessage(
        request_id=1, user_id="1000", phones=("79991234567",), text="hello", sender="Shop",
        transliterate=False, schedule=datetime(2024, 5, 1, 12, 30), valid_hours=5,
        received_at=T0)
    assert [m.request_id for m in emulator.outbox] == [1]
    assert emulator.outbox[-1:] == [emulator.outbox[0]]
    send(emulator, id=3)
    assert emulator.outbox[1].sender is None and emulator.outbox[1].valid_hours == 1
    assert emulator.outbox == list(emulator.outbox) and emulator.outbox != []
    emulator.outbox.clear()
    assert len(emulator.outbox) == 0 and not emulator.outbox and emulator.outbox == []


def test_outbox_wait_for(emulator: Emulator) -> None:
    def later() -> None:
        time.sleep(0.2)
        send(emulator, id=1)

    thread = threading.Thread(target=later, daemon=True)
    started = time.monotonic()
    thread.start()
    assert emulator.outbox.wait_for(1, timeout=5.0)
    assert time.monotonic() - started < 4.0
    thread.join(5)
    started = time.monotonic()
    assert not emulator.outbox.wait_for(2, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 2.0


def test_requests_log_and_status_queries(emulator: Emulator) -> None:
    send(emulator, id=7)
    call(emulator, command="status", id=7)
    call(emulator, command="status", id=7, extended=1)
    call(emulator, command="status", id=8)
    call(emulator, command="balance")
    assert emulator.status_queries(7) == 2
    assert emulator.status_queries(8) == 1  # answered 12, but asked
    assert emulator.status_queries(9) == 0
    assert [(r.command, r.error, r.fault) for r in emulator.requests] == [
        ("send", 0, None), ("status", 0, None), ("status", 0, None), ("status", 12, None),
        ("balance", 0, None)]
    assert emulator.requests[0].request_id == 7 and emulator.requests[0].user_id == "1000"


# --- clock and lifecycle --------------------------------------------------------------------


def test_clock_advances_without_sleeping() -> None:
    emulator = Emulator(start_time=T0, freeze_clock=True)
    clock = emulator.clock
    assert clock.now() == T0 and clock.frozen
    clock.advance(90)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == T0 + timedelta(seconds=150)
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.thaw()
    time.sleep(0.05)
    assert clock.now() > T0 + timedelta(seconds=150)
    clock.freeze()
    frozen = clock.now()
    time.sleep(0.02)
    assert clock.now() == frozen


def test_clock_starts_at_the_current_minute() -> None:
    now = Emulator().clock.now()
    assert now.tzinfo is None
    assert now.second == 0 or now.second == 1  # truncated to the minute, then running


def test_lifecycle_of_delivered_undeliverable_and_failing(emulator: Emulator) -> None:
    ok, never, broken = "79991234567", "79990000000", "79999999999"
    assert send(emulator, id=1, phone=f"{ok},{never},{broken}")["error"] == "0"
    clock = emulator.clock

    def at(seconds: float) -> tuple[str, list[tuple[str, str, str]]]:
        clock.set(T0 + timedelta(seconds=seconds))
        return dests(emulator, 1)

    assert at(0) == ("2", [(ok, "0", "2024-05-01 12:00"), (never, "0", "2024-05-01 12:00"),
                           (broken, "0", "2024-05-01 12:00")])
    assert at(0.999)[1][0][1] == "0"
    assert at(1) == ("2", [(ok, "8", "2024-05-01 12:00"), (never, "8", "2024-05-01 12:00"),
                           (broken, "16", "2024-05-01 12:00")])
    assert at(5.9)[1][0][1] == "8"
    assert at(6) == ("2", [(ok, "1", "2024-05-01 12:00"), (never, "8", "2024-05-01 12:00"),
                           (broken, "16", "2024-05-01 12:00")])
    assert at(3599)[0] == "2"
    assert at(3600) == ("4", [(ok, "1", "2024-05-01 12:00"), (never, "2", "2024-05-01 13:00"),
                              (broken, "16", "2024-05-01 12:00")])


def test_delays_and_lifetime_shape_the_times(emulator: Emulator) -> None:
    emulator.send_delay = 30
    emulator.deliver_delay = timedelta(minutes=2)
    send(emulator, id=1, phone="79991234567,79990000000", valid=3)
    emulator.send_delay = 0  # a mailing keeps the delays it was accepted with
    emulator.clock.advance(150)
    assert dests(emulator, 1) == ("2", [("79991234567", "1", "2024-05-01 12:02"),
                                        ("79990000000", "8", "2024-05-01 12:00")])
    emulator.clock.set(T0 + timedelta(hours=3))
    assert dests(emulator, 1) == ("4", [("79991234567", "1", "2024-05-01 12:02"),
                                        ("79990000000", "2", "2024-05-01 15:00")])


def test_scheduled_message_is_held_until_its_time(emulator: Emulator) -> None:
    send(emulator, id=1, schedule="2024-05-01 12:10")
    assert emulator.outbox[0].schedule == datetime(2024, 5, 1, 12, 10)
    emulator.clock.advance(timedelta(minutes=10))
    assert dests(emulator, 1) == ("2", [("79991234567", "0", "2024-05-01 12:00")])
    emulator.clock.advance(1)
    assert dests(emulator, 1) == ("2", [("79991234567", "8", "2024-05-01 12:10")])
    emulator.clock.advance(5)
    assert dests(emulator, 1) == ("4", [("79991234567", "1", "2024-05-01 12:10")])


def test_past_schedule_sends_now(emulator: Emulator) -> None:
    send(emulator, id=1, schedule="2007-03-12 23:22")
    emulator.clock.advance(6)
    assert dests(emulator, 1) == ("4", [("79991234567", "1", "2024-05-01 12:00")])


def test_undeliverable_and_failing_rules_are_settable(emulator: Emulator) -> None:
    emulator.undeliverable = lambda phone: phone.startswith("7911")
    emulator.failing = re.compile(r"^7922")
    send(emulator, id=1, phone="79110000001,79220000002,79990000000")
    emulator.failing = None  # decided at acceptance: later changes do not rewrite history
    emulator.clock.advance(6)
    assert [s for _, s, _ in dests(emulator, 1)[1]] == ["8", "16", "1"]
    mailing = emulator.gateway.mailing("1000", 1)
    assert mailing is not None and [fate.value for fate in mailing.fates] == [
        "undeliverable", "fail", "deliver"]
    assert emulator.gateway.mailing("1000", 2) is None


def test_status_without_extended_has_no_dests(emulator: Emulator) -> None:
    send(emulator, id=1)
    for extended in (None, 0, "00"):
        data = post(emulator, document(**CREDS, command="status", id=1, extended=extended))
        assert b"<extended>" not in data and b"<dest>" not in data
    assert b"<dest>" in post(emulator, document(**CREDS, command="status", id=1, extended="yes"))


def test_running_clock_delivers_in_real_time() -> None:
    with Emulator(send_delay=0.05, deliver_delay=0.05) as emulator:
        send(emulator, id=1)
        assert wait_until(lambda: dests(emulator, 1)[0] == "4")
        assert dests(emulator, 1)[1][0][1] == "1"


def test_fixture_from_the_plugin(mobilgroup_emulator: Emulator) -> None:
    assert mobilgroup_emulator.running
    assert call(mobilgroup_emulator, command="balance")["balance"] == "100"


def test_the_emulator_and_the_client_read_the_protocol_alike() -> None:
    """The emulator states the gateway's facts itself (a second reading of the protocol); this is
    where the two readings must agree."""
    from mobilgroup_backends import protocol
    from mobilgroup_backends.emulator import clock, gateway, lifecycle, wire

    assert gateway.TEXT_LIMIT_TRANSLIT == protocol.MAX_TEXT_TRANSLIT
    assert gateway.TEXT_LIMIT_UNICODE == protocol.MAX_TEXT_UNICODE
    assert gateway.MAX_VALID_HOURS == protocol.MAX_VALID_HOURS
    # Every id the client mints or accepts, the emulator accepts too.
    assert protocol.MAX_REQUEST_ID <= gateway.MAX_REQUEST_ID
    statuses = {"QUEUED": lifecycle.QUEUED, "DELIVERED": lifecycle.DELIVERED,
                "UNDELIVERED": lifecycle.NOT_DELIVERED, "SENT": lifecycle.SENT,
                "ERROR": lifecycle.ERROR}
    assert {m.name: int(m) for m in protocol.DeliveryStatus if m.is_known} == statuses
    assert {c for c in statuses.values() if protocol.DeliveryStatus(c).is_final} == lifecycle.FINAL
    assert (lifecycle.STARTED, lifecycle.FINISHED) == (protocol.MailingStatus.STARTED,
                                                       protocol.MailingStatus.FINISHED)
    assert wire.ENCODING == protocol.ENCODING
    assert wire.PROLOG == protocol.PROLOG
    assert wire.TIME_FORMAT == protocol.SCHEDULE_FORMAT
    moment = datetime(2026, 6, 1, 12, 0)
    assert moment.replace(tzinfo=clock.GATEWAY_TIMEZONE) == moment.replace(
        tzinfo=protocol.GATEWAY_TIMEZONE)
