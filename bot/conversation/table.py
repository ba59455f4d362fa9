"""The conversation as a state table: each state's handler reads what a customer meant.

`step` applies the global meanings first (opt-out, opt-in, HELP, a language, a check-in still
to be reconciled), then the current state's handler. What a text means was read with the
state's open question in mind (`expecting`). Pure: no I/O, no clock (the time comes in the
`Context`), so whole transcripts are tested as data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..replies import ReplyKey as K
from ..understanding import EVERYONE, NOBODY, NOTHING, Expecting, Meaning, Reading, Topic
from .model import (
    QUESTIONS,
    CancelCase,
    Candidate,
    Checkin,
    Context,
    Conversation,
    Decision,
    GetCase,
    Reconcile,
    Reply,
    State,
    Target,
    Visit,
    checked_in,
    expired,
    expiry,
    say,
    unconfirmed,
    visits,
)

M = Meaning


def step(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    """The next state, reply and upstream action for one inbound message."""
    conv = effective(conv, ctx)
    meaning = reading.meaning
    if meaning is M.OPT_OUT:
        return Decision(State.OPTED_OUT, {"since": ctx.now.isoformat()}, None)
    if conv.state is State.OPTED_OUT:
        # Twilio reads YES as an opt-in too.
        if meaning in (M.OPT_IN, M.YES):
            return say(State.IDLE, K.OPTED_IN)
        return Decision(State.OPTED_OUT, conv.data, None)
    if meaning is M.OPT_IN:
        return _stay(conv, K.OPTED_IN)
    if meaning is M.HELP:
        return _stay(conv, K.HELP)
    if meaning is M.LANGUAGE:
        if reading.choose_language:
            return Decision(
                conv.state, conv.data, Reply(K.LANGUAGE_SET), None, reading.choose_language
            )
        return _stay(conv, K.LANGUAGE_LIST)
    pending = unconfirmed(conv, ctx)
    if pending is not None:
        # Whatever they say, first find out what that check-in did.
        return Decision(conv.state, conv.data, None, Reconcile(*pending, meaning is M.ARRIVE))
    return _HANDLERS[conv.state](conv, reading, ctx)


def effective(conv: Conversation, ctx: Context) -> Conversation:
    """The conversation with an expired question and a stale check-in dropped."""
    if conv.state in QUESTIONS and expired(conv.data, ctx.now):
        if conv.state is State.AWAITING_LEAVE and visits(conv.data):
            return Conversation(State.CHECKED_IN, checked_in(visits(conv.data)))
        return Conversation(State.IDLE, {"expired": conv.state.value})
    if conv.state is State.CHECKED_IN:
        people = visits(conv.data)
        at = people[0].at if people else ""
        if not at or ctx.now - datetime.fromisoformat(at) > ctx.policy.checked_in_memory:
            return Conversation(State.IDLE, {})
    return conv


def expecting(conv: Conversation, ctx: Context) -> Expecting:
    """The answer a conversation's open question expects, for reading the next text."""
    conv = effective(conv, ctx)
    if conv.state is State.AWAITING_ARRIVAL:
        return Expecting(topic=Topic.ARRIVAL)
    if conv.state is State.AWAITING_CONFIRM:
        return Expecting(topic=Topic.FORCE)
    if conv.state is State.AWAITING_LEAVE:
        return Expecting(topic=Topic.LEAVE)
    if conv.state is State.AWAITING_CHOICE:
        names = tuple(p.get("name") or "" for p in conv.data.get("candidates", []))
        return Expecting(names=names, everyone=len(names) + 1 if len(names) > 1 else None)
    digits = ctx.policy.booking_number_digits
    if conv.state is State.AWAITING_IDENTIFIER:
        return Expecting(booking_number=True, number_digits=digits)
    if ctx.policy.booking_number_fallback and digits != NOTHING.number_digits:
        return Expecting(number_digits=digits)  # a number texted on its own is asked about
    return NOTHING


# --- no question open ---------------------------------------------------------------------------


