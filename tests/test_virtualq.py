from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from bot.errors import (
    Refusal,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bot.settings import Settings
from bot.simulator import Simulator, create_simulator_app, load_demo
from bot.virtualq import (
    CallRecord,
    CaseDetail,
    CircuitBreaker,
    VirtualQClient,
    make_client,
    make_http_client,
)

from .conftest import T0

# A CaseDetail as ASP.NET's help-page generator writes samples: sequential numbers, "sample
# string N", seven fractional digits with an offset, and values outside the documented ranges
# ("Sex": 64, "CaseStatus": 10). Reconstructed from that generator's pattern and VIRTUALQ.md.
SEED_SAMPLE = """{
  "CaseId": 1, "ProcessId": 2, "ProcessGuid": "6a3ad4a4-90b0-4d1b-a3a6-8c2a4d1d3f0e",
  "Ticket": "sample string 4",
  "CaseDateCreated": "2025-09-13T08:26:07.6348032+10:00",
  "ReferenceDate": "2025-09-13T08:26:07.6348032+10:00",
  "ArrivalTime": "2025-09-13T08:26:07.6348032+10:00", "TimeZoneOffset": 8,
  "LastUpdated": "2025-09-13T08:26:07.6348032+10:00", "CaseStatus": 10,
  "CaseStatusDesc": "sample string 11", "ProcessStatus": 12,
  "ProcessStatusDesc": "sample string 13", "Subject": "sample string 14",
  "ExtRef": "sample string 15",
  "Customer": {
    "CustomerId": 1, "PersonalId": "sample string 2", "PersonalIdTypeId": 3,
    "PersonalIdTypeExtRef": "sample string 4", "FirstName": "sample string 5",
    "LastName": "sample string 6", "Email": "sample string 7", "TelNumber1": "sample string 8",
    "TelNumber2": "sample string 9", "DOB": "2025-09-13T08:26:07.6348032+10:00", "Sex": 64,
    "Notes": "sample string 11", "ExtRef": "sample string 12", "NotificationConsent": true,
    "IsActive": true, "CustomProperties": {"sample string 1": "sample string 2",
                                           "sample string 3": "sample string 4"}
  },
  "UserName": "sample string 16", "UserFirstName": "sample string 17",
  "UserLastName": "sample string 18", "UserServedName": "sample string 19", "ServiceId": 20,
  "ServiceName": "sample string 21", "ServiceDesc": "sample string 22", "Action": 0,
  "ActionDesc": "sample string 23", "EntityStatus": 0, "EntityStatusDesc": "sample string 24",
  "Resolution": 1, "ResolutionDesc": "sample string 25", "UnitId": 26,
  "UnitName": "sample string 27", "UnitDescription": "sample string 28", "UnitTypeId": 29,
  "UnitParentName": "sample string 30", "ParentUnitTypeId": 31, "UnitPath": "sample string 32",
  "LocationName": "sample string 33", "LocationServedName": "sample string 34",
  "LanguageCode": "sample string 35", "IsDirectAdmit": true,
  "AppointmentTypeName": "sample string 37", "QueuePosition": 38, "WaitTimeEst": 39,
  "CustomProperties": {"sample string 1": "sample string 2"}
}"""


def test_the_seed_sample_response_parses() -> None:
    case = CaseDetail.model_validate_json(SEED_SAMPLE)
    assert (case.case_id, case.ticket, case.queue_position, case.wait_time_est) == (
        1,
        "sample string 4",
        38,
        39,
    )
    assert case.case_status == 10 and case.customer and case.customer.sex == 64
    assert case.case_date_created and case.case_date_created.microsecond == 634803
    assert case.case_date_created.utcoffset() is not None
    assert case.position == 38


def _sim_client(sim: Simulator) -> VirtualQClient:
    http = make_http_client(
        Settings(), httpx.ASGITransport(app=create_simulator_app(sim)), base_url="http://sim"
    )
    return make_client(Settings(), http)


@pytest.fixture
def sim() -> Simulator:
    return load_demo(Simulator(clock=lambda: T0))


async def test_on_time_check_in_gets_a_ticket_position_and_wait(sim: Simulator) -> None:
    case = await _sim_client(sim).checkin(personal_id="S1001")
    assert case.ticket == "A003"  # two walk-ins were ahead in service A
    assert case.queue_position == 2 and case.wait_time_est == 12
    assert case.active


@pytest.mark.parametrize(
    ("personal_id", "reason"),
    [
        ("S1002", Refusal.EARLY),
        ("S1003", Refusal.LATE),
        ("S1004", Refusal.PREVENT_AUTO_QUEUE),
        ("S1007", Refusal.NOT_FOUND),
        ("NOBODY", Refusal.NOT_FOUND),
    ],
)
async def test_simulator_refusals_are_classified(
    sim: Simulator, personal_id: str, reason: Refusal
) -> None:
    with pytest.raises(UpstreamRefused) as caught:
        await _sim_client(sim).checkin(personal_id=personal_id)
    assert caught.value.reason is reason and caught.value.status == 400


@pytest.mark.parametrize("personal_id", ["S1002", "S1003", "S1004"])
async def test_force_checks_in_early_late_and_prevented(sim: Simulator, personal_id: str) -> None:
    case = await _sim_client(sim).checkin(personal_id=personal_id, force=True)
    assert case.ticket and sim.checkins == 1


async def test_a_second_check_in_is_refused_as_already_checked_in(sim: Simulator) -> None:
    client = _sim_client(sim)
    first = await client.checkin(personal_id="S1001")
    with pytest.raises(UpstreamRefused) as caught:
        await client.checkin(personal_id="S1001")
    assert caught.value.reason is Refusal.ALREADY_CHECKED_IN
    with pytest.raises(UpstreamRefused) as again:
        await client.checkin(case_id=first.case_id)
    assert again.value.reason is Refusal.ALREADY_CHECKED_IN


async def test_the_queue_moves_and_a_served_case_finishes(sim: Simulator) -> None:
    client = _sim_client(sim)
    case = await client.checkin(personal_id="S1001")
    sim.call_next(1)
    assert (await client.get_case(case.case_id)).queue_position == 1
    sim.call_next(1)
    sim.call_next(1)
    now = await client.get_case(case.case_id)
    assert now.entity_status == 6 and now.active  # being served
    sim.call_next(1)
    assert not (await client.get_case(case.case_id)).active


async def test_one_phone_two_customers_each_get_their_own_appointment(sim: Simulator) -> None:
    client = _sim_client(sim)
    sam = await client.checkin(personal_id="S1005")
    mia = await client.checkin(personal_id="S1006")
    assert sam.ticket.startswith("B") and mia.ticket.startswith("C")


async def test_get_case_of_a_missing_case_is_not_found(sim: Simulator) -> None:
    with pytest.raises(UpstreamRefused) as caught:
        await _sim_client(sim).get_case(999)
    assert caught.value.reason is Refusal.NOT_FOUND and caught.value.status == 404


async def test_simulator_lists_customers_and_waiting_tickets(sim: Simulator) -> None:
    app = create_simulator_app(sim)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as h:
        page = (await h.get("/Customers", params={"offset": 2, "limit": 3})).json()
        assert page["start"] == 2 and page["count"] == 3 and page["totalCount"] == 7
        one = (await h.get("/Customers/S1003", params={"idType": "PersonalId"})).json()
        assert one["FirstName"] == "Casey"
        rows = (await h.get("/Tickets/Waiting/10")).json()
        assert [r["Row"] for r in rows] == list(range(1, 7))
        cancel = await h.post("/Cases/Cancel", json={"CaseId": rows[0]["CaseId"], "Status": 15})
        assert cancel.status_code == 200
        after = (await h.get("/Tickets/Waiting/10")).json()
        assert [r["Row"] for r in after] == list(range(1, 6))
        assert [r["CaseId"] for r in after] == [r["CaseId"] for r in rows[1:]]
        assert set(after[0]) == {
            "Row", "ProcessId", "CaseId", "EnqueueTime", "QCode", "QNumber", "ServiceName",
            "UnitId", "PersonalId", "FirstName", "LastName", "IsAppointment",
        }  # fmt: skip
        # A row is kept as JSON between reads, but shows what changed since.
        await _sim_client(sim).checkin(personal_id="S1005")
        after = (await h.get("/Tickets/Waiting/10")).json()
        n = next(i for i, r in enumerate(after) if r["PersonalId"] == "S1005")
        sim.customers["S1005"].first_name = "Renamed"
        again = (await h.get("/Tickets/Waiting/10")).json()
        assert again[n]["FirstName"] == "Renamed"
        assert again[:n] + again[n + 1 :] == after[:n] + after[n + 1 :]
        by_process = await h.get(f"/Cases/Processes/{rows[1]['ProcessId']}")
        assert by_process.json()["CaseId"] == rows[1]["CaseId"]
        assert (await h.post("/Appointments/Checkin", content=b"{nope")).status_code == 400


# --- refusal and failure variants -----------------------------------------------------------


def _mock(
    handler: Callable[[httpx.Request], httpx.Response], **settings: object
) -> tuple[VirtualQClient, list[CallRecord]]:
    config = Settings(**settings)  # type: ignore[arg-type]
    http = make_http_client(config, httpx.MockTransport(handler), base_url="http://vq/api")
    return make_client(config, http), []


def _answer(
    status: int, body: str | bytes, content_type: str = "application/json"
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(
        status, content=body, headers={"Content-Type": content_type}
    )


@pytest.mark.parametrize(
    ("status", "body", "content_type", "reason"),
    [
        (400, '{"Message": "TooEarly"}', "application/json", Refusal.EARLY),
        (400, '{"message": "Customer arrived too early"}', "application/json", Refusal.EARLY),
        (409, '{"Message": "Early arrival"}', "application/json", Refusal.EARLY),
        (400, '{"Message": "TooLate"}', "application/json", Refusal.LATE),
        (422, "Late arrival for appointment", "text/plain", Refusal.LATE),
        (
            400,
            "<html><body><h1>Error</h1><p>Prevent Auto Queue is set</p></body></html>",
            "text/html",
            Refusal.PREVENT_AUTO_QUEUE,
        ),
        (400, '{"Message": "PreventAutoQueue"}', "application/json", Refusal.PREVENT_AUTO_QUEUE),
        (
            400,
            '{"Message": "An error has occurred.", "ExceptionMessage": "Already checked in"}',
            "application/json",
            Refusal.ALREADY_CHECKED_IN,
        ),
        (404, "", "text/plain", Refusal.NOT_FOUND),
        (400, '{"Message": "No appointment for today"}', "application/json", Refusal.NOT_FOUND),
        (
            400,
            '{"Message": "The request is invalid.", "ModelState": {"x": ["PersonalId too long"]}}',
            "application/json",
            Refusal.OTHER,
        ),
        (400, '"too early"', "application/json", Refusal.EARLY),
    ],
)
async def test_refusal_bodies_are_classified(
    status: int, body: str, content_type: str, reason: Refusal
) -> None:
    client, _ = _mock(_answer(status, body, content_type))
    records: list[CallRecord] = []
    with pytest.raises(UpstreamRefused) as caught:
        await client.checkin(personal_id="S1", observe=records.append)
    assert caught.value.reason is reason
    assert records[0].outcome == f"refused:{reason.value}" and records[0].status == status


def test_refusal_patterns_are_configurable() -> None:
    from bot.virtualq import RefusalClassifier

    classifier = RefusalClassifier({"early": [r"vroeg"]})
    assert classifier.classify(400, "Te vroeg") is Refusal.EARLY
    assert classifier.classify(400, "TooEarly") is Refusal.OTHER


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("read timed out", request=request)


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected without a response", request=request)


# (answer, error, outcome logged, whether VirtualQ may have acted on the request)
@pytest.mark.parametrize(
    ("handler", "error", "outcome", "sent"),
    [
        (
            _answer(502, "<html><body>Bad gateway</body></html>", "text/html"),
            UpstreamUnavailable,
            "unavailable",
            True,
        ),
        (
            _answer(500, '{"Message": "An error has occurred."}'),
            UpstreamUnavailable,
            "unavailable",
            True,
        ),
        (_answer(503, "busy", "text/plain"), UpstreamUnavailable, "unavailable", False),
        (_answer(429, "slow down", "text/plain"), UpstreamUnavailable, "unavailable", False),
        (
            _answer(200, "<html>login page</html>", "text/html"),
            UpstreamUnavailable,
            "unavailable",
            True,
        ),
        (_answer(200, '{"CaseId": 5, "Ticket": ""}'), UpstreamUnavailable, "unavailable", True),
        (_answer(200, '{"CaseId": 5}'), UpstreamUnavailable, "unavailable", True),
        (_answer(200, "{broken"), UpstreamUnavailable, "unavailable", True),
        (
            _answer(401, '{"Message": "Authorization has been denied"}'),
            UpstreamAuthError,
            "auth",
            False,
        ),
        (_timeout, UpstreamTimeout, "timeout", True),
        (_refused, UpstreamUnavailable, "unavailable", False),
        (_dropped, UpstreamUnavailable, "unavailable", True),
    ],
)
async def test_failures_are_unavailable_with_the_cause_kept(
    handler: Callable[[httpx.Request], httpx.Response],
    error: type[UpstreamUnavailable],
    outcome: str,
    sent: bool,
) -> None:
    client, _ = _mock(handler)
    records: list[CallRecord] = []
    with pytest.raises(error) as caught:
        await client.checkin(personal_id="S1", observe=records.append)
    assert type(caught.value) is error
    assert caught.value.request_sent is sent
    assert records[0].outcome == outcome and records[0].error


async def test_find_checkin_by_personal_id_reads_the_units_waiting_tickets(
    sim: Simulator,
) -> None:
    client = _sim_client(sim)
    assert await client.find_checkin(personal_id="S1001", units=[10]) is None
    case = await client.checkin(personal_id="S1001")
    found = await client.find_checkin(personal_id=" s1001 ", units=[99, 10])
    assert found is not None and found.ticket == case.ticket
    with pytest.raises(UpstreamUnavailable, match="VIRTUALQ_UNIT_IDS"):
        await client.find_checkin(personal_id="S1001")


async def test_find_checkin_by_booking_number_reads_the_case(sim: Simulator) -> None:
    client = _sim_client(sim)
    booked = next(c.case_id for c in sim.cases.values() if c.personal_id == "S1001")
    assert await client.find_checkin(case_id=booked) is None  # Expected: nothing enqueued
    await client.checkin(case_id=booked)
    assert (await client.find_checkin(case_id=booked)) is not None
    assert await client.find_checkin(case_id=999) is None  # no such booking


async def test_find_checkin_cannot_tell_when_virtualq_is_down() -> None:
    client, _ = _mock(_answer(503, "busy", "text/plain"))
    with pytest.raises(UpstreamUnavailable):
        await client.find_checkin(personal_id="S1", units=[10])
    unclear, _ = _mock(_answer(200, '{"CaseId": 5, "Ticket": "A1"}'))  # no EntityStatus
    with pytest.raises(UpstreamUnavailable, match="EntityStatus"):
        await unclear.find_checkin(case_id=5)


async def test_a_hanging_upstream_times_out_within_the_total_budget() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    config = Settings(virtualq_timeout_seconds=0.2)
    http = make_http_client(config, httpx.MockTransport(hang), base_url="http://vq")
    with pytest.raises(UpstreamTimeout) as caught:
        await make_client(config, http).checkin(personal_id="S1")
    assert caught.value.request_sent


async def test_checkin_sends_one_identifier_and_the_configured_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"CaseId": 7, "Ticket": "A001", "QueuePosition": 0, "WaitTimeEst": 0}
        )

    client, _ = _mock(handler, virtualq_auth_header="X-Api-Key", virtualq_auth_value="k3y")
    await client.checkin(case_id=7, force=True)
    assert str(seen[0].url) == "http://vq/api/Appointments/Checkin"
    assert json.loads(seen[0].content) == {"CaseId": 7, "ForceEarlyLate": True}
    assert seen[0].headers["X-Api-Key"] == "k3y"

    basic, _ = _mock(handler, virtualq_username="u", virtualq_password="p")
    await basic.get_case(7)
    assert seen[1].headers["Authorization"] == "Basic dTpw"
    with pytest.raises(ValueError):
        await client.checkin(personal_id="x", case_id=1)


