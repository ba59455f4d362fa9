"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 (the schema issue 2 shipped with create_all)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone"),
    )
    op.create_table(
        "directory",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("personal_id", sa.String(length=30), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phone", "personal_id", name="uq_directory_phone_personal_id"),
    )
    with op.batch_alter_table("directory", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_directory_phone"), ["phone"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("message_sid", sa.String(length=64), nullable=True),
        sa.Column("reply_to", sa.Integer(), nullable=True),
        sa.Column("intent", sa.String(length=64), nullable=True),
        sa.Column("state_before", sa.String(length=32), nullable=True),
        sa.Column("state_after", sa.String(length=32), nullable=True),
        sa.Column("segments", sa.Integer(), nullable=True),
        sa.Column("num_media", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("error_code", sa.String(length=16), nullable=True),
        sa.Column("handled_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reply_to"],
            ["messages.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_sid"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_messages_phone_id", ["phone", "id"], unique=False)
        batch_op.create_index("ix_messages_reply_to", ["reply_to"], unique=False)

    op.create_table(
        "opt_outs",
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("keyword", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("phone"),
    )
    op.create_table(
        "upstream_calls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=False),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("upstream_calls", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upstream_calls_message_id"), ["message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("upstream_calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upstream_calls_message_id"))

    op.drop_table("upstream_calls")
    op.drop_table("opt_outs")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_reply_to")
        batch_op.drop_index("ix_messages_phone_id")
        batch_op.drop_index("ix_messages_created_at")

    op.drop_table("messages")
    with op.batch_alter_table("directory", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directory_phone"))

    op.drop_table("directory")
    op.drop_table("conversations")
