"""Commands that run the bot: `serve` (production), `demo`, `chat` and `simulator`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click
import httpx
import uvicorn
from pydantic import SecretStr
from starlette.applications import Starlette

from .. import memory, phones
from .. import prompts as prompts_module
from ..app import create_app
from ..errors import PromptError
from ..logs import configure_logging, log_config
from ..service import InboundText, Service
from ..serving import HeadersDeadline, run_uvicorn
from ..settings import Settings, load_settings
from ..simulator import (
    DEMO_PEOPLE,
    LOAD_CUSTOMERS_MAX,
    UNKNOWN_DEMO_PHONE,
    Simulator,
    create_simulator_app,
    load_demo,
)
from ..simulator import demo_directory as demo_rows
from ..simulator import load_customers as add_load_customers
from ..store import Store, open_store
from ..store.directory import Entry
from ..virtualq import make_client, make_http_client
from . import main, require_free_port, run, settings

DEMO_DATABASE = Path("checkin-bot-demo.db")


def _require_serve_settings(config: Settings) -> None:
    missing = []
    if config.twilio_validate_signature and not config.twilio_auth_token:
        missing.append("TWILIO_AUTH_TOKEN (or TWILIO_VALIDATE_SIGNATURE=false for local tests)")
    if not config.virtualq_base_url:
        missing.append("VIRTUALQ_BASE_URL (or run `checkin-bot demo` to use the simulator)")
    if missing:
        raise click.ClickException("serve needs: " + "; ".join(missing))


def app_from_env() -> Starlette:
    """The production app, configured from the environment (uvicorn factory)."""
    config = load_settings()
    _require_serve_settings(config)
    configure_logging(config.log_format)
    app = create_app(config)
    memory.settle()
    return app


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, envvar="PORT", type=int)
@click.option("--workers", default=1, show_default=True, envvar="WEB_CONCURRENCY", type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Run the production web server (settings from the environment; PORT, WEB_CONCURRENCY)."""
    config = settings()
    _require_serve_settings(config)
    try:
        prompts_module.load_catalogue(config.prompts_dir, config.default_language)
    except PromptError as exc:
        raise click.ClickException(str(exc)) from exc
    run(_check_schema(config.database_url))
    require_free_port(host, port)
    server = uvicorn.Config(
        "bot.cli.run_bot:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # The app reads X-Forwarded-For itself (bot.proxy): uvicorn's reading believes the
        # left-most hop, which the client chose.
        proxy_headers=False,
        timeout_graceful_shutdown=20,  # finish in-flight webhooks inside a PaaS's 30 s stop
        # With several workers, uvicorn kills a worker that has not answered its health check
        # in 5 s, and a worker still importing the app on a busy machine has not: on a slow
        # dyno's boot that is a loop of killed workers and no server. Give them 30 s.
        timeout_worker_healthcheck=30,
        log_config=log_config(config.log_format),
        access_log=False,  # the app writes the access lines (bot.app.Boundary)
        http=HeadersDeadline,
    )
    run_uvicorn(server)


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
@click.option(
    "--load-customers",
    default=0,
    show_default=True,
    type=click.IntRange(0, LOAD_CUSTOMERS_MAX),
    metavar="N",
    help="Also N customers due in 5 minutes (PersonalIds L000001…, phones +61490000000…), "
    "for load tests (bench/load.py).",
)
def simulator(host: str, port: int, call_every: float, load_customers: int) -> None:
    """Run the VirtualQ simulator alone, with the demo data."""
    require_free_port(host, port)
    sim = load_demo(Simulator())
    if load_customers:
        add_load_customers(sim, load_customers)
    app = create_simulator_app(sim, call_every=call_every or None)
    click.echo(f"VirtualQ simulator on http://{host}:{port}  (state: /_sim/state)")
    uvicorn.run(app, host=host, port=port, log_level="warning", workers=1)  # not WEB_CONCURRENCY


