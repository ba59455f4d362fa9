"""Every reply the bot can send, by key: the vocabulary the conversation decides in, prompts/
words, the threads' outcomes are moved by and the staff pages show. Each key's text lives in
prompts/<lang>.toml under [texts], and must use exactly the placeholders listed here."""

from __future__ import annotations

from enum import StrEnum


class ReplyKey(StrEnum):
    CHECKED_IN = "checked_in"
    CHECKED_IN_NEXT = "checked_in_next"
    CHECKED_IN_TICKET_ONLY = "checked_in_ticket_only"
    STATUS = "status"
    STATUS_NEXT = "status_next"
    STATUS_TICKET_ONLY = "status_ticket_only"
    STATUS_REMEMBERED = "status_remembered"
    STATUS_FINISHED = "status_finished"
    STATUS_NOT_CHECKED_IN = "status_not_checked_in"
    ALREADY_CHECKED_IN = "already_checked_in"
    CONFIRM_EARLY = "confirm_early"
    CONFIRM_LATE = "confirm_late"
    CONFIRM_PREVENT_AUTO_QUEUE = "confirm_prevent_auto_queue"
    CONFIRM_AGAIN = "confirm_again"
    DECLINED = "declined"
    CONFIRM_EXPIRED = "confirm_expired"
    SEE_RECEPTION_PREVENT_AUTO_QUEUE = "see_reception_prevent_auto_queue"
    NO_APPOINTMENT = "no_appointment"
    UNKNOWN_NUMBER = "unknown_number"
    ASK_BOOKING_NUMBER = "ask_booking_number"
    BOOKING_NUMBER_NOT_FOUND = "booking_number_not_found"
    CHOOSE = "choose"
    CHOOSE_AGAIN = "choose_again"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    CHECKIN_NOT_DONE = "checkin_not_done"
    CHECKIN_UNCONFIRMED = "checkin_unconfirmed"
    HOLDING = "holding"
    HOLDING_SEE_RECEPTION = "holding_see_reception"
    RATE_LIMITED = "rate_limited"
    HELP = "help"
    HINT = "hint"
    RUNNING_LATE = "running_late"
    LEAVE = "leave"
    OPTED_IN = "opted_in"
    CLARIFY_ARRIVAL = "clarify_arrival"
    CHOOSE_MORE = "choose_more"
    STATUS_PERSON = "status_person"
    STATUS_PERSON_NEXT = "status_person_next"
    STATUS_SEPARATOR = "status_separator"
    WELCOME = "welcome"
    WELCOME_IDLE = "welcome_idle"
    HINT_CHECKED_IN = "hint_checked_in"
    GREETING = "greeting"
    QUESTION = "question"
    LANGUAGE_SET = "language_set"
    LANGUAGE_LIST = "language_list"
    NOTIFY_ALMOST = "notify_almost"
    NOTIFY_ALMOST_FOR = "notify_almost_for"
    NOTIFY_CALLED = "notify_called"
    NOTIFY_CALLED_FOR = "notify_called_for"
    NOTIFY_CALLED_DESK = "notify_called_desk"
    NOTIFY_CALLED_DESK_FOR = "notify_called_desk_for"
    NOTIFY_MISSED = "notify_missed"
    NOTIFY_MISSED_REQUEUE = "notify_missed_requeue"
    LEAVE_CONFIRM = "leave_confirm"
    LEFT_QUEUE = "left_queue"
    LEAVE_KEPT = "leave_kept"
    LEAVE_FAILED = "leave_failed"
    CANCEL_BOOKING_CONFIRM = "cancel_booking_confirm"
    ASK_BOOKING_NUMBER_CANCEL = "ask_booking_number_cancel"
    CHECKED_IN_PEOPLE = "checked_in_people"
    STATUS_PEOPLE = "status_people"
    BOOKING_CANCELLED = "booking_cancelled"
    # Pieces of the CHOOSE texts: one per person, "everyone", joined with the separator.
    CHOICE_ITEM = "choice_item"
    CHOICE_ALL = "choice_all"
    CHOICE_SEPARATOR = "choice_separator"


K = ReplyKey

_VALUES: dict[ReplyKey, tuple[str, ...]] = {
    K.CHECKED_IN: ("ticket", "position", "wait"),
    K.CHECKED_IN_NEXT: ("ticket",),
    K.CHECKED_IN_TICKET_ONLY: ("ticket",),
    K.STATUS: ("ticket", "position", "wait"),
    K.STATUS_NEXT: ("ticket",),
    K.STATUS_TICKET_ONLY: ("ticket",),
    K.STATUS_REMEMBERED: ("ticket",),
    K.BOOKING_NUMBER_NOT_FOUND: ("number",),
    K.CHOOSE: ("options",),
    K.CHOOSE_AGAIN: ("options",),
    K.CHOOSE_MORE: ("options",),
    K.CHOICE_ITEM: ("number", "name"),
    K.CHOICE_ALL: ("number",),
    K.STATUS_PERSON: ("name", "ticket", "position", "wait"),
    K.STATUS_PERSON_NEXT: ("name", "ticket"),
    K.NOTIFY_ALMOST: ("ticket", "position"),
    K.NOTIFY_ALMOST_FOR: ("name", "ticket", "position"),
    K.NOTIFY_CALLED: ("ticket", "counter"),
    K.NOTIFY_CALLED_FOR: ("name", "ticket", "counter"),
    K.NOTIFY_CALLED_DESK: ("ticket",),
    K.NOTIFY_CALLED_DESK_FOR: ("name", "ticket"),
    K.NOTIFY_MISSED: ("ticket",),
    K.NOTIFY_MISSED_REQUEUE: ("ticket",),
    K.LEAVE_CONFIRM: ("ticket",),
    K.LEFT_QUEUE: ("ticket",),
    K.LEAVE_KEPT: ("ticket",),
    K.CHECKED_IN_PEOPLE: ("lines",),
    K.STATUS_PEOPLE: ("lines",),
}
# The placeholders each text must use (and may not go beyond); the rest use none.
PLACEHOLDERS: dict[ReplyKey, frozenset[str]] = {
    key: frozenset(_VALUES.get(key, ())) for key in ReplyKey
}

# Texts that list people (rendered with Prompts.render_choices), and pieces that are never
# sent on their own.
CHOICE_LISTS = frozenset({K.CHOOSE, K.CHOOSE_AGAIN, K.CHOOSE_MORE})
PIECES = frozenset(
    {
        K.CHOICE_ITEM,
        K.CHOICE_ALL,
        K.CHOICE_SEPARATOR,
        K.STATUS_PERSON,
        K.STATUS_PERSON_NEXT,
        K.STATUS_SEPARATOR,
    }
)

# Texts made of several people's lines (rendered with Prompts.render_lines).
LINES = frozenset({K.CHECKED_IN_PEOPLE, K.STATUS_PEOPLE})

# A ticket given, for the threads' outcome (and the ticket's time).
TICKET_GIVEN = frozenset(
    {K.CHECKED_IN, K.CHECKED_IN_NEXT, K.CHECKED_IN_TICKET_ONLY, K.CHECKED_IN_PEOPLE}
)
