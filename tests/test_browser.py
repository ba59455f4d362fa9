"""The staff pages in a real browser: Debian's Chromium driven by Playwright, against the real
`checkin-bot serve` process. Screenshots of the main pages are saved in the test's temporary
directory (the path is printed; run with -s to see it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .deploy import Deployment, deploy
from .deploy import text as _text
from .helpers import ALEX, JORDAN, STRANGER

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER, PASSWORD = "frontdesk", "correct horse battery staple"

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def site(tmp_path: Path, sqlite_databases: object) -> Iterator[Deployment]:
    from .databases import Sqlite

    assert isinstance(sqlite_databases, Sqlite)
    with sqlite_databases.database(migrated=False) as url:
        yield from deploy(
            tmp_path,
            url,
            bots=1,
            STAFF_USERNAME=USER,
            STAFF_PASSWORD=PASSWORD,
            SECRET_KEY="browser-test-secret-" + "k" * 32,
            TIMEZONE="Australia/Sydney",
        )


@pytest.fixture
def chromium() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def test_find_a_customer_by_national_number_and_see_their_ticket(
    site: Deployment, chromium: object, tmp_path: Path
) -> None:
    base = site.bots[0]
    assert "Ticket A003" in _text(base, ALEX, "HERE").text
    _text(base, JORDAN, "here")
    _text(base, JORDAN, "yes")
    _text(base, STRANGER, "<script>alert('hi')</script> I'm HERE")

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    context = chromium.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

    # Any staff page sends you to the login form first.
    page.goto(f"{base}/staff/")
    assert "/staff/login" in page.url
    page.screenshot(path=str(shots / "1-login.png"), full_page=True)
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/staff/dashboard$"))
    sync_api.expect(page.locator("#conversations-count")).to_have_text("3")
    sync_api.expect(page.locator("svg.chart.wide rect.bar")).to_have_count(24)
    page.screenshot(path=str(shots / "2-dashboard.png"), full_page=True)

    # The customer at the desk gives their number the way people say it.
    page.get_by_role("search").get_by_role("searchbox").fill("0491 570 156")
    page.get_by_role("search").get_by_role("button", name="Find").click()
    page.wait_for_url(re.compile(r".*/staff/conversations\?q=.*"))
    rows = page.locator("table.list tbody tr")
    sync_api.expect(rows).to_have_count(1)
    sync_api.expect(rows.first).to_contain_text("Alex Taylor")
    page.screenshot(path=str(shots / "3-search.png"), full_page=True)

    rows.first.get_by_role("link").first.click()
    page.wait_for_url(re.compile(r".*/staff/conversations/\d+$"))
    sync_api.expect(page.locator("dd.ticket")).to_have_text("A003")
    sync_api.expect(page.locator(".msg.out .bubble")).to_contain_text("Ticket A003")
    page.locator("details summary").first.click()
    sync_api.expect(page.locator("details pre").first).to_be_visible()
    page.screenshot(path=str(shots / "4-conversation.png"), full_page=True)

    # A customer's <script> is shown as text and never runs.
    page.goto(f"{base}/staff/conversations?q=0491570199")
    page.locator("table.list tbody tr").first.get_by_role("link").first.click()
    sync_api.expect(page.locator(".msg.in .bubble").first).to_contain_text("<script>")
    page.screenshot(path=str(shots / "5-hostile-text.png"), full_page=True)
    assert dialogs == []

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/staff/login$"))
    page.goto(f"{base}/staff/dashboard")
    assert "/staff/login" in page.url
    context.close()

    assert console_errors == []  # e.g. no CSP violation on any page
    for name in ("1-login", "2-dashboard", "3-search", "4-conversation", "5-hostile-text"):
        assert (shots / f"{name}.png").stat().st_size > 5_000
