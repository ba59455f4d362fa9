"""The staff pages' content: the dashboard, conversations, one transcript, the texts not
understood, what needs attention, the audit log, the CSV export, as data (bot.staff.queries,
bot.staff.attention) rendered by templates."""

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
from .attention import MAX_DAYS as ATTENTION_DAYS
from .attention import REASON_LABELS, Reason, needing_attention

if TYPE_CHECKING:
    from .app import Staff

log = logging.getLogger("checkin_bot.staff")

# The lists that reload themselves (STAFF_REFRESH_SECONDS); a page with a text box never does.
REFRESHING = {"dashboard.html", "conversations.html", "unread.html", "attention.html"}
AUDIT_PAGE = 50

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
        chosen = self.days(request)
        found = await queries.dashboard(
            self.engine, chosen, now=self.staff.clock(), confirm_timeout=self.staff.timeout
        )
        needs = None
        if (chosen.last - chosen.first).days < ATTENTION_DAYS:
            listed = await needing_attention(
                self.engine,
                chosen,
                zone=self.zone,
                now=self.staff.clock(),
                confirm_timeout=self.staff.timeout,
            )
            needs = {"conversations": len(listed["conversations"]), "more": listed["more"]}
        return found | {"attention": needs}

    async def attention(self, request: Request) -> dict[str, Any]:
        asked = filters.parse(filters.AttentionFilters, request.query_params)
        chosen = queries.period(asked.first, asked.last, self.zone, self._today())
        return await needing_attention(
            self.engine,
            chosen,
            zone=self.zone,
            now=self.staff.clock(),
            confirm_timeout=self.staff.timeout,
            reason=Reason(asked.reason) if asked.reason else None,
        )

    async def audit(self, request: Request) -> dict[str, Any]:
        asked = filters.parse(filters.AuditFilters, request.query_params)
        rows = await self.staff.staff_store.audit_entries(asked.before, AUDIT_PAGE + 1)
        entries = [
            {
                "id": r.id,
                "at": r.at.astimezone(self.zone).isoformat(timespec="seconds"),
                "account": r.account,
                "action": r.action,
                "target": r.target,
                "detail": r.detail,
            }
            for r in rows[:AUDIT_PAGE]
        ]
        return {
            "entries": entries,
            "next": entries[-1]["id"] if len(rows) > AUDIT_PAGE else None,
        }

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
                reasons=REASON_LABELS,
                chart=chart,
                phone_chart=hour_bars(found["arrivals_by_hour"], 360, 200) if chart else None,
                refresh=self.staff.settings.staff_refresh_seconds if template in REFRESHING else 0,
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
