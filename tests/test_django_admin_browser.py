"""The outbox in Django's admin, in a real headless Chromium on a laptop-sized screen: the list
shows to whom and what without scrolling sideways."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.test_emulator_browser import LIVE, browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

__all__ = ["browser"]  # the shared Chromium fixture, used below

WIDTH = 1280
# Requests to it never leave the browser: the page's router answers them (see admin_page).
ORIGIN = "http://127.0.0.1:9"
LONG_TEXT = ("Здравствуйте, Анна Сергеевна! Ваш заказ №104212 собран и ждёт вас в пункте выдачи "
             "на Лесной, 12, до 20:00 пятницы. Код получения: 4521.")
LONG_ERROR = ("gateway error 9: not enough money on the account to send to every recipient "
              "(request id 482913650017734512); top up the account, then queue it again")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chromium"), pytest.mark.django_db]


@pytest.fixture(scope="module", autouse=True)
def orm_beside_playwright() -> Iterator[None]:
    """Playwright's synchronous API keeps an event loop running in this thread while the
    module's browser is open, and Django refuses ORM calls where one runs unless told (as its
    docs say for such tools): the test database's own clean-up included."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


LIST = "/admin/mobilgroup/outboxmessage/"


@pytest.fixture
def admin_page(browser: Browser, admin_client: Any, rows: list[Any]) -> Iterator[Page]:
    """The outbox list as Django's test client renders it for an admin, in a page whose every
    request is answered from here: the admin's pages made beforehand (its callbacks run in
    another context, where the test database's transaction is not), its stylesheets and
    scripts from the static files. No server thread, and nothing leaves the process."""
    from django.contrib.staticfiles import finders

    pages = {path: admin_client.get(path) for path in (LIST, "/admin/jsi18n/")}
    assert pages[LIST].status_code == 200

    def answer(route: Route) -> None:
        path = urlsplit(route.request.url).path
        if path in pages:
            page = pages[path]
            route.fulfill(status=page.status_code, body=page.content,
                          headers={"Content-Type": page["Content-Type"]})
            return
        found = finders.find(path.removeprefix("/static/")) if path.startswith("/static/") else None
        if found:
            route.fulfill(path=str(found))
        else:
            route.fulfill(status=404)

    context = browser.new_context(viewport={"width": WIDTH, "height": 800})
    context.route(f"{ORIGIN}/**", answer)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def rows() -> list[Any]:
    from mobilgroup_backends.django.models import OutboxMessage

    return [OutboxMessage.objects.create(
        request_id=482913650017734500 + number, phones=["79039587454", "79236411579"],
        text=LONG_TEXT, state=OutboxMessage.REJECTED, attempts=3, last_error=LONG_ERROR)
        for number in range(3)]


def test_the_outbox_list_fits_a_laptop_screen(admin_page: Page) -> None:
    admin_page.goto(ORIGIN + LIST)
    admin_page.wait_for_selector("td.field-text_start", timeout=LIVE)
    # The admin's own stylesheet laid it out.
    assert admin_page.evaluate("getComputedStyle(document.querySelector('#header')).display") \
        == "flex"
    # Nothing sticks out sideways: the whole list is on the screen.
    assert admin_page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    right_edge = admin_page.evaluate(
        "Math.max(...[...document.querySelectorAll('#result_list th, #result_list td')]"
        ".map(cell => cell.getBoundingClientRect().right))")
    assert right_edge <= WIDTH
    first = admin_page.query_selector("#result_list tbody tr")
    assert first is not None
    cells = {name: first.query_selector(f".field-{name}") for name in
             ("recipients", "text_start", "error_start")}
    assert cells["recipients"].text_content() == "79039587454 +1"  # type: ignore[union-attr]
    shown_text = cells["text_start"].text_content() or ""  # type: ignore[union-attr]
    assert LONG_TEXT.startswith(shown_text.rstrip("…")) and len(shown_text) <= 40
    assert (cells["error_start"].text_content() or "").startswith(  # type: ignore[union-attr]
        "gateway error 9")
