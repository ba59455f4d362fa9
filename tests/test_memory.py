"""A worker gives back what a poll's big temporaries took (bot.memory), and does not load
what it does not use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Run in a process of its own: a test worker's heap, after hundreds of other tests, may have
# been trimmed already or hold the pages elsewhere (it failed once that way under xdist).
_BIG_READ = """
import json
from bot import memory
from bot.virtualq.models import PLACES

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6

rows = [
    {"Row": i, "CaseId": i, "ServiceName": "General", "PersonalId": str(i), "UnitId": 1}
    for i in range(40_000)
]
body = json.dumps(rows).encode()
del rows
kept = []
for _ in range(3):
    places = PLACES.validate_json(bytes(bytearray(body)))
    positions = {p.case_id: i for i, p in enumerate(places)}
    kept.append([object() for _ in range(1000)])
    del places, positions
before = rss_mb()
trimmed = memory.give_back()
print(trimmed, before, rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_big_waiting_list_read_leaves_no_memory_behind() -> None:
    """What the notifier does each poll: read a 40,000-row waiting list, index it, drop it,
    while something long-lived is allocated meanwhile (glibc then keeps the freed pages)."""
    out = subprocess.run(
        [sys.executable, "-c", _BIG_READ], capture_output=True, text=True, check=True
    ).stdout
    trimmed, before, after = out.split()
    assert trimmed == "True"  # glibc, as on the machines this is deployed to
    assert float(after) < float(before) - 5, (before, after)


def test_a_web_worker_does_not_load_the_migration_tools_or_the_rest_client() -> None:
    """Alembic with Mako (~11 MB) is for `checkin-bot migrate`; twilio's REST client with
    requests (~5 MB, ~12 once used) for the first text the bot sends of its own."""
    probe = (
        "import sys, bot.app; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako', 'requests'}),"
        " 'twilio.rest' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] False", out


def test_a_web_worker_freezes_what_it_started_with(tmp_path: Path) -> None:
    """`checkin-bot serve`'s app factory settles the collector (bot.memory.settle): in a
    fresh process, as a worker is."""
    probe = (
        "import gc; from bot.cli.run_bot import app_from_env; app_from_env(); "
        "print(gc.get_freeze_count() > 50_000)"
    )
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "TWILIO_AUTH_TOKEN": "token",
        "VIRTUALQ_BASE_URL": "http://127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.splitlines()[-1] == "True", out  # after its log lines
