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
