"""Whole conversations as data: each turn is (text, upstream answers, reply key, state after)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from bot.conversation import (
    Action,
    CancelCase,
    Candidate,
    CaseView,
    Checkin,
    Context,
    Conversation,
    Decision,
    Done,
    GetCase,
    NotEnqueued,
    Policy,
    Reconcile,
    Result,
    State,
    Target,
    Unavailable,
    Unconfirmed,
    expecting,
    resume,
    step,
)
from bot.errors import Refusal
from bot.prompts import Catalogue
from bot.service import render
from bot.understanding import read

from .conftest import T0

ALEX = Candidate("S1001", "Alex Smith")
SAM = Candidate("S1002", "Sam Smith")
ALEX_T = Target("S1001", None, "Alex Smith")
CASE = CaseView(case_id=42, ticket="A012", position=2, wait=15)
NEXT = replace(CASE, position=0, wait=0)
DONE = replace(CASE, active=False)
DOWN = Unavailable("connect error")
LOST = Unconfirmed("timeout after 6s (ReadTimeout)")  # sent; the answer never came


@dataclass
class Turn:
    text: str
    upstream: list[Result] = field(default_factory=list)
    reply: str | None = None
    state: State = State.IDLE
    minutes: int = 0  # when, after the start
    actions: list[Action] | None = None  # the upstream calls expected, when it matters


def converse(
    catalogue: Catalogue,
    turns: list[Turn],
    candidates: tuple[Candidate, ...] = (ALEX,),
    policy: Policy | None = None,
    start: Conversation | None = None,
) -> Conversation:
    """Plays the turns as the service would, asserting each reply, state and upstream call."""
    conv = start or Conversation()
    for number, turn in enumerate(turns, start=1):
        ctx = Context(T0 + timedelta(minutes=turn.minutes), candidates, policy or Policy())
        reading = read(turn.text, catalogue.lexicon, expecting(conv, ctx))
        decision: Decision = step(conv, reading, ctx)
        answers, performed = list(turn.upstream), []
        while decision.action is not None:
            assert answers, f"turn {number} {turn.text!r}: unexpected call {decision.action}"
            performed.append(decision.action)
            decision = resume(decision, answers.pop(0), ctx)
        where = f"turn {number} {turn.text!r} ({reading.why})"
        assert not answers, f"{where}: upstream answers left over: {answers}"
        assert (decision.reply.key if decision.reply else None) == turn.reply, where
        assert decision.state is turn.state, where
        if turn.actions is not None:
            assert performed == turn.actions, where
        render(catalogue.prompts(), decision.reply)  # every reply renders
        conv = Conversation(decision.state, decision.data)
    return conv


ALEX_NOW = Checkin(ALEX_T)
ALEX_FORCED = Checkin(ALEX_T, force=True)
C = State.CHECKED_IN

TRANSCRIPTS: dict[str, list[Turn]] = {
    "on time": [Turn("here", [CASE], "checked_in", C, actions=[ALEX_NOW])],
    "answer lost, the look-up finds the ticket": [
        Turn(
            "here",
            [LOST, CASE],
            "checked_in",
            C,
            actions=[ALEX_NOW, Reconcile(ALEX_T, T0.isoformat())],
        ),
    ],
    "answer lost, nothing enqueued: asked to text HERE again": [
        Turn("here", [LOST, NotEnqueued()], "checkin_not_done"),
        Turn("here", [CASE], "checked_in", C, minutes=1, actions=[ALEX_NOW]),
    ],
    "answer lost, VirtualQ cannot tell: each text looks it up first, never re-sends": [
        Turn("here", [LOST, DOWN], "checkin_unconfirmed"),
        Turn("status", [DOWN], "checkin_unconfirmed", minutes=1),
        Turn("here", [DOWN], "checkin_unconfirmed", minutes=2),
        Turn(
            "here",
            [NotEnqueued(), CASE],
            "checked_in",
            C,
            minutes=3,
            actions=[
                Reconcile(ALEX_T, T0.isoformat(), arrival=True),
                ALEX_NOW,
            ],
        ),
    ],
    "answer lost, found on a later text (a STATUS)": [
        Turn("here", [LOST, DOWN], "checkin_unconfirmed"),
        Turn("status", [CASE], "checked_in", C, minutes=1),
    ],
    "answer lost, a later STATUS finds nothing: asked to text HERE": [
        Turn("here", [LOST, DOWN], "checkin_unconfirmed"),
        Turn("status", [NotEnqueued()], "checkin_not_done", minutes=1),
    ],
    "answer lost, forgotten after the visit like a check-in": [
        Turn("here", [LOST, DOWN], "checkin_unconfirmed"),
        Turn("here", [CASE], "checked_in", C, minutes=13 * 60, actions=[ALEX_NOW]),
    ],
    "early, the forced check-in's answer lost, then found": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes", [LOST, CASE], "checked_in", C, minutes=1),
    ],
    "next in line": [Turn("HERE!", [NEXT], "checked_in_next", C)],
    "no position from upstream": [
        Turn("here", [replace(CASE, position=None)], "checked_in_ticket_only", C)
    ],
    "early, yes forces": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes", [CASE], "checked_in", C, minutes=2, actions=[ALEX_FORCED]),
    ],
    "late, yes forces": [
        Turn("i'm here", [Refusal.LATE], "confirm_late", State.AWAITING_CONFIRM),
        Turn("Yep 👍", [CASE], "checked_in", C, actions=[ALEX_FORCED]),
    ],
    "early, no waits": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("no", [], "declined"),
        Turn("here", [CASE], "checked_in", C, minutes=30, actions=[ALEX_NOW]),
    ],
    "early, yes double-texted: the second gets the status": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes", [CASE], "checked_in", C, actions=[ALEX_FORCED]),
        Turn("yes", [CASE], "status", C, actions=[GetCase(42)]),
    ],
    "early, garbled answer asked again once then help": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("what?", [], "confirm_again", State.AWAITING_CONFIRM),
        Turn("hmm", [], "help"),
    ],
    "early, yes after expiry": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes", [], "confirm_expired", minutes=10),
    ],
    "early, here after expiry asks upstream again": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("here", [CASE], "checked_in", C, minutes=45, actions=[ALEX_NOW]),
    ],
    "early, both yes and no is asked again": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes no", [], "confirm_again", State.AWAITING_CONFIRM),
    ],
    "forced check-in refused again sends to reception": [
        Turn("here", [Refusal.LATE], "confirm_late", State.AWAITING_CONFIRM),
        Turn("yes", [Refusal.LATE], "upstream_unavailable"),
    ],
    "forced check-in with upstream down does not stay stuck": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes", [DOWN], "upstream_unavailable"),
        Turn("here", [CASE], "checked_in", C),
    ],
    "prevent auto queue sends to reception": [
        Turn("here", [Refusal.PREVENT_AUTO_QUEUE], "see_reception_prevent_auto_queue")
    ],
    "no appointment today": [Turn("here", [Refusal.NOT_FOUND], "no_appointment")],
    "already checked in elsewhere": [
        Turn("here", [Refusal.ALREADY_CHECKED_IN], "already_checked_in")
    ],
    "unclassified refusal": [Turn("here", [Refusal.OTHER], "upstream_unavailable")],
    "upstream down": [
        Turn("here", [DOWN], "upstream_unavailable"),
        Turn("here", [CASE], "checked_in", C),
    ],
    "here again fetches the case instead of checking in twice": [
        Turn("here", [CASE], "checked_in", C),
        Turn(
            "here",
            [replace(CASE, position=1)],
            "status",
            C,
            minutes=5,
            actions=[GetCase(42, arrival=True)],
        ),
    ],
    "status while checked in": [
        Turn("here", [CASE], "checked_in", C),
        Turn("STATUS", [NEXT], "status_next", C, actions=[GetCase(42)]),
        Turn("how long?", [replace(CASE, wait=None)], "status_ticket_only", C),
    ],
    "status with upstream down remembers the ticket": [
        Turn("here", [CASE], "checked_in", C),
        Turn("status", [DOWN], "status_remembered", C),
    ],
    "here after the visit finished checks in anew": [
        Turn("here", [CASE], "checked_in", C),
        Turn(
            "here",
            [DONE, CASE],
            "checked_in",
            C,
            minutes=90,
            actions=[GetCase(42, arrival=True), ALEX_NOW],
        ),
    ],
    "here when the case vanished checks in anew": [
        Turn("here", [CASE], "checked_in", C),
        Turn("here", [Refusal.NOT_FOUND, CASE], "checked_in", C),
    ],
    "status after the visit finished": [
        Turn("here", [CASE], "checked_in", C),
        Turn("status", [DONE], "status_finished"),
    ],
    "the next day's here is a new check-in": [
        Turn("here", [CASE], "checked_in", C),
        Turn("here", [CASE], "checked_in", C, minutes=24 * 60, actions=[ALEX_NOW]),
    ],
    "status before checking in": [Turn("status", [], "status_not_checked_in")],
    "help": [Turn("HELP", [], "help")],
    "help keeps an open question open": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("help", [], "help", State.AWAITING_CONFIRM),
        Turn("yes", [CASE], "checked_in", C),
    ],
    "a question the bot cannot answer": [Turn("what time do you close", [], "question")],
    "unrecognised text": [Turn("purple monkey dishwasher", [], "hint")],
    "empty mms body": [Turn("", [], "hint")],
    "yes out of the blue": [Turn("yes", [], "hint")],
    "running late": [Turn("running late, 10 min", [], "running_late")],
    "leave": [Turn("I want to leave", [], "leave")],
    "leave while checked in: asked, then the case is cancelled": [
        Turn("here", [CASE], "checked_in", C),
        Turn("I can't make it anymore", [], "leave_confirm", State.AWAITING_LEAVE),
        Turn("yes", [Done()], "left_queue", State.IDLE, actions=[CancelCase(42)]),
    ],
    "leave while checked in, then no: still in the queue": [
        Turn("here", [CASE], "checked_in", C),
        Turn("take me off the list", [], "leave_confirm", State.AWAITING_LEAVE),
        Turn("no actually I'll stay", [], "leave_kept", C),
        Turn("status", [NEXT], "status_next", C),
    ],
    "a yes to leaving that says more leaves no one's queue": [
        Turn("here", [CASE], "checked_in", C),
        Turn("I can't make it anymore", [], "leave_confirm", State.AWAITING_LEAVE),
        Turn("yes I'm still here, where do I go?", [], "leave_confirm", State.AWAITING_LEAVE),
        Turn("yes keep my place", [], "leave_kept", C),
    ],
    "a yes with a question to the early check-in is asked again": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes what does early mean?", [], "confirm_again", State.AWAITING_CONFIRM),
        Turn("yes", [CASE], "checked_in", C, actions=[ALEX_FORCED]),
    ],
    "leaving fails upstream: still checked in, told to see reception": [
        Turn("here", [CASE], "checked_in", C),
        Turn("leave", [], "leave_confirm", State.AWAITING_LEAVE),
        Turn("yes", [DOWN], "leave_failed", C),
    ],
    "thanks after the ticket is acknowledged, never 'text HERE'": [
        Turn("here", [CASE], "checked_in", C),
        Turn("Great, thanks!", [], "welcome", C),
        Turn("🙏", [], "welcome", C),
    ],
    "unsure: asked, then yes checks in": [
        Turn("in the car park", [], "clarify_arrival", State.AWAITING_ARRIVAL),
        Turn("yes I'm inside now", [CASE], "checked_in", C, actions=[ALEX_NOW]),
    ],
    "unsure: asked, then not yet": [
        Turn("J'arrive", [], "clarify_arrival", State.AWAITING_ARRIVAL),
        Turn("no 5 min away", [], "running_late"),
    ],
    "questions, negations and the future never check in": [
        Turn("How do I check in?", [], "help"),
        Turn("I won't be here until 3", [], "running_late"),
        Turn("I'll be there in 10", [], "running_late"),
        Turn("what time should I arrive?", [], "question"),
        Turn("Is it ok to arrive early?", [], "question"),
    ],
    "ok I'll wait declines the early check-in": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("ok I'll wait", [], "declined"),
    ],
    "no problem, check me in is a yes": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("no problem, check me in", [CASE], "checked_in", C, actions=[ALEX_FORCED]),
    ],
    "a language asked for is remembered by the service": [
        Turn("español", [], "language_set"),
    ],
    "opt out is silent and sticks": [
        Turn("STOP", [], None, State.OPTED_OUT),
        Turn("here", [], None, State.OPTED_OUT),
        Turn("START", [], "opted_in"),
        Turn("here", [CASE], "checked_in", C),
    ],
    "yes opts back in as twilio does": [
        Turn("stop", [], None, State.OPTED_OUT),
        Turn("YES", [], "opted_in"),
    ],
    "opt out during a question": [
        Turn("here", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("stop", [], None, State.OPTED_OUT),
    ],
    "start when not opted out": [Turn("start", [], "opted_in")],
}


@pytest.mark.parametrize("name", TRANSCRIPTS)
def test_transcript(catalogue: Catalogue, name: str) -> None:
    converse(catalogue, TRANSCRIPTS[name])


SHARED = (ALEX, SAM)

SAM_T = Target("S1002", None, "Sam Smith")
SAM_CASE = CaseView(case_id=43, ticket="C004", position=0, wait=0)

SHARED_PHONE: dict[str, list[Turn]] = {
    "both checks everyone in, one after the other": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn(
            "both of us",
            [CASE, SAM_CASE],
            "checked_in_people",
            C,
            actions=[Checkin(ALEX_T), Checkin(SAM_T)],
        ),
        Turn("status", [CASE, SAM_CASE], "status_people", C),
    ],
    "one, then HERE again offers the other": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("It's Alex", [CASE], "checked_in", C, actions=[ALEX_NOW]),
        Turn("here", [], "choose_more", State.AWAITING_CHOICE, minutes=5),
        Turn("sam", [SAM_CASE], "checked_in_next", C, actions=[Checkin(SAM_T)]),
        Turn("how long", [CASE, SAM_CASE], "status_people", C),
    ],
    "one, then HERE again and no: the status": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("the first one", [CASE], "checked_in", C),
        Turn("here", [], "choose_more", State.AWAITING_CHOICE),
        Turn("no", [CASE], "status", C, actions=[GetCase(42)]),
    ],
    "everyone, the second early: asked, then forced": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("3", [CASE, Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("yes", [SAM_CASE], "checked_in_people", C, actions=[Checkin(SAM_T, force=True)]),
    ],
    "choose by number": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("2", [CASE], "checked_in", C, actions=[Checkin(SAM_T)]),
    ],
    "choose by first name": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("alex", [CASE], "checked_in", C, actions=[ALEX_NOW]),
    ],
    "a choice out of range is asked again": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("7", [], "choose_again", State.AWAITING_CHOICE),
        Turn("1", [Refusal.EARLY], "confirm_early", State.AWAITING_CONFIRM),
        Turn("y", [CASE], "checked_in", C, actions=[ALEX_FORCED]),
    ],
    "no while choosing": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("no", [], "declined"),
    ],
    "a choice expires": [
        Turn("here", [], "choose", State.AWAITING_CHOICE),
        Turn("1", [], "hint", minutes=11),
    ],
}


@pytest.mark.parametrize("name", SHARED_PHONE)
def test_shared_phone_transcript(catalogue: Catalogue, name: str) -> None:
    converse(catalogue, SHARED_PHONE[name], candidates=SHARED)


def test_unknown_number_is_sent_to_reception(catalogue: Catalogue) -> None:
    converse(catalogue, [Turn("here", [], "unknown_number")], candidates=())


FALLBACK = Policy(booking_number_fallback=True)
BOOKING = Checkin(Target(case_id=123456))


@pytest.mark.parametrize(
    "turns",
    [
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("123456", [CASE], "checked_in", C, actions=[BOOKING]),
        ],
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn(
                "booking 123456",
                [Refusal.NOT_FOUND],
                "booking_number_not_found",
                State.AWAITING_IDENTIFIER,
            ),
            Turn("654321", [CASE], "checked_in", C),
        ],
        [
            Turn("123456", [], "clarify_arrival", State.AWAITING_ARRIVAL),
            Turn("yes", [CASE], "checked_in", C, actions=[BOOKING]),
        ],
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("dunno", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("dunno", [], "help"),
        ],
        [
            # Numbers that are not the booking's to check in now: asked again, never tried.
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn(
                "not 123465, it's the old one", [], "ask_booking_number", State.AWAITING_IDENTIFIER
            ),
            Turn("123456", [CASE], "checked_in", C, actions=[BOOKING]),
        ],
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("either 123456 or 123465", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("123 456", [CASE], "checked_in", C, actions=[BOOKING]),
        ],
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("my cell is 0412 555 918", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("123456 is for tomorrow", [], "help"),
        ],
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("PLZ 10115?", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("预约号是一二三四五六", [CASE], "checked_in", C, actions=[BOOKING]),
        ],
    ],
    ids=[
        "asked then given",
        "wrong number then right",
        "a number alone is asked about",
        "gives up",
        "not that one",
        "which one, then in two groups",
        "a phone, then another day",
        "a postcode asked, then in Chinese digits",
    ],
)
def test_booking_number_fallback(catalogue: Catalogue, turns: list[Turn]) -> None:
    converse(catalogue, turns, candidates=(), policy=FALLBACK)


def test_a_booking_number_of_another_length_is_asked_for_again(catalogue: Catalogue) -> None:
    """BOOKING_NUMBER_DIGITS=6: "12345" (five digits) is not tried as a booking number."""
    sixes = Policy(booking_number_fallback=True, booking_number_digits=(6, 6))
    converse(
        catalogue,
        [
            Turn("here", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("12345", [], "ask_booking_number", State.AWAITING_IDENTIFIER),
            Turn("123456", [CASE], "checked_in", C, actions=[BOOKING]),
        ],
        candidates=(),
        policy=sixes,
    )


def test_prevent_auto_queue_can_be_forced_when_the_deployer_allows(catalogue: Catalogue) -> None:
    converse(
        catalogue,
        [
            Turn(
                "here",
                [Refusal.PREVENT_AUTO_QUEUE],
                "confirm_prevent_auto_queue",
                State.AWAITING_CONFIRM,
            ),
            Turn("yes", [CASE], "checked_in", C, actions=[ALEX_FORCED]),
        ],
        policy=Policy(force_prevent_auto_queue=True),
    )


def test_checked_in_replies_count_from_one(catalogue: Catalogue) -> None:
    pending = Decision(State.IDLE, {}, None, ALEX_NOW)
    decision = resume(pending, CASE, Context(T0, (ALEX,)))
    text = render(catalogue.prompts(), decision.reply)
    assert text is not None
    assert "Ticket A012" in text and "number 3 in line" in text and "15 min" in text
    assert decision.data["case_id"] == 42


def test_every_state_has_a_transcript() -> None:
    seen = {t.state for turns in (*TRANSCRIPTS.values(), *SHARED_PHONE.values()) for t in turns}
    assert seen >= set(State) - {State.AWAITING_IDENTIFIER}  # covered by the fallback tests
