from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.settings import Settings, settings_markdown
from bot.store import schema

from .conftest import PROJECT_ROOT
from .helpers import transcript


@pytest.fixture
def runner(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", db_url)
    for name in ("VIRTUALQ_BASE_URL", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def test_settings_prints_every_setting_with_its_help(runner: CliRunner) -> None:
    result = runner.invoke(main, ["settings"])
    assert result.exit_code == 0
    for name, field in Settings.model_fields.items():
        assert name.upper() in result.output
        assert (field.description or "")[:40] in result.output


def test_the_readme_settings_table_is_the_generated_one() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- settings:", 1)[1].split("<!-- /settings -->", 1)[0]
    assert block.split("\n", 1)[1] == settings_markdown(), (
        "run `checkin-bot settings --markdown` and paste it into the README"
    )
    assert all(f"`{name.upper()}`" in block for name in Settings.model_fields)


def test_directory_import_reports_bad_lines(runner: CliRunner, tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("phone,personal_id,name\n0491 570 156,S1,Alex\nnonsense,S2\n+61491570157,S3\n")
    result = runner.invoke(main, ["directory", "import", str(csv)])
    assert result.exit_code == 0, result.output
    assert "2 added, 0 updated, 0 removed, 0 unchanged, 1 rejected" in result.output
    assert "people.csv:3: skipped: not a valid phone number" in result.output


def test_directory_import_of_only_bad_rows_fails(runner: CliRunner, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("junk,\n")
    assert runner.invoke(main, ["directory", "import", str(csv)]).exit_code == 1


def test_migrate_creates_then_keeps_the_schema(
    blank_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", blank_db_url)
    first = CliRunner().invoke(main, ["migrate"])
    assert first.exit_code == 0, first.output
    assert f"upgraded from nothing to {schema.head()}" in first.output
    again = CliRunner().invoke(main, ["migrate"])
    assert f"up to date ({schema.head()})" in again.output


def test_commands_refuse_an_unmigrated_database(
    blank_db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", blank_db_url)
    monkeypatch.setenv("TWILIO_VALIDATE_SIGNATURE", "false")
    monkeypatch.setenv("VIRTUALQ_BASE_URL", "http://127.0.0.1:9")
    csv = tmp_path / "people.csv"
    csv.write_text("0491 570 156,S1,Alex\n")
    for command in (["serve"], ["directory", "import", str(csv)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "has no checkin-bot schema: run `checkin-bot migrate`" in result.output


def test_chat_talks_to_the_built_in_simulator(runner: CliRunner) -> None:
    result = runner.invoke(main, ["chat", "--from", "0491 570 157"], input="here\nyes\nstatus\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "early" in lines[0] and "Ticket B004" in lines[1] and "Ticket B004" in lines[2]


def test_serve_names_what_is_missing(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve"])
    assert result.exit_code != 0
    assert "TWILIO_AUTH_TOKEN" in result.output and "VIRTUALQ_BASE_URL" in result.output


def test_python_dash_m_bot_is_the_same_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("demo", "chat", "serve", "simulator", "migrate", "directory", "settings"):
        assert command in out


def test_purge_needs_an_age_and_says_what_it_deleted(
    runner: CliRunner, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta

    from bot.store import open_store

    async def seed() -> int:
        async with open_store(db_url) as store:
            old = datetime.now(UTC) - timedelta(days=40)
            inbound = await store.log.record_inbound("+61491570156", "SM1", "HERE", 0, old)
            await store.log.record_inbound("+61491570157", "SM2", "HERE", 0, datetime.now(UTC))
            return inbound.id

    async def left() -> tuple[int, int]:
        async with open_store(db_url) as store:
            return (
                len(await transcript(store, "+61491570156")),
                len(await transcript(store, "+61491570157")),
            )

    asyncio.run(seed())
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    refused = runner.invoke(main, ["purge"])
    assert refused.exit_code == 2 and "RETENTION_DAYS" in refused.output
    kept = runner.invoke(main, ["purge"], env={"RETENTION_DAYS": "60"})
    assert kept.exit_code == 0 and "deleted 0 conversations" in kept.output
    done = runner.invoke(main, ["purge", "--older-than", "30"])
    assert done.exit_code == 0, done.output
    assert "deleted 1 conversations (1 messages, 0 VirtualQ calls)" in done.output
    assert asyncio.run(left()) == (0, 1)
