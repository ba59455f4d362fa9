"""`checkin-bot directory …` on the kind of files a front office exports."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.store import open_store
from bot.store.directory import Entry


@pytest.fixture
def runner(db_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DEFAULT_REGION", "AU")
    return CliRunner()


def entries(db_url: str) -> list[Entry]:
    async def read() -> list[Entry]:
        async with open_store(db_url) as store:
            return await store.directory.entries()

    return asyncio.run(read())


def load(runner: CliRunner, tmp_path: Path, data: bytes, *options: str) -> str:
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    result = runner.invoke(main, ["directory", "import", str(path), *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_columns_are_found_by_header_in_any_order_and_case(
    runner: CliRunner, db_url: str, tmp_path: Path
) -> None:
    data = b"Surname,MOBILE,First Name,Student ID,Email\nTaylor,0491 570 156,Alex,S1,a@x\n"
    output = load(runner, tmp_path, data)
    assert "1 added" in output and "ignored columns: Email" in output
    assert entries(db_url) == [Entry("+61491570156", "S1", "Alex Taylor")]


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("utf-8", ","), ("utf-8-sig", ";"), ("utf-16", "\t"), ("cp1252", ";")],
)
def test_encoding_and_delimiter_are_detected_and_names_survive(
    runner: CliRunner, db_url: str, tmp_path: Path, encoding: str, delimiter: str
) -> None:
    text = delimiter.join(["phone", "personal_id", "name"]) + "\n"
    text += delimiter.join(["0491570156", "S1", "Zoë Müller"]) + "\n"
    load(runner, tmp_path, text.encode(encoding))
    assert [e.name for e in entries(db_url)] == ["Zoë Müller"]


def test_names_in_any_script_are_kept(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    data = "phone,id,name\n0491570156,S1,Дмитрий Иванов\n0491570157,S2,王芳\n0491570158,S3,Łukasz\n"
    load(runner, tmp_path, data.encode())
    assert [e.name for e in entries(db_url)] == ["Дмитрий Иванов", "王芳", "Łukasz"]


def test_a_changed_personal_id_replaces_the_same_persons_row(
    runner: CliRunner, db_url: str, tmp_path: Path
) -> None:
    load(runner, tmp_path, b"phone,id,name\n0491570110,S5,Sam Patel\n0491570110,S6,Mia Patel\n")
    output = load(runner, tmp_path, b"phone,id,name\n0491570110,S9,Sam Patel\n")
    assert "0 added, 1 updated, 0 removed" in output
    assert sorted((e.personal_id, e.name) for e in entries(db_url)) == [
        ("S6", "Mia Patel"),
        ("S9", "Sam Patel"),
    ]


def test_replace_makes_the_directory_exactly_the_file(
    runner: CliRunner, db_url: str, tmp_path: Path
) -> None:
    load(runner, tmp_path, b"phone,id,name\n0491570156,S1,Alex\n0491570157,S2,Jordan\n")
    output = load(runner, tmp_path, b"phone,id,name\n0491570157,S2,Jordan\n", "--replace")
    assert "0 added, 0 updated, 1 removed, 1 unchanged, 0 rejected" in output
    assert [e.personal_id for e in entries(db_url)] == ["S2"]


def test_rejected_rows_are_reported_with_their_line_numbers(
    runner: CliRunner, db_url: str, tmp_path: Path
) -> None:
    data = b"phone,id\n0491570156,S1\n12,S2\n0491570157,\n"
    output = load(runner, tmp_path, data)
    assert "people.csv:3: skipped: not a valid phone number" in output
    assert "people.csv:4: skipped: no personal_id" in output
    assert "1 added, 0 updated, 0 removed, 0 unchanged, 2 rejected" in output


def test_a_file_with_no_usable_rows_changes_nothing_and_fails(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"12,S1\n")
    result = runner.invoke(main, ["directory", "import", str(path)])
    assert result.exit_code == 1 and "no usable rows" in result.output
    path.write_bytes(b"junk,more\nx,y\n")
    result = runner.invoke(main, ["directory", "import", str(path)])
    assert result.exit_code == 1 and "no phone" in result.output


def test_import_reads_standard_input(runner: CliRunner, db_url: str) -> None:
    """`heroku run checkin-bot directory import - < people.csv`: the one-off dyno has no file."""
    result = runner.invoke(main, ["directory", "import", "-"], input=b"phone,id\n+61491570156,S1\n")
    assert result.exit_code == 0, result.output
    assert "<stdin>: encoding" in result.output
    assert [e.personal_id for e in entries(db_url)] == ["S1"]


def test_list_remove_and_export(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    load(
        runner, tmp_path, b"phone,id,name\n0491570110,S5,Sam\n0491570110,S6,Mia\n0491570156,S1,A\n"
    )
    listed = runner.invoke(main, ["directory", "list", "--phone", "0491 570 110"])
    assert listed.exit_code == 0
    rows = list(csv.reader(io.StringIO(listed.output)))
    assert rows == [
        ["phone", "personal_id", "name", "language"],
        ["+61491570110", "S5", "Sam", ""],
        ["+61491570110", "S6", "Mia", ""],
    ]
    removed = runner.invoke(main, ["directory", "remove", "0491570110", "S5"])
    assert removed.exit_code == 0 and "1 removed" in removed.output
    assert runner.invoke(main, ["directory", "remove", "0491570110", "S5"]).exit_code == 1
    exported = runner.invoke(main, ["directory", "export"]).output
    again = tmp_path / "again.csv"
    again.write_text(exported)
    output = runner.invoke(main, ["directory", "import", str(again), "--replace"]).output
    assert "0 added, 0 updated, 0 removed, 2 unchanged" in output


def test_a_large_file_imports_with_plain_counts_when_not_a_terminal(
    runner: CliRunner, db_url: str, tmp_path: Path
) -> None:
    lines = ["phone,personal_id,name"] + [
        f"+614{10000000 + i},P{i},Person {i}" for i in range(5000)
    ]
    output = load(runner, tmp_path, ("\n".join(lines) + "\n").encode())
    assert "5000 added, 0 updated, 0 removed, 0 unchanged, 0 rejected" in output
    assert "reading" not in output  # no progress bar into a pipe
    assert len(entries(db_url)) == 5000
