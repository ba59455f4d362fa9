"""`checkin-bot staff …`: named accounts, their roles, and passwords that end sessions."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from bot.cli import main

from .conftest import Clock
from .helpers import running_bot
from .test_staff import SECRET, browser, csrf_of

DESK_PASSWORD = "a long desk passphrase"


@pytest.fixture
def runner(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", db_url)
    for name in ("STAFF_USERNAME", "STAFF_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def add(runner: CliRunner, name: str, role: str = "desk", password: str = DESK_PASSWORD) -> str:
    result = runner.invoke(
        main, ["staff", "add", name, "--role", role, "--password-stdin"], input=password + "\n"
    )
    return result.output if result.exit_code == 0 else f"exit {result.exit_code}: {result.output}"


def test_accounts_are_added_listed_changed_and_removed(runner: CliRunner) -> None:
    assert add(runner, "sam") == "added desk account sam\n"
    assert "already an account" in add(runner, "sam")
    assert "12 characters" in add(runner, "mia", password="short")
    assert "added admin account lee" in add(runner, "lee", "admin")
    listed = runner.invoke(main, ["staff", "list"]).output
    assert "sam\tdesk" in listed and "lee\tadmin" in listed
    changed = runner.invoke(
        main, ["staff", "passwd", "sam", "--password-stdin"], input="another long passphrase\n"
    )
    assert changed.exit_code == 0 and "sessions have ended" in changed.output
    assert runner.invoke(main, ["staff", "remove", "sam"]).exit_code == 0
    assert runner.invoke(main, ["staff", "remove", "sam"]).exit_code == 1


async def test_a_desk_account_logs_in_reads_and_cannot_export(
    runner: CliRunner, db_url: str, clock: Clock
) -> None:
    await asyncio.to_thread(add, runner, "sam")  # the CLI runs its own event loop
    async with running_bot(db_url, clock, secret_key=SECRET) as bot, browser(bot) as desk:
        page = await desk.get("/staff/login")
        form = {"csrf": csrf_of(page.text), "username": "sam", "password": DESK_PASSWORD}
        assert (await desk.post("/staff/login", data=form)).status_code == 303
        assert (await desk.get("/staff/dashboard")).status_code == 200
        assert (await desk.get("/staff/messages.csv")).status_code == 403
        assert (
            await desk.get("/staff/dashboard.json", auth=("sam", DESK_PASSWORD))
        ).status_code == 200
