"""PostgreSQL: storing a text and taking its phone's turn in one function call

`checkin_bot_store_text_take_turn` stores a text as `checkin_bot_store_text` does (migration
0011), then tries the phone's session-level advisory lock without waiting
(`pg_try_advisory_lock`) and, when it got it, reads the phone's conversation and directory rows
as `checkin_bot_take_turn` does, in a statement of its own after the lock (a volatile
function's statements each see what was committed before they began: the turn before this one
committed its outcome before it unlocked). Each row carries the stored text's id, thread and
recent count, and `took`; when another session holds the lock, one row with `took` false and
no read, and the caller waits for the turn as before. Called alone, in autocommit: the text is
committed when the call returns, the lock (if taken) held until unlocked. A repeated MessageSid
raises unique_violation before the lock is tried. One round trip where storing and taking the
turn took two, for a text that arrives when its phone has none other in hand (the common case).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION checkin_bot_store_text_take_turn(
    lock_key bigint,
    turn_key bigint,
    text_phone varchar,
    text_body text,
    text_sid varchar,
    text_token varchar,
    text_media integer,
    text_at timestamp,
    recent_since timestamp,
    thread_gap interval
) RETURNS TABLE (
    stored_id integer,
    stored_thread integer,
    recent_count bigint,
    took boolean,
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
DECLARE
    s record;
BEGIN
    SELECT * INTO STRICT s FROM checkin_bot_store_text(
        lock_key, text_phone, text_body, text_sid, text_token, text_media, text_at,
        recent_since, thread_gap
    );
    IF NOT pg_try_advisory_lock(turn_key) THEN
        RETURN QUERY SELECT s.stored_id, s.stored_thread, s.recent_count, false,
            NULL::varchar, NULL::json, NULL::varchar, NULL::varchar,
            NULL::varchar, NULL::varchar, NULL::varchar;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT s.stored_id, s.stored_thread, s.recent_count, true,
            c.state, c.data, c.language, c.language_source, d.personal_id, d.name, d.language
        FROM (SELECT text_phone AS phone) AS asked
        LEFT OUTER JOIN conversations c ON c.phone = asked.phone
        LEFT OUTER JOIN directory d ON d.phone = asked.phone
        ORDER BY d.id;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS checkin_bot_store_text_take_turn(bigint, bigint, varchar,"
            " text, varchar, varchar, integer, timestamp, timestamp, interval)"
        )
