"""The conversation's second half: what VirtualQ's answer to an action means for it.

`resume(pending, result, ctx)` reads the classified result of `pending.action` and returns the
next decision, which may ask for one more action: the next person of a family, the next case
to look up, a finished case's fresh check-in. The pending decision's data carries what the
actions so far found. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import Refusal
from ..replies import ReplyKey as K
from .model import (
    CancelCase,
    CaseView,
    Checkin,
    Context,
    Decision,
    Done,
    GetCase,
    NotEnqueued,
    Reconcile,
    Reply,
    Result,
    State,
    Target,
    Unavailable,
    Unconfirmed,
    Visit,
    checked_in,
    expiry,
    say,
    unconfirmed_data,
    visits,
)

# The reply for one ticket (given now, or looked up for STATUS): full, next in line, ticket only.
_TICKET_REPLIES = {
    K.CHECKED_IN: (K.CHECKED_IN, K.CHECKED_IN_NEXT, K.CHECKED_IN_TICKET_ONLY),
    K.STATUS: (K.STATUS, K.STATUS_NEXT, K.STATUS_TICKET_ONLY),
}
_CONFIRM = {
    Refusal.EARLY: K.CONFIRM_EARLY,
    Refusal.LATE: K.CONFIRM_LATE,
    Refusal.PREVENT_AUTO_QUEUE: K.CONFIRM_PREVENT_AUTO_QUEUE,
}


def resume(pending: Decision, result: Result, ctx: Context) -> Decision:
    """The decision once the queue system has answered `pending.action` with `result`."""
    action = pending.action
    if isinstance(action, Checkin):
        return _after_checkin(action, pending.data, result, ctx)
    if isinstance(action, Reconcile):
        return _after_reconcile(action, pending.data, result, ctx)
    if isinstance(action, GetCase):
        return _after_lookup(action, pending.data, result, ctx)
    assert isinstance(action, CancelCase)
    return _after_cancel(action, pending.data, result)


# --- check-ins ------------------------------------------------------------------------------------


def _after_checkin(
    action: Checkin, data: Mapping[str, Any], result: Result, ctx: Context
) -> Decision:
    done = [Visit.from_data(v) for v in data.get("done", [])]
    queue = list(data.get("queue", []))
    if isinstance(result, CaseView):
        visit = Visit(result.case_id, result.ticket, action.target, ctx.now.isoformat())
        return _checked_in_one(visit, result, data)
    if isinstance(result, Unconfirmed):
        since = ctx.now.isoformat()
        return Decision(
            State.IDLE, {"done": data.get("done", [])}, None, Reconcile(action.target, since)
        )
    if isinstance(result, Unavailable):
        return _stop(done, K.UPSTREAM_UNAVAILABLE)
    if result in (Refusal.EARLY, Refusal.LATE) and not action.force:
        return _question(action.target, result, ctx, data)
    if result is Refusal.PREVENT_AUTO_QUEUE:
        if ctx.policy.force_prevent_auto_queue and not action.force:
            return _question(action.target, result, ctx, data)
        return _next_or_stop(done, queue, K.SEE_RECEPTION_PREVENT_AUTO_QUEUE)
    if result is Refusal.NOT_FOUND:
        if action.target.case_id is not None and not done:
            data = {"expires_at": expiry(ctx), "asked_again": True, "purpose": "checkin"}
            reply = Reply(K.BOOKING_NUMBER_NOT_FOUND, {"number": action.target.case_id})
            return Decision(State.AWAITING_IDENTIFIER, data, reply)
        return _next_or_stop(done, queue, K.NO_APPOINTMENT)
    if result is Refusal.ALREADY_CHECKED_IN:
        return _next_or_stop(done, queue, K.ALREADY_CHECKED_IN)
    return _stop(done, K.UPSTREAM_UNAVAILABLE)


def _checked_in_one(visit: Visit, case: CaseView, data: Mapping[str, Any]) -> Decision:
    """One more person in the queue: on to the next of the family, or the reply (about those
    checked in by this text: `seen` holds their places in line)."""
    done = [*(Visit.from_data(v) for v in data.get("done", [])), visit]
    seen = {**data.get("seen", {}), str(visit.case_id): _view_data(case)}
    queue = list(data.get("queue", []))
    if queue:
        following = {"queue": queue[1:], "done": [v.to_data() for v in done], "seen": seen}
        return Decision(State.IDLE, following, None, Checkin(Target.from_data(queue[0])))
    fresh = [p for p in done if str(p.case_id) in seen]
    if len(fresh) == 1:
        return Decision(State.CHECKED_IN, checked_in(done), _ticket_reply(K.CHECKED_IN, case))
    reply = _people_reply(K.CHECKED_IN_PEOPLE, fresh, seen)
    return Decision(State.CHECKED_IN, checked_in(done), reply)


def _question(
    target: Target, reason: Refusal, ctx: Context, progress: Mapping[str, Any]
) -> Decision:
    """Early or late: ask before forcing it (the family still to check in, and those already
    checked in by this text, wait with the question)."""
    data = {
        "target": target.to_data(),
        "reason": reason.value,
        "expires_at": expiry(ctx),
        "queue": list(progress.get("queue", [])),
        "done": list(progress.get("done", [])),
        "seen": dict(progress.get("seen", {})),
    }
    return Decision(State.AWAITING_CONFIRM, data, Reply(_CONFIRM[reason]))


def _next_or_stop(done: list[Visit], queue: list[Mapping[str, Any]], key: K) -> Decision:
    """A family member could not be checked in: the others still are, then say why."""
    if queue:
        target = Target.from_data(queue[0])
        data = {"queue": queue[1:], "done": [v.to_data() for v in done]}
        return Decision(State.IDLE, data, None, Checkin(target))
    return _stop(done, key)


def _stop(done: Sequence[Visit], key: K) -> Decision:
    if done:
        return Decision(State.CHECKED_IN, checked_in(done), Reply(key))
    return say(State.IDLE, key)


def _after_reconcile(
    action: Reconcile, data: Mapping[str, Any], result: Result, ctx: Context
) -> Decision:
    done = [Visit.from_data(v) for v in data.get("done", [])]
    if isinstance(result, CaseView) and result.active:
        visit = Visit(result.case_id, result.ticket, action.target, action.since)
        return _checked_in_one(visit, result, {"done": data.get("done", [])})
    if isinstance(result, NotEnqueued | CaseView):
        if action.arrival:
            return Decision(State.IDLE, {}, None, Checkin(action.target))  # this HERE may check in
        return _stop(done, K.CHECKIN_NOT_DONE)
    # VirtualQ cannot tell us yet: keep asking it on their next text, never re-send blindly.
    data = unconfirmed_data(action.target, action.since)
    return Decision(State.IDLE, data, Reply(K.CHECKIN_UNCONFIRMED))


# --- looking cases up -----------------------------------------------------------------------------


def _after_lookup(
    action: GetCase, data: Mapping[str, Any], result: Result, ctx: Context
) -> Decision:
    people = visits(data)
    left = [c for c in data.get("lookup", []) if c != action.case_id]
    seen = dict(data.get("seen", {}))
    if isinstance(result, Unavailable):
        remembered = Reply(K.STATUS_REMEMBERED, {"ticket": _tickets(people)})
        return Decision(State.CHECKED_IN, checked_in(people), remembered)
    if isinstance(result, CaseView) and result.active:
        seen[str(action.case_id)] = _view_data(result)
    if left:
        next_data = {**data, "lookup": left, "seen": seen}
        return Decision(State.CHECKED_IN, next_data, None, GetCase(left[0], action.arrival))
    waiting = [p for p in people if str(p.case_id) in seen]
    if not waiting:
        # Their cases have finished (or vanished): a new HERE is a new arrival.
        targets = [p.target for p in people if p.target.personal_id or p.target.case_id]
        if action.arrival and targets:
            queue = [t.to_data() for t in targets[1:]]
            return Decision(State.IDLE, {"queue": queue, "done": []}, None, Checkin(targets[0]))
        return say(State.IDLE, K.STATUS_FINISHED)
    if len(waiting) == 1:
        case = _view(waiting[0].case_id, seen[str(waiting[0].case_id)])
        return Decision(State.CHECKED_IN, checked_in(waiting), _ticket_reply(K.STATUS, case))
    reply = _people_reply(K.STATUS_PEOPLE, waiting, seen)
    return Decision(State.CHECKED_IN, checked_in(waiting), reply)


# --- leaving --------------------------------------------------------------------------------------


def _after_cancel(action: CancelCase, data: Mapping[str, Any], result: Result) -> Decision:
    if action.booking:
        if isinstance(result, Done):
            return say(State.IDLE, K.BOOKING_CANCELLED)
        return say(State.IDLE, K.UPSTREAM_UNAVAILABLE)
    people = visits(data)
    if not isinstance(result, Done):
        return Decision(State.CHECKED_IN, checked_in(people), Reply(K.LEAVE_FAILED))
    left = [c for c in data.get("left", []) if c != action.case_id]
    if left:
        return Decision(State.CHECKED_IN, {**data, "left": left}, None, CancelCase(left[0]))
    return Decision(State.IDLE, {}, Reply(K.LEFT_QUEUE, {"ticket": _tickets(people)}))


# --- replies ---------------------------------------------------------------------------------


def _ticket_reply(kind: K, case: CaseView) -> Reply:
    full, next_in_line, ticket_only = _TICKET_REPLIES[kind]
    if case.position is None or case.wait is None:
        return Reply(ticket_only, {"ticket": case.ticket})
    if case.position == 0:
        return Reply(next_in_line, {"ticket": case.ticket})
    values = {"ticket": case.ticket, "position": case.position + 1, "wait": case.wait}
    return Reply(full, values)


def _people_reply(kind: K, people: Sequence[Visit], seen: Mapping[str, Mapping[str, Any]]) -> Reply:
    """One line per person: "Sam A012: number 3, about 12 min; Mia C004: next in line"."""
    lines: list[tuple[K, Mapping[str, object]]] = []
    for person in people:
        view = seen.get(str(person.case_id), {})
        name = (person.target.name or "").split(" ")[0] or person.ticket
        position, wait = view.get("position"), view.get("wait")
        if position is not None and wait is not None and position > 0:
            values = {"name": name, "ticket": person.ticket, "position": position + 1, "wait": wait}
            lines.append((K.STATUS_PERSON, values))
        else:  # next in line, or VirtualQ gave no place: the ticket is what matters
            lines.append((K.STATUS_PERSON_NEXT, {"name": name, "ticket": person.ticket}))
    return Reply(kind, lines=tuple(lines))


def _tickets(people: Sequence[Visit]) -> str:
    return ", ".join(p.ticket for p in people) or "?"


def _view_data(case: CaseView) -> dict[str, Any]:
    return {"ticket": case.ticket, "position": case.position, "wait": case.wait}


def _view(case_id: int, data: Mapping[str, Any]) -> CaseView:
    return CaseView(case_id, str(data.get("ticket", "")), data.get("position"), data.get("wait"))
