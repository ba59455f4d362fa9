"""The real `checkin-bot` processes (migrate, directory import, simulator, serve), over loopback,
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from bot.settings import PROJECT_ROOT
from bot.simulator import demo_directory
from bot.store import engine_at, messages

from .helpers import ALEX, CASEY, JORDAN, form, reply_text, sign

pytestmark = pytest.mark.e2e
TOKEN = "e2e-auth-token"
PUBLIC = "https://checkin.example.org"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Deployment:
    bots: list[str]  # base URLs of the `serve` processes
    simulator: str
    database_url: str
    logs: Path
    env: dict[str, str]

    def checkin_requests(self) -> int:
        """Check-in calls VirtualQ received, whatever their outcome."""
        return int(httpx.get(f"{self.simulator}/_sim/state").json()["checkin_requests"])

    def messages(self) -> list[dict[str, object]]:
        async def read() -> list[dict[str, object]]:
            async with engine_at(self.database_url) as engine, engine.connect() as conn:
                rows = await conn.execute(sa.select(messages).order_by(messages.c.id))
                return [dict(r) for r in rows.mappings()]

        return asyncio.run(read())


def procfile() -> dict[str, str]:
    lines = (PROJECT_ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def _deploy(tmp_path: Path, database_url: str, bots: int, **settings: str) -> Iterator[Deployment]:
    """What a PaaS does with the Procfile: the release command, then `bots` web dynos (each
    with WEB_CONCURRENCY workers); plus the VirtualQ simulator, and the directory imported."""
    command = shutil.which("checkin-bot")
    assert command, "checkin-bot is not installed (pip install -e .)"
    sim_port, bot_ports = _free_port(), [_free_port() for _ in range(bots)]
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": PUBLIC,
        "VIRTUALQ_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "DATABASE_URL": database_url,
        "DEFAULT_REGION": "AU",
        **settings,
    }
    csv = tmp_path / "directory.csv"
    csv.write_text("\n".join(",".join(row) for row in demo_directory()))
    processes = procfile()
    subprocess.run(["bash", "-c", processes["release"]], env=env, check=True, capture_output=True)
    subprocess.run(
        [command, "directory", "import", str(csv)], env=env, check=True, capture_output=True
    )
    logs = tmp_path / "serve.log"
    with logs.open("wb") as out, (tmp_path / "simulator.log").open("wb") as sim_out:
        started = [
            subprocess.Popen(
                [command, "simulator", "--port", str(sim_port)],
                env=env,
                stdout=sim_out,
                stderr=subprocess.STDOUT,
            )
        ]
        try:
            for port in bot_ports:
                started.append(
                    subprocess.Popen(
                        ["bash", "-c", f"exec {processes['web']}"],
                        env={**env, "PORT": str(port)},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait_until_up(f"http://127.0.0.1:{sim_port}/_sim/state", started[0])
            for port, proc in zip(bot_ports, started[1:], strict=True):
                _wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
            yield Deployment(
                [f"http://127.0.0.1:{p}" for p in bot_ports],
                f"http://127.0.0.1:{sim_port}",
                database_url,
                logs,
                env,
            )
        finally:
            for proc in reversed(started):
                proc.terminate()
                proc.wait(timeout=10)


@pytest.fixture
def deployment(tmp_path: Path, blank_db_url: str) -> Iterator[Deployment]:
    yield from _deploy(tmp_path, blank_db_url, bots=1, LOG_FORMAT="json")


@pytest.fixture
def two_bots(tmp_path: Path, blank_db_url: str) -> Iterator[Deployment]:
    yield from _deploy(tmp_path, blank_db_url, bots=2, WEB_CONCURRENCY="2")


def _signed(params: dict[str, str]) -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(f"{PUBLIC}/sms", params, TOKEN),
    }


def _text(base: str, sender: str, body: str) -> httpx.Response:
    params = form(sender, body)
    return httpx.post(f"{base}/sms", content=urlencode(params), timeout=15, headers=_signed(params))


async def _deliver_all(deliveries: list[tuple[str, dict[str, str]]]) -> list[str | None]:
    """POST every (bot URL, form) at once, as Twilio retries and customers double-texting do."""
    async with httpx.AsyncClient(timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{base}/sms", content=urlencode(params), headers=_signed(params))
                for base, params in deliveries
            )
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [reply_text(r.text) for r in responses]


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
    assert {"uvicorn.error", "uvicorn.access", "checkin_bot.service"} <= {
        e["logger"] for e in events
    }
    assert all(e.get("request_id") for e in events if e["logger"] == "checkin_bot.service")


def test_doctor_passes_on_the_running_deployment(deployment: Deployment) -> None:
    doctor = subprocess.run(
        ["checkin-bot", "doctor", "--offline"], env=deployment.env, capture_output=True, text=True
    )
    assert doctor.returncode == 0, doctor.stdout
    assert "ok    virtualq          reachable, credentials accepted" in doctor.stdout
    assert "all good" in doctor.stdout


def test_two_dynos_of_two_workers_check_each_arrival_in_once(two_bots: Deployment) -> None:
    a, b = two_bots.bots
    # Twilio redelivering one HERE to both processes, three times each, all at once.
    here = form(ALEX, "HERE")
    replies = asyncio.run(_deliver_all([(a, here), (b, here)] * 3))
    assert len(set(replies)) == 1 and "Ticket A003" in (replies[0] or "")
    assert two_bots.checkin_requests() == 1

    # An early customer double-texting YES, one text reaching each process.
    assert "early" in (reply_text(_text(a, JORDAN, "here").text) or "")
    yes_replies = asyncio.run(_deliver_all([(a, form(JORDAN, "yes")), (b, form(JORDAN, "YES"))]))
    assert all("Ticket B004" in (r or "") for r in yes_replies), yes_replies
    assert two_bots.checkin_requests() == 1 + 2  # HERE refused as early, then one forced

    # A late customer answering YES and NO at once: one of them wins, whole.
    assert "late" in (reply_text(_text(b, CASEY, "here").text) or "")
    asyncio.run(_deliver_all([(a, form(CASEY, "yes")), (b, form(CASEY, "no"))]))
    assert two_bots.checkin_requests() in (3 + 1, 3 + 2)  # HERE refused as late, YES or NO

    log = two_bots.messages()
    inbound = [m for m in log if m["direction"] == "in"]
    sids = [m["message_sid"] for m in inbound]
    assert len(sids) == len(set(sids)) == 1 + 1 + 2 + 1 + 2  # every message logged once
    assert all(m["handled_at"] is not None for m in inbound)
    answered = [m["reply_to"] for m in log if m["direction"] == "out"]
    assert sorted(answered) == sorted(m["id"] for m in inbound)  # and answered once