@main.command()
@click.option("--port", default=8080, show_default=True, type=int, help="The bot's port.")
@click.option("--sim-port", default=8081, show_default=True, type=int, help="The simulator's port.")
@click.option(
    "--call-every",
    default=60.0,
    show_default=True,
    type=float,
    help="Seconds between calling the next customer in every queue.",
)
def demo(port: int, sim_port: int, call_every: float) -> None:
    """The whole bot locally: webhook + VirtualQ simulator + SQLite, no credentials.

    Each run starts clean: the simulator's queues are new, so the demo's log
    (checkin-bot-demo.db in this folder) is started afresh too. DATABASE_URL is not used,
    so a demo can never write into a real deployment's database."""
    require_free_port("127.0.0.1", port, "--port")
    require_free_port("127.0.0.1", sim_port, "--sim-port")
    for leftover in (DEMO_DATABASE, *(Path(f"{DEMO_DATABASE}{s}") for s in ("-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    config = settings(
        twilio_validate_signature=False,
        database_url=f"sqlite:///{DEMO_DATABASE}",
        virtualq_base_url=f"http://127.0.0.1:{sim_port}",
    )
    if not config.staff_enabled():  # a login for this run only, printed below
        config = config.model_copy(
            update=dict(
                staff_username=config.staff_username or "staff",
                staff_password=config.staff_password or SecretStr(secrets.token_urlsafe(9)),
                secret_key=config.secret_key or SecretStr(secrets.token_urlsafe(32)),
            )
        )
    configure_logging(config.log_format, server_level="WARNING")
    run(_seed_demo_database(config.database_url))
    bot_app = create_app(config)
    sim_app = create_simulator_app(call_every=call_every or None)
    _print_demo_help(port, sim_port)
    assert config.staff_password is not None
    click.echo(
        f"Staff pages: http://127.0.0.1:{port}/staff/  user {config.staff_username}, "
        f"password {config.staff_password.get_secret_value()}\n"
    )

    async def both() -> None:
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=app_port,
                    workers=1,  # one process holds both apps, whatever WEB_CONCURRENCY says
                    log_config=log_config(config.log_format, server_level="WARNING"),
                    http=HeadersDeadline,  # as `serve`: a request's headers come in time
                )
            )
            for app, app_port in ((sim_app, sim_port), (bot_app, port))
        ]
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(both())


def _print_demo_help(port: int, sim_port: int) -> None:
    click.echo(f"""
checkin-bot demo: webhook on http://127.0.0.1:{port}/sms, VirtualQ simulator on
http://127.0.0.1:{sim_port} (queues: /_sim/state), log in {DEMO_DATABASE} (new each run).
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
    rows = [
        Entry(e164, pid, name)
        for phone, pid, name in demo_rows()
        if (e164 := phones.normalise(phone, "AU")) is not None
    ]
    await store.directory.upsert(rows, now)


async def _seed_demo_database(url: str) -> None:
    async with open_store(url, migrate=True) as store:
        await seed_demo_directory(store, datetime.now(UTC))


@main.command()
@click.option("--from", "sender", required=True, help="The phone number to text from.")
def chat(sender: str) -> None:
    """A terminal conversation through the same service code (simulator unless configured).

    With the built-in simulator (VIRTUALQ_BASE_URL unset) each chat starts clean, on a
    database of its own; with a real VirtualQ it uses DATABASE_URL."""
    config = settings()
    logging.getLogger("checkin_bot").setLevel(logging.WARNING)
    run(_chat(config, sender))


async def _chat(config: Settings, sender: str) -> None:
    try:
        catalogue = prompts_module.load_catalogue(config.prompts_dir, config.default_language)
    except PromptError as exc:
        raise click.ClickException(str(exc)) from exc
    transport: httpx.AsyncBaseTransport | None = None
    built_in = not config.virtualq_base_url
    with tempfile.TemporaryDirectory(prefix="checkin-bot-chat-") as scratch:
        if built_in:
            transport = httpx.ASGITransport(app=create_simulator_app(load_demo(Simulator())))
            config = config.model_copy(
                update={
                    "virtualq_base_url": "http://simulator",
                    "database_url": f"sqlite:///{Path(scratch) / 'chat.db'}",
                }
            )
        async with (
            open_store(config.database_url, migrate=built_in) as store,
            make_http_client(config, transport) as http,
        ):
            if built_in:
                await seed_demo_directory(store, datetime.now(UTC))
            service = Service(config, store, make_client(config, http), catalogue)
            await _converse(service, config, sender, built_in)


async def _converse(service: Service, config: Settings, sender: str, built_in: bool) -> None:
    interactive = sys.stdin.isatty()
    if interactive:
        where = "the built-in simulator" if built_in else config.virtualq_base_url
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


__all__ = ["app_from_env", "seed_demo_directory"]
