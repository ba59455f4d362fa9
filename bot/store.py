"""The log and the bot's memory: SQLAlchemy Core tables on SQLite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .conversation import Candidate, Conversation, State
from .virtualq import CallRecord


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset of its own)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("phone", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(64), nullable=False),
    sa.Column("direction", sa.String(3), nullable=False),  # in / out
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("message_sid", sa.String(64), unique=True),  # inbound: Twilio's; out: once sent
    sa.Column("reply_to", sa.Integer, sa.ForeignKey("messages.id")),
    sa.Column("intent", sa.String(64)),
    sa.Column("state_before", sa.String(32)),
    sa.Column("state_after", sa.String(32)),
    sa.Column("segments", sa.Integer),
    sa.Column("num_media", sa.Integer, nullable=False, server_default="0"),
    sa.Column("status", sa.String(16)),  # delivery status of outbound texts
    sa.Column("error_code", sa.String(16)),
    sa.Column("handled_at", UTCDateTime),  # inbound: when its answer was decided
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_messages_phone_id", "phone", "id"),
    sa.Index("ix_messages_reply_to", "reply_to"),
    sa.Index("ix_messages_created_at", "created_at"),
)

upstream_calls = sa.Table(
    "upstream_calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id"), index=True),
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("status", sa.Integer),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("response", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

directory = sa.Table(
    "directory",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(32), nullable=False, index=True),
    sa.Column("personal_id", sa.String(30), nullable=False),
    sa.Column("name", sa.String(100)),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("phone", "personal_id", name="uq_directory_phone_personal_id"),
)

opt_outs = sa.Table(
    "opt_outs",
    metadata,
    sa.Column("phone", sa.String(64), primary_key=True),
    sa.Column("keyword", sa.String(32)),
    sa.Column("created_at", UTCDateTime, nullable=False),
)


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


def create_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(async_url(url))
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
async def open_store(url: str) -> AsyncIterator[Store]:
    """A store on `url` with its schema created (idempotent until migrations), closed on exit."""
    store = Store(create_engine(url))
    try:
        await store.create_schema()
        yield store
    finally:
        await store.close()


@dataclass(frozen=True)
class Inbound:
    """A stored inbound message; `duplicate` when Twilio delivered this MessageSid before."""

    id: int
    duplicate: bool


class Store:
    """Reads and writes of the conversation log; one short transaction per call."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- messages -----------------------------------------------------------------------------

    async def record_inbound(
        self, phone: str, sid: str, body: str, num_media: int, now: datetime
    ) -> Inbound:
        """Store an inbound message before anything else; a repeated MessageSid is flagged."""
        row = dict(
            phone=phone,
            direction="in",
            body=body,
            message_sid=sid,
            num_media=num_media,
            created_at=now,
        )
        try:
            async with self.engine.begin() as conn:
                new_id = await conn.scalar(messages.insert().values(**row).returning(messages.c.id))
                return Inbound(int(new_id), False)
        except sa.exc.IntegrityError:
            async with self.engine.connect() as conn:
                found = await conn.scalar(
                    sa.select(messages.c.id).where(messages.c.message_sid == sid)
                )
            if found is None:
                raise
            return Inbound(int(found), True)

    async def answer_to(
        self, inbound_id: int, wait: float, poll: float = 0.05
    ) -> tuple[bool, str | None]:
        """(handled, reply body) for an inbound message, waiting up to `wait` seconds."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            async with self.engine.connect() as conn:
                handled = await conn.scalar(
                    sa.select(messages.c.handled_at).where(messages.c.id == inbound_id)
                )
                if handled is not None:
                    reply = await conn.scalar(
                        sa.select(messages.c.body)
                        .where(messages.c.reply_to == inbound_id, messages.c.direction == "out")
                        .order_by(messages.c.id)
                        .limit(1)
                    )
                    return True, reply
            if asyncio.get_running_loop().time() >= deadline:
                return False, None
            await asyncio.sleep(poll)

    async def finish(
        self,
        *,
        inbound_id: int,
        phone: str,
        before: Conversation,
        after: Conversation,
        intent: str,
        reply: str | None,
        segments: int | None,
        calls: Iterable[tuple[CallRecord, datetime]],
        now: datetime,
        opt_out_keyword: str | None = None,
    ) -> None:
        """Persist one message's outcome in one transaction: calls, reply, state, opt-outs."""
        async with self.engine.begin() as conn:
            for record, at in calls:
                await conn.execute(
                    upstream_calls.insert().values(
                        message_id=inbound_id,
                        operation=record.operation,
                        request=record.request,
                        status=record.status,
                        latency_ms=record.latency_ms,
                        outcome=record.outcome,
                        response=record.response,
                        error=record.error,
                        created_at=at,
                    )
                )
            if reply is not None:
                await conn.execute(
                    messages.insert().values(
                        phone=phone,
                        direction="out",
                        body=reply,
                        reply_to=inbound_id,
                        state_before=before.state.value,
                        state_after=after.state.value,
                        segments=segments,
                        status="replied",
                        created_at=now,
                    )
                )
            await conn.execute(
                messages.update()
                .where(messages.c.id == inbound_id)
                .values(
                    intent=intent,
                    state_before=before.state.value,
                    state_after=after.state.value,
                    handled_at=now,
                )
            )
            await self._save_conversation(conn, phone, after, now)
            await self._opt_out(conn, phone, before, after, opt_out_keyword, now)

    async def _save_conversation(
        self, conn: AsyncConnection, phone: str, conv: Conversation, now: datetime
    ) -> None:
        values = dict(state=conv.state.value, data=dict(conv.data), updated_at=now)
        updated = await conn.execute(
            conversations.update().where(conversations.c.phone == phone).values(**values)
        )
        if updated.rowcount == 0:
            await conn.execute(conversations.insert().values(phone=phone, created_at=now, **values))

    async def _opt_out(
        self,
        conn: AsyncConnection,
        phone: str,
        before: Conversation,
        after: Conversation,
        keyword: str | None,
        now: datetime,
    ) -> None:
        if after.state is State.OPTED_OUT and before.state is not State.OPTED_OUT:
            await conn.execute(opt_outs.delete().where(opt_outs.c.phone == phone))
            await conn.execute(
                opt_outs.insert().values(phone=phone, keyword=keyword, created_at=now)
            )
        elif before.state is State.OPTED_OUT and after.state is not State.OPTED_OUT:
            await conn.execute(opt_outs.delete().where(opt_outs.c.phone == phone))

    async def conversation(self, phone: str) -> Conversation:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(conversations.c.state, conversations.c.data).where(
                        conversations.c.phone == phone
                    )
                )
            ).first()
        if row is None:
            return Conversation()
        return Conversation(State(row.state), dict(row.data or {}))

    async def transcript(self, phone: str) -> list[dict[str, Any]]:
        """Every message to and from a phone, oldest first, with its upstream calls."""
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(messages).where(messages.c.phone == phone).order_by(messages.c.id)
                    )
                )
                .mappings()
                .all()
            )
            calls = (
                (
                    await conn.execute(
                        sa.select(upstream_calls)
                        .join(messages, messages.c.id == upstream_calls.c.message_id)
                        .where(messages.c.phone == phone)
                        .order_by(upstream_calls.c.id)
                    )
                )
                .mappings()
                .all()
            )
        out = [dict(r) | {"calls": []} for r in rows]
        by_id = {m["id"]: m for m in out}
        for call in calls:
            by_id[call["message_id"]]["calls"].append(dict(call))
        return out

    async def is_opted_out(self, phone: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(sa.select(opt_outs.c.phone).where(opt_outs.c.phone == phone))
        return found is not None

    # --- directory ----------------------------------------------------------------------------

    async def candidates(self, phone: str) -> tuple[Candidate, ...]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(directory.c.personal_id, directory.c.name)
                    .where(directory.c.phone == phone)
                    .order_by(directory.c.id)
                )
            ).all()
        return tuple(Candidate(r.personal_id, r.name) for r in rows)

    async def upsert_directory(
        self, rows: Iterable[tuple[str, str, str | None]], now: datetime
    ) -> tuple[int, int]:
        """Insert or update (phone, personal_id, name) rows; (added, updated)."""
        added = updated = 0
        async with self.engine.begin() as conn:
            for phone, personal_id, name in rows:
                result = await conn.execute(
                    directory.update()
                    .where(directory.c.phone == phone, directory.c.personal_id == personal_id)
                    .values(name=name, updated_at=now)
                )
                if result.rowcount:
                    updated += 1
                else:
                    await conn.execute(
                        directory.insert().values(
                            phone=phone, personal_id=personal_id, name=name, updated_at=now
                        )
                    )
                    added += 1
        return added, updated
