from __future__ import annotations

import pytest

from bot.intents import Intent, parse
from bot.prompts import Prompts

A, Y, N, S, H = Intent.ARRIVE, Intent.YES, Intent.NO, Intent.STATUS, Intent.HELP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("here", {A}),
        ("HERE!", {A}),
        ("i'm here", {A}),
        ("I’m here", {A}),
        ("arrived", {A}),
        ("hre", {A}),
        ("heer", {A}),
        ("Here 👍", {A}),
        ("  here\n", {A}),
        ("Héré", {A}),
        ("check-in please", {A}),
        ("yes", {Y}),
        ("y", {Y}),
        ("Yeah", {Y}),
        ("yep", {Y}),
        ("OK", {Y}),
        ("no", {N}),
        ("nope.", {N}),
        ("status", {S}),
        ("STATSU", {S}),
        ("how long is the wait?", {S}),
        ("help", {H}),
        ("not here yet", {Intent.RUNNING_LATE}),
        ("running late sorry", {Intent.RUNNING_LATE}),
        ("leave", {Intent.LEAVE}),
    ],
)
def test_keywords_are_read_generously(prompts: Prompts, text: str, expected: set[Intent]) -> None:
    assert parse(text, prompts).intents == expected


@pytest.mark.parametrize(
    "text",
    ["where do I go?", "there in 5", "were you open", "her car", "hello", "👍", "", "asdf"],
)
def test_words_near_a_keyword_are_not_mistaken_for_it(prompts: Prompts, text: str) -> None:
    assert Intent.ARRIVE not in parse(text, prompts).intents


@pytest.mark.parametrize(
    "word",
    ["STOP", "stop", " Unsubscribe ", "CANCEL", "end", "QUIT", "stopall", "revoke", "optout"],
)
def test_opt_out_words_are_recognised_only_as_the_whole_message(
    prompts: Prompts, word: str
) -> None:
    assert parse(word, prompts).intents == {Intent.OPT_OUT}
    assert Intent.OPT_OUT not in parse(f"please {word} it", prompts).intents


def test_start_and_unstop_opt_back_in(prompts: Prompts) -> None:
    assert parse("START", prompts).intents == {Intent.OPT_IN}
    assert parse("unstop", prompts).intents == {Intent.OPT_IN}


def test_exact_keywords_win_over_typos(prompts: Prompts) -> None:
    # "heer" alone is HERE; beside an exact YES it is not guessed at.
    assert parse("yes heer", prompts).intents == {Y}


@pytest.mark.parametrize(
    ("text", "number"),
    [("1", "1"), ("booking 123456", "123456"), ("#2!", "2"), ("1 or 2", None), ("here", None)],
)
def test_a_single_number_is_picked_out(prompts: Prompts, text: str, number: str | None) -> None:
    assert parse(text, prompts).number == number


def test_any_unicode_and_very_long_text_is_parsed(prompts: Prompts) -> None:
    text = "\u202e\u0000مرحبا 🙂 " * 200 + " here"
    assert Intent.ARRIVE in parse(text, prompts).intents
