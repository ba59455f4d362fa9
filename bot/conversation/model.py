"""What a conversation is made of: its states and data, what a step decides (a `Decision`:
the next state, a reply, perhaps an upstream `Action`), and the classified `Result`s of those
actions. Pure data, and the small helpers that build decisions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..errors import Refusal
from ..replies import ReplyKey


class State(StrEnum):
    IDLE = "idle"
    AWAITING_ARRIVAL = "awaiting_arrival"  # "are you here now?"
    AWAITING_CONFIRM = "awaiting_confirm"  # early/late: check in anyway?
    AWAITING_IDENTIFIER = "awaiting_identifier"  # an unknown number asked for a booking number
    AWAITING_CHOICE = "awaiting_choice"  # one phone, several customers: who?
    AWAITING_LEAVE = "awaiting_leave"  # leave the queue (or cancel the booking)?
    CHECKED_IN = "checked_in"
    OPTED_OUT = "opted_out"


QUESTIONS = frozenset(
    {
        State.AWAITING_ARRIVAL,
        State.AWAITING_CONFIRM,
        State.AWAITING_IDENTIFIER,
        State.AWAITING_CHOICE,
        State.AWAITING_LEAVE,
    }
)


@dataclass(frozen=True)
class Candidate:
    """A customer a phone number may belong to."""

    personal_id: str
    name: str | None = None
    language: str | None = None  # from the directory, if it says

    @property
    def first_name(self) -> str | None:
        return self.name.split()[0] if self.name and self.name.split() else None


@dataclass(frozen=True)
class Policy:
    confirm_timeout: timedelta = timedelta(minutes=10)
    checked_in_memory: timedelta = timedelta(hours=12)
    force_prevent_auto_queue: bool = False
    booking_number_fallback: bool = False
    booking_number_digits: tuple[int, int] = (3, 10)
    allow_cancel_booking: bool = False


@dataclass(frozen=True)
class Context:
    """What a step may know besides the conversation: the time, who the phone is, the policy."""

    now: datetime
    candidates: tuple[Candidate, ...] = ()
    policy: Policy = field(default_factory=Policy)


@dataclass(frozen=True)
class Target:
    """Whose appointment to check in: a PersonalId (their next one today) or a booking number."""

    personal_id: str | None = None
    case_id: int | None = None
    name: str | None = None  # for replies, when the phone is shared

    def to_data(self) -> dict[str, Any]:
        return {"personal_id": self.personal_id, "case_id": self.case_id, "name": self.name}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Target:
        return cls(data.get("personal_id"), data.get("case_id"), data.get("name"))


@dataclass(frozen=True)
class Checkin:
    target: Target
    force: bool = False


@dataclass(frozen=True)
class GetCase:
    """Look a case up: for STATUS, or for a HERE texted again (`arrival`: if the case has
    finished, this is a new arrival)."""

    case_id: int
    arrival: bool = False


@dataclass(frozen=True)
class Reconcile:
    """Find out whether a check-in whose answer never came enqueued the customer, before
    anything else is sent: `POST Appointments/Checkin` is not idempotent."""

    target: Target
    since: str  # when the unconfirmed check-in was sent (ISO)
    arrival: bool = False  # the text was a HERE: check in now if nothing was enqueued


@dataclass(frozen=True)
class CancelCase:
    """Take a case out of the queue (the customer left), or cancel a booking nobody has
    checked in yet (`booking`)."""

    case_id: int
    booking: bool = False


Action = Checkin | GetCase | Reconcile | CancelCase


@dataclass(frozen=True)
class CaseView:
    """The parts of a VirtualQ case a reply needs."""

    case_id: int
    ticket: str
    position: int | None  # 0-based, as VirtualQ's QueuePosition
    wait: int | None  # minutes
    active: bool = True
    language: str | None = None  # VirtualQ's LanguageCode for the customer
    unit_id: int | None = None  # whose waiting list it is in (for notifications)
    service: str | None = None


@dataclass(frozen=True)
class Unavailable:
    cause: str


@dataclass(frozen=True)
class Unconfirmed:
    """The check-in reached VirtualQ but its answer did not reach us: it may have enqueued."""

    cause: str


@dataclass(frozen=True)
class NotEnqueued:
    """A look-up shows the unconfirmed check-in enqueued nothing."""


@dataclass(frozen=True)
class Done:
    """VirtualQ did what was asked (a case cancelled)."""


Result = CaseView | Refusal | Unavailable | Unconfirmed | NotEnqueued | Done

UNCONFIRMED = "unconfirmed"  # conversation data: a check-in whose outcome is not known yet


@dataclass(frozen=True)
class Reply:
    key: ReplyKey
    values: Mapping[str, object] = field(default_factory=dict)
    choices: tuple[str, ...] | None = None  # names, for the choose texts
    everyone: bool = False  # a choose text offers "N for everyone"
    lines: tuple[tuple[ReplyKey, Mapping[str, object]], ...] = ()  # several people's status


@dataclass(frozen=True)
class Conversation:
    state: State = State.IDLE
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What a step decided: the next state and its data, the reply (None: silence) and an
    upstream action to perform first (its result goes to `resume`, with this decision).
    `language`: a language the customer asked for, to reply in from now on."""

    state: State
    data: Mapping[str, Any]
    reply: Reply | None
    action: Action | None = None
    language: str | None = None


