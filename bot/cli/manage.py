"""Commands that look after a deployment: `migrate`, `doctor`, `purge`, `settings`."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

import click

from .. import doctor as doctor_checks
from ..conversation import State
from ..errors import SettingsError
from ..settings import load_settings, settings_markdown, settings_table
from ..store import engine_at, open_store, schema
from ..store.log import Purged
from . import main, run, settings


@main.command()
@click.option(
    "--new-revision",
    metavar="MESSAGE",
    help="(Developers) write a migration for the table changes in bot/store/tables.py.",
)
def migrate(new_revision: str | None) -> None:
    """Create or upgrade the database schema (the Procfile's release phase)."""
    config = settings()

    async def work() -> tuple[str | None, str]:
        async with engine_at(config.database_url) as engine:
            if new_revision:
                path = await schema.new_revision(engine, new_revision)
                click.echo(f"wrote {path}: review it, then run `checkin-bot migrate`")
                return schema.head(), schema.head()
            return await schema.migrate(engine)

    before, after = run(work())
    if new_revision:
        return
    if before == after:
        click.echo(f"database schema is up to date ({after})")
    else:
        click.echo(f"database schema upgraded from {before or 'nothing'} to {after}")


@main.command()
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    help="Delete conversations whose last text is older than DAYS days [default: RETENTION_DAYS].",
    metavar="DAYS",
)
def purge(days: int | None) -> None:
    """Delete old conversations (messages, upstream calls, state); opt-outs and the directory
    stay. Run it daily from the platform's scheduler."""
    config = settings()
    days = days or config.retention_days
    if days is None:
        raise click.UsageError("say how old: --older-than DAYS, or set RETENTION_DAYS")
    before = datetime.now(UTC) - timedelta(days=days)

    async def work() -> Purged:
        async with open_store(config.database_url) as store:
            # An opted-out phone's state is what keeps the bot silent: it outlives retention.
            return await store.log.purge(before, keep_states=(State.OPTED_OUT.value,))

    done = run(work())
    click.echo(
        f"deleted {done.threads} conversations ({done.messages} messages, "
        f"{done.upstream_calls} VirtualQ calls) and {done.conversations} phones' conversation "
        f"state last active before {before:%Y-%m-%d %H:%M} UTC ({days} days)"
    )


@main.command()
@click.option(
    "--offline", is_flag=True, help="Skip the checks that call the deployed app and Twilio."
)
@click.option("--workers", default=1, show_default=True, envvar="WEB_CONCURRENCY", type=int)
def doctor(offline: bool, workers: int) -> None:
    """Check the settings, database, VirtualQ, public URL and Twilio; say how to fix each."""
    try:
        config = load_settings()
    except SettingsError as exc:
        click.echo(doctor_checks.Check("settings", doctor_checks.Status.FAIL, str(exc)).line())
        sys.exit(1)
    found = asyncio.run(doctor_checks.doctor(config, live=not offline, workers=workers))
    for check in found:
        click.echo(check.line())
    failed = [c.name for c in found if not c.ok]
    if failed:
        click.echo(f"\n{len(failed)} problem(s): {', '.join(failed)}")
        sys.exit(1)
    click.echo("\nall good")


@main.command("settings")
@click.option("--markdown", is_flag=True, help="As the Markdown table in the README.")
def show_settings(markdown: bool) -> None:
    """Print every setting, its default and what it does."""
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    for name, default, help_text in settings_table():
        click.echo(f"{name}\n    default: {default or '(none)'}\n    {help_text}")
