"""What the staff pages show, as plain data: the HTML pages and their .json twins both render it.

Every query is bounded: lists are keyset-paginated on (started_at, id), searches use the
threads' indexes (a name is the one substring match), and the CSV export reads messages in
batches, so a year of a busy site costs no more per page than a day of a quiet one.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import phones
from ..errors import BadFilter
from ..store.log import UNANSWERED_AFTER
from ..store.tables import conversations, messages, notifications, threads, upstream_calls, watches
from ..threads import LABELS, ThreadOutcome, asked_cutoff, shown
from ..understanding.text import plain, words_of
from .filters import MAX_DAYS, ListFilters

PAGE_SIZE = 50
# A transcript shows a conversation's latest texts, this many at most: a phone that texted
# thousands of times in a row made a page of megabytes. The CSV export has them all.
TRANSCRIPT_LIMIT = 300
CSV_BATCH = 1000

# Twilio error codes a front desk meets, in words (the rest link to Twilio's page).
TWILIO_ERRORS = {
    "21610": "the customer had texted STOP to this number",
    "21614": "not a mobile number",
    "30003": "phone switched off or out of coverage",
    "30004": "message blocked (by the phone or the carrier)",
    "30005": "unknown or inactive number",
    "30006": "landline, or a carrier that cannot receive texts",
    "30007": "filtered by the carrier as spam",
    "30008": "unknown error at the carrier",
    "30034": "sender not registered for US A2P 10DLC",
}


@dataclass(frozen=True)
class Period:
    """Whole local days, first to last inclusive, and their UTC bounds."""

    first: date
    last: date
    zone: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(), self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), self.zone).astimezone(UTC)


def period(first: date | None, last: date | None, zone: ZoneInfo, today: date) -> Period:
    """The days asked for; a missing end is the other end, both missing is today."""
    asked_from = first is not None
    first = first or last or today
    last = last or (first if asked_from else today)
    if last < first:
        raise BadFilter("to: the last day is before the first")
    if (last - first).days > MAX_DAYS:
        raise BadFilter("to: ask for ten years or less")
    return Period(first, last, zone)


def local_today(zone: ZoneInfo, now: datetime) -> date:
    return now.astimezone(zone).date()


def _iso(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat(timespec="seconds") if value else None


def phone_display(phone: str) -> str:
    """A number as the front desk says it (national format), or a sender id as it came."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return phone
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))


def _percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    return values[max(0, math.ceil(fraction * len(values)) - 1)]


# --- conversations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    q: str = ""
    outcome: str = ""
    period: Period | None = None

    def query(self) -> dict[str, str]:
        """The filters as URL parameters (for links to the next page and the twins)."""
        out = {"q": self.q, "outcome": self.outcome}
        if self.period:
            out |= {"from": self.period.first.isoformat(), "to": self.period.last.isoformat()}
        return {k: v for k, v in out.items() if v}


def filters(asked: ListFilters, zone: ZoneInfo, today: date) -> Filters:
    chosen = None
    if asked.first or asked.last:
        chosen = period(asked.first, asked.last, zone, today)
    return Filters(asked.q, asked.outcome, chosen)


def _search(q: str, region: str) -> sa.ColumnElement[bool]:
    """Threads matching a search box entry: a phone in any format, a PersonalId, a ticket or
    part of a name. All but the name use an index."""
    found: list[sa.ColumnElement[bool]] = [
        threads.c.phone == phones.sender_key(q, region),
        threads.c.personal_id == q,
        threads.c.ticket.in_(sorted({q, q.upper()})),
    ]
    if sum(c.isalpha() for c in q) >= 2:
        pattern = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found.append(sa.func.lower(threads.c.name).like(pattern + "%", escape="\\"))
    return sa.or_(*found)


def _outcome_is(outcome: str, cutoff: datetime) -> sa.ColumnElement[bool]:
    """Threads whose shown outcome is `outcome` (an open question past `cutoff` has expired)."""
    if outcome == ThreadOutcome.EXPIRED:
        return sa.or_(
            threads.c.outcome == outcome,
            sa.and_(threads.c.outcome == ThreadOutcome.ASKED, threads.c.last_at <= cutoff),
        )
    if outcome == ThreadOutcome.ASKED:
        return sa.and_(threads.c.outcome == outcome, threads.c.last_at > cutoff)
    return threads.c.outcome == outcome


