"""`checkin-bot doctor`: self-checks of a deployment, and what GET /readyz answers.

Each check is one line: ok, warn (works, but probably not what you want) or FAIL, with the
fix for anything that is not ok. Checks never change anything: the upstream and Twilio are
asked harmless reads, and the webhook round trip is a signed request the app must refuse as
incomplete (400) after accepting its signature, so nothing is stored or sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode, urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from twilio.request_validator import RequestValidator

from . import phones
from . import prompts as prompts_module
from .errors import PromptError, SchemaError, UpstreamAuthError, UpstreamUnavailable
from .settings import Settings
from .staff.accounts import password_problem
from .store import engine_at, schema
from .store.engine import describe
from .virtualq import VirtualQClient, make_client, make_http_client
from .webhook import SignatureChecker

TWILIO_API = "https://api.twilio.com"
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# A form Twilio could send, minus MessageSid: a valid signature on it must get a 400.
PROBE_FORM = {"AccountSid": "AC" + "0" * 32, "Body": "checkin-bot doctor", "To": "+15005550006"}


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAIL

    def line(self) -> str:
        text = f"{self.status.value:<5} {self.name:<17} {self.detail}"
        return text + (f"\n{'':<24}fix: {self.fix}" if self.fix else "")


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


# --- checks /readyz shares -------------------------------------------------------------------


async def database(engine: AsyncEngine) -> Check:
    """Reachable, and at this release's schema."""
    try:
        revision = await schema.check(engine)  # connects: a driver error means unreachable
    except SchemaError as exc:
        return Check("database", Status.FAIL, "schema is not this release's", str(exc))
    except Exception as exc:  # any driver error: the point is to report it
        return Check(
            "database",
            Status.FAIL,
            f"cannot connect: {type(exc).__name__}",
            "check DATABASE_URL (host, port, user, password, database) and that it is up",
        )
    return _ok("database", f"reachable, schema {revision}")


async def upstream(client: VirtualQClient) -> Check:
    """VirtualQ reachable and taking our credentials (a one-customer `GET Customers`)."""
    try:
        status = await client.probe()
    except UpstreamAuthError as exc:
        return Check(
            "virtualq",
            Status.FAIL,
            f"credentials refused (HTTP {exc.status})",
            "check VIRTUALQ_AUTH_HEADER/VIRTUALQ_AUTH_VALUE or VIRTUALQ_USERNAME/PASSWORD",
        )
    except UpstreamUnavailable as exc:
        return Check(
            "virtualq",
            Status.FAIL,
            f"unreachable: {exc.cause}",
            "check VIRTUALQ_BASE_URL and that this host may reach it (firewall, VPN)",
        )
    if status == 404:
        return Check(
            "virtualq",
            Status.FAIL,
            "answered 404 for Customers",
            "VIRTUALQ_BASE_URL must end at the API root, e.g. https://host/VirtualQ/api",
        )
    if status >= 400:
        return Check("virtualq", Status.WARN, f"reachable, but a harmless read got {status}")
    return _ok("virtualq", f"reachable, credentials accepted (HTTP {status})")


# --- doctor's own ----------------------------------------------------------------------------


def prompts(settings: Settings) -> Check:
    try:
        loaded = prompts_module.load_catalogue(settings.prompts_dir, settings.default_language)
    except PromptError as exc:
        return Check("prompts", Status.FAIL, str(exc), "fix the prompts file it names")
    names = ", ".join(sorted(loaded.languages))
    texts = len(loaded.prompts().texts)
    return _ok(
        "prompts", f"{names} (default {settings.default_language}): {texts} texts each, all fit"
    )


def webhook_security(settings: Settings) -> Check:
    if not settings.twilio_validate_signature:
        return Check(
            "signatures",
            Status.FAIL,
            "TWILIO_VALIDATE_SIGNATURE is false: anyone can post texts to /sms",
            "unset TWILIO_VALIDATE_SIGNATURE (it is for local tests only)",
        )
    if not settings.twilio_auth_token:
        return Check(
            "signatures",
            Status.FAIL,
            "TWILIO_AUTH_TOKEN is not set",
            "copy the Auth Token from the Twilio Console (Account > API keys & tokens)",
        )
    return _ok("signatures", "checked on every webhook")


