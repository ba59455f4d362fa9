"""The log: texts stored first and once, delivery statuses that never go back, a message's
outcome in one write, and retention."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.replies import ReplyKey as K
from bot.store import Store, open_store
from bot.store.log import THREAD_GAP, Call, Handled, finish_together, finishes_together
from bot.store.staff import StaffStore
from bot.store.tables import (
    attention,
    login_failures,
    notifications,
    staff_sessions,
    threads,
    watches,
)
from bot.threads import ThreadOutcome, advance, advancing

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


async def threads_of(store: Store, phone: str) -> list[dict[str, object]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.select(threads).where(threads.c.phone == phone))
        return [dict(r) for r in rows.mappings()]


@pytest.fixture
async def store(db_url: str) -> Store:
    async with open_store(db_url) as opened:
        yield opened  # type: ignore[misc]


async def test_a_repeated_message_sid_is_stored_once(store: Store) -> None:
    first = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    again = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0 + timedelta(seconds=5))
    assert not first.duplicate and again.duplicate and again.id == first.id
    assert [m["body"] for m in await transcript(store, ALEX)] == ["here"]


async def test_texts_find_their_thread_and_count_the_phones_recent_ones(store: Store) -> None:
    """Each text goes into its phone's latest thread while the gap since its last text is at
    most THREAD_GAP, else into a new one, and counts the phone's texts since `recent_since`;
    on PostgreSQL the function call (migration 0011) and the transaction (taken when a `then`
    is given) store the same way, duplicates included."""
    # (minutes after T0, MessageSid): a repeat, texts within the gap, the gap exactly, past it
    gap = THREAD_GAP.total_seconds() / 60
    texts = [(0, "SM1"), (0.5, "SM1"), (1, "SM2"), (1 + gap, "SM3"), (2 + 2 * gap, "SM4")]
    texts += [(2.5 + 2 * gap, "SM5"), (3 + 2 * gap, "SM6")]
    seen: dict[bool, list[tuple[int, bool, int]]] = {}
    for generic, phone in ((False, ALEX), (True, "+15550100999")):
        first_thread = None
        stored = seen[generic] = []
        for minutes, sid in texts:
            at = T0 + timedelta(minutes=minutes)
            then = (lambda conn, recent: None) if generic else None
            inbound = await store.log.record_inbound(
                phone,
                f"{sid}-{generic}",
                "hi",
                0,
                at,
                recent_since=at - timedelta(minutes=1),
                then=then,
            )
            if inbound.duplicate:
                stored.append((-1, True, 0))
                continue
            first_thread = first_thread or inbound.thread_id
            assert inbound.thread_id is not None
            stored.append((inbound.thread_id - first_thread, False, inbound.recent))
    assert seen[False] == seen[True]
    threads_seen = [t for t, duplicate, _ in seen[False] if not duplicate]
    assert threads_seen == [threads_seen[0]] * 3 + [threads_seen[3]] * 3  # the gap itself goes on
    assert [r for _, _, r in seen[False]] == [1, 0, 2, 1, 1, 2, 3]
    counts = {t["id"]: t["message_count"] for t in await threads_of(store, ALEX)}
    assert list(counts.values()) == [3, 3]


async def test_first_texts_at_once_open_one_thread(store: Store) -> None:
    at = [T0 + timedelta(milliseconds=n) for n in range(8)]
    stored = await asyncio.gather(
        *(store.log.record_inbound(ALEX, f"SM{n}", "here", 0, t) for n, t in enumerate(at))
    )
    assert len({s.thread_id for s in stored}) == 1
    [thread] = await threads_of(store, ALEX)
    assert thread["message_count"] == len(at)


async def test_a_message_outcome_is_one_write_with_the_rule_passed_in(store: Store) -> None:
    inbound = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    call = Call("checkin", {"PersonalId": "S1"}, 200, 12, "ok", "{}", None, T0)
    # The rule as a table: the thread's stored outcome ("other", as new) picks the row.
    advance = {"other": ("checked_in", True), "asked": ("confirmed", True), None: ("x", False)}
    at = T0 + timedelta(seconds=3)
    reply_id = await store.log.finish(handled(inbound.id, calls=(call,), advance=advance, now=at))
    [text, reply] = await transcript(store, ALEX)
    assert text["handled_at"] is not None and text["state_after"] == "checked_in"
    assert reply["id"] == reply_id and reply["reply_to"] == inbound.id
    assert [c["operation"] for c in text["calls"]] == ["checkin"]
    assert await store.log.state_of(ALEX) == "checked_in"
    [thread] = await threads_of(store, ALEX)
    assert (thread["outcome"], thread["ticket_at"], thread["last_at"]) == ("checked_in", at, at)
    assert thread["message_count"] == 2


STORED = [*(o.value for o in ThreadOutcome), "a value no longer known"]
REPLIES = [K.CHECKED_IN, K.CONFIRM_EARLY, K.LEFT_QUEUE, K.DECLINED, K.STATUS, None]


async def test_the_thread_moves_on_from_the_outcome_it_has_stored(store: Store) -> None:
    """The database applies the rule's table to the outcome the thread has when the outcome
    is written (no read before), for every outcome a thread can have stored and replies of
    each kind, and keeps the later of two clocks' last_at; as `advance` says, on both paths
    of PostgreSQL (one statement in autocommit, and the transaction)."""
    paths = [False, True] if store.engine.dialect.name == "postgresql" else [False]
    earlier, later = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    phones = iter(f"+1555010{n:04d}" for n in range(1000))
    expected: dict[str, tuple[str, bool]] = {}
    for together, stored, reply in itertools.product(paths, STORED, REPLIES):
        phone = next(phones)
        inbound = await store.log.record_inbound(phone, None, "hi", 0, T0)
        # The thread as another text left it: this outcome, a ticket long ago, its last
        # text (by another process's clock) after this one's `now`.
        async with store.engine.begin() as conn:
            await conn.execute(
                threads.update()
                .where(threads.c.id == inbound.thread_id)
                .values(outcome=stored, ticket_at=T0, last_at=later)
            )
        table = advancing(reply, opted_out=False)
        h = handled(
            inbound.id,
            phone=phone,
            reply=None if reply is None else "ok",
            advance=table,
            thread_id=inbound.thread_id,
            now=earlier,
        )
        if together:
            assert finishes_together(h)
            async with store.engine.connect() as conn:
                await finish_together(conn, h)
        else:
            await store.log.finish(h)
        expected[phone] = table[stored if stored in table else None]
    for phone, (outcome, ticketed) in expected.items():
        [thread] = await threads_of(store, phone)
        assert thread["outcome"] == outcome, (phone, thread)
        assert thread["ticket_at"] == (earlier if ticketed else T0), (phone, thread)
        assert thread["last_at"] == later
    current = advance(ThreadOutcome.OTHER, K.CHECKED_IN, opted_out=False)
    assert advancing(K.CHECKED_IN, opted_out=False)["other"] == (current.value, True)


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


async def test_purge_leaves_nothing_of_a_purged_conversation_behind(store: Store) -> None:
    """The texts the bot queued for a customer (their phone and words), the case it watched,
    the conversation's 'handled' mark, and who logged in from where: all older than the
    retention, all gone with the conversation. A text still queued, and a case still open,
    stay."""
    inbound = await store.log.record_inbound(ALEX, "SM1", "here", 0, T0)
    await store.log.finish(handled(inbound.id))
    thread_id = inbound.thread_id
    staff = StaffStore(store.engine, store.tx)
    await staff.mark_handled(thread_id, "frontdesk", T0)
    await staff.start_session("h" * 64, "frontdesk", "c" * 32, "203.0.113.9", T0)
    await staff.failed_login(["addr:203.0.113.9"], T0)
    note = dict(phone=ALEX, thread_id=thread_id, priority=1, created_at=T0)
    watch = dict(phone=ALEX, thread_id=thread_id, ticket="A1", created_at=T0)
    async with store.tx.begin() as conn:
        await conn.execute(
            notifications.insert(),
            [
                note | dict(key="staff:1", kind="staff", body="Alex, come in", status="unsent"),
                note | dict(key="called:1", kind="called", body="your turn", status="sent"),
                note | dict(key="staff:2", kind="staff", body="still queued", status="queued"),
            ],
        )
        await conn.execute(
            watches.insert(),
            [
                watch | dict(case_id=1, done_at=T0, outcome="served"),
                watch | dict(case_id=2, done_at=None, outcome=None),
            ],
        )
    done = await store.log.purge(T0 + timedelta(days=2), keep_states=("opted_out",), batch=1)
    assert done.threads == 1
    async with store.engine.connect() as conn:
        left = {
            table.name: (await conn.execute(sa.select(table))).mappings().all()
            for table in (notifications, watches, attention, staff_sessions, login_failures)
        }
    assert [n["body"] for n in left["notifications"]] == ["still queued"]
    assert [w["case_id"] for w in left["watches"]] == [2]
    assert left["attention"] == left["staff_sessions"] == left["login_failures"] == []
