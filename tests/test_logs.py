"""Logs on stdout: text or JSON lines, with request id and conversation key, numbers masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from bot import logs
from bot.settings import LogFormat

from .conftest import Clock
from .helpers import ALEX, form, running_bot


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    logs.configure_logging(LogFormat.JSON)
    yield capsys
    for name in logs.LOGGERS:  # leave logging as pytest found it
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
    assert given.headers["x-request-id"] == "edge-42"
    assert made.headers["x-request-id"] not in ("", "bad id\x7f")
    events = _events(json_logs)
    service = [e for e in events if e["logger"] == "checkin_bot.service"]
    assert {e["request_id"] for e in service} == {"edge-42", made.headers["x-request-id"]}
    keys = {e["conversation"] for e in service}
    assert len(keys) == 1 and len(keys.pop()) == 12  # one phone, one key
    assert all("491570156" not in json.dumps(e) for e in events)


def test_the_conversation_key_is_stable_keyed_and_not_the_number() -> None:
    key = logs.conversation_key(ALEX, "secret")
    assert key == logs.conversation_key(ALEX, "secret")
    assert key != logs.conversation_key(ALEX, "other secret")
    assert "491570156" not in key
