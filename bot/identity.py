"""Who is texting: a phone's PersonalId(s) from the directory or the number itself."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from . import phones
from .conversation import Candidate
from .settings import PersonalIdSource, Settings
from .store import Store

MAX_PERSONAL_ID = 30


class Directory(Protocol):
    async def candidates(self, phone: str) -> tuple[Candidate, ...]: ...


async def candidates(directory: Directory, settings: Settings, phone: str) -> tuple[Candidate, ...]:
    """The customers a phone (E.164, or a raw sender id) may belong to."""
    if settings.personal_id_source is PersonalIdSource.PHONE:
        if not phone.startswith("+"):
            return ()
        return (Candidate(phones.as_personal_id(phone, settings.personal_id_phone_format)),)
    return await directory.candidates(phone)


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, problem)


def parse_directory_csv(
    text: str, region: str
) -> tuple[list[tuple[str, str, str | None]], list[tuple[int, str]]]:
    """Valid (e164, personal_id, name) rows and (line, problem) for the rest.

    Columns phone,personal_id[,name]; a header row is recognised and skipped.
    """
    rows: list[tuple[str, str, str | None]] = []
    errors: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    for record in reader:
        line = reader.line_num
        cells = [c.strip() for c in record]
        if not any(cells):
            continue
        if line == 1 and cells[0].lower() in ("phone", "phone_number", "mobile", "number"):
            continue
        if len(cells) < 2 or not cells[1]:
            errors.append((line, "needs phone and personal_id"))
            continue
        e164 = phones.normalise(cells[0], region)
        if e164 is None:
            errors.append((line, f"not a valid phone number for region {region}: {cells[0]!r}"))
            continue
        if len(cells[1]) > MAX_PERSONAL_ID:
            errors.append((line, f"personal_id longer than {MAX_PERSONAL_ID} characters"))
            continue
        name = cells[2][:100] if len(cells) > 2 and cells[2] else None
        rows.append((e164, cells[1], name))
    return rows, errors


async def import_directory(store: Store, text: str, region: str, now: datetime) -> ImportReport:
    """Load a directory CSV: valid rows are added or updated, invalid ones reported by line."""
    rows, errors = parse_directory_csv(text, region)
    added, updated = await store.upsert_directory(rows, now)
    return ImportReport(added, updated, errors)
