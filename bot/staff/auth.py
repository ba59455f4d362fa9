"""Who may see the staff pages: the staff login compared in constant time, failed logins
slowed and counted, HTTP Basic for scripts, and the security headers every answer carries."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("checkin_bot.staff")

FAILED_LOGIN_DELAY = 1.0  # seconds every failed login waits before its answer
FAILED_LOGIN_LIMIT = 5  # failures per client within the window before logins are refused
FAILED_LOGIN_WINDOW = 15 * 60

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


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response of the wrapped app (all staff pages hold
    personal data, so none may be cached, framed or run a script)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {name for name, _ in SECURITY_HEADERS}
                ] + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Credentials:
    """The staff login, compared in constant time (digests, so lengths leak nothing)."""

    def __init__(self, username: str, password: str, secret: str) -> None:
        self._user = _digest(username)
        self._password = _digest(password)
        # In every session: changing the password or the user signs everyone out.
        self.fingerprint = hmac.new(
            secret.encode(), f"{username}\0{password}".encode(), "sha256"
        ).hexdigest()[:24]

    def check(self, username: str, password: str) -> bool:
        user_ok = hmac.compare_digest(_digest(username), self._user)
        password_ok = hmac.compare_digest(_digest(password), self._password)
        return user_ok & password_ok


class LoginThrottle:
    """Failed logins per client address, in this process: each failure waits
    FAILED_LOGIN_DELAY, and FAILED_LOGIN_LIMIT of them in the window lock the client out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self.clock()
        found = self._failures.get(client, deque())
        while found and now - found[0] > FAILED_LOGIN_WINDOW:
            found.popleft()
        return found

    def retry_after(self, client: str) -> int:
        """Seconds until this client may try again (0: now)."""
        found = self._recent(client)
        if len(found) < FAILED_LOGIN_LIMIT:
            return 0
        return max(1, int(FAILED_LOGIN_WINDOW - (self.clock() - found[0])))

    async def failed(self, client: str, username: str, how: str) -> None:
        found = self._recent(client)
        found.append(self.clock())
        if len(self._failures) > 10_000:  # bound the memory a flood of addresses can take
            self._failures.clear()
        self._failures[client] = found
        log.warning(
            "failed staff login (%s) for user %r from %s: %d in %d min",
            how,
            username[:64],
            client,
            len(found),
            FAILED_LOGIN_WINDOW // 60,
        )
        await asyncio.sleep(FAILED_LOGIN_DELAY)


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
