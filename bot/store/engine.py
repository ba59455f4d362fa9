"""Database engines from a PaaS-style DATABASE_URL: SQLite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

try:
    import fcntl
except ImportError:  # Windows: no turnstile (one worker there anyway)
    fcntl = None  # type: ignore[assignment]

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
    # Up to 2 x pool_size connections, kept once opened: half for phones' turns (a turn holds
    # one while VirtualQ is asked, bot.store.turns), half for storing texts and everything
    # else. As an overflow the second half was opened and closed again for every text under
    # load (a connection's start-up cost more than the text's statements). When every
    # connection is busy, fail after 5 s rather than queue until Twilio has given up.
    options: dict[str, Any] = dict(pool_size=2 * pool_size, max_overflow=0, pool_timeout=5)
    if make_url(async_url(url)).get_backend_name() == "postgresql":
        # Give up on an unreachable server in 5 s (asyncpg would wait a minute).
        options |= dict(connect_args={"timeout": 5})
    engine = create_async_engine(async_url(url), **options)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_when_idle(engine.sync_engine)
    return engine


IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: sa.Engine) -> None:
    """Survive the PaaS (or a restart) dropping connections while they sit in the pool: a
    connection idle for over IDLE_PING_SECONDS is pinged before it is handed out, and a dead
    one is replaced (the pool retries on DisconnectionError). SQLAlchemy's pool_pre_ping
    pings every checkout, three round trips each (BEGIN, ";", ROLLBACK) and two checkouts a
    text; a connection in steady use is not pinged, and one that dies in use is invalidated
    when its statement fails, as before."""
    dialect = engine.dialect

    def checkin(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"an idle connection was gone: {exc}") from exc

    sa.event.listen(engine.pool, "checkin", checkin)
    sa.event.listen(engine.pool, "checkout", checkout)


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
    reads and writes, each a handful of prepared statements (bot.store.prepared).

    On SQLite, in the store's one writer thread, on a plain sqlite3 connection (see `_Writer`):
    a transaction is one hop to that thread, the process's transactions never wait on each
    other in SQLite's busy handler, and the ones that queue up while a commit is being synced
    share the next commit. On PostgreSQL, on an async connection through `run_sync` (asyncpg
    underneath), the given one (a phone's turn holds one) or one from the pool.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sync: sa.Engine | None = None
        self._writer: _Writer | None = None
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
            self._writer = _Writer(self._sync)

    def engines(self) -> list[sa.Engine]:
        """Every engine statements may run on (for counting them)."""
        return [self.engine.sync_engine, *([self._sync] if self._sync is not None else [])]

    @property
    def threaded(self) -> bool:
        """Whether transactions run in the writer thread (SQLite), needing no connection."""
        return self._writer is not None

    async def run(
        self,
        fn: Callable[Concatenate[Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`fn(connection, *args)` in a transaction of its own, committed on return (on
        SQLite, possibly one commit with other texts' transactions, each in a savepoint: none
        is answered before the commit is on disk)."""
        if self._writer is not None:
            return await self._writer.submit(fn, args, kwargs)
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

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        """A write transaction for code that is not on the per-text path (the send queue, the
        notifier's watches, staff accounts and sessions), statement by statement: `await
        conn.execute(...)` and `await conn.scalar(...)` as on an AsyncConnection, committed
        when the block ends, rolled back if it raises.

        On SQLite it runs in the writer thread too, which waits for each statement: under a
        rush the writer holds the database's write lock nearly all the time, and a write
        from another connection would sleep in SQLite's busy handler, or fail after
        busy_timeout ("database is locked"). Keep such a block to its statements (no other
        awaits in it), and put a loop of statements in a function for `conn.run_sync`: the
        writer waits for the event loop between two statements. On PostgreSQL, an ordinary
        transaction from the pool."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        session = _Session(asyncio.get_running_loop(), self._sync_dialect())
        done = self._writer.submit(session.run, (), {})
        try:
            yield session
        except BaseException:
            session.end(commit=False)
            with contextlib.suppress(Exception):
                await asyncio.shield(done)
            raise
        session.end(commit=True)
        await done

    def _sync_dialect(self) -> sa.Dialect:
        assert self._sync is not None
        return self._sync.dialect

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._sync is not None:
            self._sync.dispose()


class _Rollback(Exception):
    """The block of a `Transactions.begin` on SQLite raised: undo its statements."""


SESSION_IDLE_SECONDS = 10.0  # the writer gives up on a block that sends no statement this long


class _Session:
    """A `Transactions.begin` block on SQLite: its statements, run one by one in the writer
    thread (`run`, a writer job), answered on the block's event loop. A loop of statements
    belongs in a function given to `run_sync`, run in the thread at once: the writer waits
    for the event loop between two statements."""

    def __init__(self, loop: asyncio.AbstractEventLoop, dialect: sa.Dialect) -> None:
        self._loop = loop
        self.dialect = dialect
        self._work: queue.SimpleQueue[tuple[Callable[[Connection], Any], Any] | bool] = (
            queue.SimpleQueue()
        )

    async def execute(self, statement: Any, parameters: Any = None) -> _Done:
        return await self._ask(lambda conn: _Done.of(conn.execute(statement, parameters)))  # type: ignore[no-any-return]

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        return await self._ask(lambda conn: conn.scalar(statement, parameters))

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` in the writer thread, as AsyncConnection.run_sync."""
        return await self._ask(lambda conn: fn(conn, *args))  # type: ignore[no-any-return]

    async def _ask(self, work: Callable[[Connection], Any]) -> Any:
        answer: asyncio.Future[Any] = self._loop.create_future()
        self._work.put((work, answer))
        return await answer

    def end(self, commit: bool) -> None:
        self._work.put(commit)

    def run(self, conn: Connection) -> None:
        """In the writer thread: each piece of work as it comes, until the block ends."""
        while True:
            try:
                item = self._work.get(timeout=SESSION_IDLE_SECONDS)
            except queue.Empty:
                raise _Rollback("a write block sent nothing for 10 s") from None
            if item is True:
                return
            if item is False:
                raise _Rollback("the write block raised")
            work, answer = item
            try:
                value, ok = work(conn), True
            except Exception as exc:  # the block sees the error; its end (False) rolls back
                value, ok = exc, False
            self._loop.call_soon_threadsafe(_resolve, [(answer, ok, value)])


