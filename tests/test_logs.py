"""Logs on stdout: text or JSON lines, with request id and conversation key, numbers masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bot import logs
from bot.doctor import Readiness
from bot.settings import LogFormat
from bot.staff.auth import SECURITY_HEADERS, Sessions

from .conftest import Clock
from .helpers import ALEX, form, running_bot


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    logs.configure_logging(LogFormat.JSON)
    yield capsys
    for name in (*logs.LOGGERS, logs.ACCESS, "uvicorn.access"):  # as pytest found it
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def _events(capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_json_lines_mask_numbers_even_in_tracebacks(json_logs: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("checkin_bot.test")
    token = logs.request_id.set("req-1")
    try:
        raise ValueError(f"no such customer {ALEX}")
    except ValueError:
        log.exception("failed for %s", ALEX)
    finally:
        logs.request_id.reset(token)
    (event,) = _events(json_logs)
    assert event["level"] == "ERROR" and event["logger"] == "checkin_bot.test"
    assert event["message"] == "failed for +61 4** *** 156"
    assert event["request_id"] == "req-1" and "conversation" not in event
    assert "ValueError: no such customer +61 4** *** 156" in event["exception"]
    assert "491570156" not in json.dumps(event)


def test_text_lines_carry_the_context_and_mask_numbers() -> None:
    record = logging.LogRecord("checkin_bot.x", logging.INFO, "f", 1, "to %s", (ALEX,), None)
    record.request_id, record.conversation = "r1", "c0ffee"
    line = logs.TextFormatter().format(record)
    assert line.endswith("checkin_bot.x: to +61 4** *** 156 [req=r1 conv=c0ffee]")


async def test_a_webhook_request_logs_its_id_and_conversation(
    db_url: str, clock: Clock, json_logs: pytest.CaptureFixture[str]
) -> None:
    async with running_bot(db_url, clock) as bot:
        given = await bot.post(form(ALEX, "here"), headers={"X-Request-Id": "edge-42"})
        made = await bot.post(form(ALEX, "status"), headers={"X-Request-Id": "bad id\x7f"})
        searched = await bot.client.get("/staff/conversations?q=0491570156&page=2")
        forged = await bot.client.post("/sms", data=form(ALEX, "here"))
    assert forged.status_code == 403
    assert given.headers["x-request-id"] == "edge-42"
    assert made.headers["x-request-id"] not in ("", "bad id\x7f")
    events = _events(json_logs)
    service = [e for e in events if e["logger"] == "checkin_bot.service"]
    assert {e["request_id"] for e in service} == {"edge-42", made.headers["x-request-id"]}
    keys = {e["conversation"] for e in service}
    assert len(keys) == 1 and len(keys.pop()) == 12  # one phone, one key
    assert all("491570156" not in json.dumps(e) for e in events)
    # One access line a request but for the answered texts (the service's lines are theirs),
    # the query's names without their values (a staff search is a phone number, any format).
    access = [e["message"] for e in events if e["logger"] == logs.ACCESS]
    assert len(access) == 2, access
    assert access[0].endswith(
        '"GET /staff/conversations?q=…&page=… HTTP/1.1" ' + str(searched.status_code)
    )
    assert access[1].endswith('"POST /sms HTTP/1.1" 403')


def test_the_conversation_key_is_stable_keyed_and_not_the_number() -> None:
    key = logs.conversation_key(ALEX, "secret")
    assert key == logs.conversation_key(ALEX, "secret")
    assert key != logs.conversation_key(ALEX, "other secret")
    assert "491570156" not in key


async def test_an_unhandled_error_is_a_plain_500_with_its_request_id(
    db_url: str,
    clock: Clock,
    json_logs: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any error no handler answered: logged with the request's id and traceback, answered
    with a plain 500 that carries the id (and, on a staff page, the security headers)."""

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in a page")

    monkeypatch.setattr(Sessions, "account", broken)
    monkeypatch.setattr(Readiness, "checks", broken)
    staff_settings = dict(
        staff_username="staff", staff_password="correct horse 12", secret_key="s" * 40
    )
    async with running_bot(db_url, clock, **staff_settings) as bot:
        staff = await bot.client.get("/staff/login", headers={"X-Request-Id": "page-7"})
        ready = await bot.client.get("/readyz")
    assert (staff.status_code, staff.text) == (500, "Internal Server Error")
    assert staff.headers["x-request-id"] == "page-7"
    for name, value in SECURITY_HEADERS:
        assert staff.headers[name.decode()] == value.decode()
    assert staff.headers["strict-transport-security"] == "max-age=31536000"  # PUBLIC is https
    assert ready.status_code == 500 and ready.headers["x-request-id"]
    assert "content-security-policy" not in ready.headers
    failures = [e for e in _events(json_logs) if e["level"] == "ERROR"]
    assert [e.get("request_id") for e in failures] == ["page-7", ready.headers["x-request-id"]]
    assert all("RuntimeError: a bug in a page" in e["exception"] for e in failures)


def test_a_line_break_in_a_message_cannot_forge_a_line() -> None:
    """A value a request carried (a signed From, an ErrorCode) is written on its own line's
    line: its line breaks escaped; a traceback keeps its own."""
    forged = "x\n2026-11-29 10:00:00,000 ERROR checkin_bot.app: FORGED\r\nmore"
    record = logging.LogRecord("checkin_bot.x", logging.WARNING, "f", 1, "from %s", (forged,), None)
    line = logs.TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line
    assert line.endswith("from x\\n2026-11-29 10:00:00,000 ERROR checkin_bot.app: FORGED\\r\\nmore")


def test_a_message_cannot_move_a_terminals_cursor() -> None:
    """Escape sequences (clear the screen, cursor up, colours), a bell, a backspace, Unicode's
    line separator and a right-to-left override are written as escapes, not acted on by the
    terminal someone tails the log in."""
    forged = "+614\x1b[31m\x1b[2J\x1b[1A\x07\x08\u2028\u202e\x85x"
    record = logging.LogRecord("checkin_bot.x", logging.WARNING, "f", 1, "from %s", (forged,), None)
    line = logs.TextFormatter().format(record)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u202e" for c in line)
    assert line.endswith("from +614\\x1b[31m\\x1b[2J\\x1b[1A\\x07\\x08\\u2028\\u202e\\x85x")


async def test_numbers_a_request_chose_stay_out_of_the_log(
    db_url: str, clock: Clock, json_logs: pytest.CaptureFixture[str]
) -> None:
    """Unsigned requests can put a number anywhere: in the query (the refusal's line names
    the URL without the query's values), in the path (the access line writes … for it), in
    X-Request-Id (a number is not taken as the request's id)."""
    async with running_bot(db_url, clock) as bot:
        refused = await bot.client.post(
            "/sms?x=%2B61491570156&c=0491%20570%20156", data=form(ALEX, "here")
        )
        lost = await bot.client.post("/sms/0491570156", data=form(ALEX, "here"))
        named = await bot.client.get("/healthz", headers={"X-Request-Id": "0491570156"})
    assert refused.status_code == 403 and lost.status_code in (404, 405)
    assert named.headers["x-request-id"] != "0491570156"
    printed = json_logs.readouterr().out
    assert "0491570156" not in printed and "491570156" not in printed and "0491" not in printed
    events = [json.loads(line) for line in printed.splitlines() if line]
    assert any("signature for https://bot.example.com/sms?…" in e["message"] for e in events)
    assert any('"POST /sms/… HTTP/1.1"' in e["message"] for e in events)
