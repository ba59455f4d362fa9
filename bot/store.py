"""The log and the bot's memory: SQLAlchemy Core tables on SQLite (default) or PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import schema
from .conversation import Candidate, Conversation, State
from .errors import CheckinBotError
from .outcomes import TICKETED, ThreadOutcome, advance
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


log = logging.getLogger("checkin_bot.store")

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

threads = sa.Table(
    # One visit's texts from one phone, for staff: a new thread starts when a phone texts after
    # THREAD_GAP of silence. Its summary columns are kept up to date as messages are handled.
    "threads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(64), nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_at", UTCDateTime, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("personal_id", sa.String(30)),
    sa.Column("name", sa.String(200)),
    sa.Column("ticket", sa.String(32)),
    sa.Column("case_id", sa.BigInteger),
    sa.Column("ticket_at", UTCDateTime),  # when the bot first gave them a ticket
    sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_threads_started", "started_at", "id"),
    sa.Index("ix_threads_outcome_started", "outcome", "started_at", "id"),
    sa.Index("ix_threads_phone_started", "phone", "started_at", "id"),
    sa.Index("ix_threads_personal_id", "personal_id"),
    sa.Index("ix_threads_ticket", "ticket"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(64), nullable=False),
    sa.Column("thread_id", sa.Integer, sa.ForeignKey("threads.id", name="fk_messages_thread_id")),
    sa.Column("direction", sa.String(3), nullable=False),  # in / out
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("message_sid", sa.String(64), unique=True),  # inbound: Twilio's; out: once sent
    # Twilio's I-Twilio-Idempotency-Token: the same on every retry of one webhook delivery.
    sa.Column("idempotency_token", sa.String(128)),
    sa.Column("reply_to", sa.Integer, sa.ForeignKey("messages.id")),
    sa.Column("intent", sa.String(64)),
    sa.Column("prompt", sa.String(64)),  # outbound: the prompts/ key of the text sent
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
    sa.Index("ix_messages_thread_id", "thread_id", "id"),
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
    sa.Index("ix_upstream_calls_created_at", "created_at"),
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


phone_locks = sa.Table(
    # Per-phone leases on SQLite, where several worker processes share one file; PostgreSQL
    # uses advisory locks instead (see Store.turn).
    "phone_locks",
    metadata,
    sa.Column("phone", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
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


# Twilio's message statuses in the order they can happen; a callback never moves one back.
STATUS_RANK = {
    "replied": 0,  # ours: answered as TwiML, nothing heard from Twilio yet
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
    "unsent": 6,  # ours: an answer we could not send (no REST credentials, or Twilio refused)
}
THREAD_GAP = timedelta(hours=6)  # silence after which a phone's next text starts a new thread
LEASE_SECONDS = 30.0  # longer than any one message's handling; frees a crashed holder's phone
_LEASE_POLL_SECONDS = 0.025
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout


class PhoneBusy(CheckinBotError):
    """Another message from this phone held its turn for longer than we could wait."""


def create_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    # A message's turn holds one connection (see Store.turn): cap the pool, and when every
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


@asynccontextmanager
async def open_store(
    url: str, *, migrate: bool = False, pool_size: int = 5
) -> AsyncIterator[Store]:
    """A store on `url`, closed on exit. SchemaError unless the schema is this release's;
    `migrate=True` upgrades it first (the demo and chat do; production runs `migrate`)."""
    async with engine_at(url, pool_size) as engine:
        if migrate:
            await schema.migrate(engine)
        await schema.check(engine)
        yield Store(engine)


@dataclass(frozen=True)
class Inbound:
    """A stored inbound message; `duplicate` when Twilio delivered this MessageSid before."""

    id: int
    duplicate: bool


@dataclass
class Purged:
    """What a purge deleted."""

    conversations: int = 0
    messages: int = 0
    upstream_calls: int = 0
    memories: int = 0  # phones' conversation state rows

    def add(self, conversations: int, messages: int, upstream_calls: int) -> None:
        self.conversations += conversations
        self.messages += messages
        self.upstream_calls += upstream_calls


@dataclass(frozen=True)
class Stored:
    """A stored outbound text: its id (for delivery status) and body."""

    id: int
    body: str


@dataclass(frozen=True)
class Unanswered:
    """An inbound text nobody answered."""

    id: int
    phone: str
    body: str
    created_at: datetime


@dataclass(frozen=True)
class Handled:
    """One message's outcome, written in one transaction: its upstream calls, the reply, and
    the conversation's new state (`after` None: not ours to change, e.g. another message from
    this phone still holds the turn)."""

    inbound_id: int
    phone: str
    before: Conversation
    after: Conversation | None
    intent: str
    reply: str | None
    segments: int | None
    calls: tuple[tuple[CallRecord, datetime], ...]
    now: datetime
    opt_out_keyword: str | None = None
    prompt: str | None = None  # the prompts/ key of `reply`
    who: Who | None = None  # whom the phone belongs to, as far as this message showed


@dataclass(frozen=True)
class Who:
    """A thread's customer, for staff search: any field may be unknown (None)."""

    personal_id: str | None = None
    name: str | None = None
    ticket: str | None = None
    case_id: int | None = None


