"""Who is texting: the customers a phone may belong to, from the directory or the number."""

from __future__ import annotations

from collections.abc import Sequence

from . import phones
from .conversation import Candidate
from .settings import PersonalIdSource, Settings
from .store.directory import Entry


def candidates(settings: Settings, phone: str, entries: Sequence[Entry]) -> tuple[Candidate, ...]:
    """The customers a phone (E.164, or a raw sender id) may belong to: its directory
    `entries`, or with PERSONAL_ID_SOURCE=phone the number itself as the PersonalId."""
    if settings.personal_id_source is PersonalIdSource.PHONE:
        if not phone.startswith("+"):
            return ()
        return (Candidate(phones.as_personal_id(phone, settings.personal_id_phone_format)),)
    return tuple(Candidate(e.personal_id, e.name) for e in entries)


def needs_directory(settings: Settings) -> bool:
    """Whether a text's customers come from the directory table (else from the number)."""
    return settings.personal_id_source is PersonalIdSource.DIRECTORY
