"""The staff pages: what they show (asserted through the .json twins), who may see them (every
route, table-driven), and that what customers text is shown as text."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.routing import Mount, Route

from bot.conversation import State
from bot.staff import app as staff
from bot.staff import auth, queries
from bot.store.directory import Entry

from .conftest import T0, Clock
from .helpers import (
    ALEX,
    CASEY,
    JORDAN,
    PUBLIC,
    RILEY,
    STRANGER,
    TAYLOR,
    Bot,
    conversation_of,
    form,
    running_bot,
)

USER, PASSWORD = "frontdesk", "correct horse battery staple"
SECRET = "test-secret-key-" + "x" * 32
LEAVER = "+61491570198"  # not in the directory; texts STOP


@pytest.fixture(autouse=True)
def quick_failed_logins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "FAILED_LOGIN_DELAY", 0.05)


def staff_bot(db_url: str, clock: Clock, **settings: Any) -> AbstractAsyncContextManager[Bot]:
    """The bot with the staff pages on, logging in as USER with PASSWORD."""
    login = {"staff_username": USER, "staff_password": PASSWORD, "secret_key": SECRET}
    return running_bot(db_url, clock, **(login | settings))


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[Bot]:
    # T0, 09:00 UTC, is 20:00 in Sydney
    async with staff_bot(db_url, clock, timezone="Australia/Sydney") as b:
        yield b


def browser(bot: Bot) -> httpx.AsyncClient:
    """A client on the public https URL, keeping cookies as a browser would."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=bot.app), base_url=PUBLIC)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


async def log_in(
    client: httpx.AsyncClient, password: str = PASSWORD, next: str | None = None
) -> httpx.Response:
    page = await client.get("/staff/login")
    data = {"csrf": csrf_of(page.text), "username": USER, "password": password}
    return await client.post("/staff/login", data=data | ({"next": next} if next else {}))


@pytest.fixture
async def desk(bot: Bot) -> AsyncIterator[httpx.AsyncClient]:
    """A signed-in staff browser."""
    async with browser(bot) as client:
        response = await log_in(client)
        assert response.status_code == 303
        yield client


