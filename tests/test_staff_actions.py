"""What staff do from the staff pages, over real HTTP against the app, the simulator and
Twilio's Messages API stand-in (tests/faulty.py) on both databases: reply to a customer (and
every refusal), quick replies in the customer's language, broadcast a delay to everyone
waiting (admins only, once per confirmation), what needs attention and marking it handled,
and the audit log of all of it. Staff-typed and deployer-written text is shown escaped."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from bot import texter
from bot.outbox import Outbox
from bot.prompts import BUILT_IN
from bot.staff import pages as staff_pages
from bot.staff.accounts import hash_password
from bot.store.staff import StaffStore
from bot.store.tables import audit_log, broadcasts, conversations, notifications, watches

from .conftest import T0, Clock
from .faulty import Fault
from .helpers import ALEX, CASEY, JORDAN, PATELS, STRANGER, Bot, FaultyBot, faulty_bot, running_bot
from .test_staff import PASSWORD, SECRET, USER, browser, csrf_of

DESK, DESK_PASSWORD = "sam", "a long desk passphrase"
XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[FaultyBot]:
    async with faulty_bot(
        db_url, clock, staff_username=USER, staff_password=PASSWORD, secret_key=SECRET
    ) as b:
        await StaffStore(b.store.engine, b.store.tx).add_account(
            DESK, "desk", hash_password(DESK_PASSWORD), T0
        )
        yield b


@asynccontextmanager
async def signed_in(bot: Bot, user: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(bot) as client:
        page = await client.get("/staff/login")
        form = {"csrf": csrf_of(page.text), "username": user, "password": password}
        assert (await client.post("/staff/login", data=form)).status_code == 303
        yield client


@pytest.fixture
async def desk(bot: FaultyBot) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(bot, DESK, DESK_PASSWORD) as client:
        yield client


@pytest.fixture
async def admin(bot: FaultyBot) -> AsyncIterator[httpx.AsyncClient]:
    async with signed_in(bot, USER, PASSWORD) as client:
        yield client


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field"
    return unescape(found.group(1))


def textarea(html: str) -> str:
    found = re.search(r'<textarea[^>]*name="text"[^>]*>(.*?)</textarea>', html, re.S)
    assert found, "no text box"
    return found.group(1)


async def thread_of(client: httpx.AsyncClient, phone: str) -> int:
    found = (await client.get("/staff/conversations.json", params={"q": phone})).json()
    return int(found["conversations"][0]["id"])


async def reply(
    client: httpx.AsyncClient, thread: int, text: str, token: str | None = None, **extra: str
) -> httpx.Response:
    page = await client.get(f"/staff/conversations/{thread}")
    form = {"csrf": csrf_of(page.text), "token": token or field(page.text, "token"), "text": text}
    return await client.post(f"/staff/conversations/{thread}/reply", data=form | extra)


async def rows(bot: Bot, table: sa.Table) -> list[dict[str, Any]]:
    async with bot.store.engine.connect() as conn:
        found = await conn.execute(sa.select(table).order_by(*table.primary_key.columns))
        return [dict(r) for r in found.mappings()]


async def send_queued(bot: FaultyBot) -> int:
    outbox: Outbox = bot.app.state.outbox
    return await outbox.send_due("test")


def sent_to(bot: FaultyBot, phone: str) -> list[str]:
    return [t["Body"] for t in bot.upstream.texts.sent if t["To"] == phone]


async def detail(client: httpx.AsyncClient, thread: int) -> dict[str, Any]:
    response = await client.get(f"/staff/conversations/{thread}.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


# --- reply ----------------------------------------------------------------------------------------


async def test_a_desk_reply_goes_out_once_as_theirs_and_gets_its_delivery_status(
    bot: FaultyBot, desk: httpx.AsyncClient
) -> None:
    await bot.text(ALEX, "HERE")
    await bot.text(ALEX, "I'm in the car park, do I come in?")
    thread = await thread_of(desk, ALEX)
    state_before = (await rows(bot, conversations))[0]
    page = await desk.get(f"/staff/conversations/{thread}")
    token = field(page.text, "token")
    text = "Yes, please come in to the front desk, Alex."

    # A double click: the same form posted twice.
    first = await reply(desk, thread, text, token=token)
    second = await reply(desk, thread, text, token=token)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == f"/staff/conversations/{thread}?sent=1#reply"
    queued = await desk.get(first.headers["location"])
    assert "Your text is queued" in queued.text
    assert "waiting to be sent" in queued.text  # shown in the transcript before it goes out
    assert await send_queued(bot) == 1
    assert await send_queued(bot) == 0
    assert sent_to(bot, ALEX)[-1:] == [text]
    assert len([t for t in sent_to(bot, ALEX) if t == text]) == 1

    # In the transcript, as sent by the desk account, with Twilio's answer.
    out = (await detail(desk, thread))["messages"][-1]
    assert (out["direction"], out["body"], out["sent_by"]) == ("out", text, DESK)
    assert out["status"] == "queued" and out["message_sid"]
    assert out["segments"] == 1
    # Twilio's status callback, as Twilio sends it, to the URL the bot gave it.
    [request] = [t for t in bot.upstream.texts.sent if t["Body"] == text]
    callback = request["StatusCallback"]
    params = {"MessageSid": out["message_sid"], "MessageStatus": "delivered", "To": ALEX}
    assert (await bot.post_signed(callback, params)).status_code == 204
    assert (await detail(desk, thread))["messages"][-1]["status"] == "delivered"
    html = (await desk.get(f"/staff/conversations/{thread}")).text
    assert f'<strong class="staff-name">{DESK}</strong> (staff)' in html
    assert "delivered" in html

    # The bot's conversation with the customer is as it was.
    assert (await rows(bot, conversations))[0] == state_before
    assert out["state_before"] == out["state_after"] == state_before["state"]

    # The customer's answer is read by the bot as usual, and flagged for staff.
    answer = await bot.text(ALEX, "ok thanks, coming in now")
    assert answer  # the bot answered it as it would any text
    attention = (await desk.get("/staff/attention.json")).json()
    [item] = [c for c in attention["conversations"] if c["id"] == thread]
    [why] = [r for r in item["reasons"] if r["reason"] == "staff_reply"]
    assert "coming in now" in why["why"] and DESK in why["why"]
    # And the reply is in the audit log, once, with who and what.
    [entry] = [a for a in await rows(bot, audit_log) if a["action"] == "reply"]
    assert (entry["account"], entry["target"], entry["detail"]) == (
        DESK,
        f"conversation {thread}",
        text,
    )


async def test_a_reply_twilio_was_too_busy_to_take_is_sent_again_and_a_refused_one_is_not(
    bot: FaultyBot, desk: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """429 (too many requests: Twilio took nothing) is tried again after a short wait; a
    refusal (21211, not a valid number) is final, and the transcript says what happened."""
    monkeypatch.setattr(texter, "RETRY_DELAYS", (0.01, 0.01, 0.01))
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    bot.upstream.texts.busy = 2
    await reply(desk, thread, "Please come to the desk.")
    assert await send_queued(bot) == 1
    assert bot.upstream.texts.tries == 3 and sent_to(bot, ALEX)[-1] == "Please come to the desk."
    out = (await detail(desk, thread))["messages"][-1]
    assert out["status"] == "queued" and out["message_sid"]

    bot.upstream.texts.busy = 4  # more than the tries: unsent, with Twilio's code
    await reply(desk, thread, "Are you still here?")
    assert await send_queued(bot) == 0
    assert bot.upstream.texts.tries == 3 + 4
    out = (await detail(desk, thread))["messages"][-1]
    assert (out["status"], out["error_code"]) == ("unsent", "20429")

    bot.upstream.texts.busy, bot.upstream.texts.refuse_with = 0, 21211
    await reply(desk, thread, "Hello?")
    assert await send_queued(bot) == 0
    assert bot.upstream.texts.tries == 7 + 1  # not tried again
    page = (await desk.get(f"/staff/conversations/{thread}")).text
    assert "not sent: Twilio refused it or could not be reached" in page and "21211" in page


@pytest.mark.parametrize(
    ("text", "status", "said"),
    [
        ("   ", 400, "the text is empty"),
        ("x" * 460, 400, "needs 4 segments (GSM-7, 460 characters)"),  # 3 x 153 + 1
        ("🙂" + "x" * 200, 400, "needs 4 segments (UCS-2, 202 characters)"),  # 3 x 67 + 1
    ],
)
async def test_a_reply_that_cannot_go_is_refused_saying_why_and_nothing_is_sent(
    bot: FaultyBot, desk: httpx.AsyncClient, text: str, status: int, said: str
) -> None:
    await bot.text(ALEX, "HERE")
    await bot.text(ALEX, "purple monkey dishwasher")  # needs attention: a 'Mark handled' form
    thread = await thread_of(desk, ALEX)
    response = await reply(desk, thread, text)
    assert response.status_code == status
    assert said in response.text and "Nothing was sent" in response.text
    assert unescape(textarea(response.text)) == text.strip()  # the draft is kept
    # The refusal's page (at …/reply) links back to pages, not to the POST-only URL.
    assert f'href="/staff/conversations/{thread}?use=come_to_desk#reply"' in response.text
    assert f'name="next" value="/staff/conversations/{thread}"' in response.text
    assert await rows(bot, notifications) == []
    assert not [a for a in await rows(bot, audit_log) if a["action"] == "reply"]


async def test_the_longest_text_allowed_is_three_segments(
    bot: FaultyBot, desk: httpx.AsyncClient
) -> None:
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    counted = await reply(desk, thread, "x" * 459, action="check")
    assert counted.status_code == 200
    assert "GSM-7, 3 segments (459 characters; 153 a segment)" in counted.text
    assert await rows(bot, notifications) == []  # counting sends nothing
    assert (await reply(desk, thread, "x" * 459)).status_code == 303
    assert await send_queued(bot) == 1


async def test_no_reply_to_a_phone_that_opted_out(bot: FaultyBot, desk: httpx.AsyncClient) -> None:
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    page = (await desk.get(f"/staff/conversations/{thread}")).text
    await bot.text(ALEX, "STOP")
    form = {"csrf": csrf_of(page), "token": field(page, "token"), "text": "Come in please"}
    response = await desk.post(f"/staff/conversations/{thread}/reply", data=form)
    assert response.status_code == 409 and "texted STOP" in response.text
    assert await rows(bot, notifications) == []
    assert "texted STOP" in (await desk.get(f"/staff/conversations/{thread}")).text


async def test_no_reply_without_twilio_rest_credentials(db_url: str, clock: Clock) -> None:
    async with running_bot(
        db_url, clock, staff_username=USER, staff_password=PASSWORD, secret_key=SECRET
    ) as plain:
        await plain.text(ALEX, "HERE")
        async with signed_in(plain, USER, PASSWORD) as client:
            thread = await thread_of(client, ALEX)
            response = await reply(client, thread, "Please come to the front desk")
            assert response.status_code == 503
            assert "no Twilio REST credentials" in response.text
            assert "TWILIO_ACCOUNT_SID" in response.text
            broadcast = await client.get("/staff/broadcast")
            assert "Broadcasts are off" in broadcast.text
        assert await rows(plain, notifications) == []


async def test_replies_and_their_answers_are_shown_as_text(
    bot: FaultyBot, desk: httpx.AsyncClient
) -> None:
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    for payload in XSS:
        assert (await reply(desk, thread, payload)).status_code == 303
    await send_queued(bot)
    await bot.text(ALEX, XSS[1])
    async with signed_in(bot, USER, PASSWORD) as admin:
        for path in (f"/staff/conversations/{thread}", "/staff/attention", "/staff/audit"):
            html = (await admin.get(path)).text
            assert "<script>alert(1)" not in html and "<img src=x" not in html, path
            assert "&lt;img src=x onerror=alert(1)&gt;" in html, path
    assert [t for t in sent_to(bot, ALEX) if "alert" in t] == XSS  # sent as typed


async def test_a_form_posted_after_the_session_ended_logs_in_back_to_its_page(
    bot: FaultyBot, clock: Clock
) -> None:
    await bot.text(ALEX, "HERE")
    async with signed_in(bot, DESK, DESK_PASSWORD) as desk:
        thread = await thread_of(desk, ALEX)
        page = (await desk.get(f"/staff/conversations/{thread}")).text
        clock.advance(13 * 60)  # a shift idle: the session has ended
        form = {"csrf": csrf_of(page), "token": field(page, "token"), "text": "Come in"}
        for path, back in (
            (f"/staff/conversations/{thread}/reply", f"/staff/conversations/{thread}"),
            (f"/staff/attention/{thread}/handled", "/staff/attention"),
            ("/staff/broadcast/preview", "/staff/broadcast"),
        ):
            response = await desk.post(path, data=form)
            assert response.status_code == 303
            assert response.headers["location"] == f"/staff/login?next={quote(back)}"
    assert await rows(bot, notifications) == []


async def test_a_bad_form_is_a_400_not_a_500(bot: FaultyBot, desk: httpx.AsyncClient) -> None:
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    page = (await desk.get(f"/staff/conversations/{thread}")).text
    csrf = csrf_of(page)
    for form in (
        {"text": "hi"},  # no token
        {"text": "hi", "token": "short"},
        {"text": "hi", "token": "x" * 24 + "<>"},
        {"text": "tab\there", "token": "t" * 24},
        {"text": "nul\x00", "token": "t" * 24},
        {"text": "x" * 2001, "token": "t" * 24},
        {"text": "hi", "token": "t" * 24, "action": "shout"},
    ):
        response = await desk.post(
            f"/staff/conversations/{thread}/reply", data=form | {"csrf": csrf}
        )
        assert response.status_code == 400, form
    missing = await desk.post(
        "/staff/conversations/999999/reply", data={"csrf": csrf, "text": "hi", "token": "t" * 24}
    )
    assert missing.status_code == 404
    assert (await desk.get(f"/staff/conversations/{thread}?use=Nope")).status_code == 400
    assert (await desk.get(f"/staff/conversations/{thread}?use=no_such_reply")).status_code == 400
    assert await rows(bot, notifications) == []


# --- quick replies ------------------------------------------------------------------------------


async def test_quick_replies_are_in_the_customers_language(
    bot: FaultyBot, desk: httpx.AsyncClient
) -> None:
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    english = (await desk.get(f"/staff/conversations/{thread}")).text
    assert "Please come to the front desk." in english and "prompts/en.toml" in english
    async with bot.store.engine.begin() as conn:
        await conn.execute(conversations.update().values(language="es"))
    spanish = (await desk.get(f"/staff/conversations/{thread}")).text
    assert "Por favor pase a recepcion." in spanish
    assert "(Please come to the front desk.)" in spanish  # what it says, for the desk
    filled = await desk.get(f"/staff/conversations/{thread}", params={"use": "come_to_desk"})
    assert textarea(filled.text) == "Por favor pase a recepcion."
    assert "GSM-7, 1 segment" in filled.text


async def test_quick_replies_fall_back_to_the_default_language_and_are_escaped(
    db_url: str, clock: Clock, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    shutil.copy(BUILT_IN / "es.toml", prompts / "es.toml")
    english = (BUILT_IN / "en.toml").read_text(encoding="utf-8")
    hostile = f"come_to_desk = '{XSS[0]} {XSS[1]}'"
    english = english.replace('come_to_desk = "Please come to the front desk."', hostile)
    (prompts / "en.toml").write_text(english, encoding="utf-8")
    spanish = (prompts / "es.toml").read_text(encoding="utf-8")
    start = spanish.index("[quick_replies]")
    end = spanish.index("[understand]")
    (prompts / "es.toml").write_text(spanish[:start] + spanish[end:], encoding="utf-8")
    async with faulty_bot(
        db_url,
        clock,
        staff_username=USER,
        staff_password=PASSWORD,
        secret_key=SECRET,
        prompts_dir=prompts,
    ) as hostile_bot:
        await hostile_bot.text(ALEX, "HERE")
        async with hostile_bot.store.engine.begin() as conn:
            await conn.execute(conversations.update().values(language="es"))
        async with signed_in(hostile_bot, USER, PASSWORD) as client:
            thread = await thread_of(client, ALEX)
            for path in (
                f"/staff/conversations/{thread}",
                f"/staff/conversations/{thread}?use=come_to_desk",
                "/staff/broadcast",
                "/staff/broadcast?use=come_to_desk",
            ):
                html = (await client.get(path)).text
                assert "<script>alert(1)" not in html and "<img src=x" not in html, path
                assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
                assert "running about 15 minutes late" in html  # English: es has none
            filled = await client.get(f"/staff/conversations/{thread}?use=come_to_desk")
            assert unescape(textarea(filled.text)) == f"{XSS[0]} {XSS[1]}"


# --- broadcast ------------------------------------------------------------------------------------


async def three_waiting(bot: FaultyBot) -> None:
    assert "A003" in (await bot.text(ALEX, "HERE") or "")
    await bot.text(JORDAN, "HERE")  # early: asked, then YES
    assert "Ticket" in (await bot.text(JORDAN, "YES") or "")
    await bot.text(CASEY, "HERE")  # late: asked, then YES
    assert "Ticket" in (await bot.text(CASEY, "YES") or "")
    assert "Sam" in (await bot.text(PATELS, "here, both of us") or "")
    await bot.text(PATELS, "STOP")  # checked in, then opted out: not texted


async def preview(client: httpx.AsyncClient, text: str, audience: str = "all") -> httpx.Response:
    page = await client.get("/staff/broadcast")
    form = {"csrf": csrf_of(page.text), "text": text, "audience": audience}
    return await client.post("/staff/broadcast/preview", data=form)


async def test_an_admin_broadcasts_a_delay_to_everyone_waiting_once(
    bot: FaultyBot, admin: httpx.AsyncClient
) -> None:
    await three_waiting(bot)
    text = "We're running about 15 minutes late. Thanks for your patience."
    page = await admin.get("/staff/broadcast")
    assert "Everyone waiting (3)" in page.text
    shown = await preview(admin, text)
    assert shown.status_code == 200
    assert 'id="recipient-count">3<' in shown.text
    for name in ("Alex Taylor", "Jordan Lee", "Casey Nguyen"):
        assert name in shown.text
    assert "Sam" not in shown.text  # opted out
    assert "GSM-7, 1 segment" in shown.text
    assert await rows(bot, notifications) == []  # a preview sends nothing

    confirm = {
        "csrf": csrf_of(shown.text),
        "token": field(shown.text, "token"),
        "text": field(shown.text, "text"),
        "audience": field(shown.text, "audience"),
    }
    sent = await admin.post("/staff/broadcast/send", data=confirm)
    again = await admin.post("/staff/broadcast/send", data=confirm)  # a double click
    assert sent.status_code == again.status_code == 200
    assert "Queued for 3 customers" in sent.text
    assert "already sent" in again.text and "nothing more was sent" in again.text
    assert await send_queued(bot) == 3
    for phone in (ALEX, JORDAN, CASEY):
        assert sent_to(bot, phone)[-1] == text
    assert sent_to(bot, PATELS) == [] or text not in sent_to(bot, PATELS)
    [record] = await rows(bot, broadcasts)
    assert (record["account"], record["recipients"], record["body"]) == (USER, 3, text)
    # In each customer's transcript, as the admin's.
    for phone in (ALEX, JORDAN, CASEY):
        last = (await detail(admin, await thread_of(admin, phone)))["messages"][-1]
        assert (last["body"], last["sent_by"]) == (text, USER)
    [entry] = [a for a in await rows(bot, audit_log) if a["action"] == "broadcast"]
    assert entry["account"] == USER and entry["detail"] == text
    assert "3 waiting" in entry["target"]
    assert text in unescape((await admin.get("/staff/broadcast")).text)  # "sent today"


async def test_a_broadcast_can_go_to_one_service_or_unit(
    bot: FaultyBot, admin: httpx.AsyncClient
) -> None:
    await three_waiting(bot)
    by_service: dict[str, set[str]] = {}
    for w in await rows(bot, watches):
        if w["phone"] != PATELS:
            by_service.setdefault(w["service_name"], set()).add(w["phone"])
    service, phones = next((s, p) for s, p in by_service.items() if len(p) == 2)
    shown = await preview(admin, "The centre closes at five today.", f"service:{service}")
    assert f'id="recipient-count">{len(phones)}<' in shown.text
    unit = await preview(admin, "The centre closes at five today.", "unit:10")
    assert 'id="recipient-count">3<' in unit.text
    nobody = await preview(admin, "The centre closes at five today.", "unit:99")
    assert "Nobody in this audience is waiting" in nobody.text
    assert 'name="token"' not in nobody.text
    bad = await preview(admin, "hi", "everyone; DROP TABLE")
    assert bad.status_code == 400


async def test_a_broadcast_is_refused_like_a_reply(
    bot: FaultyBot, admin: httpx.AsyncClient
) -> None:
    await three_waiting(bot)
    empty = await preview(admin, "  ")
    assert empty.status_code == 400 and "the text is empty" in empty.text
    long = await preview(admin, "y" * 500)
    assert long.status_code == 400 and "needs 4 segments" in long.text
    assert unescape(textarea(long.text)) == "y" * 500
    assert await rows(bot, broadcasts) == [] and await rows(bot, notifications) == []


async def test_a_desk_account_cannot_broadcast(
    bot: FaultyBot, desk: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await three_waiting(bot)
    assert (await desk.get("/staff/broadcast")).status_code == 403
    shown = await preview(admin, "Running late, sorry.")
    csrf = csrf_of((await desk.get("/staff/dashboard")).text)
    confirm = {
        "csrf": csrf,
        "token": field(shown.text, "token"),
        "text": "Running late, sorry.",
        "audience": "all",
    }
    for path in ("/staff/broadcast/preview", "/staff/broadcast/send"):
        response = await desk.post(path, data=confirm)
        assert response.status_code == 403 and "Only an admin" in response.text
    assert await rows(bot, broadcasts) == [] and await rows(bot, notifications) == []


# --- needs attention ------------------------------------------------------------------------------


async def test_what_needs_attention_is_listed_with_why_until_marked_handled(
    bot: FaultyBot, desk: httpx.AsyncClient, clock: Clock
) -> None:
    await bot.text(ALEX, "HERE")
    clock.advance(1)
    await bot.text(ALEX, "i can't make it, take me off the list")  # asks to leave
    clock.advance(1)
    await bot.text(JORDAN, "HERE")  # early: a YES/NO question open
    clock.advance(1)
    await bot.text(STRANGER, "purple monkey dishwasher")  # not understood
    clock.advance(1)
    bot.upstream.fault = Fault("500")
    await bot.text(CASEY, "HERE")  # VirtualQ failed
    bot.upstream.fault = Fault()
    clock.advance(1)
    died = await bot.store.log.record_inbound(PATELS, "SMdied", "HERE", 0, clock.now)
    clock.advance(2)  # a text whose process died: never answered
    data = (await desk.get("/staff/attention.json")).json()
    reasons = {c["phone"]: sorted(r["reason"] for r in c["reasons"]) for c in data["conversations"]}
    assert reasons == {
        ALEX: ["leave"],
        JORDAN: ["question"],
        STRANGER: ["not_understood"],
        CASEY: ["upstream_failure"],
        PATELS: ["unanswered"],
    }
    # Newest first.
    assert [c["phone"] for c in data["conversations"]] == [PATELS, CASEY, STRANGER, JORDAN, ALEX]
    [patels] = [c for c in data["conversations"] if c["phone"] == PATELS]
    assert patels["reasons"][0]["message_id"] == died.id
    assert "never answered" in patels["reasons"][0]["why"]

    # One reason only, as the dashboard links to it.
    only = (await desk.get("/staff/attention.json", params={"reason": "unanswered"})).json()
    assert [c["phone"] for c in only["conversations"]] == [PATELS]
    dashboard = (await desk.get("/staff/dashboard")).text
    assert "/staff/attention?from=2026-11-24&amp;to=2026-11-24&amp;reason=unanswered" in dashboard
    assert 'id="attention-count"><span class="n">5</span>' in dashboard

    # Marked handled (a desk account may): gone, with who and when.
    alex = next(c["id"] for c in data["conversations"] if c["phone"] == ALEX)
    page = await desk.get("/staff/attention", params={"reason": "leave"})
    assert "take me off the list" in page.text
    done = await desk.post(
        f"/staff/attention/{alex}/handled",
        data={"csrf": csrf_of(page.text), "next": "/staff/attention?reason=leave"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/staff/attention?reason=leave"
    after = (await desk.get("/staff/attention.json")).json()
    assert ALEX not in {c["phone"] for c in after["conversations"]}
    [entry] = [a for a in await rows(bot, audit_log) if a["action"] == "handled"]
    assert (entry["account"], entry["target"]) == (DESK, f"conversation {alex}")
    # Something new in it lists it again, for the new thing only.
    clock.advance(1)
    await bot.text(ALEX, "what is a sandwich")
    again = (await desk.get("/staff/attention.json")).json()
    [item] = [c for c in again["conversations"] if c["phone"] == ALEX]
    assert [r["reason"] for r in item["reasons"]] == ["not_understood"]
    assert item["handled"]["by"] == DESK
    # An off-site `next` goes to the list instead.
    away = await desk.post(
        f"/staff/attention/{alex}/handled",
        data={"csrf": csrf_of(page.text), "next": "https://evil.example/"},
    )
    assert away.headers["location"] == "/staff/attention"


async def test_answers_to_a_staff_text_are_found_by_a_seek_not_a_walk_through_the_log(
    bot: FaultyBot, desk: httpx.AsyncClient, backend: str
) -> None:
    """Who sent the last text before each customer text is looked up in the texts sent alone
    (ix_messages_outbound_phone): through (phone, id), a phone that texts thousands of times in
    a row made every page that lists what needs attention quadratic in those texts."""
    await bot.text(ALEX, "HERE")
    await bot.text(ALEX, "what is a sandwich")
    seen: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        if " earlier" in statement:
            seen.append((statement, parameters))

    engine = bot.store.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        assert (await desk.get("/staff/attention.json")).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = seen[0]
    async with bot.store.engine.connect() as conn:
        if backend == "sqlite":
            explain = "EXPLAIN QUERY PLAN "
        else:  # the tables are small: a scan would do; is the index usable at all?
            await conn.exec_driver_sql("SET enable_seqscan = off")
            explain = "EXPLAIN "
        plan = (await conn.exec_driver_sql(explain + statement, parameters)).all()
    assert "ix_messages_outbound_phone" in " ".join(map(str, plan)), plan


async def test_an_undelivered_reply_needs_attention_and_the_page_refreshes(
    bot: FaultyBot, desk: httpx.AsyncClient
) -> None:
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    await reply(desk, thread, "Please come to the front desk.")
    await send_queued(bot)
    out = (await detail(desk, thread))["messages"][-1]
    params = {
        "MessageSid": out["message_sid"],
        "MessageStatus": "undelivered",
        "ErrorCode": "30006",
    }
    url = f"https://bot.example.com/sms/status?m={out['id']}"
    assert (await bot.post_signed(url, params)).status_code == 204
    data = (await desk.get("/staff/attention.json")).json()
    [item] = data["conversations"]
    [why] = item["reasons"]
    assert why["reason"] == "undelivered" and "30006: landline" in why["why"]
    page = await desk.get("/staff/attention")
    assert '<meta http-equiv="refresh" content="30">' in page.text
    conversation = await desk.get(f"/staff/conversations/{thread}")
    assert "Reply not delivered" in conversation.text and "Mark handled" in conversation.text
    assert 'http-equiv="refresh"' not in conversation.text  # never while typing


async def test_attention_parameters_are_checked(desk: httpx.AsyncClient) -> None:
    for params in (
        {"reason": "bored"},
        {"from": "2026-01-01", "to": "2026-03-01"},  # over 31 days
        {"from": "yesterday"},
    ):
        response = await desk.get("/staff/attention.json", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]
        assert (await desk.get("/staff/attention", params=params)).status_code == 400
    missing = await desk.post(
        "/staff/attention/999999/handled",
        data={"csrf": csrf_of((await desk.get("/staff/attention")).text)},
    )
    assert missing.status_code == 404


# --- the audit log --------------------------------------------------------------------------------


async def test_the_audit_log_is_for_admins_newest_first_page_by_page(
    bot: FaultyBot,
    desk: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(staff_pages, "AUDIT_PAGE", 3)
    await bot.text(ALEX, "HERE")
    thread = await thread_of(desk, ALEX)
    for i in range(4):
        clock.advance(1)
        await reply(desk, thread, f"reply number {i}")
    assert (await desk.get("/staff/audit")).status_code == 403
    assert (await desk.get("/staff/audit.json")).status_code == 403
    seen: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    while True:
        page = (await admin.get("/staff/audit.json", params=cursor)).json()
        seen += page["entries"]
        if page["next"] is None:
            break
        cursor = {"before": str(page["next"])}
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids))
    replies = [e["detail"] for e in seen if e["action"] == "reply"]
    assert replies == [f"reply number {i}" for i in (3, 2, 1, 0)]
    assert {e["action"] for e in seen} == {"login", "reply"}
    html = (await admin.get("/staff/audit")).text
    assert 'rel="next"' in html and "reply number 3" in html
    assert (await admin.get("/staff/audit", params={"before": "x"})).status_code == 400
    assert (await admin.get("/staff/audit.json", params={"before": "0"})).status_code == 400


async def test_the_dashboard_links_its_counts_and_refreshes(
    bot: FaultyBot, desk: httpx.AsyncClient, clock: Clock
) -> None:
    page = await desk.get("/staff/dashboard", params={"from": "2026-11-01", "to": "2026-11-24"})
    assert "/staff/attention?from=2026-11-01&amp;to=2026-11-24" in page.text
    assert '<meta http-equiv="refresh" content="30">' in page.text
    year = await desk.get(
        "/staff/dashboard.json", params={"from": "2026-01-01", "to": "2026-11-24"}
    )
    assert year.json()["attention"] is None  # over the attention list's 31 days
    assert (await desk.get("/staff/dashboard.json")).json()["attention"] == {
        "conversations": 0,
        "more": False,
    }


async def test_a_customer_text_cannot_turn_the_pages_own_words_around(
    bot: Bot, desk: httpx.AsyncClient
) -> None:
    """A text opening a right-to-left override (U+202E) and never closing it reversed the
    page's own words after its quote (the time, "read as …"): quoted, it loses its bidi
    controls and is isolated from what follows, and the reason is isolated on the page."""
    await bot.text(ALEX, "\u202eIs this the right entrance?\u2069 0491 570 199")
    attention = (await desk.get("/staff/attention.json")).json()
    whys = [r["why"] for c in attention["conversations"] for r in c["reasons"]]
    [why] = [w for w in whys if "right entrance" in w]
    assert not any(chr(c) in why for c in (*range(0x202A, 0x202F), 0x2066, 0x2067))
    assert why.startswith("“\u2068Is this the right entrance?") and "\u2069”" in why
    assert why.count("\u2069") == 1
    page = (await desk.get("/staff/attention")).text
    assert "<bdi>“\u2068Is this the right entrance?" in page
