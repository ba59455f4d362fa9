"""Persistence, one concept per module, on SQLite (default) or PostgreSQL:

- `tables`: every table (add one there, then a migration); `engine`: engines from DATABASE_URL;
  `schema`: migrations and the schema version check;
- `log`: texts in and out, threads (visits), VirtualQ calls, delivery status, purge;
- `conversations`: each phone's conversation state; `directory`: phone -> customers;
- `turns`: one text at a time per phone, across processes.

No business rule lives here: callers pass in what to decide (e.g. `log.Handled.advance`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from . import schema
from .directory import Directory
from .engine import Transactions, create_engine, engine_at
from .log import Log
from .turns import Turns


class Store:
    """The database, by concept: `log`, `directory`, `turns` (and `engine` for queries)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tx = Transactions(engine)  # the per-text path's transactions
        self.log = Log(engine, self.tx)
        self.directory = Directory(engine)
        self.turns = Turns(engine, self.tx)

    async def close(self) -> None:
        await asyncio.to_thread(self.tx.close)
        await self.engine.dispose()


def store_at(url: str, pool_size: int = 5) -> Store:
    """A store on a DATABASE_URL (not connected until first used)."""
    return Store(create_engine(url, pool_size))


@asynccontextmanager
async def open_store(
    url: str, *, migrate: bool = False, pool_size: int = 5
) -> AsyncIterator[Store]:
    """A store on `url`, closed on exit. SchemaError unless the schema is this release's;
    `migrate=True` upgrades it first (the demo and chat do; production runs `migrate`)."""
    async with engine_at(url, pool_size) as engine:
        if migrate:
            await schema.migrate(engine)
        await schema.check(engine)
        store = Store(engine)
        try:
            yield store
        finally:
            await asyncio.to_thread(store.tx.close)


__all__ = ["Store", "open_store", "store_at", "engine_at", "create_engine", "schema"]
