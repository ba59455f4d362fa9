"""A VirtualQ simulator: today's appointments, early/late windows, and queues that move.

It implements the documented routes (the README's "The VirtualQ API") closely enough to test
the bot against and to demo it: refusals are HTTP 400 `{"Message": "..."}` naming the
condition, as VirtualQ is expected to answer. Control routes under `/_sim/` move the queue
and show the state.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

EXPECTED, WAITING, IN_SERVICE, COMPLETED, CANCELLED, NO_SHOW = 0, 3, 6, 8, 15, 17
RESOLUTION = {COMPLETED: 0, CANCELLED: 1, NO_SHOW: 2, 4: 3}  # a closed case's Resolution
RESOLUTION_DESC = {0: "Complete", 1: "Cancelled", 2: "NoShow", 3: "Abandoned"}
COUNTERS = 3  # the demo's counters: "Counter 1" to "Counter 3"
STATUS_DESC = {
    EXPECTED: "Expected",
    WAITING: "Waiting",
    IN_SERVICE: "InService",
    COMPLETED: "Completed",
    CANCELLED: "Cancelled",
    4: "Abandoned",
    NO_SHOW: "NoShow",
}
SERVER_TZ = timezone(timedelta(hours=10))


@dataclass
class Queue:
    """One service's queue: its tickets (QCode + number), who waits and who is served."""

    service_id: int
    name: str
    qcode: str
    unit_id: int
    unit_name: str
    minutes_each: int
    counter: int = 0
    waiting: list[int] = field(default_factory=list)  # waiting case ids, oldest first
    serving: int | None = None
    # Each waiting case's ticket number (the counter when it was enqueued): the line is in
    # that order, so a place in it is a binary search, not a scan of a long line.
    numbers: dict[int, int] = field(default_factory=dict)

    def remove(self, case_id: int) -> None:
        """Take a case out of the line (if it waits) and out of service (if it is served)."""
        if self.numbers.pop(case_id, None) is not None:
            self.waiting.remove(case_id)
        if self.serving == case_id:
            self.serving = None


@dataclass
class Customer:
    customer_id: int
    personal_id: str
    first_name: str
    last_name: str
    tel: str


@dataclass
class Case:
    case_id: int
    service_id: int
    personal_id: str | None = None
    appointment_at: datetime | None = None
    prevent_auto_queue: bool = False
    status: int = EXPECTED
    ticket: str | None = None
    enqueued_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    location: str | None = None  # the counter that called it
    resolution: int | None = None  # how it closed
    notes: list[str] = field(default_factory=list)

    @property
    def process_id(self) -> int:
        return self.case_id + 900000


class Cases(MutableMapping[int, Case]):
    """The cases by CaseId, also indexed by PersonalId: a check-in by PersonalId reads that
    customer's cases only, not every case (a load test books tens of thousands). A case's
    personal_id must not change once it is stored (store a new Case instead)."""

    def __init__(self) -> None:
        self._cases: dict[int, Case] = {}
        # PersonalId -> its case ids, in insertion order (a dict used as an ordered set).
        self._by_personal_id: dict[str, dict[int, None]] = {}

    def __getitem__(self, case_id: int) -> Case:
        return self._cases[case_id]

    def __setitem__(self, case_id: int, case: Case) -> None:
        if case_id in self._cases:
            self._unindex(case_id)
        self._cases[case_id] = case
        if case.personal_id is not None:
            self._by_personal_id.setdefault(case.personal_id, {})[case_id] = None

    def __delitem__(self, case_id: int) -> None:
        self._unindex(case_id)
        del self._cases[case_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._cases)

    def __len__(self) -> int:
        return len(self._cases)

    def of(self, personal_id: object) -> list[Case]:
        """The cases booked for `personal_id`, in the order they were added (none for a
        PersonalId that is not a string, as a JSON number or list equals no stored one)."""
        if not isinstance(personal_id, str):
            return []
        return [self._cases[i] for i in self._by_personal_id.get(personal_id, ())]

    def _unindex(self, case_id: int) -> None:
        old = self._cases[case_id].personal_id
        if old is not None:
            ids = self._by_personal_id[old]
            del ids[case_id]
            if not ids:
                del self._by_personal_id[old]