def _thread_item(row: Any, zone: ZoneInfo, now: datetime, timeout: timedelta) -> dict[str, Any]:
    outcome = shown(row.outcome, row.last_at, now, timeout)
    return {
        "id": row.id,
        "phone": row.phone,
        "phone_display": phone_display(row.phone),
        "started_at": _iso(row.started_at, zone),
        "last_at": _iso(row.last_at, zone),
        "outcome": outcome,
        "outcome_label": LABELS[ThreadOutcome(outcome)],
        "personal_id": row.personal_id,
        "name": row.name,
        "ticket": row.ticket,
        "messages": row.message_count,
    }


async def conversation_list(
    engine: AsyncEngine,
    chosen: Filters,
    *,
    before: int | None,
    zone: ZoneInfo,
    region: str,
    now: datetime,
    confirm_timeout: timedelta,
    limit: int = PAGE_SIZE,
) -> dict[str, Any]:
    """One page of threads, newest first; `next` is the cursor for the page after."""
    where: list[sa.ColumnElement[bool]] = []
    if chosen.q:
        where.append(_search(chosen.q, region))
    if chosen.outcome:
        where.append(_outcome_is(chosen.outcome, asked_cutoff(now, confirm_timeout)))
    if chosen.period:
        where += [
            threads.c.started_at >= chosen.period.start,
            threads.c.started_at < chosen.period.end,
        ]
    async with engine.connect() as conn:
        if before is not None:
            started = await conn.scalar(
                sa.select(threads.c.started_at).where(threads.c.id == before)
            )
            if started is None:
                raise BadFilter("before: no such conversation")
            where.append(sa.tuple_(threads.c.started_at, threads.c.id) < (started, before))
        rows = (
            await conn.execute(
                sa.select(threads)
                .where(*where)
                .order_by(threads.c.started_at.desc(), threads.c.id.desc())
                .limit(limit + 1)
            )
        ).all()
    items = [_thread_item(r, zone, now, confirm_timeout) for r in rows[:limit]]
    return {
        "filters": chosen.query(),
        "conversations": items,
        "next": items[-1]["id"] if len(rows) > limit else None,
    }


