"""Shared fixtures: prompts, a fixed clock; async tests run on asyncio (anyio_mode=auto)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot import prompts as prompts_module
from bot.prompts import BUILT_IN, Catalogue, Prompts

from .databases import Postgres, Sqlite, postgres_cluster

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: README, Procfile


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def prompts() -> Prompts:
    return prompts_module.load(BUILT_IN, "en")


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return prompts_module.load_catalogue(BUILT_IN)


@pytest.fixture
def prompts_dir() -> Path:
    return BUILT_IN


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


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> Sqlite:
    return Sqlite(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def postgresql_databases() -> Iterator[Postgres]:
    """A PostgreSQL server for the session: CHECKIN_BOT_TEST_POSTGRES_URL's, or one we start."""
    with contextlib.ExitStack() as stack:
        admin_url = os.environ.get("CHECKIN_BOT_TEST_POSTGRES_URL")
        if not admin_url:
            try:
                admin_url = stack.enter_context(postgres_cluster())
            except FileNotFoundError as exc:
                if os.environ.get("CI"):
                    pytest.fail(f"CI must test PostgreSQL too: {exc}")
                pytest.skip(str(exc))
        databases = Postgres(admin_url)
        stack.callback(databases.close)
        yield databases


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _databases(request: pytest.FixtureRequest, backend: str) -> Sqlite | Postgres:
    databases: Sqlite | Postgres = request.getfixturevalue(f"{backend}_databases")
    return databases


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str) -> Iterator[str]:
    """A database of this test's own, migrated, on each backend in turn."""
    with _databases(request, backend).database(migrated=True) as url:
        yield url


@pytest.fixture
def blank_db_url(request: pytest.FixtureRequest, backend: str) -> Iterator[str]:
    """An empty database of this test's own (no schema), on each backend in turn."""
    with _databases(request, backend).database(migrated=False) as url:
        yield url
