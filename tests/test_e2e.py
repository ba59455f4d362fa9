"""The real `checkin-bot serve` and `checkin-bot simulator` processes, talked to over loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from bot.simulator import demo_directory

from .helpers import ALEX, JORDAN, form, reply_text, sign

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


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    command = shutil.which("checkin-bot")
    assert command, "checkin-bot is not installed (pip install -e .)"
    sim_port, bot_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": PUBLIC,
        "VIRTUALQ_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
        "DEFAULT_REGION": "AU",
    }
    csv = tmp_path / "directory.csv"
    csv.write_text("\n".join(",".join(row) for row in demo_directory()))
    subprocess.run(
        [command, "directory", "import", str(csv)], env=env, check=True, capture_output=True
    )
    logs = tmp_path / "serve.log"
    with logs.open("wb") as out:
        sim = subprocess.Popen(
            [command, "simulator", "--port", str(sim_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        bot = subprocess.Popen(
            [command, "serve", "--port", str(bot_port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(f"http://127.0.0.1:{sim_port}/_sim/state", sim)
            _wait_until_up(f"http://127.0.0.1:{bot_port}/healthz", bot)
            yield f"http://127.0.0.1:{bot_port}", logs
        finally:
            for proc in (bot, sim):
                proc.terminate()
                proc.wait(timeout=10)


def _text(base: str, sender: str, body: str) -> httpx.Response:
    params = form(sender, body)
    return httpx.post(
        f"{base}/sms",
        content=urlencode(params),
        timeout=15,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(f"{PUBLIC}/sms", params, TOKEN),
        },
    )


def test_a_signed_here_gets_a_ticket_from_the_real_processes(servers: tuple[str, Path]) -> None:
    base, logs = servers
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
    printed = logs.read_text()
    assert "+61491570156" not in printed and "+61 4** *** 156" in printed
