"""Take the inbox page screenshots shown in emulator.md, in headless Chromium.

    python docs/screenshots.py

Needs Debian's ``chromium`` package and the ``playwright`` Python package (the ``test`` extra);
Playwright's own browser download is not used. Writes ``inbox.png`` and ``inbox-narrow.png`` next
to this file. Everything runs against a local emulator on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import shutil
from datetime import datetime
from pathlib import Path

from playwright.sync_api import sync_playwright

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import MobilgroupError
from mobilgroup_backends.protocol import fit_text

HERE = Path(__file__).parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fill(gateway: Emulator) -> None:
    """A morning of an online shop: codes, an order, a split alert, a refused request."""
    with MobilgroupClient.from_url(gateway.url(retries=0)) as client:
        client.send(["+7 903 958-74-54", "+7 923 641-15-79", "+7 913 000-00-00"],
                    "Привет! Ваш код подтверждения: 4521", sender="Shop")
        gateway.clock.advance(40)
        client.send("+7 923 641-15-79", "Ваш заказ №1042 собран и передан в доставку.",
                    sender="Shop", valid_hours=4)
        gateway.clock.advance(90)
        alert = ("web-1: диск /var заполнен на 95%, свободно 2 ГБ. Очистите журналы или "
                 "увеличьте раздел, иначе база данных остановится в течение часа. "
                 "Проверьте также резервные копии.")
        for piece in fit_text(alert, 64):
            client.send("+7 903 958-74-54", piece, transliterate=False)
        gateway.clock.advance(3)
        client.send("+7 916 555-99-99", "Код входа: 7731")
        with MobilgroupClient("1000", "demo", "typo", endpoint=gateway.endpoint,
                              retries=0) as wrong, contextlib.suppress(MobilgroupError):
            wrong.balance()
        gateway.clock.advance(4)


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("install Debian's chromium package first")
    with Emulator(start_time=datetime(2026, 5, 4, 9, 30), freeze_clock=True) as gateway, \
            sync_playwright() as driver:
        fill(gateway)
        browser = driver.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"http://127.0.0.1:{gateway.port}/")
        page.wait_for_selector("li.message")
        page.wait_for_selector("#rejected li")
        page.screenshot(path=str(HERE / "inbox.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(200)
        page.screenshot(path=str(HERE / "inbox-narrow.png"))
        browser.close()


if __name__ == "__main__":
    main()
