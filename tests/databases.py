"""Throwaway databases for tests: SQLite files, and a PostgreSQL cluster on a loopback port.

The cluster is Debian's `postgresql` binaries (`initdb`, `pg_ctl`), started once per test
session in a temporary directory with durability off, and stopped at the end. Set
CHECKIN_BOT_TEST_POSTGRES_URL to an admin URL to use a server of your own instead. Each test
gets a database of its own, copied from a migrated template.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import asyncpg

from bot.store import engine_at, schema

_names = count(1)


def find_postgres_bin() -> Path | None:
    """The directory with initdb and pg_ctl (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A running cluster's admin URL (postgresql://postgres@127.0.0.1:PORT/postgres)."""
    bindir = find_postgres_bin()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="checkin-bot-pg-"))
    data, port = root / "data", _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
        # More settings for a look inside (-c shared_preload_libraries=pg_stat_statements).
        + os.environ.get("CHECKIN_BOT_TEST_PG_OPTIONS", "")
    )
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*pg_ctl, "-o", options, "-l", str(root / "server.log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


async def _admin(admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _with_database(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def _migrate(url: str) -> None:
    async with engine_at(url) as engine:
        await schema.migrate(engine)


class Postgres:
    """Databases on one server: a migrated template, and a fresh copy per test."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = f"checkin_template_{os.getpid()}"
        asyncio.run(
            _admin(
                admin_url,
                f"DROP DATABASE IF EXISTS {self.template}",
                f"CREATE DATABASE {self.template}",
            )
        )
        asyncio.run(_migrate(_with_database(admin_url, self.template)))

    @contextmanager
    def database(self, migrated: bool) -> Iterator[str]:
        name = f"checkin_test_{os.getpid()}_{next(_names)}"
        template = f" TEMPLATE {self.template}" if migrated else ""
        asyncio.run(_admin(self.admin_url, f"CREATE DATABASE {name}{template}"))
        try:
            yield _with_database(self.admin_url, name)
        finally:
            asyncio.run(_admin(self.admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    def close(self) -> None:
        asyncio.run(_admin(self.admin_url, f"DROP DATABASE IF EXISTS {self.template}"))


class Sqlite:
    """SQLite files: a migrated template file, copied per test."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.db"
        asyncio.run(_migrate(f"sqlite:///{self.template}"))

    @contextmanager
    def database(self, migrated: bool) -> Iterator[str]:
        path = self.directory / f"test-{next(_names)}.db"
        if migrated:
            shutil.copyfile(self.template, path)
        try:
            yield f"sqlite:///{path}"
        finally:
            for leftover in self.directory.glob(f"{path.name}*"):
                leftover.unlink()
