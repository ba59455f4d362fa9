"""Every table the bot keeps, as SQLAlchemy Core: add a table here, then write its migration
(`checkin-bot migrate --new-revision "what changed"`); tests/test_schema.py keeps them equal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


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

    # On SQLite, the text SQLAlchemy's DATETIME stores and reads ("2026-11-24 09:00:00.000000"),
    # in one step each instead of the decorator's two: a text binds about twenty datetimes
    # (tests/test_schema.py holds them to SQLAlchemy's own).

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            v = value.astimezone(UTC)
            return _SQLITE_DATETIME % (
                v.year,
                v.month,
                v.day,
                v.hour,
                v.minute,
                v.second,
                v.microsecond,
            )

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        slow = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or slow is None:
            return slow

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                return datetime.fromisoformat(value + "+00:00")
            except (TypeError, ValueError):  # not as SQLAlchemy writes it
                return slow(value)

        return process


_SQLITE_DATETIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's DATETIME storage format


metadata = sa.MetaData()

conversations = sa.Table(
    # The bot's memory of each phone: where its conversation stands (bot.conversation).
    "conversations",
    metadata,
    sa.Column("phone", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    # The language replies go out in, and why (chosen, detected, virtualq, directory).
    sa.Column("language", sa.String(8)),
    sa.Column("language_source", sa.String(16)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

threads = sa.Table(
    # One visit's texts from one phone, for staff (the staff pages call it a conversation): a
    # new thread starts when a phone texts after THREAD_GAP of silence. Its summary columns are
    # kept up to date as messages are handled.
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
    sa.Column("intent", sa.String(64)),  # inbound: what it was read as (bot.understanding)
    sa.Column("understood", sa.String(300)),  # inbound: why it was read so, for staff
    sa.Column("language", sa.String(8)),  # inbound: the language it was written in, if sure;
    # outbound: the language of the reply
    sa.Column("prompt", sa.String(64)),  # outbound: the ReplyKey of the text sent
    sa.Column("sent_by", sa.String(64)),  # outbound: the staff member who wrote it
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
    # The texts sent, by phone (the staff pages' "who wrote the last text before this one"):
    # one seek a question, however many times the phone texted in between.
    sa.Index(
        "ix_messages_outbound_phone",
        "phone",
        "id",
        sqlite_where=sa.text("direction = 'out'"),
        postgresql_where=sa.text("direction = 'out'"),
    ),
    # Texts whose answer was never decided (the reclaimer's question): a handful of rows
    # whatever the log's size.
    sa.Index(
        "ix_messages_unanswered",
        "id",
        sqlite_where=sa.text("direction = 'in' AND handled_at IS NULL"),
        postgresql_where=sa.text("direction = 'in' AND handled_at IS NULL"),
    ),
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
    sa.Column("outcome", sa.String(64), nullable=False),  # the call's classified result
    sa.Column("response", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_upstream_calls_created_at", "created_at"),
)

directory = sa.Table(
    # Phone -> PersonalId, imported by `checkin-bot directory import` (bot.directory_file).
    "directory",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("phone", sa.String(32), nullable=False, index=True),
    sa.Column("personal_id", sa.String(30), nullable=False),
    sa.Column("name", sa.String(100)),
    sa.Column("language", sa.String(8)),  # the customer's language (ISO 639-1), if known
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("phone", "personal_id", name="uq_directory_phone_personal_id"),
)

opt_outs = sa.Table(
    # Unused since schema 0005: a phone's opt-out is its conversation's `opted_out` state, the
    # one place that is read. Kept until a later release drops it, since the release phase
    # migrates while the previous release still runs and writes here.
    "opt_outs",
    metadata,
    sa.Column("phone", sa.String(64), primary_key=True),
    sa.Column("keyword", sa.String(32)),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

phone_locks = sa.Table(
    # Per-phone leases on SQLite, where several worker processes share one file; PostgreSQL
    # uses advisory locks instead (bot.store.turns).
    "phone_locks",
    metadata,
    sa.Column("phone", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

staff_accounts = sa.Table(
    # Named staff logins (`checkin-bot staff add`); STAFF_USERNAME/STAFF_PASSWORD is one more
    # admin, kept in the environment rather than here.
    "staff_accounts",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # desk or admin
    sa.Column("password_hash", sa.String(255), nullable=False),  # scrypt, see staff.accounts
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

staff_sessions = sa.Table(
    # A staff login's session: the cookie carries a random token, this row its hash. Logging
    # out ends the row, so every copy of the cookie ends with it.
    "staff_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("credential", sa.String(64), nullable=False),  # which password it logged in with
    sa.Column("client", sa.String(64)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Index("ix_staff_sessions_account", "account"),
)

login_failures = sa.Table(
    # Failed staff logins, by client address and by user name, counted across processes.
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(100), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_login_failures_key_at", "key", "at"),
)

audit_log = sa.Table(
    # Every staff action: who did what, to which conversation, when (/staff/audit).
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(200)),
    sa.Column("detail", sa.Text),
    sa.Index("ix_audit_log_at", "at"),
)

watches = sa.Table(
    # A checked-in case the bot keeps an eye on until it is served or closed, to text "almost
    # your turn", "your turn" and "missed your call" (bot.notify).
    "watches",
    metadata,
    sa.Column("case_id", sa.BigInteger, primary_key=True),
    sa.Column("phone", sa.String(64), nullable=False),
    sa.Column("thread_id", sa.Integer),
    sa.Column("personal_id", sa.String(30)),
    sa.Column("name", sa.String(100)),  # named in texts when the phone is shared
    sa.Column("ticket", sa.String(32), nullable=False),
    sa.Column("unit_id", sa.Integer),  # whose waiting list to read (from the case)
    sa.Column("service_name", sa.String(100)),
    sa.Column("language", sa.String(8)),
    sa.Column("shared", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("polled_at", UTCDateTime),
    sa.Column("position", sa.Integer),  # 0-based, as QueuePosition
    sa.Column("almost_at", UTCDateTime),  # "almost your turn" texted (or not needed)
    sa.Column("called_at", UTCDateTime),
    sa.Column("counter", sa.String(64)),
    sa.Column("done_at", UTCDateTime),  # served, closed, left, or no longer watched
    sa.Column("outcome", sa.String(16)),  # served, missed, cancelled, left, opted_out, gone
    sa.Index("ix_watches_open", "done_at", "unit_id"),
    sa.Index("ix_watches_phone", "phone"),
)

notifications = sa.Table(
    # The send queue: every text the bot sends on its own (notifications, staff replies,
    # broadcasts), written before it is sent, sent once, at TWILIO_SENDS_PER_SECOND.
    "notifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(100), unique=True),  # "called:123": once per case and kind
    sa.Column("phone", sa.String(64), nullable=False),
    sa.Column("thread_id", sa.Integer),
    sa.Column("kind", sa.String(16), nullable=False),  # almost, called, missed, staff, broadcast
    sa.Column("priority", sa.Integer, nullable=False),  # lower goes first
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("reply_key", sa.String(64)),
    sa.Column("language", sa.String(8)),
    sa.Column("account", sa.String(64)),  # the staff member who wrote it, if one did
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("not_after", UTCDateTime),  # too stale to send after this
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("message_id", sa.Integer),  # its row in messages once sent (or refused)
    sa.Column("status", sa.String(16), nullable=False),  # queued, sent, unsent, stale, skipped
    sa.Column("sent_at", UTCDateTime),
    sa.Column("error", sa.String(200)),
    sa.Index("ix_notifications_queue", "status", "priority", "id"),
    sa.Index("ix_notifications_thread", "thread_id", "id"),  # a transcript's texts not yet sent
)

leases = sa.Table(
    # Jobs one process does for all (the notifier): who holds it, until when.
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

attention = sa.Table(
    # A conversation staff have looked at: /staff/attention lists it again only for what
    # happened after.
    "attention",
    metadata,
    sa.Column("thread_id", sa.Integer, primary_key=True),
    sa.Column("handled_at", UTCDateTime, nullable=False),
    sa.Column("handled_by", sa.String(64), nullable=False),
)

broadcasts = sa.Table(
    # A text to everyone waiting, once per form (its token), with who sent it.
    "broadcasts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("audience", sa.String(200)),  # which waiting customers: all, a unit, a service
    sa.Column("recipients", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
