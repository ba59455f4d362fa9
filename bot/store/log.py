"""The log: every text in and out, grouped into threads (one visit each), with the VirtualQ
calls each caused and each reply's delivery status; and its retention (purge)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..sms import segments as segments_of
from . import conversations as saved_conversations
from . import watches
from .engine import Transactions
from .prepared import Prepared, Write, is_unique_violation, run_all, together_on_driver
from .tables import (
    attention,
    conversations,
    login_failures,
    messages,
    notifications,
    staff_sessions,
    threads,
    upstream_calls,
)
from .tables import watches as watched

THREAD_GAP = timedelta(hours=6)  # silence after which a phone's next text starts a new thread
# An inbound text still unanswered this long after it arrived was dropped (its process died):
# staff see it flagged, and the reclaimer answers it.
UNANSWERED_AFTER = timedelta(seconds=60)

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


def advisory_key(name: str) -> int:
    """A 64-bit PostgreSQL advisory lock key for a name; a collision only makes two names
    take turns."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Inbound:
    """A stored inbound message; `duplicate` when Twilio delivered this MessageSid before."""

    id: int
    duplicate: bool
    thread_id: int | None = None
    recent: int = 0  # the phone's texts since `recent_since`, this one included
    other_phone: bool = False  # a duplicate whose MessageSid came before from another phone


class Taking(Protocol):
    """A phone's turn tried as its text is stored, on PostgreSQL (bot.store.turns.Arrival)."""

    conn: AsyncConnection  # the connection the turn's advisory lock is taken on

    async def storing(self, call: Awaitable[list[Any]]) -> list[Any]:
        """Run the storing call (the lock may be held on `conn` should it fail)."""

    def took(self, rows: Sequence[Any] | None) -> None:
        """The turn's read (`_TURN_READ`'s columns) when the call took it; None: it did not."""


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
class Call:
    """One upstream call, as the log keeps it."""

    operation: str
    request: Mapping[str, Any]
    status: int | None
    latency_ms: int
    outcome: str
    response: str | None
    error: str | None
    at: datetime


@dataclass(frozen=True)
class Who:
    """A thread's customer, for staff search: any field may be unknown (None)."""

    personal_id: str | None = None
    name: str | None = None
    ticket: str | None = None
    case_id: int | None = None


# Moves a thread's outcome on: for each outcome it may have stored, (the outcome after, whether
# that gave the thread its ticket); under None, for any stored outcome not named.
Advance = Mapping[str | None, tuple[str, bool]]


@dataclass(frozen=True)
class Handled:
    """One message's outcome, written in one transaction: its upstream calls, the reply, the
    thread's summary and the phone's conversation (`state_after` None: not ours to change,
    e.g. another message from this phone still holds the turn)."""

    inbound_id: int
    phone: str
    state_before: str
    state_after: str | None
    data_after: Mapping[str, Any] | None
    intent: str
    reply: str | None
    reply_key: str | None
    segments: int | None
    calls: tuple[Call, ...]
    now: datetime
    advance: Advance | None = None
    who: Who | None = None
    understood: str | None = None  # why the text was read as `intent`, for staff
    language: str | None = None  # the language the text was written in, if sure
    reply_language: str | None = None
    # The phone's reply language from now on, and why (None: unchanged).
    remember_language: tuple[str | None, str | None] | None = None
    watch: tuple[dict[str, Any], ...] = ()  # checked-in cases to keep an eye on (bot.notify)
    thread_id: int | None = None  # the inbound message's thread, if known (saves a read)
    stop_watching: str | None = None  # why the phone's cases are no longer watched


@dataclass
class Purged:
    """What a purge deleted."""

    threads: int = 0
    messages: int = 0
    upstream_calls: int = 0
    conversations: int = 0  # phones' conversation rows

    def add(self, threads: int, messages: int, upstream_calls: int) -> None:
        self.threads += threads
        self.messages += messages
        self.upstream_calls += upstream_calls


