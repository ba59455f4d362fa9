"""What became of each visit, for staff: one outcome per thread, advanced by each reply.

A thread is one visit's texts from one phone (see bot.store.log.THREAD_GAP); the staff pages
call it a conversation. Its outcome starts as OTHER and moves with the replies the bot sends;
once the customer has a ticket it stays CHECKED_IN (or CONFIRMED), whatever they text
afterwards. Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from .replies import TICKET_GIVEN, ReplyKey

K = ReplyKey


class ThreadOutcome(StrEnum):
    CHECKED_IN = "checked_in"
    CONFIRMED = "confirmed"  # asked (early, late, reception-only) and said YES
    ALREADY_CHECKED_IN = "already_checked_in"  # VirtualQ says they were in the queue already
    ASKED = "asked"  # a YES/NO question is open (shown as EXPIRED once it has run out)
    DECLINED = "declined"
    EXPIRED = "expired"
    PREVENT_AUTO_QUEUE = "prevent_auto_queue"
    UNKNOWN_NUMBER = "unknown_number"
    NO_APPOINTMENT = "no_appointment"
    UPSTREAM_FAILURE = "upstream_failure"
    OPTED_OUT = "opted_out"
    LEFT = "left"  # checked in, then left the queue by text (or cancelled the booking)
    OTHER = "other"  # no check-in attempted (help, status, a question…)


LABELS: dict[ThreadOutcome, str] = {
    ThreadOutcome.CHECKED_IN: "Checked in",
    ThreadOutcome.CONFIRMED: "Asked early/late, confirmed",
    ThreadOutcome.ALREADY_CHECKED_IN: "Already checked in",
    ThreadOutcome.ASKED: "Waiting for YES/NO",
    ThreadOutcome.DECLINED: "Declined",
    ThreadOutcome.EXPIRED: "Question expired",
    ThreadOutcome.PREVENT_AUTO_QUEUE: "Reception only (prevent-auto-queue)",
    ThreadOutcome.UNKNOWN_NUMBER: "Unknown number",
    ThreadOutcome.NO_APPOINTMENT: "No appointment",
    ThreadOutcome.UPSTREAM_FAILURE: "VirtualQ failure",
    ThreadOutcome.OPTED_OUT: "Opted out",
    ThreadOutcome.LEFT: "Left the queue (or cancelled)",
    ThreadOutcome.OTHER: "Other (no check-in)",
}

TICKETED = frozenset({ThreadOutcome.CHECKED_IN, ThreadOutcome.CONFIRMED})

_BY_REPLY: dict[ReplyKey, ThreadOutcome] = {
    K.ALREADY_CHECKED_IN: ThreadOutcome.ALREADY_CHECKED_IN,
    K.CONFIRM_EARLY: ThreadOutcome.ASKED,
    K.CONFIRM_LATE: ThreadOutcome.ASKED,
    K.CONFIRM_PREVENT_AUTO_QUEUE: ThreadOutcome.ASKED,
    K.DECLINED: ThreadOutcome.DECLINED,
    K.CONFIRM_EXPIRED: ThreadOutcome.EXPIRED,
    K.SEE_RECEPTION_PREVENT_AUTO_QUEUE: ThreadOutcome.PREVENT_AUTO_QUEUE,
    K.UNKNOWN_NUMBER: ThreadOutcome.UNKNOWN_NUMBER,
    K.NO_APPOINTMENT: ThreadOutcome.NO_APPOINTMENT,
    K.BOOKING_NUMBER_NOT_FOUND: ThreadOutcome.NO_APPOINTMENT,
    K.UPSTREAM_UNAVAILABLE: ThreadOutcome.UPSTREAM_FAILURE,
    K.CHECKIN_NOT_DONE: ThreadOutcome.UPSTREAM_FAILURE,
    K.CHECKIN_UNCONFIRMED: ThreadOutcome.UPSTREAM_FAILURE,
    K.HOLDING_SEE_RECEPTION: ThreadOutcome.UPSTREAM_FAILURE,
    K.CLARIFY_ARRIVAL: ThreadOutcome.ASKED,
    K.CANCEL_BOOKING_CONFIRM: ThreadOutcome.ASKED,
}
# Replies that end a visit whatever it reached, a ticket included.
_FINAL = {K.LEFT_QUEUE: ThreadOutcome.LEFT, K.BOOKING_CANCELLED: ThreadOutcome.LEFT}


def advance(current: ThreadOutcome, reply: ReplyKey | None, opted_out: bool) -> ThreadOutcome:
    """The thread's outcome after the bot answered with `reply` (None: silence);
    `opted_out` when this message opted the phone out."""
    if reply in _FINAL:
        return _FINAL[reply]
    if current in TICKETED:
        return current
    if reply in TICKET_GIVEN:
        return (
            ThreadOutcome.CONFIRMED if current is ThreadOutcome.ASKED else ThreadOutcome.CHECKED_IN
        )
    if opted_out:
        return ThreadOutcome.OPTED_OUT
    if reply is None:
        return current
    return _BY_REPLY.get(reply, current)


@functools.cache
def advancing(reply: ReplyKey | None, opted_out: bool) -> Mapping[str | None, tuple[str, bool]]:
    """`advance` as the log applies it, in the statement that updates the thread: for each
    outcome the thread may have stored, (the outcome after, whether this reply gave the thread
    its ticket); under None, for a stored value no longer known (read as OTHER). A table, not a
    function, so the database can apply it to the row as it stands, with no read before."""

    def apply(current: ThreadOutcome) -> tuple[str, bool]:
        after = advance(current, reply, opted_out)
        return after.value, after in TICKETED and current not in TICKETED

    table: dict[str | None, tuple[str, bool]] = {o.value: apply(o) for o in ThreadOutcome}
    table[None] = apply(ThreadOutcome.OTHER)
    return MappingProxyType(table)


def asked_cutoff(now: datetime, confirm_timeout: timedelta) -> datetime:
    """A thread whose last text came before this, with its question open, has seen that
    question expire (the conversation expires it CONFIRM_TIMEOUT after asking, too)."""
    return now - confirm_timeout


def shown(outcome: str, last_at: datetime, now: datetime, confirm_timeout: timedelta) -> str:
    """The outcome staff see: an open question nobody answered in time has expired."""
    if outcome == ThreadOutcome.ASKED and last_at <= asked_cutoff(now, confirm_timeout):
        return ThreadOutcome.EXPIRED.value
    return outcome
