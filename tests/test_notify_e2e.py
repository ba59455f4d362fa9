"""Notifications from the real processes: two `serve` processes (two workers each) on one
database, the simulator and Twilio's stand-in (tests/faulty.py) over loopback; one process
killed with -9 and started again while they poll. Each "your turn" goes out exactly once, STOP
stops them, leaving cancels once, a no-show gets "missed"."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bot.store import engine_at
from bot.store.tables import upstream_calls

from .deploy import Deployment, deploy
from .deploy import text as _text
from .helpers import ALEX, CASEY, JORDAN, PATELS, reply_text

pytestmark = pytest.mark.e2e

ALEX_CASE, JORDAN_CASE, CASEY_CASE, SAM_CASE = 100001, 100002, 100003, 100005


@pytest.fixture
def two_bots(tmp_path: Path, blank_db_url: str) -> Iterator[Deployment]:
    yield from deploy(
        tmp_path,
        blank_db_url,
        bots=2,
        upstream=[sys.executable, "-m", "tests.faulty"],
        WEB_CONCURRENCY="2",
        NOTIFY_POLL_SECONDS="1",
        NOTIFY_AT_POSITION="2",
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        TWILIO_FROM_NUMBER="+61400000000",
    )


def _texts(d: Deployment, phone: str) -> list[str]:
    sent = httpx.get(f"{d.simulator}/_fault", timeout=5).json()["texts"]
    return [t["Body"] for t in sent if t["To"] == phone]


def _sim(d: Deployment, route: str, case_id: int, **body: str) -> None:
    answer = httpx.post(f"{d.simulator}/_sim/{route}", json={"case_id": case_id, **body})
    assert answer.status_code == 200, answer.text


def _until(found: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not found():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.2)


def _say(d: Deployment, bot: int, phone: str, body: str) -> str:
    return reply_text(_text(d.bots[bot], phone, body).text) or ""


def test_each_text_once_across_processes_and_kills_stop_stops_leave_cancels_once(
    two_bots: Deployment,
) -> None:
    d = two_bots
    assert "A003" in _say(d, 0, ALEX, "here")
    assert "early" in _say(d, 1, JORDAN, "here")
    assert "B004" in _say(d, 1, JORDAN, "yes")
    assert "late" in _say(d, 0, CASEY, "here").lower()
    assert "Ticket" in _say(d, 1, CASEY, "yes")
    assert "Sam" in _say(d, 0, PATELS, "here, both of us")
    assert _say(d, 1, PATELS, "STOP") == ""
    assert "Reply YES" in _say(d, 0, CASEY, "I need to leave, take me off the list")
    assert "left the queue" in _say(d, 1, CASEY, "YES")
    _say(d, 0, CASEY, "yes")  # a second YES cancels nothing more

    _sim(d, "call", ALEX_CASE, counter="Counter 3")
    _sim(d, "call", SAM_CASE, counter="Counter 2")
    _until(lambda: bool(_texts(d, ALEX)))
    d.kill_bot(0)  # whichever was polling, mid-poll or not: the other carries on
    _sim(d, "call", JORDAN_CASE, counter="Counter 1")
    _until(lambda: bool(_texts(d, JORDAN)), seconds=45)  # a dead holder's lease runs out first
    d.start_bot(0)
    d.kill_bot(1)
    _sim(d, "no-show", JORDAN_CASE)
    _until(lambda: len(_texts(d, JORDAN)) == 2, seconds=45)
    d.start_bot(1)
    time.sleep(4)  # several more polls, by every worker that holds the lease in turn
    assert _texts(d, ALEX) == ["It's your turn! Ticket A003: please go to Counter 3."]
    assert _texts(d, JORDAN) == [
        "It's your turn! Ticket B004: please go to Counter 1.",
        "We called ticket B004 but couldn't find you. Please see reception.",
    ]
    assert _texts(d, PATELS) == [] and _texts(d, CASEY) == []  # STOP, and left the queue
    case = httpx.get(f"{d.simulator}/Cases/{CASEY_CASE}").json()
    assert case["EntityStatus"] == 15
    assert asyncio.run(_calls(d.database_url, "cancel_case")) == 1


async def _calls(database_url: str, operation: str) -> int:
    async with engine_at(database_url) as engine, engine.connect() as conn:
        found = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(upstream_calls)
            .where(upstream_calls.c.operation == operation)
        )
    return int(found or 0)