class Log:
    """Reads and writes of the message log outside a phone's turn; each its own transaction."""

    def __init__(self, engine: AsyncEngine, tx: Transactions) -> None:
        self.engine = engine
        self.tx = tx

    async def record_inbound(
        self,
        phone: str,
        sid: str,
        body: str,
        num_media: int,
        now: datetime,
        idempotency_token: str | None = None,
        recent_since: datetime | None = None,
        then: Callable[[Connection, int], None] | None = None,
        taking: Taking | None = None,
    ) -> Inbound:
        """Store an inbound message before anything else; a repeated MessageSid is flagged.
        With `recent_since`, also counts the phone's texts since then (for the rate limit), in
        the same transaction; `then(conn, recent)` runs in it too, once the text is in (taking
        the phone's turn on SQLite: bot.store.turns.Arrival). On PostgreSQL, `taking` tries the
        phone's turn in the same call, on its connection (bot.store.turns.Arrival.taking)."""
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
            if then is None and self.engine.dialect.name == "postgresql":
                return await self._store_text(row, recent_since, taking)
            return await self.tx.run(_record_inbound, row, recent_since, then)
        except Exception as exc:
            if not is_unique_violation(exc):
                raise
            found = await self.tx.run(_message_with_sid, sid)
            if found is None:
                raise
            return Inbound(found[0], True, other_phone=found[1] != phone)

    async def _store_text(
        self, row: dict[str, Any], recent_since: datetime | None, taking: Taking | None
    ) -> Inbound:
        """`_record_inbound` on PostgreSQL: the same steps in one function call (migration
        0011), in autocommit: one round trip where the transaction took six. With `taking`,
        the call also tries the phone's turn (migration 0012), and tells `taking` what it
        read when it got it."""
        phone, now = row["phone"], row["created_at"]
        params = {
            **row,
            "key": advisory_key(f"thread:{phone}"),
            "since": recent_since if recent_since is not None else now,
            "gap": THREAD_GAP,
        }
        if taking is None:
            async with self.engine.connect() as conn:
                [found] = await _STORE_TEXT.execute_on_driver(conn, params)
        else:
            params["turn_key"] = advisory_key(phone)
            rows = await taking.storing(
                _STORE_TEXT_TAKE_TURN.execute_on_driver(taking.conn, params)
            )
            found = rows[0]
            taking.took(rows if found.took else None)
        recent = int(found.recent_count) + 1 if recent_since is not None else 0
        return Inbound(int(found.stored_id), False, int(found.stored_thread), recent)

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
        update = (
            messages.update()
            .where(which, messages.c.direction == "out", current_rank <= rank)
            .values(
                message_sid=sa.func.coalesce(sid, messages.c.message_sid),
                status=status,
                error_code=sa.func.coalesce(error_code, messages.c.error_code),
            )
        )
        try:
            return await self.tx.run(_changed, update)
        except sa.exc.IntegrityError:
            # The SID is another message's already (an inbound text's, say): a callback that
            # cannot be ours. Nothing to record, and Twilio would only retry an error.
            return False

    async def record_reply(
        self, inbound_id: int, phone: str, text: str, reply_key: str, segments: int, now: datetime
    ) -> int:
        """An extra reply to a message that is still being handled (the holding reply)."""
        return await self.tx.run(_record_reply, inbound_id, phone, text, reply_key, segments, now)

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
                        # Spelled as the partial index ix_messages_unanswered is, literally,
                        # so that both databases' planners use it.
                        sa.text("direction = 'in' AND handled_at IS NULL"),
                        messages.c.created_at < before,
                    )
                    .order_by(messages.c.id)
                    .limit(limit)
                )
            ).all()
        return [Unanswered(r.id, r.phone, r.body, r.created_at) for r in rows]

    async def finish(self, handled: Handled) -> int | None:
        """Persist a message's outcome outside a turn, in one transaction; the reply's id."""
        return await self.tx.run(finish, handled)

    async def record_sent(
        self,
        phone: str,
        thread_id: int | None,
        body: str,
        reply_key: str | None,
        language: str | None,
        now: datetime,
        account: str | None = None,
    ) -> int:
        """A text the bot (or a staff member) sends on its own, in its thread, before it is
        sent: its delivery status lands on this row."""
        return await self.tx.run(
            _record_sent, phone, thread_id, body, reply_key, language, now, account
        )

    async def state_of(self, phone: str) -> str:
        """The phone's conversation state as stored."""
        return await self.tx.run(_state_of, phone)

    async def purge(
        self, before: datetime, keep_states: tuple[str, ...], batch: int = 500
    ) -> Purged:
        """Delete threads whose last text is older than `before`, with their messages and
        upstream calls, and phones' conversations last touched before it unless their state
        is one of `keep_states`. Short transactions of `batch` threads, so the bot keeps
        answering while a purge runs."""
        purged = Purged()
        while True:
            async with self.tx.begin() as conn:
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
                await conn.execute(attention.delete().where(attention.c.thread_id.in_(ids)))
                await conn.execute(threads.delete().where(threads.c.id.in_(ids)))
                purged.add(len(ids), texts.rowcount, calls.rowcount)
        async with self.tx.begin() as conn:
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
                    conversations.c.updated_at < before, conversations.c.state.not_in(keep_states)
                )
            )
            purged.conversations = memory.rowcount
        # What else holds a customer's phone, name or words, or a staff member's address: the
        # texts the bot queued (sent or given up on; one still queued stays), the cases it
        # watched (closed ones), staff sessions and failed logins (both long over). In batches,
        # like the conversations: a first purge of a year's queue must not hold the writer.
        leftovers = [
            (
                notifications.c.id,
                notifications.c.created_at < before,
                notifications.c.status.not_in(("queued", "sending")),
            ),
            (watched.c.case_id, watched.c.created_at < before, watched.c.done_at.is_not(None)),
            (staff_sessions.c.token_hash, staff_sessions.c.last_seen_at < before),
            (login_failures.c.id, login_failures.c.at < before),
        ]
        for key, *old in leftovers:
            while True:
                async with self.tx.begin() as conn:
                    chosen = (await conn.execute(sa.select(key).where(*old).limit(batch))).scalars()
                    keys = chosen.all()
                    if keys:
                        await conn.execute(key.table.delete().where(key.in_(keys)))
                if len(keys) < batch:
                    break
        return purged


