"""The conversation as a state table: pure (state, message) -> (state, reply, action).

`step` reads a customer's message; when it needs the queue system it returns an `action`, the
service performs it, and `resume` turns the classified result into the next outcome (which may
ask for one more action). Nothing here does I/O or reads the clock, so whole transcripts are
tested as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .intents import Intent, Parsed
from .prompts import normalise_text


class State(StrEnum):
    IDLE = "idle"
    AWAITING_CONFIRM = "awaiting_confirm"
    AWAITING_IDENTIFIER = "awaiting_identifier"
    AWAITING_CHOICE = "awaiting_choice"
    CHECKED_IN = "checked_in"
    OPTED_OUT = "opted_out"


class Refusal(StrEnum):
    """Why the queue system would not check someone in."""

    EARLY = "early"
    LATE = "late"
    PREVENT_AUTO_QUEUE = "prevent_auto_queue"
    NOT_FOUND = "not_found"
    ALREADY_CHECKED_IN = "already_checked_in"
    OTHER = "other"


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
    key: str
    values: Mapping[str, object] = field(default_factory=dict)
    choices: tuple[str, ...] | None = None  # names, for the `choose` texts


@dataclass(frozen=True)
class Conversation:
    state: State = State.IDLE
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    state: State
    data: Mapping[str, Any]
    reply: Reply | None
    action: Action | None = None


# --- reading a message ------------------------------------------------------------------------


def step(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    """The next state, reply and upstream action for one inbound message."""
    conv = _effective(conv, ctx)
    intents = msg.intents
    if Intent.OPT_OUT in intents:
        return Outcome(State.OPTED_OUT, {"since": ctx.now.isoformat()}, None)
    if conv.state is State.OPTED_OUT:
        if Intent.OPT_IN in intents or intents == {Intent.YES}:
            return _say(State.IDLE, "opted_in")
        return Outcome(State.OPTED_OUT, conv.data, None)
    if Intent.OPT_IN in intents:
        return Outcome(conv.state, conv.data, Reply("opted_in"))
    if intents == {Intent.HELP}:
        return Outcome(conv.state, conv.data, Reply("help"))
    pending = unconfirmed(conv, ctx)
    if pending is not None:
        # Whatever they say, first find out what that check-in did.
        purpose = Intent.ARRIVE if Intent.ARRIVE in intents else None
        return Outcome(conv.state, conv.data, None, Reconcile(*pending, purpose))
    return _HANDLERS[conv.state](conv, msg, ctx)


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


def _effective(conv: Conversation, ctx: Context) -> Conversation:
    """The conversation with expired questions and a stale check-in dropped."""
    if conv.state in _QUESTIONS and _expired(conv.data, ctx.now):
        return Conversation(State.IDLE, {"expired": conv.state.value})
    if conv.state is State.CHECKED_IN:
        at = conv.data.get("at")
        if not at or ctx.now - datetime.fromisoformat(at) > ctx.policy.checked_in_memory:
            return Conversation(State.IDLE, {})
    return conv


def _expired(data: Mapping[str, Any], now: datetime) -> bool:
    expires = data.get("expires_at")
    return isinstance(expires, str) and now >= datetime.fromisoformat(expires)


def _on_idle(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    intents = msg.intents
    if Intent.ARRIVE in intents:
        return _arrive(ctx)
    if conv.data.get("expired") == State.AWAITING_CONFIRM and intents & {Intent.YES, Intent.NO}:
        return _say(State.IDLE, "confirm_expired" if Intent.YES in intents else "declined")
    if Intent.STATUS in intents:
        return _say(State.IDLE, "status_not_checked_in")
    if Intent.RUNNING_LATE in intents:
        return _say(State.IDLE, "running_late")
    if Intent.LEAVE in intents:
        return _say(State.IDLE, "leave")
    if msg.number and not ctx.candidates and ctx.policy.booking_number_fallback:
        return _checkin_booking(msg.number)
    return _say(State.IDLE, "hint")


def _arrive(ctx: Context) -> Outcome:
    if len(ctx.candidates) == 1:
        return _checkin(Target(personal_id=ctx.candidates[0].personal_id))
    if len(ctx.candidates) > 1:
        names = tuple(c.name or f"#{i}" for i, c in enumerate(ctx.candidates, start=1))
        data = {
            "candidates": [{"personal_id": c.personal_id, "name": c.name} for c in ctx.candidates],
            "expires_at": _expiry(ctx),
        }
        return Outcome(State.AWAITING_CHOICE, data, Reply("choose", choices=names))
    if ctx.policy.booking_number_fallback:
        data = {"expires_at": _expiry(ctx)}
        return Outcome(State.AWAITING_IDENTIFIER, data, Reply("ask_booking_number"))
    return _say(State.IDLE, "unknown_number")


def _on_confirm(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    intents = msg.intents
    if Intent.YES in intents and Intent.NO not in intents:
        return _checkin(Target.from_data(conv.data["target"]), force=True)
    if Intent.NO in intents and Intent.YES not in intents:
        return _say(State.IDLE, "declined")
    return _ask_again(conv, Reply("confirm_again"))


def _on_choice(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    people = conv.data["candidates"]
    chosen = _chosen(people, msg)
    if chosen is not None:
        return _checkin(Target(personal_id=chosen["personal_id"]))
    if Intent.NO in msg.intents:
        return _say(State.IDLE, "declined")
    names = tuple(p["name"] or f"#{i}" for i, p in enumerate(people, start=1))
    return _ask_again(conv, Reply("choose_again", choices=names))


def _chosen(people: list[dict[str, Any]], msg: Parsed) -> dict[str, Any] | None:
    if msg.number and 1 <= int(msg.number) <= len(people):
        return people[int(msg.number) - 1]
    first_word = msg.words[0] if msg.words else None
    by_first_name = [
        p for p in people if p["name"] and normalise_text(p["name"]).split()[0] == first_word
    ]
    return by_first_name[0] if len(by_first_name) == 1 else None


def _on_identifier(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    if msg.number:
        return _checkin_booking(msg.number)
    if Intent.NO in msg.intents:
        return _say(State.IDLE, "declined")
    return _ask_again(conv, Reply("ask_booking_number"))


def _on_checked_in(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    intents = msg.intents
    case_id = int(conv.data["case_id"])
    if Intent.ARRIVE in intents:
        return Outcome(conv.state, conv.data, None, GetCase(case_id, Intent.ARRIVE))
    # A YES or a choice texted twice (the first one checked them in) gets the status too.
    if intents & {Intent.STATUS, Intent.RUNNING_LATE, Intent.YES} or msg.number:
        return Outcome(conv.state, conv.data, None, GetCase(case_id, Intent.STATUS))
    if Intent.LEAVE in intents:
        return Outcome(conv.state, conv.data, Reply("leave"))
    return Outcome(conv.state, conv.data, Reply("hint"))


def _on_opted_out(conv: Conversation, msg: Parsed, ctx: Context) -> Outcome:
    return Outcome(State.OPTED_OUT, conv.data, None)  # step() handles opt-in before this


def _ask_again(conv: Conversation, reply: Reply) -> Outcome:
    """Repeat a question once; after that, give up on it and offer help."""
    if conv.data.get("asked_again"):
        return _say(State.IDLE, "help")
    return Outcome(conv.state, {**conv.data, "asked_again": True}, reply)


_QUESTIONS = {State.AWAITING_CONFIRM, State.AWAITING_CHOICE, State.AWAITING_IDENTIFIER}
_HANDLERS: dict[State, Callable[[Conversation, Parsed, Context], Outcome]] = {
    State.IDLE: _on_idle,
    State.AWAITING_CONFIRM: _on_confirm,
    State.AWAITING_CHOICE: _on_choice,
    State.AWAITING_IDENTIFIER: _on_identifier,
    State.CHECKED_IN: _on_checked_in,
    State.OPTED_OUT: _on_opted_out,
}


# --- what the queue system said ---------------------------------------------------------------


def resume(action: Action, result: Result, ctx: Context, before: Conversation) -> Outcome:
    """The outcome once the queue system has answered `action` with `result`."""
    if isinstance(action, Checkin):
        return _after_checkin(action, result, ctx)
    if isinstance(action, Reconcile):
        return _after_reconcile(action, result, ctx)
    return _after_get_case(action, result, ctx, before)


def _after_checkin(action: Checkin, result: Result, ctx: Context) -> Outcome:
    if isinstance(result, CaseView):
        return _checked_in(result, action.target, ctx, "checked_in")
    if isinstance(result, Unconfirmed):
        return Outcome(State.IDLE, {}, None, Reconcile(action.target, ctx.now.isoformat()))
    if isinstance(result, Unavailable):
        return _say(State.IDLE, "upstream_unavailable")
    if result in (Refusal.EARLY, Refusal.LATE) and not action.force:
        return _question(action.target, result, ctx)
    if result is Refusal.PREVENT_AUTO_QUEUE:
        if ctx.policy.force_prevent_auto_queue and not action.force:
            return _question(action.target, result, ctx)
        return _say(State.IDLE, "see_reception_prevent_auto_queue")
    if result is Refusal.NOT_FOUND:
        if action.target.case_id is not None:
            data = {"expires_at": _expiry(ctx), "asked_again": True}
            reply = Reply("booking_number_not_found", {"number": action.target.case_id})
            return Outcome(State.AWAITING_IDENTIFIER, data, reply)
        return _say(State.IDLE, "no_appointment")
    if result is Refusal.ALREADY_CHECKED_IN:
        return _say(State.IDLE, "already_checked_in")
    return _say(State.IDLE, "upstream_unavailable")


def _after_reconcile(action: Reconcile, result: Result, ctx: Context) -> Outcome:
    if isinstance(result, CaseView) and result.active:
        return _checked_in(result, action.target, ctx, "checked_in", since=action.since)
    if isinstance(result, NotEnqueued | CaseView):
        if action.purpose is Intent.ARRIVE:
            return _checkin(action.target)  # nothing was enqueued: this HERE may check in
        return _say(State.IDLE, "checkin_not_done")
    # VirtualQ cannot tell us yet: keep asking it on their next text, never re-send blindly.
    data = unconfirmed_data(action.target, action.since)
    return Outcome(State.IDLE, data, Reply("checkin_unconfirmed"))


def _after_get_case(action: GetCase, result: Result, ctx: Context, before: Conversation) -> Outcome:
    target = Target.from_data(before.data.get("target", {}))
    if isinstance(result, CaseView) and result.active:
        return _checked_in(result, target, ctx, "status", since=before.data.get("at"))
    if isinstance(result, Unavailable):
        ticket = before.data.get("ticket")
        return Outcome(before.state, before.data, Reply("status_remembered", {"ticket": ticket}))
    # The case has finished (or vanished): a new HERE is a new arrival.
    if action.purpose is Intent.ARRIVE and (target.personal_id or target.case_id):
        return _checkin(target)
    return _say(State.IDLE, "status_finished")


def _checked_in(
    case: CaseView, target: Target, ctx: Context, prefix: str, since: str | None = None
) -> Outcome:
    data = {
        "case_id": case.case_id,
        "ticket": case.ticket,
        "target": target.to_data(),
        "at": since or ctx.now.isoformat(),
    }
    if case.position is None or case.wait is None:
        reply = Reply(f"{prefix}_ticket_only", {"ticket": case.ticket})
    elif case.position == 0:
        reply = Reply(f"{prefix}_next", {"ticket": case.ticket})
    else:
        values = {"ticket": case.ticket, "position": case.position + 1, "wait": case.wait}
        reply = Reply(prefix, values)
    return Outcome(State.CHECKED_IN, data, reply)


def _question(target: Target, reason: Refusal, ctx: Context) -> Outcome:
    data = {"target": target.to_data(), "reason": reason.value, "expires_at": _expiry(ctx)}
    return Outcome(State.AWAITING_CONFIRM, data, Reply(f"confirm_{reason.value}"))


def _checkin(target: Target, force: bool = False) -> Outcome:
    return Outcome(State.IDLE, {}, None, Checkin(target, force))


def _checkin_booking(number: str) -> Outcome:
    return _checkin(Target(case_id=int(number)))


def _say(state: State, key: str) -> Outcome:
    return Outcome(state, {}, Reply(key))


def _expiry(ctx: Context) -> str:
    return (ctx.now + ctx.policy.confirm_timeout).isoformat()
