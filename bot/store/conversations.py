"""The bot's memory of each phone: its conversation's state and data, as stored text and JSON,
and the language its replies go out in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import conversations

INITIAL_STATE = "idle"  # a phone the bot has never heard from


@dataclass(frozen=True)
class Saved:
    """A phone's stored conversation."""

    state: str = INITIAL_STATE
    data: Mapping[str, Any] = field(default_factory=dict)
    language: str | None = None
    language_source: str | None = None  # chosen, detected, virtualq, directory


async def load(conn: AsyncConnection, phone: str) -> Saved:
    c = conversations.c
    row = (
        await conn.execute(
            sa.select(c.state, c.data, c.language, c.language_source).where(c.phone == phone)
        )
    ).first()
    if row is None:
        return Saved()
    return Saved(row.state, dict(row.data or {}), row.language, row.language_source)


async def save(
    conn: AsyncConnection,
    phone: str,
    state: str,
    data: Mapping[str, Any],
    now: datetime,
    language: tuple[str | None, str | None] | None = None,
) -> None:
    """Write the phone's state and data (and its reply language, when given)."""
    values: dict[str, Any] = dict(state=state, data=dict(data), updated_at=now)
    if language is not None:
        values |= dict(language=language[0], language_source=language[1])
    insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(conversations)
    await conn.execute(
        insert.values(phone=phone, created_at=now, **values).on_conflict_do_update(
            index_elements=[conversations.c.phone], set_=values
        )
    )