# --- the statements of the per-text path, built once (see store.engine.Transactions) -------

_INSERT_MESSAGE = Prepared(messages.insert().returning(messages.c.id))
_MESSAGE_WITH_SID = Prepared(
    sa.select(messages.c.id, messages.c.phone).where(messages.c.message_sid == sa.bindparam("sid"))
)
_latest_thread = (
    sa.select(threads.c.id, threads.c.last_at)
    .where(threads.c.phone == sa.bindparam("phone"))
    .order_by(threads.c.started_at.desc(), threads.c.id.desc())
    .limit(1)
)
_LATEST_THREAD = Prepared(_latest_thread)
_NEW_THREAD = Prepared(threads.insert().returning(threads.c.id))
# The phone's latest thread (id, last_at: null when it has none) and its texts since `since`.
_THREAD_AND_RECENT = Prepared(
    sa.select(
        _latest_thread.with_only_columns(threads.c.id).scalar_subquery().label("id"),
        _latest_thread.with_only_columns(threads.c.last_at).scalar_subquery().label("last_at"),
        sa.select(sa.func.count())
        .select_from(messages)
        .where(
            messages.c.phone == sa.bindparam("phone"),
            messages.c.direction == "in",
            messages.c.created_at >= sa.bindparam("since"),
        )
        .scalar_subquery()
        .label("recent"),
    )
)
_THREAD_GOES_ON = Prepared(
    threads.update()
    .where(threads.c.id == sa.bindparam("thread"))
    .values(last_at=sa.bindparam("last"), message_count=threads.c.message_count + 1)
)
_THREAD_COUNTS_ONE_MORE = Prepared(
    threads.update()
    .where(threads.c.id == sa.bindparam("thread"))
    .values(message_count=threads.c.message_count + 1)
)
_THREAD_OF = Prepared(
    sa.select(messages.c.thread_id).where(messages.c.id == sa.bindparam("message_id"))
)
_HANDLED_AT = Prepared(
    sa.select(messages.c.handled_at).where(messages.c.id == sa.bindparam("message_id"))
)
_ANSWERED_LATER = Prepared(
    sa.select(
        sa.select(messages.c.id)
        .where(
            messages.c.phone == sa.bindparam("phone"),
            messages.c.direction == "in",
            messages.c.id > sa.bindparam("message_id"),
            messages.c.handled_at.is_not(None),
        )
        .exists()
    )
)
_MARK_HANDLED = Prepared(
    messages.update()
    .where(messages.c.id == sa.bindparam("message_id"))
    .values(
        intent=sa.bindparam("intent_"),
        understood=sa.bindparam("understood_"),
        language=sa.bindparam("language_"),
        state_before=sa.bindparam("state_before_"),
        state_after=sa.bindparam("state_after_"),
        handled_at=sa.bindparam("handled_at_"),
    )
)


@functools.cache
def _insert_calls(count: int) -> Prepared:
    """An INSERT of `count` upstream calls, each column from `<column>_<i>`."""
    columns = [c for c in upstream_calls.c if c.name != "id"]
    rows = [
        {c.name: sa.bindparam(f"{c.name}_{i}", type_=c.type) for c in columns} for i in range(count)
    ]
    return Prepared(upstream_calls.insert().values(rows), by_columns=False)