# --- the people checked in from a phone -------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """One person checked in: their case and ticket, whom it was for, since when."""

    case_id: int
    ticket: str
    target: Target
    at: str  # ISO time of the check-in

    def to_data(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "ticket": self.ticket,
            "target": self.target.to_data(),
            "at": self.at,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Visit:
        return cls(
            int(data["case_id"]),
            str(data.get("ticket") or ""),
            Target.from_data(data.get("target") or {}),
            str(data.get("at") or ""),
        )


def visits(data: Mapping[str, Any]) -> list[Visit]:
    """The people checked in, from a checked_in conversation's data (older releases kept one
    person's case_id/ticket/target/at at the top level)."""
    if isinstance(data.get("people"), list):
        return [Visit.from_data(p) for p in data["people"] if isinstance(p, Mapping)]
    if data.get("case_id") is not None:
        return [Visit.from_data(data)]
    return []


def checked_in(people: Sequence[Visit]) -> dict[str, Any]:
    """A checked_in conversation's data (the top-level fields kept for staff and the log)."""
    first = people[0]
    return {
        "people": [p.to_data() for p in people],
        "case_id": first.case_id,
        "ticket": first.ticket,
        "target": first.target.to_data(),
        "at": first.at,
    }


# --- building decisions ------------------------------------------------------------------------


def unconfirmed(conv: Conversation, ctx: Context) -> tuple[Target, str] | None:
    """The check-in of this visit whose outcome is still unknown, if any (forgotten after
    CHECKED_IN_MEMORY_HOURS, like a check-in)."""
    pending = conv.data.get(UNCONFIRMED)
    if not isinstance(pending, Mapping) or not isinstance(pending.get("at"), str):
        return None
    if ctx.now - datetime.fromisoformat(pending["at"]) > ctx.policy.checked_in_memory:
        return None
    return Target.from_data(pending.get("target") or {}), pending["at"]


def unconfirmed_data(target: Target, since: str) -> dict[str, Any]:
    """Conversation data recording a check-in whose outcome is unknown (see `unconfirmed`)."""
    return {UNCONFIRMED: {"target": target.to_data(), "at": since}}


def say(state: State, key: ReplyKey, data: Mapping[str, Any] | None = None) -> Decision:
    return Decision(state, data or {}, Reply(key))


def expiry(ctx: Context) -> str:
    return (ctx.now + ctx.policy.confirm_timeout).isoformat()


def expired(data: Mapping[str, Any], now: datetime) -> bool:
    expires = data.get("expires_at")
    return isinstance(expires, str) and now >= datetime.fromisoformat(expires)