async def test_calls_beyond_the_concurrency_cap_wait_for_a_slot_within_their_budget() -> None:
    in_flight, peak = 0, 0

    async def stuck(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.Event().wait()  # VirtualQ never answers
        finally:
            in_flight -= 1  # cancelled by the caller's timeout
        raise AssertionError("unreachable")

    config = Settings(virtualq_max_concurrency=2, virtualq_timeout_seconds=0.3)
    client = make_client(config, make_http_client(config, httpx.MockTransport(stuck), "http://vq"))
    results = await asyncio.gather(*(client.get_case(7) for _ in range(5)), return_exceptions=True)
    assert peak == 2  # never more than the cap at VirtualQ
    assert all(isinstance(r, UpstreamTimeout) for r in results)
    sent = [r.request_sent for r in results if isinstance(r, UpstreamTimeout)]
    # Two were sent at once; the rest waited for a slot (on a loaded machine, a waiter may get
    # a freed slot just before its own time runs out, and count as sent).
    assert sent.count(True) >= 2
    assert all(
        "free slot" in r.cause
        for r in results
        if isinstance(r, UpstreamTimeout) and not r.request_sent
    )


# --- circuit breaker ----------------------------------------------------------------------------


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _breaker_client(
    answers: list[int], threshold: int = 3, seconds: float = 30
) -> tuple[VirtualQClient, Ticker, list[str]]:
    """A client whose VirtualQ answers each request with the next status in `answers`."""
    sent: list[str] = []
    case = SEED_SAMPLE.encode()

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        status = answers.pop(0)
        if status == 200:
            return httpx.Response(200, content=case, headers={"Content-Type": "application/json"})
        return httpx.Response(status, json={"Message": "TooEarly: come back later"})

    client, _ = _mock(handler)
    ticker = Ticker()
    client.breaker = CircuitBreaker(threshold, seconds, clock=ticker)
    return client, ticker, sent


async def test_the_breaker_opens_after_failures_in_a_row_and_answers_at_once() -> None:
    client, ticker, sent = _breaker_client([503, 503, 503])
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
            await client.get_case(7)
    records: list[CallRecord] = []
    with pytest.raises(UpstreamUnavailable, match="circuit open") as caught:
        await client.checkin(personal_id="S1", observe=records.append)
    assert len(sent) == 3  # the fourth call never reached VirtualQ
    assert not isinstance(caught.value, UpstreamTimeout)  # so nothing can have been enqueued
    assert [r.outcome for r in records] == ["circuit_open"]
    ticker.now += 29
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        await client.get_case(7)
    assert len(sent) == 3


async def test_after_the_pause_one_trial_call_closes_or_reopens_it() -> None:
    client, ticker, sent = _breaker_client([503, 503, 503, 503, 200, 200])
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await client.get_case(7)
    ticker.now += 31
    with pytest.raises(UpstreamUnavailable, match="HTTP 503"):  # the trial fails: open again
        await client.get_case(7)
    with pytest.raises(UpstreamUnavailable, match="circuit open"):
        await client.get_case(7)
    assert len(sent) == 4
    ticker.now += 31
    assert (await client.get_case(7)).case_id  # the trial answers: closed
    assert (await client.get_case(7)).case_id
    assert len(sent) == 6


async def test_only_one_trial_call_goes_through_while_half_open() -> None:
    client, ticker, _ = _breaker_client([503, 503, 503, 200])
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await client.get_case(7)
    ticker.now += 31
    assert client.breaker.blocked() is None  # this caller takes the trial …
    assert "half-open" in (client.breaker.blocked() or "")  # … and the next one waits
    client.breaker.answered()
    assert client.breaker.blocked() is None


async def test_refusals_are_answers_and_never_open_the_breaker() -> None:
    client, _, sent = _breaker_client([400] * 6 + [503, 503, 400, 503])
    for _ in range(6):
        with pytest.raises(UpstreamRefused):
            await client.checkin(personal_id="S1")
    for _ in range(4):  # two failures, an answer, one failure: never three in a row
        with pytest.raises(UpstreamError):
            await client.checkin(personal_id="S1")
    assert len(sent) == 10


async def test_a_zero_threshold_turns_the_breaker_off() -> None:
    client, _, sent = _breaker_client([503] * 8, threshold=0)
    for _ in range(8):
        with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
            await client.get_case(7)
    assert len(sent) == 8
