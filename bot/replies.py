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
    # Pieces of the CHOOSE texts: one per person, joined with the separator.
    CHOICE_ITEM = "choice_item"
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
    K.CHOICE_ITEM: ("number", "name"),
}
# The placeholders each text must use (and may not go beyond); the rest use none.
PLACEHOLDERS: dict[ReplyKey, frozenset[str]] = {
    key: frozenset(_VALUES.get(key, ())) for key in ReplyKey
}

# Texts that list people (rendered with Prompts.render_choices), and pieces that are never
# sent on their own.
CHOICE_LISTS = frozenset({K.CHOOSE, K.CHOOSE_AGAIN})
PIECES = frozenset({K.CHOICE_ITEM, K.CHOICE_SEPARATOR})

# A ticket given, for the threads' outcome (and the ticket's time).
TICKET_GIVEN = frozenset({K.CHECKED_IN, K.CHECKED_IN_NEXT, K.CHECKED_IN_TICKET_ONLY})
