"""Threads: one visit's texts from one phone, with an outcome staff can filter on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from bot.store import engine_at
from bot.store.log import THREAD_GAP
from bot.store.tables import messages, threads
from bot.threads import ThreadOutcome as O
from bot.threads import advance, shown

from .conftest import T0, Clock
from .helpers import ALEX, CASEY, JORDAN, PATELS, RILEY, STRANGER, TAYLOR, Bot, running_bot
from .test_schema import _alembic, _migrate, _run


@pytest.mark.parametrize(
    ("current", "prompt", "opted_out", "expected"),
    [
        (O.OTHER, "checked_in", False, O.CHECKED_IN),
        (O.OTHER, "checked_in_next", False, O.CHECKED_IN),
        (O.ASKED, "checked_in_ticket_only", False, O.CONFIRMED),
        (O.OTHER, "confirm_early", False, O.ASKED),
        (O.ASKED, "confirm_again", False, O.ASKED),
        (O.ASKED, "declined", False, O.DECLINED),
        (O.OTHER, "confirm_expired", False, O.EXPIRED),
        (O.OTHER, "see_reception_prevent_auto_queue", False, O.PREVENT_AUTO_QUEUE),
        (O.OTHER, "unknown_number", False, O.UNKNOWN_NUMBER),
        (O.OTHER, "booking_number_not_found", False, O.NO_APPOINTMENT),
        (O.UPSTREAM_FAILURE, "checked_in", False, O.CHECKED_IN),
        (O.OTHER, "upstream_unavailable", False, O.UPSTREAM_FAILURE),
        (O.OTHER, None, True, O.OPTED_OUT),
        (O.OTHER, "help", False, O.OTHER),
        (O.NO_APPOINTMENT, "hint", False, O.NO_APPOINTMENT),
        # Once they have a ticket, nothing they text afterwards changes what happened.
        (O.CHECKED_IN, "upstream_unavailable", False, O.CHECKED_IN),
        (O.CONFIRMED, None, True, O.CONFIRMED),
    ],
)
def test_outcomes_advance_with_the_replies(
    current: O, prompt: str | None, opted_out: bool, expected: O
) -> None:
    assert advance(current, prompt, opted_out) is expected


def test_an_unanswered_question_shows_as_expired_once_it_has_run_out() -> None:
    ten = timedelta(minutes=10)
    assert shown("asked", T0, T0 + timedelta(minutes=9), ten) == "asked"
    assert shown("asked", T0, T0 + ten, ten) == "expired"
    assert shown("checked_in", T0, T0 + timedelta(days=1), ten) == "checked_in"


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[Bot]:
    async with running_bot(db_url, clock) as b:
        yield b


async def _threads(bot: Bot, phone: str) -> list[dict[str, Any]]:
    async with bot.store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(threads).where(threads.c.phone == phone).order_by(threads.c.id)
        )
        return [dict(r) for r in rows.mappings()]


async def test_a_visit_is_one_thread_with_the_customer_and_ticket(bot: Bot, clock: Clock) -> None:
    await bot.text(ALEX, "HERE")
    clock.advance(5)
    await bot.text(ALEX, "status")
    [thread] = await _threads(bot, ALEX)
    assert thread["outcome"] == "checked_in"
    assert (thread["personal_id"], thread["name"], thread["ticket"]) == (
        "S1001",
        "Alex Taylor",
        "A003",
    )
    assert thread["case_id"] is not None
    assert (thread["started_at"], thread["ticket_at"]) == (T0, T0)
    assert thread["last_at"] == clock.now
    assert thread["message_count"] == 4
    async with bot.store.engine.connect() as conn:
        ids = (await conn.execute(sa.select(messages.c.thread_id))).scalars().all()
    assert set(ids) == {thread["id"]}


async def test_texts_after_a_long_silence_start_a_new_thread(bot: Bot, clock: Clock) -> None:
    await bot.text(STRANGER, "HERE")
    clock.advance(THREAD_GAP.total_seconds() / 60 - 1)
    await bot.text(STRANGER, "help")
    clock.advance(THREAD_GAP.total_seconds() / 60 + 1)
    await bot.text(STRANGER, "help")
    found = await _threads(bot, STRANGER)
    assert [(t["outcome"], t["message_count"]) for t in found] == [
        ("unknown_number", 4),
        ("other", 2),
    ]


@pytest.mark.parametrize(
    ("phone", "texts", "outcome"),
    [
        (JORDAN, ["HERE", "YES"], "confirmed"),
        (CASEY, ["HERE", "NO"], "declined"),
        (JORDAN, ["HERE"], "asked"),
        (RILEY, ["HERE"], "prevent_auto_queue"),
        (STRANGER, ["HERE"], "unknown_number"),
        (TAYLOR, ["HERE"], "no_appointment"),
        (ALEX, ["STOP"], "opted_out"),
        (ALEX, ["what time is it"], "other"),
    ],
)
async def test_each_ending_has_its_outcome(
    bot: Bot, phone: str, texts: list[str], outcome: str
) -> None:
    for text in texts:
        await bot.text(phone, text)
    [thread] = await _threads(bot, phone)
    assert thread["outcome"] == outcome
    assert (thread["ticket_at"] is not None) == (outcome == "confirmed")


async def test_a_phone_for_two_people_is_found_by_either_name(bot: Bot) -> None:
    await bot.text(PATELS, "HERE")
    [thread] = await _threads(bot, PATELS)
    assert thread["name"] == "Sam Patel, Mia Patel"
    await bot.text(PATELS, "2")
    [thread] = await _threads(bot, PATELS)
    assert (thread["personal_id"], thread["name"], thread["outcome"]) == (
        "S1006",
        "Mia Patel",
        "checked_in",
    )


async def test_two_first_texts_at_once_open_one_thread(bot: Bot) -> None:
    await asyncio.gather(*(bot.text(STRANGER, f"hello {i}") for i in range(4)))
    [thread] = await _threads(bot, STRANGER)
    assert thread["message_count"] == 8


async def test_the_migration_groups_existing_messages_into_threads(blank_db_url: str) -> None:
    await _run(blank_db_url, lambda c: _alembic(c, "upgrade", "0003"))
    rows = [
        (ALEX, "in", T0, "checked_in"),
        (ALEX, "out", T0, "checked_in"),
        (ALEX, "in", T0 + timedelta(hours=1), "checked_in"),
        (ALEX, "in", T0 + timedelta(hours=9), "idle"),
        (STRANGER, "in", T0, "idle"),
    ]

    def insert(conn: sa.Connection) -> None:
        for phone, direction, at, state in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO messages (phone, direction, body, state_after, num_media, "
                    "created_at) VALUES (:p, :d, 'x', :s, 0, :at)"
                ),
                dict(p=phone, d=direction, s=state, at=at.replace(tzinfo=None)),
            )

    await _run(blank_db_url, insert)
    await _migrate(blank_db_url)
    async with engine_at(blank_db_url) as engine, engine.connect() as conn:
        found = (
            await conn.execute(
                sa.select(threads.c.phone, threads.c.outcome, threads.c.message_count).order_by(
                    threads.c.phone, threads.c.started_at
                )
            )
        ).all()
        orphans = await conn.scalar(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.thread_id.is_(None))
        )
    assert [tuple(r) for r in found] == [
        (ALEX, "checked_in", 3),
        (ALEX, "other", 1),
        (STRANGER, "other", 1),
    ]
    assert orphans == 0
