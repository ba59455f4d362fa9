"""The web app factory: nothing happens at import time; the lifespan owns DB and HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import checks, schema
from . import prompts as prompts_module
from .logs import RequestId
from .prompts import Prompts
from .service import Service
from .settings import Settings
from .staff import create_staff_app
from .store import Store, create_engine
from .virtualq import make_client, make_http_client
from .webhook import (
    SignatureChecker,
    healthz,
    make_fallback_endpoint,
    make_sms_endpoint,
    make_status_endpoint,
)

log = logging.getLogger("checkin_bot.app")


def create_app(
    settings: Settings,
    *,
    prompts: Prompts | None = None,
    virtualq_transport: httpx.AsyncBaseTransport | None = None,
    virtualq_base_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
    reclaim: bool = True,
) -> Starlette:
    """The bot's web app on a store and VirtualQ: Twilio's webhooks (/sms, /sms/fallback,
    /sms/status), health (/healthz, /readyz) and the staff pages (/staff/…, /static/…)."""
    prompts = prompts or prompts_module.load(settings.prompts_dir, settings.language)
    store = Store(create_engine(settings.database_url, settings.database_pool_size))
    http = make_http_client(settings, virtualq_transport, virtualq_base_url)
    service = Service(settings, store, make_client(settings, http), prompts, clock)
    checker = SignatureChecker(settings)
    if checker.enabled and not settings.public_base_url:
        log.warning(
            "PUBLIC_BASE_URL is not set: signatures are checked against the URL this "
            "process sees, which behind a proxy is usually wrong"
        )

    readiness = checks.Readiness(store.engine, service.client)

    async def readyz(request: Request) -> Response:
        """Database and VirtualQ reachable: 200, else 503; no URLs or secrets in the answer."""
        found = await readiness.checks()
        ready = all(c.status is checks.Status.OK for c in found)
        body = {
            "status": "ready" if ready else "unavailable",
            "checks": {
                c.name: {"ok": c.status is checks.Status.OK, "detail": c.detail} for c in found
            },
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await schema.check(store.engine)
        except schema.SchemaError as exc:
            log.error("not starting: %s", exc)
            await store.close()
            raise
        except Exception as exc:
            # Start anyway: /sms answers with the apology, /sms/fallback works, /readyz says
            # why, and everything recovers when the database is back.
            log.error("database unreachable at start-up (%s); starting anyway", exc)
        reclaimer = asyncio.create_task(service.keep_reclaiming()) if reclaim else None
        yield
        if reclaimer:
            reclaimer.cancel()
        await service.drain()
        await http.aclose()
        await store.close()

    app = Starlette(
        routes=[
            Route("/sms", make_sms_endpoint(service, checker), methods=["POST"]),
            Route(
                "/sms/fallback",
                make_fallback_endpoint(checker, prompts.render("upstream_unavailable")),
                methods=["POST"],
            ),
            Route("/sms/status", make_status_endpoint(store, checker), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Mount("/staff", app=create_staff_app(settings, store, clock)),
            Mount("/static", app=StaticFiles(packages=[("bot", "static")]), name="static"),
        ],
        middleware=[Middleware(RequestId)],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.store = store
    return app
