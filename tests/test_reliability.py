"""Exactly-once check-ins and an answer in time, with VirtualQ misbehaving: lost answers are
reconciled, never re-sent; slow answers get a holding reply and follow as a text; texts a
dead process left are answered by whoever is alive."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.conversation import UNCONFIRMED, State, Target, unconfirmed_data
from bot.reclaimer import Reclaimer

from .conftest import Clock
from .faulty import Fault
from .helpers import (
    ALEX,
    CASEY,
    JORDAN,
    PUBLIC,
    TOKEN,
    FaultyBot,
    conversation_of,
    faulty_bot,
    form,
    transcript,
)

# Our VirtualQ timeout in these tests, and a delay that outlasts it by enough that a loaded
# machine cannot blur the two.
TIMEOUT = 1.5
LATE = TIMEOUT + 1.5


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[FaultyBot]:
    async with faulty_bot(db_url, clock, virtualq_timeout_seconds=TIMEOUT) as b:
        yield b


@pytest.fixture
async def slow(db_url: str, clock: Clock) -> AsyncIterator[FaultyBot]:
    """A bot whose webhook budget (0.5 s) runs out before a check-in VirtualQ delays 1.5 s."""
    async with faulty_bot(
        db_url, clock, webhook_budget_seconds=0.5, virtualq_timeout_seconds=5
    ) as b:
        b.upstream.fault = Fault("delay", 1.5)
        yield b


def _calls(log: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(c["operation"], c["outcome"]) for m in log for c in m["calls"]]  # type: ignore[attr-defined]


async def test_a_check_in_whose_answer_timed_out_is_looked_up_not_resent(bot: FaultyBot) -> None:
    bot.upstream.fault = Fault("delay", LATE)  # enqueues, then answers after our timeout
    reply = await bot.text(ALEX, "here")
    assert reply is not None and "checked in" in reply and "A003" in reply
    assert (bot.upstream.requests, bot.sim.checkins) == (1, 1)
    calls = _calls(await transcript(bot.store, ALEX))
    assert calls == [("checkin", "timeout"), ("waiting", "ok"), ("get_case", "ok")]
    assert (await conversation_of(bot.store, ALEX)).state is State.CHECKED_IN


async def test_a_lost_check_in_that_enqueued_nothing_asks_for_here_again(bot: FaultyBot) -> None:
    bot.upstream.fault = Fault("hang", LATE)
    assert await bot.text(ALEX, "here") == bot.service.prompts.render("checkin_not_done")
    assert bot.sim.checkins == 0
    bot.upstream.fault = Fault()
    assert "A003" in (await bot.text(ALEX, "here") or "")
    assert (bot.upstream.requests, bot.sim.checkins) == (2, 1)


@pytest.mark.parametrize("kind", ["500_after_enqueue", "no_ticket", "malformed_json"])
async def test_an_answer_that_may_hide_a_check_in_is_reconciled(bot: FaultyBot, kind: str) -> None:
    bot.upstream.fault = Fault(kind)
    reply = await bot.text(ALEX, "here")
    assert reply is not None and "A003" in reply, reply
    assert (bot.upstream.requests, bot.sim.checkins) == (1, 1)


async def test_a_refused_connection_or_503_is_not_reconciled(bot: FaultyBot) -> None:
    """Nothing reached VirtualQ (or it said so): the apology, and no look-up."""
    bot.upstream.fault = Fault("503_retry_after")
    assert "see reception" in (await bot.text(ALEX, "here") or "")
    assert _calls(await transcript(bot.store, ALEX)) == [("checkin", "unavailable")]
    assert UNCONFIRMED not in (await conversation_of(bot.store, ALEX)).data


async def test_without_a_way_to_look_up_the_customer_is_sent_to_reception_and_nothing_is_resent(
    db_url: str, clock: Clock
) -> None:
    async with faulty_bot(
        db_url, clock, virtualq_unit_ids="", virtualq_timeout_seconds=TIMEOUT
    ) as bot:
        bot.upstream.fault = Fault("hang", LATE)
        unconfirmed = bot.service.prompts.render("checkin_unconfirmed")
        assert await bot.text(ALEX, "here") == unconfirmed
        bot.upstream.fault = Fault()
        # Every text of this visit asks VirtualQ about that check-in first; none re-sends it.
        assert await bot.text(ALEX, "here") == unconfirmed
        assert await bot.text(ALEX, "status") == unconfirmed
        assert bot.upstream.requests == 1
        assert UNCONFIRMED in (await conversation_of(bot.store, ALEX)).data
        # The next day it is forgotten, like a check-in.
        clock.advance(13 * 60)
        assert await bot.text(ALEX, "here") != unconfirmed
        assert bot.upstream.requests == 2


async def test_a_process_that_died_mid_check_in_is_reconciled_by_the_next_text(
    bot: FaultyBot,
) -> None:
    """The write-ahead record (saved before the POST) is all that survives the process."""
    bot.sim.checkin({"PersonalId": "S1001"})  # what the dead process's request did
    async with bot.store.turns.take(ALEX, 1) as turn:
        pending = unconfirmed_data(Target(personal_id="S1001"), bot.clock().isoformat())
        await turn.remember(State.IDLE.value, pending, bot.clock())
    reply = await bot.text(ALEX, "status")
    assert reply is not None and "A003" in reply
    assert (bot.upstream.requests, bot.sim.checkins) == (0, 1)


@pytest.mark.parametrize("behind_another", [False, True])
async def test_the_check_in_is_written_ahead_before_it_is_sent(
    bot: FaultyBot, behind_another: bool
) -> None:
    """A lone text's check-in is written ahead as the text is stored (SQLite) or in its own
    statement (PostgreSQL); a text that finds its phone's line taken is stored without the
    turn, and its check-in written ahead in a transaction of its own once the turn comes."""
    seen: list[object] = []
    original = bot.service.client.checkin

    async def spy(**kw: object) -> object:
        seen.append((await conversation_of(bot.store, ALEX)).data.get(UNCONFIRMED))
        return await original(**kw)  # type: ignore[arg-type]

    bot.service.client.checkin = spy  # type: ignore[method-assign]
    if behind_another:
        async with bot.store.turns.arrive(ALEX):  # a text of the phone's before it, in the line
            text = asyncio.create_task(bot.text(ALEX, "here"))
            await asyncio.sleep(0.3)
            assert not text.done() and not seen
        reply = await text
    else:
        reply = await bot.text(ALEX, "here")
    assert "A003" in (reply or "")
    assert seen and isinstance(seen[0], dict) and seen[0]["target"]["personal_id"] == "S1001"
    assert UNCONFIRMED not in (await conversation_of(bot.store, ALEX)).data  # and cleared after


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_text_whose_decision_fails_as_it_is_stored_is_stored_and_decided_again(
    bot: FaultyBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reads and steps a lone text in the transaction that stores it (so its check-in
    is written ahead with it): should that fail, the text is stored all the same, and the
    conversation steps it again in its turn (PostgreSQL steps a text only there)."""
    from bot import service as service_module

    failed: list[str] = []
    step = service_module.step

    def flaky(*args: object) -> object:
        if not failed:
            failed.append(threading.current_thread().name)
            raise RuntimeError("a bug in the conversation")
        return step(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "step", flaky)
    assert "A003" in (await bot.text(ALEX, "here") or "")
    assert failed != [threading.main_thread().name]  # it failed in the writer thread
    assert bot.sim.checkins == 1
    [inbound] = [m for m in await transcript(bot.store, ALEX) if m["direction"] == "in"]
    assert inbound["handled_at"] and inbound["intent"] == "arrive"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_long_text_is_read_in_its_turn_not_while_the_write_lock_is_held(
    bot: FaultyBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading 10,000 characters can take ~170 ms: only texts of one segment are read in the
    writer thread (holding SQLite's write lock); a longer one is read on the event loop, and
    its check-in written ahead in a transaction of its own."""
    from bot import service as service_module

    threads: list[str] = []
    step = service_module.step

    def watched(*args: object) -> object:
        threads.append(threading.current_thread().name)
        return step(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "step", watched)
    body = "Hi, I'm here now. " + "I have an appointment this morning and I am waiting. " * 3
    assert len(body) > service_module.PLAN_MAX_CHARS
    assert "A003" in (await bot.text(ALEX, body) or "")
    assert threads == [threading.main_thread().name]
    await bot.text(CASEY, "here")  # a short one is read as it is stored
    assert len(threads) == 2 and threads[1] != threading.main_thread().name


async def test_a_booking_number_check_in_is_looked_up_by_case(db_url: str, clock: Clock) -> None:
    async with faulty_bot(
        db_url,
        clock,
        booking_number_fallback=True,
        virtualq_unit_ids="",
        virtualq_timeout_seconds=TIMEOUT,
    ) as bot:
        case = next(c for c in bot.sim.cases.values() if c.personal_id == "S1001")
        await bot.text("+61491570199", "here")
        bot.upstream.fault = Fault("delay", LATE)
        reply = await bot.text("+61491570199", str(case.case_id))
        assert reply is not None and "A003" in reply
        assert _calls(await transcript(bot.store, "+61491570199"))[-2:] == [
            ("checkin", "timeout"),
            ("get_case", "ok"),
        ]


# --- the webhook's budget ---------------------------------------------------------------------


async def test_a_slow_check_in_gets_a_holding_reply_then_the_ticket_by_text(
    slow: FaultyBot,
) -> None:
    response = await slow.post(form(ALEX, "here"))
    assert response.status_code == 200
    holding = slow.service.prompts.render("holding")
    assert holding in response.text
    [held] = [m for m in await transcript(slow.store, ALEX) if m["prompt"] == "holding"]
    assert f"/sms/status?m={held['id']}" in response.text
    await slow.service.late.drain()
    [text] = slow.upstream.texts.sent
    assert text["To"] == ALEX and text["From"] == "+61400000000" and "A003" in text["Body"]
    credentials = base64.b64encode(f"AC{'1' * 32}:{TOKEN}".encode()).decode()
    assert text["_auth"] == f"Basic {credentials}"  # the account SID and auth token
    log = await transcript(slow.store, ALEX)
    final = log[-1]
    assert final["body"] == text["Body"] and final["status"] == "queued"
    assert final["message_sid"].startswith("SM")
    assert text["StatusCallback"] == f"{PUBLIC}/sms/status?m={final['id']}"
    assert slow.sim.checkins == 1
    # Its delivery report lands on it, like a webhook reply's.
    status = {"MessageSid": final["message_sid"], "MessageStatus": "delivered", "To": ALEX}
    url = text["StatusCallback"]
    assert (await slow.post_signed(url, status)).status_code == 204
    assert (await transcript(slow.store, ALEX))[-1]["status"] == "delivered"


async def test_without_rest_credentials_the_holding_reply_says_see_reception(
    db_url: str, clock: Clock
) -> None:
    async with faulty_bot(
        db_url,
        clock,
        webhook_budget_seconds=0.5,
        virtualq_timeout_seconds=5,
        twilio_account_sid=None,
    ) as bot:
        bot.upstream.fault = Fault("delay", 1.5)
        reply = await bot.text(ALEX, "here")
        assert reply == bot.service.prompts.render("holding_see_reception")
        await bot.service.late.drain()
        assert bot.upstream.texts.sent == []
        final = (await transcript(bot.store, ALEX))[-1]
        assert "A003" in final["body"] and final["status"] == "unsent"


async def test_a_text_twilio_refuses_is_logged_with_its_error(slow: FaultyBot) -> None:
    slow.upstream.texts.refuse_with = 21610  # the customer opted out at Twilio
    await slow.text(ALEX, "here")
    await slow.service.late.drain()
    final = (await transcript(slow.store, ALEX))[-1]
    assert (final["status"], final["error_code"]) == ("unsent", "21610")


async def test_a_duplicate_delivery_past_the_budget_is_texted_once(slow: FaultyBot) -> None:
    params = form(ALEX, "here")
    first, second = await asyncio.gather(slow.post(params), slow.post(params))
    holding = slow.service.prompts.render("holding")
    assert holding in first.text and holding in second.text
    await slow.service.late.drain()
    assert len(slow.upstream.texts.sent) == 1
    assert (slow.upstream.requests, slow.sim.checkins) == (1, 1)


# --- texts a dead process left ----------------------------------------------------------------


async def test_a_text_left_unanswered_is_answered_by_the_reclaimer(bot: FaultyBot) -> None:
    inbound = await bot.store.log.record_inbound(ALEX, "SMdead", "here", 0, bot.clock())
    reclaimer = Reclaimer(bot.service)
    assert await reclaimer.reclaim() == 0  # too recent: its process may still be at work
    bot.clock.advance(2)
    assert await reclaimer.reclaim() == 1
    [text] = bot.upstream.texts.sent
    assert text["To"] == ALEX and "A003" in text["Body"]
    log = await transcript(bot.store, ALEX)
    assert log[0]["id"] == inbound.id and log[0]["handled_at"] is not None
    assert await reclaimer.reclaim() == 0  # answered once
    assert bot.sim.checkins == 1


async def test_a_text_left_unanswered_too_long_is_only_marked(bot: FaultyBot) -> None:
    await bot.store.log.record_inbound(CASEY, "SMold", "here", 0, bot.clock())
    bot.clock.now += timedelta(minutes=30)
    assert await Reclaimer(bot.service).reclaim() == 0
    [inbound] = await transcript(bot.store, CASEY)
    assert inbound["intent"] == "abandoned" and inbound["handled_at"] is not None
    assert bot.upstream.texts.sent == [] and bot.upstream.requests == 0


async def test_a_text_answered_by_a_later_one_is_not_answered_again(bot: FaultyBot) -> None:
    """Its process died; the customer texted again and got an answer: the reclaimer must not
    text them a second time."""
    await bot.store.log.record_inbound(ALEX, "SMdied", "here", 0, bot.clock())
    assert await bot.text(ALEX, "here") is not None  # answered, by another process
    bot.clock.advance(2)
    assert await Reclaimer(bot.service).reclaim() == 0
    first = (await transcript(bot.store, ALEX))[0]
    assert first["intent"] == "superseded" and first["handled_at"] is not None
    assert bot.upstream.texts.sent == [] and bot.sim.checkins == 1


async def test_a_late_answer_that_fails_is_followed_by_the_apology(
    db_url: str, clock: Clock
) -> None:
    """A holding reply promises a text: if the answer then fails (the database, say), the
    promised text is the apology."""
    async with faulty_bot(db_url, clock, webhook_budget_seconds=0.3) as bot:

        async def fails(*args: object) -> None:
            await asyncio.sleep(0.6)
            raise RuntimeError("database gone")

        bot.service.answer = fails  # type: ignore[method-assign, assignment]
        assert await bot.text(ALEX, "here") == bot.service.prompts.render("holding")
        await bot.service.late.drain()
        [text] = bot.upstream.texts.sent
        assert text["Body"] == bot.service.prompts.render("upstream_unavailable")


async def test_a_failure_while_reconciling_keeps_the_check_in_to_look_up(bot: FaultyBot) -> None:
    async with bot.store.turns.take(ALEX, 1) as turn:
        pending = unconfirmed_data(Target(personal_id="S1001"), bot.clock().isoformat())
        await turn.remember(State.IDLE.value, pending, bot.clock())

    async def broken(**kw: object) -> None:
        raise RuntimeError("a bug")

    bot.service.client.find_checkin = broken  # type: ignore[method-assign, assignment]
    assert await bot.text(ALEX, "here") == bot.service.prompts.render("checkin_unconfirmed")
    assert (await conversation_of(bot.store, ALEX)).data == pending
    assert bot.upstream.requests == 0


async def test_a_callback_that_beats_the_rest_answer_is_not_moved_back(slow: FaultyBot) -> None:
    """Twilio may report "delivered" before its API's "queued" reaches us: the later, lower
    status must not overwrite it (the same rank rule as for callbacks)."""
    await slow.text(ALEX, "here")
    await slow.service.late.drain()
    final = (await transcript(slow.store, ALEX))[-1]
    sid = final["message_sid"]
    assert await slow.store.log.record_status(final["id"], sid, "delivered", None)
    assert not await slow.store.log.record_status(final["id"], sid, "queued", None)
    final = (await transcript(slow.store, ALEX))[-1]
    assert (final["status"], final["message_sid"]) == ("delivered", sid)


async def test_the_reclaimer_answers_several_phones_at_once_each_in_order(
    bot: FaultyBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left by a dead process: texts of four phones, two of them from one phone. The phones
    are answered side by side (one at a time, a backlog behind a slow VirtualQ ran into the
    10-minute limit), and one phone's texts in the order they came."""
    from bot import reclaimer as module

    for i, phone in enumerate((ALEX, JORDAN, CASEY, ALEX)):
        await bot.store.log.record_inbound(phone, f"SMleft{i}", "status", 0, bot.clock())
    bot.clock.advance(2)
    busy, most, order = 0, 0, []
    reclaim_one = module.Reclaimer._reclaim

    async def watched(self: Reclaimer, text: Any, now: datetime) -> Any:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        order.append((text.phone, text.id))
        await asyncio.sleep(0.05)  # long enough for the others to start, if they may
        busy -= 1
        return await reclaim_one(self, text, now)

    monkeypatch.setattr(module.Reclaimer, "_reclaim", watched)
    assert await Reclaimer(bot.service).reclaim() == 4
    assert most == 3  # three phones at once; Alex's second text waits for the first
    alex = [i for phone, i in order if phone == ALEX]
    assert alex == sorted(alex) and len(alex) == 2


def test_a_send_is_tried_again_only_when_it_never_reached_twilio() -> None:
    """A refused connection never reached Twilio: tried again. A read that timed out may have
    been a text Twilio took: not tried again (a second copy is worse than a late status)."""
    import socket

    import requests

    from bot.texter import _never_connected

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(requests.ConnectionError) as refused:
            requests.post(f"http://127.0.0.1:{port}/", timeout=2)
    assert _never_connected(refused.value)

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(requests.ReadTimeout) as silent:
            requests.post(url, timeout=0.2)
    assert not _never_connected(silent.value)
