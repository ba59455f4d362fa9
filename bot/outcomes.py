"""What became of a conversation, for staff: one outcome per thread, advanced by each reply.

A thread is one visit's texts from one phone (see store.THREAD_GAP). Its outcome starts as
OTHER and moves with the replies the bot sends; once the customer has a ticket it stays
CHECKED_IN (or CONFIRMED), whatever they text afterwards. Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


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
    ThreadOutcome.OTHER: "Other (no check-in)",
}

TICKETED = frozenset({ThreadOutcome.CHECKED_IN, ThreadOutcome.CONFIRMED})

_BY_PROMPT: dict[str, ThreadOutcome] = {
    "already_checked_in": ThreadOutcome.ALREADY_CHECKED_IN,
    "confirm_early": ThreadOutcome.ASKED,
    "confirm_late": ThreadOutcome.ASKED,
    "confirm_prevent_auto_queue": ThreadOutcome.ASKED,
    "declined": ThreadOutcome.DECLINED,
    "confirm_expired": ThreadOutcome.EXPIRED,
    "see_reception_prevent_auto_queue": ThreadOutcome.PREVENT_AUTO_QUEUE,
    "unknown_number": ThreadOutcome.UNKNOWN_NUMBER,
    "no_appointment": ThreadOutcome.NO_APPOINTMENT,
    "booking_number_not_found": ThreadOutcome.NO_APPOINTMENT,
    "upstream_unavailable": ThreadOutcome.UPSTREAM_FAILURE,
    "checkin_not_done": ThreadOutcome.UPSTREAM_FAILURE,
    "checkin_unconfirmed": ThreadOutcome.UPSTREAM_FAILURE,
    "holding_see_reception": ThreadOutcome.UPSTREAM_FAILURE,
}


def advance(current: ThreadOutcome, prompt: str | None, opted_out: bool) -> ThreadOutcome:
    """The thread's outcome after the bot answered with `prompt` (None: silence);
    `opted_out` when this message opted the phone out."""
    if current in TICKETED:
        return current
    if prompt is not None and prompt.startswith("checked_in"):
        return (
            ThreadOutcome.CONFIRMED if current is ThreadOutcome.ASKED else ThreadOutcome.CHECKED_IN
        )
    if opted_out:
        return ThreadOutcome.OPTED_OUT
    if prompt is None:
        return current
    return _BY_PROMPT.get(prompt, current)


def shown(outcome: str, last_at: datetime, now: datetime, confirm_timeout: timedelta) -> str:
    """The outcome staff see: an open question nobody answered in time has expired."""
    if outcome == ThreadOutcome.ASKED and now - last_at >= confirm_timeout:
        return ThreadOutcome.EXPIRED.value
    return outcome
