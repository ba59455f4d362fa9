"""A phone's turn: one message at a time per phone, across connections (as across processes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa

from bot.errors import PhoneBusy
from bot.store import Store, conversations, open_store
from bot.store.log import advisory_key
from bot.store.tables import messages, phone_locks

from .helpers import ALEX, JORDAN, PATELS, STRANGER, seed_directory


async def test_a_turn_waits_for_the_one_before_it_and_only_for_that_phone(db_url: str) -> None:
    async with open_store(db_url) as first, open_store(db_url) as second:
        # Two engines: as far as the database can tell, two processes.
        async with first.turns.take(ALEX, wait=5):
            with pytest.raises(PhoneBusy):
                async with second.turns.take(ALEX, wait=0.3):
                    pass
            async with second.turns.take(JORDAN, wait=0.3):
                pass  # another phone is not held up

        order: list[str] = []

        async def take(store_name: str, store: object, hold: float) -> None:
            async with store.turns.take(ALEX, wait=5):
                order.append(f"{store_name} in")
                await asyncio.sleep(hold)
                order.append(f"{store_name} out")

        await asyncio.gather(take("a", first, 0.3), take("b", second, 0))
        assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_a_turn_whose_holder_died_is_taken_back(db_url: str, backend: str) -> None:
    async with open_store(db_url) as store:
        if backend == "sqlite":
            # A process that crashed mid-message leaves its lease row behind, expired.
            async with store.engine.begin() as conn:
                await conn.execute(
                    phone_locks.insert().values(
                        phone=ALEX, owner="dead", expires_at=datetime.now(UTC) - timedelta(1)
                    )
                )
            async with store.turns.take(ALEX, wait=1):
                pass
        else:
            # Another process holds ALEX's lock, then dies: the server frees it at once.
            other = await asyncpg.connect(db_url)
            await other.execute("SELECT pg_advisory_lock($1)", advisory_key(ALEX))
            asyncio.get_running_loop().call_later(0.3, other.terminate)
            async with store.turns.take(ALEX, wait=5):
                pass
            assert other.is_closed()


async def test_a_text_is_not_let_ahead_of_one_that_arrived_before_it(db_url: str) -> None:
    """A text is in its phone's line from the moment it arrives, while it is being stored: a
    later text of the phone, finding the turn free, still waits for it."""
    async with open_store(db_url) as store:
        order: list[str] = []
        first_stored = asyncio.Event()

        async def text(name: str, storing: asyncio.Event | None = None) -> None:
            async with store.turns.arrive(ALEX) as arrival:
                if storing is not None:
                    await storing.wait()  # its text still being stored
                async with arrival.turn(5):
                    order.append(name)

        async with store.turns.take(ALEX, wait=5):
            first = asyncio.create_task(text("first", first_stored))
            await asyncio.sleep(0.05)
        second = asyncio.create_task(text("second"))  # the turn is free; "first" is in line
        await asyncio.sleep(0.1)
        assert order == []
        first_stored.set()
        await asyncio.gather(first, second)
        assert order == ["first", "second"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_lone_text_takes_its_turn_as_it_is_stored(db_url: str) -> None:
    """SQLite: nobody else in the phone's line, so the transaction that stores the text also
    takes the phone's lease and reads its conversation; the turn is that one."""
    async with open_store(db_url) as store:
        async with store.turns.arrive(ALEX) as arrival:
            then = arrival.with_turn()
            assert then is not None
            inbound = await store.log.record_inbound(ALEX, "SM1", "here", 0, NOW, then=then)
            assert arrival.leased is not None
            assert await _lease_holder(store) == arrival.leased.owner
            async with arrival.turn(0.1) as turn:
                assert turn is arrival.leased and turn.saved.state == "idle"
        assert inbound.id and await _lease_holder(store) is None  # given back


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_lone_text_whose_phone_another_process_holds_is_stored_and_waits(
    db_url: str,
) -> None:
    async with open_store(db_url) as store, open_store(db_url) as elsewhere:
        async with elsewhere.turns.take(ALEX, wait=1):
            async with store.turns.arrive(ALEX) as arrival:
                then = arrival.with_turn()
                inbound = await store.log.record_inbound(ALEX, "SM2", "here", 0, NOW, then=then)
                assert arrival.leased is None  # the other process's lease stood
                with pytest.raises(PhoneBusy):
                    async with arrival.turn(0.2):
                        pass
            assert await _lease_holder(store) is not None  # still the other's
        async with store.engine.connect() as conn:
            stored = await conn.scalar(
                sa.select(messages.c.body).where(messages.c.id == inbound.id)
            )
        assert stored == "here"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lone_text_takes_its_turn_in_the_call_that_stores_it(db_url: str) -> None:
    """PostgreSQL: the text is stored on a turn's connection, and the same call takes the
    phone's advisory lock and reads its conversation; the turn is on that connection, and the
    lock is given back when the turn ends."""
    async with open_store(db_url) as store:
        await store.tx.run(conversations.save, ALEX, "awaiting_arrival", {"n": 1}, NOW)
        async with store.turns.arrive(ALEX) as arrival:
            assert arrival.with_turn() is None and arrival.taking is not None
            inbound = await store.log.record_inbound(
                ALEX, "SM1", "here", 0, NOW, taking=arrival.taking
            )
            assert arrival.taking.read is not None and await _advisory_locks(db_url) == 1
            async with arrival.turn(0.1) as turn:
                assert turn.saved.state == "awaiting_arrival" and turn.saved.data == {"n": 1}
            assert await _advisory_locks(db_url) == 0  # unlocked when the turn ended
        assert inbound.id and not inbound.duplicate


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_turn_taken_with_its_text_and_never_used_is_given_back(db_url: str) -> None:
    """A text over the rate limit takes the turn as it is stored and never uses it: the lock
    goes when the text leaves the line, and the connection back to the pool."""
    async with open_store(db_url) as store:
        async with store.turns.arrive(ALEX) as arrival:
            await store.log.record_inbound(ALEX, "SM1", "here", 0, NOW, taking=arrival.taking)
            assert await _advisory_locks(db_url) == 1
        assert await _advisory_locks(db_url) == 0
        async with store.turns.take(ALEX, wait=0.5) as turn:  # free for the next text
            assert turn.saved.state == "idle"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_lone_text_whose_phone_another_session_holds_is_stored_and_waits(
    db_url: str,
) -> None:
    """The call that stores the text does not wait for the lock: it stores the text, finds
    the phone's turn held elsewhere, and the text waits for it as any other would."""
    async with open_store(db_url) as store, open_store(db_url) as elsewhere:
        async with elsewhere.turns.take(ALEX, wait=1):
            async with store.turns.arrive(ALEX) as arrival:
                inbound = await store.log.record_inbound(
                    ALEX, "SM2", "here", 0, NOW, taking=arrival.taking
                )
                assert arrival.taking is not None and arrival.taking.read is None
                with pytest.raises(PhoneBusy):
                    async with arrival.turn(0.2):
                        pass
            assert await _advisory_locks(db_url) == 1  # still the other's
        assert await _advisory_locks(db_url) == 0
        async with store.engine.connect() as conn:
            stored = await conn.scalar(
                sa.select(messages.c.body).where(messages.c.id == inbound.id)
            )
        assert stored == "here"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_repeated_text_stored_with_its_turn_is_flagged_and_takes_no_lock(
    db_url: str,
) -> None:
    async with open_store(db_url) as store:
        await store.log.record_inbound(ALEX, "SM3", "here", 0, NOW)
        async with store.turns.arrive(ALEX) as arrival:
            again = await store.log.record_inbound(
                ALEX, "SM3", "here", 0, NOW, taking=arrival.taking
            )
            assert again.duplicate and await _advisory_locks(db_url) == 0
            assert arrival.taking is not None and not arrival.taking.unsure


