"""The store's engines. SQLite's writer thread: transactions queued behind a commit share the
next one (group commit), each in a savepoint of its own, none is answered before its commit,
and the writers of several workers take turns at the write lock. PostgreSQL: a pooled
connection the server dropped while it sat idle is replaced before a text uses it. Both: the
writes off the per-text path (`tx.begin()`) commit all or nothing."""

from __future__ import annotations

import asyncio
import fcntl
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.store import Store, open_store
from bot.store import engine as engine_module
from bot.store.engine import _Turnstile
from bot.store.tables import phone_locks

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _lock(conn: Connection, phone: str) -> str:
    conn.execute(phone_locks.insert().values(phone=phone, owner="test", expires_at=NOW))
    return phone


@SQLITE
async def test_texts_queued_behind_a_commit_share_the_next_one(db_url: str) -> None:
    async with open_store(db_url) as store:
        writer = store.tx.engines()[-1]
        commits: list[int] = []
        sa.event.listen(writer, "commit", lambda conn: commits.append(1))
        release = threading.Event()

        def blocker(conn: Connection) -> None:
            release.wait(10)

        first = asyncio.ensure_future(store.tx.run(blocker))
        await asyncio.sleep(0.05)  # the writer is now inside the blocker's transaction
        phones = [f"+6140000{i:04d}" for i in range(10)]
        batch = [asyncio.ensure_future(store.tx.run(_lock, p)) for p in phones]
        clash = asyncio.ensure_future(store.tx.run(_lock, phones[3]))  # a duplicate key
        await asyncio.sleep(0.05)
        assert not any(f.done() for f in [*batch, clash])  # queued, not answered
        release.set()
        await first
        assert await asyncio.gather(*batch) == phones
        with pytest.raises(sa.exc.IntegrityError):
            await clash
        # One commit for the blocker, one for the eleven queued behind it.
        assert len(commits) == 2, commits
        async with store.engine.connect() as conn:
            stored = (await conn.execute(sa.select(phone_locks.c.phone))).scalars().all()
        # The failed one rolled back to its savepoint, alone: the other ten are kept.
        assert sorted(stored) == phones


@SQLITE
async def test_a_text_alone_is_one_transaction_and_its_error_rolls_it_back(db_url: str) -> None:
    async with open_store(db_url) as store:

        def half_then_fail(conn: Connection) -> Any:
            _lock(conn, "+61400000001")
            _lock(conn, "+61400000001")

        with pytest.raises(sa.exc.IntegrityError):
            await store.tx.run(half_then_fail)
        assert await store.tx.run(_lock, "+61400000002") == "+61400000002"
        async with store.engine.connect() as conn:
            stored = (await conn.execute(sa.select(phone_locks.c.phone))).scalars().all()
        assert stored == ["+61400000002"]


