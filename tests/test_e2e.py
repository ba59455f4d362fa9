"""The real `checkin-bot` processes (migrate, directory import, simulator, serve), over loopback,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .deploy import Deployment, deliver_all, deploy
from .deploy import text as _text
from .helpers import ALEX, CASEY, JORDAN, form, reply_text

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployment(tmp_path: Path, blank_db_url: str) -> Iterator[Deployment]:
    yield from deploy(tmp_path, blank_db_url, bots=1, LOG_FORMAT="json")


@pytest.fixture
def two_bots(tmp_path: Path, blank_db_url: str) -> Iterator[Deployment]:
    yield from deploy(tmp_path, blank_db_url, bots=2, WEB_CONCURRENCY="2")


def test_a_signed_here_gets_a_ticket_from_the_real_processes(deployment: Deployment) -> None:
    base = deployment.bots[0]
    response = _text(base, ALEX, "HERE")
    assert response.status_code == 200
    assert "Ticket A003" in (reply_text(response.text) or "")
    early = reply_text(_text(base, JORDAN, "here").text) or ""
    assert "early" in early
    assert "Ticket B004" in (reply_text(_text(base, JORDAN, "yes").text) or "")
    forged = httpx.post(
        f"{base}/sms", data=form(ALEX, "HERE"), headers={"X-Twilio-Signature": "forged"}
    )
    assert forged.status_code == 403
    printed = deployment.logs.read_text()
    assert "+61491570156" not in printed and "+61 4** *** 156" in printed
    events = [json.loads(line) for line in printed.splitlines()]  # every line, uvicorn's too
    assert {"uvicorn.error", "checkin_bot.access", "checkin_bot.service"} <= {
        e["logger"] for e in events
    }
    # One access line a request (the app's, uvicorn's own is off), but none for an answered
    # text: the service's line is its line.
    access = [e["message"] for e in events if e["logger"] == "checkin_bot.access"]
    assert not any(e["logger"] == "uvicorn.access" for e in events)
    assert sum('"POST /sms HTTP/1.1" 403' in line for line in access) == 1, access
    assert not any('"POST /sms HTTP/1.1" 200' in line for line in access), access
    assert sum(e["logger"] == "checkin_bot.service" and "-> " in e["message"] for e in events) >= 3
    assert all(e.get("request_id") for e in events if e["logger"] == "checkin_bot.service")


def test_doctor_passes_on_the_running_deployment(deployment: Deployment) -> None:
    doctor = subprocess.run(
        [sys.executable, "-m", "bot", "doctor", "--offline"],
        env=deployment.env,
        capture_output=True,
        text=True,
    )
    assert doctor.returncode == 0, doctor.stdout
    assert "ok    virtualq          reachable, credentials accepted" in doctor.stdout
    assert "all good" in doctor.stdout


def test_two_dynos_of_two_workers_check_each_arrival_in_once(two_bots: Deployment) -> None:
    a, b = two_bots.bots
    # Twilio redelivering one HERE to both processes, three times each, all at once.
    here = form(ALEX, "HERE")
    replies = asyncio.run(deliver_all([(a, here), (b, here)] * 3))
    assert len(set(replies)) == 1 and "Ticket A003" in (replies[0] or "")
    assert two_bots.checkin_requests() == 1

    # An early customer double-texting YES, one text reaching each process.
    assert "early" in (reply_text(_text(a, JORDAN, "here").text) or "")
    yes_replies = asyncio.run(deliver_all([(a, form(JORDAN, "yes")), (b, form(JORDAN, "YES"))]))
    assert all("Ticket B004" in (r or "") for r in yes_replies), yes_replies
    assert two_bots.checkin_requests() == 1 + 2  # HERE refused as early, then one forced

    # A late customer answering YES and NO at once: one of them wins, whole.
    assert "late" in (reply_text(_text(b, CASEY, "here").text) or "")
    asyncio.run(deliver_all([(a, form(CASEY, "yes")), (b, form(CASEY, "no"))]))
    assert two_bots.checkin_requests() in (3 + 1, 3 + 2)  # HERE refused as late, YES or NO

    log = two_bots.messages()
    inbound = [m for m in log if m["direction"] == "in"]
    sids = [m["message_sid"] for m in inbound]
    assert len(sids) == len(set(sids)) == 1 + 1 + 2 + 1 + 2  # every message logged once
    assert all(m["handled_at"] is not None for m in inbound)
    answered = [m["reply_to"] for m in log if m["direction"] == "out"]
    assert sorted(answered) == sorted(m["id"] for m in inbound)  # and answered once
