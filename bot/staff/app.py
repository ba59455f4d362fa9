"""The staff pages under /staff: login, dashboard, conversations, one transcript, CSV export.

Every route needs a login except the login form itself: a session cookie signed with
SECRET_KEY for the pages, or HTTP Basic with the staff credentials on the .json twins and the
CSV export (for scripts). Pages are server-rendered Jinja2 with autoescaping, carry a strict
Content-Security-Policy (no script at all), deny framing and are never cached. POST forms
(login, logout) carry a CSRF token kept in the session.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route

from ..errors import BadFilter, HttpError
from ..settings import Settings
from ..store import Store
from ..threads import LABELS
from ..webhook import read_form
from . import queries
from .auth import SECURITY_HEADERS, Credentials, LoginThrottle, SecurityHeaders, basic_auth

log = logging.getLogger("checkin_bot.staff")

SESSION_SECONDS = 12 * 3600  # a shift; the cookie is renewed on every page
COOKIE = "checkin_bot_staff"

Endpoint = Callable[[Request], Awaitable[Response]]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(raw: str | None) -> str:
    """Where to go after login: a staff page of ours, never another site."""
    if raw and raw.startswith("/staff/") and "//" not in raw and "\\" not in raw:
        return raw
    return "/staff/dashboard"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _day(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%a %d %b %Y")


def _when(iso: str | None, with_day: bool = True) -> str:
    if not iso:
        return "–"
    at = datetime.fromisoformat(iso)
    return at.strftime("%a %d %b %H:%M:%S" if with_day else "%H:%M:%S")


def _pretty(value: Any) -> str:
    """A raw VirtualQ response indented when it is JSON, else as it came."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("bot", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=_duration, when=_when, day=_day, pretty=_pretty, urlencode=urlencode
    )
    return env


def hour_bars(hours: list[int], width: int = 720, height: int = 160) -> dict[str, Any]:
    """Arrivals per hour as SVG bar geometry (drawn server-side: no script, no library)."""
    top = max(hours) or 1
    step = width / 24
    axis, headroom = 20, 16  # room for the hour labels below and the counts above
    scale = (height - axis - headroom) / top
    bars = [
        {
            "x": round(i * step + 2, 1),
            "width": round(step - 4, 1),
            "height": round(n * scale, 1),
            "y": round(height - axis - n * scale, 1),
            "count": n,
            "hour": i,
        }
        for i, n in enumerate(hours)
    ]
    return {"bars": bars, "width": width, "height": height, "top": top}


