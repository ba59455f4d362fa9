"""The staff pages' content: the dashboard, conversations, one transcript, the texts not
understood, the CSV export, as data (bot.staff.queries) rendered by templates."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import BadFilter
from ..threads import LABELS
from . import filters, queries

if TYPE_CHECKING:
    from .app import Staff

log = logging.getLogger("checkin_bot.staff")

Read = Callable[[Request], Awaitable[dict[str, Any] | None]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _day(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%a %d %b %Y")


def _when(iso: str | None, with_day: bool = True) -> str:
    if not iso:
        return "–"
    at = datetime.fromisoformat(iso)
    return at.strftime("%a %d %b %H:%M:%S" if with_day else "%H:%M:%S")


def _pretty(value: Any) -> str:
    """A raw VirtualQ response indented when it is JSON, else as it came."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("bot", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=_duration, when=_when, day=_day, pretty=_pretty, urlencode=urlencode
    )
    return env


def hour_bars(hours: list[int], width: int = 720, height: int = 160) -> dict[str, Any]:
    """Arrivals per hour as SVG bar geometry (drawn server-side: no script, no library)."""
    top = max(hours) or 1
    step = width / 24
    axis, headroom = 20, 16  # room for the hour labels below and the counts above
    scale = (height - axis - headroom) / top
    bars = [
        {
            "x": round(i * step + 2, 1),
            "width": round(step - 4, 1),
            "height": round(n * scale, 1),
            "y": round(height - axis - n * scale, 1),
            "count": n,
            "hour": i,
        }
        for i, n in enumerate(hours)
    ]
    return {"bars": bars, "width": width, "height": height, "top": top}


class Pages:
    """What staff read: each page a function of the request's (validated) parameters, served
    as HTML and as its .json twin."""

    def __init__(self, staff: Staff) -> None:
        self.staff = staff
        self.engine = staff.store.engine
        self.zone = staff.zone

    def _today(self) -> date:
        return queries.local_today(self.zone, self.staff.clock())

    def days(self, request: Request) -> queries.Period:
        asked = filters.parse(filters.Days, request.query_params)
        return queries.period(asked.first, asked.last, self.zone, self._today())

    async def dashboard(self, request: Request) -> dict[str, Any]:
        return await queries.dashboard(
            self.engine,
            self.days(request),
            now=self.staff.clock(),
            confirm_timeout=self.staff.timeout,
        )

    async def not_understood(self, request: Request) -> dict[str, Any]:
        return await queries.not_understood(self.engine, self.days(request))

    async def conversations(self, request: Request) -> dict[str, Any]:
        asked = filters.parse(filters.ListFilters, request.query_params)
        return await queries.conversation_list(
            self.engine,
            queries.filters(asked, self.zone, self._today()),
            before=asked.before,
            zone=self.zone,
            region=self.staff.settings.default_region,
            now=self.staff.clock(),
            confirm_timeout=self.staff.timeout,
            limit=queries.PAGE_SIZE,
        )

    async def conversation(self, request: Request) -> dict[str, Any] | None:
        path = filters.parse(filters.ThreadPath, request.path_params)
        return await queries.conversation_detail(
            self.engine,
            path.thread_id,
            zone=self.zone,
            now=self.staff.clock(),
            confirm_timeout=self.staff.timeout,
        )

    def twin(self, read: Read) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            found = await read(request)
            if found is None:
                raise BadFilter("no such conversation", 404)
            return JSONResponse(found)

        return endpoint

    def html(self, read: Read, template: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            found = await read(request)
            if found is None:
                raise BadFilter("no such conversation", 404)
            chart = hour_bars(found["arrivals_by_hour"]) if "arrivals_by_hour" in found else None
            return self.staff.render(
                request,
                template,
                data=found,
                path=request.url.path,
                query=request.url.query,
                outcomes=LABELS,
                chart=chart,
            )

        return endpoint

    async def export(self, request: Request) -> Response:
        chosen = self.days(request)
        name = f"checkin-bot-messages-{chosen.first}-to-{chosen.last}.csv"
        account = await self.staff.sessions.account(request)
        log.info(
            "CSV export of %s to %s by %s",
            chosen.first,
            chosen.last,
            account.name if account else "?",
        )
        return StreamingResponse(
            queries.messages_csv(self.engine, chosen),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
