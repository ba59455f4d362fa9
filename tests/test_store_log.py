"""The log: texts stored first and once, delivery statuses that never go back, a message's
outcome in one write, and retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.store import Store, open_store
from bot.store.log import THREAD_GAP, Call, Handled

from .conftest import T0
from .helpers import ALEX, transcript


def handled(inbound_id: int, reply: str | None = "ok", **extra: object) -> Handled:
    values: dict[str, object] = dict(
        inbound_id=inbound_id,
        phone=ALEX,
        state_before="idle",
        state_after="checked_in",
        data_after={"ticket": "A1"},
        intent="arrive",
        reply=reply,
        reply_key="checked_in" if reply else None,
        segments=1 if reply else None,
        calls=(),
        now=T0,
    )
    return Handled(**(values | extra))  # type: ignore[arg-type]


@pytest.fixture
async def store(db_url: str) -> Store:
    async with open_store(db_url) as opened:
        yield opened  # type: ignore[misc]


async def test_a_repeated_message_sid_is_stored_once(store: Store) -> None:
    first = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    again = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0 + timedelta(seconds=5))
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert [m["body"] for m in await transcript(store, ALEX)] == ["here"]


async def test_a_message_outcome_is_one_write_with_the_rule_passed_in(store: Store) -> None:
    inbound = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    call = Call("checkin", {"PersonalId": "S1"}, 200, 12, "ok", "{}", None, T0)
    seen: list[str] = []

    def advance(stored: str) -> tuple[str, bool]:
        seen.append(stored)
        return "checked_in", True

    reply_id = await store.log.finish(handled(inbound.id, calls=(call,), advance=advance))
    assert seen == ["other"]  # the thread's outcome as stored, handed to the rule
    [text, reply] = await transcript(store, ALEX)
    assert text["handled_at"] is not None and text["state_after"] == "checked_in"
    assert reply["id"] == reply_id and reply["reply_to"] == inbound.id
    assert [c["operation"] for c in text["calls"]] == ["checkin"]
    assert await store.log.state_of(ALEX) == "checked_in"


async def test_a_status_never_moves_back_and_the_first_sid_wins(store: Store) -> None:
    inbound = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    reply_id = await store.log.finish(handled(inbound.id))
    assert await store.log.record_status(reply_id, "SMa", "delivered", None)
    assert not await store.log.record_status(reply_id, "SMa", "sent", None)
    assert not await store.log.record_status(reply_id, "SMb", "read", None)
    [_, reply] = await transcript(store, ALEX)
    assert (reply["status"], reply["message_sid"]) == ("delivered", "SMa")


async def test_unanswered_texts_are_found_oldest_first(store: Store) -> None:
    old = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    await store.log.record_inbound("+61491570157", "SM2", "here", 0, T0 + timedelta(minutes=5))
    found = await store.log.unanswered(T0 + timedelta(minutes=1))
    assert [u.id for u in found] == [old.id]
    await store.log.finish(handled(old.id))
    assert await store.log.unanswered(T0 + timedelta(minutes=1)) == []


async def test_purge_keeps_the_states_it_is_told_to(store: Store) -> None:
    inbound = await store.log.record_inbound(ALEX, "SM1", "stop", 0, T0)
    await store.log.finish(handled(inbound.id, reply=None, state_after="opted_out"))
    other = await store.log.record_inbound("+61491570157", "SM2", "hi", 0, T0)
    await store.log.finish(handled(other.id, phone="+61491570157", state_after="idle"))
    done = await store.log.purge(T0 + THREAD_GAP * 100, keep_states=("opted_out",))
    assert (done.threads, done.messages, done.conversations) == (2, 3, 1)
    assert await store.log.state_of(ALEX) == "opted_out"
