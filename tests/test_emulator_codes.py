"""The emulator finds one-time codes: on the Emulator object, in /api/last-code, and in each
message the page shows."""

from __future__ import annotations

import pytest
import requests

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.emulator.codes import find_code


@pytest.mark.parametrize(("text", "code"), [
    ("123456 is your shop code. Valid 5 min.", "123456"),
    ("Привет! Ваш код: 4521", "4521"),
    ("Login code BCDF-GHJK, valid 3 min.", "BCDF-GHJK"),       # allauth's default shape
    ("Code 123-456-789", "123-456-789"),                        # allauth's numeric shape
    ("Your code is A7K2Q9", "A7K2Q9"),
    ("Call +79000000000 or 8 900 000-00-00 today", None),        # phones are not codes
    ("Order 79000000000 shipped on 2026-12-07 at 12:30", None),  # nor long numbers, dates
    ("Balance 1234.56 RUB", None),
    ("No account uses this number.", None),
])
def test_find_code(text: str, code: str | None) -> None:
    assert find_code(text) == code


def test_last_code_by_phone_on_the_object_and_in_the_api(mobilgroup_emulator: Emulator) -> None:
    base = f"http://127.0.0.1:{mobilgroup_emulator.port}/api/last-code"
    with MobilgroupClient.from_url(mobilgroup_emulator.url()) as client:
        client.send("79000000041", "111111 is your code")
        client.send("79000000042", "222222 is your code")
        client.send("79000000041", "333333 is your code")
        client.send("79000000041", "no code in this one")

    assert mobilgroup_emulator.last_code("+7 900 000-00-41") == "333333"
    assert mobilgroup_emulator.last_code("79000000042") == "222222"
    assert mobilgroup_emulator.last_code("+79000000043") is None
    answer = requests.get(base, params={"phone": "+7 900 000-00-41"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["code"] == "333333" and answer.json()["phone"] == "79000000041"
    assert answer.json()["text"] == "333333 is your code"
    assert requests.get(base, params={"phone": "79000000043"}, timeout=10).status_code == 404
    assert "give the phone" in requests.get(base, timeout=10).json()["error"]
    shown = requests.get(f"http://127.0.0.1:{mobilgroup_emulator.port}/api/messages",
                         timeout=10).json()
    assert [message["code"] for message in shown] == [None, "333333", "222222", "111111"]


def test_last_code_waits_for_the_message(mobilgroup_emulator: Emulator) -> None:
    import threading

    def later() -> None:
        with MobilgroupClient.from_url(mobilgroup_emulator.url()) as client:
            client.send("79000000044", "Code 5555")

    sender = threading.Timer(0.2, later)
    sender.start()
    try:
        assert mobilgroup_emulator.last_code("79000000044", timeout=10) == "5555"
    finally:
        sender.join(10)