class Store:
    """Reads and writes of the conversation log; one short transaction per call."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def close(self) -> None:
        await self.engine.dispose()

    # --- messages -----------------------------------------------------------------------------

    async def record_inbound(
        self,
        phone: str,
        sid: str,
        body: str,
        num_media: int,
        now: datetime,
        idempotency_token: str | None = None,
    ) -> Inbound:
        """Store an inbound message before anything else; a repeated MessageSid is flagged."""
        row = dict(
            phone=phone,
            direction="in",
            body=body,
            message_sid=sid,
            idempotency_token=idempotency_token,
            num_media=num_media,
            created_at=now,
        )
        try:
            async with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # Two first texts at once must not open two threads (SQLite's writes are
                    # serialised already: the insert below takes the database's write lock).
                    key = _AdvisoryLock.key_for(f"thread:{phone}")
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
                new_id = await conn.scalar(messages.insert().values(**row).returning(messages.c.id))
                thread_id = await _thread_for(conn, phone, now)
                await conn.execute(
                    messages.update().where(messages.c.id == new_id).values(thread_id=thread_id)
                )
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
    ) -> tuple[bool, Stored | None]:
        """(handled, its reply) for an inbound message, waiting up to `wait` seconds."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            async with self.engine.connect() as conn:
                handled = await conn.scalar(
                    sa.select(messages.c.handled_at).where(messages.c.id == inbound_id)
                )
                if handled is not None:
                    reply = (
                        await conn.execute(
                            sa.select(messages.c.id, messages.c.body)
                            .where(messages.c.reply_to == inbound_id, messages.c.direction == "out")
                            .order_by(messages.c.id)
                            .limit(1)
                        )
                    ).first()
                    return True, None if reply is None else Stored(reply.id, reply.body)
            if asyncio.get_running_loop().time() >= deadline:
                return False, None
            await asyncio.sleep(poll)

    async def record_status(
        self, reply_id: int | None, sid: str | None, status: str, error_code: str | None
    ) -> bool:
        """Record an outbound text's delivery status from Twilio's callback, or what Twilio's
        REST API said to a text we sent ourselves (no `sid`: "unsent"); False when there is no
        such text or it already has a later status (a callback can beat the API's answer)."""
        if reply_id is None and sid is None:
            raise ValueError("record_status needs the reply's id or its MessageSid")
        rank = STATUS_RANK.get(status, 0)
        current_rank = sa.case(STATUS_RANK, value=messages.c.status, else_=0)
        if reply_id is not None:
            # A duplicate webhook delivery sends the reply twice: the first SID reported wins.
            which = sa.and_(
                messages.c.id == reply_id,
                sa.or_(messages.c.message_sid.is_(None), messages.c.message_sid == sid),
            )
        else:
            which = messages.c.message_sid == sid
        async with self.engine.begin() as conn:
            result = await conn.execute(
                messages.update()
                .where(which, messages.c.direction == "out", current_rank <= rank)
                .values(
                    message_sid=sa.func.coalesce(sid, messages.c.message_sid),
                    status=status,
                    error_code=sa.func.coalesce(error_code, messages.c.error_code),
                )
            )
        return bool(result.rowcount)

    async def record_reply(
        self, inbound_id: int, phone: str, text: str, prompt: str, segments: int, now: datetime
    ) -> int:
        """An extra reply to a message that is still being handled (the holding reply)."""
        async with self.engine.begin() as conn:
            state = (await _conversation(conn, phone)).state.value
            thread_id = await _thread_of(conn, inbound_id)
            reply_id = await _insert_reply(
                conn, phone, thread_id, inbound_id, text, prompt, (state, state), segments, now
            )
            await conn.execute(
                threads.update()
                .where(threads.c.id == thread_id)
                .values(message_count=threads.c.message_count + 1)
            )
            return reply_id

    async def unanswered(self, before: datetime, limit: int = 20) -> list[Unanswered]:
        """Inbound texts stored before `before` whose answer was never decided: the process
        handling them died (or the database failed it), oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        messages.c.id, messages.c.phone, messages.c.body, messages.c.created_at
                    )
                    .where(
                        messages.c.direction == "in",
                        messages.c.handled_at.is_(None),
                        messages.c.created_at < before,
                    )
                    .order_by(messages.c.id)
                    .limit(limit)
                )
            ).all()
        return [Unanswered(r.id, r.phone, r.body, r.created_at) for r in rows]

    async def inbound_since(self, phone: str, since: datetime) -> int:
        """How many texts a phone sent from `since` on (for the rate limit)."""
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(messages)
                .where(
                    messages.c.phone == phone,
                    messages.c.direction == "in",
                    messages.c.created_at >= since,
                )
            )
        return int(found or 0)

    @asynccontextmanager
    async def turn(self, phone: str, wait: float) -> AsyncIterator[Turn]:
        """This phone's conversation to ourselves, across every process on the database.

        PostgreSQL: a session advisory lock on a hash of the phone, waited for with
        `lock_timeout`; the server frees it if this process dies. SQLite: a lease row in
        `phone_locks`, polled for, that expires after LEASE_SECONDS if its holder dies.
        The turn's one connection does all of the turn's reads and writes, so a busy pool
        cannot leave lock holders waiting for a second connection. PhoneBusy after `wait`.
        """
        async with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                lock: _Lock = _AdvisoryLock(conn, phone)
            else:
                lock = _Lease(conn, phone)
            await lock.acquire(wait)
            try:
                yield Turn(conn, phone)
            finally:
                await lock.release()

    async def finish(self, handled: Handled) -> int | None:
        """Persist a message's outcome outside a turn, in one transaction; the reply's id."""
        async with self.engine.begin() as conn:
            return await _finish(conn, handled)

    async def conversation(self, phone: str) -> Conversation:
        async with self.engine.connect() as conn:
            return await _conversation(conn, phone)

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

    async def purge(self, before: datetime, batch: int = 500) -> Purged:
        """Delete threads whose last text is older than `before`, with their messages and
        upstream calls, and phones' conversation memory last touched before it. Opt-outs and
        the directory stay: an opt-out must outlive any retention period. Short transactions
        of `batch` threads, so the bot keeps answering while a purge runs."""
        purged = Purged()
        while True:
            async with self.engine.begin() as conn:
                ids = (
                    (
                        await conn.execute(
                            sa.select(threads.c.id).where(threads.c.last_at < before).limit(batch)
                        )
                    )
                    .scalars()
                    .all()
                )
                if not ids:
                    break
                in_threads = sa.select(messages.c.id).where(messages.c.thread_id.in_(ids))
                calls = await conn.execute(
                    upstream_calls.delete().where(upstream_calls.c.message_id.in_(in_threads))
                )
                texts = await conn.execute(messages.delete().where(messages.c.thread_id.in_(ids)))
                await conn.execute(threads.delete().where(threads.c.id.in_(ids)))
                purged.add(len(ids), texts.rowcount, calls.rowcount)
        async with self.engine.begin() as conn:
            orphans = sa.select(messages.c.id).where(
                messages.c.thread_id.is_(None), messages.c.created_at < before
            )
            calls = await conn.execute(
                upstream_calls.delete().where(upstream_calls.c.message_id.in_(orphans))
            )
            texts = await conn.execute(
                messages.delete().where(
                    messages.c.thread_id.is_(None), messages.c.created_at < before
                )
            )
            purged.add(0, texts.rowcount, calls.rowcount)
            memory = await conn.execute(
                conversations.delete().where(
                    conversations.c.updated_at < before,
                    # The opted-out state is what keeps the bot silent: it stays.
                    conversations.c.state != State.OPTED_OUT.value,
                )
            )
            purged.memories = memory.rowcount
        return purged

    async def is_opted_out(self, phone: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.scalar(sa.select(opt_outs.c.phone).where(opt_outs.c.phone == phone))
        return found is not None

    # --- directory ----------------------------------------------------------------------------

    async def candidates(self, phone: str) -> tuple[Candidate, ...]:
        async with self.engine.connect() as conn:
            return await _candidates(conn, phone)

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


class Turn:
    """One message's turn on a phone's conversation: reads and the final write, one connection.

    Each call is its own short transaction, so nothing stays open while VirtualQ is asked.
    """

    def __init__(self, conn: AsyncConnection, phone: str) -> None:
        self._conn = conn
        self.phone = phone

    async def conversation(self) -> Conversation:
        async with self._conn.begin():
            return await _conversation(self._conn, self.phone)

    async def candidates(self, phone: str) -> tuple[Candidate, ...]:
        async with self._conn.begin():
            return await _candidates(self._conn, phone)

    async def finish(self, handled: Handled) -> int | None:
        async with self._conn.begin():
            return await _finish(self._conn, handled)

    async def remember(self, conversation: Conversation, now: datetime) -> None:
        """Save the conversation now, before the turn ends: what a check-in is about to do,
        so that if this process dies mid-call the next message reconciles it."""
        async with self._conn.begin():
            await _save_conversation(self._conn, self.phone, conversation, now)

    async def handled(self, inbound_id: int) -> bool:
        async with self._conn.begin():
            at = await self._conn.scalar(
                sa.select(messages.c.handled_at).where(messages.c.id == inbound_id)
            )
        return at is not None


class _Lock:
    async def acquire(self, wait: float) -> None: ...

    async def release(self) -> None: ...


class _AdvisoryLock(_Lock):
    def __init__(self, conn: AsyncConnection, phone: str) -> None:
        self.conn = conn
        self.key = self.key_for(phone)

    @staticmethod
    def key_for(phone: str) -> int:
        """A 64-bit lock key; a collision only makes two phones take turns."""
        digest = hashlib.blake2b(phone.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    async def acquire(self, wait: float) -> None:
        try:
            async with self.conn.begin():
                timeout = max(1, int(wait * 1000))
                await self.conn.execute(sa.text(f"SET LOCAL lock_timeout = {timeout}"))
                await self.conn.execute(sa.select(sa.func.pg_advisory_lock(self.key)))
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                raise PhoneBusy(f"waited {wait:g} s for this phone's turn") from exc
            raise

    async def release(self) -> None:
        try:
            async with self.conn.begin():
                await self.conn.execute(sa.select(sa.func.pg_advisory_unlock(self.key)))
        except Exception:
            log.warning("could not release a phone's advisory lock; closing its connection")
            await self.conn.invalidate()  # the server frees a closed session's locks


class _Lease(_Lock):
    def __init__(self, conn: AsyncConnection, phone: str) -> None:
        self.conn = conn
        self.phone = phone
        self.owner = uuid.uuid4().hex

    async def acquire(self, wait: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not await self._try():
            if loop.time() >= deadline:
                raise PhoneBusy(f"waited {wait:g} s for this phone's turn")
            await asyncio.sleep(_LEASE_POLL_SECONDS)

    async def _try(self) -> bool:
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
        return bool(holder == self.owner)

    async def release(self) -> None:
        try:
            async with self.conn.begin():
                await self.conn.execute(
                    phone_locks.delete().where(
                        phone_locks.c.phone == self.phone, phone_locks.c.owner == self.owner
                    )
                )
        except Exception:
            log.warning("could not release a phone's lease; it expires in %g s", LEASE_SECONDS)


# --- queries shared by Store and Turn ---------------------------------------------------------


async def _conversation(conn: AsyncConnection, phone: str) -> Conversation:
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


async def _candidates(conn: AsyncConnection, phone: str) -> tuple[Candidate, ...]:
    rows = (
        await conn.execute(
            sa.select(directory.c.personal_id, directory.c.name)
            .where(directory.c.phone == phone)
            .order_by(directory.c.id)
        )
    ).all()
    return tuple(Candidate(r.personal_id, r.name) for r in rows)


async def _thread_for(conn: AsyncConnection, phone: str, now: datetime) -> int:
    """The phone's current thread, counting one more message in it; a new one after a gap."""
    latest = (
        await conn.execute(
            sa.select(threads.c.id, threads.c.last_at)
            .where(threads.c.phone == phone)
            .order_by(threads.c.started_at.desc(), threads.c.id.desc())
            .limit(1)
        )
    ).first()
    if latest is None or now - latest.last_at > THREAD_GAP:
        new_id = await conn.scalar(
            threads.insert()
            .values(
                phone=phone,
                started_at=now,
                last_at=now,
                outcome=ThreadOutcome.OTHER.value,
                message_count=1,
            )
            .returning(threads.c.id)
        )
        return int(new_id)
    await conn.execute(
        threads.update()
        .where(threads.c.id == latest.id)
        .values(last_at=max(now, latest.last_at), message_count=threads.c.message_count + 1)
    )
    return int(latest.id)


