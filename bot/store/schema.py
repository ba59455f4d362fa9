"""The database schema's version: upgrade it (Alembic), or refuse to run on the wrong one."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import SchemaError
from .engine import describe
from .tables import metadata

MIGRATIONS = Path(__file__).parent.parent / "migrations"
FIRST_REVISION = "0001"  # the schema `create_all` made before migrations existed
_MIGRATION_LOCK = 7_319_244_117  # any constant: one `migrate` at a time on PostgreSQL


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """The release's migrations, read once (/readyz checks the schema every few seconds)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    return heads[0]


async def current(engine: AsyncEngine) -> str | None:
    """The database's schema revision (None: no checkin-bot schema at all)."""
    async with engine.connect() as conn:
        heads = await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads())
    return heads[0] if heads else None


async def check(engine: AsyncEngine) -> str:
    """The schema revision, or SchemaError when this release cannot run on it."""
    found, wanted = await current(engine), head()
    if found == wanted:
        return found
    where = describe(engine)
    if found is None:
        raise SchemaError(f"{where} has no checkin-bot schema: run `checkin-bot migrate`")
    try:
        _scripts().get_revision(found)
    except CommandError:
        raise SchemaError(
            f"{where} is at schema {found}, newer than this release knows (it needs {wanted}): "
            "deploy the newer release, or restore the database it had"
        ) from None
    raise SchemaError(
        f"{where} is at schema {found}, this release needs {wanted}: run `checkin-bot migrate`"
    )


async def migrate(engine: AsyncEngine) -> tuple[str | None, str]:
    """Upgrade to this release's head; (revision before, revision after)."""
    config = alembic_config()

    def upgrade(conn: sa.Connection) -> str | None:
        if conn.dialect.name == "postgresql":
            # Two release phases at once (two deploys racing) must not both run DDL.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        before = MigrationContext.configure(conn).get_current_heads()
        config.attributes["connection"] = conn
        if not before and sa.inspect(conn).has_table("conversations"):
            # A database `create_all` made before migrations existed: it is revision 0001.
            command.stamp(config, FIRST_REVISION)
            before = (FIRST_REVISION,)
        command.upgrade(config, "head")
        return before[0] if before else None

    async with engine.connect() as conn:
        before = await conn.run_sync(upgrade)
        await conn.commit()
    return before, head()


async def new_revision(engine: AsyncEngine, message: str) -> Path:
    """(Developers) write the next migration for what changed in bot/store/tables.py; the
    database must be at head. Review the file: autogenerate misses renames and data moves."""
    await check(engine)
    config = alembic_config()
    rev_id = f"{int(head()) + 1:04d}"

    def write(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)

    async with engine.connect() as conn:
        await conn.run_sync(write)
    return next((MIGRATIONS / "versions").glob(f"{rev_id}_*.py"))


def autogenerate_diff(engine_conn: sa.Connection) -> list[Any]:
    """Differences between the tables in code and the migrated database (for tests)."""
    from alembic.autogenerate import compare_metadata

    return list(compare_metadata(MigrationContext.configure(engine_conn), metadata))
