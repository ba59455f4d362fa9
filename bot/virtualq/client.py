"""The VirtualQ REST client: check-ins and case look-ups, refusals classified, every call observed.

Errors are those of `bot.errors`; the wire's (bot.virtualq.wire) never leave this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from ..errors import (
    UpstreamAuthError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ..settings import Settings
from .breaker import CircuitBreaker
from .models import (
    ANY_JSON,
    CANCELLED,
    CASE,
    EXPECTED,
    PLACES,
    WAITING,
    CaseDetail,
    CaseState,
    WaitingPlace,
    WaitingTicket,
)
from .refusals import RefusalClassifier, error_message
from .wire import AiohttpWire, HttpxWire, Timeouts, Wire, WireAnswer, WireError

T = TypeVar("T")
_TEXT: TypeAdapter[str] = TypeAdapter(str)  # an answer read as text, not JSON


@dataclass(frozen=True)
class CallRecord:
    """One upstream call as it happened, for the log."""

    operation: str
    request: dict[str, Any]
    status: int | None
    latency_ms: int
    outcome: str  # ok / refused:<reason> / unavailable / timeout / auth
    response: str | None
    error: str | None = None


Observer = Callable[[CallRecord], None]


class VirtualQClient:
    """Async VirtualQ calls on a wire (tests pass one on an httpx MockTransport)."""

    def __init__(
        self,
        http: Wire,
        classifier: RefusalClassifier,
        total_timeout: float = 6.0,
        max_concurrency: int = 10,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.http = http
        self.classifier = classifier
        self.total_timeout = total_timeout
        self._slots = asyncio.Semaphore(max_concurrency)
        self.breaker = breaker or CircuitBreaker(0, 0)

    async def checkin(
        self,
        *,
        personal_id: str | None = None,
        case_id: int | None = None,
        process_id: int | None = None,
        force: bool = False,
        observe: Observer | None = None,
    ) -> CaseDetail:
        """POST Appointments/Checkin for one identifier; the case on success, else an error."""
        body: dict[str, Any] = {"ForceEarlyLate": force}
        if personal_id is not None:
            body["PersonalId"] = personal_id
        if case_id is not None:
            body["CaseId"] = case_id
        if process_id is not None:
            body["ProcessId"] = process_id
        if len(body) != 2:
            raise ValueError("checkin takes exactly one of personal_id, case_id, process_id")
        return await self._read("checkin", "POST", "Appointments/Checkin", body, observe, CASE)

    async def get_case(self, case_id: int, observe: Observer | None = None) -> CaseDetail:
        """GET Cases/{caseId}: the case now, with its queue position and wait."""
        path = f"Cases/{int(case_id)}"
        return await self._read("get_case", "GET", path, None, observe, CASE)

    async def waiting(self, unit_id: int, observe: Observer | None = None) -> list[WaitingTicket]:
        """GET Tickets/Waiting/{unitId}: the unit's waiting tickets, oldest first."""
        path = f"Tickets/Waiting/{int(unit_id)}"
        return await self._read("waiting", "GET", path, None, observe, WAITING)

    async def places(self, unit_id: int) -> list[WaitingPlace]:
        """`waiting`, each ticket read for its case and service only (the notifier's poll)."""
        path = f"Tickets/Waiting/{int(unit_id)}"
        return await self._read("waiting", "GET", path, None, None, PLACES)

    async def find_checkin(
        self,
        *,
        personal_id: str | None = None,
        case_id: int | None = None,
        units: Sequence[int] = (),
        observe: Observer | None = None,
    ) -> CaseDetail | None:
        """After a check-in whose answer was lost: the case it enqueued, or None when a look-up
        shows nothing was enqueued. UpstreamUnavailable when VirtualQ cannot tell us: down, or
        (by PersonalId) no units configured to look in, as no endpoint finds a person's cases."""
        try:
            if case_id is not None:
                # A booking nobody checked in may have no Ticket yet: read it loosely first.
                path = f"Cases/{int(case_id)}"
                raw = await self._read("get_case", "GET", path, None, observe, ANY_JSON)
                state = CaseState.model_validate(raw if isinstance(raw, dict) else {})
                if state.entity_status is None:
                    raise UpstreamUnavailable("the case has no EntityStatus: enqueued or not?")
                if state.entity_status == EXPECTED or state.case_status == 1:
                    return None
                try:
                    case = CaseDetail.model_validate(raw)
                except ValidationError as exc:
                    raise UpstreamUnavailable(f"enqueued, but {_first_error(exc)}") from exc
                return case if case.active else None
            if personal_id is None:
                raise ValueError("find_checkin takes personal_id or case_id")
            if not units:
                raise UpstreamUnavailable(
                    "cannot look a check-in up by PersonalId: VIRTUALQ_UNIT_IDS is not set"
                )
            wanted = personal_id.strip().casefold()
            for unit in units:
                for ticket in await self.waiting(unit, observe):
                    if (ticket.personal_id or "").strip().casefold() == wanted:
                        return await self.get_case(ticket.case_id, observe)
            return None
        except UpstreamRefused as exc:
            if case_id is not None and exc.status == 404:
                return None  # no such booking: nothing was enqueued for it
            raise UpstreamUnavailable(f"look-up refused: {exc.cause}", exc.status) from exc

    async def cancel_case(
        self,
        case_id: int,
        *,
        status: int = CANCELLED,
        note: str = "",
        observe: Observer | None = None,
    ) -> str:
        """POST Cases/Cancel: set a case's status (15 Cancelled: the customer left, or a
        booking cancelled). VirtualQ answers with a string; whatever it says, a 2xx is done."""
        body = {"CaseId": int(case_id), "Status": status, "Notes": note[:200]}
        return await self._read("cancel_case", "POST", "Cases/Cancel", body, observe, _TEXT)

    async def probe(self) -> int:
        """A harmless read (the first customer of `GET Customers`) that proves VirtualQ is
        reachable and takes our credentials: its HTTP status, or an error from the tree.
        Refusals are left to the caller: a 404 here means the base URL is wrong."""
        response, _ = await self._call(
            "probe", "GET", "Customers", None, None, params={"offset": 1, "limit": 1}
        )
        return response.status

    async def _read(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        observe: Observer | None,
        shape: TypeAdapter[T],
    ) -> T:
        """A call whose 2xx answer has `shape`, through the circuit breaker (the readiness
        probe goes around it: it reports VirtualQ's health, it does not decide it)."""
        why = self.breaker.blocked()
        if why is not None:
            if observe:
                request = {"method": method, "path": path, "body": body}
                observe(CallRecord(operation, request, None, 0, "circuit_open", None, why))
            raise UpstreamUnavailable(why)
        with self.breaker.watching():
            response, note = await self._call(operation, method, path, body, observe)
            status = response.status
            if status >= 400:
                message = error_message(response.text)
                reason = self.classifier.classify(status, message)
                note(f"refused:{reason.value}", message)
                raise UpstreamRefused(status, message, reason)
            try:
                if shape is _TEXT:  # whatever VirtualQ says with a 2xx: done
                    answer = shape.validate_python(response.text)
                else:
                    answer = shape.validate_json(response.content)
            except ValidationError as exc:
                cause = f"2xx without a usable answer: {_first_error(exc)}"
                note("unavailable", cause)
                # A 2xx is a success: a check-in happened, but we cannot read its ticket.
                raise UpstreamUnavailable(cause, status, request_sent=True) from exc
            note("ok", None)
            return answer

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        observe: Observer | None,
        params: dict[str, Any] | None = None,
    ) -> tuple[WireAnswer, Callable[[str, str | None], None]]:
        """One request inside the total budget; a 2xx or 4xx response (other than 401/403)
        and the function that reports its outcome, or an error from the tree (reported)."""
        request = {"method": method, "path": path, "body": body}
        started = time.monotonic()
        status: int | None = None
        text: str | None = None

        def note(outcome: str, error: str | None = None) -> None:
            if observe:
                latency = int((time.monotonic() - started) * 1000)
                observe(CallRecord(operation, request, status, latency, outcome, text, error))

        queued = True
        try:
            async with asyncio.timeout(self.total_timeout), self._slots:
                queued = False
                response = await self.http.request(method, path, body, params)
        except TimeoutError as exc:
            waited = " waiting for a free slot" if queued else ""
            cause = f"timeout after {self.total_timeout:g}s{waited} (TimeoutError)"
            note("timeout", cause)
            raise UpstreamTimeout(cause, request_sent=not queued) from exc
        except WireError as exc:
            if exc.timeout:
                cause = f"timeout after {self.total_timeout:g}s ({exc.kind})"
                note("timeout", cause)
                raise UpstreamTimeout(cause, request_sent=exc.sent) from exc
            cause = str(exc)
            note("unavailable", cause)
            raise UpstreamUnavailable(cause, request_sent=exc.sent) from exc
        status, text = response.status, response.text[:4000]
        if status in (401, 403):
            cause = f"VirtualQ rejected our credentials ({status}); check VIRTUALQ_AUTH_* settings"
            note("auth", cause)
            raise UpstreamAuthError(cause, status)
        if status in (408, 429) or status >= 500:
            note("unavailable", f"HTTP {status}")
            raise UpstreamUnavailable(
                f"HTTP {status}: {error_message(text)[:200]}",
                status,
                # 503/408/429 say the request was not taken on; any other 5xx (a crash, or a
                # proxy that lost the answer) may have come after the check-in was done.
                request_sent=status not in (408, 429, 503),
            )
        if not 200 <= status < 300 and not 400 <= status < 500:
            note("unavailable", f"HTTP {status}")
            raise UpstreamUnavailable(f"unexpected HTTP {status}", status)
        return response, note


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "body"
    return f"{where}: {err['msg']}"