async def _update_thread(conn: AsyncConnection, thread_id: int, h: Handled) -> None:
    """Move the thread's outcome on and note what this message told us about the customer."""
    row = (
        await conn.execute(
            sa.select(threads.c.outcome, threads.c.last_at).where(threads.c.id == thread_id)
        )
    ).first()
    if row is None:
        return
    opted_out = (
        h.after is not None
        and h.after.state is State.OPTED_OUT
        and h.before.state is not State.OPTED_OUT
    )
    before = ThreadOutcome(row.outcome)
    after = advance(before, h.prompt, opted_out)
    values: dict[str, Any] = dict(
        outcome=after.value,
        last_at=max(h.now, row.last_at),
        message_count=threads.c.message_count + (1 if h.reply is not None else 0),
    )
    if after in TICKETED and before not in TICKETED:
        values["ticket_at"] = h.now
    if h.who is not None:
        known = {k: v for k, v in vars(h.who).items() if v is not None}
        if "name" in known:
            known["name"] = str(known["name"])[:200]
        values |= known
    await conn.execute(threads.update().where(threads.c.id == thread_id).values(**values))


async def _finish(conn: AsyncConnection, h: Handled) -> int | None:
    """Write a message's outcome; the id of the reply stored (None: it was silent)."""
    state_after = (h.after if h.after is not None else h.before).state.value
    thread_id = await _thread_of(conn, h.inbound_id)
    for record, at in h.calls:
        await conn.execute(
            upstream_calls.insert().values(
                message_id=h.inbound_id,
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
    reply_id = None
    if h.reply is not None:
        states = (h.before.state.value, state_after)
        reply_id = await _insert_reply(
            conn, h.phone, thread_id, h.inbound_id, h.reply, h.prompt, states, h.segments, h.now
        )
    await conn.execute(
        messages.update()
        .where(messages.c.id == h.inbound_id)
        .values(
            intent=h.intent,
            state_before=h.before.state.value,
            state_after=state_after,
            handled_at=h.now,
        )
    )
    if thread_id is not None:
        await _update_thread(conn, thread_id, h)
    if h.after is not None:
        await _save_conversation(conn, h.phone, h.after, h.now)
        await _opt_out(conn, h.phone, h.before, h.after, h.opt_out_keyword, h.now)
    return None if reply_id is None else int(reply_id)


async def _thread_of(conn: AsyncConnection, message_id: int) -> int | None:
    found = await conn.scalar(sa.select(messages.c.thread_id).where(messages.c.id == message_id))
    return None if found is None else int(found)


async def _insert_reply(
    conn: AsyncConnection,
    phone: str,
    thread_id: int | None,
    inbound_id: int,
    text: str,
    prompt: str | None,
    states: tuple[str, str],
    segments: int | None,
    now: datetime,
) -> int:
    reply_id = await conn.scalar(
        messages.insert()
        .values(
            phone=phone,
            thread_id=thread_id,
            direction="out",
            body=text,
            prompt=prompt,
            reply_to=inbound_id,
            state_before=states[0],
            state_after=states[1],
            segments=segments,
            status="replied",
            created_at=now,
        )
        .returning(messages.c.id)
    )
    return int(reply_id)


async def _save_conversation(
    conn: AsyncConnection, phone: str, conv: Conversation, now: datetime
) -> None:
    values = dict(state=conv.state.value, data=dict(conv.data), updated_at=now)
    updated = await conn.execute(
        conversations.update().where(conversations.c.phone == phone).values(**values)
    )
    if updated.rowcount == 0:
        await conn.execute(conversations.insert().values(phone=phone, created_at=now, **values))


async def _opt_out(
    conn: AsyncConnection,
    phone: str,
    before: Conversation,
    after: Conversation,
    keyword: str | None,
    now: datetime,
) -> None:
    if after.state is State.OPTED_OUT and before.state is not State.OPTED_OUT:
        await conn.execute(opt_outs.delete().where(opt_outs.c.phone == phone))
        await conn.execute(opt_outs.insert().values(phone=phone, keyword=keyword, created_at=now))
    elif before.state is State.OPTED_OUT and after.state is not State.OPTED_OUT:
        await conn.execute(opt_outs.delete().where(opt_outs.c.phone == phone))
