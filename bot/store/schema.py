"""The database schema's version: upgrade it (Alembic), or refuse to run on the wrong one."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import SchemaError
from .engine import describe
from .tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic (and Mako under it, ~11 MB of a worker's memory) is imported only to migrate or to
# explain a wrong schema: a web worker's check reads the revision with one SELECT and knows
# this release's from the migrations' file names.

MIGRATIONS = Path(__file__).parent.parent / "migrations"
FIRST_REVISION = "0001"  # the schema `create_all` made before migrations existed
_MIGRATION_LOCK = 7_319_244_117  # any constant: one `migrate` at a time on PostgreSQL
_VERSIONS = sa.table("alembic_version", sa.column("version_num", sa.String))


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    """The release's migrations, read once."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    heads = _scripts().get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    return heads[0]


@functools.cache
def latest() -> str:
    """This release's head revision without Alembic: revisions are numbered 0001, 0002, …
    (`new_revision`), each file named after its own (tests/test_schema.py holds this to
    `head()`)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def _current(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.select(_VERSIONS.c.version_num)).scalars().first()


async def current(engine: AsyncEngine) -> str | None:
    """The database's schema revision (None: no checkin-bot schema at all)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def check(engine: AsyncEngine) -> str:
    """The schema revision, or SchemaError when this release cannot run on it (/readyz
    checks it every few seconds)."""
    found, wanted = await current(engine), latest()
    if found == wanted:
        return found
    from alembic.util.exc import CommandError

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
    from alembic import command
    from alembic.runtime.migration import MigrationContext

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
    from alembic import command

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
    from alembic.runtime.migration import MigrationContext

    return list(compare_metadata(MigrationContext.configure(engine_conn), metadata))
