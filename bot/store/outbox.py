"""The send queue's table, and leases: jobs one process does for all of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import Transactions
from .tables import leases, notifications


@dataclass(frozen=True)
class Queued:
    """A text waiting to be sent."""

    id: int
    phone: str
    thread_id: int | None
    kind: str
    body: str
    reply_key: str | None
    language: str | None
    account: str | None
    created_at: datetime
    not_after: datetime | None


class OutboxTable:
    """Reads and writes of the send queue."""

    def __init__(self, engine: AsyncEngine, tx: Transactions) -> None:
        self.engine = engine  # reads
        self.tx = tx  # writes (on SQLite, in the writer thread)

    async def add(self, rows: Sequence[dict[str, Any]]) -> list[int | None]:
        """Queue texts; a row whose `key` is queued already is not queued again (its id None)."""
        return await self.tx.run(add_in, rows)

    async def claim(self, owner: str, now: datetime, limit: int) -> list[Queued]:
        """The most urgent queued texts, claimed for `owner`: no one else will send them."""
        return await self.tx.run(_claim, owner, now, limit)

    async def settle(
        self,
        notification_id: int,
        status: str,
        now: datetime,
        message_id: int | None = None,
        error: str | None = None,
    ) -> None:
        """What became of a claimed text: sent, unsent (Twilio refused), stale, skipped."""
        async with self.tx.begin() as conn:
            await conn.execute(
                notifications.update()
                .where(notifications.c.id == notification_id)
                .values(
                    status=status,
                    sent_at=now if status == "sent" else None,
                    message_id=message_id,
                    error=(error or "")[:200] or None,
                )
            )

    async def abandon_stuck(self, before: datetime) -> int:
        """Texts claimed by a process that died before saying what became of them: marked
        `lost`, never sent again (a send whose answer was lost may have gone out)."""
        async with self.tx.begin() as conn:
            found = await conn.execute(
                notifications.update()
                .where(notifications.c.status == "sending", notifications.c.claimed_at < before)
                .values(status="lost")
            )
        return int(found.rowcount)

    async def waiting(self) -> int:
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(notifications)
                .where(notifications.c.status == "queued")
            )
        return int(found or 0)

    async def skip_phone(self, phone: str, now: datetime) -> int:
        """An opted-out phone: nothing queued for it goes out."""
        async with self.tx.begin() as conn:
            found = await conn.execute(
                notifications.update()
                .where(notifications.c.phone == phone, notifications.c.status == "queued")
                .values(status="skipped", error="opted out", sent_at=None)
            )
        return int(found.rowcount)


def add_in(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int | None]:
    """OutboxTable.add within the caller's transaction (a broadcast and its texts, at once)."""
    ids: list[int | None] = []
    for row in rows:
        insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(notifications)
        statement = (
            insert.values(**row, status="queued")
            .on_conflict_do_nothing(index_elements=[notifications.c.key])
            .returning(notifications.c.id)
        )
        ids.append(conn.scalar(statement))
    return ids


def _claim(conn: Connection, owner: str, now: datetime, limit: int) -> list[Queued]:
    c = notifications.c
    claimed: list[Queued] = []
    rows = conn.execute(
        sa.select(
            c.id,
            c.phone,
            c.thread_id,
            c.kind,
            c.body,
            c.reply_key,
            c.language,
            c.account,
            c.created_at,
            c.not_after,
        )
        .where(c.status == "queued", c.claimed_at.is_(None))
        .order_by(c.priority, c.id)
        .limit(limit)
    ).all()
    for row in rows:
        taken = conn.execute(
            notifications.update()
            .where(c.id == row.id, c.claimed_at.is_(None))
            .values(claimed_at=now, claimed_by=owner[:64], status="sending")
        )
        if taken.rowcount:
            claimed.append(Queued(**row._mapping))
    return claimed


class Leases:
    """Named leases in the database: one holder at a time across processes, taken over when
    its holder stops renewing it (a process that died)."""

    def __init__(self, engine: AsyncEngine, tx: Transactions) -> None:
        self.engine = engine  # reads
        self.tx = tx  # writes (on SQLite, in the writer thread)

    async def hold(self, name: str, owner: str, seconds: float, now: datetime) -> bool:
        """Take or renew the lease; whether `owner` holds it now."""
        until = now + timedelta(seconds=seconds)
        async with self.tx.begin() as conn:
            insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(leases)
            # A row only when inserted, renewed or taken over: ours (none: another holds it).
            holder = await conn.scalar(
                insert.values(name=name, owner=owner, expires_at=until)
                .on_conflict_do_update(
                    index_elements=[leases.c.name],
                    set_={"owner": owner, "expires_at": until},
                    where=sa.or_(leases.c.owner == owner, leases.c.expires_at < now),
                )
                .returning(leases.c.owner)
            )
        return bool(holder == owner)

    async def release(self, name: str, owner: str) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(
                leases.delete().where(leases.c.name == name, leases.c.owner == owner)
            )
