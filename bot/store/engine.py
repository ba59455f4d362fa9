"""Database engines from a PaaS-style DATABASE_URL: SQLite (default) or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(url: str) -> str:
    """A SQLAlchemy async URL from a PaaS-style one (sqlite:///f.db, postgres://…)."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def create_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    # A message's turn holds one connection (bot.store.turns): cap the pool, and when every
    # connection is busy fail after 5 s rather than queue until Twilio has given up.
    options: dict[str, Any] = dict(pool_size=pool_size, max_overflow=pool_size, pool_timeout=5)
    if make_url(async_url(url)).get_backend_name() == "postgresql":
        # Survive the PaaS dropping idle connections; give up on an unreachable server in 5 s
        # (asyncpg would wait a minute).
        options |= dict(pool_pre_ping=True, connect_args={"timeout": 5})
    engine = create_async_engine(async_url(url), **options)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers (staff pages) work while the webhook writes; wait, don't fail.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


@asynccontextmanager
async def engine_at(url: str, pool_size: int = 5) -> AsyncIterator[AsyncEngine]:
    """An engine on `url`, disposed of on exit (for schema work and checks)."""
    engine = create_engine(url, pool_size)
    try:
        yield engine
    finally:
        await engine.dispose()


def describe(engine: AsyncEngine) -> str:
    """The engine's URL for people: the password hidden."""
    return engine.url.render_as_string(hide_password=True)
