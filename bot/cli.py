"""The `checkin-bot` command line (also `python -m bot`)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import sys
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from . import checks, identity, schema
from . import prompts as prompts_module
from .app import create_app
from .logs import configure_logging, log_config
from .prompts import PromptError
from .service import InboundText, Service
from .settings import (
    Settings,
    SettingsError,
    load_settings,
    settings_markdown,
    settings_table,
)
from .simulator import DEMO_PEOPLE, UNKNOWN_DEMO_PHONE, Simulator, create_simulator_app, load_demo
from .simulator import demo_directory as demo_rows
from .store import Purged, Store, engine_at, open_store
from .virtualq import make_client, make_http_client

DEMO_DATABASE = "sqlite:///checkin-bot-demo.db"
T = TypeVar("T")


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's async work; a database on the wrong schema is a clean error."""
    try:
        return asyncio.run(work)
    except schema.SchemaError as exc:
        raise click.ClickException(str(exc)) from exc


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _require_serve_settings(settings: Settings) -> None:
    missing = []
    if settings.twilio_validate_signature and not settings.twilio_auth_token:
        missing.append("TWILIO_AUTH_TOKEN (or TWILIO_VALIDATE_SIGNATURE=false for local tests)")
    if not settings.virtualq_base_url:
        missing.append("VIRTUALQ_BASE_URL (or run `checkin-bot demo` to use the simulator)")
    if missing:
        raise click.ClickException("serve needs: " + "; ".join(missing))


def app_from_env() -> Starlette:
    """The production app, configured from the environment (uvicorn factory)."""
    settings = load_settings()
    _require_serve_settings(settings)
    configure_logging(settings.log_format)
    return create_app(settings)


@click.group()
def main() -> None:
    """SMS check-in bot for Q-Flow VirtualQ: customers text HERE and get their ticket."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, envvar="PORT", type=int)
@click.option("--workers", default=1, show_default=True, envvar="WEB_CONCURRENCY", type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Run the production web server (settings from the environment)."""
    settings = _settings()
    _require_serve_settings(settings)
    try:
        prompts_module.load(settings.prompts_dir, settings.language)
    except PromptError as exc:
        raise click.ClickException(str(exc)) from exc
    _run(_check_schema(settings.database_url))
    uvicorn.run(
        "bot.cli:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=True,  # trusted from FORWARDED_ALLOW_IPS only (uvicorn's rule)
        timeout_graceful_shutdown=20,  # finish in-flight webhooks inside a PaaS's 30 s stop
        log_config=log_config(settings.log_format),
    )


async def _check_schema(url: str) -> None:
    async with open_store(url):
        pass


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8081, show_default=True, type=int)
@click.option(
    "--call-every",
    default=0.0,
    show_default=True,
    type=float,
    help="Seconds between calling the next customer in every queue (0: never).",
)
def simulator(host: str, port: int, call_every: float) -> None:
    """Run the VirtualQ simulator alone, with the demo data."""
    app = create_simulator_app(call_every=call_every or None)
    click.echo(f"VirtualQ simulator on http://{host}:{port}  (state: /_sim/state)")
    uvicorn.run(app, host=host, port=port, log_level="warning", workers=1)  # not WEB_CONCURRENCY


@main.command()
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--sim-port", default=8081, show_default=True, type=int)
@click.option(
    "--call-every",
    default=60.0,
    show_default=True,
    type=float,
    help="Seconds between calling the next customer in every queue.",
)
def demo(port: int, sim_port: int, call_every: float) -> None:
    """The whole bot locally: webhook + VirtualQ simulator + SQLite, no credentials."""
    import os

    database = os.environ.get("DATABASE_URL", DEMO_DATABASE)
    settings = _settings(
        twilio_validate_signature=False,
        database_url=database,
        virtualq_base_url=f"http://127.0.0.1:{sim_port}",
    )
    if not settings.staff_enabled():  # a login for this run only, printed below
        settings = settings.model_copy(
            update=dict(
                staff_username=settings.staff_username or "staff",
                staff_password=settings.staff_password or SecretStr(secrets.token_urlsafe(9)),
                secret_key=settings.secret_key or SecretStr(secrets.token_urlsafe(32)),
            )
        )
    configure_logging(settings.log_format, server_level="WARNING")
    _run(_seed_demo_database(settings.database_url))
    bot_app = create_app(settings)
    sim_app = create_simulator_app(call_every=call_every or None)
    _print_demo_help(port, sim_port, database)
    assert settings.staff_password is not None
    click.echo(
        f"Staff pages: http://127.0.0.1:{port}/staff/  user {settings.staff_username}, "
        f"password {settings.staff_password.get_secret_value()}\n"
    )

    async def both() -> None:
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=app_port,
                    workers=1,  # one process holds both apps, whatever WEB_CONCURRENCY says
                    log_config=log_config(settings.log_format, server_level="WARNING"),
                )
            )
            for app, app_port in ((sim_app, sim_port), (bot_app, port))
        ]
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(both())


def _print_demo_help(port: int, sim_port: int, database: str) -> None:
    click.echo(f"""
checkin-bot demo: webhook on http://127.0.0.1:{port}/sms, VirtualQ simulator on
http://127.0.0.1:{sim_port} (queues: /_sim/state), log in {database}.
Signature checks are off. Demo phones (the queue moves every minute):""")
    for _, first, last, tel, _, _, flag in DEMO_PEOPLE:
        click.echo(f"  {tel:<16} {first} {last}: {flag}")
    click.echo(f"  {UNKNOWN_DEMO_PHONE:<16} (not in the directory)")
    click.echo(f"""
Text the bot as Twilio would:
  curl -s -d From=+61491570156 -d Body=HERE -d MessageSid=SM$RANDOM http://127.0.0.1:{port}/sms
or chat in a terminal (in-process simulator):  checkin-bot chat --from 0491570157
Ctrl-C stops the demo.
""")