async def _advisory_locks(db_url: str) -> int:
    """Advisory locks held on the phone's turn key, by any session."""
    conn = await asyncpg.connect(db_url)
    try:
        key = advisory_key(ALEX)
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND ((classid::bigint << 32) | objid::bigint) = $1",
            key,
        )
        return int(count)
    finally:
        await conn.close()


NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


async def _lease_holder(store: Store) -> str | None:
    async with store.engine.connect() as conn:
        return await conn.scalar(sa.select(phone_locks.c.owner).where(phone_locks.c.phone == ALEX))


async def test_a_turn_reads_the_conversation_and_every_directory_entry_at_once(
    db_url: str,
) -> None:
    """The turn's one read: a shared phone's customers in the order they were imported, with
    the conversation as saved; a phone without either reads as new."""
    await seed_directory(db_url)
    async with open_store(db_url) as store:
        await store.tx.run(conversations.save, PATELS, "choosing", {"n": 2}, NOW, ("hi", "chosen"))
        async with store.turns.take(PATELS, wait=1) as turn:
            assert turn.saved == conversations.Saved("choosing", {"n": 2}, "hi", "chosen")
            assert [e.personal_id for e in turn.entries] == [
                e.personal_id for e in await store.directory.entries(PATELS)
            ]
            assert len(turn.entries) == 2 and all(e.phone == PATELS for e in turn.entries)
        async with store.turns.take(STRANGER, wait=1) as turn:
            assert turn.saved == conversations.Saved() and turn.entries == ()
