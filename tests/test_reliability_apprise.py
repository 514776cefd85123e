"""The Apprise plugin under faults (exactly once) and with a recognisable password (no leak)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import quote

import pytest

from mobilgroup_backends.emulator import Emulator
from tests.helpers import FAULT_KINDS

apprise = pytest.importorskip("apprise")
import mobilgroup_backends.apprise  # noqa: E402, F401  (registers mobilgroup://)

PHONE = "79031234567"
PASSWORD = "Canary:Pw@7/x%q"
FORMS = (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD))


@pytest.fixture
def secret_emulator(mobilgroup_emulator: Emulator) -> Iterator[Emulator]:
    mobilgroup_emulator.add_account(user_id="3000", login="sec", password=PASSWORD,
                                    balance=Decimal(10**6))
    yield mobilgroup_emulator
    mobilgroup_emulator.faults.clear()


def test_apprise_exactly_once_under_faults(secret_emulator: Emulator) -> None:
    alerts = apprise.Apprise()
    assert alerts.add(secret_emulator.url(PHONE, account="3000", retries=3, timeout=0.2, backoff=0.001))
    secret_emulator.faults.random(0.2, seed=9, kinds=FAULT_KINDS, seconds=0.5)
    outcomes = {f"apprise alert {i}": bool(alerts.notify(body=f"apprise alert {i}"))
                for i in range(40)}
    secret_emulator.faults.clear()
    assert sum(secret_emulator.faults.injected.values()) >= 5
    texts = Counter(m.text for m in secret_emulator.outbox.snapshot())
    assert max(texts.values()) == 1  # nothing twice
    for body, ok in outcomes.items():
        if ok:
            assert texts[body] == 1  # reported sent and in the outbox: none lost
    assert sum(outcomes.values()) >= 38


def test_apprise_never_shows_the_password(secret_emulator: Emulator,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = secret_emulator.url(PHONE, account="3000", retries=1, backoff=0.001, timeout=0.3)
    alerts = apprise.Apprise()
    assert alerts.add(url)
    plugin = alerts[0]
    seen = [plugin.url(privacy=True), repr(plugin), str(plugin), alerts.details()["schemas"][0]
            if isinstance(alerts.details(), dict) and alerts.details().get("schemas") else ""]
    assert alerts.notify(body="all good")
    secret_emulator.faults.next("http_500", 2)
    assert not alerts.notify(body="gateway failing")
    secret_emulator.faults.next("garbage", 2)
    assert not alerts.notify(body="gateway garbled")
    secret_emulator.accounts["3000"].blocked = True
    assert not alerts.notify(body="account blocked")
    secret_emulator.accounts["3000"].blocked = False
    bad = url.replace("?", "?sender=Far%20too%20long&")
    assert apprise.Apprise.instantiate(bad) is None
    seen.append(caplog.text)
    leaks = [form for text in seen for form in FORMS if form in text]
    assert leaks == []
    assert "****" in plugin.url(privacy=True)
    # The plugin's own log lines mask phones. (Apprise's "Loaded ... URL" line shows the privacy
    # URL, which keeps its targets in full, as for every Apprise service.)
    mine = "\n".join(r.getMessage() for r in caplog.records if "Mobilgroup SMS to" in r.getMessage())
    assert PHONE not in mine and "7903*****67" in mine