class _Done:
    """A statement's result, read in full in the writer thread: its rows (as a SQLAlchemy
    Result: first(), scalars(), mappings(), …) and rowcount."""

    def __init__(self, result: Any, rowcount: int) -> None:
        self.rowcount = rowcount
        self._result = result  # None: the statement returns no rows

    @classmethod
    def of(cls, result: sa.CursorResult[Any]) -> _Done:
        return cls(result.freeze()() if result.returns_rows else None, result.rowcount)

    def _rows(self) -> Any:
        if self._result is None:
            raise sa.exc.ResourceClosedError("This result object does not return rows.")
        return self._result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rows(), name)

    def __iter__(self) -> Any:
        return iter(self._rows())


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: asyncio.Future[Any]  # of the submitting event loop, answered there


class _Writer:
    """SQLite's writer thread, with group commit.

    The thread takes every transaction queued since its last commit and runs them in one
    BEGIN IMMEDIATE ... COMMIT, each in a savepoint of its own (a transaction that fails rolls
    back to its savepoint, alone), then answers them all once the commit has returned: a
    commit is an fsync (synchronous=FULL), so under load one fsync makes a batch durable
    instead of one per transaction, and nothing is answered before it is on disk. A commit
    that fails fails every transaction of its batch. One at a time, a batch is one
    transaction, without savepoints.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._turnstile = _Turnstile.for_database(engine.url.database)
        self._conn: Connection | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="sqlite-writer", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(fn, args, kwargs, future))
        return future

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            job = self._jobs.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            # Not begun, and never will be: its waiter was cancelled (as an executor would).
            batch = [j for j in batch if not j.future.cancelled()]
            if batch:
                self._answer(batch, self._run(batch))
        if self._conn is not None:
            self._conn.close()
        self._turnstile.close()

    def _run(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
            conn = self._conn
            with self._turnstile, conn.begin():  # BEGIN IMMEDIATE (see _begin_immediate)
                if len(batch) == 1:
                    job = batch[0]
                    outcomes.append((True, job.fn(conn, *job.args, **job.kwargs)))
                else:
                    raw = conn.connection.dbapi_connection
                    assert raw is not None
                    for job in batch:
                        raw.execute("SAVEPOINT job")
                        try:
                            outcomes.append((True, job.fn(conn, *job.args, **job.kwargs)))
                        except Exception as exc:
                            raw.execute("ROLLBACK TO job")
                            outcomes.append((False, exc))
                        raw.execute("RELEASE job")
        except Exception as exc:  # BEGIN, COMMIT, or the one transaction failed: nothing kept
            if self._conn is not None and self._conn.invalidated:
                self._conn.close()
                self._conn = None
            return [(False, exc)] * len(batch)
        return outcomes

    @staticmethod
    def _answer(batch: list[_Job], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.future.get_loop(), []).append((job.future, ok, value))
        for loop, answers in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, answers)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


class _Turnstile:
    """Turns at the database's write lock for the writer threads of every process on one
    SQLite file (several web workers), in the order they asked.

    SQLite's own busy handler polls for the lock, sleeping up to 100 ms between tries, so a
    process whose writer commits batch after batch without a break kept the lock for seconds
    while another worker's texts waited (measured: p99 8 s with two workers under a rush).
    Two flock(2) locks in files beside the database make a fair turnstile: a writer takes the
    gate, then the lock, then lets the gate go; one waiting for the lock holds the gate, so the
    writer now holding the lock cannot come back for it until the waiting one has had its
    turn, and the kernel wakes a waiter the moment the lock is free. The kernel drops a dead
    process's locks. Not used for in-memory databases, or where flock does not exist."""

    def __init__(self, database: str | None) -> None:
        self._database = database  # None: no turnstile
        self._files: tuple[BinaryIO, BinaryIO] | None = None

    @classmethod
    def for_database(cls, database: str | None) -> _Turnstile:
        if fcntl is None or not database or database == ":memory:" or database.startswith("file:"):
            return cls(None)
        return cls(database)

    def __enter__(self) -> None:
        if self._database is None or fcntl is None:
            return
        if self._files is None:  # opened on first use: the app starts with the disk missing
            gate = open(f"{self._database}-writer-gate", "ab")  # noqa: SIM115 (kept open)
            try:
                lock = open(f"{self._database}-writer-lock", "ab")  # noqa: SIM115
            except OSError:
                gate.close()
                raise
            self._files = (gate, lock)
        fcntl.flock(self._files[0], fcntl.LOCK_EX)
        try:
            fcntl.flock(self._files[1], fcntl.LOCK_EX)
        finally:
            fcntl.flock(self._files[0], fcntl.LOCK_UN)

    def __exit__(self, *exc: object) -> None:
        if self._files is not None and fcntl is not None:
            fcntl.flock(self._files[1], fcntl.LOCK_UN)

    def close(self) -> None:
        if self._files is not None:
            for file in self._files:
                file.close()
            self._files = None


MAX_BATCH = 64  # transactions in one commit at most (each waits for the batch's commit)


def _resolve(answers: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in answers:
        if future.done():  # cancelled while it ran
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


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
