"""The notifier at scale: 1,000 checked-in customers waiting over 20 units.

    python3 -m bench.notify [--watched 1000] [--units 20] [--burst 50] [--rate 1]
                            [--database-url URL]

Against the simulator served by uvicorn over loopback (a real HTTP client), on a real
database (SQLite in a scratch folder unless --database-url). Reports, for one poll:

- upstream calls and wall time with the notifier's way (`GET Tickets/Waiting/{unit}` per
  unit, `GET Cases/{id}` only for cases that left the waiting list) and with the naive way
  (`GET Cases/{id}` for every watched case), and the calls per minute each costs at
  NOTIFY_POLL_SECONDS = 20;
- database statements per poll;
- the send queue with a burst of `--burst` customers called at once: how long the last
  "your turn" waited before Twilio (a stand-in, tests/faulty.py) had it, at `--rate` texts a
  second (TWILIO_SENDS_PER_SECOND).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bot.notify import Notifier
from bot.outbox import Outbox
from bot.prompts import BUILT_IN, load_catalogue
from bot.settings import Settings
from bot.simulator import IN_SERVICE, Case, Queue, Simulator
from bot.store import open_store, prepared
from bot.store.tables import watches
from bot.texter import Texter
from bot.virtualq import make_client, make_http_client
from tests.faulty import FaultyUpstream
from tests.helpers import serving

POLL_SECONDS = 20


def _crowd(sim: Simulator, watched: int, units: int) -> list[dict[str, Any]]:
    """`watched` waiting walk-ins spread over `units` units (one service each), and their
    watch rows."""
    now = sim.clock()
    rows = []
    for unit in range(units):
        sim.services[unit + 1] = Queue(
            unit + 1,
            f"Service {unit}",
            "ABCDEFGHIJKLMNOPQRST"[unit % 20],
            100 + unit,
            f"Unit {unit}",
            5,
        )
    for i in range(watched):
        service = i % units + 1
        case = Case(300000 + i, service, None, None)
        sim.cases[case.case_id] = case
        sim._enqueue(case, now)
        rows.append(
            {
                "case_id": case.case_id,
                "phone": f"+6149200{i:04d}",
                "ticket": case.ticket,
                "unit_id": 100 + service - 1,
                "service_name": f"Service {service - 1}",
                "language": "en",
                "created_at": now,
                "position": sim.position(case)[0],
                "almost_at": now,  # "almost" is not what this measures
            }
        )
    return rows


class Counted(httpx.AsyncBaseTransport):
    """Counts the requests by route as they pass to the real transport."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[
            "Tickets/Waiting" if "Waiting" in path else "Cases/{id}" if "Cases" in path else path
        ] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def run(
    watched: int, units: int, burst: int, rate: float, database_url: str | None
) -> dict[str, Any]:
    sim = Simulator()
    upstream = FaultyUpstream(sim)
    rows = _crowd(sim, watched, units)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        async with serving(upstream) as base, open_store(url, migrate=True) as store:
            async with store.engine.begin() as conn:
                await conn.execute(watches.delete())
                await conn.execute(watches.insert(), rows)
            settings = Settings(
                database_url=url,
                virtualq_base_url=base,
                twilio_api_base_url=base,
                twilio_account_sid="AC" + "1" * 32,
                twilio_auth_token="bench-token",
                twilio_from_number="+61400000000",
                twilio_sends_per_second=rate,
                notify_poll_seconds=POLL_SECONDS,
                twilio_validate_signature=False,
            )
            counted = Counted()
            statements = Counter[str]()

            def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                statements[statement.split(None, 1)[0].upper()] += 1

            for engine in store.tx.engines():  # SQLite's writes run on the writer's engine
                sa.event.listen(engine, "before_cursor_execute", count)
            prepared.observers.append(lambda sql: count(None, None, sql))
            clock = lambda: datetime.now(UTC)  # noqa: E731
            async with make_http_client(settings, counted, base_url=base) as http:
                client = make_client(settings, http)
                catalogue = load_catalogue(BUILT_IN, "en")
                outbox = Outbox(settings, store, Texter(settings), clock)
                notifier = Notifier(settings, store, client, outbox, catalogue, clock)

                # The notifier's way: waiting lists per unit.
                started = time.perf_counter()
                await notifier.poll()
                way = time.perf_counter() - started
                results["poll, waiting lists"] = {
                    "calls": dict(counted.calls),
                    "seconds": way,
                    "statements": dict(statements),
                }
                # The naive way: every case.
                counted.calls.clear()
                started = time.perf_counter()
                await asyncio.gather(*(client.get_case(r["case_id"]) for r in rows[:watched]))
                results["poll, every case"] = {
                    "calls": dict(counted.calls),
                    "seconds": time.perf_counter() - started,
                }

                # A burst: `burst` customers called at once, over the units.
                for i, r in enumerate(rows[:burst]):  # every unit has many counters
                    case = sim.cases[r["case_id"]]
                    sim.services[case.service_id].remove(case.case_id)
                    case.status, case.location = IN_SERVICE, f"Counter {i + 1}"
                counted.calls.clear()
                statements.clear()
                started = time.perf_counter()
                queued = await notifier.poll()
                results["poll with a burst of calls"] = {
                    "queued": queued,
                    "calls": dict(counted.calls),
                    "seconds": time.perf_counter() - started,
                    "statements": dict(statements),
                }
                enqueued_at = time.perf_counter()
                arrived: list[float] = []
                texts = upstream.texts

                async def watch_arrivals() -> None:
                    while len(arrived) < queued:
                        while len(arrived) < len(texts.sent):
                            arrived.append(time.perf_counter() - enqueued_at)
                        await asyncio.sleep(0.01)

                watcher = asyncio.create_task(watch_arrivals())
                sent = await outbox.send_due("bench")
                await asyncio.wait_for(watcher, 30)
                results["burst"] = {
                    "sent": sent,
                    "rate": rate,
                    "first_s": arrived[0] if arrived else None,
                    "median_s": statistics.median(arrived) if arrived else None,
                    "last_s": arrived[-1] if arrived else None,
                }
            sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    return results