def _on_idle(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    meaning = reading.meaning
    if meaning is M.ARRIVE:
        return _arrive(ctx, everyone=reading.choice == EVERYONE)
    if conv.data.get("expired") in (State.AWAITING_CONFIRM, State.AWAITING_ARRIVAL) and meaning in (
        M.YES,
        M.NO,
    ):
        return say(State.IDLE, K.CONFIRM_EXPIRED if meaning is M.YES else K.DECLINED)
    if meaning is M.UNSURE:
        return _clarify(ctx)
    if meaning is M.NUMBER and reading.number and ctx.policy.booking_number_fallback:
        if not ctx.candidates:
            # A number alone does not say they are here: ask before checking it in.
            return _clarify(ctx, Target(case_id=int(reading.number)))
    if meaning is M.LEAVE:
        if ctx.policy.allow_cancel_booking:
            data = {"expires_at": expiry(ctx), "purpose": "cancel"}
            return Decision(State.AWAITING_IDENTIFIER, data, Reply(K.ASK_BOOKING_NUMBER_CANCEL))
        return say(State.IDLE, K.LEAVE)
    return say(State.IDLE, _IDLE_REPLIES.get(meaning, K.HINT))


_IDLE_REPLIES = {
    M.STATUS: K.STATUS_NOT_CHECKED_IN,
    M.NOT_YET: K.RUNNING_LATE,
    M.QUESTION: K.QUESTION,
    M.THANKS: K.WELCOME_IDLE,
    M.GREETING: K.GREETING,
}


def _arrive(ctx: Context, done: Sequence[Visit] = (), everyone: bool = False) -> Decision:
    """An arrival: check in the phone's customer, ask which of several (those not checked in
    yet), or ask an unknown number for a booking number. "Both of us" checks in both of two;
    of three or more, it asks (it may mean two of them)."""
    here = {v.target.personal_id for v in done}
    people = [c for c in ctx.candidates if c.personal_id not in here]
    if len(people) == 1 and not done:
        return _checkin(_target(people[0]))
    if everyone and len(people) == 2 and not done:
        first, second = (_target(p) for p in people)
        return _checkin(first, queue=[second.to_data()])
    if people:
        # A HERE from a phone with someone checked in may be them again, or a child: ask.
        data: dict[str, Any] = {
            "candidates": [_candidate_data(c) for c in people],
            "expires_at": expiry(ctx),
            "done": [v.to_data() for v in done],
        }
        key = K.CHOOSE_MORE if done else K.CHOOSE
        reply = Reply(key, choices=_names(people), everyone=len(people) > 1)
        return Decision(State.AWAITING_CHOICE, data, reply)
    if done:  # everyone on this phone is checked in already: their status
        return _lookup(done, arrival=True)
    if ctx.policy.booking_number_fallback:
        data = {"expires_at": expiry(ctx), "purpose": "checkin"}
        return Decision(State.AWAITING_IDENTIFIER, data, Reply(K.ASK_BOOKING_NUMBER))
    return say(State.IDLE, K.UNKNOWN_NUMBER)


def _clarify(ctx: Context, target: Target | None = None) -> Decision:
    data: dict[str, Any] = {"expires_at": expiry(ctx)}
    if target is not None:
        data["target"] = target.to_data()
    return Decision(State.AWAITING_ARRIVAL, data, Reply(K.CLARIFY_ARRIVAL))


# --- a question open ------------------------------------------------------------------------------


def _on_arrival(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    """After "are you here now?"."""
    meaning = reading.meaning
    if meaning in (M.YES, M.ARRIVE):
        target = conv.data.get("target")
        return _checkin(Target.from_data(target)) if target else _arrive(ctx)
    if meaning in (M.NO, M.NOT_YET):
        return say(State.IDLE, K.RUNNING_LATE)
    if meaning in (M.UNKNOWN, M.UNSURE):
        return _ask_again(conv, Reply(K.CLARIFY_ARRIVAL))
    if meaning in _KEEP_OPEN:
        return _stay(conv, _KEEP_OPEN[meaning])
    return _on_idle(Conversation(), reading, ctx)


# Answered while a question stays open: the question is still waiting for its YES or NO.
_KEEP_OPEN = {M.QUESTION: K.QUESTION, M.STATUS: K.STATUS_NOT_CHECKED_IN}


def _on_confirm(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    """After "you're early (or late): check in anyway?"."""
    meaning = reading.meaning
    done = [Visit.from_data(v) for v in conv.data.get("done", [])]
    if meaning in (M.YES, M.ARRIVE):
        target = Target.from_data(conv.data["target"])
        queue, seen = conv.data.get("queue", []), conv.data.get("seen", {})
        return _checkin(target, force=True, queue=queue, done=done, seen=seen)
    if meaning in (M.NO, M.NOT_YET):
        if done:
            return Decision(State.CHECKED_IN, checked_in(done), Reply(K.DECLINED))
        return say(State.IDLE, K.DECLINED)
    if meaning is M.LEAVE:
        return _on_idle(Conversation(), reading, ctx)
    if meaning in _KEEP_OPEN and not done:
        return _stay(conv, _KEEP_OPEN[meaning])
    return _ask_again(conv, Reply(K.CONFIRM_AGAIN))


def _on_choice(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    """After "who is checking in?"."""
    people = [_candidate(p) for p in conv.data.get("candidates", [])]
    done = [Visit.from_data(v) for v in conv.data.get("done", [])]
    if reading.meaning is M.CHOICE and reading.choice is not None:
        if reading.choice == EVERYONE:
            first, *rest = [_target(p) for p in people]
            return _checkin(first, queue=[t.to_data() for t in rest], done=done)
        if reading.choice == NOBODY:
            return _nobody(done)
        if 1 <= reading.choice <= len(people):
            return _checkin(_target(people[reading.choice - 1]), done=done)
    if reading.meaning is M.NO:
        return _nobody(done)
    if done and reading.meaning not in (M.UNKNOWN, M.ARRIVE):
        return _on_checked_in(Conversation(State.CHECKED_IN, checked_in(done)), reading, ctx)
    if reading.meaning in (M.UNKNOWN, M.ARRIVE, M.YES, M.CHOICE):
        reply = Reply(K.CHOOSE_AGAIN, choices=_names(people), everyone=len(people) > 1)
        return _ask_again(conv, reply)
    return _on_idle(Conversation(), reading, ctx)


def _nobody(done: Sequence[Visit]) -> Decision:
    """No one (else) to check in: those already in get their status."""
    return _lookup(done) if done else say(State.IDLE, K.DECLINED)


def _on_identifier(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    """After "reply with your booking number"."""
    if reading.meaning is M.NUMBER and reading.number:
        case_id = int(reading.number)
        if conv.data.get("purpose") == "cancel":
            data = {"topic": "booking", "case_id": case_id, "expires_at": expiry(ctx)}
            return Decision(State.AWAITING_LEAVE, data, Reply(K.CANCEL_BOOKING_CONFIRM))
        return _checkin(Target(case_id=case_id))
    if reading.meaning is M.NO:
        return say(State.IDLE, K.DECLINED)
    key = (
        K.ASK_BOOKING_NUMBER_CANCEL
        if conv.data.get("purpose") == "cancel"
        else K.ASK_BOOKING_NUMBER
    )
    return _ask_again(conv, Reply(key))


def _on_leave(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    """After "leave the queue?" (or "cancel your appointment?")."""
    people = visits(conv.data)
    if conv.data.get("topic") == "booking":
        if reading.meaning is M.YES:
            return Decision(State.IDLE, {}, None, CancelCase(int(conv.data["case_id"]), True))
        if reading.meaning in (M.NO, M.NOT_YET):
            return say(State.IDLE, K.DECLINED)
        return _ask_again(conv, Reply(K.CANCEL_BOOKING_CONFIRM))
    if reading.meaning is M.YES and people:
        data = {"people": [p.to_data() for p in people], "left": [p.case_id for p in people]}
        return Decision(State.CHECKED_IN, data, None, CancelCase(people[0].case_id))
    kept = Decision(
        State.CHECKED_IN, checked_in(people), Reply(K.LEAVE_KEPT, {"ticket": _tickets(people)})
    )
    if reading.meaning in (M.NO, M.NOT_YET, M.ARRIVE, M.THANKS):
        return kept
    if reading.meaning is M.STATUS:
        return _lookup(people)
    if conv.data.get("asked_again"):
        return kept
    return _ask_again(conv, Reply(K.LEAVE_CONFIRM, {"ticket": _tickets(people)}))


# --- checked in -----------------------------------------------------------------------------------


def _on_checked_in(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    meaning = reading.meaning
    people = visits(conv.data)
    if meaning is M.ARRIVE:
        # Someone else on this phone (a child) may be arriving: offer them, else the status.
        return _arrive(ctx, done=people, everyone=reading.choice == EVERYONE)
    if meaning is M.LEAVE:
        data = {
            "topic": "queue",
            "people": [p.to_data() for p in people],
            "expires_at": expiry(ctx),
        }
        reply = Reply(K.LEAVE_CONFIRM, {"ticket": _tickets(people)})
        return Decision(State.AWAITING_LEAVE, data, reply)
    if meaning is M.THANKS:
        return _stay(conv, K.WELCOME)
    if meaning is M.QUESTION:
        return _stay(conv, K.QUESTION)
    if meaning in (M.UNKNOWN, M.OTHER):
        return _stay(conv, K.HINT_CHECKED_IN)
    # STATUS, YES (a second YES), a choice or a greeting again, "running late"…: the status.
    return _lookup(people)


def _lookup(people: Sequence[Visit], arrival: bool = False) -> Decision:
    """Look everyone's case up, one after the other (see results.py)."""
    data = {**checked_in(people), "lookup": [p.case_id for p in people], "seen": {}}
    return Decision(State.CHECKED_IN, data, None, GetCase(people[0].case_id, arrival))


def _on_opted_out(conv: Conversation, reading: Reading, ctx: Context) -> Decision:
    return Decision(State.OPTED_OUT, conv.data, None)  # step() handles opt-in before this


# --- helpers ---------------------------------------------------------------------------------


def _checkin(
    target: Target,
    force: bool = False,
    queue: Sequence[Mapping[str, Any]] = (),
    done: Sequence[Visit] = (),
    seen: Mapping[str, Any] | None = None,
) -> Decision:
    """Check `target` in; `queue`: others to check in after; `done`: those checked in already
    (`seen`: the places in line of those checked in by this conversation's current text)."""
    data = {"queue": list(queue), "done": [v.to_data() for v in done], "seen": dict(seen or {})}
    return Decision(State.IDLE, data, None, Checkin(target, force))


def _ask_again(conv: Conversation, reply: Reply) -> Decision:
    """Repeat a question once; after that, give up on it and offer help."""
    if conv.data.get("asked_again"):
        done = [Visit.from_data(v) for v in conv.data.get("done", [])] or visits(conv.data)
        if done:
            return Decision(State.CHECKED_IN, checked_in(done), Reply(K.HELP))
        return say(State.IDLE, K.HELP)
    return Decision(conv.state, {**conv.data, "asked_again": True}, reply)


def _stay(conv: Conversation, key: K) -> Decision:
    return Decision(conv.state, conv.data, Reply(key))


def _target(candidate: Candidate) -> Target:
    return Target(personal_id=candidate.personal_id, name=candidate.name)


def _candidate_data(candidate: Candidate) -> dict[str, Any]:
    return {"personal_id": candidate.personal_id, "name": candidate.name}


def _candidate(data: Mapping[str, Any]) -> Candidate:
    return Candidate(str(data["personal_id"]), data.get("name"))


def _names(people: Sequence[Candidate]) -> tuple[str, ...]:
    return tuple(c.name or f"#{i}" for i, c in enumerate(people, start=1))


def _tickets(people: Sequence[Visit]) -> str:
    return ", ".join(p.ticket for p in people) or "?"


_HANDLERS: dict[State, Callable[[Conversation, Reading, Context], Decision]] = {
    State.IDLE: _on_idle,
    State.AWAITING_ARRIVAL: _on_arrival,
    State.AWAITING_CONFIRM: _on_confirm,
    State.AWAITING_CHOICE: _on_choice,
    State.AWAITING_IDENTIFIER: _on_identifier,
    State.AWAITING_LEAVE: _on_leave,
    State.CHECKED_IN: _on_checked_in,
    State.OPTED_OUT: _on_opted_out,
}
