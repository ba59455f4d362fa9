"""`checkin-bot doctor` against a good configuration and broken ones, and GET /readyz."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bot import doctor as checks
from bot.cli import main
from bot.settings import Settings
from bot.simulator import Simulator, create_simulator_app, load_demo
from bot.store import schema

from .conftest import Clock
from .helpers import PUBLIC, TOKEN, mock_upstream_bot, running_bot

SID = "AC" + "1234abcd" * 4
NUMBER = "+61491570000"


class Router(httpx.AsyncBaseTransport):
    """Sends each request to the transport for its host: the deployed app, Twilio, …"""

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport]) -> None:
        self.routes = routes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = self.routes.get(request.url.host)
        if route is None:
            raise httpx.ConnectError(f"no route to {request.url.host}", request=request)
        return await route.handle_async_request(request)


def twilio_api(request: httpx.Request) -> httpx.Response:
    """Twilio's REST API for account SID with TOKEN, owning NUMBER."""
    if request.headers.get("authorization") != httpx.BasicAuth(SID, TOKEN)._auth_header:
        return httpx.Response(401, json={"code": 20003, "message": "Authenticate"})
    if request.url.path.endswith(f"/Accounts/{SID}.json"):
        return httpx.Response(200, json={"sid": SID, "status": "active"})
    if request.url.path.endswith("/IncomingPhoneNumbers.json"):
        owned = request.url.params.get("PhoneNumber") == NUMBER
        return httpx.Response(200, json={"incoming_phone_numbers": [{}] if owned else []})
    return httpx.Response(404)


@pytest.fixture
async def deployed(db_url: str, clock: Clock) -> AsyncIterator[httpx.AsyncBaseTransport]:
    """The app as deployed at PUBLIC (same token), reachable only through the router."""
    async with running_bot(db_url, clock) as bot:
        yield httpx.ASGITransport(app=bot.app)


def good(db_url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=db_url,
        twilio_auth_token=TOKEN,
        public_base_url=PUBLIC,
        virtualq_base_url="http://virtualq.example.net",
        twilio_account_sid=SID,
        twilio_from_number=NUMBER,
        staff_username="frontdesk",
        staff_password="correct horse battery staple",
        secret_key="s" * 40,
        retention_days=365,
    )
    return Settings(**(values | changes))


async def run(
    settings: Settings,
    app: httpx.AsyncBaseTransport | None,
    virtualq: httpx.AsyncBaseTransport | None = None,
) -> dict[str, checks.Check]:
    routes: dict[str, httpx.AsyncBaseTransport] = {
        "api.twilio.com": httpx.MockTransport(twilio_api)
    }
    if app is not None:
        routes["bot.example.com"] = app
    simulator = httpx.ASGITransport(app=create_simulator_app(load_demo(Simulator())))
    async with httpx.AsyncClient(transport=Router(routes)) as http:
        found = await checks.doctor(settings, http=http, virtualq_transport=virtualq or simulator)
    return {c.name: c for c in found}


async def test_a_good_configuration_passes_every_check(
    db_url: str, backend: str, deployed: httpx.AsyncBaseTransport
) -> None:
    found = await run(good(db_url), deployed)
    assert list(found) == [
        "settings",
        "prompts",
        "signatures",
        "public url",
        "signature trip",
        "staff login",
        "proxies",
        "retention",
        "database",
        "connections",
        "virtualq",
        "live webhook",
        "outbound sms",
    ]
    wanted = {name: checks.Status.OK for name in found}
    if backend == "sqlite":
        wanted["connections"] = checks.Status.WARN  # a PaaS wants PostgreSQL
    assert {n: c.status for n, c in found.items()} == wanted, [c.line() for c in found.values()]


def _vq(status: int) -> httpx.AsyncBaseTransport:
    return httpx.MockTransport(lambda r: httpx.Response(status, json={"Message": "x"}))


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


BROKEN: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (setting changes, failing check, words in its detail or fix)
    "no public url": ({"public_base_url": None}, "public url", "is not set"),
    "plain http": ({"public_base_url": "http://bot.example.com"}, "public url", "not https"),
    "webhook path in the base": (
        {"public_base_url": "https://bot.example.com/sms"},
        "public url",
        "not a base URL",
    ),
    "signature checks off": ({"twilio_validate_signature": False}, "signatures", "anyone"),
    "no auth token": ({"twilio_auth_token": None}, "signatures", "TWILIO_AUTH_TOKEN"),
    "token differs from the app's": (
        {"twilio_auth_token": "another-token"},  # (so Twilio refuses it too)
        "live webhook",
        "differs",
    ),
    "public url is not the app": (
        {"public_base_url": "https://elsewhere.example.com"},
        "live webhook",
        "unreachable",
    ),
    "no virtualq url": ({"virtualq_base_url": None}, "virtualq", "not set"),
    "staff password without a key": ({"secret_key": None}, "staff login", "SECRET_KEY not set"),
    "short staff password": ({"staff_password": "letmein"}, "staff login", "12 characters"),
    "password is the username": (
        {"staff_username": "frontdesk-staff", "staff_password": "FRONTDESK-STAFF"},
        "staff login",
        "username",
    ),
    "short secret key": ({"secret_key": "abc"}, "staff login", "too short"),
    "sid without number": ({"twilio_from_number": None}, "outbound sms", "TWILIO_FROM_NUMBER"),
    "malformed sid": ({"twilio_account_sid": "AC123"}, "outbound sms", "Account SID"),
    "number not e164": ({"twilio_from_number": "0491 570 000"}, "outbound sms", "E.164"),
    "number of another account": (
        {"twilio_from_number": "+61491570001"},
        "outbound sms",
        "not a number of this",
    ),
    "sid of another account": (
        {"twilio_account_sid": "AC" + "f" * 32},
        "outbound sms",
        "refused",
    ),
}


