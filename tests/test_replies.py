"""One vocabulary of replies: every key has its text, every text is a key, and what the
conversation, the threads and the staff pages say about a key agrees."""

from __future__ import annotations

import string

from bot.prompts import Prompts
from bot.replies import CHOICE_LISTS, PIECES, PLACEHOLDERS, TICKET_GIVEN, ReplyKey
from bot.threads import LABELS, TICKETED, ThreadOutcome, advance


def test_every_reply_key_has_a_text_and_every_text_a_key(prompts: Prompts) -> None:
    assert set(prompts.texts) == {k.value for k in ReplyKey}


def test_each_text_uses_exactly_its_placeholders(prompts: Prompts) -> None:
    for key, wanted in PLACEHOLDERS.items():
        used = {n for _, n, _, _ in string.Formatter().parse(prompts.texts[key]) if n}
        assert used == wanted, key


def test_giving_a_ticket_is_what_makes_a_thread_checked_in() -> None:
    for key in ReplyKey:
        after = advance(ThreadOutcome.OTHER, key, opted_out=False)
        assert (after in TICKETED) == (key in TICKET_GIVEN), key


def test_every_thread_outcome_has_a_label_for_staff() -> None:
    assert set(LABELS) == set(ThreadOutcome)


def test_pieces_and_lists_are_keys() -> None:
    assert PIECES <= set(ReplyKey) and CHOICE_LISTS <= set(ReplyKey)
