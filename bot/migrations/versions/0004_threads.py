"""threads (one visit's texts, for staff), reply prompt keys, lookups for the staff pages

Existing messages are grouped into threads the way the bot now does as they arrive: a phone's
text after more than six hours of silence starts a new thread. Messages stored before this
migration kept no prompt keys, so a backfilled thread's outcome is judged from the state its
last message left: checked_in, opted_out, or other.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

GAP = timedelta(hours=6)  # store.THREAD_GAP when this migration was written


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("personal_id", sa.String(length=30), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("ticket", sa.String(length=32), nullable=True),
        sa.Column("case_id", sa.BigInteger(), nullable=True),
        sa.Column("ticket_at", sa.DateTime(), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.create_index(
            "ix_threads_outcome_started", ["outcome", "started_at", "id"], unique=False
        )
        batch_op.create_index("ix_threads_personal_id", ["personal_id"], unique=False)
        batch_op.create_index(
            "ix_threads_phone_started", ["phone", "started_at", "id"], unique=False
        )
        batch_op.create_index("ix_threads_started", ["started_at", "id"], unique=False)
        batch_op.create_index("ix_threads_ticket", ["ticket"], unique=False)

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thread_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prompt", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_messages_thread_id", ["thread_id", "id"], unique=False)
        batch_op.create_foreign_key("fk_messages_thread_id", "threads", ["thread_id"], ["id"])

    with op.batch_alter_table("upstream_calls", schema=None) as batch_op:
        batch_op.create_index("ix_upstream_calls_created_at", ["created_at"], unique=False)

    _backfill()


def _backfill() -> None:
    conn = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("phone", sa.String),
        sa.column("thread_id", sa.Integer),
        sa.column("state_after", sa.String),
        sa.column("created_at", sa.DateTime),
    )
    threads = sa.table(
        "threads",
        sa.column("id", sa.Integer),
        sa.column("phone", sa.String),
        sa.column("started_at", sa.DateTime),
        sa.column("last_at", sa.DateTime),
        sa.column("outcome", sa.String),
        sa.column("message_count", sa.Integer),
    )
    rows = conn.execute(
        sa.select(
            messages.c.id, messages.c.phone, messages.c.state_after, messages.c.created_at
        ).order_by(messages.c.phone, messages.c.created_at, messages.c.id)
    ).all()
    groups: list[list[Any]] = []
    for row in rows:
        last = groups[-1][-1] if groups else None
        if last is None or last.phone != row.phone or row.created_at - last.created_at > GAP:
            groups.append([row])
        else:
            groups[-1].append(row)
    for group in groups:
        states = [r.state_after for r in group if r.state_after]
        outcome = states[-1] if states and states[-1] in ("checked_in", "opted_out") else "other"
        thread_id = conn.execute(
            threads.insert()
            .values(
                phone=group[0].phone,
                started_at=group[0].created_at,
                last_at=group[-1].created_at,
                outcome=outcome,
                message_count=len(group),
            )
            .returning(threads.c.id)
        ).scalar_one()
        conn.execute(
            messages.update()
            .where(messages.c.id.in_([r.id for r in group]))
            .values(thread_id=thread_id)
        )


def downgrade() -> None:
    with op.batch_alter_table("upstream_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_upstream_calls_created_at")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_messages_thread_id", type_="foreignkey")
        batch_op.drop_index("ix_messages_thread_id")
        batch_op.drop_column("prompt")
        batch_op.drop_column("thread_id")

    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.drop_index("ix_threads_ticket")
        batch_op.drop_index("ix_threads_started")
        batch_op.drop_index("ix_threads_phone_started")
        batch_op.drop_index("ix_threads_personal_id")
        batch_op.drop_index("ix_threads_outcome_started")

    op.drop_table("threads")
