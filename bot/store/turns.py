"""A phone's turn: one text at a time per phone, across every process on the database.

Two layers, both here: within a process a line per phone keeps texts in the order they arrived
(a text is in it from before it is stored; waiters hold no connection); across processes,
PostgreSQL takes a session advisory lock on a hash of the phone (waited for with
`lock_timeout`; the server frees it when a crashed holder's connection drops), and SQLite, one
machine by nature, a lease row in `phone_locks` that expires after LEASE_SECONDS if its holder
died.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import QueuePool

from ..errors import PhoneBusy
from . import conversations, directory, log
from .engine import Transactions
from .log import advisory_key
from .prepared import Prepared, is_unique_violation
from .tables import conversations as conversations_table
from .tables import directory as directory_table
from .tables import phone_locks

logger = logging.getLogger("checkin_bot.store")

LEASE_SECONDS = 30.0  # longer than any one message's handling; frees a crashed holder's phone
_LEASE_POLL_SECONDS = 0.025
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout

P = ParamSpec("P")
T = TypeVar("T")

# A write-ahead record decided from a text as it is stored (`Arrival.with_turn`): the
# conversation's state, its data, and when.
Ahead = Callable[["Turn", int], tuple[str, Mapping[str, Any], datetime] | None]


class Turn:
    """One message's turn on a phone's conversation: its reads and writes.

    None open while VirtualQ is asked. On SQLite three short transactions at most, two in the
    common case: taking the turn reads the conversation and the directory with it (in the
    transaction that stores the text, when the phone's line was empty, which also saves the
    check-in's write-ahead record when the text is one: `Arrival.with_turn`); else a
    check-in's write-ahead record; the outcome, written with the turn's release. On
    PostgreSQL one: the lock, the reads, the write-ahead record and the unlock are single
    statements in autocommit, and only the outcome is a transaction.
    """

    def __init__(
        self, tx: Transactions, phone: str, conn: AsyncConnection | None, owner: str
    ) -> None:
        self._tx = tx
        self._conn = conn  # PostgreSQL: the connection holding the advisory lock
        self.phone = phone
        self.owner = owner
        self.released = False  # SQLite: the lease row went with the outcome
        self.saved = conversations.Saved()  # as read when the turn was taken
        self.entries: tuple[directory.Entry, ...] = ()

    async def _run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._conn is None:
            return await self._tx.run(fn, *args, **kwargs)
        return await self._tx.run_on(self._conn, fn, *args, **kwargs)

    def _read(self, conn: Connection) -> None:
        """The conversation and the phone's directory rows (in the taking transaction)."""
        self._found(_TURN_READ.execute(conn, {"phone_": self.phone}).all())

    def _found(self, rows: Sequence[Any]) -> None:
        """The turn's read: a row per directory entry of the phone (one without, when it has
        none), each with the phone's conversation (nulls, when it has none)."""
        first = rows[0] if rows else None
        self.saved = conversations.saved(first if first is not None and first.state else None)
        self.entries = tuple(
            directory.Entry(self.phone, r.personal_id, r.name, r.entry_language)
            for r in rows
            if r.personal_id is not None
        )

    async def remember(self, state: str, data: Mapping[str, Any], now: datetime) -> None:
        """Save the conversation now, before the turn ends: what a check-in is about to do,
        so that if this process dies mid-call the next message reconciles it (on
        PostgreSQL one statement in autocommit: committed when it returns)."""
        if self._conn is None:
            await self._tx.run(conversations.save, self.phone, state, data, now)
        else:
            await conversations.save_on_driver(self._conn, self.phone, state, data, now)

    async def handled(self, inbound_id: int) -> bool:
        return await self._run(log.handled, inbound_id)

    async def superseded(self, inbound_id: int) -> bool:
        return await self._run(log.superseded, inbound_id, self.phone)

    async def finish(self, handled: log.Handled) -> int | None:
        """Write the message's outcome. On SQLite the lease row is given back in the same
        transaction. On PostgreSQL the advisory lock is unlocked when the turn ends
        (`Turns.take`), after this has committed: a session lock is free the moment it is
        unlocked, not at commit, so unlocked inside this transaction the next text could
        take the turn and read the conversation as it was before (the two-dyno test caught a
        YES read as still awaiting its answer)."""
        if self._conn is not None:
            if log.finishes_together(handled):  # one statement: atomic, one round trip
                return await log.finish_together(self._conn, handled)
            return await self._run(log.finish, handled)
        reply_id = await self._run(self._finish, handled)
        self.released = True  # committed (on a rollback, `take` releases it)
        return reply_id

    def _finish(self, conn: Connection, handled: log.Handled) -> int | None:
        reply_id = log.finish(conn, handled)
        _release(conn, self.phone, self.owner)
        return reply_id


class Turns:
    """Hands out phones' turns (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, tx: Transactions) -> None:
        self.engine = engine
        self.tx = tx
        self._lines: dict[str, deque[Arrival]] = {}  # per phone, in arrival order
        # On PostgreSQL a turn holds a connection (its advisory lock lives on it) while
        # VirtualQ is asked: at most half the pool at once (DATABASE_POOL_SIZE), so that a
        # rush waits here, in memory, and storing each inbound text (and the staff pages)
        # always finds a connection in the other half, instead of everyone timing out on
        # the pool.
        size = engine.pool.size() // 2 if isinstance(engine.pool, QueuePool) else 5
        self._slots = asyncio.Semaphore(max(1, size))

    @asynccontextmanager
    async def take(self, phone: str, wait: float) -> AsyncIterator[Turn]:
        """This phone's conversation to ourselves; PhoneBusy after waiting `wait` seconds for
        another process."""
        async with self.arrive(phone) as arrival, arrival.turn(wait) as turn:
            yield turn

    @asynccontextmanager
    async def arrive(self, phone: str) -> AsyncIterator[Arrival]:
        """A text from `phone` arriving: from now on in the phone's line in this process, and
        its turn (`Arrival.turn`) comes after every text of the phone that arrived before it,
        however long their storing took.

        On SQLite, a text arriving at an empty line has the in-process turn at once, and
        `Arrival.with_turn` takes the phone's lease (and reads its conversation) in the
        transaction that stores the text: one transaction a text fewer, in the common case."""
        line = self._lines.setdefault(phone, deque())
        arrival = Arrival(self, phone)
        line.append(arrival)
        arrival.holding = len(line) == 1
        try:
            if arrival.holding and not self.tx.threaded and not self._slots.locked():
                # PostgreSQL: a turn's connection now, to store the text on and try the
                # phone's turn with it (`Arrival.taking`), when one is free at once; else
                # the text is stored on any connection and the turn taken after.
                await self._slots.acquire()  # not locked: returns without waiting
                try:
                    arrival.taking = _Taking(await self.engine.connect(), phone)
                except BaseException:
                    self._slots.release()
                    raise
            yield arrival
        finally:
            try:
                if arrival.leased is not None and not arrival.leased.released:
                    await self._give_back(arrival.leased)
                if arrival.taking is not None:
                    await self._hand_back(arrival.taking)
            finally:
                first = line[0] is arrival
                line.remove(arrival)
                if not line:
                    del self._lines[phone]
                elif first:
                    line[0].next_up()

    async def _hand_back(self, taking: _Taking) -> None:
        """PostgreSQL: the connection a text was stored on, back to the pool, with the
        phone's lock unlocked if it is still held (a text over the rate limit, say, whose
        turn was taken with it and never used), and closed if that is not known."""
        try:
            if taking.unsure:
                await taking.conn.invalidate()  # the server frees a closed session's locks
            elif taking.locked:
                await _advisory_unlock(taking.conn, taking.phone)
        finally:
            try:
                await taking.conn.close()
            finally:
                self._slots.release()

    async def _give_back(self, turn: Turn) -> None:
        try:
            await self.tx.run(_release, turn.phone, turn.owner)
        except Exception:
            logger.warning("could not release a phone's lease; it expires in %gs", LEASE_SECONDS)

    @asynccontextmanager
    async def _taken(self, arrival: Arrival, wait: float) -> AsyncIterator[Turn]:
        """The phone's turn, for an arrival holding the in-process one."""
        if self.tx.threaded:  # SQLite: a lease row; no connection held between writes
            turn = arrival.leased
            if turn is None:
                # Ours to give back from now on: a wait cancelled just after the lease was
                # taken still gives it back (a lease never taken is a DELETE of nothing).
                turn = arrival.leased = Turn(self.tx, arrival.phone, None, uuid.uuid4().hex)
                await self._lease(turn, wait)
            yield turn  # given back by `arrive`, unless the outcome's transaction did
            return
        taking = arrival.taking
        if taking is not None:  # the connection the text was stored on (`Turns.arrive`)
            turn = Turn(self.tx, arrival.phone, taking.conn, "")
            if taking.read is not None:  # taken as the text was stored
                turn._found(taking.read)
            else:
                await self._advisory_lock(turn, taking.conn, wait)
                taking.locked = True
            try:
                yield turn
            finally:  # after the outcome's commit (see Turn.finish)
                taking.locked = False
                await _advisory_unlock(taking.conn, arrival.phone)
            return
        async with self._slots, self.engine.connect() as conn:
            turn = Turn(self.tx, arrival.phone, conn, "")
            await self._advisory_lock(turn, conn, wait)
            try:
                yield turn
            finally:  # after the outcome's commit (see Turn.finish)
                await _advisory_unlock(conn, arrival.phone)

    async def _lease(self, turn: Turn, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not await self.tx.run(_take_lease, turn):
            if loop.time() >= deadline:
                raise PhoneBusy(f"waited {wait:g} s for this phone's turn")
            await asyncio.sleep(_LEASE_POLL_SECONDS)

    async def _advisory_lock(self, turn: Turn, conn: AsyncConnection, wait: float) -> None:
        """Lock the phone's key and read its conversation and directory rows, outside any
        transaction, in one function call (migration 0011): the read is a statement of its
        own after the lock, so it sees what the turn before this one committed."""
        fairy = await conn.get_raw_connection()
        timeout_ms = max(1, int(wait * 1000))
        try:
            if fairy.info.get("lock_timeout") != timeout_ms:
                # For the session: no statement on a connection that takes turns waits for a
                # lock longer than a turn does (set once per connection, not per text).
                await _LOCK_TIMEOUT.execute_on_driver(conn, {"ms": str(timeout_ms)})
                fairy.info["lock_timeout"] = timeout_ms
            key = advisory_key(turn.phone)
            turn._found(
                await _TAKE_TURN.execute_on_driver(conn, {"key": key, "phone_": turn.phone})
            )
        except BaseException as exc:  # a cancelled wait too: it may have got the lock
            if getattr(exc, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise PhoneBusy(f"waited {wait:g} s for this phone's turn") from exc
            # The lock may be held (a session lock outlives its failed statement): closing
            # the connection frees it.
            await conn.invalidate()
            raise


class Arrival:
    """A text in its phone's line in this process (see `Turns.arrive`)."""

    def __init__(self, turns: Turns, phone: str) -> None:
        self._turns = turns
        self.phone = phone
        self.holding = False  # first in the line: the in-process turn is this text's
        self._waiting: asyncio.Future[None] | None = None
        self.leased: Turn | None = None  # SQLite: the turn whose lease row is ours
        # PostgreSQL: a turn's connection, checked out as the text arrived first in its line,
        # to store it on and try its turn in the same call (bot.store.log: `record_inbound`'s
        # `taking`); None when storing took any connection.
        self.taking: _Taking | None = None

    def next_up(self) -> None:
        """The texts before this one have left the line."""
        self.holding = True
        if self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(None)

    def with_turn(self, ahead: Ahead | None = None) -> Callable[[Connection, int], None] | None:
        """What the transaction storing the text also runs to take the phone's lease, when
        this text is first in the line on SQLite (else None: the turn comes later).

        With the lease taken, `ahead(turn, recent)` (`recent`: the phone's texts in the last
        minute, this one included) may return a write-ahead record, saved as `Turn.remember`
        saves it, in this transaction: a check-in decided from the text and the conversation
        just read is on disk, with the text, before VirtualQ is asked, and the commit of a
        transaction of its own is saved. It runs in the writer thread, holding the write
        lock: pure work on what the turn read, no I/O. Should it raise, the text is stored
        anyway and the turn goes on without it."""
        if not self.holding or not self._turns.tx.threaded or self.leased is not None:
            return None
        turn = Turn(self._turns.tx, self.phone, None, uuid.uuid4().hex)

        def take(conn: Connection, recent: int) -> None:
            if not _take_lease(conn, turn):
                return
            self.leased = turn  # set in the writer thread, read after the commit
            if ahead is None:
                return
            try:
                record = ahead(turn, recent)
            except Exception:
                logger.exception("deciding a text as it was stored failed; decided later")
                return
            if record is not None:
                conversations.save(conn, self.phone, *record)

        return take

    @asynccontextmanager
    async def turn(self, wait: float) -> AsyncIterator[Turn]:
        """The phone's turn, after the texts before this one; PhoneBusy after waiting `wait`
        seconds for another process."""
        if not self.holding:
            self._waiting = asyncio.get_running_loop().create_future()
            await self._waiting
        async with self._turns._taken(self, wait) as turn:
            yield turn


class _Taking:
    """PostgreSQL: a connection a text is stored on, trying its phone's turn in the same call
    (bot.store.log.Taking); the lock, when the call took it, stays on the connection until the
    turn ends, or until `Turns.arrive` hands the connection back."""

    def __init__(self, conn: AsyncConnection, phone: str) -> None:
        self.conn = conn
        self.phone = phone
        self.read: Sequence[Any] | None = None  # the turn's read, when taken with the text
        self.locked = False
        self.unsure = False  # the storing call failed: whether the lock is held is not known

    async def storing(self, call: Awaitable[list[Any]]) -> list[Any]:
        try:
            return await call
        except BaseException as exc:
            # A repeated MessageSid fails before the lock is tried; anything else (a
            # cancellation, a dropped connection) may have come after it.
            self.unsure = not is_unique_violation(exc)
            raise

    def took(self, rows: Sequence[Any] | None) -> None:
        self.read = rows
        self.locked = rows is not None


# --- the turn's read: the conversation and the directory in one statement ----------------------

_asked = sa.select(sa.bindparam("phone_", type_=sa.String).label("phone")).subquery("asked")
_TURN_READ = Prepared(
    sa.select(
        conversations_table.c.state,
        conversations_table.c.data,
        conversations_table.c.language,
        conversations_table.c.language_source,
        directory_table.c.personal_id,
        directory_table.c.name,
        directory_table.c.language.label("entry_language"),
    )
    .select_from(
        _asked.outerjoin(
            conversations_table, conversations_table.c.phone == _asked.c.phone
        ).outerjoin(directory_table, directory_table.c.phone == _asked.c.phone)
    )
    .order_by(directory_table.c.id)
)


# --- SQLite: a lease row ------------------------------------------------------------------------

_LEASE = sqlite_insert(phone_locks).values(
    phone=sa.bindparam("phone_"), owner=sa.bindparam("owner_"), expires_at=sa.bindparam("until")
)
_TAKE_LEASE = Prepared(
    _LEASE.on_conflict_do_update(
        index_elements=[phone_locks.c.phone],
        set_=dict(owner=_LEASE.excluded.owner, expires_at=_LEASE.excluded.expires_at),
        where=phone_locks.c.expires_at < sa.bindparam("now"),
    ).returning(phone_locks.c.owner)  # a row only when inserted or taken over: ours
)
_RELEASE = Prepared(
    phone_locks.delete().where(
        phone_locks.c.phone == sa.bindparam("phone_"),
        phone_locks.c.owner == sa.bindparam("owner_"),
    )
)


def _take_lease(conn: Connection, turn: Turn) -> bool:
    """Take the phone's lease if it is free or expired; if taken, read the conversation."""
    now = datetime.now(UTC)  # wall clock: leases are shared between processes
    until = now + timedelta(seconds=LEASE_SECONDS)
    taken = _TAKE_LEASE.execute(
        conn, {"phone_": turn.phone, "owner_": turn.owner, "until": until, "now": now}
    ).scalar()
    if taken != turn.owner:  # None: another's lease, unexpired
        return False
    turn._read(conn)
    return True


def _release(conn: Connection, phone: str, owner: str) -> None:
    """SQLite: give the lease row back (PostgreSQL unlocks with `_advisory_unlock`)."""
    _RELEASE.execute(conn, {"phone_": phone, "owner_": owner})


# --- PostgreSQL: a session advisory lock ---------------------------------------------------------


# SET lock_timeout, as a function of a parameter (for the session).
_LOCK_TIMEOUT = Prepared(
    sa.select(sa.func.set_config("lock_timeout", sa.bindparam("ms", type_=sa.String), False))
)
_taken = sa.func.checkin_bot_take_turn(
    sa.bindparam("key", type_=sa.BigInteger), sa.bindparam("phone_", type_=sa.String)
).table_valued(
    *(
        sa.column(column.key, column.type)
        for column in _TURN_READ.statement.selected_columns  # type: ignore[attr-defined]
    )
)
# PostgreSQL: the lock and `_TURN_READ` in one call (Turns._advisory_lock).
_TAKE_TURN = Prepared(sa.select(*_taken.c))
_ADVISORY_UNLOCK = Prepared(
    sa.select(sa.func.pg_advisory_unlock(sa.bindparam("key", type_=sa.BigInteger)))
)


async def _advisory_unlock(conn: AsyncConnection, phone: str) -> None:
    """Unlock, outside any transaction: one round trip, after the outcome's commit."""
    try:
        await _ADVISORY_UNLOCK.execute_on_driver(conn, {"key": advisory_key(phone)})
    except Exception:
        logger.warning("could not release a phone's advisory lock; closing its connection")
        await conn.invalidate()  # the server frees a closed session's locks
