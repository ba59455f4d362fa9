"""Every language's phrases from bot/prompts/<lang>.toml [understand], indexed to be found in a
text in microseconds: by first word, Chinese, Japanese and Korean by characters, spelling
slips by deletions."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .text import is_cjk_word, plain, words_of

# The [understand] lists that carry a meaning, and those that qualify one.
MEANINGS = (
    "arrive",
    "check_in",
    "late",
    "not_yet",
    "unclear",
    "status",
    "leave",
    "help",
    "question",
    "yes",
    "no",
    "thanks",
    "greeting",
    "all",
    "none",
)
# Qualifiers that only mention something: found where no longer phrase took the words, and
# taking none themselves (a meaning may need them: "con trai tôi tới rồi"). A qualifying list
# is a mention when it is named here, and only then.
MENTION_LISTS = (
    "others",
    "self",
    "both",
    "option",
    "numbered",
    "booking",
    "vocative",
    "available",
    "present",
    "another",
    "whereabouts",
    "astray",
    "heard",
    "correction",
    "forwarded",
)
QUALIFIERS = ("question_start", "negation", "future", "past", "neutral", "reported", *MENTION_LISTS)
MENTIONS = frozenset(MENTION_LISTS)
LISTS = MEANINGS + QUALIFIERS
MIN_TYPO_LENGTH = 4  # a slip is forgiven only on words this long or longer


@dataclass(frozen=True, slots=True)
class Phrase:
    """One phrase of a language's list: its words in plain form (a Han, kana or Hangul phrase
    is one word, found inside a run of characters), and what it means."""

    words: tuple[str, ...]
    kind: str  # one of LISTS
    language: str
    han: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.words)


@dataclass
class Lexicon:
    """All languages' phrases, indexed."""

    languages: tuple[str, ...] = ()
    by_first: dict[str, list[Phrase]] = field(default_factory=dict)  # longest first
    han: list[Phrase] = field(default_factory=list)  # longest first
    # The same, by first character: (rank in `han`, phrase), to look up only the phrases that
    # can start at each character of a run instead of searching the run for every phrase.
    han_at: dict[str, list[tuple[int, Phrase]]] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)  # every word the lexicon knows
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    ordinals: dict[str, int] = field(default_factory=dict)
    nicknames: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> shortenings
    language_names: dict[str, str] = field(default_factory=dict)  # plain name -> code
    # Those of two or more Han, kana or Hangul characters, found inside a run ("英語でお願い").
    cjk_language_names: list[tuple[str, str]] = field(default_factory=list)
    commands: set[str] = field(default_factory=set)  # words every language uses: no evidence
    language_words: set[str] = field(default_factory=set)  # "language", "idioma"…
    opt_out: frozenset[str] = frozenset()
    opt_in: frozenset[str] = frozenset()
    typo_keywords: dict[str, set[str]] = field(default_factory=dict)  # deletion -> keywords
    typo_never: set[str] = field(default_factory=set)
    # Readings of short texts already read (reading.py's `read`): a check-in desk's texts are
    # mostly the same few words, and a reading is a pure function of the text, the question
    # open and the language preferred. Filled after the lexicon is built, never before.
    readings: dict[tuple[str, object, str | None], object] = field(
        default_factory=dict, compare=False, repr=False
    )

    def phrases_at(self, word: str) -> Sequence[Phrase]:
        return self.by_first.get(word, ())

    def has_phrase(self, text: str) -> bool:
        """Whether some list of some language has this phrase (plain words, space-separated).
        Looked up in the indexes rather than kept as a set of its own: that set was 3 MiB of
        every worker's memory."""
        words = tuple(text.split())
        if len(words) == 1 and is_cjk_word(words[0]):
            return any(p.words == words for _, p in self.han_at.get(words[0][0], ()))
        return bool(words) and any(p.words == words for p in self.by_first.get(words[0], ()))

    def slip_for(self, word: str) -> str | None:
        """The keyword a word is one slip away from (a letter wrong, missing, extra or two
        swapped), when exactly one is; None for words that are words of their own."""
        if len(word) < MIN_TYPO_LENGTH - 1 or word in self.typo_never or word in self.known:
            return None
        found = set()
        for variant in (word, *_deletions(word)):
            found |= self.typo_keywords.get(variant, set())
        found = {k for k in found if _one_slip(word, k)}
        return found.pop() if len(found) == 1 else None


