"""The simulator's load customers (`checkin-bot simulator --load-customers N`), for bench/load.py:
many customers due now, each checked in once, found without scanning every case."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import phonenumbers
import pytest
from click.testing import CliRunner

from bot import cli
from bot.cli import run_bot
from bot.simulator import (
    EXPECTED,
    LOAD_CUSTOMERS_MAX,
    WAITING,
    Case,
    Simulator,
    create_simulator_app,
    load_customer_rows,
    load_customers,
    load_demo,
)

from .conftest import T0, Clock


def test_load_customers_have_valid_australian_mobiles_and_distinct_ids() -> None:
    rows = load_customer_rows(20_000)
    assert rows[0] == ("+61490000000", "L000001", "Load Test1")
    assert rows[-1] == ("+61490019999", "L020000", "Load Test20000")
    assert len({phone for phone, _, _ in rows}) == len({pid for _, pid, _ in rows}) == 20_000
    for phone, _, _ in [*rows[::1000], rows[-1], load_customer_rows(LOAD_CUSTOMERS_MAX)[-1]]:
        number = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(number), phone
        assert phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE
    with pytest.raises(ValueError):
        load_customer_rows(LOAD_CUSTOMERS_MAX + 1)


def test_load_customers_are_due_in_five_minutes_across_the_services() -> None:
    clock = Clock(T0)
    sim = load_demo(Simulator(clock=clock))
    demo_cases = len(sim.cases)
    rows = load_customers(sim, 6)
    assert len(sim.cases) == demo_cases + 6
    booked = [case for case in sim.cases.values() if (case.personal_id or "").startswith("L")]
    assert [c.service_id for c in booked] == [1, 2, 3, 1, 2, 3]
    assert all(c.appointment_at == T0 + timedelta(minutes=5) for c in booked)
    assert all(c.status == EXPECTED and not c.prevent_auto_queue for c in booked)
    assert [sim.customers[pid].tel for _, pid, _ in rows] == [phone for phone, _, _ in rows]


async def _post(app: Any, path: str, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        return await client.post(path, json=body)


async def test_each_load_customer_checks_in_once_and_the_demo_is_unchanged() -> None:
    clock = Clock(T0)
    sim = load_demo(Simulator(clock=clock))
    load_customers(sim, 3000)
    app = create_simulator_app(sim)
    first = await _post(app, "/Appointments/Checkin", {"PersonalId": "L002999"})
    assert first.status_code == 200, first.text
    case = first.json()
    assert case["Ticket"] and case["Customer"]["PersonalId"] == "L002999"
    assert case["Customer"]["TelNumber1"] == "+61490002998"
    again = await _post(app, "/Appointments/Checkin", {"PersonalId": "L002999"})
    assert again.status_code == 400 and "already checked in" in again.json()["Message"]
    alex = await _post(app, "/Appointments/Checkin", {"PersonalId": "S1001"})
    assert alex.status_code == 200
    jordan = await _post(app, "/Appointments/Checkin", {"PersonalId": "S1002"})
    assert jordan.json()["Message"].startswith("TooEarly")
    for odd in (123, ["L000001"], {"a": 1}):  # no stored PersonalId equals these
        refused = await _post(app, "/Appointments/Checkin", {"PersonalId": odd})
        assert refused.status_code == 400 and "No appointment found" in refused.text
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim"
    ) as client:
        state = (await client.get("/_sim/state")).json()
    assert set(state) == {"checkins", "checkin_requests", "queues", "serving"}
    assert (state["checkins"], state["checkin_requests"]) == (2, 7)


def test_the_personal_id_index_follows_cases_stored_replaced_and_removed() -> None:
    clock = Clock(T0)
    sim = load_demo(Simulator(clock=clock))
    due = T0 + timedelta(minutes=5)
    sim.cases[300001] = Case(300001, 1, "X1", due)  # as tests/faulty.py adds arrivals
    assert [c.case_id for c in sim.cases.of("X1")] == [300001]
    sim.cases[300001] = Case(300001, 1, "X2", due)
    assert sim.cases.of("X1") == [] and [c.case_id for c in sim.cases.of("X2")] == [300001]
    del sim.cases[300001]
    assert sim.cases.of("X2") == [] and 300001 not in sim.cases


def test_positions_stay_right_as_the_queue_moves() -> None:
    clock = Clock(T0)
    sim = load_demo(Simulator(clock=clock))
    rows = load_customers(sim, 30)
    cases = [sim.checkin({"PersonalId": pid}) for _, pid, _ in rows]
    sim.call_next(1)
    sim.set_status(cases[3], 15)  # cancelled while waiting
    sim.set_status(cases[0], WAITING)  # sent back to the end of its queue
    for case in sim.cases.values():
        queue = sim.services[case.service_id].waiting
        expected = queue.index(case.case_id) if case.case_id in queue else 0
        assert sim.position(case)[0] == expected


async def test_the_simulator_command_adds_load_customers(monkeypatch: pytest.MonkeyPatch) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(run_bot.uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    result = CliRunner().invoke(cli.main, ["simulator", "--port", "9", "--load-customers", "5"])
    assert result.exit_code == 0, result.output
    assert served["port"] == 9
    checkin = await _post(served["app"], "/Appointments/Checkin", {"PersonalId": "L000005"})
    assert checkin.status_code == 200, checkin.text
    missing = CliRunner().invoke(cli.main, ["simulator", "--load-customers", "-1"])
    assert missing.exit_code == 2
