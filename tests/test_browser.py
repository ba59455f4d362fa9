"""The staff pages in a real browser: Debian's Chromium driven by Playwright, against the real
`checkin-bot serve` process (with its notifier, and Twilio's stand-in from tests/faulty.py for
the desk's texts). Screenshots of every staff page, at desktop and at phone width, are saved in
the test's temporary directory (the path is printed; run with -s to see it)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .deploy import PUBLIC, TOKEN, Deployment, deploy
from .deploy import text as _text
from .helpers import ALEX, CASEY, JORDAN, STRANGER, sign

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


# --- the front desk at work: desktop and phone --------------------------------------------------

DESK_USER, DESK_PASSWORD = "sam", "a long desk passphrase"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def desk_site(tmp_path: Path, sqlite_databases: object) -> Iterator[Deployment]:
    """One `serve` process with its notifier, the simulator and Twilio's Messages API played by
    tests/faulty.py, an admin in the environment and a desk account added with the CLI."""
    import subprocess
    import sys

    from .databases import Sqlite

    assert isinstance(sqlite_databases, Sqlite)
    with sqlite_databases.database(migrated=False) as url:
        for deployment in deploy(
            tmp_path,
            url,
            bots=1,
            upstream=[sys.executable, "-m", "tests.faulty"],
            STAFF_USERNAME=USER,
            STAFF_PASSWORD=PASSWORD,
            SECRET_KEY="browser-test-secret-" + "k" * 32,
            TIMEZONE="Australia/Sydney",
            TWILIO_ACCOUNT_SID="AC" + "1" * 32,
            TWILIO_FROM_NUMBER="+61400000000",
            TWILIO_SENDS_PER_SECOND="20",
            STAFF_REFRESH_SECONDS="3",
        ):
            added = subprocess.run(
                [sys.executable, "-m", "bot", "staff", "add", DESK_USER, "--password-stdin"],
                env=deployment.env,
                input=DESK_PASSWORD + "\n",
                capture_output=True,
                text=True,
            )
            assert added.returncode == 0, added.stderr
            yield deployment


def _stand_in_texts(site: Deployment) -> list[dict[str, str]]:
    found: list[dict[str, str]] = httpx.get(f"{site.simulator}/_fault", timeout=5).json()["texts"]
    return found


def _until(found: object, seconds: float = 20) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not found():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def _log_in(page: object, base: str, user: str, password: str) -> None:
    page.goto(f"{base}/staff/login")  # type: ignore[attr-defined]
    page.get_by_label("Username").fill(user)  # type: ignore[attr-defined]
    page.get_by_label("Password").fill(password)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Log in").click()  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(r".*/staff/dashboard$"))  # type: ignore[attr-defined]


def _fits(page: object, where: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")  # type: ignore[attr-defined]
    assert width <= PHONE["width"], f"{where}: {width} px wide at {PHONE['width']} px"


def test_the_front_desk_replies_marks_handled_and_an_admin_broadcasts(
    desk_site: Deployment, chromium: object, tmp_path: Path
) -> None:
    import httpx

    site, base = desk_site, desk_site.bots[0]
    assert "A003" in _text(base, ALEX, "HERE").text
    _text(base, ALEX, "I'm in the car park, do I come in? 🚗")  # a question the bot can't answer
    _text(base, JORDAN, "here")
    _text(base, JORDAN, "yes")
    _text(base, CASEY, "here")
    _text(base, CASEY, "yes")
    _text(base, STRANGER, "<script>alert('hi')</script> what's the wifi?")

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    dialogs: list[str] = []
    console_errors: list[str] = []

    def context(viewport: dict[str, int]) -> tuple[object, object]:
        made = chromium.new_context(viewport=viewport)  # type: ignore[attr-defined]
        page = made.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        return made, page

    # --- a desk account, at a desktop: from "needs attention" to a reply ---------------------
    desk_context, page = context(DESKTOP)
    _log_in(page, base, DESK_USER, DESK_PASSWORD)
    sync_api.expect(page.get_by_role("link", name="Broadcast")).to_have_count(0)
    page.locator("#attention-count").click()
    page.wait_for_url(re.compile(r".*/staff/attention\?.*"))
    item = page.locator("ul.attention > li", has_text="Alex Taylor")
    sync_api.expect(item).to_contain_text("Not understood")
    sync_api.expect(item).to_contain_text("car park")
    page.screenshot(path=str(shots / "desk-attention-desktop.png"), full_page=True)
    item.get_by_role("link", name="Open").click()
    page.wait_for_url(re.compile(r".*/staff/conversations/\d+$"))
    conversation = page.url
    sync_api.expect(page.locator("#attention")).to_contain_text("Not understood")

    page.get_by_role("link", name="Please come to the front desk.").click()
    reply_box = page.locator("textarea[name=text]")
    sync_api.expect(reply_box).to_have_value("Please come to the front desk.")
    reply_box.fill("Yes, please come in to the front desk, Alex 🙂")
    page.get_by_role("button", name="Count segments").click()
    sync_api.expect(page.locator("#counter")).to_contain_text("UCS-2, 1 segment")
    sync_api.expect(reply_box).to_have_value("Yes, please come in to the front desk, Alex 🙂")
    page.get_by_role("button", name="Send").click()
    sync_api.expect(page.locator(".notice")).to_contain_text("queued")

    # It reaches Twilio (the stand-in), sent by the notifier's process, once.
    sent_body = "Yes, please come in to the front desk, Alex 🙂"
    _until(lambda: any(t["Body"] == sent_body for t in _stand_in_texts(site)))
    [request] = [t for t in _stand_in_texts(site) if t["Body"] == sent_body]
    assert request["To"] == ALEX

    # Twilio reports it delivered, signed, to the callback the bot gave it, naming the
    # MessageSid its API answered with (which the bot records once that answer is back).
    def desk_replies() -> list[dict[str, Any]]:
        with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs in this thread
            return [m for m in pool.submit(site.messages).result() if m["sent_by"] == DESK_USER]

    _until(lambda: [bool(m["message_sid"]) for m in desk_replies()] == [True])
    [stored] = desk_replies()
    callback = request["StatusCallback"]
    assert callback.startswith(f"{PUBLIC}/sms/status?m=")
    params = {"MessageSid": str(stored["message_sid"]), "MessageStatus": "delivered", "To": ALEX}
    answer = httpx.post(
        callback.replace(PUBLIC, base),
        data=params,
        headers={"X-Twilio-Signature": sign(callback, params, TOKEN)},
    )
    assert answer.status_code == 204
    page.goto(conversation)
    mine = page.locator(".msg.out", has_text=sent_body)
    sync_api.expect(mine).to_contain_text(f"{DESK_USER} (staff)")
    sync_api.expect(mine.locator(".delivery")).to_have_text("delivered")
    page.screenshot(path=str(shots / "desk-conversation-desktop.png"), full_page=True)

    # Handled: gone from the list.
    page.get_by_role("button", name="Mark handled").click()
    page.wait_for_url(conversation)
    sync_api.expect(page.locator("#attention")).to_have_count(0)
    page.goto(f"{base}/staff/attention")
    sync_api.expect(page.locator("ul.attention > li", has_text="Alex Taylor")).to_have_count(0)

    # A desk account cannot broadcast.
    answer_page = page.goto(f"{base}/staff/broadcast")
    assert answer_page is not None and answer_page.status == 403
    sync_api.expect(page.locator(".error")).to_contain_text("Only an admin")
    page.screenshot(path=str(shots / "desk-broadcast-refused-desktop.png"), full_page=True)
    desk_context.close()  # type: ignore[attr-defined]

    # --- an admin broadcasts a delay to the three waiting --------------------------------------
    admin_context, page = context(DESKTOP)
    _log_in(page, base, USER, PASSWORD)
    page.get_by_role("link", name="Broadcast").click()
    page.get_by_role("link", name=re.compile("running about 15 minutes late")).click()
    delay = "We're running about 15 minutes late. Thanks for your patience."
    sync_api.expect(page.locator("textarea[name=text]")).to_have_value(delay)
    page.get_by_role("button", name="Preview").click()
    sync_api.expect(page.locator("#recipient-count")).to_have_text("3")
    sync_api.expect(page.locator("table.recipients tbody tr")).to_have_count(3)
    page.screenshot(path=str(shots / "admin-broadcast-preview-desktop.png"), full_page=True)
    page.get_by_role("button", name="Send to 3 customers").dblclick()
    sync_api.expect(page.locator(".result")).to_contain_text("3 customers")
    _until(lambda: len([t for t in _stand_in_texts(site) if t["Body"] == delay]) >= 3)
    page.wait_for_timeout(1500)  # a second copy would have gone out by now
    delayed = sorted(t["To"] for t in _stand_in_texts(site) if t["Body"] == delay)
    assert delayed == sorted([ALEX, JORDAN, CASEY])
    page.goto(f"{base}/staff/audit")
    audit = page.locator("table.audit tbody")
    for action in ("reply", "handled", "broadcast"):
        sync_api.expect(audit.locator("code", has_text=action)).to_have_count(1)
    page.screenshot(path=str(shots / "admin-audit-desktop.png"), full_page=True)

    # --- every staff page at desktop and phone width -------------------------------------------
    thread = conversation.rsplit("/", 1)[1]
    pages = {
        "dashboard": "/staff/dashboard",
        "attention": "/staff/attention",
        "conversations": "/staff/conversations",
        "conversation": f"/staff/conversations/{thread}",
        "unread": "/staff/unread",
        "broadcast": "/staff/broadcast",
        "audit": "/staff/audit",
    }
    for name, path in pages.items():
        page.goto(f"{base}{path}")
        page.screenshot(path=str(shots / f"{name}-desktop.png"), full_page=True)
    admin_context.close()  # type: ignore[attr-defined]

    phone_context, page = context(PHONE)
    page.goto(f"{base}/staff/login")
    _fits(page, "login")
    page.screenshot(path=str(shots / "login-phone.png"), full_page=True)
    _log_in(page, base, USER, PASSWORD)
    for name, path in pages.items():
        page.goto(f"{base}{path}")
        _fits(page, name)
        page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    page.goto(f"{base}/staff/conversations")
    for label in ("Ticket", "Outcome"):  # once off-screen, on the right
        cell = page.locator(f"table.list tbody tr td[data-label={label}]").first
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"], label
    page.goto(f"{base}/staff/dashboard")  # the chart for a phone: fewer, larger labels
    sync_api.expect(page.locator("svg.chart.narrow")).to_be_visible()
    sync_api.expect(page.locator("svg.chart.wide")).to_be_hidden()
    page.goto(f"{base}/staff/broadcast")
    page.get_by_role("button", name="Preview").click()  # an empty text: refused, on the page
    _fits(page, "broadcast refused")
    page.locator("textarea[name=text]").fill("The lifts are out: please use the stairs.")
    page.get_by_role("button", name="Preview").click()
    _fits(page, "broadcast preview")
    page.screenshot(path=str(shots / "broadcast-preview-phone.png"), full_page=True)

    # The lists reload on their own, keeping the search and where you were.
    page.set_viewport_size({"width": PHONE["width"], "height": 400})
    page.goto(f"{base}/staff/conversations?outcome=confirmed")
    page.evaluate("window.scrollTo(0, 200)")
    assert page.evaluate("window.scrollY") == 200
    with page.expect_event("load", timeout=10_000):
        pass
    assert page.url.endswith("/staff/conversations?outcome=confirmed")
    page.wait_for_timeout(300)
    assert page.evaluate("window.scrollY") == 200
    phone_context.close()  # type: ignore[attr-defined]

    assert dialogs == []
    # No CSP violation anywhere: the only errors are the two refusals above, as answered.
    assert sorted(console_errors) == [
        f"Failed to load resource: the server responded with a status of {status}"
        for status in ("400 (Bad Request)", "403 (Forbidden)")
    ]
    for png in shots.glob("*.png"):
        assert png.stat().st_size > 5_000, png
