"""A phone's turn: one text at a time per phone, across every process on the database.

Two layers, both here: within a process an asyncio lock per phone keeps texts in arrival order
(and keeps waiters from each holding a connection); across processes, PostgreSQL takes a session
advisory lock on a hash of the phone (waited for with `lock_timeout`; the server frees it when
a crashed holder's connection drops), and SQLite, one machine by nature, a lease row in
`phone_locks` that expires after LEASE_SECONDS if its holder died.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool

from ..errors import PhoneBusy
from . import conversations, directory, log
from .log import advisory_key
from .tables import phone_locks

logger = logging.getLogger("checkin_bot.store")

LEASE_SECONDS = 30.0  # longer than any one message's handling; frees a crashed holder's phone
_LEASE_POLL_SECONDS = 0.025
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout


class Turn:
    """One message's turn on a phone's conversation: its reads and writes, on one connection.

    Three short transactions at most, none open while VirtualQ is asked: taking the turn reads
    the conversation and the directory with it; a check-in's write-ahead record; the outcome,
    written with the turn's release.
    """

    def __init__(self, conn: AsyncConnection, phone: str, lock: _Lock) -> None:
        self._conn = conn
        self.phone = phone
        self._lock = lock
        self.saved = conversations.Saved()  # as read when the turn was taken
        self.entries: tuple[directory.Entry, ...] = ()

    async def _read(self) -> None:
        """The conversation and the phone's directory rows (in the taking transaction)."""
        self.saved = await conversations.load(self._conn, self.phone)
        self.entries = await directory.entries_for(self._conn, self.phone)

    async def remember(self, state: str, data: Mapping[str, Any], now: datetime) -> None:
        """Save the conversation now, before the turn ends: what a check-in is about to do,
        so that if this process dies mid-call the next message reconciles it."""
        async with self._conn.begin():
            await conversations.save(self._conn, self.phone, state, data, now)

    async def handled(self, inbound_id: int) -> bool:
        async with self._conn.begin():
            return await log.handled(self._conn, inbound_id)

    async def superseded(self, inbound_id: int) -> bool:
        async with self._conn.begin():
            return await log.superseded(self._conn, inbound_id, self.phone)

    async def finish(self, handled: log.Handled) -> int | None:
        """Write the message's outcome and give the turn back, in one transaction."""
        async with self._conn.begin():
            reply_id = await log.finish(self._conn, handled)
            await self._lock.release_within()
        self._lock.released = True  # committed: on a rollback, `take` releases it
        return reply_id


class Turns:
    """Hands out phones' turns (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}
        # A turn holds a connection (PostgreSQL's advisory lock lives on it) while VirtualQ is
        # asked: at most the pool's size at once, so that a rush waits here, in memory, and
        # storing each inbound text (and the staff pages) always finds a connection in the
        # pool's overflow, instead of everyone timing out on the pool together.
        size = engine.pool.size() if isinstance(engine.pool, QueuePool) else 5
        self._slots = asyncio.Semaphore(max(1, size))

    @asynccontextmanager
    async def take(self, phone: str, wait: float) -> AsyncIterator[Turn]:
        """This phone's conversation to ourselves; PhoneBusy after waiting `wait` seconds for
        another process. The turn's one connection does all of the turn's reads and writes,
        so a busy pool cannot leave lock holders waiting for a second connection."""
        async with self._in_process(phone), self._slots, self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                lock: _Lock = _AdvisoryLock(conn, phone)
            else:
                lock = _Lease(conn, phone)
            turn = Turn(conn, phone, lock)
            await lock.acquire(wait, turn._read)
            try:
                yield turn
            finally:
                if not lock.released:
                    await lock.release()

    @asynccontextmanager
    async def _in_process(self, phone: str) -> AsyncIterator[None]:
        lock, users = self._local.get(phone, (asyncio.Lock(), 0))
        self._local[phone] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._local[phone]
            if users == 1:
                del self._local[phone]
            else:
                self._local[phone] = (lock, users - 1)


class _Lock(Protocol):
    released: bool

    async def acquire(self, wait: float, then: Callable[[], Awaitable[None]]) -> None:
        """Take the lock, and run `then` in the same transaction."""

    async def release(self) -> None: ...

    async def release_within(self) -> None:
        """Release inside the caller's transaction (committed with it)."""


class _AdvisoryLock:
    def __init__(self, conn: AsyncConnection, phone: str) -> None:
        self.conn = conn
        self.key = advisory_key(phone)
        self.released = False

    async def acquire(self, wait: float, then: Callable[[], Awaitable[None]]) -> None:
        try:
            async with self.conn.begin():
                timeout = max(1, int(wait * 1000))
                await self.conn.execute(sa.text(f"SET LOCAL lock_timeout = {timeout}"))
                await self.conn.execute(sa.select(sa.func.pg_advisory_lock(self.key)))
                await then()
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise PhoneBusy(f"waited {wait:g} s for this phone's turn") from exc
            raise

    async def release_within(self) -> None:
        # A session lock: released now, whatever becomes of the transaction; so it is the
        # transaction's last statement.
        await self.conn.execute(sa.select(sa.func.pg_advisory_unlock(self.key)))

    async def release(self) -> None:
        try:
            async with self.conn.begin():
                await self.release_within()
            self.released = True
        except Exception:
            logger.warning("could not release a phone's advisory lock; closing its connection")
            await self.conn.invalidate()  # the server frees a closed session's locks


class _Lease:
    def __init__(self, conn: AsyncConnection, phone: str) -> None:
        self.conn = conn
        self.phone = phone
        self.owner = uuid.uuid4().hex
        self.released = False

    async def acquire(self, wait: float, then: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not await self._try(then):
            if loop.time() >= deadline:
                raise PhoneBusy(f"waited {wait:g} s for this phone's turn")
            await asyncio.sleep(_LEASE_POLL_SECONDS)

    async def _try(self, then: Callable[[], Awaitable[None]]) -> bool:
        now = datetime.now(UTC)  # wall clock: leases are shared between processes
        insert = sqlite_insert(phone_locks).values(
            phone=self.phone, owner=self.owner, expires_at=now + timedelta(seconds=LEASE_SECONDS)
        )
        async with self.conn.begin():
            await self.conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[phone_locks.c.phone],
                    set_=dict(owner=insert.excluded.owner, expires_at=insert.excluded.expires_at),
                    where=phone_locks.c.expires_at < now,
                )
            )
            holder = await self.conn.scalar(
                sa.select(phone_locks.c.owner).where(phone_locks.c.phone == self.phone)
            )
            if holder != self.owner:
                return False
            await then()
        return True

    async def release_within(self) -> None:
        await self.conn.execute(
            phone_locks.delete().where(
                phone_locks.c.phone == self.phone, phone_locks.c.owner == self.owner
            )
        )

    async def release(self) -> None:
        try:
            async with self.conn.begin():
                await self.release_within()
            self.released = True
        except Exception:
            logger.warning("could not release a phone's lease; it expires in %g s", LEASE_SECONDS)