async def get_json(client: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- what the pages show ------------------------------------------------------------------------


async def test_the_dashboard_counts_each_outcome(
    bot: Bot, desk: httpx.AsyncClient, clock: Clock
) -> None:
    await bot.text(ALEX, "hi")
    clock.advance(2)
    await bot.text(ALEX, "HERE")  # a ticket 2 minutes after the first text
    await bot.text(JORDAN, "HERE")
    clock.advance(1)
    await bot.text(JORDAN, "YES")  # asked (early) and confirmed: 1 minute
    await bot.text(CASEY, "HERE")  # asked (late) and never answered
    await bot.text(RILEY, "HERE")
    await bot.text(STRANGER, "HERE")
    await bot.text(TAYLOR, "HERE")
    await bot.text(LEAVER, "STOP")
    clock.advance(11)  # Casey's question has run out

    data = await get_json(desk, "/staff/dashboard.json")
    assert data["period"] == {"from": "2026-11-24", "to": "2026-11-24"}
    counts = {o["outcome"]: o["count"] for o in data["outcomes"]}
    assert {k: v for k, v in counts.items() if v} == {
        "checked_in": 1,
        "confirmed": 1,
        "expired": 1,
        "prevent_auto_queue": 1,
        "unknown_number": 1,
        "no_appointment": 1,
        "opted_out": 1,
    }
    assert data["conversations"] == 7
    assert data["seconds_to_ticket"] == {"count": 2, "median": 90.0, "p95": 120.0}
    assert data["upstream"]["calls"] >= 6
    assert data["upstream"]["errors"] == 0
    assert data["upstream"]["latency_ms_median"] is not None
    assert data["texts"]["in"] == 9 and data["texts"]["unanswered"] == 0
    hours = data["arrivals_by_hour"]
    assert hours[20] == 7 and sum(hours) == 7  # local hours, Sydney

    # Another day has nothing; a bad date is a clear 400.
    other = await get_json(desk, "/staff/dashboard.json", **{"from": "2026-11-23"})
    assert other["period"] == {"from": "2026-11-23", "to": "2026-11-23"}
    assert other["conversations"] == 0
    bad = await desk.get("/staff/dashboard.json", params={"from": "yesterday"})
    assert bad.status_code == 400 and "from" in bad.json()["error"]
    page = await desk.get("/staff/dashboard", params={"from": "2026-13-01"})
    assert page.status_code == 400


@pytest.mark.parametrize(
    "typed",
    ["0491 570 156", "+61 491 570 156", "(04) 9157 0156", "S1001", "alex", "TAYLOR", "a003"],
)
async def test_one_search_box_finds_a_customer_by_anything_staff_know(
    bot: Bot, desk: httpx.AsyncClient, typed: str
) -> None:
    await bot.text(ALEX, "HERE")
    await bot.text(JORDAN, "HERE")
    await bot.text(TAYLOR, "HERE")  # Taylor Brown: a first name like Alex's surname
    found = await get_json(desk, "/staff/conversations.json", q=typed)
    phones = {c["phone"] for c in found["conversations"]}
    if typed == "TAYLOR":
        assert phones == {ALEX, TAYLOR}
    else:
        assert phones == {ALEX}
    assert found["filters"] == {"q": typed}


async def test_the_list_pages_newest_first_without_offsets(
    bot: Bot, desk: httpx.AsyncClient, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "PAGE_SIZE", 3)
    for _ in range(8):  # eight visits, each a new thread
        await bot.text(STRANGER, "HERE")
        clock.advance(7 * 60)
    await log_in(desk)  # 56 hours later: the session has ended
    seen: list[int] = []
    cursor: dict[str, str] = {}
    pages = 0
    while True:
        page = await get_json(desk, "/staff/conversations.json", **cursor)
        seen += [c["id"] for c in page["conversations"]]
        pages += 1
        if page["next"] is None:
            break
        cursor = {"before": str(page["next"])}
    assert pages == 3
    assert len(seen) == 8 and seen == sorted(seen, reverse=True)
    html = await desk.get("/staff/conversations")
    assert 'rel="next"' in html.text


async def test_filters_by_outcome_and_days(bot: Bot, desk: httpx.AsyncClient, clock: Clock) -> None:
    await bot.text(ALEX, "HERE")
    await bot.text(STRANGER, "HERE")
    clock.advance(24 * 60)
    await log_in(desk)  # a day later: the session has ended
    await bot.text(STRANGER, "HERE")

    async def ids(**params: str) -> list[str]:
        found = await get_json(desk, "/staff/conversations.json", **params)
        return [c["phone"] + "@" + c["started_at"][:10] for c in found["conversations"]]

    assert await ids(outcome="unknown_number") == [
        f"{STRANGER}@2026-11-25",
        f"{STRANGER}@2026-11-24",
    ]
    assert await ids(outcome="checked_in") == [f"{ALEX}@2026-11-24"]
    assert await ids(**{"from": "2026-11-25"}) == [f"{STRANGER}@2026-11-25"]
    assert await ids(**{"from": "2026-11-24", "to": "2026-11-24"}) == [
        f"{STRANGER}@2026-11-24",
        f"{ALEX}@2026-11-24",
    ]
    bad = await desk.get("/staff/conversations.json", params={"outcome": "nonsense"})
    assert bad.status_code == 400


async def test_a_transcript_has_states_upstream_calls_and_delivery(
    bot: Bot, desk: httpx.AsyncClient
) -> None:
    response = await bot.post(form(JORDAN, "HERE"))
    action = ET.fromstring(response.text).find("Message")
    assert action is not None
    await _status(bot, action.get("action") or "", "undelivered", ErrorCode="30006")
    await bot.text(JORDAN, "yes please")
    [thread] = (await get_json(desk, "/staff/conversations.json", q=JORDAN))["conversations"]
    data = await get_json(desk, f"/staff/conversations/{thread['id']}.json")

    assert data["conversation"]["name"] == "Jordan Lee"
    assert data["conversation"]["outcome"] == "confirmed"
    assert data["conversation"]["seconds_to_ticket"] == 0
    assert data["state_now"]["state"] == "checked_in"
    texts = data["messages"]
    assert [(m["direction"], m["state_before"], m["state_after"]) for m in texts] == [
        ("in", "idle", "awaiting_confirm"),
        ("out", "idle", "awaiting_confirm"),
        ("in", "awaiting_confirm", "checked_in"),
        ("out", "awaiting_confirm", "checked_in"),
    ]
    assert texts[1]["prompt"] == "confirm_early"
    assert (texts[1]["status"], texts[1]["error_code"]) == ("undelivered", "30006")
    assert "landline" in texts[1]["error_meaning"]
    [refused] = texts[0]["upstream_calls"]
    assert refused["operation"] == "checkin"
    assert refused["outcome"] == "refused:early"
    assert refused["request"] and refused["status"] and refused["response"]
    assert refused["latency_ms"] >= 0
    [forced] = texts[2]["upstream_calls"]
    assert forced["outcome"] == "ok"

    page = await desk.get(f"/staff/conversations/{thread['id']}")
    assert page.status_code == 200
    assert "<details><summary>Raw response</summary>" in page.text
    assert "30006" in page.text and "Jordan Lee" in page.text
    missing = await desk.get("/staff/conversations/999999.json")
    assert missing.status_code == 404

    # A text whose process died before answering, and the undelivered reply, are counted.
    await bot.store.log.record_inbound(STRANGER, "SMdied", "HERE", 0, T0 - timedelta(minutes=2))
    texts = (await get_json(desk, "/staff/dashboard.json"))["texts"]
    assert texts == {"in": 3, "out": 2, "unanswered": 1, "undelivered": 1, "not_understood": 0}


async def test_a_long_transcript_shows_its_latest_texts_and_says_how_many_more(
    bot: Bot, desk: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phone that texts thousands of times in a row must not make a page of megabytes."""
    monkeypatch.setattr(queries, "TRANSCRIPT_LIMIT", 3)
    for word in ("one", "two", "three", "four"):
        await bot.text(STRANGER, word)  # each: the text and the bot's answer
    [thread] = (await get_json(desk, "/staff/conversations.json", q=STRANGER))["conversations"]
    data = await get_json(desk, f"/staff/conversations/{thread['id']}.json")
    # The latest three of eight, in order: the answer to "three", "four", its answer.
    assert [m["direction"] for m in data["messages"]] == ["out", "in", "out"]
    assert data["messages"][1]["body"] == "four" and data["earlier_messages"] == 5
    page = (await desk.get(f"/staff/conversations/{thread['id']}")).text
    assert "5 earlier messages of this conversation are not shown" in page


async def test_customer_text_and_names_are_shown_as_text(bot: Bot, desk: httpx.AsyncClient) -> None:
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    await bot.store.directory.upsert([Entry(STRANGER, "X1", f"Eve {payload}")], T0)
    await bot.text(STRANGER, payload)
    [thread] = (await get_json(desk, "/staff/conversations.json", q=STRANGER))["conversations"]
    for path in (
        f"/staff/conversations/{thread['id']}",
        "/staff/conversations",
        f"/staff/conversations?{urlencode({'q': payload})}",
    ):
        html = (await desk.get(path)).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    assert (await desk.get(f"/staff/conversations/{thread['id']}.json")).json()["messages"][0][
        "body"
    ] == payload


async def test_the_csv_export_parses_back_to_the_log(
    bot: Bot, desk: httpx.AsyncClient, clock: Clock
) -> None:
    tricky = [
        'HERE, "now"',
        "line one\nline two",
        '=HYPERLINK("http://x")',
        "Here 👍 مرحبا",
        "no;=1+1; @SUM(2+2)",  # where ";" separates cells
    ]
    for body in tricky:
        await bot.text(STRANGER, body)
    clock.advance(24 * 60)
    await log_in(desk)  # a day later: the session has ended
    await bot.text(ALEX, "HERE")  # the next day: not in the export below
    response = await desk.get("/staff/messages.csv", params={"from": "2026-11-24"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 2 * len(tricky)
    inbound = [r["body"] for r in rows if r["direction"] == "in"]
    assert inbound == [tricky[0], tricky[1], "'" + tricky[2], tricky[3], "no;'=1+1; '@SUM(2+2)"]
    assert {r["phone"] for r in rows} == {STRANGER}  # a phone's + is not "escaped"
    assert rows[0]["time"].startswith("2026-11-24T20:00:00+11:00")
    assert all(r["conversation"] for r in rows)
    assert [r["reply_key"] for r in rows if r["direction"] == "out"][:2] == [
        "unknown_number",
        "hint",
    ]


async def test_the_export_reads_in_batches(
    bot: Bot, desk: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "CSV_BATCH", 3)
    for i in range(5):
        await bot.text(STRANGER, f"text {i}")
    rows = list(csv.DictReader(io.StringIO((await desk.get("/staff/messages.csv")).text)))
    assert [r["body"] for r in rows if r["direction"] == "in"] == [f"text {i}" for i in range(5)]
    assert len(rows) == 10


# --- who may see them ---------------------------------------------------------------------------

# Every route of the app, and what an anonymous request to it must get. A route missing here
# fails test_every_route_is_classified: decide its access before shipping it.
STAFF_PAGES = {
    "/staff/",
    "/staff/dashboard",
    "/staff/conversations",
    "/staff/conversations/{thread_id:int}",
    "/staff/unread",
    "/staff/attention",
    "/staff/broadcast",
    "/staff/audit",
}
STAFF_DATA = {
    "/staff/unread.json",
    "/staff/dashboard.json",
    "/staff/conversations.json",
    "/staff/conversations/{thread_id:int}.json",
    "/staff/attention.json",
    "/staff/audit.json",
    "/staff/messages.csv",
}
# POST, signed-in only; each but logout does something, so each must refuse a missing CSRF.
ACTION_FORMS = {
    "/staff/conversations/{thread_id:int}/reply",
    "/staff/attention/{thread_id:int}/handled",
    "/staff/broadcast/preview",
    "/staff/broadcast/send",
}
STAFF_FORMS = {"/staff/logout"} | ACTION_FORMS
# What a desk account may not do (403): everything else a signed-in desk account may.
ADMIN_ONLY = {
    "/staff/broadcast",
    "/staff/broadcast/preview",
    "/staff/broadcast/send",
    "/staff/audit",
    "/staff/audit.json",
    "/staff/messages.csv",
}
LOGIN = {"/staff/login"}  # the one staff route open to all
TWILIO = {"/sms", "/sms/fallback", "/sms/status"}  # Twilio's signature instead of a login
PUBLIC_ROUTES = {"/healthz", "/readyz", "/static"}  # no personal data


def all_routes(bot: Bot) -> list[tuple[str, set[str]]]:
    found: list[tuple[str, set[str]]] = []
    for route in bot.app.routes:
        if isinstance(route, Mount) and route.path == "/staff":
            for inner in route.routes:
                assert isinstance(inner, Route)
                found.append(("/staff" + inner.path, set(inner.methods or ())))
        elif isinstance(route, Mount):
            found.append((route.path, {"GET"}))
        else:
            assert isinstance(route, Route)
            found.append((route.path, set(route.methods or ())))
    return found


def concrete(path: str) -> str:
    return path.replace("{thread_id:int}", "1")


async def test_every_route_is_classified(bot: Bot) -> None:
    known = STAFF_PAGES | STAFF_DATA | STAFF_FORMS | LOGIN | TWILIO | PUBLIC_ROUTES
    paths = {path for path, _ in all_routes(bot)}
    assert paths - known == set(), "classify these routes' access in test_staff.py"
    assert known - paths == set()


async def test_no_staff_route_answers_without_a_login(bot: Bot) -> None:
    await bot.text(ALEX, "HERE")  # conversation 1 exists
    async with browser(bot) as anonymous:
        for path, methods in all_routes(bot):
            if not path.startswith("/staff") or path in LOGIN:
                continue
            for method in methods - {"HEAD"}:
                response = await anonymous.request(method, concrete(path))
                if path in STAFF_DATA:
                    assert response.status_code == 401, path
                    assert response.headers["www-authenticate"].startswith("Basic")
                else:
                    assert response.status_code == 303, (method, path)
                    assert response.headers["location"].startswith("/staff/login?next=")
                assert "Alex" not in response.text and "0491" not in response.text


async def test_twilio_routes_need_a_signature_and_health_is_public(bot: Bot) -> None:
    async with browser(bot) as anonymous:
        for path in TWILIO:
            response = await anonymous.post(path, data={"MessageSid": "SM1", "From": ALEX})
            assert response.status_code == 403, path
        assert (await anonymous.get("/healthz")).status_code == 200
        css = await anonymous.get("/static/staff.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]


async def test_every_staff_route_answers_when_signed_in(bot: Bot, desk: httpx.AsyncClient) -> None:
    await bot.text(ALEX, "HERE")
    for path, _ in all_routes(bot):
        if path in STAFF_PAGES | STAFF_DATA:
            response = await desk.get(concrete(path), follow_redirects=True)
            assert response.status_code == 200, path


DESK_USER, DESK_PASSWORD = "sam", "a long desk passphrase"


async def add_desk_account(bot: Bot, name: str = DESK_USER) -> None:
    from bot.staff.accounts import hash_password
    from bot.store.staff import StaffStore

    await StaffStore(bot.store.engine, bot.store.tx).add_account(
        name, "desk", hash_password(DESK_PASSWORD), T0
    )


async def log_in_as(client: httpx.AsyncClient, user: str, password: str) -> None:
    page = await client.get("/staff/login")
    data = {"csrf": csrf_of(page.text), "username": user, "password": password}
    assert (await client.post("/staff/login", data=data)).status_code == 303


async def test_a_desk_account_may_do_all_but_the_admin_routes(bot: Bot) -> None:
    await bot.text(ALEX, "HERE")  # conversation 1 exists
    await add_desk_account(bot)
    async with browser(bot) as desk_browser:
        await log_in_as(desk_browser, DESK_USER, DESK_PASSWORD)
        csrf = csrf_of((await desk_browser.get("/staff/dashboard")).text)
        for path, methods in all_routes(bot):
            if not path.startswith("/staff") or path in LOGIN | {"/staff/logout"}:
                continue
            for method in methods - {"HEAD"}:
                data = {"csrf": csrf} if method == "POST" else None
                response = await desk_browser.request(method, concrete(path), data=data)
                if path in ADMIN_ONLY:
                    assert response.status_code == 403, (method, path)
                    if path.endswith(".json"):
                        assert "admin" in response.json()["error"]
                    elif not path.endswith(".csv"):
                        assert "Only an admin can do this" in response.text, path
                        assert "<!doctype html>" in response.text  # a page, with the nav
                else:
                    assert response.status_code not in (401, 403), (method, path)
        # The nav offers a desk account only what it may use.
        page = (await desk_browser.get("/staff/dashboard")).text
        assert "/staff/attention" in page and "/staff/broadcast" not in page
        assert "/staff/audit" not in page
    async with browser(bot) as admin:
        await log_in(admin)
        page = (await admin.get("/staff/dashboard")).text
        assert "/staff/broadcast" in page and "/staff/audit" in page


async def test_every_action_form_refuses_a_missing_or_foreign_csrf_token(
    bot: Bot, desk: httpx.AsyncClient
) -> None:
    import sqlalchemy as sa

    from bot.store.tables import attention, audit_log, broadcasts, notifications

    await bot.text(ALEX, "HERE")
    async with browser(bot) as other:
        foreign = csrf_of((await other.get("/staff/login")).text)
    async with bot.store.engine.connect() as conn:
        audited = await conn.scalar(sa.select(sa.func.count()).select_from(audit_log))
    fields = {
        "text": "Please come to the front desk",
        "token": "t" * 24,
        "audience": "all",
        "next": "/staff/attention",
    }
    for path in ACTION_FORMS:
        for token in ({}, {"csrf": "wrong"}, {"csrf": foreign}):
            response = await desk.post(concrete(path), data=fields | token)
            assert response.status_code == 403, path
            assert "expired" in response.text, path
    async with bot.store.engine.connect() as conn:
        for table in (notifications, attention, broadcasts):
            assert await conn.scalar(sa.select(sa.func.count()).select_from(table)) == 0
        assert await conn.scalar(sa.select(sa.func.count()).select_from(audit_log)) == audited


async def test_json_and_csv_accept_http_basic_but_pages_do_not(bot: Bot) -> None:
    await bot.text(ALEX, "HERE")
    async with browser(bot) as script:
        for i, path in enumerate(sorted(STAFF_DATA)):
            good = await script.get(concrete(path), auth=(USER, PASSWORD))
            assert good.status_code == 200, path
            if i < auth.FAILED_LOGIN_LIMIT - 1:  # one fewer than locks this address out
                bad = await script.get(concrete(path), auth=(USER, "guess"))
                assert bad.status_code == 401, path
        page = await script.get("/staff/dashboard", auth=(USER, PASSWORD))
        assert page.status_code == 303


async def test_staff_pages_carry_security_headers(bot: Bot, desk: httpx.AsyncClient) -> None:
    async with browser(bot) as anonymous:
        responses = [
            await anonymous.get("/staff/login"),
            await anonymous.get("/staff/dashboard.json"),
            await desk.get("/staff/dashboard"),
            await desk.get("/staff/messages.csv"),
        ]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp  # no script is allowed at all
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_session_cookie_is_https_only_however_https_is_spelled(
    db_url: str, clock: Clock
) -> None:
    async with staff_bot(db_url, clock, public_base_url="HTTPS://bot.example.com") as shouting:
        async with browser(shouting) as client:
            response = await log_in(client)
    assert "secure" in response.headers["set-cookie"].lower()
    assert "strict-transport-security" in response.headers


async def test_the_session_cookie_is_signed_scoped_and_https_only(bot: Bot) -> None:
    async with browser(bot) as client:
        response = await log_in(client)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{staff.COOKIE}=")
    assert "path=/staff" in cookie and "secure" in cookie.lower() and "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    async with browser(bot) as forger:
        forger.cookies.set(staff.COOKIE, "eyJ1c2VyIjogImZyb250ZGVzayJ9.forged.sig", path="/staff")
        assert (await forger.get("/staff/dashboard")).status_code == 303


# --- login, logout, CSRF ------------------------------------------------------------------------


async def test_log_in_goes_back_where_you_were_and_log_out_ends_it(bot: Bot) -> None:
    async with browser(bot) as client:
        first = await client.get("/staff/conversations?q=alex")
        assert first.status_code == 303
        form_page = await client.get(first.headers["location"])
        assert 'value="/staff/conversations?q=alex"' in form_page.text
        signed_in = await log_in(client, next="/staff/conversations?q=alex")
        assert signed_in.headers["location"] == "/staff/conversations?q=alex"
        page = await client.get("/staff/dashboard")
        assert page.status_code == 200 and USER in page.text
        out = await client.post("/staff/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303
        assert (await client.get("/staff/dashboard")).status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/sms", "/\\evil"])
async def test_login_never_sends_you_off_site(bot: Bot, target: str) -> None:
    async with browser(bot) as client:
        response = await log_in(client, next=target)
        assert response.headers["location"] == "/staff/dashboard"


async def test_forms_without_the_sessions_csrf_token_are_refused(
    bot: Bot, desk: httpx.AsyncClient
) -> None:
    async with browser(bot) as attacker:
        other_token = csrf_of((await attacker.get("/staff/login")).text)
        # Logging someone in (login CSRF) needs their session's token, not the attacker's.
        async with browser(bot) as victim:
            await victim.get("/staff/login")
            response = await victim.post(
                "/staff/login",
                data={"csrf": other_token, "username": USER, "password": PASSWORD},
            )
            assert response.status_code == 403
            assert (await victim.get("/staff/dashboard")).status_code == 303
    for data in ({}, {"csrf": "wrong"}, {"csrf": other_token}):
        assert (await desk.post("/staff/logout", data=data)).status_code == 403
    assert (await desk.get("/staff/dashboard")).status_code == 200  # still signed in


async def test_failed_logins_are_slowed_logged_and_then_refused(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    async with browser(bot) as client:
        started = time.monotonic()
        response = await log_in(client, password="guess")
        assert time.monotonic() - started >= auth.FAILED_LOGIN_DELAY
        assert response.status_code == 401 and "Wrong username or password" in response.text
        for _ in range(auth.FAILED_LOGIN_LIMIT - 1):
            await log_in(client, password="guess")
        blocked = await log_in(client)  # even the right password, for a while
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert (await client.get("/staff/dashboard.json", auth=(USER, PASSWORD))).status_code == 429
    failures = [r for r in caplog.records if "failed staff login" in r.getMessage()]
    assert len(failures) == auth.FAILED_LOGIN_LIMIT
    assert PASSWORD not in caplog.text and "guess" not in caplog.text


async def test_a_burst_of_concurrent_guesses_is_held_to_the_limit(bot: Bot) -> None:
    """Tries sent all at once (HTTP Basic, one address): the count and the failure's record
    are one step per try, so no more than the limit are checked; the rest wait it out."""
    async with browser(bot) as client:
        tries = [
            client.get("/staff/dashboard.json", auth=(USER, f"guess {i}"))
            for i in range(3 * auth.FAILED_LOGIN_LIMIT)
        ]
        statuses = sorted(r.status_code for r in await asyncio.gather(*tries))
    assert statuses.count(401) == auth.FAILED_LOGIN_LIMIT, statuses
    assert set(statuses) == {401, 429}


async def test_a_new_password_signs_everyone_out(
    bot: Bot, desk: httpx.AsyncClient, db_url: str, clock: Clock
) -> None:
    cookie = desk.cookies.get(staff.COOKIE)
    assert cookie
    async with running_bot(
        db_url, clock, staff_username=USER, staff_password="a brand new password", secret_key=SECRET
    ) as changed:
        async with browser(changed) as client:
            client.cookies.set(staff.COOKIE, cookie, path="/staff")
            assert (await client.get("/staff/dashboard")).status_code == 303


async def test_without_a_staff_login_configured_the_pages_are_off(
    db_url: str, clock: Clock
) -> None:
    async with running_bot(db_url, clock) as plain, browser(plain) as client:
        for path in ("/staff/", "/staff/login", "/staff/dashboard.json"):
            response = await client.get(path)
            assert response.status_code == 503 and "SECRET_KEY" in response.text


async def test_logging_out_ends_the_session_everywhere_it_was_copied(
    bot: Bot, desk: httpx.AsyncClient
) -> None:
    stolen = desk.cookies.get(staff.COOKIE)
    assert stolen
    page = await desk.get("/staff/dashboard")
    await desk.post("/staff/logout", data={"csrf": csrf_of(page.text)})
    async with browser(bot) as thief:
        thief.cookies.set(staff.COOKIE, stolen, path="/staff")
        assert (await thief.get("/staff/conversations.json")).status_code == 401
        assert (await thief.get("/staff/dashboard")).status_code == 303


async def test_a_session_ends_after_a_shift_idle_and_at_most_a_day_after_login(
    bot: Bot, desk: httpx.AsyncClient, clock: Clock
) -> None:
    for _ in range(2):  # working: every page moves the idle limit on
        clock.advance(11 * 60)
        assert (await desk.get("/staff/dashboard")).status_code == 200
    clock.advance(3 * 60)  # 25 hours after login, 3 after the last page: over the day's cap
    assert (await desk.get("/staff/dashboard")).status_code == 303
    await log_in(desk)
    clock.advance(12 * 60 + 1)  # idle for longer than a shift
    assert (await desk.get("/staff/dashboard")).status_code == 303


async def test_the_throttle_holds_behind_a_proxy_that_any_client_can_prepend_to(
    db_url: str, clock: Clock
) -> None:
    """FORWARDED_ALLOW_IPS=*: an attacker varying the left of X-Forwarded-For is still the
    address the router appended, on the right."""
    async with staff_bot(db_url, clock, forwarded_allow_ips="*") as behind:
        statuses = []
        for attempt in range(auth.FAILED_LOGIN_LIMIT + 2):
            headers = {"X-Forwarded-For": f"10.8.0.{attempt}, 203.0.113.7"}
            async with browser(behind) as client:
                client.headers.update(headers)
                statuses.append((await log_in(client, password="guess")).status_code)
        assert statuses[-1] == 429, statuses
        async with browser(behind) as client:  # someone else, through the same router
            client.headers.update({"X-Forwarded-For": "198.51.100.4"})
            assert (await log_in(client)).status_code == 303


async def test_a_user_name_guessed_from_many_addresses_gets_one_try_an_address(
    db_url: str, clock: Clock
) -> None:
    """Ten failures for a name, from anywhere, lock it for the addresses that failed; a fresh
    address gets one try: its owner logs in, a guesser's next try is refused."""
    async with staff_bot(db_url, clock, forwarded_allow_ips="*") as behind:

        async def from_address(address: str, password: str = PASSWORD) -> int:
            async with browser(behind) as client:
                client.headers.update({"X-Forwarded-For": address})
                return (await log_in(client, password=password)).status_code

        for attempt in range(auth.USER_FAILURE_LIMIT):
            assert await from_address(f"198.51.100.{attempt}", "guess") == 401
        assert await from_address("198.51.100.0") == 429  # failed for it: locked out
        assert await from_address("192.0.2.99") == 303  # the owner, elsewhere: in
        assert await from_address("192.0.2.100", "guess") == 401  # one try...
        assert await from_address("192.0.2.100", "guess") == 429  # ...only
        assert await from_address("192.0.2.100") == 429


async def test_a_password_typed_as_a_user_name_is_never_logged(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    async with browser(bot) as client:
        page = await client.get("/staff/login")
        data = {"csrf": csrf_of(page.text), "username": "a different long passphrase"}
        await client.post("/staff/login", data=data | {"password": "x"})
    assert "a different long passphrase" not in caplog.text
    assert "unknown-" in caplog.text


@pytest.mark.parametrize(
    ("user", "password"), [(USER, "tulip 7"), ("frontdesk-admin", "frontdesk-admin")]
)
async def test_an_environment_password_too_easy_to_guess_is_no_login(
    db_url: str, clock: Clock, caplog: pytest.LogCaptureFixture, user: str, password: str
) -> None:
    """STAFF_PASSWORD under 12 characters, or the user name: refused as `staff add` refuses
    it, not left to be guessed ten tries a quarter of an hour."""
    async with running_bot(
        db_url, clock, staff_username=user, staff_password=password, secret_key=SECRET
    ) as weak:
        async with browser(weak) as client:
            page = await client.get("/staff/login")
            data = {"csrf": csrf_of(page.text), "username": user, "password": password}
            assert (await client.post("/staff/login", data=data)).status_code == 401
            basic = await client.get("/staff/dashboard.json", auth=(user, password))
            assert basic.status_code == 401
    assert "STAFF_PASSWORD is too easy to guess" in caplog.text
    assert password not in caplog.text.replace(user, "")


# --- purge --------------------------------------------------------------------------------------


async def test_purge_deletes_old_conversations_and_keeps_opt_outs(
    bot: Bot, desk: httpx.AsyncClient, clock: Clock
) -> None:
    await bot.text(ALEX, "HERE")
    await bot.text(LEAVER, "STOP")
    clock.advance(100 * 24 * 60)
    await log_in(desk)  # a day later: the session has ended
    await bot.text(JORDAN, "HERE")
    done = await bot.store.log.purge(clock.now - timedelta(days=90), ("opted_out",))
    assert (done.threads, done.messages, done.conversations) == (2, 3, 1)
    assert done.upstream_calls >= 1
    left = await get_json(desk, "/staff/conversations.json")
    assert [c["phone"] for c in left["conversations"]] == [JORDAN]
    assert (await conversation_of(bot.store, LEAVER)).state is State.OPTED_OUT
    assert await bot.text(LEAVER, "HERE") is None  # still opted out: silence
    assert await bot.store.log.purge(clock.now - timedelta(days=90), ("opted_out",)) == type(done)()


# --- helpers ------------------------------------------------------------------------------------


async def _status(bot: Bot, url: str, status: str, **extra: str) -> None:
    params = {"MessageSid": "SM" + "f" * 32, "MessageStatus": status, **extra}
    assert (await bot.post_signed(url, params)).status_code == 204


async def test_texts_the_bot_did_not_understand_are_listed_grouped_with_why(
    bot: Bot, desk: httpx.AsyncClient
) -> None:
    await bot.text(ALEX, "purple monkey dishwasher")
    await bot.text(JORDAN, "Purple monkey dishwasher!")
    await bot.text(CASEY, "where do I park?")
    await bot.text(RILEY, "HERE")
    found = await get_json(desk, "/staff/unread.json")
    assert [(t["read_as"], t["count"]) for t in found["texts"]] == [("unknown", 2), ("question", 1)]
    page = await desk.get("/staff/unread")
    assert "purple monkey dishwasher" in page.text.lower() and "where do I park?" in page.text
    dashboard = await get_json(desk, "/staff/dashboard.json")
    assert dashboard["texts"]["not_understood"] == 3
    [thread] = (await get_json(desk, "/staff/conversations.json", q=CASEY))["conversations"]
    detail = await get_json(desk, f"/staff/conversations/{thread['id']}.json")
    [inbound] = [m for m in detail["messages"] if m["direction"] == "in"]
    assert inbound["intent"] == "question" and "'where is' (en)" not in inbound["understood"]
    assert inbound["understood"].startswith("a question:")
