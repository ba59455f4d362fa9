"""The conversation's second half: what VirtualQ's answer to an action means for it.

`resume` turns an action's classified result into the next decision (which may ask for one
more action: a case that finished looked up, then a fresh check-in). Pure.
"""

from __future__ import annotations

from ..errors import Refusal
from ..intents import Intent
from ..replies import ReplyKey as K
from .model import (
    Action,
    CaseView,
    Checkin,
    Context,
    Conversation,
    Decision,
    GetCase,
    NotEnqueued,
    Reconcile,
    Reply,
    Result,
    State,
    Target,
    Unavailable,
    Unconfirmed,
    checkin,
    expiry,
    say,
    unconfirmed_data,
)

# The reply for a ticket (given now, or looked up for STATUS): full, next in line, ticket only.
_TICKET_REPLIES = {
    K.CHECKED_IN: (K.CHECKED_IN, K.CHECKED_IN_NEXT, K.CHECKED_IN_TICKET_ONLY),
    K.STATUS: (K.STATUS, K.STATUS_NEXT, K.STATUS_TICKET_ONLY),
}
_CONFIRM = {
    Refusal.EARLY: K.CONFIRM_EARLY,
    Refusal.LATE: K.CONFIRM_LATE,
    Refusal.PREVENT_AUTO_QUEUE: K.CONFIRM_PREVENT_AUTO_QUEUE,
}


def resume(action: Action, result: Result, ctx: Context, before: Conversation) -> Decision:
    """The decision once the queue system has answered `action` with `result`."""
    if isinstance(action, Checkin):
        return _after_checkin(action, result, ctx)
    if isinstance(action, Reconcile):
        return _after_reconcile(action, result, ctx)
    return _after_get_case(action, result, ctx, before)


def _after_checkin(action: Checkin, result: Result, ctx: Context) -> Decision:
    if isinstance(result, CaseView):
        return _checked_in(result, action.target, ctx, K.CHECKED_IN)
    if isinstance(result, Unconfirmed):
        return Decision(State.IDLE, {}, None, Reconcile(action.target, ctx.now.isoformat()))
    if isinstance(result, Unavailable):
        return say(State.IDLE, K.UPSTREAM_UNAVAILABLE)
    if result in (Refusal.EARLY, Refusal.LATE) and not action.force:
        return _question(action.target, result, ctx)
    if result is Refusal.PREVENT_AUTO_QUEUE:
        if ctx.policy.force_prevent_auto_queue and not action.force:
            return _question(action.target, result, ctx)
        return say(State.IDLE, K.SEE_RECEPTION_PREVENT_AUTO_QUEUE)
    if result is Refusal.NOT_FOUND:
        if action.target.case_id is not None:
            data = {"expires_at": expiry(ctx), "asked_again": True}
            reply = Reply(K.BOOKING_NUMBER_NOT_FOUND, {"number": action.target.case_id})
            return Decision(State.AWAITING_IDENTIFIER, data, reply)
        return say(State.IDLE, K.NO_APPOINTMENT)
    if result is Refusal.ALREADY_CHECKED_IN:
        return say(State.IDLE, K.ALREADY_CHECKED_IN)
    return say(State.IDLE, K.UPSTREAM_UNAVAILABLE)


def _after_reconcile(action: Reconcile, result: Result, ctx: Context) -> Decision:
    if isinstance(result, CaseView) and result.active:
        return _checked_in(result, action.target, ctx, K.CHECKED_IN, since=action.since)
    if isinstance(result, NotEnqueued | CaseView):
        if action.purpose is Intent.ARRIVE:
            return checkin(action.target)  # nothing was enqueued: this HERE may check in
        return say(State.IDLE, K.CHECKIN_NOT_DONE)
    # VirtualQ cannot tell us yet: keep asking it on their next text, never re-send blindly.
    data = unconfirmed_data(action.target, action.since)
    return Decision(State.IDLE, data, Reply(K.CHECKIN_UNCONFIRMED))


def _after_get_case(
    action: GetCase, result: Result, ctx: Context, before: Conversation
) -> Decision:
    target = Target.from_data(before.data.get("target", {}))
    if isinstance(result, CaseView) and result.active:
        return _checked_in(result, target, ctx, K.STATUS, since=before.data.get("at"))
    if isinstance(result, Unavailable):
        ticket = before.data.get("ticket")
        return Decision(before.state, before.data, Reply(K.STATUS_REMEMBERED, {"ticket": ticket}))
    # The case has finished (or vanished): a new HERE is a new arrival.
    if action.purpose is Intent.ARRIVE and (target.personal_id or target.case_id):
        return checkin(target)
    return say(State.IDLE, K.STATUS_FINISHED)


def _checked_in(
    case: CaseView, target: Target, ctx: Context, kind: K, since: str | None = None
) -> Decision:
    data = {
        "case_id": case.case_id,
        "ticket": case.ticket,
        "target": target.to_data(),
        "at": since or ctx.now.isoformat(),
    }
    full, next_in_line, ticket_only = _TICKET_REPLIES[kind]
    if case.position is None or case.wait is None:
        reply = Reply(ticket_only, {"ticket": case.ticket})
    elif case.position == 0:
        reply = Reply(next_in_line, {"ticket": case.ticket})
    else:
        values = {"ticket": case.ticket, "position": case.position + 1, "wait": case.wait}
        reply = Reply(full, values)
    return Decision(State.CHECKED_IN, data, reply)


def _question(target: Target, reason: Refusal, ctx: Context) -> Decision:
    data = {"target": target.to_data(), "reason": reason.value, "expires_at": expiry(ctx)}
    return Decision(State.AWAITING_CONFIRM, data, Reply(_CONFIRM[reason]))