async def conversation_detail(
    engine: AsyncEngine,
    thread_id: int,
    *,
    zone: ZoneInfo,
    now: datetime,
    confirm_timeout: timedelta,
) -> dict[str, Any] | None:
    """A thread's transcript: every message with its state change, upstream calls and
    delivery status; None when there is no such thread."""
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(threads).where(threads.c.id == thread_id))).first()
        if row is None:
            return None
        texts = (
            await conn.execute(
                sa.select(messages)
                .where(messages.c.thread_id == thread_id)
                .order_by(messages.c.id.desc())
                .limit(TRANSCRIPT_LIMIT)
            )
        ).all()[::-1]
        earlier = 0
        if len(texts) == TRANSCRIPT_LIMIT:
            earlier = (
                await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(messages)
                    .where(messages.c.thread_id == thread_id, messages.c.id < texts[0].id)
                )
            ) or 0
        calls = (
            await conn.execute(
                sa.select(upstream_calls)
                .join(messages, messages.c.id == upstream_calls.c.message_id)
                .where(
                    messages.c.thread_id == thread_id,
                    messages.c.id >= (texts[0].id if texts else 0),
                )
                .order_by(upstream_calls.c.id)
            )
        ).all()
        others = (
            await conn.execute(
                sa.select(threads)
                .where(threads.c.phone == row.phone, threads.c.id != thread_id)
                .order_by(threads.c.started_at.desc(), threads.c.id.desc())
                .limit(10)
            )
        ).all()
        state = (
            await conn.execute(
                sa.select(
                    conversations.c.state, conversations.c.updated_at, conversations.c.language
                ).where(conversations.c.phone == row.phone)
            )
        ).first()
        # Texts queued for this conversation that are not in its messages (yet, or ever).
        pending = (
            await conn.execute(
                sa.select(
                    notifications.c.kind,
                    notifications.c.body,
                    notifications.c.account,
                    notifications.c.status,
                    notifications.c.error,
                    notifications.c.created_at,
                )
                .where(
                    notifications.c.thread_id == thread_id,
                    notifications.c.message_id.is_(None),
                )
                .order_by(notifications.c.id)
                .limit(50)
            )
        ).all()
    by_message: dict[int, list[dict[str, Any]]] = {}
    for call in calls:
        by_message.setdefault(call.message_id, []).append(
            {
                "operation": call.operation,
                "request": call.request,
                "status": call.status,
                "latency_ms": call.latency_ms,
                "outcome": call.outcome,
                "error": call.error,
                "response": call.response,
                "at": _iso(call.created_at, zone),
            }
        )
    thread = _thread_item(row, zone, now, confirm_timeout) | {
        "case_id": row.case_id,
        "ticket_at": _iso(row.ticket_at, zone),
        "seconds_to_ticket": (
            round((row.ticket_at - row.started_at).total_seconds()) if row.ticket_at else None
        ),
    }
    return {
        "conversation": thread,
        "state_now": (
            {
                "state": state.state,
                "since": _iso(state.updated_at, zone),
                "language": state.language,
            }
            if state
            else None
        ),
        "messages": [_message(m, by_message.get(m.id, []), zone, now) for m in texts],
        "earlier_messages": earlier,  # not shown (TRANSCRIPT_LIMIT)
        "not_sent": [
            {
                "kind": p.kind,
                "body": p.body,
                "sent_by": p.account,
                "status": p.status,
                "error": p.error,
                "at": _iso(p.created_at, zone),
            }
            for p in pending
        ],
        "other_conversations": [_thread_item(o, zone, now, confirm_timeout) for o in others],
    }


def _message(m: Any, calls: list[dict[str, Any]], zone: ZoneInfo, now: datetime) -> dict[str, Any]:
    unanswered = (
        m.direction == "in" and m.handled_at is None and now - m.created_at > UNANSWERED_AFTER
    )
    return {
        "id": m.id,
        "direction": m.direction,
        "at": _iso(m.created_at, zone),
        "body": m.body,
        "media": m.num_media,
        "intent": m.intent,
        "understood": m.understood,
        "language": m.language,
        "prompt": m.prompt,
        "state_before": m.state_before,
        "state_after": m.state_after,
        "reply_to": m.reply_to,
        "sent_by": m.sent_by,
        "segments": m.segments,
        "message_sid": m.message_sid,
        "status": m.status,
        "error_code": m.error_code,
        "error_meaning": TWILIO_ERRORS.get(m.error_code or ""),
        "unanswered": unanswered,
        "upstream_calls": calls,
    }


def plain_words(text: str) -> list[str]:
    return words_of(plain(text))


# --- texts the bot did not understand ------------------------------------------------------------

NOT_UNDERSTOOD = ("unknown", "unsure", "question")  # read as nothing, a maybe, or a question


async def not_understood(
    engine: AsyncEngine, chosen: Period, *, limit: int = 100
) -> dict[str, Any]:
    """Texts the bot read as nothing it knows (or had to ask about, or could not answer),
    grouped by their words, most frequent first: phrases a deployer may add to prompts/."""
    where = [
        messages.c.direction == "in",
        messages.c.intent.in_(NOT_UNDERSTOOD),
        messages.c.created_at >= chosen.start,
        messages.c.created_at < chosen.end,
    ]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    messages.c.body,
                    messages.c.intent,
                    messages.c.language,
                    messages.c.thread_id,
                    messages.c.created_at,
                )
                .where(*where)
                .order_by(messages.c.created_at.desc())
                .limit(5000)
            )
        ).all()
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = " ".join(plain_words(row.body))
        group = groups.setdefault(
            key,
            {
                "text": row.body,
                "read_as": row.intent,
                "language": row.language,
                "count": 0,
                "last_at": _iso(row.created_at, chosen.zone),
                "conversation": row.thread_id,
            },
        )
        group["count"] += 1
    ranked = sorted(groups.values(), key=lambda g: g["last_at"] or "", reverse=True)
    ranked.sort(key=lambda g: -g["count"])  # most frequent first; the latest first among equals
    return {
        "period": {"from": chosen.first.isoformat(), "to": chosen.last.isoformat()},
        "texts": ranked[:limit],
        "total": len(rows),
    }


