"""The web app factory: nothing happens at import time; the lifespan owns DB and HTTP client;
`exception_handlers` is the one place errors become responses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import doctor, logs, phones
from . import prompts as prompts_module
from .errors import ClientGone, HttpError, NotHandled, SchemaError
from .logs import request_id, request_id_for
from .notify import Notifier
from .outbox import Outbox
from .prompts import Catalogue
from .proxy import ForwardedFor
from .reclaimer import Reclaimer
from .replies import ReplyKey
from .service import Service
from .settings import Settings
from .staff.app import Staff, staff_mount
from .staff.auth import SecurityHeaders
from .store import schema, store_at
from .virtualq import make_client, make_http_client
from .webhook import SignatureChecker, Webhooks, healthz, twiml

log = logging.getLogger("checkin_bot.app")


def create_app(
    settings: Settings,
    *,
    catalogue: Catalogue | None = None,
    virtualq_transport: httpx.AsyncBaseTransport | None = None,
    virtualq_base_url: str | None = None,
    clock: Callable[[], datetime] | None = None,
    reclaim: bool = True,
    notify: bool = True,
) -> Starlette:
    """The bot's web app on a store and VirtualQ: Twilio's webhooks (/sms, /sms/fallback,
    /sms/status), health (/healthz, /readyz) and the staff pages (/staff/…, /static/…)."""
    catalogue = catalogue or prompts_module.load_catalogue(
        settings.prompts_dir, settings.default_language
    )
    store = store_at(settings.database_url, settings.database_pool_size)
    http = make_http_client(settings, virtualq_transport, virtualq_base_url)
    service = Service(settings, store, make_client(settings, http), catalogue, clock)
    checker = SignatureChecker(settings)
    if checker.enabled and not settings.public_base_url:
        log.warning(
            "PUBLIC_BASE_URL is not set: signatures are checked against the URL this "
            "process sees, which behind a proxy is usually wrong"
        )
    apology = service.prompts.render(ReplyKey.UPSTREAM_UNAVAILABLE)
    webhooks = Webhooks(service, checker, apology)
    outbox = Outbox(settings, store, service.late.texter, service.clock)
    notifier = Notifier(settings, store, service.client, outbox, catalogue, service.clock)
    readiness = doctor.Readiness(store.engine, service.client)
    staff_pages, staff = staff_mount(settings, store, clock, outbox=outbox, catalogue=catalogue)

    async def readyz(request: Request) -> Response:
        """Database and VirtualQ reachable: 200, else 503; no URLs or secrets in the answer."""
        found = await readiness.checks()
        ready = all(c.status is doctor.Status.OK for c in found)
        checks = {c.name: {"ok": c.status is doctor.Status.OK, "detail": c.detail} for c in found}
        notifying, detail = notifier.health()
        checks["notifications"] = {"ok": notifying, "detail": detail}
        ready = ready and notifying
        body = {"status": "ready" if ready else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await schema.check(store.engine)
        except SchemaError as exc:
            log.error("not starting: %s", exc)
            await store.close()
            raise
        except Exception as exc:
            # Start anyway: /sms answers with the apology, /sms/fallback works, /readyz says
            # why, and everything recovers when the database is back.
            log.error("database unreachable at start-up (%s); starting anyway", exc)
        tasks = []
        if reclaim:
            tasks.append(asyncio.create_task(Reclaimer(service).keep_reclaiming()))
        if notify:
            tasks.append(asyncio.create_task(notifier.run()))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await service.late.drain()
        with contextlib.suppress(Exception):
            await notifier.stop()
        await http.aclose()
        await store.close()

    app = Starlette(
        routes=[
            Route("/sms", webhooks.sms, methods=["POST"]),
            Route("/sms/fallback", webhooks.fallback, methods=["POST"]),
            Route("/sms/status", webhooks.status, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            staff_pages,
            Mount("/static", app=StaticFiles(packages=[("bot", "static")]), name="static"),
        ],
        # Outermost first: staff answers, whatever made them, carry the security headers;
        # every request gets an id; any error a handler below did not answer becomes a plain
        # 500 in Boundary (the connection kept).
        middleware=[
            Middleware(ForwardedFor, trusted=settings.forwarded_allow_ips),
            Middleware(
                SecurityHeaders,
                prefix="/staff",
                https=(settings.public_base_url or "").lower().startswith("https://"),
            ),
            Middleware(Boundary),
        ],
        exception_handlers=exception_handlers(apology, staff),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.store = store
    app.state.outbox = outbox
    app.state.notifier = notifier
    return app


def exception_handlers(
    apology: str, staff: Staff | None
) -> dict[type[Exception] | int, Callable[[Request, Exception], Response]]:
    """How requests' errors become responses: our 4xx errors as their status says, a text we
    could not handle as the apology TwiML, a client gone as nothing. Anything else is
    Boundary's plain 500."""

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HttpError)
        path = request.url.path
        log.warning("rejected %s %s (%d): %s", request.method, path, exc.status, exc)
        if staff is not None and path.startswith("/staff"):
            return staff.error(request, exc)
        return PlainTextResponse(str(exc), status_code=exc.status)

    def not_handled(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, NotHandled)
        phone = phones.mask(exc.phone) if exc.phone else "?"
        log.error("%s (%s): %s", exc.what, phone, _cause(exc), exc_info=exc.__cause__)
        if request.url.path == "/sms" and exc.stored:
            # Stored, then failed: 200 with the apology rather than a 5xx; the customer reads
            # the same words one hop sooner.
            return twiml(apology)
        # Not stored (the database is down or saturated): a 503, so that Twilio calls the
        # Fallback URL, which stores the text if it can and answers the apology.
        return PlainTextResponse("not recorded", status_code=503)

    def gone(request: Request, exc: Exception) -> Response:
        log.info("%s %s: %s", request.method, request.url.path, exc)
        return Response(status_code=400)  # never read: the client has gone

    return {
        HttpError: http_error,
        NotHandled: not_handled,
        ClientGone: gone,
    }


