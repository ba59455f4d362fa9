"""`checkin-bot directory …`: load, list, remove and export the phone -> PersonalId directory."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from typing import BinaryIO

import click

from .. import phones
from ..directory_file import DirectoryFile, read_directory
from ..store import open_store
from ..store.directory import Entry, ImportSummary
from . import main, run, settings


@main.group()
def directory() -> None:
    """The phone -> PersonalId directory."""


@directory.command("import")
@click.argument("csv_file", metavar="FILE.csv|-", type=click.File("rb"))
@click.option(
    "--replace",
    is_flag=True,
    help="Make the directory exactly this file: rows it does not have are removed.",
)
def import_(csv_file: BinaryIO, replace: bool) -> None:
    """Load a CSV export (or `-` for standard input, e.g. `heroku run … < people.csv`).

    Columns are found by their header, in any order (phone/mobile/tel/TelNumber1,
    personal_id/id/student id, name or first+last name, language); the delimiter and the
    encoding are detected. Without --replace, rows are added or updated, and a phone whose
    PersonalId changed (same name) is updated rather than given a second person."""
    config = settings()
    given = getattr(csv_file, "name", "-")
    name = "<stdin>" if given in ("-", "<stdin>") else str(given)
    data = csv_file.read()
    tty = sys.stderr.isatty()
    lines = data.count(b"\n") + 1
    try:
        if tty:
            with click.progressbar(length=lines, label="reading", file=sys.stderr) as bar:
                seen = [0]

                def advance(line: int) -> None:
                    bar.update(line - seen[0])
                    seen[0] = line

                read = read_directory(data, config.default_region, advance)
                bar.update(lines - seen[0])
        else:
            read = read_directory(data, config.default_region)
    except ValueError as exc:
        raise click.ClickException(f"{name}: {exc}") from exc
    for note in read.notes:
        click.echo(f"{name}: {note}", err=True)
    for line, problem in read.rejected:
        click.echo(f"{name}:{line}: skipped: {problem}", err=True)
    if not read.rows:
        raise click.ClickException(f"{name}: no usable rows; the directory is unchanged")
    summary = run(_load(config.database_url, read, replace, tty))
    click.echo(
        f"{summary.added} added, {summary.updated} updated, {summary.removed} removed, "
        f"{summary.unchanged} unchanged, {len(read.rejected)} rejected"
        + (" (--replace: the directory is now this file)" if replace else "")
    )


async def _load(url: str, read: DirectoryFile, replace: bool, tty: bool) -> ImportSummary:
    rows = [Entry(r.phone, r.personal_id, r.name, r.language) for r in read.rows]
    async with open_store(url) as store:
        if not tty:
            return await store.directory.load(rows, datetime.now(UTC), replace=replace)
        with click.progressbar(length=len(rows), label="saving ", file=sys.stderr) as bar:
            return await store.directory.load(
                rows, datetime.now(UTC), replace=replace, progress=bar.update
            )


@directory.command("list")
@click.option("--phone", help="Only this phone's customers (any format).")
def list_(phone: str | None) -> None:
    """Print the directory (or one phone's customers) as CSV."""
    _print(phone)


@directory.command("export")
def export() -> None:
    """Write the whole directory as CSV to standard output, ready to import again."""
    _print(None)


def _print(phone: str | None) -> None:
    config = settings()
    wanted = _phone(phone, config.default_region) if phone else None

    async def work() -> list[Entry]:
        async with open_store(config.database_url) as store:
            return await store.directory.entries(wanted)

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["phone", "personal_id", "name", "language"])
    for e in run(work()):
        out.writerow([e.phone, e.personal_id, e.name or "", e.language or ""])


@directory.command("remove")
@click.argument("phone")
@click.argument("personal_id", required=False)
def remove(phone: str, personal_id: str | None) -> None:
    """Remove a phone's customers (or only PERSONAL_ID) from the directory."""
    config = settings()
    e164 = _phone(phone, config.default_region)

    async def work() -> int:
        async with open_store(config.database_url) as store:
            return await store.directory.remove(e164, personal_id)

    removed = run(work())
    if not removed:
        which = f"{phone} {personal_id}" if personal_id else phone
        raise click.ClickException(f"nothing to remove for {which}")
    click.echo(f"{removed} removed")


def _phone(raw: str, region: str) -> str:
    e164 = phones.normalise(raw, region)
    if e164 is None:
        raise click.BadParameter(f"not a valid phone number for region {region}: {raw!r}")
    return e164
