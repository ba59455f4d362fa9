"""What a conversation is made of: its states and data, what a step decides (a `Decision`:
the next state, a reply, perhaps an upstream `Action`), and the classified `Result`s of those
actions. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..errors import Refusal
from ..intents import Intent
from ..replies import ReplyKey


class State(StrEnum):
    IDLE = "idle"
    AWAITING_CONFIRM = "awaiting_confirm"
    AWAITING_IDENTIFIER = "awaiting_identifier"
    AWAITING_CHOICE = "awaiting_choice"
    CHECKED_IN = "checked_in"
    OPTED_OUT = "opted_out"


@dataclass(frozen=True)
class Candidate:
    """A customer a phone number may belong to."""

    personal_id: str
    name: str | None = None


@dataclass(frozen=True)
class Policy:
    confirm_timeout: timedelta = timedelta(minutes=10)
    checked_in_memory: timedelta = timedelta(hours=12)
    force_prevent_auto_queue: bool = False
    booking_number_fallback: bool = False


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

    def to_data(self) -> dict[str, Any]:
        return {"personal_id": self.personal_id, "case_id": self.case_id}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Target:
        return cls(personal_id=data.get("personal_id"), case_id=data.get("case_id"))


@dataclass(frozen=True)
class Checkin:
    target: Target
    force: bool = False


@dataclass(frozen=True)
class GetCase:
    case_id: int
    purpose: Intent  # ARRIVE or STATUS: what to do if the case has finished


@dataclass(frozen=True)
class Reconcile:
    """Find out whether a check-in whose answer never came enqueued the customer, before
    anything else is sent: `POST Appointments/Checkin` is not idempotent."""

    target: Target
    since: str  # when the unconfirmed check-in was sent (ISO)
    purpose: Intent | None = None  # ARRIVE: check in now if nothing was enqueued


Action = Checkin | GetCase | Reconcile


@dataclass(frozen=True)
class CaseView:
    """The parts of a VirtualQ case a reply needs."""

    case_id: int
    ticket: str
    position: int | None  # 0-based, as VirtualQ's QueuePosition
    wait: int | None  # minutes
    active: bool = True


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


Result = CaseView | Refusal | Unavailable | Unconfirmed | NotEnqueued

UNCONFIRMED = "unconfirmed"  # conversation data: a check-in whose outcome is not known yet


@dataclass(frozen=True)
class Reply:
    key: ReplyKey
    values: Mapping[str, object] = field(default_factory=dict)
    choices: tuple[str, ...] | None = None  # names, for the `choose` texts


@dataclass(frozen=True)
class Conversation:
    state: State = State.IDLE
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What a step decided: the next state and its data, the reply (None: silence) and an
    upstream action to perform first (its result goes to `resume`)."""

    state: State
    data: Mapping[str, Any]
    reply: Reply | None
    action: Action | None = None


# --- building decisions ---------------------------------------------------------------------


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


def checkin(target: Target, force: bool = False) -> Decision:
    return Decision(State.IDLE, {}, None, Checkin(target, force))


def checkin_booking(number: str) -> Decision:
    return checkin(Target(case_id=int(number)))


def say(state: State, key: ReplyKey) -> Decision:
    return Decision(state, {}, Reply(key))


def expiry(ctx: Context) -> str:
    return (ctx.now + ctx.policy.confirm_timeout).isoformat()