def staff_login(settings: Settings) -> Check:
    """The staff pages guard personal data: a SECRET_KEY, and logins that are not guessable."""
    env = (settings.staff_username, settings.staff_password)
    if not settings.secret_key:
        if any(env):
            return Check(
                "staff login",
                Status.FAIL,
                "SECRET_KEY not set: the staff pages are off",
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        return Check(
            "staff login",
            Status.WARN,
            "the staff pages are off",
            "set SECRET_KEY, then STAFF_USERNAME and STAFF_PASSWORD or `checkin-bot staff add`",
        )
    secret = settings.secret_key.get_secret_value()
    password = settings.staff_password.get_secret_value() if settings.staff_password else ""
    if len(secret) < 32 or (password and secret == password):
        return Check(
            "staff login",
            Status.FAIL,
            "SECRET_KEY is too short to sign sessions safely (or equals the password)",
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    if any(env) and not all(env):
        missing = "STAFF_PASSWORD" if settings.staff_username else "STAFF_USERNAME"
        return Check("staff login", Status.FAIL, f"{missing} not set", "set both, or neither")
    if settings.staff_username and password_problem(settings.staff_username, password):
        return Check(
            "staff login",
            Status.FAIL,
            "STAFF_PASSWORD is too easy to guess (under 12 characters, or the username)",
            "choose a passphrase of 12 characters or more",
        )
    who = f"admin {settings.staff_username}, and " if settings.staff_username else ""
    return _ok("staff login", f"/staff/ for {who}the accounts `checkin-bot staff list` shows")


def proxies(settings: Settings) -> Check:
    """FORWARDED_ALLOW_IPS: whose X-Forwarded-For is believed for client addresses (logs,
    the staff login throttle)."""
    trusted = settings.forwarded_allow_ips.strip()
    if trusted == "*":
        return Check(
            "proxies",
            Status.WARN,
            "FORWARDED_ALLOW_IPS=* believes X-Forwarded-For from any address",
            "fine when every request comes through the platform's router (Heroku, Render…): "
            "the bot reads the address the router saw, the right-most hop. If the app's port "
            "is reachable directly, list the router's addresses instead",
        )
    return _ok("proxies", f"X-Forwarded-For believed from {trusted or 'no one'}")


def retention(settings: Settings) -> Check:
    if settings.retention_days is None:
        return Check(
            "retention",
            Status.WARN,
            "RETENTION_DAYS is not set: conversations are kept until you purge them",
            "set RETENTION_DAYS and schedule `checkin-bot purge` daily",
        )
    return _ok("retention", f"`checkin-bot purge` keeps {settings.retention_days} days")


def public_url(settings: Settings) -> Check:
    url = settings.public_base_url
    fix = "set PUBLIC_BASE_URL to the https URL Twilio calls, e.g. https://myapp.example.com"
    if not url:
        return Check("public url", Status.FAIL, "PUBLIC_BASE_URL is not set", fix)
    parts = urlsplit(url)
    if parts.scheme != "https":
        return Check("public url", Status.FAIL, f"{url} is not https", fix)
    if not parts.hostname or "." not in parts.hostname:
        return Check("public url", Status.FAIL, f"{url} has no public host name", fix)
    if parts.query or parts.fragment or parts.path.endswith("/sms"):
        return Check(
            "public url",
            Status.FAIL,
            f"{url} is not a base URL",
            "PUBLIC_BASE_URL is the app's root; /sms and /sms/fallback are added to it",
        )
    return _ok("public url", url)


def signature_round_trip(settings: Settings) -> Check:
    """Sign /sms as Twilio would and check it as /sms does, behind a proxy that rewrote the
    host and scheme; a request signed for another URL must fail."""
    token = settings.twilio_auth_token
    if not (token and settings.public_base_url):
        return Check("signature trip", Status.FAIL, "needs TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL")
    checker = SignatureChecker(settings.model_copy(update={"twilio_validate_signature": True}))
    params = ImmutableMultiDict(PROBE_FORM)
    twilio = RequestValidator(token.get_secret_value())

    def checked(signed_for: str) -> bool:
        signature = twilio.compute_signature(signed_for, dict(PROBE_FORM))
        request = Request(
            {
                "type": "http",
                "method": "POST",
                "scheme": "http",
                "server": ("10.0.0.7", 8000),
                "path": "/sms",
                "query_string": b"",
                "headers": [
                    (b"host", b"10.0.0.7:8000"),
                    (b"x-twilio-signature", signature.encode()),
                ],
            }
        )
        return checker.valid(request, params)

    if not checked(f"{settings.public_base_url}/sms"):
        return Check(
            "signature trip",
            Status.FAIL,
            "a request signed for PUBLIC_BASE_URL/sms was refused",
            "report this: signature validation is broken",
        )
    if checked(f"{settings.public_base_url}/not-sms"):
        return Check("signature trip", Status.FAIL, "a request signed for another URL passed")
    return _ok("signature trip", f"{settings.public_base_url}/sms signed and verified")


async def live_webhook(settings: Settings, http: httpx.AsyncClient) -> Check:
    """Through the deployed app: a signed, incomplete form must get 400 (signature accepted,
    nothing stored) and an unsigned one 403."""
    token, base = settings.twilio_auth_token, settings.public_base_url
    if not (token and base):
        return Check("live webhook", Status.FAIL, "needs TWILIO_AUTH_TOKEN and PUBLIC_BASE_URL")
    url = f"{base}/sms"
    signature = RequestValidator(token.get_secret_value()).compute_signature(url, PROBE_FORM)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        health = await http.get(f"{base}/healthz")
        signed = await http.post(
            url, content=urlencode(PROBE_FORM), headers={**headers, "X-Twilio-Signature": signature}
        )
        unsigned = await http.post(url, content=urlencode(PROBE_FORM), headers=headers)
    except httpx.HTTPError as exc:
        return Check(
            "live webhook",
            Status.FAIL,
            f"{base} unreachable: {type(exc).__name__}",
            "deploy the app first, and make PUBLIC_BASE_URL its public https URL",
        )
    if health.status_code != 200 or health.headers.get("content-type") != "application/json":
        return Check(
            "live webhook",
            Status.FAIL,
            f"{base}/healthz answered {health.status_code}: not this app",
            "PUBLIC_BASE_URL must be this app's URL",
        )
    if signed.status_code == 403:
        return Check(
            "live webhook",
            Status.FAIL,
            "the app refused a request signed for PUBLIC_BASE_URL/sms (403)",
            "the app's TWILIO_AUTH_TOKEN or PUBLIC_BASE_URL differs from these",
        )
    if signed.status_code != 400 or unsigned.status_code != 403:
        return Check(
            "live webhook",
            Status.FAIL,
            f"signed: {signed.status_code} (want 400), unsigned: {unsigned.status_code} (want 403)",
            "the app at PUBLIC_BASE_URL is not checking signatures as configured here",
        )
    return _ok("live webhook", f"{url} accepts Twilio's signature and refuses a missing one")


async def outbound_sms(settings: Settings, http: httpx.AsyncClient, live: bool) -> Check:
    """Credentials for texts the bot sends on its own: well formed and, live, accepted."""
    sid = settings.twilio_account_sid
    sender = settings.twilio_from_number or settings.twilio_messaging_service_sid
    if not sid and not sender:
        return _ok(
            "outbound sms",
            "not configured: an answer slower than WEBHOOK_BUDGET_SECONDS cannot follow by "
            "text, so that customer is sent to reception",
        )
    if not (sid and sender):
        missing = (
            "TWILIO_FROM_NUMBER (or TWILIO_MESSAGING_SERVICE_SID)" if sid else "TWILIO_ACCOUNT_SID"
        )
        return Check("outbound sms", Status.FAIL, f"{missing} is not set", f"set {missing} too")
    if not _ACCOUNT_SID.fullmatch(sid):
        return Check(
            "outbound sms",
            Status.FAIL,
            "TWILIO_ACCOUNT_SID is not an Account SID (AC + 32 hex digits)",
            "copy the Account SID from the Twilio Console",
        )
    service = _MESSAGING_SERVICE_SID.fullmatch(sender)
    if not service and phones.normalise(sender, settings.default_region) != sender:
        return Check(
            "outbound sms",
            Status.FAIL,
            f"TWILIO_FROM_NUMBER {sender!r} is neither E.164 nor a Messaging Service SID",
            "use the number as +<country><number>, or MG… for a Messaging Service",
        )
    if not live or not settings.twilio_auth_token:
        return _ok("outbound sms", "credentials well formed (not tried: --offline)")
    auth = (sid, settings.twilio_auth_token.get_secret_value())
    try:
        account = await http.get(f"{TWILIO_API}/2010-04-01/Accounts/{sid}.json", auth=auth)
        owned = None
        if account.status_code == 200 and not service:
            owned = await http.get(
                f"{TWILIO_API}/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json",
                params={"PhoneNumber": sender},
                auth=auth,
            )
    except httpx.HTTPError as exc:
        return Check("outbound sms", Status.WARN, f"Twilio unreachable: {type(exc).__name__}")
    if account.status_code in (401, 403):
        return Check(
            "outbound sms",
            Status.FAIL,
            "Twilio refused TWILIO_ACCOUNT_SID with TWILIO_AUTH_TOKEN",
            "both must come from the same Twilio account (or subaccount)",
        )
    if account.status_code != 200:
        return Check("outbound sms", Status.WARN, f"Twilio answered {account.status_code}")
    if owned is not None and not (
        owned.status_code == 200 and owned.json().get("incoming_phone_numbers")
    ):
        return Check(
            "outbound sms",
            Status.FAIL,
            f"{phones.mask(sender)} is not a number of this Twilio account",
            "set TWILIO_FROM_NUMBER to the number customers text",
        )
    return _ok("outbound sms", "Twilio accepts the credentials; the number is the account's")


async def connection_budget(engine: AsyncEngine, settings: Settings, workers: int) -> Check:
    """PostgreSQL: the web workers' pools fit under the server's connection limit."""
    if engine.dialect.name != "postgresql":
        return Check(
            "connections",
            Status.WARN,
            "SQLite: right for one machine with a lasting disk, not for a PaaS",
            "on a PaaS, attach PostgreSQL: its disk is wiped at each deploy, and the log with it",
        )
    try:
        async with engine.connect() as conn:
            limit = int(await conn.scalar(sa.text("SHOW max_connections")) or 0)
    except Exception as exc:
        return Check("connections", Status.WARN, f"could not read max_connections: {exc}")
    wanted = workers * 2 * settings.database_pool_size
    detail = f"{workers} worker(s) x up to {2 * settings.database_pool_size} = {wanted} of {limit}"
    if wanted > limit - 3:  # the server keeps a few for superusers
        return Check(
            "connections",
            Status.FAIL,
            detail,
            "lower WEB_CONCURRENCY or DATABASE_POOL_SIZE, or use a bigger database plan",
        )
    return _ok("connections", detail)


class Readiness:
    """GET /readyz: database and VirtualQ, each asked at most every `ttl` seconds (load
    balancers poll often; VirtualQ should not feel it)."""

    def __init__(self, engine: AsyncEngine, client: VirtualQClient, ttl: float = 5.0) -> None:
        self.engine, self.client, self.ttl = engine, client, ttl
        self._last: tuple[float, list[Check]] | None = None
        self._lock = asyncio.Lock()

    async def checks(self) -> list[Check]:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self.ttl:
                found = await asyncio.gather(database(self.engine), upstream(self.client))
                self._last = (now, list(found))
            return self._last[1]


async def doctor(
    settings: Settings,
    *,
    live: bool = True,
    workers: int = 1,
    http: httpx.AsyncClient | None = None,
    virtualq_transport: httpx.AsyncBaseTransport | None = None,
) -> list[Check]:
    """Every check, in the order a deployer fixes things. `http` reaches the public app and
    Twilio (tests pass one with a fake transport); `live=False` skips both."""
    found = [_ok("settings", "read from the environment"), prompts(settings)]
    found += [webhook_security(settings), public_url(settings), signature_round_trip(settings)]
    found += [staff_login(settings), proxies(settings), retention(settings)]
    async with engine_at(settings.database_url, settings.database_pool_size) as engine:
        db = await database(engine)
        where = describe(engine)
        found.append(Check(db.name, db.status, f"{where}: {db.detail}", db.fix))
        if db.status is Status.OK:
            found.append(await connection_budget(engine, settings, workers))
    if not settings.virtualq_base_url:
        found.append(
            Check("virtualq", Status.FAIL, "VIRTUALQ_BASE_URL is not set", "set it to the API root")
        )
    else:
        async with make_http_client(settings, virtualq_transport) as vq:
            found.append(await upstream(make_client(settings, vq)))
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        if live:
            found.append(await live_webhook(settings, http))
        found.append(await outbound_sms(settings, http, live))
    return found
