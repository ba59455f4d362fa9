"""The bot's memory of each phone: its conversation's state and data, as stored text and JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import conversations

INITIAL_STATE = "idle"  # a phone the bot has never heard from


@dataclass(frozen=True)
class Saved:
    """A phone's stored conversation."""

    state: str = INITIAL_STATE
    data: Mapping[str, Any] = field(default_factory=dict)


async def load(conn: AsyncConnection, phone: str) -> Saved:
    row = (
        await conn.execute(
            sa.select(conversations.c.state, conversations.c.data).where(
                conversations.c.phone == phone
            )
        )
    ).first()
    return Saved() if row is None else Saved(row.state, dict(row.data or {}))


async def save(
    conn: AsyncConnection, phone: str, state: str, data: Mapping[str, Any], now: datetime
) -> None:
    values = dict(state=state, data=dict(data), updated_at=now)
    updated = await conn.execute(
        conversations.update().where(conversations.c.phone == phone).values(**values)
    )
    if updated.rowcount == 0:
        await conn.execute(conversations.insert().values(phone=phone, created_at=now, **values))
