"""PostgreSQL: the per-text path's multi-statement steps as function calls, a round trip each

`checkin_bot_store_text` does what bot.store.log._record_inbound does on SQLite, in the same
order: lock the phone's threads for the transaction, find its latest thread and its texts since
`recent_since`, then insert the text (into that thread if its last text is at most `thread_gap`
old, else into a new one) before moving the thread on. Called alone, in autocommit: it commits
when it returns. A repeated MessageSid raises unique_violation, and nothing of the call is kept.
One round trip where the transaction took six.

`checkin_bot_take_turn` takes the phone's turn (bot.store.turns): waits for its session-level
advisory lock (up to the session's lock_timeout; held after the call, until unlocked), then
reads the phone's conversation and directory rows in a statement of its own, which sees what
the turn before this one committed. One round trip where the lock and the read took two.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION checkin_bot_store_text(
    lock_key bigint,
    text_phone varchar,
    text_body text,
    text_sid varchar,
    text_token varchar,
    text_media integer,
    text_at timestamp,
    recent_since timestamp,
    thread_gap interval
) RETURNS TABLE (stored_id integer, stored_thread integer, recent_count bigint)
LANGUAGE plpgsql AS $$
DECLARE
    latest_id integer;
    latest_at timestamp;
BEGIN
    -- Two first texts at once must not open two threads.
    PERFORM pg_advisory_xact_lock(lock_key);
    -- Each statement below sees what was committed before it began: after the lock.
    SELECT t.id, t.last_at INTO latest_id, latest_at
        FROM threads t WHERE t.phone = text_phone
        ORDER BY t.started_at DESC, t.id DESC LIMIT 1;
    SELECT count(*) INTO recent_count
        FROM messages m
        WHERE m.phone = text_phone AND m.direction = 'in' AND m.created_at >= recent_since;
    IF latest_id IS NULL OR text_at - latest_at > thread_gap THEN
        INSERT INTO threads (phone, started_at, last_at, outcome, message_count)
            VALUES (text_phone, text_at, text_at, 'other', 1)
            RETURNING id INTO stored_thread;
    ELSE
        stored_thread := latest_id;
    END IF;
    INSERT INTO messages
        (phone, thread_id, direction, body, message_sid, idempotency_token, num_media, created_at)
        VALUES
        (text_phone, stored_thread, 'in', text_body, text_sid, text_token, text_media, text_at)
        RETURNING id INTO stored_id;
    IF stored_thread = latest_id THEN
        -- After the text: a repeated MessageSid fails holding no lock on the thread.
        UPDATE threads t
            SET last_at = GREATEST(t.last_at, text_at), message_count = t.message_count + 1
            WHERE t.id = latest_id;
    END IF;
    RETURN NEXT;
END
$$
"""


TAKE_TURN = """
CREATE OR REPLACE FUNCTION checkin_bot_take_turn(lock_key bigint, turn_phone varchar)
RETURNS TABLE (
    state varchar,
    data json,
    language varchar,
    language_source varchar,
    personal_id varchar,
    name varchar,
    entry_language varchar
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_lock(lock_key);
    RETURN QUERY
        SELECT c.state, c.data, c.language, c.language_source, d.personal_id, d.name, d.language
        FROM (SELECT turn_phone AS phone) AS asked
        LEFT OUTER JOIN conversations c ON c.phone = asked.phone
        LEFT OUTER JOIN directory d ON d.phone = asked.phone
        ORDER BY d.id;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)
        op.execute(TAKE_TURN)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS checkin_bot_take_turn(bigint, varchar)")
        op.execute(
            "DROP FUNCTION IF EXISTS checkin_bot_store_text("
            "bigint, varchar, text, varchar, varchar, integer, timestamp, timestamp, interval)"
        )