def report(results: dict[str, Any], watched: int, units: int) -> str:
    per_minute = 60 / POLL_SECONDS
    ours = sum(results["poll, waiting lists"]["calls"].values())
    naive = sum(results["poll, every case"]["calls"].values())
    burst = results["burst"]
    lines = [
        f"{watched} watched cases over {units} units, polled every {POLL_SECONDS}s:",
        f"  waiting lists per unit: {ours} calls a poll = {ours * per_minute:.0f} calls/min "
        f"({results['poll, waiting lists']['seconds'] * 1000:.0f} ms a poll)",
        f"  every case:             {naive} calls a poll = {naive * per_minute:.0f} calls/min "
        f"({results['poll, every case']['seconds'] * 1000:.0f} ms a poll)",
        f"  database statements, a quiet poll: {results['poll, waiting lists']['statements']}",
        f"  a poll that finds {results['poll with a burst of calls']['queued']} calls: "
        f"{sum(results['poll with a burst of calls']['calls'].values())} upstream calls, "
        f"{results['poll with a burst of calls']['seconds'] * 1000:.0f} ms, statements "
        f"{results['poll with a burst of calls']['statements']}",
        f"  send queue at {burst['rate']:g}/s: {burst['sent']} sent; first after "
        f"{burst['first_s']:.2f}s, median {burst['median_s']:.1f}s, last {burst['last_s']:.1f}s",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watched", type=int, default=1000)
    parser.add_argument("--units", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--database-url")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.watched, args.units, args.burst, args.rate, args.database_url))
    print(report(results, args.watched, args.units))
    return results


if __name__ == "__main__":
    main()
