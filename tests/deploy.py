"""Real `checkin-bot` processes on loopback, deployed as a PaaS would from the Procfile."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa

from bot.simulator import demo_directory
from bot.store import engine_at
from bot.store.tables import messages

from .conftest import PROJECT_ROOT
from .helpers import form, reply_text, sign

TOKEN = "e2e-auth-token"
PUBLIC = "https://checkin.example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    # 60 s: with four test processes on two cores, starting a server has taken over 15 s.
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
    upstream: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)  # the bots'

    def kill_bot(self, index: int) -> None:
        """kill -9 one `serve` process (and its workers): no shutdown, no goodbye."""
        proc = self.processes[index]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def start_bot(self, index: int) -> None:
        """Start a killed `serve` process again, on its port, as the PaaS would."""
        port = self.bots[index].rsplit(":", 1)[1]
        with self.logs.open("ab") as out:
            self.processes[index] = _web(self.env, port, out)
        wait_until_up(f"{self.bots[index]}/healthz", self.processes[index])

    def stop_upstream(self) -> None:
        """Take VirtualQ away: its port refuses connections from now on."""
        assert self.upstream is not None
        self.upstream.terminate()
        self.upstream.wait(timeout=10)

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


def deploy(
    tmp_path: Path,
    database_url: str,
    bots: int,
    upstream: list[str] | None = None,
    directory: list[tuple[str, str, str]] | None = None,
    **settings: str,
) -> Iterator[Deployment]:
    """What a PaaS does with the Procfile: the release command, then `bots` web dynos (each
    with WEB_CONCURRENCY workers); plus the VirtualQ simulator (or the `upstream` command,
    given --port), and the directory imported (the demo's, or `directory`)."""
    command = [sys.executable, "-m", "bot"]
    sim_port, bot_ports = free_port(), [free_port() for _ in range(bots)]
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "PUBLIC_BASE_URL": PUBLIC,
        "VIRTUALQ_BASE_URL": f"http://127.0.0.1:{sim_port}",
        # A stand-in upstream plays Twilio's Messages API too (see tests/faulty.py).
        **({"TWILIO_API_BASE_URL": f"http://127.0.0.1:{sim_port}"} if upstream else {}),
        "DATABASE_URL": database_url,
        "DEFAULT_REGION": "AU",
        # The Procfile names the console script, as a buildpack installs it: the one next to
        # this interpreter, whatever PATH the tests were started with.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **settings,
    }
    csv = tmp_path / "directory.csv"
    csv.write_text("\n".join(",".join(row) for row in directory or demo_directory()))
    processes = procfile()
    subprocess.run(["bash", "-c", processes["release"]], env=env, check=True, capture_output=True)
    subprocess.run(
        [*command, "directory", "import", str(csv)], env=env, check=True, capture_output=True
    )
    logs = tmp_path / "serve.log"
    with logs.open("wb") as out, (tmp_path / "simulator.log").open("wb") as sim_out:
        started = [
            subprocess.Popen(
                [*(upstream or [*command, "simulator"]), "--port", str(sim_port)],
                env=env,
                cwd=PROJECT_ROOT,
                stdout=sim_out,
                stderr=subprocess.STDOUT,
            )
        ]
        deployment: Deployment | None = None
        try:
            for port in bot_ports:
                started.append(_web(env, str(port), out))
            wait_until_up(f"http://127.0.0.1:{sim_port}/_sim/state", started[0])
            for port, proc in zip(bot_ports, started[1:], strict=True):
                wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
            deployment = Deployment(
                [f"http://127.0.0.1:{p}" for p in bot_ports],
                f"http://127.0.0.1:{sim_port}",
                database_url,
                logs,
                env,
                started[0],
                started[1:],
            )
            yield deployment
        finally:
            if deployment is not None:  # the bots as they are now, restarted ones included
                started = [started[0], *deployment.processes]
            for proc in reversed(started):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=10)


def _web(env: dict[str, str], port: str, out: IO[bytes]) -> subprocess.Popen[bytes]:
    """The Procfile's web process on `port`, in a process group of its own (for kill -9)."""
    return subprocess.Popen(
        ["bash", "-c", f"exec {procfile()['web']}"],
        env={**env, "PORT": port},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def signed_headers(params: dict[str, str]) -> dict[str, str]:
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(f"{PUBLIC}/sms", params, TOKEN),
    }


def text(base: str, sender: str, body: str) -> httpx.Response:
    params = form(sender, body)
    return httpx.post(
        f"{base}/sms", content=urlencode(params), timeout=20, headers=signed_headers(params)
    )


async def deliver_all(deliveries: list[tuple[str, dict[str, str]]]) -> list[str | None]:
    """POST every (bot URL, form) at once, as Twilio retries and customers double-texting do."""
    async with httpx.AsyncClient(timeout=20) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    f"{base}/sms", content=urlencode(params), headers=signed_headers(params)
                )
                for base, params in deliveries
            )
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [reply_text(r.text) for r in responses]