async def seed_demo_directory(store: Store, now: datetime) -> None:
    """Load the simulator's demo customers into the directory (idempotent)."""
    text = "\n".join(f"{phone},{pid},{name}" for phone, pid, name in demo_rows())
    await identity.import_directory(store, text, "AU", now)


async def _seed_demo_database(url: str) -> None:
    async with open_store(url, migrate=True) as store:
        await seed_demo_directory(store, datetime.now(UTC))


@main.command()
@click.option("--from", "sender", required=True, help="The phone number to text from.")
def chat(sender: str) -> None:
    """A terminal conversation through the same service code (simulator unless configured)."""
    settings = _settings()
    logging.getLogger("checkin_bot").setLevel(logging.WARNING)
    _run(_chat(settings, sender))


async def _chat(settings: Settings, sender: str) -> None:
    try:
        prompts = prompts_module.load(settings.prompts_dir, settings.language)
    except PromptError as exc:
        raise click.ClickException(str(exc)) from exc
    transport: httpx.AsyncBaseTransport | None = None
    built_in = not settings.virtualq_base_url
    if built_in:
        transport = httpx.ASGITransport(app=create_simulator_app(load_demo(Simulator())))
        settings = settings.model_copy(update={"virtualq_base_url": "http://simulator"})
    async with (
        open_store(settings.database_url, migrate=built_in) as store,
        make_http_client(settings, transport) as http,
    ):
        if built_in:
            await seed_demo_directory(store, datetime.now(UTC))
        service = Service(settings, store, make_client(settings, http), prompts)
        interactive = sys.stdin.isatty()
        if interactive:
            where = "the built-in simulator" if built_in else settings.virtualq_base_url
            click.echo(f"Texting as {sender} ({where}). Type a message; Ctrl-D ends.")
        for number in itertools.count(1):
            line = await asyncio.to_thread(_read_line, "you> " if interactive else "")
            if line is None:
                break
            sid = f"SMchat{uuid.uuid4().hex[:26]}{number}"
            reply = (await service.handle(InboundText(sid, sender, line))).text
            click.echo(f"bot> {reply}" if reply is not None else "bot> (no reply)")


def _read_line(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


@main.command()
@click.option(
    "--new-revision",
    metavar="MESSAGE",
    help="(Developers) write a migration for the table changes in bot/store.py.",
)
def migrate(new_revision: str | None) -> None:
    """Create or upgrade the database schema (the Procfile's release phase)."""
    settings = _settings()

    async def run() -> tuple[str | None, str]:
        async with engine_at(settings.database_url) as engine:
            if new_revision:
                path = await schema.new_revision(engine, new_revision)
                click.echo(f"wrote {path}: review it, then run `checkin-bot migrate`")
                return schema.head(), schema.head()
            return await schema.migrate(engine)

    before, after = _run(run())
    if new_revision:
        return
    if before == after:
        click.echo(f"database schema is up to date ({after})")
    else:
        click.echo(f"database schema upgraded from {before or 'nothing'} to {after}")


@main.group()
def directory() -> None:
    """The phone -> PersonalId directory."""


@directory.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def directory_import(csv_file: Path) -> None:
    """Load phone,personal_id[,name] rows (any phone format) into the directory."""
    settings = _settings()

    async def run() -> identity.ImportReport:
        text = csv_file.read_text(encoding="utf-8-sig", errors="replace")
        async with open_store(settings.database_url) as store:
            return await identity.import_directory(
                store, text, settings.default_region, datetime.now(UTC)
            )

    report = _run(run())
    for line, problem in report.errors:
        click.echo(f"{csv_file}:{line}: skipped: {problem}", err=True)
    click.echo(f"{report.added} added, {report.updated} updated, {len(report.errors)} skipped")
    if report.errors and not (report.added or report.updated):
        sys.exit(1)


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
    settings = _settings()
    days = days or settings.retention_days
    if days is None:
        raise click.UsageError("say how old: --older-than DAYS, or set RETENTION_DAYS")
    before = datetime.now(UTC) - timedelta(days=days)

    async def run() -> Purged:
        async with open_store(settings.database_url) as store:
            return await store.purge(before)

    done = _run(run())
    click.echo(
        f"deleted {done.conversations} conversations ({done.messages} messages, "
        f"{done.upstream_calls} VirtualQ calls) and {done.memories} phones' conversation state "
        f"last active before {before:%Y-%m-%d %H:%M} UTC ({days} days)"
    )


@main.command()
@click.option(
    "--offline", is_flag=True, help="Skip the checks that call the deployed app and Twilio."
)
@click.option("--workers", default=1, show_default=True, envvar="WEB_CONCURRENCY", type=int)
def doctor(offline: bool, workers: int) -> None:
    """Check the settings, database, VirtualQ, public URL and Twilio; say how to fix each."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        click.echo(checks.Check("settings", checks.Status.FAIL, str(exc)).line())
        sys.exit(1)
    found = asyncio.run(checks.doctor(settings, live=not offline, workers=workers))
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
