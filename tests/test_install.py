"""The app as a buildpack installs it: a wheel, not the source tree, in a fresh venv elsewhere."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from .conftest import PROJECT_ROOT
from .deploy import free_port, wait_until_up

# One test process runs this whole module (`--dist loadgroup`): the wheel is built once, and
# never by two processes at once in the checkout's build/ directory.
pytestmark = pytest.mark.xdist_group("install")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin directory of a new venv, outside the checkout, holding the built wheel."""
    root = tmp_path_factory.mktemp("installed")
    # Built from a copy of what the wheel is made of, so the build writes nothing into the
    # checkout (its build/ and egg-info are shared by every test process and by your editor).
    source, wheels = root / "source", root / "wheels"
    shutil.copytree(
        PROJECT_ROOT / "bot", source / "bot", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), "."],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("checkin_bot-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    yield bin_dir


def clean_env(**extra: str) -> dict[str, str]:
    """No settings from this test run: what a new machine has."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**keep, **extra}


def test_the_wheel_carries_what_the_app_reads_at_run_time(installed: Path) -> None:
    found = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import bot, pathlib; root = pathlib.Path(bot.__file__).parent; "
            "print(*sorted(str(p.relative_to(root)) for p in root.rglob('*') "
            "if p.suffix in ('.toml', '.html', '.css', '.svg', '.mako')), sep='\\n')",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.split()
    assert "prompts/en.toml" in found and "templates/conversation.html" in found
    assert "static/staff.css" in found and "migrations/script.py.mako" in found
    assert (
        str(PROJECT_ROOT)
        not in subprocess.run(
            [str(installed / "python"), "-c", "import bot; print(bot.__file__)"],
            capture_output=True,
            text=True,
            cwd="/",
        ).stdout
    )


def test_the_installed_demo_checks_a_customer_in(installed: Path, tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    printed = tmp_path / "demo.out"
    with printed.open("wb") as out:
        demo = subprocess.Popen(
            [
                str(installed / "checkin-bot"),
                *("demo", "--port", str(port), "--sim-port", str(sim_port)),
            ],
            cwd=tmp_path,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", demo)
        form = {"From": "+61491570156", "Body": "HERE", "MessageSid": "SMinstalled1"}
        reply = httpx.post(
            f"http://127.0.0.1:{port}/sms",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=20,
        )
        assert reply.status_code == 200 and "Ticket" in reply.text, reply.text
        staff = httpx.get(f"http://127.0.0.1:{port}/staff/login", timeout=10)
        assert staff.status_code == 200 and "<form" in staff.text
    finally:
        demo.terminate()
        demo.wait(timeout=20)
    assert (tmp_path / "checkin-bot-demo.db").exists()
    assert "Staff pages: http://127.0.0.1:" in printed.read_text()


def test_the_installed_doctor_reads_its_prompts_and_schema(installed: Path, tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    subprocess.run([str(installed / "checkin-bot"), "migrate"], env=env, cwd=tmp_path, check=True)
    doctor = subprocess.run(
        [str(installed / "checkin-bot"), "doctor", "--offline"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    lines = doctor.stdout.splitlines()
    assert any(line.startswith("ok    prompts ") for line in lines), doctor.stdout
    assert any(line.startswith("ok    database ") for line in lines), doctor.stdout
    assert doctor.returncode == 1  # nothing configured yet: it says what, and exits 1
    assert "fix: " in doctor.stdout


def test_a_busy_port_is_one_clear_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "bot", "simulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: port {port} is in use; try --port {port + 10}"
    assert time.monotonic() - started < 30


def test_a_second_demo_starts_clean(tmp_path: Path) -> None:
    """The simulator's queues are new each run, so the demo's log must be too: a customer
    who checked in yesterday's demo checks in again today."""
    for run in (1, 2):
        port, sim_port = free_port(), free_port()
        with (tmp_path / f"demo{run}.out").open("wb") as out:
            demo = subprocess.Popen(
                [sys.executable, "-m", "bot", "demo", "--port", str(port)]
                + ["--sim-port", str(sim_port)],
                cwd=tmp_path,
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz", demo)
            form = {"From": "0491 570 156", "Body": "here", "MessageSid": f"SMdemo{run}"}
            reply = httpx.post(
                f"http://127.0.0.1:{port}/sms",
                content=urlencode(form),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=20,
            )
            assert "You're checked in! Ticket A003" in reply.text, (run, reply.text)
        finally:
            demo.terminate()
            demo.wait(timeout=20)
