"""`checkin-bot staff …`: named staff accounts for the staff pages (desk or admin)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from ..staff.accounts import Role, hash_password, password_problem
from ..store import open_store
from ..store.staff import AccountRow, StaffStore
from . import main, run, settings


@main.group()
def staff() -> None:
    """Staff accounts for the staff pages: desk (read, reply, mark handled) or admin (also
    broadcast, export, purge, the audit log)."""


def _password(name: str, from_stdin: bool) -> str:
    """A new password: from standard input (scripts), or asked for twice on a terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(
            f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True
        )
    problem = password_problem(name, password)
    if problem:
        raise click.ClickException(f"password not accepted: {problem}")
    return password


@staff.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default=Role.DESK.value, show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def add(name: str, role: str, password_stdin: bool) -> None:
    """Add a staff account (the password is asked for, or read with --password-stdin)."""
    if not 1 <= len(name) <= 64 or not name.isprintable() or name != name.strip():
        raise click.BadParameter("a name of 1 to 64 printable characters", param_hint="NAME")
    config = settings()
    hashed = hash_password(_password(name, password_stdin))

    async def work() -> bool:
        async with open_store(config.database_url) as store:
            staff_store = StaffStore(store.engine, store.tx)
            added = await staff_store.add_account(name, role, hashed, datetime.now(UTC))
            if added:
                await staff_store.audit("cli", "staff_add", name, f"role {role}", datetime.now(UTC))
            return added

    if not run(work()):
        raise click.ClickException(f"there is already an account {name!r}")
    click.echo(f"added {role} account {name}")


@staff.command("list")
def list_() -> None:
    """The staff accounts (STAFF_USERNAME, if set, is one more admin)."""
    config = settings()

    async def work() -> list[AccountRow]:
        async with open_store(config.database_url) as store:
            return await StaffStore(store.engine, store.tx).accounts()

    rows = run(work())
    for row in rows:
        click.echo(f"{row.name}\t{row.role}\tsince {row.created_at:%Y-%m-%d}")
    if config.staff_username:
        click.echo(f"{config.staff_username}\tadmin\t(STAFF_USERNAME)")
    if not rows and not config.staff_username:
        click.echo("no staff accounts: add one with `checkin-bot staff add NAME --role admin`")


@staff.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove a staff account; its sessions end at once."""
    config = settings()

    async def work() -> bool:
        async with open_store(config.database_url) as store:
            staff_store = StaffStore(store.engine, store.tx)
            removed = await staff_store.remove_account(name, datetime.now(UTC))
            if removed:
                await staff_store.audit("cli", "staff_remove", name, None, datetime.now(UTC))
            return removed

    if not run(work()):
        raise click.ClickException(f"no account {name!r}")
    click.echo(f"removed {name}")


@staff.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def passwd(name: str, password_stdin: bool) -> None:
    """Set a staff account's password; its sessions end at once."""
    config = settings()
    hashed = hash_password(_password(name, password_stdin))

    async def work() -> bool:
        async with open_store(config.database_url) as store:
            staff_store = StaffStore(store.engine, store.tx)
            changed = await staff_store.set_password(name, hashed, datetime.now(UTC))
            if changed:
                await staff_store.audit("cli", "staff_passwd", name, None, datetime.now(UTC))
            return changed

    if not run(work()):
        raise click.ClickException(f"no account {name!r}")
    click.echo(f"password changed for {name}; their sessions have ended")