_text_arguments = (
    sa.bindparam("phone", type_=sa.String),
    sa.bindparam("body", type_=sa.Text),
    sa.bindparam("message_sid", type_=sa.String),
    sa.bindparam("idempotency_token", type_=sa.String),
    sa.bindparam("num_media", type_=sa.Integer),
    sa.bindparam("created_at", type_=messages.c.created_at.type),
    sa.bindparam("since", type_=messages.c.created_at.type),
    sa.bindparam("gap", type_=sa.Interval),
)
_stored = sa.func.checkin_bot_store_text(
    sa.bindparam("key", type_=sa.BigInteger), *_text_arguments
).table_valued(
    sa.column("stored_id", sa.Integer),
    sa.column("stored_thread", sa.Integer),
    sa.column("recent_count", sa.BigInteger),
)
# PostgreSQL's `_record_inbound` (see Log._store_text).
_STORE_TEXT = Prepared(
    sa.select(_stored.c.stored_id, _stored.c.stored_thread, _stored.c.recent_count)
)
# ... and with it, the phone's turn when it is free (migration 0012): the stored text on each
# row, `took`, and the turn's read (bot.store.turns: `_TURN_READ`'s columns) when it took it.
_stored_and_turn = sa.func.checkin_bot_store_text_take_turn(
    sa.bindparam("key", type_=sa.BigInteger),
    sa.bindparam("turn_key", type_=sa.BigInteger),
    *_text_arguments,
).table_valued(
    *(sa.column(c.key, c.type) for c in _stored.c),
    sa.column("took", sa.Boolean),
    sa.column("state", conversations.c.state.type),
    sa.column("data", conversations.c.data.type),
    sa.column("language", conversations.c.language.type),
    sa.column("language_source", conversations.c.language_source.type),
    sa.column("personal_id", sa.String),
    sa.column("name", sa.String),
    sa.column("entry_language", sa.String),
)
_STORE_TEXT_TAKE_TURN = Prepared(sa.select(*_stored_and_turn.c))
_THREAD_LOCK = Prepared(
    sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("key", type_=sa.BigInteger)))
)


def _record_inbound(
    conn: Connection,
    row: dict[str, Any],
    recent_since: datetime | None,
    then: Callable[[Connection, int], None] | None = None,
) -> Inbound:
    phone, now = row["phone"], row["created_at"]
    if conn.dialect.name == "postgresql":
        # Two first texts at once must not open two threads (SQLite's writes are serialised
        # already: BEGIN IMMEDIATE holds the database's write lock).
        _THREAD_LOCK.execute(conn, {"key": advisory_key(f"thread:{phone}")})
    # The phone's latest thread and its texts of the last minute, in one statement.
    since = recent_since if recent_since is not None else now
    found = _THREAD_AND_RECENT.execute(conn, {"phone": phone, "since": since}).first()
    goes_on = _goes_on(found, now)
    thread_id = int(found.id) if goes_on else _new_thread(conn, phone, now)
    new_id = int(_INSERT_MESSAGE.execute(conn, {**row, "thread_id": thread_id}).scalar_one())
    if goes_on:
        # After the text: a repeated MessageSid fails (or waits for the first delivery's
        # transaction) holding no lock on the thread, which that first delivery's outcome
        # updates (PostgreSQL found the deadlock the other way round).
        _THREAD_GOES_ON.execute(conn, {"thread": thread_id, "last": max(now, found.last_at)})
    recent = int(found.recent or 0) + 1 if recent_since is not None else 0
    if then is not None:
        then(conn, recent)
    return Inbound(new_id, False, thread_id, recent)


def _message_with_sid(conn: Connection, sid: str) -> tuple[int, str] | None:
    found = _MESSAGE_WITH_SID.execute(conn, {"sid": sid}).first()
    return None if found is None else (int(found.id), found.phone)


def _changed(conn: Connection, statement: sa.Executable) -> bool:
    return bool(conn.execute(statement).rowcount)


def _state_of(conn: Connection, phone: str) -> str:
    return saved_conversations.load(conn, phone).state


def _record_reply(
    conn: Connection,
    inbound_id: int,
    phone: str,
    text: str,
    reply_key: str,
    segments: int,
    now: datetime,
) -> int:
    state = saved_conversations.load(conn, phone).state
    thread_id = _thread_of(conn, inbound_id)
    args = (phone, thread_id, inbound_id, text, reply_key, (state, state), segments, now)
    statement, row = _reply(*args)
    reply_id = int(statement.execute(conn, row).scalar_one())
    if thread_id is not None:
        _THREAD_COUNTS_ONE_MORE.execute(conn, {"thread": thread_id})
    return reply_id


