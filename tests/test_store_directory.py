"""The directory table: loads in one transaction, with the replace and the PersonalId rules."""

from __future__ import annotations

import pytest

from bot.store import Store, open_store
from bot.store.directory import Entry

from .conftest import T0

SAM, MIA = Entry("+61491570110", "S5", "Sam Patel"), Entry("+61491570110", "S6", "Mia Patel")


@pytest.fixture
async def store(db_url: str) -> Store:
    async with open_store(db_url) as opened:
        yield opened  # type: ignore[misc]


async def test_a_load_adds_updates_and_counts_the_unchanged(store: Store) -> None:
    first = await store.directory.load([SAM, MIA], T0)
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    renamed = Entry(SAM.phone, SAM.personal_id, "Samuel Patel", "es")
    second = await store.directory.load([renamed, MIA], T0)
    assert (second.added, second.updated, second.unchanged) == (0, 1, 1)
    assert await store.directory.entries(SAM.phone) == [renamed, MIA]


async def test_a_new_personal_id_for_the_same_person_replaces_the_old_one(store: Store) -> None:
    await store.directory.load([SAM, MIA], T0)
    moved = Entry(SAM.phone, "S9", "sam  PATEL")
    summary = await store.directory.load([moved], T0)
    assert (summary.added, summary.updated) == (0, 1)
    assert {e.personal_id for e in await store.directory.entries(SAM.phone)} == {"S9", "S6"}


async def test_replace_leaves_exactly_the_file(store: Store) -> None:
    await store.directory.load([SAM, MIA, Entry("+61491570156", "S1", "Alex")], T0)
    summary = await store.directory.load([MIA], T0, replace=True)
    assert (summary.removed, summary.unchanged) == (2, 1)
    assert await store.directory.entries() == [MIA]


async def test_a_load_that_fails_changes_nothing(store: Store) -> None:
    await store.directory.load([SAM], T0)
    broken = Entry("+61491570156", None, "Nobody")  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 - the database's own error, either backend
        await store.directory.load([MIA, broken], T0, replace=True)
    assert await store.directory.entries() == [SAM]


async def test_remove_one_customer_or_the_whole_phone(store: Store) -> None:
    await store.directory.load([SAM, MIA], T0)
    assert await store.directory.remove(SAM.phone, "S5") == 1
    assert await store.directory.remove(SAM.phone) == 1
    assert await store.directory.entries() == []
