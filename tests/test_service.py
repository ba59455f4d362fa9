"""The whole bot through its webhook, against the simulator, with the log checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from bot import service as service_module
from bot.conversation import UNCONFIRMED, State
from bot.store import open_store

from .conftest import Clock
from .helpers import (
    ALEX,
    CASEY,
    JORDAN,
    PATELS,
    RILEY,
    STRANGER,
    TAYLOR,
    Bot,
    conversation_of,
    form,
    mock_upstream_bot,
    reply_text,
    running_bot,
    seed_directory,
    transcript,
)


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[Bot]:
    async with running_bot(db_url, clock) as b:
        yield b


async def test_here_checks_in_and_the_log_has_everything(bot: Bot) -> None:
    reply = await bot.text(ALEX, "I'm here!")
    assert reply == (
        "You're checked in! Ticket A003. You're number 3 in line, about 12 min "
        "wait. Text STATUS for an update."
    )
    log = await transcript(bot.store, ALEX)
    inbound, outbound = log
    assert (inbound["direction"], inbound["body"], inbound["intent"]) == (
        "in",
        "I'm here!",
        "arrive",
    )
    assert (inbound["state_before"], inbound["state_after"]) == ("idle", "checked_in")
    assert outbound["direction"] == "out" and outbound["body"] == reply
    assert outbound["reply_to"] == inbound["id"] and outbound["segments"] == 1
    [call] = inbound["calls"]
    assert call["operation"] == "checkin" and call["status"] == 200 and call["outcome"] == "ok"
    assert call["request"]["body"] == {"PersonalId": "S1001", "ForceEarlyLate": False}
    assert call["latency_ms"] >= 0


async def test_early_arrival_is_asked_before_forcing(bot: Bot) -> None:
    assert "early" in (await bot.text(JORDAN, "here") or "")
    assert bot.sim.checkins == 0
    assert "Ticket B004" in (await bot.text(JORDAN, "yes") or "")
    calls = [c for m in await transcript(bot.store, JORDAN) for c in m["calls"]]
    assert [c["request"]["body"]["ForceEarlyLate"] for c in calls] == [False, True]
    assert [c["outcome"] for c in calls] == ["refused:early", "ok"]


async def test_late_arrival_declined_then_here_later(bot: Bot) -> None:
    assert "late" in (await bot.text(CASEY, "here") or "")
    assert "No problem" in (await bot.text(CASEY, "no") or "")
    assert (await conversation_of(bot.store, CASEY)).state is State.IDLE


async def test_an_expired_question_is_not_answered_by_yes(bot: Bot) -> None:
    await bot.text(JORDAN, "here")
    bot.clock.advance(11)
    assert "expired" in (await bot.text(JORDAN, "yes") or "")
    assert bot.sim.checkins == 0


async def test_prevent_auto_queue_and_no_appointment_and_unknown(bot: Bot) -> None:
    assert "reception" in (await bot.text(RILEY, "here") or "")
    assert "couldn't find an appointment" in (await bot.text(TAYLOR, "here") or "")
    assert "don't recognise this number" in (await bot.text(STRANGER, "here") or "")
    assert bot.sim.checkins == 0


async def test_a_shared_phone_chooses_who_is_checking_in(bot: Bot) -> None:
    ask = await bot.text(PATELS, "here")
    assert ask == "Who is checking in? Reply 1 for Sam Patel, 2 for Mia Patel, 3 for everyone."
    assert "Ticket C002" in (await bot.text(PATELS, "2") or "")


async def test_status_follows_the_moving_queue(bot: Bot) -> None:
    await bot.text(ALEX, "here")
    bot.sim.call_next(1)
    assert (await bot.text(ALEX, "status")) == (
        "Ticket A003: you're number 2 in line, about 9 min wait."
    )
    bot.sim.call_next(1)
    assert "next in line" in (await bot.text(ALEX, "here") or "")
    assert bot.sim.checkins == 1  # HERE again looked the case up, it did not check in again
    for _ in range(2):
        bot.sim.call_next(1)
    assert "no longer in the queue" in (await bot.text(ALEX, "status") or "")


async def test_a_repeated_message_sid_gets_the_same_reply_and_no_second_call(bot: Bot) -> None:
    params = form(ALEX, "here")
    token = {"I-Twilio-Idempotency-Token": "b6f1f2c4-retry-token"}
    first = await bot.post(params, headers=token)
    second = await bot.post(params, headers=token)
    assert first.text == second.text and "Ticket" in first.text
    assert bot.sim.checkin_requests == 1
    log = await transcript(bot.store, ALEX)
    assert [m["direction"] for m in log] == ["in", "out"]
    assert log[0]["idempotency_token"] == "b6f1f2c4-retry-token"


async def test_concurrent_duplicate_deliveries_check_in_once(bot: Bot) -> None:
    params = form(ALEX, "here")
    replies = await asyncio.gather(*(bot.post(params) for _ in range(5)))
    assert {r.status_code for r in replies} == {200}
    assert len({r.text for r in replies}) == 1
    assert bot.sim.checkin_requests == 1


async def test_two_yes_replies_arriving_together_force_one_check_in(bot: Bot) -> None:
    await bot.text(JORDAN, "here")
    replies = await asyncio.gather(bot.post(form(JORDAN, "yes")), bot.post(form(JORDAN, "YES!")))
    texts = [reply_text(r.text) or "" for r in replies]
    assert bot.sim.checkin_requests == 2  # the HERE VirtualQ refused as early, and one YES
    assert sum("checked in!" in t for t in texts) == 1
    assert all("Ticket B004" in t for t in texts)  # the second YES gets the status


async def test_opt_out_is_recorded(bot: Bot) -> None:
    assert await bot.text(ALEX, "STOP") is None
    assert (await conversation_of(bot.store, ALEX)).state is State.OPTED_OUT
    await bot.text(ALEX, "start")
    assert (await conversation_of(bot.store, ALEX)).state is State.IDLE


async def test_every_inbound_message_is_stored_even_when_silent(bot: Bot) -> None:
    await bot.text(ALEX, "stop")
    await bot.text(ALEX, "here")
    log = await transcript(bot.store, ALEX)
    assert [m["body"] for m in log] == ["stop", "here"]


async def test_upstream_down_gets_an_apology_and_the_conversation_recovers(
    db_url: str, clock: Clock
) -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(
            200, json={"CaseId": 9, "Ticket": "Z001", "QueuePosition": 0, "WaitTimeEst": 0}
        )

    await seed_directory(db_url)
    async with mock_upstream_bot(db_url, clock, flaky) as (client, app):
        first = await client.post("/sms", data=form(ALEX, "here"))
        assert "reception" in (reply_text(first.text) or "")
        second = await client.post("/sms", data=form(ALEX, "here"))
        assert "Ticket Z001" in (reply_text(second.text) or "")
        log = await transcript(app.state.store, ALEX)
        assert log[0]["calls"][0]["outcome"] == "unavailable"
        assert "ConnectError" in log[0]["calls"][0]["error"]


async def test_phone_as_personal_id(db_url: str, clock: Clock) -> None:
    seen: list[bytes] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(
            200, json={"CaseId": 1, "Ticket": "A001", "QueuePosition": 1, "WaitTimeEst": 5}
        )

    async with mock_upstream_bot(
        db_url,
        clock,
        upstream,
        personal_id_source="phone",
        personal_id_phone_format="national_digits",
    ) as (client, _):
        await client.post("/sms", data=form(STRANGER, "here"))
    assert b'"PersonalId":"0491570199"' in seen[0]


async def test_booking_number_fallback_end_to_end(db_url: str, clock: Clock) -> None:
    async with running_bot(db_url, clock, booking_number_fallback=True) as b:
        assert "booking number" in (await b.text(STRANGER, "here") or "")
        assert "Ticket A003" in (await b.text(STRANGER, "100001") or "")


async def test_a_message_that_cannot_get_its_turn_is_answered_and_logged(
    bot: Bot, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "PHONE_TURN_WAIT_SECONDS", 0.2)
    async with open_store(db_url) as elsewhere, elsewhere.turns.take(ALEX, wait=1):
        # Another process is stuck on ALEX's previous message.
        reply = await bot.text(ALEX, "here")
    assert reply == bot.service.prompts.render("upstream_unavailable")
    assert bot.sim.checkin_requests == 0
    log = await transcript(bot.store, ALEX)
    assert [(m["direction"], m["intent"]) for m in log] == [("in", "busy"), ("out", None)]
    assert (await conversation_of(bot.store, ALEX)).state is State.IDLE
    assert "Ticket A003" in (await bot.text(ALEX, "here") or "")  # and the next HERE works


async def test_a_flood_from_one_phone_is_told_once_then_ignored_for_a_minute(bot: Bot) -> None:
    limited = bot.service.prompts.render("rate_limited")
    replies = [await bot.text(ALEX, "status") for _ in range(10)]
    replies += [await bot.text(ALEX, "here") for _ in range(2)]  # over the limit: not read
    assert all(r and "Text HERE" in r for r in replies[:10])  # "not checked in yet"
    assert replies[10] == limited and replies[11] is None
    assert bot.sim.checkin_requests == 0  # nor written ahead: nothing to look up later
    assert UNCONFIRMED not in (await conversation_of(bot.store, ALEX)).data
    assert "early" in (await bot.text(JORDAN, "here") or "")  # other phones are unaffected
    bot.clock.advance(1.1)
    assert "Ticket A003" in (await bot.text(ALEX, "here") or "")
    log = await transcript(bot.store, ALEX)
    inbound = [m for m in log if m["direction"] == "in"]
    assert len(inbound) == 13 and all(m["handled_at"] for m in inbound)
    assert [m["intent"] for m in inbound[10:12]] == ["rate_limited", "rate_limited"]


async def test_during_an_outage_customers_get_the_apology_without_waiting(
    db_url: str, clock: Clock
) -> None:
    calls = 0

    def down(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    phones_ = [f"+6149157{n:04d}" for n in range(7)]
    async with mock_upstream_bot(
        db_url, clock, down, personal_id_source="phone", virtualq_breaker_failures=5
    ) as (client, app):
        for phone in phones_:
            reply = reply_text((await client.post("/sms", data=form(phone, "here"))).text)
            assert "reception" in (reply or "")
        assert calls == 5  # the last two never reached VirtualQ
        last = await transcript(app.state.store, phones_[-1])
        assert [c["outcome"] for c in last[0]["calls"]] == ["circuit_open"]
        assert "circuit open" in last[0]["calls"][0]["error"]


async def test_a_body_longer_than_any_text_is_stored_whole_and_read_in_part(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twilio delivers at most 1,600 characters; the webhook takes up to 10,000, and reading
    all of them would hold the event loop for up to ~170 ms: the first 1,600 are read."""
    lengths: list[int] = []
    read = service_module.read

    def measured(text: str, *args: object, **kwargs: object) -> object:
        lengths.append(len(text))
        return read(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "read", measured)
    body = "I'm here. " + "ok " * 3330
    assert len(body) == 10_000
    assert "Ticket A003" in (await bot.text(ALEX, body) or "")
    assert lengths == [service_module.READ_MAX_CHARS]
    [stored] = [m for m in await transcript(bot.store, ALEX) if m["direction"] == "in"]
    assert stored["body"] == body
