"""Migrations: the schema they build is the one the code expects, on both backends, and the
app refuses a database at any other version with a message that says what to run."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from bot.app import create_app
from bot.settings import Settings
from bot.store import engine_at, schema
from bot.store.tables import UTCDateTime

from .conftest import Clock
from .helpers import mock_upstream_bot


async def _run(url: str, work: object) -> object:
    async with engine_at(url) as engine, engine.connect() as conn:
        result = await conn.run_sync(work)  # type: ignore[arg-type]
        await conn.commit()
    return result


def _alembic(conn: sa.Connection, verb: str, revision: str) -> None:
    config = schema.alembic_config()
    config.attributes["connection"] = conn
    getattr(command, verb)(config, revision)


async def _migrate(url: str) -> tuple[str | None, str]:
    async with engine_at(url) as engine:
        return await schema.migrate(engine)


async def _check(url: str) -> str:
    async with engine_at(url) as engine:
        return await schema.check(engine)


async def test_the_migrated_schema_is_the_one_in_code(blank_db_url: str) -> None:
    assert await _migrate(blank_db_url) == (None, schema.head())
    assert await _run(blank_db_url, schema.autogenerate_diff) == []
    assert await _check(blank_db_url) == schema.head()


def test_the_release_knows_its_head_without_alembic() -> None:
    """A web worker checks the schema against `latest()` (the migrations' file names), not
    Alembic's script directory: the two agree, and every file is named after its revision."""
    assert schema.latest() == schema.head()
    for path in (schema.MIGRATIONS / "versions").glob("*.py"):
        assert f'revision = "{path.name[:4]}"' in path.read_text(), path.name


async def test_every_migration_can_be_undone_and_redone(db_url: str) -> None:
    await _run(db_url, lambda c: _alembic(c, "downgrade", "base"))
    tables = await _run(db_url, lambda c: set(sa.inspect(c).get_table_names()))
    assert tables <= {"alembic_version"}
    assert await _migrate(db_url) == (None, schema.head())
    assert await _run(db_url, schema.autogenerate_diff) == []


async def test_a_database_from_before_migrations_is_adopted(blank_db_url: str) -> None:
    # What issue 2's `create_all` made: revision 0001's tables and no alembic_version.
    await _run(blank_db_url, lambda c: _alembic(c, "upgrade", schema.FIRST_REVISION))
    await _run(blank_db_url, lambda c: c.execute(sa.text("DROP TABLE alembic_version")))
    assert await _migrate(blank_db_url) == (schema.FIRST_REVISION, schema.head())
    assert await _run(blank_db_url, schema.autogenerate_diff) == []


async def test_an_older_schema_is_refused_with_the_command_to_run(blank_db_url: str) -> None:
    await _run(blank_db_url, lambda c: _alembic(c, "upgrade", schema.FIRST_REVISION))
    with pytest.raises(schema.SchemaError, match=r"needs \d+: run `checkin-bot migrate`"):
        await _check(blank_db_url)


async def test_a_newer_schema_is_refused(db_url: str) -> None:
    await _run(
        db_url, lambda c: c.execute(sa.text("UPDATE alembic_version SET version_num='9999'"))
    )
    with pytest.raises(schema.SchemaError, match="newer than this release knows"):
        await _check(db_url)


async def test_the_app_does_not_start_on_an_unmigrated_database(
    blank_db_url: str, clock: Clock
) -> None:
    app = create_app(Settings(database_url=blank_db_url, twilio_validate_signature=False))
    with pytest.raises(schema.SchemaError, match="run `checkin-bot migrate`"):
        async with app.router.lifespan_context(app):
            pass


async def test_the_app_starts_on_a_migrated_database(db_url: str, clock: Clock) -> None:
    async with mock_upstream_bot(db_url, clock, lambda r: httpx.Response(500)) as (client, _):
        assert (await client.get("/healthz")).status_code == 200


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
    )
)
def test_sqlite_stores_and_reads_a_datetime_as_sqlalchemy_would(value: datetime) -> None:
    """UTCDateTime's one-step SQLite processors write the very text SQLAlchemy's
    decorator-then-DATETIME path writes (the log's time comparisons are text comparisons), and
    read it back to the same instant, in UTC."""
    dialect = sqlite.dialect()
    column = UTCDateTime().dialect_impl(dialect)  # as statements see it: DATETIME underneath
    fast, slow = column.bind_processor(dialect), sa.TypeDecorator.bind_processor(column, dialect)
    read = column.result_processor(dialect, None)
    read_slow = sa.TypeDecorator.result_processor(column, dialect, None)
    assert fast is not None and slow is not None and read is not None and read_slow is not None
    stored = fast(value)
    assert stored == slow(value)
    assert read(stored) == read_slow(stored) == value.astimezone(UTC)  # (ambiguous local times)
    assert read(stored).tzinfo is UTC
    assert fast(None) is None and read(None) is None
    # Written some other way (by hand, say): read as SQLAlchemy reads it.
    assert read(stored[:19]) == read_slow(stored[:19])