# --- dashboard ----------------------------------------------------------------------------------


def _is_upstream_error(outcome: str) -> bool:
    return outcome != "ok" and not outcome.startswith("refused")


async def dashboard(
    engine: AsyncEngine, chosen: Period, *, now: datetime, confirm_timeout: timedelta
) -> dict[str, Any]:
    """Counts by outcome, time to ticket, VirtualQ's health and arrivals per hour."""
    in_period = sa.and_(threads.c.started_at >= chosen.start, threads.c.started_at < chosen.end)
    shown_outcome = sa.case(
        (
            sa.and_(
                threads.c.outcome == ThreadOutcome.ASKED,
                threads.c.last_at <= asked_cutoff(now, confirm_timeout),
            ),
            ThreadOutcome.EXPIRED.value,
        ),
        else_=threads.c.outcome,
    )
    calls_in_period = sa.and_(
        upstream_calls.c.created_at >= chosen.start, upstream_calls.c.created_at < chosen.end
    )
    texts_in_period = sa.and_(
        messages.c.created_at >= chosen.start, messages.c.created_at < chosen.end
    )
    async with engine.connect() as conn:
        by_outcome: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.select(shown_outcome, sa.func.count())
                    .where(in_period)
                    .group_by(shown_outcome)
                )
            ).all()
        )
        starts = (await conn.execute(sa.select(threads.c.started_at).where(in_period))).scalars()
        hours = [0] * 24
        for started in starts:
            hours[started.astimezone(chosen.zone).hour] += 1
        ticketed = (
            await conn.execute(
                sa.select(threads.c.started_at, threads.c.ticket_at).where(
                    in_period, threads.c.ticket_at.is_not(None)
                )
            )
        ).all()
        calls = (
            await conn.execute(
                sa.select(upstream_calls.c.outcome, upstream_calls.c.latency_ms).where(
                    calls_in_period
                )
            )
        ).all()

        def counted(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0)), 0)

        inbound, outbound = messages.c.direction == "in", messages.c.direction == "out"
        texts = (
            await conn.execute(  # one pass over the period's messages for all four counts
                sa.select(
                    counted(inbound),
                    counted(outbound),
                    counted(
                        inbound,
                        messages.c.handled_at.is_(None),
                        messages.c.created_at < now - UNANSWERED_AFTER,
                    ),
                    counted(outbound, messages.c.status.in_(("failed", "undelivered", "unsent"))),
                    counted(inbound, messages.c.intent.in_(NOT_UNDERSTOOD)),
                ).where(texts_in_period)
            )
        ).one()
        sent_in_period = sa.and_(
            notifications.c.created_at >= chosen.start, notifications.c.created_at < chosen.end
        )
        by_kind = (
            await conn.execute(
                sa.select(notifications.c.kind, notifications.c.status, sa.func.count())
                .where(sent_in_period)
                .group_by(notifications.c.kind, notifications.c.status)
            )
        ).all()
        served = (
            await conn.execute(
                sa.select(watches.c.called_at, watches.c.done_at).where(
                    watches.c.called_at >= chosen.start,
                    watches.c.called_at < chosen.end,
                    watches.c.outcome == "served",
                )
            )
        ).all()
    waits = sorted((t.ticket_at - t.started_at).total_seconds() for t in ticketed)
    to_served = sorted((w.done_at - w.called_at).total_seconds() for w in served)
    latencies = sorted(float(c.latency_ms) for c in calls if c.outcome != "circuit_open")
    errors = sum(_is_upstream_error(c.outcome) for c in calls)
    return {
        "period": {"from": chosen.first.isoformat(), "to": chosen.last.isoformat()},
        "conversations": sum(by_outcome.values()),
        "outcomes": [
            {"outcome": o.value, "label": LABELS[o], "count": int(by_outcome.get(o.value, 0))}
            for o in ThreadOutcome
            if o is not ThreadOutcome.ASKED or by_outcome.get(o.value)
        ],
        "seconds_to_ticket": {
            "count": len(waits),
            "median": statistics.median(waits) if waits else None,
            "p95": _percentile(waits, 0.95),
        },
        "upstream": {
            "calls": len(calls),
            "errors": errors,
            "error_rate": errors / len(calls) if calls else None,
            "latency_ms_median": statistics.median(latencies) if latencies else None,
            "latency_ms_p95": _percentile(latencies, 0.95),
        },
        "texts": {
            "in": int(texts[0]),
            "out": int(texts[1]),
            "unanswered": int(texts[2]),
            "undelivered": int(texts[3]),
            "not_understood": int(texts[4]),
        },
        "arrivals_by_hour": hours,
        "notifications": _notification_counts(by_kind)
        | {
            "called_to_served": {
                "count": len(to_served),
                "median": statistics.median(to_served) if to_served else None,
            }
        },
    }