class Boundary:
    """Every request's id, its access line, and the last error sink (one middleware: each
    wraps every request's `send`). The id is the platform's X-Request-Id when it sent a sane
    one, else a new one; it is in the logging context while the request runs and in the
    response's X-Request-Id. An exception no handler answered is logged with its traceback and
    answered with a plain 500, instead of reaching the server (which logs it as an ASGI crash
    and drops the connection); after the response has started, nothing can be answered.

    The access line (uvicorn's format, logger checkin_bot.access; uvicorn's own are off)
    names the client as bot.proxy found it and the query's names without their values (a staff
    search is a phone number in any format), for every request but an answered text: POST
    /sms answered 2xx already has the service's line (the phone masked, what it meant, what
    was said), and a second line a text cost half the logging's share of the CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_for(scope["headers"])
        header = (b"x-request-id", rid.encode())
        token = request_id.set(rid)
        status = 0
        asked = scope["path"], scope.get("root_path", "")  # routing rewrites them as it goes

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
                if not (200 <= status < 300 and asked[0] == "/sms"):
                    _access_line(scope, *asked, status)  # before the answer leaves, as uvicorn's
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if status:
                raise
            await PlainTextResponse("Internal Server Error", status_code=500)(
                scope, receive, sending
            )
        finally:
            request_id.reset(token)


access_log = logging.getLogger(logs.ACCESS)
_LONG_NUMBER = re.compile(r"(%2B|\+)?\d{7,}")


def _access_line(scope: Scope, path: str, root_path: str, status: int) -> None:
    """`path` and `root_path` as the request came (the rest of its scope routing leaves)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    path = urllib.parse.quote(root_path + path)  # as uvicorn writes it
    path = _LONG_NUMBER.sub("…", path)  # /sms/0491570156: a number in a path is not logged
    raw = scope.get("query_string", b"").decode("ascii", "backslashreplace")
    query = "&".join(f"{name}=…" for name, _ in urllib.parse.parse_qsl(raw, True))
    access_log.info(
        '%s - "%s %s HTTP/%s" %d',
        f"{client[0]}:{client[1]}" if client else "-",
        scope["method"],
        f"{path}?{query}" if query else path,
        scope.get("http_version", "1.1"),
        status,
    )


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause else "unknown"
