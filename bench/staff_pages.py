"""How fast the staff pages answer on a year of a busy site, and what the CSV export costs.

    python3 -m bench.staff_pages                     # SQLite, 100,000 conversations
    python3 -m bench.staff_pages --backend postgresql  # a throwaway local PostgreSQL cluster
    python3 -m bench.staff_pages --conversations 2000 --repeat 5   # a quick look

It builds the data set (each conversation 5 messages and 1.5 VirtualQ calls on average, spread
over 365 days, 30% of phones coming back), then asks the real app, in process, for each page
`--repeat` times and prints the median and 95th percentile, and the export's peak Python memory.
Numbers depend on the machine: compare runs on one machine, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from bot.app import create_app
from bot.settings import Settings
from bot.staff import queries
from bot.store import engine_at, schema
from bot.store.tables import messages, threads, upstream_calls

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
USER, PASSWORD = "bench", "benchmark password"
FIRST = ["Alex", "Sam", "Mia", "Jordan", "Casey", "Riley", "Priya", "Chen", "Noah", "Zoe"]
LAST = ["Taylor", "Patel", "Nguyen", "Smith", "Lee", "Brown", "Garcia", "Kim", "Jones", "Wu"]
OUTCOMES = [
    ("checked_in", 70),
    ("confirmed", 8),
    ("declined", 3),
    ("expired", 2),
    ("prevent_auto_queue", 2),
    ("unknown_number", 6),
    ("no_appointment", 5),
    ("upstream_failure", 1),
    ("opted_out", 1),
    ("other", 2),
]
RESPONSE = json.dumps(
    {
        "CaseId": 123456,
        "TicketNumber": "A012",
        "QueuePosition": 3,
        "EstimatedWaitTime": 12,
        "Customer": {"CustomerId": 5001, "FirstName": "Alex", "LastName": "Taylor"},
        "AppointmentTypeName": "Appointment",
        "CaseStatusDesc": "Active",
        "ArrivalTime": "2026-11-24T11:30:14.8849220+10:00",
    }
)


def rows(conversations: int, seed: int = 7) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(table, rows) batches of the data set, ids assigned here so batches can be COPYed."""
    rnd = random.Random(seed)
    phones = [f"+614{rnd.randrange(10**7, 10**8)}" for _ in range(int(conversations * 0.7))]
    weights = [w for _, w in OUTCOMES]
    message_id = call_id = 0
    batch: dict[str, list[dict[str, Any]]] = {"threads": [], "messages": [], "upstream_calls": []}
    start = NOW - timedelta(days=365)
    step = timedelta(days=365) / conversations
    for thread_id in range(1, conversations + 1):
        at = start + step * thread_id
        phone = rnd.choice(phones)
        outcome = rnd.choices([o for o, _ in OUTCOMES], weights)[0]
        known = outcome not in ("unknown_number",)
        ticketed = outcome in ("checked_in", "confirmed")
        batch["threads"].append(
            dict(
                id=thread_id,
                phone=phone,
                started_at=at,
                last_at=at + timedelta(minutes=3),
                outcome=outcome,
                personal_id=f"S{thread_id % 40000:05d}" if known else None,
                name=f"{rnd.choice(FIRST)} {rnd.choice(LAST)}" if known else None,
                ticket=f"{'ABC'[thread_id % 3]}{thread_id % 1000:03d}" if ticketed else None,
                case_id=100000 + thread_id if ticketed else None,
                ticket_at=at + timedelta(seconds=rnd.randrange(2, 90)) if ticketed else None,
                message_count=5,
            )
        )
        inbound_id = None
        for i in range(5):
            message_id += 1
            direction = "in" if i % 2 == 0 else "out"
            batch["messages"].append(
                dict(
                    id=message_id,
                    phone=phone,
                    thread_id=thread_id,
                    direction=direction,
                    body="HERE" if direction == "in" else "You're checked in! Ticket A012.",
                    message_sid=f"SM{message_id:032d}",
                    reply_to=inbound_id if direction == "out" else None,
                    intent="arrive" if direction == "in" else None,
                    prompt="checked_in" if direction == "out" else None,
                    state_before="idle",
                    state_after="checked_in",
                    segments=1 if direction == "out" else None,
                    num_media=0,
                    status="delivered" if direction == "out" else None,
                    handled_at=at if direction == "in" else None,
                    created_at=at + timedelta(seconds=i * 30),
                )
            )
            if direction == "in":
                inbound_id = message_id
                calls = (2 if rnd.random() < 0.5 else 1) if i == 0 else 0
                for _ in range(calls):
                    call_id += 1
                    batch["upstream_calls"].append(
                        dict(
                            id=call_id,
                            message_id=message_id,
                            operation="checkin",
                            request={"method": "POST", "path": "Appointments/Checkin"},
                            status=200,
                            latency_ms=rnd.randrange(20, 400),
                            outcome="ok" if outcome != "upstream_failure" else "timeout",
                            response=RESPONSE,
                            error=None,
                            created_at=at,
                        )
                    )
        if thread_id % 5000 == 0 or thread_id == conversations:
            for table in ("threads", "messages", "upstream_calls"):
                yield table, batch[table]
            batch = {"threads": [], "messages": [], "upstream_calls": []}


