"""The staff pages under /staff: who may see them, logging in and out, and their routes.

Every route needs a login except the login form itself: a session (a cookie signed with
SECRET_KEY, naming a server-side session that logout ends) for the pages, or HTTP Basic with
a staff login on the .json twins and the CSV export (for scripts). Pages are server-rendered
Jinja2 with autoescaping, carry a strict Content-Security-Policy (no script at all), deny
framing and are never cached. POST forms carry a CSRF token kept in the session. Desk staff
read, reply and mark handled; admins also broadcast, export and read the audit log (403 for
desk staff).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route

from ..errors import HttpError
from ..outbox import Outbox
from ..prompts import Catalogue
from ..settings import Settings
from ..store import Store
from ..store.staff import StaffStore
from ..webhook import read_form
from .accounts import Account, Roster
from .actions import Actions
from .auth import SECURITY_HEADERS, SESSION_MAX, Sessions, Throttle, basic_auth
from .pages import Pages, templates

log = logging.getLogger("checkin_bot.staff")

COOKIE = "checkin_bot_staff"

Endpoint = Callable[[Request], Awaitable[Response]]


def client_of(request: Request) -> str:
    """The client's address as the platform's router saw it (bot.proxy)."""
    return request.client.host if request.client else "unknown"


def _safe_next(raw: str | None) -> str:
    """Where to go after login: a staff page of ours, never another site."""
    if raw and raw.startswith("/staff/") and "//" not in raw and "\\" not in raw:
        return raw
    return "/staff/dashboard"


class Staff:
    """The staff app over a store: sessions, the login throttle, rendering, the routes."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Callable[[], datetime],
        outbox: Outbox | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.outbox = outbox  # where staff texts go (replies, broadcasts)
        self.catalogue = catalogue  # quick replies, per language
        self.zone = settings.zone()
        self.staff_store = StaffStore(store.engine, store.tx)
        self.roster = Roster(settings, self.staff_store)
        self.sessions = Sessions(self.staff_store, self.roster, clock)
        self.throttle = Throttle(self.staff_store, self.roster, clock)
        self.templates = templates()
        self.timeout = timedelta(minutes=settings.confirm_timeout_minutes)
        self.pages = Pages(self)
        self.actions = Actions(self)

    # --- who is asking --------------------------------------------------------------------

    def _csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(24)
        return str(token)

    def csrf_ok(self, request: Request, form: Any) -> bool:
        expected = request.session.get("csrf")
        return bool(expected) and hmac.compare_digest(str(form.get("csrf", "")), str(expected))

    def page(self, handler: Endpoint, admin: bool = False) -> Endpoint:
        """An HTML page: signed in (an admin, if `admin`), or off to the login form."""

        async def endpoint(request: Request) -> Response:
            account = await self.sessions.account(request)
            if account is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":  # a form's page, not where it posts (POST only)
                    target = request.url.path.rsplit("/", 1)[0]
                    if target.startswith("/staff/attention/"):
                        target = "/staff/attention"
                return RedirectResponse(f"/staff/login?next={quote(target)}", status_code=303)
            if admin and not account.admin:
                raise HttpError(
                    f"Only an admin can do this: {account.name} is a desk account.", 403
                )
            return await handler(request)

        return endpoint

    def data(self, handler: Endpoint, admin: bool = False) -> Endpoint:
        """A .json twin or the CSV export: signed in, or HTTP Basic with a staff login."""

        async def endpoint(request: Request) -> Response:
            account: Account | Response | None = await self.sessions.account(request)
            if account is None:
                account = await self._basic(request)
            if isinstance(account, Response):
                return account
            if admin and not account.admin:
                raise HttpError("this is for admins", 403)
            return await handler(request)

        return endpoint

    async def _basic(self, request: Request) -> Account | Response:
        client = client_of(request)
        user, password = basic_auth(request.headers.get("authorization", ""))
        account = await self.throttle.log_in(client, user, password, "basic")
        if isinstance(account, Account):
            request.scope["staff_account"] = account
            return account
        if account:
            return self._too_many(account)
        return PlainTextResponse(
            "log in at /staff/login, or use HTTP Basic with a staff login",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="checkin-bot staff", charset="UTF-8"'},
        )

    @staticmethod
    def _too_many(wait: int) -> Response:
        return PlainTextResponse(
            f"too many failed logins: try again in {wait // 60 + 1} min",
            status_code=429,
            headers={"Retry-After": str(wait)},
        )

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        account: Account | None = request.scope.get("staff_account")
        values.setdefault("refresh", 0)
        html = self.templates.get_template(name).render(
            user=account.name if account else None,
            admin=bool(account and account.admin),
            csrf=self._csrf(request),
            timezone=self.settings.timezone,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    # --- logging in and out ---------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        target = _safe_next(request.query_params.get("next"))
        if await self.sessions.account(request) is not None:
            return RedirectResponse(target, status_code=303)
        return self.render(request, "login.html", next=target, error=None, username="")

    async def login(self, request: Request) -> Response:
        client = client_of(request)
        wait = await self.throttle.retry_after(client)
        if wait:
            return self._too_many(wait)
        form = await read_form(request)
        target = _safe_next(form.get("next"))
        username = form.get("username", "")[:64]
        if not self.csrf_ok(request, form):
            log.warning("staff login from %s refused: missing or stale CSRF token", client)
            return self.render(
                request,
                "login.html",
                status=403,
                next=target,
                username=username,
                error="This form had expired. Please try again.",
            )
        account = await self.throttle.log_in(client, username, form.get("password", ""), "form")
        if not isinstance(account, Account):
            if account:
                return self._too_many(account)
            return self.render(
                request,
                "login.html",
                status=401,
                next=target,
                username=username,
                error="Wrong username or password.",
            )
        await self.sessions.start(request, account, client)
        await self.staff_store.audit(account.name, "login", None, f"from {client}", self.clock())
        log.info("staff login for user %r from %s", account.name, client)
        return RedirectResponse(target, status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        if not self.csrf_ok(request, form):
            return PlainTextResponse("stale form: reload the page and try again", status_code=403)
        account = await self.sessions.account(request)
        await self.sessions.end(request)
        if account is not None:
            detail = f"from {client_of(request)}"
            await self.staff_store.audit(account.name, "logout", None, detail, self.clock())
        log.info(
            "staff logout for user %r from %s", account.name if account else "?", client_of(request)
        )
        return RedirectResponse("/staff/login", status_code=303)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/staff/dashboard", status_code=303)

    def routes(self) -> list[Route]:
        page, data, pages, actions = self.page, self.data, self.pages, self.actions
        return [
            Route("/", page(self.home), methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", page(self.logout), methods=["POST"]),
            Route("/dashboard", page(pages.html(pages.dashboard, "dashboard.html"))),
            Route("/dashboard.json", data(pages.twin(pages.dashboard))),
            Route("/unread", page(pages.html(pages.not_understood, "unread.html"))),
            Route("/unread.json", data(pages.twin(pages.not_understood))),
            Route("/conversations", page(pages.html(pages.conversations, "conversations.html"))),
            Route("/conversations.json", data(pages.twin(pages.conversations))),
            Route("/conversations/{thread_id:int}", page(actions.conversation)),
            Route("/conversations/{thread_id:int}.json", data(pages.twin(pages.conversation))),
            Route("/conversations/{thread_id:int}/reply", page(actions.reply), methods=["POST"]),
            Route("/attention", page(pages.html(pages.attention, "attention.html"))),
            Route("/attention.json", data(pages.twin(pages.attention))),
            Route("/attention/{thread_id:int}/handled", page(actions.handled), methods=["POST"]),
            Route("/broadcast", page(actions.broadcast, admin=True)),
            Route(
                "/broadcast/preview",
                page(actions.broadcast_preview, admin=True),
                methods=["POST"],
            ),
            Route("/broadcast/send", page(actions.broadcast_send, admin=True), methods=["POST"]),
            Route("/audit", page(pages.html(pages.audit, "audit.html"), admin=True)),
            Route("/audit.json", data(pages.twin(pages.audit), admin=True)),
            Route("/messages.csv", data(pages.export, admin=True)),
        ]

    def error(self, request: Request, exc: HttpError) -> Response:
        """A 4xx of ours as staff see it: the error page, or JSON for a .json twin."""
        if request.url.path.endswith(".json"):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        if request.url.path.endswith(".csv") or "session" not in request.scope:
            return PlainTextResponse(str(exc), status_code=exc.status)
        return self.render(request, "error.html", status=exc.status, message=str(exc))


def staff_mount(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime] | None = None,
    *,
    outbox: Outbox | None = None,
    catalogue: Catalogue | None = None,
) -> tuple[Mount, Staff | None]:
    """The /staff pages, and their Staff (None without SECRET_KEY: then every route says what
    to set)."""
    if not settings.secret_key:

        async def off(request: Request) -> Response:
            return PlainTextResponse(
                "The staff pages are off: set SECRET_KEY, and STAFF_USERNAME and STAFF_PASSWORD "
                "or add accounts with `checkin-bot staff add NAME`.",
                status_code=503,
            )

        return Mount("/staff", routes=[Route("/{path:path}", off)]), None
    staff = Staff(settings, store, clock or (lambda: datetime.now(UTC)), outbox, catalogue)
    https = (settings.public_base_url or "").lower().startswith("https://")
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=settings.secret_key.get_secret_value(),
            session_cookie=COOKIE,
            max_age=int(SESSION_MAX.total_seconds()),  # the server-side session decides sooner
            path="/staff",
            same_site="lax",
            https_only=https,
        ),
    ]
    return Mount("/staff", routes=staff.routes(), middleware=middleware), staff


__all__ = ["SECURITY_HEADERS", "Staff", "staff_mount"]