def make_http_client(
    settings: Settings,
    transport: httpx.AsyncBaseTransport | None = None,
    base_url: str | None = None,
) -> Wire:
    """VirtualQ's wire with the configured base URL, timeouts and auth: aiohttp to a real
    server, or httpx on a given transport (a test's, or the simulator in process)."""
    headers = {"Accept": "application/json", "User-Agent": "checkin-bot"}
    if settings.virtualq_auth_header and settings.virtualq_auth_value:
        headers[settings.virtualq_auth_header] = settings.virtualq_auth_value.get_secret_value()
    basic = None
    if settings.virtualq_username and settings.virtualq_password:
        basic = (settings.virtualq_username, settings.virtualq_password.get_secret_value())
    url = (base_url or settings.virtualq_base_url or "").rstrip("/") + "/"
    if transport is None:
        timeouts = Timeouts(
            settings.virtualq_timeout_seconds, settings.virtualq_connect_timeout_seconds
        )
        return AiohttpWire(url, headers, timeouts, basic)
    timeout = httpx.Timeout(
        settings.virtualq_timeout_seconds, connect=settings.virtualq_connect_timeout_seconds
    )
    auth = httpx.BasicAuth(*basic) if basic else None
    return HttpxWire(
        httpx.AsyncClient(
            base_url=url, headers=headers, auth=auth, timeout=timeout, transport=transport
        )
    )


def make_client(settings: Settings, http: Wire) -> VirtualQClient:
    return VirtualQClient(
        http,
        RefusalClassifier(settings.refusal_patterns),
        settings.virtualq_timeout_seconds,
        settings.virtualq_max_concurrency,
        CircuitBreaker(settings.virtualq_breaker_failures, settings.virtualq_breaker_seconds),
    )
