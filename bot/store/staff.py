"""The staff's side of the database: named accounts, login sessions, failed logins (counted
across processes), the audit log of what staff did, conversations marked handled, and
broadcasts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import Transactions
from .outbox import add_in
from .tables import attention, audit_log, broadcasts, login_failures, staff_accounts, staff_sessions


@dataclass(frozen=True)
class AccountRow:
    name: str
    role: str
    password_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SessionRow:
    account: str
    credential: str
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    account: str
    action: str
    target: str | None
    detail: str | None


@dataclass(frozen=True)
class BroadcastRow:
    id: int
    token: str
    account: str
    body: str
    audience: str | None
    recipients: int
    created_at: datetime


class StaffStore:
    """Reads and writes of the staff tables, each its own short transaction."""

    def __init__(self, engine: AsyncEngine, tx: Transactions) -> None:
        self.engine = engine  # reads
        self.tx = tx  # writes (on SQLite, in the writer thread)

    # --- accounts ---------------------------------------------------------------------------

    async def account(self, name: str) -> AccountRow | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(staff_accounts).where(staff_accounts.c.name == name))
            ).first()
        return None if row is None else AccountRow(*row)

    async def accounts(self) -> list[AccountRow]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(staff_accounts).order_by(staff_accounts.c.name))
            return [AccountRow(*r) for r in rows]

    async def add_account(self, name: str, role: str, password_hash: str, now: datetime) -> bool:
        """A new account; False when the name is taken."""
        try:
            async with self.tx.begin() as conn:
                await conn.execute(
                    staff_accounts.insert().values(
                        name=name,
                        role=role,
                        password_hash=password_hash,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    async def set_password(self, name: str, password_hash: str, now: datetime) -> bool:
        """A new password: every session of the account ends with the old one."""
        async with self.tx.begin() as conn:
            changed = await conn.execute(
                staff_accounts.update()
                .where(staff_accounts.c.name == name)
                .values(password_hash=password_hash, updated_at=now)
            )
            await conn.execute(
                staff_sessions.update()
                .where(staff_sessions.c.account == name, staff_sessions.c.ended_at.is_(None))
                .values(ended_at=now)
            )
        return bool(changed.rowcount)

    async def remove_account(self, name: str, now: datetime) -> bool:
        async with self.tx.begin() as conn:
            removed = await conn.execute(
                staff_accounts.delete().where(staff_accounts.c.name == name)
            )
            await conn.execute(
                staff_sessions.update()
                .where(staff_sessions.c.account == name, staff_sessions.c.ended_at.is_(None))
                .values(ended_at=now)
            )
        return bool(removed.rowcount)

    # --- sessions ---------------------------------------------------------------------------

    async def start_session(
        self, token_hash: str, account: str, credential: str, client: str, now: datetime
    ) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(
                staff_sessions.insert().values(
                    token_hash=token_hash,
                    account=account,
                    credential=credential,
                    client=client[:64],
                    created_at=now,
                    last_seen_at=now,
                )
            )

    async def session(self, token_hash: str) -> SessionRow | None:
        c = staff_sessions.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(
                        c.account, c.credential, c.created_at, c.last_seen_at, c.ended_at
                    ).where(c.token_hash == token_hash)
                )
            ).first()
        return None if row is None else SessionRow(*row)

    async def touch_session(self, token_hash: str, now: datetime) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(
                staff_sessions.update()
                .where(staff_sessions.c.token_hash == token_hash)
                .values(last_seen_at=now)
            )

    async def end_session(self, token_hash: str, now: datetime) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(
                staff_sessions.update()
                .where(
                    staff_sessions.c.token_hash == token_hash, staff_sessions.c.ended_at.is_(None)
                )
                .values(ended_at=now)
            )

    # --- failed logins ----------------------------------------------------------------------

    async def failed_login(self, keys: list[str], now: datetime) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(login_failures.insert(), [{"key": k[:100], "at": now} for k in keys])

    async def failures_since(self, keys: list[str], since: datetime) -> dict[str, tuple[int, Any]]:
        """Per key: how many failures since `since`, and the oldest of them."""
        c = login_failures.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(c.key, sa.func.count(), sa.func.min(c.at))
                .where(c.key.in_([k[:100] for k in keys]), c.at >= since)
                .group_by(c.key)
            )
            return {r[0]: (int(r[1]), r[2]) for r in rows}

    async def forget_failures(self, before: datetime) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(login_failures.delete().where(login_failures.c.at < before))

    # --- the audit log ----------------------------------------------------------------------

    async def audit(
        self, account: str, action: str, target: str | None, detail: str | None, now: datetime
    ) -> None:
        async with self.tx.begin() as conn:
            await conn.execute(
                audit_log.insert().values(
                    at=now,
                    account=account[:64],
                    action=action[:32],
                    target=(target or "")[:200] or None,
                    detail=detail,
                )
            )

    async def audit_entries(self, before: int | None = None, limit: int = 100) -> list[AuditRow]:
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit_log.c.id < before)
        async with self.engine.connect() as conn:
            return [AuditRow(*r) for r in await conn.execute(query)]

    # --- what needs attention -----------------------------------------------------------------

    async def mark_handled(self, thread_id: int, account: str, now: datetime) -> None:
        """A conversation looked at: listed again only for what happens after `now`."""
        values = {"thread_id": thread_id, "handled_at": now, "handled_by": account[:64]}
        async with self.tx.begin() as conn:
            insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(attention)
            await conn.execute(
                insert.values(**values).on_conflict_do_update(
                    index_elements=[attention.c.thread_id],
                    set_={"handled_at": now, "handled_by": account[:64]},
                )
            )

    # --- broadcasts -----------------------------------------------------------------------------

    async def broadcast(
        self,
        token: str,
        account: str,
        body: str,
        audience: str,
        texts: list[dict[str, Any]],
        now: datetime,
    ) -> tuple[BroadcastRow, bool]:
        """Record a broadcast and queue its texts in one transaction, once per form token:
        (the broadcast, True) the first time; (the first one, False) for the same token again,
        queueing nothing more."""
        try:
            async with self.tx.begin() as conn:
                new_id = await conn.scalar(
                    broadcasts.insert()
                    .values(
                        token=token,
                        account=account[:64],
                        body=body,
                        audience=audience[:200],
                        recipients=len(texts),
                        created_at=now,
                    )
                    .returning(broadcasts.c.id)
                )
                await conn.run_sync(add_in, texts)
            return BroadcastRow(int(new_id), token, account, body, audience, len(texts), now), True
        except sa.exc.IntegrityError:
            found = await self.broadcast_by_token(token)
            if found is None:
                raise
            return found, False

    async def broadcast_by_token(self, token: str) -> BroadcastRow | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(sa.select(broadcasts).where(broadcasts.c.token == token))
            ).first()
        return None if row is None else BroadcastRow(*row)

    async def broadcasts_since(self, since: datetime, limit: int = 20) -> list[BroadcastRow]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(broadcasts)
                .where(broadcasts.c.created_at >= since)
                .order_by(broadcasts.c.id.desc())
                .limit(limit)
            )
            return [BroadcastRow(*r) for r in rows]
