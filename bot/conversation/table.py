"""The conversation as a state table: each state's handler reads a customer's message.

`step` applies the global keywords first (opt-out, opt-in, HELP, a check-in still to be
reconciled), then the current state's handler. Pure: no I/O, no clock (the time comes in the
`Context`), so whole transcripts are tested as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..intents import Intent, Parsed
from ..prompts import normalise_text
from ..replies import ReplyKey as K
from .model import (
    Context,
    Conversation,
    Decision,
    GetCase,
    Reconcile,
    Reply,
    State,
    Target,
    checkin,
    checkin_booking,
    expiry,
    say,
    unconfirmed,
)


def step(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    """The next state, reply and upstream action for one inbound message."""
    conv = _effective(conv, ctx)
    intents = msg.intents
    if Intent.OPT_OUT in intents:
        return Decision(State.OPTED_OUT, {"since": ctx.now.isoformat()}, None)
    if conv.state is State.OPTED_OUT:
        if Intent.OPT_IN in intents or intents == {Intent.YES}:
            return say(State.IDLE, K.OPTED_IN)
        return Decision(State.OPTED_OUT, conv.data, None)
    if Intent.OPT_IN in intents:
        return Decision(conv.state, conv.data, Reply(K.OPTED_IN))
    if intents == {Intent.HELP}:
        return Decision(conv.state, conv.data, Reply(K.HELP))
    pending = unconfirmed(conv, ctx)
    if pending is not None:
        # Whatever they say, first find out what that check-in did.
        purpose = Intent.ARRIVE if Intent.ARRIVE in intents else None
        return Decision(conv.state, conv.data, None, Reconcile(*pending, purpose))
    return _HANDLERS[conv.state](conv, msg, ctx)


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


def _on_idle(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    intents = msg.intents
    if Intent.ARRIVE in intents:
        return _arrive(ctx)
    if conv.data.get("expired") == State.AWAITING_CONFIRM and intents & {Intent.YES, Intent.NO}:
        return say(State.IDLE, K.CONFIRM_EXPIRED if Intent.YES in intents else K.DECLINED)
    if Intent.STATUS in intents:
        return say(State.IDLE, K.STATUS_NOT_CHECKED_IN)
    if Intent.RUNNING_LATE in intents:
        return say(State.IDLE, K.RUNNING_LATE)
    if Intent.LEAVE in intents:
        return say(State.IDLE, K.LEAVE)
    if msg.number and not ctx.candidates and ctx.policy.booking_number_fallback:
        return checkin_booking(msg.number)
    return say(State.IDLE, K.HINT)


def _arrive(ctx: Context) -> Decision:
    if len(ctx.candidates) == 1:
        return checkin(Target(personal_id=ctx.candidates[0].personal_id))
    if len(ctx.candidates) > 1:
        names = tuple(c.name or f"#{i}" for i, c in enumerate(ctx.candidates, start=1))
        data = {
            "candidates": [{"personal_id": c.personal_id, "name": c.name} for c in ctx.candidates],
            "expires_at": expiry(ctx),
        }
        return Decision(State.AWAITING_CHOICE, data, Reply(K.CHOOSE, choices=names))
    if ctx.policy.booking_number_fallback:
        data = {"expires_at": expiry(ctx)}
        return Decision(State.AWAITING_IDENTIFIER, data, Reply(K.ASK_BOOKING_NUMBER))
    return say(State.IDLE, K.UNKNOWN_NUMBER)


def _on_confirm(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    intents = msg.intents
    if Intent.YES in intents and Intent.NO not in intents:
        return checkin(Target.from_data(conv.data["target"]), force=True)
    if Intent.NO in intents and Intent.YES not in intents:
        return say(State.IDLE, K.DECLINED)
    return _ask_again(conv, Reply(K.CONFIRM_AGAIN))


def _on_choice(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    people = conv.data["candidates"]
    chosen = _chosen(people, msg)
    if chosen is not None:
        return checkin(Target(personal_id=chosen["personal_id"]))
    if Intent.NO in msg.intents:
        return say(State.IDLE, K.DECLINED)
    names = tuple(p["name"] or f"#{i}" for i, p in enumerate(people, start=1))
    return _ask_again(conv, Reply(K.CHOOSE_AGAIN, choices=names))


def _chosen(people: list[dict[str, Any]], msg: Parsed) -> dict[str, Any] | None:
    if msg.number and 1 <= int(msg.number) <= len(people):
        return people[int(msg.number) - 1]
    first_word = msg.words[0] if msg.words else None
    by_first_name = [
        p for p in people if p["name"] and normalise_text(p["name"]).split()[0] == first_word
    ]
    return by_first_name[0] if len(by_first_name) == 1 else None


def _on_identifier(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    if msg.number:
        return checkin_booking(msg.number)
    if Intent.NO in msg.intents:
        return say(State.IDLE, K.DECLINED)
    return _ask_again(conv, Reply(K.ASK_BOOKING_NUMBER))


def _on_checked_in(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    intents = msg.intents
    case_id = int(conv.data["case_id"])
    if Intent.ARRIVE in intents:
        return Decision(conv.state, conv.data, None, GetCase(case_id, Intent.ARRIVE))
    # A YES or a choice texted twice (the first one checked them in) gets the status too.
    if intents & {Intent.STATUS, Intent.RUNNING_LATE, Intent.YES} or msg.number:
        return Decision(conv.state, conv.data, None, GetCase(case_id, Intent.STATUS))
    if Intent.LEAVE in intents:
        return Decision(conv.state, conv.data, Reply(K.LEAVE))
    return Decision(conv.state, conv.data, Reply(K.HINT))


def _on_opted_out(conv: Conversation, msg: Parsed, ctx: Context) -> Decision:
    return Decision(State.OPTED_OUT, conv.data, None)  # step() handles opt-in before this


def _ask_again(conv: Conversation, reply: Reply) -> Decision:
    """Repeat a question once; after that, give up on it and offer help."""
    if conv.data.get("asked_again"):
        return say(State.IDLE, K.HELP)
    return Decision(conv.state, {**conv.data, "asked_again": True}, reply)


_QUESTIONS = {State.AWAITING_CONFIRM, State.AWAITING_CHOICE, State.AWAITING_IDENTIFIER}
_HANDLERS: dict[State, Callable[[Conversation, Parsed, Context], Decision]] = {
    State.IDLE: _on_idle,
    State.AWAITING_CONFIRM: _on_confirm,
    State.AWAITING_CHOICE: _on_choice,
    State.AWAITING_IDENTIFIER: _on_identifier,
    State.CHECKED_IN: _on_checked_in,
    State.OPTED_OUT: _on_opted_out,
}