# What else a broken setting takes down with it, rightly.
ALSO_FAILING = {
    "no public url": ("signature trip", "live webhook"),
    "plain http": ("live webhook",),
    "webhook path in the base": ("live webhook",),
    "signature checks off": ("live webhook",),
    "no auth token": ("signature trip", "live webhook"),
    "token differs from the app's": ("outbound sms",),
}


@pytest.mark.parametrize("case", BROKEN)
async def test_a_broken_setting_fails_its_check_with_a_fix(
    case: str, db_url: str, deployed: httpx.AsyncBaseTransport
) -> None:
    changes, name, words = BROKEN[case]
    found = await run(good(db_url, **changes), deployed)
    check = found[name]
    assert check.status is checks.Status.FAIL, check.line()
    assert words in check.detail + check.fix
    assert check.fix or name in ("signature trip",)
    others = [
        c.line()
        for n, c in found.items()
        if not c.ok and n not in (name, *ALSO_FAILING.get(case, ()))
    ]
    assert not others, others


VIRTUALQ_BROKEN: dict[str, tuple[httpx.AsyncBaseTransport, str]] = {
    "credentials refused": (_vq(401), "VIRTUALQ_AUTH_HEADER"),
    "wrong base path": (_vq(404), "API root"),
    "down": (httpx.MockTransport(_refused), "unreachable"),
    "failing": (_vq(503), "unreachable"),
}


@pytest.mark.parametrize("case", VIRTUALQ_BROKEN)
async def test_virtualq_problems_are_told_apart(case: str, db_url: str) -> None:
    transport, words = VIRTUALQ_BROKEN[case]
    check = (await run(good(db_url), None, transport))["virtualq"]
    assert check.status is checks.Status.FAIL and words in check.detail + check.fix


async def test_an_unmigrated_database_fails_with_the_command_to_run(blank_db_url: str) -> None:
    check = (await run(good(blank_db_url), None))["database"]
    assert check.status is checks.Status.FAIL and "run `checkin-bot migrate`" in check.fix


async def test_an_unreachable_database_fails_without_hanging() -> None:
    check = (await run(good("postgresql://nobody:secret@127.0.0.1:1/none"), None))["database"]
    assert check.status is checks.Status.FAIL and "DATABASE_URL" in check.fix
    assert "nobody:***@127.0.0.1" in check.detail and "secret" not in check.detail


def test_the_command_prints_a_line_per_check_and_fails(
    blank_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", blank_db_url)
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://insecure.example.com")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("VIRTUALQ_BASE_URL", raising=False)
    result = CliRunner().invoke(main, ["doctor", "--offline"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("FAIL  public url") for line in lines)
    assert sum(line.strip().startswith("fix:") for line in lines) >= 4
    assert "problem(s): signatures, public url, signature trip, database, virtualq" in result.output


def test_the_command_names_a_malformed_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFIRM_TIMEOUT_MINUTES", "soon")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1 and "CONFIRM_TIMEOUT_MINUTES" in result.output


# --- /readyz ---------------------------------------------------------------------------------


def _counting(status: int, calls: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(status, json={"customerResults": []})

    return handler


async def test_readyz_is_ready_when_database_and_virtualq_answer(db_url: str, clock: Clock) -> None:
    calls: list[str] = []
    async with mock_upstream_bot(db_url, clock, _counting(200, calls)) as (client, _):
        first = await client.get("/readyz")
        second = await client.get("/readyz")
    assert first.status_code == 200
    assert first.json() == {
        "status": "ready",
        "checks": {
            "database": {"ok": True, "detail": f"reachable, schema {schema.head()}"},
            "virtualq": {"ok": True, "detail": "reachable, credentials accepted (HTTP 200)"},
            "notifications": {
                "ok": True,
                "detail": "another process sends notifications (or none needed yet)",
            },
        },
    }
    assert second.json() == first.json() and calls == ["/Customers"]  # asked once, cached


async def test_readyz_is_unavailable_when_virtualq_fails(db_url: str, clock: Clock) -> None:
    async with mock_upstream_bot(db_url, clock, _counting(502, [])) as (client, _):
        response = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"
    assert response.json()["checks"]["virtualq"]["ok"] is False
    assert alive.status_code == 200  # the process itself is fine: don't restart it


async def test_no_staff_login_or_retention_are_warnings_not_failures(db_url: str) -> None:
    plain = good(
        db_url, staff_username=None, staff_password=None, secret_key=None, retention_days=None
    )
    found = await run(plain, None)
    assert found["staff login"].status is checks.Status.WARN
    assert "off" in found["staff login"].detail
    assert found["retention"].status is checks.Status.WARN
    assert "checkin-bot purge" in found["retention"].fix