class Staff:
    """The staff app's routes over a store."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime]) -> None:
        assert settings.staff_username and settings.staff_password and settings.secret_key
        self.settings = settings
        self.store = store
        self.clock = clock
        self.zone = settings.zone()
        self.credentials = Credentials(
            settings.staff_username,
            settings.staff_password.get_secret_value(),
            settings.secret_key.get_secret_value(),
        )
        self.throttle = LoginThrottle()
        self.templates = _templates()
        self.timeout = timedelta(minutes=settings.confirm_timeout_minutes)

    # --- who is asking ------------------------------------------------------------------------

    def signed_in(self, request: Request) -> str | None:
        session = request.session
        if session.get("v") == self.credentials.fingerprint and session.get("user"):
            return str(session["user"])
        return None

    def _csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(24)
        return str(token)

    def _csrf_ok(self, request: Request, form: Any) -> bool:
        expected = request.session.get("csrf")
        return bool(expected) and hmac.compare_digest(str(form.get("csrf", "")), str(expected))

    def page(self, handler: Endpoint) -> Endpoint:
        """An HTML page: signed in, or off to the login form (and back afterwards)."""

        async def endpoint(request: Request) -> Response:
            if self.signed_in(request) is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/staff/login?next={quote(target)}", status_code=303)
            return await handler(request)

        return endpoint

    def data(self, handler: Endpoint) -> Endpoint:
        """A .json twin or the CSV export: signed in, or HTTP Basic with the staff login."""

        async def endpoint(request: Request) -> Response:
            if self.signed_in(request) is not None:
                return await handler(request)
            client = _client(request)
            wait = self.throttle.retry_after(client)
            if wait:
                return self._too_many(wait)
            user, password = basic_auth(request.headers.get("authorization", ""))
            if user is not None and self.credentials.check(user, password):
                return await handler(request)
            if user is not None:
                await self.throttle.failed(client, user, "basic")
            return PlainTextResponse(
                "log in at /staff/login, or use HTTP Basic with the staff login",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="checkin-bot staff", charset="UTF-8"'},
            )

        return endpoint

    @staticmethod
    def _too_many(wait: int) -> Response:
        return PlainTextResponse(
            f"too many failed logins from your address: try again in {wait // 60 + 1} min",
            status_code=429,
            headers={"Retry-After": str(wait)},
        )

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        html = self.templates.get_template(name).render(
            user=self.signed_in(request),
            csrf=self._csrf(request),
            timezone=self.settings.timezone,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    # --- login --------------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        target = _safe_next(request.query_params.get("next"))
        if self.signed_in(request) is not None:
            return RedirectResponse(target, status_code=303)
        return self.render(request, "login.html", next=target, error=None, username="")

    async def login(self, request: Request) -> Response:
        client = _client(request)
        wait = self.throttle.retry_after(client)
        if wait:
            return self._too_many(wait)
        form = await read_form(request)
        target = _safe_next(form.get("next"))
        username = form.get("username", "")[:200]
        if not self._csrf_ok(request, form):
            log.warning("staff login from %s refused: missing or stale CSRF token", client)
            return self.render(
                request,
                "login.html",
                status=403,
                next=target,
                username=username,
                error="This form had expired. Please try again.",
            )
        if not self.credentials.check(username, form.get("password", "")):
            await self.throttle.failed(client, username, "form")
            return self.render(
                request,
                "login.html",
                status=401,
                next=target,
                username=username,
                error="Wrong username or password.",
            )
        request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
        request.session.update(
            user=username, v=self.credentials.fingerprint, csrf=secrets.token_urlsafe(24)
        )
        log.info("staff login for user %r from %s", username, client)
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        if not self._csrf_ok(request, form):
            return PlainTextResponse("stale form: reload the page and try again", status_code=403)
        log.info("staff logout for user %r from %s", self.signed_in(request), _client(request))
        request.session.clear()
        return RedirectResponse("/staff/login", status_code=303)

    # --- pages and their twins ----------------------------------------------------------------

    def _today(self) -> date:
        return queries.local_today(self.zone, self.clock())

    async def _dashboard(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        chosen = queries.period(params.get("from"), params.get("to"), self.zone, self._today())
        return await queries.dashboard(
            self.store.engine, chosen, now=self.clock(), confirm_timeout=self.timeout
        )

    async def _list(self, request: Request) -> dict[str, Any]:
        params = dict(request.query_params)
        chosen = queries.filters(params, self.zone, self._today())
        before = params.get("before", "")
        if before and not before.isdigit():
            raise BadFilter("before: expected a conversation number")
        return await queries.conversation_list(
            self.store.engine,
            chosen,
            before=int(before) if before else None,
            zone=self.zone,
            region=self.settings.default_region,
            now=self.clock(),
            confirm_timeout=self.timeout,
            limit=queries.PAGE_SIZE,
        )

    async def _detail(self, request: Request) -> dict[str, Any] | None:
        return await queries.conversation_detail(
            self.store.engine,
            int(request.path_params["thread_id"]),
            zone=self.zone,
            now=self.clock(),
            confirm_timeout=self.timeout,
        )

    def twin(self, read: Callable[[Request], Awaitable[dict[str, Any] | None]]) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            found = await read(request)
            if found is None:
                raise BadFilter("no such conversation", 404)
            return JSONResponse(found)

        return endpoint

    def html(
        self, read: Callable[[Request], Awaitable[dict[str, Any] | None]], template: str
    ) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            found = await read(request)
            if found is None:
                raise BadFilter("no such conversation", 404)
            return self.render(
                request,
                template,
                data=found,
                path=request.url.path,
                query=request.url.query,
                outcomes=LABELS,
                chart=hour_bars(found["arrivals_by_hour"]) if "arrivals_by_hour" in found else None,
            )

        return endpoint

    async def export(self, request: Request) -> Response:
        params = request.query_params
        chosen = queries.period(params.get("from"), params.get("to"), self.zone, self._today())
        name = f"checkin-bot-messages-{chosen.first}-to-{chosen.last}.csv"
        log.info("CSV export of %s to %s by %s", chosen.first, chosen.last, _client(request))
        return StreamingResponse(
            queries.messages_csv(self.store.engine, chosen),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/staff/dashboard", status_code=303)

    def routes(self) -> list[Route]:
        page, data = self.page, self.data
        return [
            Route("/", page(self.home), methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", page(self.logout), methods=["POST"]),
            Route("/dashboard", page(self.html(self._dashboard, "dashboard.html"))),
            Route("/dashboard.json", data(self.twin(self._dashboard))),
            Route("/conversations", page(self.html(self._list, "conversations.html"))),
            Route("/conversations.json", data(self.twin(self._list))),
            Route(
                "/conversations/{thread_id:int}",
                page(self.html(self._detail, "conversation.html")),
            ),
            Route("/conversations/{thread_id:int}.json", data(self.twin(self._detail))),
            Route("/messages.csv", data(self.export)),
        ]

    def error(self, request: Request, exc: HttpError) -> Response:
        """A 4xx of ours as staff see it: the error page, or JSON for a .json twin."""
        if request.url.path.endswith(".json"):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if request.url.path.endswith(".csv") or "session" not in request.scope:
            return PlainTextResponse(str(exc), status_code=exc.status)
        return self.render(request, "error.html", status=exc.status, message=str(exc))


def staff_mount(
    settings: Settings, store: Store, clock: Callable[[], datetime] | None = None
) -> tuple[Mount, Staff | None]:
    """The /staff pages, and their Staff (None when no staff login is configured: then every
    route says how to set one)."""
    if not settings.staff_enabled():

        async def off(request: Request) -> Response:
            return PlainTextResponse(
                "The staff pages are off: set STAFF_USERNAME, STAFF_PASSWORD and SECRET_KEY.",
                status_code=503,
            )

        routes = [Route("/{path:path}", off)]
        return Mount("/staff", routes=routes, middleware=[Middleware(SecurityHeaders)]), None
    assert settings.secret_key is not None
    staff = Staff(settings, store, clock or (lambda: datetime.now(UTC)))
    https = (settings.public_base_url or "").startswith("https://")
    middleware = [
        Middleware(SecurityHeaders),  # outermost: on every answer
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_key.get_secret_value(),
            session_cookie=COOKIE,
            max_age=SESSION_SECONDS,
            path="/staff",
            same_site="lax",
            https_only=https,
        ),
    ]
    return Mount("/staff", routes=staff.routes(), middleware=middleware), staff


__all__ = ["SECURITY_HEADERS", "Staff", "staff_mount"]
