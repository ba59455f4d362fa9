"""a partial index of the texts never answered (the reclaimer's question)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNANSWERED = "direction = 'in' AND handled_at IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_messages_unanswered",
        "messages",
        ["id"],
        unique=False,
        sqlite_where=sa.text(UNANSWERED),
        postgresql_where=sa.text(UNANSWERED),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_unanswered", table_name="messages")
