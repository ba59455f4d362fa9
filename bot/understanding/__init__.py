"""Understanding what customers mean: `text` makes a text comparable, `lexicon` indexes every
language's phrases (bot/prompts/<lang>.toml [understand]), `reading` decides a meaning with
the conversation's open question in mind, and says why."""

from __future__ import annotations

from .lexicon import Lexicon, build
from .reading import EVERYONE, NOBODY, NOTHING, Expecting, Meaning, Reading, Topic, read

__all__ = [
    "EVERYONE",
    "NOBODY",
    "NOTHING",
    "Expecting",
    "Lexicon",
    "Meaning",
    "Reading",
    "Topic",
    "build",
    "read",
]
