"""Conversations a person should look at, newest first, each with why: texts never answered,
texts the bot did not understand, VirtualQ failures, replies not delivered, customers waiting
on a YES/NO, customers who asked to leave, and answers to a staff text.

Bounded: messages are read through their `created_at` index within the days asked for (a
day by default, 31 at most) and threads through (outcome, started_at); each read has a LIMIT,
and a conversation marked handled is listed again only for what happened after.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import BadFilter
from ..store.log import UNANSWERED_AFTER
from ..store.tables import attention, messages, threads
from ..threads import LABELS, ThreadOutcome, shown
from .queries import NOT_UNDERSTOOD, TWILIO_ERRORS, Period, phone_display

LIMIT = 100  # conversations a page lists
READ_LIMIT = 1000  # rows each read brings back at most
MAX_DAYS = 31
NOT_DELIVERED = {"failed": "failed", "undelivered": "not delivered", "unsent": "not sent"}


class Reason(StrEnum):
    UNANSWERED = "unanswered"
    NOT_UNDERSTOOD = "not_understood"
    UPSTREAM_FAILURE = "upstream_failure"
    UNDELIVERED = "undelivered"
    QUESTION = "question"
    LEAVE = "leave"
    STAFF_REPLY = "staff_reply"


REASON_LABELS: dict[Reason, str] = {
    Reason.UNANSWERED: "Never answered",
    Reason.NOT_UNDERSTOOD: "Not understood",
    Reason.UPSTREAM_FAILURE: "VirtualQ failure",
    Reason.UNDELIVERED: "Reply not delivered",
    Reason.QUESTION: "Waiting on a YES/NO",
    Reason.LEAVE: "Asked to leave",
    Reason.STAFF_REPLY: "Answered a staff text",
}


@dataclass(frozen=True)
class Why:
    reason: Reason
    why: str
    at: datetime
    message_id: int | None = None


# Unicode's bidirectional controls: a text that opens one (U+202E, right-to-left override)
# and never closes it reversed the page's own words after the quote (a forged time, a forged
# "read as"). A quote loses them and is isolated (U+2068 ... U+2069) from what follows.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F])


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.translate(_BIDI_CONTROLS).split())
    return f"“\u2068{text[:limit]}{'…' if len(text) > limit else ''}\u2069”"


def _check(chosen: Period) -> None:
    if (chosen.last - chosen.first).days >= MAX_DAYS:
        raise BadFilter(f"to: this page covers {MAX_DAYS} days or less")


async def needing_attention(
    engine: AsyncEngine,
    chosen: Period | None,
    *,
    zone: ZoneInfo,
    now: datetime,
    confirm_timeout: timedelta,
    reason: Reason | None = None,
    thread_id: int | None = None,
    limit: int = LIMIT,
) -> dict[str, Any]:
    """The conversations needing a person in the period (or only `thread_id`), newest
    reason first; each with its reasons, newest first, and who last marked it handled.
    `chosen` None: whatever the days, for one conversation (`thread_id`)."""
    if chosen is None and thread_id is None:
        raise ValueError("needing_attention: days, or a conversation")
    if chosen is not None:
        _check(chosen)
    found: dict[int, list[Why]] = {}

    def add(thread: int | None, why: Why) -> None:
        if thread is not None and (reason is None or why.reason is reason):
            found.setdefault(thread, []).append(why)

    m = messages.c
    earlier = messages.alias("earlier")
    # Who wrote the text this phone had last been sent before this one (None: the bot). The
    # direction is spelled as the partial index ix_messages_outbound_phone is, literally, so
    # that each is one seek in it (a bound parameter would not match the index's condition).
    last_sender = (
        sa.select(earlier.c.sent_by)
        .where(
            earlier.c.phone == m.phone,
            sa.text("earlier.direction = 'out'"),
            earlier.c.id < m.id,
        )
        .order_by(earlier.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    inbound = m.direction == "in"
    conditions = [
        sa.and_(inbound, m.handled_at.is_(None), m.created_at < now - UNANSWERED_AFTER),
        sa.and_(inbound, m.intent.in_((*NOT_UNDERSTOOD, "leave"))),
        sa.and_(m.direction == "out", m.status.in_(list(NOT_DELIVERED))),
        sa.and_(inbound, last_sender.is_not(None)),
    ]
    where: list[sa.ColumnElement[bool]] = [sa.or_(*conditions)]
    thread_where: list[sa.ColumnElement[bool]] = [
        threads.c.outcome.in_((ThreadOutcome.UPSTREAM_FAILURE.value, ThreadOutcome.ASKED.value))
    ]
    if chosen is not None:
        where += [m.created_at >= chosen.start, m.created_at < chosen.end]
        thread_where += [threads.c.started_at >= chosen.start, threads.c.started_at < chosen.end]
    if thread_id is not None:
        where.append(m.thread_id == thread_id)
        thread_where.append(threads.c.id == thread_id)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    m.id,
                    m.thread_id,
                    m.direction,
                    m.body,
                    m.intent,
                    m.status,
                    m.error_code,
                    m.handled_at,
                    m.created_at,
                    last_sender.label("staff"),
                )
                .where(*where)
                .order_by(m.created_at.desc(), m.id.desc())
                .limit(READ_LIMIT)
            )
        ).all()
        visits = (
            await conn.execute(
                sa.select(threads.c.id, threads.c.outcome, threads.c.last_at)
                .where(*thread_where)
                .order_by(threads.c.started_at.desc())
                .limit(READ_LIMIT)
            )
        ).all()
        for row in rows:
            for why in _message_reasons(row, now):
                add(row.thread_id, why)
        for visit in visits:
            if visit.outcome == ThreadOutcome.UPSTREAM_FAILURE:
                failed = "VirtualQ failed, and they were sent to reception"
                add(visit.id, Why(Reason.UPSTREAM_FAILURE, failed, visit.last_at))
            elif shown(visit.outcome, visit.last_at, now, confirm_timeout) == ThreadOutcome.ASKED:
                add(visit.id, Why(Reason.QUESTION, "waiting for their YES/NO", visit.last_at))
            else:
                expired = "never answered the bot's YES/NO question"
                add(visit.id, Why(Reason.QUESTION, expired, visit.last_at))
        handled = {
            r.thread_id: r
            for r in (
                await conn.execute(
                    sa.select(attention).where(attention.c.thread_id.in_(list(found)))
                )
            ).all()
        }
        for thread, reasons in list(found.items()):
            mark = handled.get(thread)
            kept = [w for w in reasons if mark is None or w.at > mark.handled_at]
            if kept:
                found[thread] = sorted(kept, key=lambda w: w.at, reverse=True)
            else:
                del found[thread]
        newest = sorted(found, key=lambda t: found[t][0].at, reverse=True)[:limit]
        summaries = {
            r.id: r
            for r in (await conn.execute(sa.select(threads).where(threads.c.id.in_(newest)))).all()
        }
    items = []
    for thread in newest:
        row = summaries[thread]
        outcome = shown(row.outcome, row.last_at, now, confirm_timeout)
        mark = handled.get(thread)
        items.append(
            {
                "id": thread,
                "phone": row.phone,
                "phone_display": phone_display(row.phone),
                "name": row.name,
                "ticket": row.ticket,
                "outcome": outcome,
                "outcome_label": LABELS[ThreadOutcome(outcome)],
                "last_at": _iso(found[thread][0].at, zone),
                "reasons": [
                    {
                        "reason": w.reason.value,
                        "label": REASON_LABELS[w.reason],
                        "why": w.why,
                        "at": _iso(w.at, zone),
                        "message_id": w.message_id,
                    }
                    for w in found[thread]
                ],
                "handled": (
                    {"at": _iso(mark.handled_at, zone), "by": mark.handled_by} if mark else None
                ),
            }
        )
    return {
        "period": (
            {"from": chosen.first.isoformat(), "to": chosen.last.isoformat()} if chosen else None
        ),
        "reason": reason.value if reason else None,
        "conversations": items,
        "more": len(found) > limit,
    }


def _message_reasons(row: Any, now: datetime) -> list[Why]:
    out = []
    body = row.body or "(no text)"
    if row.direction == "out":
        meaning = TWILIO_ERRORS.get(row.error_code or "")
        why = f"a text to them was {NOT_DELIVERED.get(row.status, row.status)}"
        if row.error_code:
            why += f" (error {row.error_code}{': ' + meaning if meaning else ''})"
        out.append(Why(Reason.UNDELIVERED, why, row.created_at, row.id))
        return out
    if row.handled_at is None and row.created_at < now - UNANSWERED_AFTER:
        why = f"{_quote(body)} was never answered: the process handling it stopped"
        out.append(Why(Reason.UNANSWERED, why, row.created_at, row.id))
    if row.staff is not None:
        why = f"{_quote(body)}, after {row.staff}'s text"
        out.append(Why(Reason.STAFF_REPLY, why, row.created_at, row.id))
    if row.intent == "leave":
        out.append(Why(Reason.LEAVE, f"{_quote(body)}", row.created_at, row.id))
    elif row.intent in NOT_UNDERSTOOD and row.staff is None:
        why = f"{_quote(body)}, read as {row.intent}"
        out.append(Why(Reason.NOT_UNDERSTOOD, why, row.created_at, row.id))
    return out


def _iso(value: datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat(timespec="seconds")
