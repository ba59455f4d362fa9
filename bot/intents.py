"""What a customer's text means: intents read from prompts/ keyword lists, typos tolerated."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .prompts import Prompts, normalise_text


class Intent(StrEnum):
    ARRIVE = "arrive"
    YES = "yes"
    NO = "no"
    STATUS = "status"
    HELP = "help"
    LEAVE = "leave"
    RUNNING_LATE = "running_late"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


@dataclass(frozen=True)
class Parsed:
    """A customer's text read for meaning: its intents, the number in it and its words."""

    intents: frozenset[Intent]
    number: str | None
    words: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.words


_DIGITS = re.compile(r"^\d{1,12}$")
MIN_TYPO_KEYWORD = 4


def parse(text: str, prompts: Prompts) -> Parsed:
    """Read a message: the whole-message opt-out/in words first, then keywords anywhere in it."""
    normal = normalise_text(text)
    words = tuple(normal.split())
    numbers = [w for w in words if _DIGITS.match(w)]
    number = numbers[0] if len(numbers) == 1 else None
    # Twilio acts on these only when they are the entire message; so do we.
    if normal in prompts.opt_out:
        return Parsed(frozenset({Intent.OPT_OUT}), None, words)
    if normal in prompts.opt_in:
        return Parsed(frozenset({Intent.OPT_IN}), None, words)
    intents = _match(words, prompts, typos=False) or _match(words, prompts, typos=True)
    return Parsed(frozenset(intents), number, words)


def _match(words: tuple[str, ...], prompts: Prompts, *, typos: bool) -> set[Intent]:
    """Intents whose keyword phrases occur in the words; longer phrases claim their words first."""
    phrases = sorted(
        (
            (Intent(intent), tuple(keyword.split()))
            for intent, keywords in prompts.keywords.items()
            for keyword in keywords
        ),
        key=lambda item: -len(item[1]),
    )
    claimed = [False] * len(words)
    found: set[Intent] = set()
    for intent, phrase in phrases:
        size = len(phrase)
        for start in range(len(words) - size + 1):
            if any(claimed[start : start + size]):
                continue
            span = words[start : start + size]
            if all(_same(w, k, prompts, typos) for w, k in zip(span, phrase, strict=True)):
                found.add(intent)
                claimed[start : start + size] = [True] * size
    return found


def _same(word: str, keyword: str, prompts: Prompts, typos: bool) -> bool:
    if word == keyword:
        return True
    if not typos or len(keyword) < MIN_TYPO_KEYWORD or len(word) < MIN_TYPO_KEYWORD - 1:
        return False
    return word not in prompts.typo_exclusions and _one_edit_apart(word, keyword)


def _one_edit_apart(a: str, b: str) -> bool:
    """True when one insertion, deletion, substitution or swap of neighbours turns a into b."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    for i in range(len(longer)):
        if longer[:i] + longer[i + 1 :] == shorter:
            return True
    return False
