"""The directory: which customers (PersonalId, name, language) a phone number belongs to."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .tables import directory

BATCH = 1000  # rows per statement when importing


@dataclass(frozen=True)
class Entry:
    """One directory row: a phone (E.164) and a customer it belongs to."""

    phone: str
    personal_id: str
    name: str | None = None
    language: str | None = None


@dataclass
class ImportSummary:
    """What an import changed."""

    added: int = 0
    updated: int = 0  # a new name or language, or a phone's PersonalId that changed
    removed: int = 0  # only with replace: rows the file no longer has
    unchanged: int = 0


def _same_person(a: str | None, b: str | None) -> bool:
    return bool(a and b and " ".join(a.casefold().split()) == " ".join(b.casefold().split()))


class Directory:
    """Reads and writes of the directory table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def entries(self, phone: str | None = None) -> list[Entry]:
        """Every row (of one phone, if given), by phone then import order."""
        query = sa.select(
            directory.c.phone, directory.c.personal_id, directory.c.name, directory.c.language
        )
        if phone is not None:
            query = query.where(directory.c.phone == phone)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(directory.c.phone, directory.c.id))).all()
        return [Entry(r.phone, r.personal_id, r.name, r.language) for r in rows]

    async def load(
        self,
        rows: Sequence[Entry],
        now: datetime,
        *,
        replace: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> ImportSummary:
        """Bring the file's rows in, in one transaction. `replace`: the directory becomes
        exactly `rows`. Otherwise rows are added or updated, and a phone's row whose
        PersonalId changed (same phone, same name, a PersonalId the file does not have for
        that phone) is updated rather than joined by a second person."""
        summary = ImportSummary()
        async with self.engine.begin() as conn:
            existing = (
                await conn.execute(
                    sa.select(
                        directory.c.id,
                        directory.c.phone,
                        directory.c.personal_id,
                        directory.c.name,
                        directory.c.language,
                    )
                )
            ).all()
            by_key = {(r.phone, r.personal_id): r for r in existing}
            by_phone: dict[str, list[Any]] = {}
            for r in existing:
                by_phone.setdefault(r.phone, []).append(r)
            wanted = {(e.phone, e.personal_id) for e in rows}
            inserts: list[dict[str, object]] = []
            updates: list[dict[str, object]] = []
            kept: set[int] = set()
            for done, entry in enumerate(rows, start=1):
                found = by_key.get((entry.phone, entry.personal_id))
                if found is None and not replace:
                    found = next(
                        (
                            r
                            for r in by_phone.get(entry.phone, ())
                            if (r.phone, r.personal_id) not in wanted
                            and r.id not in kept
                            and _same_person(r.name, entry.name)
                        ),
                        None,
                    )
                if found is None:
                    inserts.append(
                        dict(
                            phone=entry.phone,
                            personal_id=entry.personal_id,
                            name=entry.name,
                            language=entry.language,
                            updated_at=now,
                        )
                    )
                    summary.added += 1
                else:
                    kept.add(found.id)
                    if (found.personal_id, found.name, found.language) == (
                        entry.personal_id,
                        entry.name,
                        entry.language,
                    ):
                        summary.unchanged += 1
                    else:
                        updates.append(
                            dict(
                                row_id=found.id,
                                new_pid=entry.personal_id,
                                new_name=entry.name,
                                new_language=entry.language,
                                now=now,
                            )
                        )
                        summary.updated += 1
                if progress and done % BATCH == 0:
                    progress(BATCH)
            if replace:
                gone = [r.id for r in existing if r.id not in kept]
                for start in range(0, len(gone), BATCH):
                    chunk = gone[start : start + BATCH]
                    await conn.execute(directory.delete().where(directory.c.id.in_(chunk)))
                summary.removed = len(gone)
            if updates:
                await conn.execute(
                    directory.update()
                    .where(directory.c.id == sa.bindparam("row_id"))
                    .values(
                        personal_id=sa.bindparam("new_pid"),
                        name=sa.bindparam("new_name"),
                        language=sa.bindparam("new_language"),
                        updated_at=sa.bindparam("now"),
                    ),
                    updates,
                )
            for start in range(0, len(inserts), BATCH):
                await conn.execute(directory.insert(), inserts[start : start + BATCH])
            if progress and len(rows) % BATCH:
                progress(len(rows) % BATCH)
        return summary

    async def upsert(self, rows: Iterable[Entry], now: datetime) -> ImportSummary:
        """Add or update rows, changing nothing else (the demo's seed)."""
        return await self.load(list(rows), now)

    async def remove(self, phone: str, personal_id: str | None = None) -> int:
        """Delete a phone's rows (or one of them); how many."""
        where = [directory.c.phone == phone]
        if personal_id is not None:
            where.append(directory.c.personal_id == personal_id)
        async with self.engine.begin() as conn:
            return int((await conn.execute(directory.delete().where(*where))).rowcount)
