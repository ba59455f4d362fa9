"""a partial index of the texts sent, by phone (the attention list's "answered a staff text")

For each text a customer sent, the staff pages ask who wrote the last text that phone had
been sent before it. Through (phone, id) that walked back over every text the phone had sent
since, so a phone texting thousands of times made the question quadratic (3,000 texts: 2.5 s a
page, 6,000: 12.5 s); through the texts sent alone it is one seek each. Inbound texts, most of
the log, are not in it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OUTBOUND = "direction = 'out'"


def upgrade() -> None:
    op.create_index(
        "ix_messages_outbound_phone",
        "messages",
        ["phone", "id"],
        unique=False,
        sqlite_where=sa.text(OUTBOUND),
        postgresql_where=sa.text(OUTBOUND),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_outbound_phone", table_name="messages")
