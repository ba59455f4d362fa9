"""Stand-ins for the bot's two upstreams, for reliability tests: the VirtualQ simulator behind
a switch that breaks `POST Appointments/Checkin` on demand, and Twilio's Messages API.

In-process tests wrap them in an httpx transport or serve them with uvicorn in the test's loop;
the fault suite runs them as a process: `python -m tests.faulty --port P`. Control:

    POST /_fault {"kind": "delay", "seconds": 9}    break check-ins (see FAULTS); "none" mends
    POST /_fault {"down": true}                      every VirtualQ route answers 503
    GET  /_fault                                     check-in requests received, enqueued, texts
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.simulator import Case, Customer, Simulator, create_simulator_app, load_demo

ARRIVALS = 40  # extra customers due in five minutes: one fresh customer per fault scenario

# What each fault answers to a check-in, and whether VirtualQ enqueued the customer first.
FAULTS: dict[str, tuple[bool, int, dict[str, str], str]] = {
    # kind: (enqueued first, status, headers, body)
    "500": (False, 500, {}, '{"Message":"An error has occurred."}'),
    "500_after_enqueue": (True, 500, {}, '{"Message":"An error has occurred."}'),
    "502_html": (
        False,
        502,
        {"content-type": "text/html"},
        "<html><h1>502 Bad Gateway</h1></html>",
    ),
    "503_retry_after": (False, 503, {"retry-after": "120"}, "Service Unavailable"),
    "malformed_json": (True, 200, {"content-type": "application/json"}, '{"CaseId": 7, "Tick'),
    "no_ticket": (True, 200, {}, ""),  # the real case, without its Ticket
    "401": (False, 401, {}, '{"Message":"Authorization has been denied for this request."}'),
    "hang": (False, 0, {}, ""),  # never answers (for `seconds`), enqueues nothing
    "delay": (True, 0, {}, ""),  # enqueues, then answers normally after `seconds`
}


@dataclass
class Fault:
    kind: str = "none"
    seconds: float = 0.0


@dataclass
class Texts:
    """Twilio's Messages API, as far as the bot uses it: every text it was asked to send."""

    sent: list[dict[str, str]] = field(default_factory=list)
    refuse_with: int | None = None  # a Twilio error code to answer with instead (HTTP 400)
    busy: int = 0  # answer this many sends with 429 (too many requests) first
    tries: int = 0  # sends asked for, taken or not
    _sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def create(self, request: Request) -> Response:
        # Parsed here rather than with request.form(), which needs python-multipart.
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        form["_auth"] = request.headers.get("authorization", "")
        form["_account"] = request.path_params["account"]
        self.tries += 1
        if self.busy > 0:
            self.busy -= 1
            body = {"code": 20429, "message": "Too Many Requests", "status": 429}
            return JSONResponse(body, status_code=429)
        if self.refuse_with is not None:
            body = {"code": self.refuse_with, "message": "refused", "status": 400}
            return JSONResponse(body, status_code=400)
        self.sent.append(form)
        sid = f"SMf{next(self._sids):031d}"  # unlike the tests' inbound MessageSids
        body = {"sid": sid, "status": "queued", "to": form.get("To"), "body": form.get("Body")}
        return JSONResponse(body, status_code=201)


class FaultyUpstream:
    """ASGI: the simulator, with check-ins broken as `fault` says, and the Messages API."""

    def __init__(self, sim: Simulator | None = None) -> None:
        self.sim = sim or load_demo(Simulator())
        self.fault = Fault()
        self.requests = 0  # check-in requests received, whatever became of them
        self.texts = Texts()
        self.down = False  # every VirtualQ route answers 503 (the Messages API still works)
        self._sim_app = create_simulator_app(self.sim)
        self.app = Starlette(
            routes=[
                Route("/_fault", self._control, methods=["GET", "POST"]),
                Route("/Appointments/Checkin", self._checkin, methods=["POST"]),
                Route(
                    "/2010-04-01/Accounts/{account}/Messages.json",
                    self.texts.create,
                    methods=["POST"],
                ),
                Mount("/", app=self._sim_app),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if self.down and scope["type"] == "http" and not path.startswith(("/_", "/2010-04-01/")):
            await Response("Service Unavailable", status_code=503)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _control(self, request: Request) -> Response:
        if request.method == "POST":
            wanted = json.loads(await request.body() or b"{}")
            kind = wanted.get("kind", "none")
            if kind != "none" and kind not in FAULTS:
                return JSONResponse({"error": f"unknown fault {kind}"}, status_code=400)
            self.fault = Fault(kind, float(wanted.get("seconds", 0)))
            self.down = bool(wanted.get("down", False))
            self.texts.refuse_with = wanted.get("twilio_refuses")
        return JSONResponse(
            {
                "fault": self.fault.kind,
                "requests": self.requests,
                "checkins": self.sim.checkins,
                "texts": self.texts.sent,
            }
        )

    async def _checkin(self, request: Request) -> Response:
        self.requests += 1
        kind = self.fault.kind
        if kind == "none":
            return await self._simulated(request)
        enqueue, status, headers, body = FAULTS[kind]
        answer = await self._simulated(request) if enqueue else None
        if kind in ("hang", "delay"):
            await asyncio.sleep(self.fault.seconds)
            return answer or Response(status_code=504)
        if kind == "no_ticket":
            case = json.loads(answer.body) if answer and answer.status_code == 200 else {}
            case.pop("Ticket", None)
            return JSONResponse(case)
        return Response(body, status_code=status, headers=headers)

    async def _simulated(self, request: Request) -> Response:
        """The simulator's own answer to this check-in."""
        body = await request.body()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        parts: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                parts["status"], parts["headers"] = message["status"], message["headers"]
            elif message["type"] == "http.response.body":
                parts["body"] += message.get("body", b"")

        await self._sim_app(request.scope, receive, send)
        return Response(parts["body"], status_code=parts["status"], media_type="application/json")


def add_arrivals(sim: Simulator, count: int = ARRIVALS) -> list[tuple[str, str, str]]:
    """`count` more customers of service 1, each due in five minutes; their directory rows
    (phone, PersonalId, name)."""
    now = sim.clock().replace(second=0, microsecond=0)
    rows = []
    for i in range(count):
        pid, phone = f"F{i + 1:03d}", f"+614915702{i:02d}"
        sim.customers[pid] = Customer(9000 + i, pid, "Fault", f"Test{i + 1}", phone)
        sim.cases[200001 + i] = Case(200001 + i, 1, pid, now + timedelta(minutes=5))
        rows.append((phone, pid, f"Fault Test{i + 1}"))
    return rows


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sim = load_demo(Simulator())
    add_arrivals(sim)
    upstream: ASGIApp = FaultyUpstream(sim)
    uvicorn.run(upstream, host="127.0.0.1", port=args.port, log_level="warning", workers=1)


if __name__ == "__main__":
    main()