def _record_sent(
    conn: Connection,
    phone: str,
    thread_id: int | None,
    body: str,
    reply_key: str | None,
    language: str | None,
    now: datetime,
    account: str | None,
) -> int:
    if thread_id is None:
        thread_id = _thread_for(conn, phone, now)
    else:
        _THREAD_COUNTS_ONE_MORE.execute(conn, {"thread": thread_id})
    state = saved_conversations.load(conn, phone).state
    row = dict(
        phone=phone,
        thread_id=thread_id,
        direction="out",
        body=body,
        prompt=reply_key,
        state_before=state,
        state_after=state,
        segments=segments_of(body),
        status="queued",
        language=language,
        sent_by=account,
        created_at=now,
    )
    return int(_INSERT_MESSAGE.execute(conn, row).scalar_one())


def handled(conn: Connection, inbound_id: int) -> bool:
    """Whether an inbound message's answer has been decided."""
    return _HANDLED_AT.execute(conn, {"message_id": inbound_id}).scalar() is not None


def superseded(conn: Connection, inbound_id: int, phone: str) -> bool:
    """Whether the phone has texted since, and that later text was answered: answering this
    one now would answer twice."""
    found: object = _ANSWERED_LATER.execute(
        conn, {"phone": phone, "message_id": inbound_id}
    ).scalar()
    return bool(found)  # True on PostgreSQL, 1 on SQLite


def finish(conn: Connection, h: Handled) -> int | None:
    """Write a message's outcome; the id of the reply stored (None: it was silent)."""
    thread_id = h.thread_id if h.thread_id is not None else _thread_of(conn, h.inbound_id)
    writes, reply = _outcome(h, thread_id, conn.dialect.name)
    results = run_all(conn, writes)
    return None if reply is None else int(results[reply].scalar_one())


def finishes_together(h: Handled) -> bool:
    """Whether `finish_together` can write this outcome: its thread is known, and it does not
    both watch cases and stop watching the phone's (the stop would miss the new watches)."""
    return h.thread_id is not None and not (h.watch and h.stop_watching)


async def finish_together(conn: AsyncConnection, h: Handled) -> int | None:
    """`finish` as one statement in autocommit on PostgreSQL (see `finishes_together`): one
    round trip, where a transaction takes eight."""
    writes, reply = _outcome(h, h.thread_id, conn.dialect.name)
    row = await together_on_driver(conn, writes, reply)
    return None if row is None else int(row[0])


def _outcome(h: Handled, thread_id: int | None, dialect: str) -> tuple[list[Write], int | None]:
    """A message's outcome as writes, none reading what another writes, and which of them
    stores the reply (None: it was silent)."""
    writes: list[Write] = []
    if h.calls:  # one statement: the calls' ids in the order they were made
        calls = {
            f"{name}_{i}": value
            for i, c in enumerate(h.calls)
            for name, value in dict(
                message_id=h.inbound_id,
                operation=c.operation,
                request=dict(c.request),
                status=c.status,
                latency_ms=c.latency_ms,
                outcome=c.outcome,
                response=c.response,
                error=c.error,
                created_at=c.at,
            ).items()
        }
        writes.append((_insert_calls(len(h.calls)), calls))
    state_after = h.state_after if h.state_after is not None else h.state_before
    reply = None
    if h.reply is not None:
        reply = len(writes)
        states = (h.state_before, state_after)
        args = (h.phone, thread_id, h.inbound_id, h.reply, h.reply_key, states, h.segments)
        writes.append(_reply(*args, h.now, h.reply_language))
    handled = {
        "message_id": h.inbound_id,
        "intent_": h.intent[:64],
        "understood_": (h.understood or "")[:300] or None,
        "language_": h.language,
        "state_before_": h.state_before,
        "state_after_": state_after,
        "handled_at_": h.now,
    }
    writes.append((_MARK_HANDLED, handled))
    if thread_id is not None:
        writes.append(_thread_moves_on(thread_id, h))
        writes += watches.starting(dialect, [{**w, "thread_id": thread_id} for w in h.watch])
    if h.stop_watching:
        writes += watches.stopping(h.phone, h.stop_watching, h.now)
    if h.state_after is not None:
        data, language = h.data_after or {}, h.remember_language
        writes.append(
            saved_conversations.saving(dialect, h.phone, h.state_after, data, h.now, language)
        )
    return writes, reply


