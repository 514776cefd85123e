"""The inbox page in a real headless Chromium: live updates, the clock, faults, search, looks.

Chromium is Debian's ``chromium`` package, driven by Playwright's Python package through
``executable_path`` (Playwright's own browser download is never used). Without Chromium these
tests skip and say how to install it; under CI (the ``CI`` variable set) that is a failure.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import TransportError
from tests.helpers import FROZEN_PASSWORD, FROZEN_START, wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: A name Chromium resolves to 127.0.0.1, as a rebinding DNS server would (the guard's tests).
REBOUND = "rebound.attacker.test"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
]
INSTALL = ("install Debian's Chromium (apt-get update && apt-get install -y chromium) and "
           "pip install 'mobilgroup-backends[test]' for Playwright; `playwright install` is "
           "not needed")
#: How long the page may take to show a change: it polls the API several times a second.
LIVE = 3000


# One worker runs them all: one Chromium start (seconds) instead of one per worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chromium")]


def _unavailable(reason: str) -> None:
    message = f"{reason}: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests. {message}", pytrace=False)
    pytest.skip(message)


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    _unavailable("no Chromium found")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=path, args=CHROMIUM_ARGS,
                                          headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, frozen_emulator: Emulator) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda message: problems.append(message.text)
              if message.type == "error" else None)
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.goto(f"http://127.0.0.1:{frozen_emulator.port}/")
    opened.wait_for_selector("#live:text('live')", timeout=LIVE)
    try:
        yield opened
    finally:
        context.close()
    # A blocked asset, a Content-Security-Policy violation or a script error shows up here.
    assert problems == []


def message_selector(request_id: int) -> str:
    return f'li.message[data-request-id="{request_id}"]'


def test_a_sent_message_appears_without_reload(page: Page, frozen_client: MobilgroupClient) -> None:
    page.evaluate("window.loadedOnce = true")
    text = "Привет! Ваш код подтверждения: 4521"
    sent = frozen_client.send(["+7 903 958-74-54", "+7 913 000-00-00"], text, sender="Shop")
    item = page.wait_for_selector(message_selector(sent.request_id), timeout=LIVE)
    assert item is not None
    assert page.evaluate("window.loadedOnce") is True  # the same document: no reload
    assert item.query_selector(".text").text_content() == text  # type: ignore[union-attr]
    phones = [node.text_content() for node in item.query_selector_all(".recipient .phone")]
    assert phones == ["+7 903 958-74-54", "+7 913 000-00-00"]
    assert "Shop" in (item.query_selector(".meta").text_content() or "")  # type: ignore[union-attr]
    assert "emulator's rule for undeliverable numbers" in (item.text_content() or "")
    assert page.text_content("#count") == "1 message"
    assert page.text_content("#accounts .balance") == "98"


def test_moving_the_clock_from_the_page(page: Page, frozen_emulator: Emulator,
                                        frozen_client: MobilgroupClient) -> None:
    sent = frozen_client.send(["79039587454", "79130000000"], "Ваш заказ отправлен")
    item = message_selector(sent.request_id)
    page.wait_for_selector(f'{item} .recipient[data-status="queued"]', timeout=LIVE)
    page.click("#advance-hour")
    page.wait_for_selector(f'{item} .recipient[data-phone="79039587454"][data-status="delivered"]',
                           timeout=LIVE)
    assert frozen_emulator.clock.now() == FROZEN_START + timedelta(hours=1)
    assert page.text_content("#clock-time") == "13:00:00"
    # Delivered now; the undeliverable number gives up when its lifetime (1 h) is over.
    page.wait_for_selector(
        f'{item} .recipient[data-phone="79130000000"][data-status="undelivered"]', timeout=LIVE)
    assert page.is_disabled("#advance-end")
    late = frozen_client.send("79130000000", "Ещё раз", valid_hours=5)
    page.wait_for_selector(f'{message_selector(late.request_id)} .recipient[data-status="queued"]',
                           timeout=LIVE)
    page.click("#advance-end")
    page.wait_for_selector(
        f'{message_selector(late.request_id)} .recipient[data-status="undelivered"]',
        timeout=LIVE)
    assert frozen_emulator.clock.now() == FROZEN_START + timedelta(hours=6)


def test_a_fault_switched_on_from_the_page(page: Page, frozen_emulator: Emulator,
                                           frozen_client: MobilgroupClient) -> None:
    page.click('button[data-fault="close_after"]')
    assert wait_until(lambda: frozen_emulator.faults.pending == 1, timeout=3)
    page.wait_for_selector('button[data-fault="close_after"][aria-pressed="true"]', timeout=LIVE)
    with pytest.raises(TransportError) as lost:
        frozen_client.send("79039587454", "Проверка сбоя")
    assert lost.value.maybe_sent
    assert frozen_emulator.requests[-1].fault == "close_after"
    page.wait_for_selector('#rejected li[data-fault="close_after"]', timeout=LIVE)
    page.wait_for_selector('button[data-fault="close_after"][aria-pressed="false"]', timeout=LIVE)

    page.check('input[name="fault-mode"][value="every"]')
    page.click('button[data-fault="http_500"]')
    assert wait_until(lambda: frozen_emulator.faults.describe()["random"] == ["http_500"], timeout=3)
    for _ in range(2):
        with pytest.raises(TransportError):
            frozen_client.balance()
    page.click('button[data-fault="http_500"]')  # switched off again
    assert wait_until(lambda: frozen_emulator.faults.describe()["random"] == [], timeout=3)
    assert frozen_client.balance() == 99

    page.check("#quirky")
    assert wait_until(lambda: frozen_emulator.quirky, timeout=3)
    assert frozen_client.balance() == 99  # the client reads the quirky form too
    page.click("#clear-faults")


def test_search_and_clear(page: Page, frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    order = frozen_client.send("79039587454", "Ваш заказ №1042 отправлен")
    code = frozen_client.send("79231234567", "Код входа: 5521")
    page.wait_for_selector(message_selector(code.request_id), timeout=LIVE)
    page.fill("#search", "ОТПРАВЛЕН")
    page.wait_for_selector(message_selector(code.request_id), state="detached", timeout=LIVE)
    assert page.query_selector(message_selector(order.request_id)) is not None
    assert page.text_content("#count") == "1 found of 2"
    page.fill("#search", "+7 923")
    page.wait_for_selector(message_selector(order.request_id), state="detached", timeout=LIVE)
    page.fill("#search", "")
    page.wait_for_selector(message_selector(order.request_id), timeout=LIVE)
    page.click("#clear")
    page.wait_for_selector("#empty:not([hidden])", timeout=LIVE)
    assert frozen_emulator.outbox == [] and page.query_selector_all("li.message") == []
    assert page.text_content("#accounts .balance") == "100"


def test_texts_are_shown_as_text_and_no_password_is_on_the_page(
        page: Page, frozen_emulator: Emulator, frozen_client: MobilgroupClient) -> None:
    hostile = '<img src=x onerror="document.title=1">&amp; <b>жирный</b>'
    sent = frozen_client.send("79039587454", hostile)
    item = page.wait_for_selector(message_selector(sent.request_id), timeout=LIVE)
    assert item is not None
    assert item.query_selector(".text").text_content() == hostile  # type: ignore[union-attr]
    assert page.query_selector_all("#messages .text *, #messages img") == []
    assert page.title() == "SMS inbox · Mobilgroup emulator"
    with MobilgroupClient("1000", "demo", FROZEN_PASSWORD + "!", endpoint=frozen_emulator.endpoint,
                          retries=0) as wrong, pytest.raises(Exception, match="error 4"):
        wrong.balance()
    page.wait_for_selector('#rejected li[data-error="4"]', timeout=LIVE)
    assert FROZEN_PASSWORD not in page.content()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshots_wide_and_narrow(page: Page, frozen_emulator: Emulator, frozen_client: MobilgroupClient,
                                     tmp_path: Path) -> None:
    frozen_client.send(["79039587454", "79236411579", "79130000000"],
                "Привет! Ваш код подтверждения: 4521", sender="Shop")
    last = frozen_client.send("79039587454", "Ваш заказ №1042 отправлен")
    page.wait_for_selector(message_selector(last.request_id), timeout=LIVE)
    wide = tmp_path / "wide.png"
    page.screenshot(path=str(wide), full_page=True)
    assert _png_size(wide)[0] == 1280

    page.set_viewport_size({"width": 380, "height": 800})
    page.wait_for_timeout(100)
    # Usable on a narrow window: nothing sticks out sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 380
    narrow = tmp_path / "narrow.png"
    page.screenshot(path=str(narrow), full_page=True)
    assert _png_size(narrow)[0] == 380


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "error")])
def test_without_chromium_a_skip_says_how_to_install_and_ci_fails(
        ci: str, outcome: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    # A PATH with only this Python on it: no Chromium to be found.
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    monkeypatch.setenv("CI", ci)
    # A pytest session of its own, in this process (a new interpreter costs seconds of imports):
    # without the plugins that hold process-wide state (the alarm of pytest-timeout, Django's
    # test environment, xdist's workers) or write files.
    code = pytest.main([
        "-q", "-rs", "-s", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "no:xdist",
        "-p", "no:django", "-p", "no:timeout", "-p", "no:faulthandler",
        "-W", "ignore::pytest.PytestConfigWarning",  # the settings of the plugins left out
        f"{__file__}::test_a_sent_message_appears_without_reload"])
    out = capsys.readouterr().out
    assert f"1 {outcome}" in out, out
    assert "apt-get install -y chromium" in out
    assert code == (pytest.ExitCode.OK if outcome == "skipped" else pytest.ExitCode.TESTS_FAILED)
