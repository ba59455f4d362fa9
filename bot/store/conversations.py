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
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from .prepared import Prepared, Write
from .tables import conversations

INITIAL_STATE = "idle"  # a phone the bot has never heard from


@dataclass(frozen=True)
class Saved:
    """A phone's stored conversation."""

    state: str = INITIAL_STATE
    data: Mapping[str, Any] = field(default_factory=dict)
    language: str | None = None
    language_source: str | None = None  # chosen, detected, virtualq, directory


_LOAD = Prepared(
    sa.select(
        conversations.c.state,
        conversations.c.data,
        conversations.c.language,
        conversations.c.language_source,
    ).where(conversations.c.phone == sa.bindparam("phone"))
)


def load(conn: Connection, phone: str) -> Saved:
    return saved(_LOAD.execute(conn, {"phone": phone}).first())


def saved(row: Any) -> Saved:
    """A stored conversation from a row with its columns (None: the phone has none)."""
    if row is None:
        return Saved()
    return Saved(row.state, dict(row.data or {}), row.language, row.language_source)


def _upsert(dialect: str, language: bool) -> Prepared:
    """INSERT … ON CONFLICT (phone) DO UPDATE, built once per dialect and shape."""
    insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(conversations)
    columns = [
        "state",
        "data",
        "updated_at",
        *(["language", "language_source"] if language else []),
    ]
    return Prepared(
        insert.on_conflict_do_update(
            index_elements=[conversations.c.phone],
            set_={name: insert.excluded[name] for name in columns},
        )
    )


_UPSERTS = {(d, lang): _upsert(d, lang) for d in ("sqlite", "postgresql") for lang in (False, True)}


def save(
    conn: Connection,
    phone: str,
    state: str,
    data: Mapping[str, Any],
    now: datetime,
    language: tuple[str | None, str | None] | None = None,
) -> None:
    """Write the phone's state and data (and its reply language, when given)."""
    statement, row = saving(conn.dialect.name, phone, state, data, now, language)
    statement.execute(conn, row)


def saving(
    dialect: str,
    phone: str,
    state: str,
    data: Mapping[str, Any],
    now: datetime,
    language: tuple[str | None, str | None] | None = None,
) -> Write:
    """`save` as a statement to run with others."""
    return _UPSERTS[dialect, language is not None], _row(phone, state, data, now, language)


async def save_on_driver(
    conn: AsyncConnection, phone: str, state: str, data: Mapping[str, Any], now: datetime
) -> None:
    """`save` as one statement in autocommit, durable when it returns (PostgreSQL's turns)."""
    statement, row = saving(conn.dialect.name, phone, state, data, now)
    await statement.execute_on_driver(conn, row)


def _row(
    phone: str,
    state: str,
    data: Mapping[str, Any],
    now: datetime,
    language: tuple[str | None, str | None] | None,
) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        phone=phone, state=state, data=dict(data), updated_at=now, created_at=now
    )
    if language is not None:
        values |= dict(language=language[0], language_source=language[1])
    return values