def _thread_for(conn: Connection, phone: str, now: datetime) -> int:
    """The phone's current thread, counting one more message in it; a new one after a gap."""
    latest = _LATEST_THREAD.execute(conn, {"phone": phone}).first()
    if not _goes_on(latest, now):
        return _new_thread(conn, phone, now)
    _THREAD_GOES_ON.execute(conn, {"thread": latest.id, "last": max(now, latest.last_at)})
    return int(latest.id)


def _goes_on(latest: Any, now: datetime) -> bool:
    """Whether a text at `now` belongs in the phone's latest thread (id, last_at; None or a
    null id: it has none)."""
    return latest is not None and latest.id is not None and now - latest.last_at <= THREAD_GAP


def _new_thread(conn: Connection, phone: str, now: datetime) -> int:
    row = dict(phone=phone, started_at=now, last_at=now, outcome="other", message_count=1)
    return int(_NEW_THREAD.execute(conn, row).scalar_one())


def _thread_moves_on(thread_id: int, h: Handled) -> Write:
    """The thread's update: its outcome moved on by `h.advance` from the one it has stored,
    its last text's time, its message count and what this message told us about the
    customer; one statement, no read before it."""
    values: dict[str, Any] = {}
    if h.who is not None:
        values = {k: v for k, v in vars(h.who).items() if v is not None}
        if "name" in values:
            values["name"] = str(values["name"])[:200]
    params = {f"new_{name}": value for name, value in values.items()}
    params |= {"thread": thread_id, "added": int(h.reply is not None), "now": h.now}
    moves = None
    if h.advance is not None:
        named = [(stored, after) for stored, after in h.advance.items() if stored is not None]
        moves = len(named)
        for i, (stored, (outcome, ticketed)) in enumerate(named):
            params |= {f"from_{i}": stored, f"to_{i}": outcome, f"at_{i}": ticketed}
        outcome, ticketed = h.advance[None]
        params |= {"to_else": outcome, "at_else": ticketed}
    return _thread_update(tuple(sorted(values)), moves), params


@functools.cache
def _thread_update(columns: tuple[str, ...], moves: int | None) -> Prepared:
    """The thread's update for these columns (each from the parameter `new_<column>`), built
    once (building one costs more than running it). `last_at` becomes `now` unless later, the
    message count grows by `added`. With `moves` (an Advance naming that many outcomes): the
    outcome becomes `to_<i>` where it is `from_<i>` (else `to_else`), and `ticket_at` becomes
    `now` where `at_<i>` (else `at_else`) is true."""
    now = sa.bindparam("now", type_=threads.c.last_at.type)
    values: dict[str, Any] = {
        name: sa.bindparam(f"new_{name}", type_=threads.c[name].type) for name in columns
    }
    values["last_at"] = sa.case((threads.c.last_at > now, threads.c.last_at), else_=now)
    values["message_count"] = threads.c.message_count + sa.bindparam("added", type_=sa.Integer)
    if moves is not None:
        stored = [
            threads.c.outcome == sa.bindparam(f"from_{i}", type_=sa.String) for i in range(moves)
        ]

        def by_outcome(name: str, type_: Any) -> Any:
            return sa.case(
                *((s, sa.bindparam(f"{name}_{i}", type_=type_)) for i, s in enumerate(stored)),
                else_=sa.bindparam(f"{name}_else", type_=type_),
            )

        values["outcome"] = by_outcome("to", sa.String)
        values["ticket_at"] = sa.case(
            (by_outcome("at", sa.Boolean), now), else_=threads.c.ticket_at
        )
    return Prepared(threads.update().where(threads.c.id == sa.bindparam("thread")).values(**values))


def _thread_of(conn: Connection, message_id: int) -> int | None:
    found = _THREAD_OF.execute(conn, {"message_id": message_id}).scalar()
    return None if found is None else int(found)


def _reply(
    phone: str,
    thread_id: int | None,
    inbound_id: int,
    text: str,
    reply_key: str | None,
    states: tuple[str, str],
    segments: int | None,
    now: datetime,
    language: str | None = None,
) -> Write:
    row = dict(
        phone=phone,
        thread_id=thread_id,
        direction="out",
        body=text,
        prompt=reply_key,
        reply_to=inbound_id,
        state_before=states[0],
        state_after=states[1],
        segments=segments,
        status="replied",
        language=language,
        created_at=now,
    )
    return _INSERT_MESSAGE, row
