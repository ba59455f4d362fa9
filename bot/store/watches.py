"""Checked-in cases the bot keeps an eye on until they are served or closed (bot.notify)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import Transactions
from .prepared import Prepared, Write
from .tables import conversations, notifications, watches


@dataclass(frozen=True, slots=True)  # slots: the notifier reads every open watch each poll
class Watch:
    case_id: int
    phone: str
    thread_id: int | None
    personal_id: str | None
    name: str | None
    ticket: str
    unit_id: int | None
    service_name: str | None
    language: str | None
    shared: bool
    created_at: datetime
    polled_at: datetime | None
    position: int | None
    almost_at: datetime | None
    called_at: datetime | None
    counter: str | None


_COLUMNS = [watches.c[name] for name in Watch.__dataclass_fields__]


_START = {
    name: Prepared(insert(watches).on_conflict_do_nothing(index_elements=[watches.c.case_id]))
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_STOP_WATCHES = Prepared(
    watches.update()
    .where(watches.c.phone == sa.bindparam("phone_"), watches.c.done_at.is_(None))
    .values(done_at=sa.bindparam("now"), outcome=sa.bindparam("outcome_"))
)
_SKIP_QUEUED = Prepared(
    notifications.update()
    .where(notifications.c.phone == sa.bindparam("phone_"), notifications.c.status == "queued")
    .values(status="skipped", error=sa.bindparam("outcome_"))
)


def starting(dialect: str, rows: Sequence[dict[str, Any]]) -> list[Write]:
    """Watch these cases (a case already watched is left as it is): statements to run."""
    insert = _START[dialect]
    return [(insert, row) for row in rows]


def stopping(phone: str, outcome: str, now: datetime) -> list[Write]:
    """No more notifications for a phone: its cases are no longer watched, and nothing queued
    for it goes out (it opted out, or left the queue). Statements to run."""
    params = {"phone_": phone, "now": now, "outcome_": outcome}
    return [(_STOP_WATCHES, params), (_SKIP_QUEUED, params)]


def _update_many(conn: Connection, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
    for case_id, values in changes:
        conn.execute(watches.update().where(watches.c.case_id == case_id).values(**values))


_OPEN_FROM = watches.outerjoin(conversations, conversations.c.phone == watches.c.phone)
_OPEN = (
    watches.c.done_at.is_(None),
    sa.or_(conversations.c.state.is_(None), conversations.c.state != "opted_out"),
)


class Watches:
    """Reads and writes of the watched cases."""

    def __init__(self, engine: AsyncEngine, tx: Transactions) -> None:
        self.engine = engine  # reads
        self.tx = tx  # writes (on SQLite, in the writer thread)

    async def open(
        self,
        after: int | None = None,
        limit: int | None = None,
        cases: Collection[int] | None = None,
    ) -> list[Watch]:
        """Cases still watched, whose phone has not opted out, by case id: with `after` and
        `limit`, the next `limit` of them after case `after` (a page); with `cases`, only
        those of these cases."""
        query = sa.select(*_COLUMNS).select_from(_OPEN_FROM).where(*_OPEN)
        if after is not None:
            query = query.where(watches.c.case_id > after)
        if cases is not None:
            query = query.where(watches.c.case_id.in_(cases))
        query = query.order_by(watches.c.case_id).limit(limit)
        async with self.engine.connect() as conn:
            return [Watch(*row) for row in await conn.execute(query)]

    async def open_cases(self) -> dict[int, bool]:
        """The case ids of `open`, each with whether it has been called: one narrow read,
        so that a poll reads in full only the watches it has something to do with."""
        query = (
            sa.select(watches.c.case_id, watches.c.called_at.is_not(None))
            .select_from(_OPEN_FROM)
            .where(*_OPEN)
        )
        async with self.engine.connect() as conn:
            return {case_id: bool(called) for case_id, called in await conn.execute(query)}

    async def open_units(self) -> list[int | None]:
        """The units of the open watches (None: a case whose unit is not known)."""
        query = sa.select(watches.c.unit_id).select_from(_OPEN_FROM).where(*_OPEN).distinct()
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def update(self, case_id: int, **values: Any) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(
                watches.update().where(watches.c.case_id == case_id).values(**values)
            )

    async def update_many(self, changes: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Several watches' changes, in one transaction."""
        if changes:
            await self.tx.run(_update_many, changes)

    async def close(self, case_id: int, outcome: str, now: datetime) -> None:
        await self.update(case_id, done_at=now, outcome=outcome)

    async def close_phone(self, phone: str, outcome: str, now: datetime) -> int:
        """Stop watching a phone's cases (it opted out, or left the queue)."""
        async with self.tx.begin() as conn:
            found = await conn.execute(
                watches.update()
                .where(watches.c.phone == phone, watches.c.done_at.is_(None))
                .values(done_at=now, outcome=outcome)
            )
        return int(found.rowcount)

    async def waiting(self, since: datetime) -> list[Watch]:
        """Everyone checked in since `since` and still waiting (not called, not done)."""
        query = (
            sa.select(*_COLUMNS)
            .select_from(watches.outerjoin(conversations, conversations.c.phone == watches.c.phone))
            .where(
                watches.c.created_at >= since,
                watches.c.done_at.is_(None),
                watches.c.called_at.is_(None),
                sa.or_(conversations.c.state.is_(None), conversations.c.state != "opted_out"),
            )
            .order_by(watches.c.created_at)
        )
        async with self.engine.connect() as conn:
            return [Watch(*row) for row in await conn.execute(query)]
