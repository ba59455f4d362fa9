"""Test helpers: a bot app wired to the in-process simulator, and Twilio-style signing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import count
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from twilio.request_validator import RequestValidator

from bot.app import create_app
from bot.cli.run_bot import seed_demo_directory
from bot.conversation import Conversation, State
from bot.service import Service
from bot.settings import Settings
from bot.simulator import Simulator, create_simulator_app, load_demo
from bot.store import Store, open_store

from .conftest import T0, Clock

TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC = "https://bot.example.com"
ALEX = "+61491570156"  # on time
JORDAN = "+61491570157"  # early
CASEY = "+61491570158"  # late
RILEY = "+61491570159"  # prevent-auto-queue
PATELS = "+61491570110"  # two customers
TAYLOR = "+61491570111"  # no appointment today
STRANGER = "+61491570199"  # not in the directory
_sids = count(1)


def sign(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)  # type: ignore[no-any-return]


def form(sender: str, body: str, sid: str | None = None, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid or f"SM{next(_sids):032d}",
        "From": sender,
        "To": "+61400000000",
        "Body": body,
        "NumMedia": "0",
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }


@dataclass
class Bot:
    client: httpx.AsyncClient
    app: Starlette
    sim: Simulator
    settings: Settings
    clock: Clock

    @property
    def service(self) -> Service:
        return self.app.state.service  # type: ignore[no-any-return]

    @property
    def store(self) -> Store:
        return self.service.store

    async def post(
        self, params: dict[str, str], signed: bool = True, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        if signed:
            all_headers["X-Twilio-Signature"] = sign(f"{PUBLIC}/sms", params)
        return await self.client.post("/sms", content=urlencode(params), headers=all_headers)

    async def post_signed(
        self, url: str, params: dict[str, str], signed_for: str | None = None
    ) -> httpx.Response:
        """POST a form to a public URL of the bot, signed (for `signed_for`, if given)."""
        return await self.client.post(
            url.removeprefix(PUBLIC),
            content=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": sign(signed_for or url, params),
            },
        )

    async def text(self, sender: str, body: str, **kw: Any) -> str | None:
        """Send a text as Twilio would; the bot's reply text (None when silent)."""
        response = await self.post(form(sender, body, **kw))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/xml")
        return reply_text(response.text)


async def transcript(store: Store, phone: str) -> list[dict[str, Any]]:
    """Every message to and from a phone, oldest first, each with its upstream calls."""
    import sqlalchemy as sa

    from bot.store.tables import messages, upstream_calls

    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(messages).where(messages.c.phone == phone).order_by(messages.c.id)
            )
        ).mappings()
        out = [dict(r) | {"calls": []} for r in rows]
        calls = (
            await conn.execute(
                sa.select(upstream_calls)
                .join(messages, messages.c.id == upstream_calls.c.message_id)
                .where(messages.c.phone == phone)
                .order_by(upstream_calls.c.id)
            )
        ).mappings()
        by_id = {m["id"]: m for m in out}
        for call in calls:
            by_id[call["message_id"]]["calls"].append(dict(call))
    return out


async def conversation_of(store: Store, phone: str) -> Conversation:
    """A phone's conversation as stored."""
    from bot.store import conversations

    async with store.engine.connect() as conn:
        saved = await conn.run_sync(conversations.load, phone)
    return Conversation(State(saved.state), saved.data)


def reply_text(xml: str) -> str | None:
    import xml.etree.ElementTree as ET

    message = ET.fromstring(xml).find("Message")
    return message.text if message is not None else None


async def seed_directory(db_url: str) -> None:
    async with open_store(db_url) as store:
        await seed_demo_directory(store, T0)


@asynccontextmanager
async def running_bot(
    db_url: str, clock: Clock, notify: bool = False, **settings: Any
) -> AsyncIterator[Bot]:
    """The bot app, lifespan started, on a seeded SQLite file and the in-process simulator
    (the notifier's loop off unless `notify`: tests drive it on their clock)."""
    config = Settings(
        database_url=db_url, twilio_auth_token=TOKEN, **({"public_base_url": PUBLIC} | settings)
    )
    await seed_directory(db_url)
    sim = load_demo(Simulator(clock=clock))
    app = create_app(
        config,
        virtualq_transport=httpx.ASGITransport(app=create_simulator_app(sim)),
        virtualq_base_url="http://sim",
        clock=clock,
        reclaim=False,  # tests run the reclaimer themselves, on their clock
        notify=notify,
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://internal:8000") as client,
    ):
        yield Bot(client, app, sim, config, clock)


@asynccontextmanager
async def mock_upstream_bot(
    db_url: str, clock: Clock, handler: Any, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    """The bot app (signatures off) with VirtualQ played by an httpx.MockTransport handler."""
    config = Settings(database_url=db_url, twilio_validate_signature=False, **settings)
    app = create_app(
        config,
        virtualq_transport=httpx.MockTransport(handler),
        virtualq_base_url="http://vq",
        clock=clock,
        reclaim=False,
        notify=False,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client, app


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` served over loopback HTTP by uvicorn in this event loop; its base URL."""
    import asyncio

    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class FaultyBot(Bot):
    upstream: Any  # tests.faulty.FaultyUpstream


@asynccontextmanager
async def faulty_bot(
    db_url: str, clock: Clock, notify: bool = False, **settings: Any
) -> AsyncIterator[FaultyBot]:
    """The bot app against the simulator behind a fault switch, both over loopback HTTP, with
    Twilio's Messages API played by the same stand-in (see tests/faulty.py)."""
    from .faulty import FaultyUpstream

    upstream = FaultyUpstream(load_demo(Simulator(clock=clock)))
    await seed_directory(db_url)
    async with serving(upstream) as url:
        options: dict[str, Any] = dict(
            database_url=db_url,
            twilio_auth_token=TOKEN,
            public_base_url=PUBLIC,
            virtualq_base_url=url,
            twilio_api_base_url=url,
            twilio_account_sid="AC" + "1" * 32,
            twilio_from_number="+61400000000",
            virtualq_unit_ids="10",
            # Generous: a loaded CI machine (four test workers, a browser) can take a second
            # over a real check-in. Tests of timeouts set their own (tests/test_reliability.py).
            virtualq_timeout_seconds=5,
        )
        config = Settings(**(options | settings))
        app = create_app(config, clock=clock, reclaim=False, notify=notify)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://internal:8000") as client,
        ):
            yield FaultyBot(client, app, upstream.sim, config, clock, upstream)