@POSTGRESQL
async def test_a_connection_dropped_while_idle_is_replaced_before_use(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(db_url) as store:
        first = await store.log.record_inbound("+61400000001", "SM1", "here", 0, NOW)
        # The server (or a PaaS proxy) drops every pooled connection while it is idle.
        admin = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert killed >= 1
        monkeypatch.setattr(engine_module, "IDLE_PING_SECONDS", 0.0)
        second = await store.log.record_inbound("+61400000001", "SM2", "here", 0, NOW)
        assert second.id > first.id and not second.duplicate


def test_the_writers_of_two_workers_take_turns_at_the_write_lock(tmp_path: Path) -> None:
    """Each worker has its own writer thread; under a rush one could win SQLite's lock batch
    after batch while the other's busy handler polled. With the turnstile, a writer that
    let the lock go and comes straight back waits for the one that was already waiting."""
    database = str(tmp_path / "bot.db")
    first, second = (_Turnstile.for_database(database) for _ in range(2))
    probe = open(f"{database}-writer-gate", "ab")  # noqa: SIM115
    order: list[str] = []

    def second_writer() -> None:
        with second:
            order.append("second")

    first.__enter__()
    waiting = threading.Thread(target=second_writer)
    waiting.start()
    for _ in range(500):  # until the second writer waits at the lock, holding the gate
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(probe, fcntl.LOCK_UN)
        except BlockingIOError:
            break
        threading.Event().wait(0.01)
    else:
        pytest.fail("the second writer never came to the lock")
    first.__exit__()
    with first:  # straight back: after the one that was waiting
        order.append("first again")
    waiting.join(10)
    assert order == ["second", "first again"]
    for turnstile in (first, second):
        turnstile.close()
    probe.close()


async def _held(store: Store) -> list[str]:
    async with store.engine.connect() as conn:
        return list((await conn.scalars(sa.select(phone_locks.c.phone))).all())


async def test_a_write_block_commits_its_statements_or_none(db_url: str) -> None:
    """`tx.begin()`, the writes off the per-text path: results as an AsyncConnection's
    (rows, scalars, rowcount), committed at the end of the block, all undone if it raises (a
    failed statement's error surfaces at its `execute`)."""
    async with open_store(db_url) as store:
        async with store.tx.begin() as conn:
            await conn.execute(
                phone_locks.insert(),
                [dict(phone=p, owner="a", expires_at=NOW) for p in ("+61400000001", "+6140002")],
            )
            changed = await conn.execute(
                phone_locks.update().where(phone_locks.c.phone == "+6140002").values(owner="b")
            )
            assert changed.rowcount == 1
            owner = await conn.scalar(
                sa.select(phone_locks.c.owner).where(phone_locks.c.phone == "+6140002")
            )
            assert owner == "b"
            rows = await conn.execute(sa.select(phone_locks).order_by(phone_locks.c.phone))
            assert [r.phone for r in rows] == ["+61400000001", "+6140002"]
            first = await conn.execute(sa.select(phone_locks.c.owner).order_by("phone"))
            assert first.scalars().all() == ["a", "b"]
            # A loop of statements as one piece of work (in the writer thread, on SQLite).
            counted = await conn.run_sync(_count_locks, "+6140002")
            assert counted == 1
        with pytest.raises(sa.exc.IntegrityError):
            async with store.tx.begin() as conn:
                await conn.execute(_lock_row("+6140003"))
                await conn.execute(_lock_row("+6140002"))  # taken: fails here
        with pytest.raises(RuntimeError):
            async with store.tx.begin() as conn:
                await conn.execute(_lock_row("+6140004"))
                raise RuntimeError("the block fails after a write")
        assert sorted(await _held(store)) == ["+61400000001", "+6140002"]
        # The writer goes on: a text's transaction right after.
        assert await store.tx.run(_lock, "+6140005") == "+6140005"


@SQLITE
async def test_a_write_block_gets_its_turn_while_the_writer_is_busy(db_url: str) -> None:
    """SQLite under a rush: the writer thread commits batch after batch; a staff or notifier
    write queues with the texts' transactions instead of waiting for a gap in SQLite's busy
    handler (where it could wait out busy_timeout and fail)."""
    async with open_store(db_url) as store:
        busy = True

        def slow(conn: Connection) -> None:
            conn.exec_driver_sql("SELECT 1")
            threading.Event().wait(0.005)

        async def rush() -> None:
            while busy:
                await asyncio.gather(*(store.tx.run(slow) for _ in range(8)))

        rushing = [asyncio.create_task(rush()) for _ in range(4)]
        await asyncio.sleep(0.2)
        try:
            async with asyncio.timeout(5):
                async with store.tx.begin() as conn:
                    await conn.execute(_lock_row("+6140006"))
        finally:
            busy = False
            await asyncio.gather(*rushing)
        assert await _held(store) == ["+6140006"]


def _count_locks(conn: Connection, *phones: str) -> int:
    return sum(
        int(conn.scalar(sa.select(sa.func.count()).where(phone_locks.c.phone == p)) or 0)
        for p in phones
    )


def _lock_row(phone: str) -> sa.Insert:
    return phone_locks.insert().values(phone=phone, owner="t", expires_at=NOW)
