"""Who may see the staff pages: server-side sessions, failed logins slowed and counted across
processes, HTTP Basic for scripts, and the security headers every answer carries."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.staff import StaffStore
from .accounts import Account, Roster

log = logging.getLogger("checkin_bot.staff")

FAILED_LOGIN_DELAY = 1.0  # seconds every failed login waits before its answer
FAILED_LOGIN_LIMIT = 5  # failures from one address within the window before it is locked out
# Failures for one user name, from anywhere, before it is locked out for every address that
# has itself failed for it: an address that has not may still try it (once: a failure locks
# it out too), so that no one can lock the name's owner out by failing ten times elsewhere.
USER_FAILURE_LIMIT = 10
LOCKS = 64  # passwords checked at once, at most one an address (see Throttle)
FAILED_LOGIN_WINDOW = 15 * 60
SESSION_IDLE = timedelta(hours=12)  # a shift: a session ends this long after the last page
SESSION_MAX = timedelta(hours=24)  # and at the latest this long after logging in
TOUCH_EVERY = timedelta(minutes=1)  # a session's last page is written at most this often

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response under `prefix` (all staff pages hold personal
    data, so none may be cached, framed or run a script): pages, errors, redirects alike."""

    def __init__(self, app: ASGIApp, prefix: str = "", https: bool = False) -> None:
        self.app = app
        self.prefix = prefix
        # Served over https (PUBLIC_BASE_URL): browsers are told to come back only over https
        # for a year, so a staff member's first visit typed as http:// cannot be intercepted.
        self.headers = SECURITY_HEADERS + ([HSTS] if https else [])
        self.names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in self.names
                ] + self.headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Sessions:
    """Staff sessions kept in the database: the signed cookie carries a random token, the
    `staff_sessions` row its hash. A session ends SESSION_IDLE after the last page, at the
    latest SESSION_MAX after logging in, at logout (every copy of the cookie with it), and
    when its account's password changes or the account is removed."""

    def __init__(self, store: StaffStore, roster: Roster, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.roster = roster
        self.clock = clock

    async def start(self, request: Request, account: Account, client: str) -> None:
        token = secrets.token_urlsafe(32)
        await self.store.start_session(
            _hash(token), account.name, account.credential, client, self.clock()
        )
        request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
        request.session.update(sid=token, csrf=secrets.token_urlsafe(24))

    async def account(self, request: Request) -> Account | None:
        """Who is signed in on this request (None: nobody, or a session that has ended)."""
        if "staff_account" in request.scope:
            found: Account | None = request.scope["staff_account"]
            return found
        found = await self._account(request)
        request.scope["staff_account"] = found
        return found

    async def _account(self, request: Request) -> Account | None:
        token = request.session.get("sid") if "session" in request.scope else None
        if not isinstance(token, str) or not token:
            return None
        row = await self.store.session(_hash(token))
        now = self.clock()
        if row is None or row.ended_at is not None:
            return None
        if now - row.last_seen_at > SESSION_IDLE or now - row.created_at > SESSION_MAX:
            await self.store.end_session(_hash(token), now)
            return None
        account = await self.roster.current(row.account)
        if account is None or not hmac.compare_digest(account.credential, row.credential):
            return None  # removed, or its password changed since this login
        if now - row.last_seen_at > TOUCH_EVERY:
            await self.store.touch_session(_hash(token), now)
        return account

    async def end(self, request: Request) -> None:
        token = request.session.get("sid")
        if isinstance(token, str) and token:
            await self.store.end_session(_hash(token), self.clock())
        request.session.clear()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Throttle:
    """Failed logins, counted in the database (so every process sees them) by the address
    the platform's router saw, by the user name tried, and by the two together: each failure
    waits FAILED_LOGIN_DELAY; FAILED_LOGIN_LIMIT from one address within the window lock that
    address out until the window has passed; USER_FAILURE_LIMIT for one name lock it out for
    the addresses that failed for it (a fresh address gets one try: the name's owner is not
    locked out by someone else's guesses, and a guesser gets one try an address).

    Between the count and the failure's record, a process checks one password at a time for
    an address (`log_in`): a burst of concurrent tries all counted before any was recorded, so
    all of them were checked (a probe got 25 tries past a limit of 5). Several processes may
    each let one more through. The lock is one of LOCKS, by the address: one for every try
    queued every login behind a flood of failures from elsewhere (2 s -> 6 s)."""

    def __init__(self, store: StaffStore, roster: Roster, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.roster = roster
        self.clock = clock
        self._checking = [asyncio.Lock() for _ in range(LOCKS)]

    @staticmethod
    def _keys(client: str, name: str | None) -> list[str]:
        keys = [f"addr:{client}"]
        if name:
            user = hashlib.sha256(name.casefold().encode()).hexdigest()[:32]
            pair = hashlib.sha256(f"{user} {client}".encode()).hexdigest()[:32]
            keys += [f"user:{user}", f"pair:{pair}"]
        return keys

    async def retry_after(self, client: str, name: str | None = None) -> int:
        """Seconds until these may try again (0: now)."""
        now = self.clock()
        window = timedelta(seconds=FAILED_LOGIN_WINDOW)
        counts = await self.store.failures_since(self._keys(client, name), now - window)
        tried_here = any(key.startswith("pair:") for key in counts)
        waits = [0]
        for key, (count, oldest) in counts.items():
            if key.startswith("addr:"):
                locked = count >= FAILED_LOGIN_LIMIT
            elif key.startswith("user:"):
                locked = count >= USER_FAILURE_LIMIT and tried_here
            else:
                continue
            if locked:
                waits.append(max(1, int((oldest + window - now).total_seconds())))
        return max(waits)

    async def log_in(self, client: str, name: str | None, password: str, how: str) -> Account | int:
        """The account these credentials log in as, or the seconds until this client or name
        may try again (0: refused now, after FAILED_LOGIN_DELAY; no name: nothing tried)."""
        lock = self._checking[int(hashlib.sha256(client.encode()).hexdigest(), 16) % LOCKS]
        async with lock:
            wait = await self.retry_after(client, name)
            if wait:
                return wait
            if name is None:
                return 0
            account = await self.roster.check(name, password)
            if account is not None:
                return account
            await self._failed(client, name, how)
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        return 0

    async def _failed(self, client: str, name: str, how: str) -> None:
        now = self.clock()
        await self.store.failed_login(self._keys(client, name), now)
        shown = name[:64] if await self.roster.known(name) else self.roster.pseudonym(name)
        log.warning("failed staff login (%s) for user %s from %s", how, shown, client)


def basic_auth(header: str) -> tuple[str | None, str]:
    """(user, password) from an HTTP Basic Authorization header; (None, "") if there is none."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None, ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, ""
    user, _, password = decoded.partition(":")
    return user, password