async def load(url: str, conversations: int) -> dict[str, int]:
    counts = {"threads": 0, "messages": 0, "upstream_calls": 0}
    tables = {"threads": threads, "messages": messages, "upstream_calls": upstream_calls}
    async with engine_at(url) as engine:
        await schema.migrate(engine)
        async with engine.begin() as conn:
            for name, batch in rows(conversations):
                if batch:
                    await conn.execute(tables[name].insert(), batch)
                    counts[name] += len(batch)
            if conn.dialect.name == "postgresql":
                for name in tables:  # ids were given: move the sequences past them
                    await conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT max(id) FROM {name}))"
                    )
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")  # what a database that grew slowly would know
    return counts


async def measure(url: str, repeat: int, conversations: int) -> list[tuple[str, float, float]]:
    settings = Settings(
        database_url=url,
        twilio_validate_signature=False,
        staff_username=USER,
        staff_password=PASSWORD,
        secret_key="b" * 40,
        timezone="Australia/Sydney",
    )
    app = create_app(settings, virtualq_base_url="http://127.0.0.1:9", clock=lambda: NOW)
    middle = conversations // 2
    day = (NOW - timedelta(days=1)).date().isoformat()
    pages = {
        "dashboard, today": "/staff/dashboard",
        "dashboard, a whole year": (
            f"/staff/dashboard?from={(NOW - timedelta(days=365)).date()}&to={NOW.date()}"
        ),
        "conversations, newest page": "/staff/conversations",
        "conversations, deep page (keyset)": None,  # filled below
        "conversations, one outcome": "/staff/conversations?outcome=no_appointment",
        "conversations, one day": f"/staff/conversations?from={day}&to={day}",
        "search: phone, national format": None,
        "search: PersonalId": f"/staff/conversations?q=S{middle % 40000:05d}",
        "search: ticket": "/staff/conversations?q=b123",
        "search: part of a name (rare)": "/staff/conversations?q=zoe+wu",
        "search: no match": "/staff/conversations?q=nobody+at+all",
        "conversation": f"/staff/conversations/{middle}",
        "conversation .json": f"/staff/conversations/{middle}.json",
        "needs attention, today": "/staff/attention",
        "needs attention, 31 days": (
            f"/staff/attention?from={(NOW - timedelta(days=30)).date()}&to={NOW.date()}"
        ),
        "audit log": "/staff/audit",
    }
    results = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", auth=(USER, PASSWORD)
        ) as client,
    ):
        async with engine_at(url) as engine, engine.connect() as conn:
            phone = await conn.scalar(
                threads.select().with_only_columns(threads.c.phone).where(threads.c.id == middle)
            )
            page_200 = await conn.scalar(
                threads.select()
                .with_only_columns(threads.c.id)
                .order_by(threads.c.started_at.desc(), threads.c.id.desc())
                .offset(min(200, conversations // 100) * 50)
                .limit(1)
            )
        pages["search: phone, national format"] = "/staff/conversations?q=0" + str(phone)[3:]
        pages["conversations, deep page (keyset)"] = f"/staff/conversations?before={page_200}"
        # Sign in once (the pages are HTML; the session cookie is what staff use).
        login = await client.get("/staff/login")
        token = login.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        await client.post(
            "/staff/login", data={"csrf": token, "username": USER, "password": PASSWORD}
        )
        for name, path in pages.items():
            assert path is not None
            timings = []
            for _ in range(repeat + 1):
                started = time.perf_counter()
                response = await client.get(path)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, (path, response.status_code)
            timings = sorted(timings[1:])  # the first run warms caches
            p95 = timings[max(0, round(0.95 * len(timings)) - 1)]
            results.append((name, statistics.median(timings), p95))
            print(f"  {name:<36} median {statistics.median(timings):8.1f} ms   p95 {p95:8.1f} ms")
    results += await export(url)
    return results


async def export(url: str) -> list[tuple[str, float, float]]:
    """The CSV export's generator (what the streamed response sends chunk by chunk): the time
    for a whole year, and its peak Python memory for one month and for three (tracemalloc
    slows Python down, so the timed run is a separate one)."""
    zone = ZoneInfo("Australia/Sydney")
    end = NOW.date()
    results = []
    async with engine_at(url) as engine:
        started, size = time.perf_counter(), 0
        async for chunk in queries.messages_csv(
            engine, queries.Period(end - timedelta(days=366), end, zone)
        ):
            size += len(chunk)
        elapsed = time.perf_counter() - started
        print(f"  CSV export, a whole year: {size / 1e6:.0f} MB in {elapsed:.1f} s")
        results.append(("CSV export, a whole year (s)", elapsed, size / 1e6))
        for days in (30, 90):
            tracemalloc.start()
            async for _ in queries.messages_csv(
                engine, queries.Period(end - timedelta(days=days), end, zone)
            ):
                pass
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"  CSV export, {days} days: peak Python memory {peak / 1e6:.1f} MB")
            results.append((f"CSV export, {days} days (peak MB)", peak / 1e6, peak / 1e6))
    return results


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    from tests.databases import postgres_cluster

    with postgres_cluster() as admin:
        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(admin)
            await conn.execute("CREATE DATABASE bench")
            await conn.close()

        asyncio.run(create())
        yield admin.rsplit("/", 1)[0] + "/bench"


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    with database(args.backend) as url:
        started = time.perf_counter()
        counts = asyncio.run(load(url, args.conversations))
        print(
            f"{args.backend}: {counts['threads']:,} conversations, {counts['messages']:,} "
            f"messages, {counts['upstream_calls']:,} VirtualQ calls loaded in "
            f"{time.perf_counter() - started:.0f} s"
        )
        return asyncio.run(measure(url, args.repeat, args.conversations))


if __name__ == "__main__":
    main()
