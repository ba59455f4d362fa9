"""What one text costs the database: a first check-in is two short transactions on SQLite
(store the text, taking the phone's turn, reading its conversation and directory and saving
the check-in's write-ahead record with it; the outcome with the turn's release); on PostgreSQL four
statements, each alone in autocommit (storing the text and taking the turn with its read, one
function call, when a turn's connection is free; the write-ahead record; the outcome's writes
as one statement; the unlock); and no more statements than counted here. A
change that adds a round trip to every text shows up here, not in production."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from bot.store import Store, prepared

from .conftest import Clock
from .helpers import ALEX, JORDAN, running_bot

# (statements, transactions); SQLite's count includes each transaction's BEGIN IMMEDIATE.
# PostgreSQL's are single statements in autocommit: no transaction is begun.
FIRST_CHECKIN = {"sqlite": (15, 2), "postgresql": (4, 0)}
STATUS = {"sqlite": (14, 2), "postgresql": (3, 0)}  # STATUS after the check-in: no write-ahead


@contextmanager
def counting(store: Store) -> Iterator[dict[str, int]]:
    """Statements and transactions on every engine of the store (SQLite's per-text path runs
    on a synchronous engine of its own, in its writer thread), and those the per-text path
    runs on the driver (bot.store.prepared)."""
    seen = {"statements": 0, "transactions": 0}

    def statement(*args: Any) -> None:
        seen["statements"] += 1

    def begin(*args: Any) -> None:
        seen["transactions"] += 1

    engines = store.tx.engines()
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", statement)
        sa.event.listen(engine, "begin", begin)
    prepared.observers.append(statement)  # statements run on the driver directly
    try:
        yield seen
    finally:
        prepared.observers.remove(statement)
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", statement)
            sa.event.remove(engine, "begin", begin)


async def test_a_first_check_in_costs_a_few_short_transactions(
    db_url: str, clock: Clock, backend: str
) -> None:
    async with running_bot(db_url, clock) as bot:
        await bot.text(JORDAN, "status")  # warm up: the pool's first connection, caches
        with counting(bot.store) as first:
            assert "A003" in (await bot.text(ALEX, "here") or "")
        with counting(bot.store) as status:
            assert "A003" in (await bot.text(ALEX, "status") or "")
    for seen, (statements, transactions) in (
        (first, FIRST_CHECKIN[backend]),
        (status, STATUS[backend]),
    ):
        assert 0 < seen["statements"] <= statements, seen
        assert seen["transactions"] <= transactions, seen