class Refused(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Simulator:
    """The queue system's state and rules, with an injectable clock."""

    def __init__(
        self,
        clock: Callable[[], datetime] | None = None,
        early_minutes: int = 30,
        late_minutes: int = 15,
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.early = timedelta(minutes=early_minutes)
        self.late = timedelta(minutes=late_minutes)
        self.services: dict[int, Queue] = {}
        self.customers: dict[str, Customer] = {}
        self.cases = Cases()
        self.next_counter = 0  # counters take turns calling
        self.checkins = 0  # successful check-ins, for tests and the fault table
        # Check-in requests of any outcome: a real VirtualQ may enqueue a repeated one twice.
        self.checkin_requests = 0

    # --- rules --------------------------------------------------------------------------------

    def checkin(self, body: dict[str, Any]) -> Case:
        self.checkin_requests += 1
        case = self._find_for_checkin(body)
        now = self.clock()
        if not body.get("ForceEarlyLate"):
            if case.prevent_auto_queue:
                raise Refused("PreventAutoQueue: this appointment must be enqueued by staff.")
            assert case.appointment_at is not None
            if now < case.appointment_at - self.early:
                at = case.appointment_at.astimezone(SERVER_TZ).strftime("%H:%M")
                raise Refused(f"TooEarly: arrival is too early for the {at} appointment.")
            if now > case.appointment_at + self.late:
                raise Refused("TooLate: late arrival, the appointment time has passed.")
        self._enqueue(case, now)
        self.checkins += 1
        return case

    def _find_for_checkin(self, body: dict[str, Any]) -> Case:
        if body.get("CaseId") or body.get("ProcessId"):
            case = self._case_by(body.get("CaseId"), body.get("ProcessId"))
            if case.status in (WAITING, IN_SERVICE):
                raise Refused("Case is already checked in (enqueued).")
            if case.status != EXPECTED or not self._today(case):
                raise Refused(f"No appointment found for today with booking {case.case_id}.")
            return case
        personal_id = body.get("PersonalId")
        if not personal_id:
            raise Refused("One of CaseId, ProcessId or PersonalId is required.")
        today = sorted(
            (c for c in self.cases.of(personal_id) if self._today(c)),
            key=lambda c: c.appointment_at or self.clock(),
        )
        expected = [c for c in today if c.status == EXPECTED]
        if expected:
            return expected[0]
        if any(c.status in (WAITING, IN_SERVICE) for c in today):
            raise Refused("Customer is already checked in (already in queue).")
        raise Refused(f"No appointment found for today for PersonalId {personal_id}.")

    def _today(self, case: Case) -> bool:
        """Within twelve hours of now: "today" without a midnight cliff for late-night demos."""
        if case.appointment_at is None:
            return False
        return abs(case.appointment_at - self.clock()) <= timedelta(hours=12)

    def _case_by(self, case_id: Any, process_id: Any = None) -> Case:
        try:
            wanted = int(case_id) if case_id else int(process_id) - 900000
        except (TypeError, ValueError):
            raise Refused("The request is invalid.") from None
        if wanted not in self.cases:
            raise Refused(f"Case {wanted} not found.", 404)
        return self.cases[wanted]

    def _enqueue(self, case: Case, now: datetime) -> None:
        service = self.services[case.service_id]
        service.counter += 1
        case.ticket = f"{service.qcode}{service.counter:03d}"
        case.status, case.enqueued_at = WAITING, now
        service.waiting.append(case.case_id)
        service.numbers[case.case_id] = service.counter

    def call_next(self, service_id: int | None = None) -> list[int]:
        """Finish whoever is being served and call the next waiting case, per service, to the
        next counter in turn."""
        called = []
        for service in self.services.values():
            if service_id is not None and service.service_id != service_id:
                continue
            if service.serving is not None:
                self.set_status(self.cases[service.serving], COMPLETED)
            if service.waiting:
                self.next_counter = self.next_counter % COUNTERS + 1
                case = self.cases[service.waiting[0]]
                self.call(case, f"Counter {self.next_counter}")
                called.append(case.case_id)
        return called

    def call(self, case: Case, counter: str) -> None:
        """Call a waiting case (or re-call one being served) to a counter."""
        service = self.services[case.service_id]
        if case.status not in (WAITING, IN_SERVICE):
            raise Refused(f"Case {case.case_id} is not waiting.")
        if service.serving is not None and service.serving != case.case_id:
            self.set_status(self.cases[service.serving], COMPLETED)
        service.remove(case.case_id)
        service.serving = case.case_id
        case.status, case.location = IN_SERVICE, counter

    def set_status(self, case: Case, status: int, note: str | None = None) -> None:
        self.services[case.service_id].remove(case.case_id)
        if note:
            case.notes.append(note)
        if status == WAITING:
            case.location = case.resolution = None
            self._enqueue(case, self.clock())
        else:
            case.status, case.resolution = status, RESOLUTION.get(status)

    # --- views --------------------------------------------------------------------------------

    def position(self, case: Case) -> tuple[int, int]:
        service = self.services[case.service_id]
        if case.case_id not in service.numbers:
            return 0, 0
        pos = bisect.bisect_left(
            service.waiting, service.numbers[case.case_id], key=service.numbers.__getitem__
        )
        busy = service.minutes_each // 2 if service.serving is not None else 0
        return pos, pos * service.minutes_each + busy

    def case_detail(self, case: Case) -> dict[str, Any]:
        service = self.services[case.service_id]
        customer = self.customers.get(case.personal_id or "")
        position, wait = self.position(case)
        closed = case.status not in (EXPECTED, WAITING, IN_SERVICE)
        return {
            "CaseId": case.case_id,
            "ProcessId": case.process_id,
            "ProcessGuid": f"00000000-0000-4000-8000-{case.case_id:012d}",
            "Ticket": case.ticket or "",
            "CaseDateCreated": dotnet_time(case.created_at),
            "ReferenceDate": dotnet_time(case.appointment_at or case.created_at),
            "ArrivalTime": dotnet_time(case.enqueued_at) if case.enqueued_at else None,
            "TimeZoneOffset": 0,
            "LastUpdated": dotnet_time(self.clock()),
            "CaseStatus": 1 if closed else 0,
            "CaseStatusDesc": "Closed" if closed else "Active",
            "ProcessStatus": 1 if closed else 0,
            "Subject": None,
            "ExtRef": None,
            "Customer": customer_json(customer) if customer else None,
            "ServiceId": service.service_id,
            "ServiceName": service.name,
            "EntityStatus": case.status,
            "EntityStatusDesc": STATUS_DESC.get(case.status, "?"),
            "Resolution": case.resolution,
            "ResolutionDesc": RESOLUTION_DESC.get(case.resolution)
            if case.resolution is not None
            else None,
            "UnitId": service.unit_id,
            "UnitName": service.unit_name,
            "LocationName": case.location if case.status == IN_SERVICE else None,
            "LanguageCode": "en",
            "IsDirectAdmit": False,
            "AppointmentTypeName": "Appointment" if case.appointment_at else "Walk-in",
            "QueuePosition": position,
            "WaitTimeEst": wait,
            "CustomProperties": {},
        }


def dotnet_time(moment: datetime) -> str:
    """An ISO-8601 time as ASP.NET writes it: server offset, seven fractional digits."""
    local = moment.astimezone(SERVER_TZ)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}0{offset[:3]}:{offset[3:]}"


def customer_json(c: Customer) -> dict[str, Any]:
    return {
        "CustomerId": c.customer_id,
        "PersonalId": c.personal_id,
        "FirstName": c.first_name,
        "LastName": c.last_name,
        "TelNumber1": c.tel,
        "TelNumber2": None,
        "Email": None,
        "Sex": 0,
        "IsActive": True,
        "NotificationConsent": True,
        "CustomProperties": {},
    }


# --- demo data ----------------------------------------------------------------------------------

# (personal_id, first, last, phone as staff typed it, minutes from now or None, service, flags)
DEMO_PEOPLE: list[tuple[str, str, str, str, int | None, int, str]] = [
    ("S1001", "Alex", "Taylor", "0491 570 156", 5, 1, "on time"),
    ("S1002", "Jordan", "Lee", "+61 491 570 157", 120, 2, "early"),
    ("S1003", "Casey", "Nguyen", "0491570158", -45, 1, "late"),
    ("S1004", "Riley", "Smith", "(04) 9157 0159", 5, 3, "prevent-auto-queue"),
    ("S1005", "Sam", "Patel", "0491 570 110", 10, 2, "shares a phone with Mia"),
    ("S1006", "Mia", "Patel", "0491 570 110", 20, 3, "shares a phone with Sam"),
    ("S1007", "Taylor", "Brown", "0491 570 111", None, 1, "no appointment today"),
]
UNKNOWN_DEMO_PHONE = "+61491570199"


def load_demo(sim: Simulator) -> Simulator:
    """Deterministic demo data relative to the simulator's clock (see DEMO_PEOPLE)."""
    now = sim.clock().replace(second=0, microsecond=0)
    for sid, name, code, mins in (
        (1, "Enrolment advice", "A", 6),
        (2, "Course advice", "B", 8),
        (3, "Fees and payments", "C", 5),
    ):
        sim.services[sid] = Queue(sid, name, code, 10, "Student Centre", mins)
    next_case = 100001
    for i, (pid, first, last, tel, minutes, service_id, flag) in enumerate(DEMO_PEOPLE, 1):
        sim.customers[pid] = Customer(5000 + i, pid, first, last, tel)
        # "no appointment today": booked for tomorrow instead.
        at = now + timedelta(minutes=minutes) if minutes is not None else now + timedelta(days=1)
        sim.cases[next_case] = Case(
            next_case, service_id, pid, at, prevent_auto_queue=flag == "prevent-auto-queue"
        )
        next_case += 1
    for service_id, walk_ins in ((1, 2), (2, 3), (3, 1)):
        for _ in range(walk_ins):
            case = Case(next_case, service_id, None, None)
            sim.cases[next_case] = case
            sim._enqueue(case, now)
            next_case += 1
    return sim


# `--load-customers`: many customers, each due in five minutes, for load tests.
LOAD_FIRST_PHONE = 61490000000  # +61 490 000 000 onward: valid Australian mobile numbers
LOAD_CUSTOMERS_MAX = 999_999  # PersonalIds L000001…L999999


def load_customer_rows(count: int) -> list[tuple[str, str, str]]:
    """(phone, PersonalId, name) of the `count` customers `load_customers` adds, as the
    directory CSV wants them: +61490000000, L000001, "Load Test1"; and so on."""
    if not 0 <= count <= LOAD_CUSTOMERS_MAX:
        raise ValueError(f"load customers: 0 to {LOAD_CUSTOMERS_MAX:,}, not {count:,}")
    return [
        (f"+{LOAD_FIRST_PHONE + i}", f"L{i + 1:06d}", f"Load Test{i + 1}") for i in range(count)
    ]


def load_customers(sim: Simulator, count: int) -> list[tuple[str, str, str]]:
    """Add `count` customers, each with one appointment five minutes from now (as the demo
    counts them), spread over the services in turn; their directory rows."""
    now = sim.clock().replace(second=0, microsecond=0)
    services = sorted(sim.services)
    if not services:
        raise ValueError("load customers need services: load the demo first")
    rows = load_customer_rows(count)
    first_case = max(sim.cases, default=100000) + 1
    first_customer = max((c.customer_id for c in sim.customers.values()), default=0) + 1
    at = now + timedelta(minutes=5)
    for i, (tel, pid, name) in enumerate(rows):
        first, last = name.split(" ", 1)
        sim.customers[pid] = Customer(first_customer + i, pid, first, last, tel)
        service_id = services[i % len(services)]
        sim.cases[first_case + i] = Case(first_case + i, service_id, pid, at)
    return rows


def demo_directory() -> list[tuple[str, str, str]]:
    """(phone, personal_id, name) rows matching the demo customers."""
    return [(tel, pid, f"{first} {last}") for pid, first, last, tel, *_ in DEMO_PEOPLE]


# --- the HTTP app -------------------------------------------------------------------------------


def create_simulator_app(
    sim: Simulator | None = None, call_every: float | None = None
) -> Starlette:
    """The simulator as a Starlette app; `call_every` seconds, if set, calls the next customers."""
    sim = sim or load_demo(Simulator())

    async def checkin(request: Request) -> JSONResponse:
        body = await _json_body(request)
        return JSONResponse(sim.case_detail(sim.checkin(body)))

    async def get_case(request: Request) -> JSONResponse:
        return JSONResponse(sim.case_detail(sim._case_by(request.path_params["case_id"])))

    async def get_process(request: Request) -> JSONResponse:
        case = sim._case_by(None, request.path_params["process_id"])
        return JSONResponse(sim.case_detail(case))

    async def list_customers(request: Request) -> JSONResponse:
        q = request.query_params
        offset, limit = max(int(q.get("offset", 1)), 1), min(max(int(q.get("limit", 50)), 1), 500)
        rows = [
            c
            for c in sim.customers.values()
            if (not q.get("PersonalId") or c.personal_id == q["PersonalId"])
            and (not q.get("FirstName") or c.first_name.lower() == q["FirstName"].lower())
            and (not q.get("LastName") or c.last_name.lower() == q["LastName"].lower())
        ]
        page = rows[offset - 1 : offset - 1 + limit]
        return JSONResponse(
            {
                "start": offset,
                "count": len(page),
                "totalCount": len(rows),
                "totalPages": -(-len(rows) // limit),
                "customerResults": [customer_json(c) for c in page],
            }
        )

    async def get_customer(request: Request) -> JSONResponse:
        wanted, by = request.path_params["id"], request.query_params.get("idType", "")
        for c in sim.customers.values():
            key = c.personal_id if by.lower() in ("1", "personalid") else str(c.customer_id)
            if key == wanted:
                return JSONResponse(customer_json(c))
        raise Refused("Customer not found.", 404)

    # Each waiting case's row as JSON, kept while what it shows is unchanged: the list is read
    # whole by every poll of the notifier, and at 100,000 waiting, building and encoding every
    # row again took the simulator's one event loop for a second, stalling every check-in.
    rows_seen: dict[int, tuple[tuple[Any, ...], str, bytes]] = {}

    def waiting_row(case: Case, service: Queue, unit_id: int) -> tuple[str, bytes]:
        """(EnqueueTime, the row's JSON after its opening brace, without "Row")."""
        customer = sim.customers.get(case.personal_id or "")
        names = (customer.first_name, customer.last_name) if customer else (None, None)
        shown = (case.process_id, case.enqueued_at, case.ticket, case.appointment_at, *names)
        key = (*shown, case.personal_id, service.qcode, service.name, unit_id)
        seen = rows_seen.get(case.case_id)
        if seen is not None and seen[0] == key:
            return seen[1], seen[2]
        enqueued = dotnet_time(case.enqueued_at or sim.clock())
        row = {
            "ProcessId": case.process_id,
            "CaseId": case.case_id,
            "EnqueueTime": enqueued,
            "QCode": service.qcode,
            "QNumber": int((case.ticket or "0")[1:]),
            "ServiceName": service.name,
            "UnitId": unit_id,
            "PersonalId": case.personal_id,
            "FirstName": names[0],
            "LastName": names[1],
            "IsAppointment": case.appointment_at is not None,
        }
        encoded = json.dumps(row, ensure_ascii=False, separators=(",", ":"))[1:].encode()
        if case.enqueued_at is not None:  # else "now": not the same row next time
            rows_seen[case.case_id] = (key, str(enqueued), encoded)
        return str(enqueued), encoded

    async def waiting(request: Request) -> Response:
        unit_id, rows = int(request.path_params["unit_id"]), list[tuple[str, bytes]]()
        for service in sim.services.values():
            if service.unit_id != unit_id:
                continue
            rows.extend(
                waiting_row(sim.cases[case_id], service, unit_id) for case_id in service.waiting
            )
        rows.sort(key=lambda r: r[0])
        body = b",".join(b'{"Row":%d,%s' % (i, row) for i, (_, row) in enumerate(rows, 1))
        return Response(b"[" + body + b"]", media_type="application/json")

    async def cancel(request: Request) -> JSONResponse:
        body = await _json_body(request)
        case = sim._case_by(body.get("CaseId"), body.get("ProcessId"))
        if body.get("Status") not in (15, 4, 17, 3, 8):
            raise Refused("Status must be one of 15, 4, 17, 3, 8.")
        note = body.get("Notes")
        sim.set_status(case, int(body["Status"]), note if isinstance(note, str) else None)
        return JSONResponse(f"Case {case.case_id} status set to {body['Status']}")

    async def control_call_next(request: Request) -> JSONResponse:
        service = request.query_params.get("service_id")
        return JSONResponse({"called": sim.call_next(int(service) if service else None)})

    async def control_call(request: Request) -> JSONResponse:
        """Call a given case to a given counter: {"case_id": 100001, "counter": "Counter 3"}."""
        body = await _json_body(request)
        case = sim._case_by(body.get("case_id"))
        sim.call(case, str(body.get("counter") or "Counter 1"))
        return JSONResponse({"called": case.case_id, "counter": case.location})

    async def control_close(request: Request) -> JSONResponse:
        """Close a case as staff would: {"case_id": …} to /_sim/no-show or /_sim/complete."""
        body = await _json_body(request)
        case = sim._case_by(body.get("case_id"))
        status = NO_SHOW if request.url.path.endswith("no-show") else COMPLETED
        sim.set_status(case, status)
        return JSONResponse({"case_id": case.case_id, "status": STATUS_DESC[status]})

    async def control_state(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "checkins": sim.checkins,
                "checkin_requests": sim.checkin_requests,
                "queues": {
                    s.name: [sim.cases[c].ticket for c in s.waiting] for s in sim.services.values()
                },
                "serving": {
                    s.name: {
                        "ticket": sim.cases[s.serving].ticket,
                        "at": sim.cases[s.serving].location,
                    }
                    for s in sim.services.values()
                    if s.serving is not None
                },
            }
        )

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        return JSONResponse({"Message": exc.message}, status_code=exc.status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_keep_calling(sim, call_every)) if call_every else None
        yield
        if task:
            task.cancel()

    return Starlette(
        routes=[
            Route("/Appointments/Checkin", checkin, methods=["POST"]),
            Route("/Cases/Processes/{process_id:int}", get_process),
            Route("/Cases/Cancel", cancel, methods=["POST"]),
            Route("/Cases/{case_id:int}", get_case),
            Route("/Customers", list_customers),
            Route("/Customers/{id}", get_customer),
            Route("/Tickets/Waiting/{unit_id:int}", waiting),
            Route("/_sim/call-next", control_call_next, methods=["POST"]),
            Route("/_sim/call", control_call, methods=["POST"]),
            Route("/_sim/no-show", control_close, methods=["POST"]),
            Route("/_sim/complete", control_close, methods=["POST"]),
            Route("/_sim/state", control_state),
        ],
        exception_handlers={Refused: refused},
        lifespan=lifespan,
    )


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise Refused("The request is invalid.") from None
    if not isinstance(body, dict):
        raise Refused("The request is invalid.")
    return body


async def _keep_calling(sim: Simulator, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        sim.call_next()
