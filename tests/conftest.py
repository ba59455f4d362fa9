"""Shared fixtures: prompts, a fixed clock; async tests run on asyncio (anyio_mode=auto)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import prompts as prompts_module
from bot.prompts import Prompts
from bot.settings import PROJECT_ROOT

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def prompts() -> Prompts:
    return prompts_module.load(PROJECT_ROOT / "prompts", "en")


@pytest.fixture
def prompts_dir() -> Path:
    return PROJECT_ROOT / "prompts"


class Clock:
    """A settable clock shared by the bot and the simulator."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        from datetime import timedelta

        self.now += timedelta(minutes=minutes)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.db'}"
