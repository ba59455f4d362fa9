"""The README's commands stay true: every `checkin-bot …` line in its code blocks is a real
command with real options, and those that can run offline do, on a scratch database."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from bot.cli import main

from .conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
# Commands that need a server, a terminal or the network: checked for their options only.
PARSE_ONLY = {"serve", "demo", "chat", "simulator"}


def code_blocks() -> list[str]:
    """The shell blocks (```sh, or no language): fences toggle, whatever their language."""
    blocks: list[str] = []
    language, lines = None, []
    for line in README.splitlines():
        fence = re.match(r" *```(\w*)", line)
        if fence and language is None:
            language, lines = fence.group(1), []
        elif fence:
            if language in ("", "sh", "bash"):
                blocks.append("\n".join(lines) + "\n")
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def readme_commands() -> list[list[str]]:
    """Each `checkin-bot …` command in a code block, as the argv after the program name."""
    found = []
    for block in code_blocks():
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].strip()
            if "checkin-bot " not in line or line.startswith(("bot>", "customer>")):
                continue
            for part in re.split(r"&&|;", line):
                words = shlex.split(part.split(" < ")[0].split(" > ")[0], posix=True)
                while words and words[0] in ("heroku", "run", "--no-tty", "--"):
                    words = words[1:]
                if words and Path(words[0]).name == "checkin-bot":
                    found.append(words[1:])
    return found


def test_the_first_screen_gives_exactly_the_two_commands() -> None:
    first = code_blocks()[0].strip().splitlines()
    assert len(first) == 2
    assert first[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && ")
    assert ".venv/bin/checkin-bot demo" in first[0]
    assert ".venv/bin/python -m pytest" in first[1]


def test_the_readme_shows_commands_worth_checking() -> None:
    names = {argv[0] for argv in readme_commands() if argv}
    assert {"demo", "migrate", "doctor", "directory", "serve"} <= names


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: " ".join(argv))
def test_every_readme_command_parses(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subcommands, options and arguments as the README writes them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "people.csv").write_text("phone,personal_id\n")
    command: click.Command = main
    context = click.Context(main, info_name="checkin-bot")
    name, args = "checkin-bot", list(argv)
    while isinstance(command, click.Group):
        found, sub, args = command.resolve_command(context, args)
        assert sub is not None, f"no such command: {found}"
        name, command = found or "", sub
        context = click.Context(command, info_name=name, parent=context)
    with command.make_context(name, args, parent=context.parent):  # raises on a wrong option
        pass


def test_the_offline_readme_commands_run(tmp_path: Path) -> None:
    """migrate, directory import/list/remove/export, doctor --offline, settings, purge: as a
    deployer types them, on a SQLite file of their own."""
    (tmp_path / "people.csv").write_text(
        "phone,personal_id,name\n0491 570 156,S1001,Alex Taylor\n0491 570 110,S1005,Sam\n"
    )
    env = {
        "PATH": str(Path(sys.executable).parent),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "DEFAULT_REGION": "AU",
        "RETENTION_DAYS": "365",
    }
    ran = 0
    for argv in [["migrate"], *readme_commands()]:  # a deployer migrates first
        if not argv or argv[0] in PARSE_ONLY or argv[:2] == ["migrate", "--new-revision"]:
            continue
        stdin = (tmp_path / "people.csv").read_bytes() if argv[-1:] == ["-"] else None
        result = subprocess.run(
            [sys.executable, "-m", "bot", *argv],
            cwd=tmp_path,
            env=env,
            input=stdin,
            capture_output=True,
            timeout=60,
        )
        output = (result.stdout + result.stderr).decode()
        if argv[0] == "doctor":
            # Nothing is configured here: it must run and say what to fix (exit 1).
            assert result.returncode == 1 and "fix: " in output, output
        elif argv[0] == "directory" and argv[1] == "remove" and result.returncode == 1:
            assert "nothing to remove" in output  # an earlier README line removed it
        else:
            assert result.returncode == 0, (argv, output)
        ran += 1
    assert ran >= 6
