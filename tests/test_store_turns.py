"""A phone's turn: one message at a time per phone, across connections (as across processes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bot.errors import PhoneBusy
from bot.store import open_store
from bot.store.log import advisory_key
from bot.store.tables import phone_locks

from .helpers import ALEX, JORDAN


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