NOTIFICATION_KINDS = ("almost", "called", "missed", "staff", "broadcast")


def _notification_counts(rows: Sequence[Any]) -> dict[str, Any]:
    """Texts the bot sent on its own, by kind: how many went out, and how many did not
    (stale, skipped after STOP, refused by Twilio, lost with a stopped process)."""
    counts = {kind: {"sent": 0, "not_sent": 0, "waiting": 0} for kind in NOTIFICATION_KINDS}
    for kind, status, count in rows:
        bucket = counts.setdefault(kind, {"sent": 0, "not_sent": 0, "waiting": 0})
        column = {"sent": "sent", "queued": "waiting", "sending": "waiting"}.get(status, "not_sent")
        bucket[column] += int(count)
    return {"by_kind": counts}


# --- CSV export ---------------------------------------------------------------------------------

CSV_COLUMNS = (
    "time",
    "conversation",
    "phone",
    "direction",
    "body",
    "intent",
    "reply_key",
    "state_before",
    "state_after",
    "status",
    "error_code",
    "message_sid",
)


_CSV_SOURCE = (
    "id",
    "created_at",
    "thread_id",
    "phone",
    "direction",
    "body",
    "intent",
    "prompt",
    "state_before",
    "state_after",
    "status",
    "error_code",
    "message_sid",
)


# A formula's first character after a list separator other than the comma (a spreadsheet set
# to a region whose separator is ";" splits "no;=1+1" into a text and a formula).
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;\t|]\s*)([=+\-@])")


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text: a customer can text '=HYPERLINK(…)', or
    'no;=1+1' (each part after a ';' is a cell where ';' separates them)."""
    text = "" if value is None else str(value)
    text = _FORMULA_AFTER_SEPARATOR.sub(r"\1'\2", text)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not phones.is_e164(text):
        return "'" + text
    return text


async def messages_csv(engine: AsyncEngine, chosen: Period) -> AsyncIterator[str]:
    """Every message in the period as CSV, oldest first, read CSV_BATCH rows at a time."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue()
    cursor: tuple[datetime, int] | None = None
    while True:
        where = [messages.c.created_at >= chosen.start, messages.c.created_at < chosen.end]
        if cursor is not None:
            where.append(sa.tuple_(messages.c.created_at, messages.c.id) > cursor)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(*(messages.c[name] for name in _CSV_SOURCE))
                    .where(*where)
                    .order_by(messages.c.created_at, messages.c.id)
                    .limit(CSV_BATCH)
                )
            ).all()
        if not rows:
            return
        out.seek(0)
        out.truncate()
        for m in rows:
            writer.writerow(
                _cell(v)
                for v in (
                    _iso(m.created_at, chosen.zone),
                    m.thread_id,
                    m.phone,
                    m.direction,
                    m.body,
                    m.intent,
                    m.prompt,
                    m.state_before,
                    m.state_after,
                    m.status,
                    m.error_code,
                    m.message_sid,
                )
            )
        yield out.getvalue()
        cursor = (rows[-1].created_at, rows[-1].id)