def _deletions(word: str) -> Iterator[str]:
    for i in range(len(word)):
        yield word[:i] + word[i + 1 :]


def _one_slip(a: str, b: str) -> bool:
    """One insertion, deletion, substitution, or swap of neighbours turns a into b."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diffs) == 1 or (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    shorter, longer = (a, b) if len(a) < len(b) else (b, a)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def phrase_words(text: str) -> tuple[tuple[str, ...], bool]:
    """A phrase as a lexicon keeps it: its plain words (one copy of each word, however many
    phrases have it), and whether it is Han (one word)."""
    words = tuple(sys.intern(word) for word in words_of(plain(text)))
    han = len(words) == 1 and is_cjk_word(words[0])
    return words, han


def build(languages: Mapping[str, Mapping[str, object]]) -> Lexicon:
    """The lexicon of every language's [understand] table (already checked by the loader)."""
    lexicon = Lexicon(languages=tuple(languages))
    seen: set[tuple[tuple[str, ...], str, str]] = set()
    for language, table in languages.items():
        for kind in LISTS:
            for entry in _strings(table.get(kind, ())):
                words, han = phrase_words(entry)
                if not words or (words, kind, language) in seen:
                    continue
                seen.add((words, kind, language))
                phrase = Phrase(words, kind, language, han)
                if han:
                    lexicon.han.append(phrase)
                else:
                    lexicon.by_first.setdefault(words[0], []).append(phrase)
                    lexicon.known.update(words)
        for raw, code in _pairs(table.get("names", ()), language):
            lexicon.language_names[raw] = code
        for source, target in _mapping(table.get("aliases")).items():
            alias = tuple(words_of(plain(source)))
            if len(alias) == 1:
                lexicon.aliases.setdefault(alias[0], tuple(words_of(plain(str(target)))))
        for word, value in _mapping(table.get("numbers")).items():
            lexicon.numbers.setdefault(plain(word), int(value))  # type: ignore[call-overload]
        for name, shortenings in _mapping(table.get("nicknames")).items():
            known = lexicon.nicknames.get(plain(name), ())
            more = tuple(plain(str(n)) for n in _strings(shortenings))
            lexicon.nicknames[plain(name)] = known + tuple(n for n in more if n not in known)
        for word, value in _mapping(table.get("ordinals")).items():
            lexicon.ordinals.setdefault(plain(word), int(value))  # type: ignore[call-overload]
        lexicon.commands.update(plain(w) for w in _strings(table.get("commands", ())))
        lexicon.language_words.update(
            " ".join(phrase_words(w)[0]) for w in _strings(table.get("language_words", ()))
        )
        lexicon.typo_never.update(plain(w) for w in _strings(table.get("typo_never", ())))
        for keyword in _strings(table.get("typo_ok", ())):
            key = plain(keyword)
            if len(key) >= MIN_TYPO_LENGTH:
                for variant in (key, *_deletions(key)):
                    lexicon.typo_keywords.setdefault(variant, set()).add(key)
        lexicon.opt_out = lexicon.opt_out | {plain(w) for w in _strings(table.get("opt_out", ()))}
        lexicon.opt_in = lexicon.opt_in | {plain(w) for w in _strings(table.get("opt_in", ()))}
    lexicon.known.update(lexicon.numbers, lexicon.ordinals, lexicon.language_names)
    lexicon.cjk_language_names = [
        (name, code)
        for name, code in lexicon.language_names.items()
        if is_cjk_word(name) and len(name) >= 2
    ]
    for phrases in lexicon.by_first.values():
        phrases.sort(key=lambda p: -len(p.words))
    lexicon.han.sort(key=lambda p: -len(p.words[0]))
    for rank, phrase in enumerate(lexicon.han):
        lexicon.han_at.setdefault(phrase.words[0][0], []).append((rank, phrase))
    return lexicon


def _strings(value: object) -> Iterable[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _pairs(names: object, language: str) -> Iterator[tuple[str, str]]:
    for name in _strings(names):
        words, _ = phrase_words(name)
        if words:
            yield " ".join(words), language
