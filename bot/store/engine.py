"""Database engines from a PaaS-style DATABASE_URL: SQLite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

P = ParamSpec("P")
T = TypeVar("T")


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
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (staff pages) work while the webhook writes; wait, don't fail. The
    # default synchronous=FULL stays: in WAL mode every commit is fsynced, so a committed text
    # survives a crash of the process and of the machine.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Transactions:
    """Runs a function of a (synchronous) connection in one transaction: the per-text path's
    reads and writes, each a handful of prepared statements.

    On SQLite, in the store's one writer thread, on a plain sqlite3 connection: a transaction
    is one hop to that thread instead of three or four per statement through aiosqlite, and
    the process's transactions never wait on each other in SQLite's busy handler (they queue
    for the thread; other processes' writers are waited for at BEGIN IMMEDIATE). On
    PostgreSQL, on an async connection through `run_sync` (asyncpg underneath), the given
    one (a phone's turn holds one) or one from the pool.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: sa.Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if engine.dialect.name == "sqlite":
            self._sync = sa.create_engine(
                engine.url.set(drivername="sqlite+pysqlite"),
                poolclass=QueuePool,
                pool_size=1,
                max_overflow=0,
                connect_args={"check_same_thread": False},
            )
            sa.event.listen(self._sync, "connect", _sqlite_pragmas)
            sa.event.listen(self._sync, "connect", _own_transactions)
            sa.event.listen(self._sync, "begin", _begin_immediate)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")

    def engines(self) -> list[sa.Engine]:
        """Every engine statements may run on (for counting them)."""
        return [self.engine.sync_engine, *([self._sync] if self._sync is not None else [])]

    @property
    def threaded(self) -> bool:
        """Whether transactions run in the writer thread (SQLite), needing no connection."""
        return self._sync is not None

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`fn(connection, *args)` in a transaction of its own, committed on return."""
        if self._sync is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, self._in_thread, fn, args, kwargs)
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def run_on(
        self,
        conn: AsyncConnection,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """The same, on a connection the caller holds (PostgreSQL)."""
        async with conn.begin():
            return await conn.run_sync(fn, *args, **kwargs)

    def _in_thread(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        assert self._sync is not None
        with self._sync.begin() as conn:
            return fn(conn, *args, **kwargs)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        if self._thread is not None:
            self._thread.shutdown(wait=True)


def _own_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own BEGIN comes late (before the first write) and deferred: SQLAlchemy
    # emits ours instead (_begin_immediate).
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: Connection) -> None:
    # The write lock at BEGIN: a transaction that reads, then writes, cannot find at its first
    # write that another process wrote in between (which SQLite answers with SQLITE_BUSY at
    # once, whatever busy_timeout says).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


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
