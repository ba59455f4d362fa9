"""What a customer means, read as a front-desk person would: with the conversation's question
in mind, in any language the lexicon knows, and never taking a maybe for an arrival.

`read(text, lexicon, expecting)` returns a `Reading`: one meaning, the language the text was
confidently written in (if any), and `why`, the phrase and rule that decided, for staff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from .lexicon import MENTIONS, Lexicon, Phrase
from .text import LINK, Clause, Text, is_cjk_word, plain, prepare, words_of


class Meaning(StrEnum):
    ARRIVE = "arrive"  # here now: check in
    UNSURE = "unsure"  # might be here, might not: ask
    NOT_YET = "not_yet"  # coming, late, later
    STATUS = "status"
    LEAVE = "leave"
    HELP = "help"
    QUESTION = "question"  # one the bot cannot answer
    YES = "yes"
    NO = "no"
    THANKS = "thanks"
    GREETING = "greeting"
    CHOICE = "choice"  # who, on a shared phone
    NUMBER = "number"  # a booking number
    LANGUAGE = "language"  # reply in another language (or: which are there?)
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    OTHER = "other"  # understood, and not for the bot (someone else's arrival…)
    UNKNOWN = "unknown"


class Topic(StrEnum):
    """What a YES/NO question asked."""

    ARRIVAL = "arrival"  # are you here now?
    FORCE = "force"  # early or late: check in anyway?
    LEAVE = "leave"  # leave the queue / cancel the booking?


@dataclass(frozen=True)
class Expecting:
    """The answer the conversation's open question expects (none: nothing is open)."""

    topic: Topic | None = None  # a YES/NO question
    names: tuple[str, ...] = ()  # a choice between these people, in their order
    everyone: int | None = None  # the number that means all of them in that choice
    booking_number: bool = False  # a booking number was asked for
    number_digits: tuple[int, int] = (3, 10)  # a booking number's length (BOOKING_NUMBER_DIGITS)


NOTHING = Expecting()
EVERYONE, NOBODY = 0, -1


@dataclass(frozen=True)
class Found:
    """A phrase found in a text."""

    phrase: Phrase
    clause: int
    start: int
    slip: str | None = None  # the word as texted, when it was a slip for the phrase's

    @property
    def kind(self) -> str:
        return self.phrase.kind

    @property
    def size(self) -> int:
        """How much of the text the phrase covers, in words (two Han characters a word)."""
        words = self.phrase.words
        return max(1, (len(words[0]) + 1) // 2) if self.phrase.han else len(words)

    def shown(self) -> str:
        text = f"'{self.phrase.text}' ({self.phrase.language})"
        return f"{text}, read from '{self.slip}'" if self.slip else text


@dataclass(frozen=True)
class Reading:
    """What a text means, and why."""

    meaning: Meaning
    why: str
    language: str | None = None  # the language it was confidently written in
    number: str | None = None  # a booking number in it
    choice: int | None = None  # 1-based; EVERYONE, NOBODY
    choose_language: str | None = None  # with LANGUAGE: the one asked for (None: list them)

    @property
    def label(self) -> str:
        """The meaning as the log's `intent` column keeps it."""
        if self.meaning is Meaning.CHOICE and self.choice is not None:
            return f"choice:{ {EVERYONE: 'all', NOBODY: 'none'}.get(self.choice, self.choice) }"
        if self.meaning is Meaning.LANGUAGE:
            return f"language:{self.choose_language or 'list'}"
        return self.meaning.value


# Texts up to this long are remembered with their readings, the latest this many per lexicon.
REMEMBER_MAX_CHARS = 40
REMEMBERED = 2048


def read(
    text: str, lexicon: Lexicon, expecting: Expecting = NOTHING, prefer: str | None = None
) -> Reading:
    """What `text` means to a conversation expecting `expecting`; `prefer` is the language
    the conversation is in (it settles a word two languages read differently)."""
    if len(text) > REMEMBER_MAX_CHARS:
        return _read(text, lexicon, expecting, prefer)
    key = (text, expecting, prefer)
    known = lexicon.readings.get(key)
    if known is None:
        if len(lexicon.readings) >= REMEMBERED:
            lexicon.readings.clear()
        known = lexicon.readings[key] = _read(text, lexicon, expecting, prefer)
    assert isinstance(known, Reading)
    return known


def _read(text: str, lexicon: Lexicon, expecting: Expecting, prefer: str | None) -> Reading:
    prepared = prepare(text)
    if prepared.whole in lexicon.opt_out:
        return Reading(Meaning.OPT_OUT, f"'{prepared.whole}': an opt-out word, the whole text")
    if prepared.whole in lexicon.opt_in:
        return Reading(Meaning.OPT_IN, f"'{prepared.whole}': an opt-in word, the whole text")
    every = [f for i, c in enumerate(prepared.clauses) for f in _find(c, i, lexicon)]
    # Mentions ("my daughter", "me", "both", "option") only qualify an answer or a choice:
    # they say nothing of the language or of a text's meaning with nothing open.
    found = [f for f in every if f.kind not in MENTIONS]
    language = _language(prepared, found, lexicon, prefer)
    settled = _settle(found, prefer or language)
    mentioned = settled + [f for f in every if f.kind in MENTIONS]
    number = _number(prepared, lexicon, expecting.number_digits)
    besides = _besides_number(prepared, mentioned, lexicon, language) if number else ""
    reading = None
    if expecting.topic is not None:
        reading = _answer(prepared, mentioned, expecting.topic, lexicon)
    elif expecting.names:
        reading = _choice(prepared, mentioned, expecting, lexicon)
    elif expecting.booking_number and number:
        if besides:  # "not 15608, that's my old one", "cancel 53109", "48213 is tomorrow's"
            why = f"asked again: the number {number}, but {besides}"
            reading = Reading(Meaning.UNKNOWN, why)
        else:
            reading = Reading(Meaning.NUMBER, f"the number {number}, asked for", number=number)
    unanswered = expecting.topic is not None and reading is None
    reading = (
        reading
        or _language_request(prepared, lexicon)
        or _meaning(prepared, settled, None if besides else number)
    )
    if unanswered and (
        reading.meaning is Meaning.YES
        or (reading.meaning is Meaning.LEAVE and expecting.topic is Topic.LEAVE)
    ):
        # A yes the answer's rules set aside ("ok" before "I'll text when I get there", a "y"
        # inside a sentence), or words for leaving they did not take for a yes to leaving
        # ("can I leave and come back?"), are no answer to the question: ask again.
        reading = Reading(Meaning.UNKNOWN, f"asked again: {reading.why}, not an answer")
    acting = reading.meaning is Meaning.ARRIVE or (
        reading.meaning is Meaning.YES and expecting.topic is not None
    )
    # "amor cheguei", "Schatz bin da", "お母さん、病院着いたよ": written to someone close;
    # "ya zdes, slushayu", "je suis là si t'as besoin": here meaning at hand; "I'm here,
    # where are you?", "我到了，你在哪个门？": written to someone meeting the sender; "I'm here
    # but the gate is closed", "estoy en el edificio equivocado", "я тут, запись на завтра же?":
    # maybe not where, or when, they should be.
    called = _called(prepared, every) if acting else None
    aside = next((f for f in every if f.kind in _ASIDE and _counts(f)), None) if acting else None
    why = ""
    if called is not None:
        why = f"{reading.why}, written to {called.shown()}?"
    elif aside is not None:
        why = f"{reading.why}, but {aside.shown()}: {_ASIDE[aside.kind]}"
    if why:
        if reading.meaning is Meaning.ARRIVE:
            reading = Reading(Meaning.UNSURE, f"asked to clarify: {why}")
        else:
            reading = Reading(Meaning.UNKNOWN, f"asked again: {why}")
    if reading.meaning is Meaning.ARRIVE and LINK.search(text):
        reading = Reading(Meaning.UNSURE, f"asked to clarify: {reading.why}, in a text with a link")
    choice = reading.choice
    if reading.meaning is Meaning.ARRIVE and _everyone_arrives(prepared, settled):
        choice = EVERYONE  # "here, both of us": a shared phone's people all arrive
    return Reading(reading.meaning, reading.why, language, number, choice, reading.choose_language)


# Mentions that make an arrival beside them one to ask about, and why.
_ASIDE = {
    "available": "at hand, or arrived?",
    "whereabouts": "asking where the one written to is: meeting someone?",
    "astray": "the right place and day, and in?",
    "forwarded": "a forwarded text: someone else's words?",
}


def _counts(found: Found) -> bool:
    """Whether an aside counts where it stands: a forward's mark only opening the text
    ("Reenviado: Mamá: ya llegué"; not "me han reenviado a la ventanilla 3")."""
    return found.kind != "forwarded" or (found.clause == 0 and found.start == 0)


# What may follow a name someone close is called by, in a text written to them: their news.
_TOLD = frozenset({"arrive", "check_in", "yes", "late", "not_yet", "unclear"})
# "With", "and" and a subject's particle after such a name: they are with the sender.
_WITH = ("と", "が", "は", "和", "跟", "랑", "하고", "와", "과", "이랑")


def _called(text: Text, found: list[Found]) -> Found | None:
    """Someone close called by name opening the text ("babe I'm here", "Mummy main hospital
    pahunch gaya", "老公我到医院了"): alone in its clause, or with the news right after it;
    not "Mom and I are here"."""
    greeted = max((g.size for g in found if g.kind == "greeting" and g.start == 0), default=0)
    news = [g for g in found if g.kind in _TOLD]
    for f in found:
        # Right after the news, to a group ("I'm here guys", "Bin da Leute", "Я тут, ребят").
        if f.kind == "vocative" and any(_right_after(text, g, f) for g in news):
            return f
        # Opening the text, or right after a greeting ("hey babe I'm here").
        if f.kind != "vocative" or f.clause != 0 or f.start not in (0, greeted):
            continue
        words = text.clauses[0].words
        if f.phrase.han:
            # The longest such name the run opens with ("妈妈", not "妈"); not followed by
            # "with" ("ママと一緒に着きました", "妈妈和我到了": mum and I).
            opening = [
                g.phrase.words[0]
                for g in found
                if g.kind == "vocative" and g.phrase.han and words[0].startswith(g.phrase.words[0])
            ]
            called = max(opening, key=len, default="")
            if called == f.phrase.words[0] and not words[0][len(called) :].startswith(_WITH):
                return f
            continue
        end = f.start + f.size
        if end == len(words):
            return f
        after = [g for g in found if g.clause == 0 and g.start == end]
        if any(g.kind in _TOLD or (g.kind == "self" and g.size == 1) for g in after):
            return f
        # A pronoun between ("Mẹ ơi con tới rồi"), then the news.
        later = [g for g in found if g.clause == 0 and g.start == end + 1]
        if any(g.kind in ("arrive", "check_in") for g in later):
            return f
    return None


def _right_after(text: Text, first: Found, then: Found) -> bool:
    """Whether `then` follows `first` at once, or one word on ("Nandito na ko guys"), or
    opens the next clause."""
    end = first.start + first.size
    if first.phrase.han:  # in a run of characters: only a run the phrase ends ("나 왔어 얘들아")
        run = text.clauses[first.clause].words[first.start]
        if not run.endswith(first.phrase.words[0]):
            return False
    if then.clause == first.clause:
        return then.start in (end, end + 1)
    following = then.clause == first.clause + 1 and then.start == 0
    return following and end == len(text.clauses[first.clause].words)


def _everyone_arrives(text: Text, found: list[Found]) -> bool:
    """An arrival that says it is everyone's: "all of us", or "both" with nothing else
    besides the arrival ("both here"; not "here, all good")."""
    everyone = [f for f in found if f.kind == "all"]
    if any(f.size >= 2 for f in everyone):
        return True
    besides = [f for f in found if f.kind in ("all", "arrive", "check_in")]
    return (
        bool(everyone)
        and len(besides) == len(found)
        and sum(f.size for f in found) >= len(text.words)
    )


# --- finding phrases ------------------------------------------------------------------------


def _words(clause: Clause, lexicon: Lexicon) -> list[tuple[str, str | None]]:
    """The clause's words as the lexicon knows them: short forms expanded, stretched letters
    ("hereee") and one-letter slips ("hre") read as the word meant. (word, as texted if read.)"""
    out: list[tuple[str, str | None]] = []
    for word in clause.words:
        if word in lexicon.aliases:
            out.extend((w, None) for w in lexicon.aliases[word])
            continue
        if word in lexicon.known or word.isdigit():
            out.append((word, None))
            continue
        meant = _unstretched(word, lexicon) or lexicon.slip_for(word)
        out.append((meant, word) if meant else (word, None))
    return out


def _unstretched(word: str, lexicon: Lexicon) -> str | None:
    for runs in (3, 2):
        squeezed = _squeeze(word, runs)
        if squeezed != word and squeezed in lexicon.known:
            return squeezed
    return None


def _squeeze(word: str, runs: int) -> str:
    """Letters repeated `runs` or more times in a row, once ("yesss" -> "yes")."""
    return re.sub(rf"(.)\1{{{runs - 1},}}", r"\1", word)


def _find(clause: Clause, index: int, lexicon: Lexicon) -> list[Found]:
    """The clause's phrases, longest first: a longer phrase claims its words ("no problem"
    is not "no"); phrases of several languages or lists on the same words are all kept."""
    words = _words(clause, lexicon)
    plain = [w for w, _ in words]
    candidates: list[tuple[int, int, Phrase, str | None]] = []
    for start, (word, _) in enumerate(words):
        for phrase in lexicon.phrases_at(word):
            size = len(phrase.words)
            if tuple(plain[start : start + size]) == phrase.words:
                slip = next((t for _, t in words[start : start + size] if t), None)
                candidates.append((size, start, phrase, slip))
    claimed = [False] * len(words)
    found: list[Found] = []
    taken: dict[tuple[int, int], bool] = {}
    for size, start, phrase, slip in sorted(candidates, key=lambda c: (-c[0], c[1])):
        span = (start, size)
        if phrase.kind in MENTIONS:  # a mention: it claims no words a meaning may need
            if taken.get(span) or not any(claimed[start : start + size]):
                found.append(Found(phrase, index, start, slip))
            continue
        if span not in taken:
            taken[span] = not any(claimed[start : start + size])
            if taken[span]:
                claimed[start : start + size] = [True] * size
        if taken[span]:
            found.append(Found(phrase, index, start, slip))
    # Runs already claimed by a phrase of several words ("접수처 앞에 있어요") are not searched
    # for shorter phrases inside them ("앞에": in front of, asked about).
    found.extend(_find_han(clause, index, lexicon, claimed))
    return found


def _find_han(
    clause: Clause, index: int, lexicon: Lexicon, taken: Sequence[bool] = ()
) -> list[Found]:
    """Chinese, Japanese and Korean phrases inside the clause's runs of characters, longest
    first (not in runs `taken` by a longer phrase)."""
    out: list[Found] = []
    for start, word in enumerate(clause.words):
        if not is_cjk_word(word) or (start < len(taken) and taken[start]):
            continue
        # Every occurrence of every phrase, then claimed longest phrase first (and, as long as
        # each other, in the lexicon's order), each phrase's occurrences left to right.
        occurrences = sorted(
            (rank, at, phrase)
            for at, char in enumerate(word)
            for rank, phrase in lexicon.han_at.get(char, ())
            if word.startswith(phrase.words[0], at)
        )
        claimed = [False] * len(word)
        spans: dict[tuple[int, int], bool] = {}
        for _, at, phrase in occurrences:
            size = len(phrase.words[0])
            span = (at, size)
            if phrase.kind in MENTIONS:
                if spans.get(span) or not any(claimed[at : at + size]):
                    out.append(Found(phrase, index, start))
                continue
            if span not in spans:
                spans[span] = not any(claimed[at : at + size])
                if spans[span]:
                    claimed[at : at + size] = [True] * size
            if spans[span]:
                out.append(Found(phrase, index, start))
    return out


def _settle(found: list[Found], prefer: str | None) -> list[Found]:
    """Where one word means yes in one language and no in another ("k"), keep the reading of
    the conversation's language, or neither."""
    spans: dict[tuple[int, int, tuple[str, ...]], list[Found]] = {}
    for f in found:
        if f.kind in ("yes", "no"):
            spans.setdefault((f.clause, f.start, f.phrase.words), []).append(f)
    dropped: set[int] = set()
    for group in spans.values():
        if len({f.kind for f in group}) > 1:
            keep = [f for f in group if f.phrase.language == prefer]
            kinds = {f.kind for f in keep}
            dropped.update(id(f) for f in group if len(kinds) != 1 or f not in keep)
    return [f for f in found if id(f) not in dropped]


# --- what the words add up to ----------------------------------------------------------------


def _kinds(found: Sequence[Found], clause: int | None = None) -> dict[str, list[Found]]:
    out: dict[str, list[Found]] = {}
    for f in found:
        if clause is None or f.clause == clause:
            out.setdefault(f.kind, []).append(f)
    return out


@dataclass(frozen=True)
class _Part:
    """One clause's reading, with what the whole text's reading needs to know of it."""

    reading: Reading
    asks: bool
    request_only: bool = False  # an arrival that only asks to be checked in ("check me in")
    late_only: bool = False  # "sorry I'm late": says nothing about where they are
    retracts: str = ""  # a short clause of a "not" alone ("I'm here. jk"): the "not"
    later: str = ""  # a clause that says later ("sign me up for next week"): the word


def _meaning(text: Text, found: list[Found], number: str | None) -> Reading:
    """A text's meaning with no question open (or none it answered): each clause read on its
    own, then together. An arrival is only an arrival if nothing in the text says otherwise."""
    parts = [_clause(text, i, found) for i in range(len(text.clauses))]
    by_meaning: dict[Meaning, _Part] = {}
    for part in parts:
        by_meaning.setdefault(part.reading.meaning, part)
    if Meaning.LEAVE in by_meaning:
        return by_meaning[Meaning.LEAVE].reading
    arrival = by_meaning.get(Meaning.ARRIVE)
    if arrival is not None:
        against = [
            p.retracts or p.later or p.reading.why
            for p in parts
            if (p.reading.meaning in (Meaning.NOT_YET, Meaning.UNSURE) and not p.late_only)
            or p.retracts
            or (p.later and p is not arrival)  # "I'm in! Sign me up for next week"
        ]
        if "emoji_doubt" in text.emoji:  # "sì, sono qui... in coda sul raccordo 🙄"
            against.append("a rolled eye")
        if against:
            return Reading(
                Meaning.UNSURE, f"asked to clarify: {arrival.reading.why}, but {against[0]}"
            )
        if arrival.request_only and any(p.asks for p in parts):
            return Reading(
                Meaning.UNSURE, f"asked to clarify: {arrival.reading.why}, and a question"
            )
        return arrival.reading
    for wanted in (
        Meaning.UNSURE,
        Meaning.NOT_YET,
        Meaning.STATUS,
        Meaning.HELP,
        Meaning.QUESTION,
        Meaning.OTHER,
    ):
        if wanted in by_meaning:
            return by_meaning[wanted].reading
    if number is not None:
        return Reading(Meaning.NUMBER, f"the number {number}", number=number)
    for wanted in (Meaning.THANKS, Meaning.GREETING, Meaning.YES, Meaning.NO):
        if wanted in by_meaning:
            return by_meaning[wanted].reading
    return Reading(Meaning.UNKNOWN, "no phrase the bot knows")


_RETRACTING = {"negation", "neutral", "no"}
_RETRACT_WORDS = 3


# Laughter, as people text it: haha, lol, mdr, kkkk, jaja, xaxa, χαχα, хаха, هههه, ㅋㅋ, 555, www.
# (Hangul's ㅋㅋ is read as ᄏᄏ: text.py writes compatibility jamo in their plain form. ㅎㅎ, a
# smile more than a laugh, is not one.)
_LAUGHTER = re.compile(
    r"(?:a?(?:ha){2,}h?|(?:ah){2,}a?|(?:he){2,}|(?:hi){2,}|l+o+l+|lmao|rofl|mdr|k{3,}|(?:ja){2,}j?|(?:je){2,}"
    r"|(?:xa){2,}|(?:χα){2,}|(?:ха){2,}|(?:хе){2,}|ه{3,}|ᄏ{2,}|5{3,}|w{3,})"
)


def _retraction(clause: Clause, kinds: dict[str, list[Found]]) -> str:
    """A clause that takes back what another clause said: only a "not" and a word or two of
    nothing ("I'm here. jk", "Я на месте. шучу"), or a laugh and a "not" ("pahuch gaya...
    haha mazak tha abhi bistar me hu", "je suis là... mdr non je suis encore au lit"): the
    "not", shown. A run of Chinese or Japanese characters only when the "not" is nearly all
    of it (a 不 inside 不知道去哪 takes nothing back)."""
    words = clause.words
    nots = [f for k in ("negation", "no", "not_yet") for f in kinds.get(k, [])]
    if not nots:
        return ""
    laughs = any(_LAUGHTER.fullmatch(w) for w in words)
    if laughs and "arrive" not in kinds and "check_in" not in kinds:
        return f"takes back: {max(nots, key=lambda f: len(f.phrase.text)).shown()}"
    if "negation" not in kinds or not set(kinds) <= _RETRACTING:
        return ""
    negation = max(kinds["negation"], key=lambda f: len(f.phrase.text))
    if len(words) > _RETRACT_WORDS:
        return ""
    if any(is_cjk_word(w) for w in words) and not (
        len(words) == 1 and negation.phrase.han and len(negation.phrase.text) >= len(words[0]) - 1
    ):
        return ""
    return f"takes back: {negation.shown()}"


def _clause(text: Text, index: int, found: list[Found]) -> _Part:
    kinds = _kinds(found, index)
    question_word = any(
        f.start == 0 for k in ("question_start", "question") for f in kinds.get(k, [])
    )
    asks = text.clauses[index].asks or question_word

    def first(kind: str) -> Found:
        return kinds[kind][0]

    retracts = _retraction(text.clauses[index], kinds)

    # A clause that says later, and does not ask ("where do I go if…"): not "tha" (Greeklish
    # "will", Hindi "was") or "ill" alone.
    later = next(
        (f.shown() for f in kinds.get("future", []) if len(f.phrase.text) > 3 and not asks), ""
    )

    def part(meaning: Meaning, why: str, **flags: bool) -> _Part:
        return _Part(Reading(meaning, why), asks, retracts=retracts, later=later, **flags)

    if "reported" in kinds:
        meaning = Meaning.QUESTION if asks else Meaning.OTHER
        return part(meaning, f"about someone else: {first('reported').shown()}")
    if "leave" in kinds:
        return part(Meaning.LEAVE, f"leave: {first('leave').shown()}")
    arrivals = kinds.get("arrive", []) + kinds.get("check_in", [])
    if arrivals:
        arrival = arrivals[0]
        if "help" in kinds:
            return part(Meaning.HELP, f"help: {first('help').shown()}")
        if "unclear" in kinds and not (question_word and first("unclear").start > 0):
            return part(Meaning.UNSURE, f"asked to clarify: {first('unclear').shown()}")
        if asks:
            if "status" in kinds:
                return part(Meaning.STATUS, f"status: {first('status').shown()}")
            return part(Meaning.QUESTION, f"not an arrival: {arrival.shown()} in a question")
        for kind in ("negation", "not_yet", "future"):
            if kind in kinds:
                why = f"not an arrival: {arrival.shown()} with {first(kind).shown()}"
                return part(Meaning.NOT_YET, why)
        if "past" in kinds:
            return part(
                Meaning.OTHER, f"an earlier visit: {arrival.shown()} with {first('past').shown()}"
            )
        if arrival.slip and len(text.clauses[index].words) > 3:
            return part(Meaning.UNSURE, f"asked to clarify: only {arrival.shown()}")
        request_only = "arrive" not in kinds
        label = "check in" if request_only else "arrive"
        return part(Meaning.ARRIVE, f"{label}: {arrival.shown()}", request_only=request_only)
    if asks:
        if "status" in kinds:
            return part(Meaning.STATUS, f"status: {first('status').shown()}")
        if "help" in kinds:
            return part(Meaning.HELP, f"help: {first('help').shown()}")
        if "unclear" in kinds and first("unclear").start == 0:
            return part(Meaning.UNSURE, f"asked to clarify: {first('unclear').shown()}")
        if set(kinds) <= {"greeting", "neutral"} and "greeting" in kinds:
            return part(Meaning.GREETING, f"greeting: {first('greeting').shown()}")
        if "question" in kinds:
            return part(Meaning.QUESTION, f"a question: {first('question').shown()}")
        if len(text.clauses[index].words) <= 2:  # "what?", "sorry?": not following
            return part(Meaning.UNKNOWN, "a word or two, asked: not following")
        return part(Meaning.QUESTION, "a question the bot has no phrase for")
    for kind, meaning, flags in (
        ("status", Meaning.STATUS, {}),
        ("not_yet", Meaning.NOT_YET, {}),
        # Where they are says more than that they are late: "traffic to get into the car
        # park" (a late word and an unclear one) is asked about, not left to the arrival.
        ("unclear", Meaning.UNSURE, {}),
        ("late", Meaning.NOT_YET, {"late_only": True}),
        ("help", Meaning.HELP, {}),
        ("question", Meaning.QUESTION, {}),
        ("thanks", Meaning.THANKS, {}),
        ("greeting", Meaning.GREETING, {}),
        ("yes", Meaning.YES, {}),
        ("no", Meaning.NO, {}),
    ):
        if kind in kinds:
            return part(meaning, f"{kind.replace('_', ' ')}: {first(kind).shown()}", **flags)
    return part(Meaning.UNKNOWN, "no phrase the bot knows")


# --- answers to the bot's questions -----------------------------------------------------------

# What counts as YES and as NO, by what was asked.
_YES = {
    Topic.ARRIVAL: ("yes", "arrive", "check_in"),
    Topic.FORCE: ("yes", "arrive", "check_in"),
    Topic.LEAVE: ("yes", "leave"),
}
_NO = {
    Topic.ARRIVAL: ("no", "not_yet"),
    Topic.FORCE: ("no", "not_yet"),
    Topic.LEAVE: ("no",),
}


def _answer(text: Text, found: list[Found], topic: Topic, lexicon: Lexicon) -> Reading | None:
    """YES or NO to the open question, when the text gives one: the longer phrase decides
    ("ok I'll wait" is NO); as long as each other, the text is asked again."""
    kinds = _kinds(found)
    if topic is not Topic.LEAVE and "leave" in kinds:
        return Reading(Meaning.LEAVE, f"leave: {kinds['leave'][0].shown()}")
    if "reported" in kinds:
        return None
    kinds = _kinds(_answers(text, found))
    arrivals = [f for k in ("arrive", "check_in") for f in kinds.get(k, [])]
    if topic is Topic.LEAVE and "no" not in kinds and arrivals:
        # "yes I'm here" to "leave the queue?": staying, or leaving? Ask again ("no, I'm still
        # here" is a NO).
        if not any(_negated(f, kinds) for f in arrivals):
            why = f"asked again: {arrivals[0].shown()}, asked about leaving"
            return Reading(Meaning.UNKNOWN, why)
    if topic is not Topic.LEAVE and "unclear" in kinds and ("yes" in kinds or "arrive" in kinds):
        # "yes but I'm in the car park": they may not be inside; ask again.
        return Reading(Meaning.UNKNOWN, f"asked again: yes, but {kinds['unclear'][0].shown()}")
    yes = [f for k in _YES[topic] for f in kinds.get(k, []) if not _negated(f, kinds)]
    no = [f for k in _NO[topic] for f in kinds.get(k, [])]
    no += [f for k in _YES[topic] for f in kinds.get(k, []) if _negated(f, kinds) and k != "yes"]
    for index, clause in enumerate(text.clauses):
        retracts = _retraction(clause, _kinds(found, index))
        if retracts and any(f.clause != index for f in yes):
            return Reading(Meaning.UNKNOWN, f"asked again: yes, but {retracts}")
    best_yes = max((f.size for f in yes), default=0)
    best_no = max((f.size for f in no), default=0)
    if best_yes > best_no:
        top = max(yes, key=lambda f: f.size)
        # A no in another clause ("yes I'm here. haha no, kidding"), or a "not yet" anywhere
        # ("はい、着いたらお願いします": yes, when I arrive): ask again. (A "wait" beside the yes
        # is not one: "Ich bin da und warte im Flur".)
        saying_yes = {f.clause for f in yes}
        against = next((f for f in no if f.clause not in saying_yes or f.kind == "not_yet"), None)
        if against is not None:
            return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, but {against.shown()}")
        # Words for leaving may come with a later in a clause of its own ("cancel it, I'll
        # rebook another day"); not in theirs ("cancela la de mañana": another visit).
        leaving = topic is Topic.LEAVE and "leave" in kinds
        later_where = {f.clause for f in kinds.get("leave", [])} if leaving else None
        doubt = _doubt(text, kinds, later_where)
        if doubt:  # "yes lol jk", "ja morgen", "sí, mi hija ya está ahí": ask again
            return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, but {doubt}")
        if topic is Topic.LEAVE:
            # Leaving loses their place: a yes to it counts with nothing in the text that says
            # more ("yes I'm on my way", "oui je suis là", "是的，我女儿替我去"), and with
            # little else besides: a word with a plain yes, a few with words for leaving ("yes
            # cancel it, sorry, work came up"); not "sí, guárdame el lugar".
            more = _besides_leaving(found, lexicon, leaving)
            if more:
                return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, but {more}")
            # An ok alone ("ok", "blz", "accha", "ok merci", "了解です"): heard, or yes, leave?
            # Ask again (not "ok remove me", nor "ok yes").
            if not leaving and all(_heard(f, found) for f in yes):
                return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, heard or yes?")
            # Twilio's own words are on no list ("yes cancel", "haan cancel"): they say leave.
            extra = _uncovered(text, found, _BARE_LEAVE, slack=0)
            extra -= sum(word in lexicon.opt_out for word in text.words)
            number = _with_digits(text.words)
            if extra > (LEAVE_WORDS if leaving else 0) or number:  # "sim, remarca pra 16h"
                return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, and more")
        if topic is not Topic.LEAVE and not ("arrive" in kinds or "check_in" in kinds):
            # A yes, and words the lexicon does not know that do not ask ("yes, the blue
            # Corolla", "sí, estaba", "はい、外でタバコ吸ってます"; not "yes, where do I go?"):
            # a yes to what? Ask again. So with a number ("yes, 10:30": to another question).
            if _uncovered(text, found, _BARE_YES, asked=False) > YES_WORDS:
                return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, and more")
            number = _with_digits(w for c in text.clauses if not c.asks for w in c.words)
            if number:
                return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, and '{number}'")
        if topic is not Topic.ARRIVAL and _asking(text, found):
            # "yes, what does early mean?", "ok but how early am I": the question first. (To
            # "are you here now?", "yes, where do I go?" is a yes.)
            return Reading(Meaning.UNKNOWN, f"asked again: {top.shown()}, with a question")
        return Reading(Meaning.YES, f"yes to the {topic.value} question: {top.shown()}")
    if best_no > best_yes:
        top = max(no, key=lambda f: f.size)
        return Reading(Meaning.NO, f"no to the {topic.value} question: {top.shown()}")
    if yes:
        return Reading(Meaning.UNKNOWN, "asked again: it says yes and no")
    return None


# What a yes to "are you here now?" or "check in anyway?" may come with, and how many words
# besides.
_BARE_YES = frozenset({"yes", "arrive", "check_in", "thanks", "greeting", "neutral", "option"})
YES_WORDS = 1
# What a yes to "leave the queue?" may come with, and how many other words beside a phrase
# for leaving (none beside a plain yes: "ok, I'll wait" is no yes).
_BARE_LEAVE = frozenset({"yes", "leave", "greeting", "neutral"})
LEAVE_WORDS = 3
# What says more than a yes to leaving: here, coming, late, a question, someone else.
_NOT_LEAVING = frozenset(
    {"arrive", "check_in", "not_yet", "late", "question", "help", "others", "reported"}
    | {"present"}  # "在的": I'm here
)


def _heard(said: Found, found: list[Found]) -> bool:
    """Whether a phrase is inside one that may only say it was heard ("ok" in "ok merci";
    "好的" in "好的", not "是的" in "好的是的")."""
    for f in found:
        if f.kind != "heard" or f.clause != said.clause:
            continue
        if said.phrase.han or f.phrase.han:
            if f.start == said.start and said.phrase.words[0] in f.phrase.words[0]:
                return True
        elif f.start <= said.start and said.start + said.size <= f.start + f.size:
            return True
    return False


def _with_digits(words: Iterable[str]) -> str | None:
    """The first word with a digit in it ("10:30", "16h", "2시"), if any."""
    return next((w for w in words if any(c.isdigit() for c in w)), None)


def _besides_leaving(found: list[Found], lexicon: Lexicon, leaving: bool) -> str:
    """A phrase that says more than a yes to leaving, also inside a longer yes ("oui je suis
    là", a yes to "are you here now?", holds "je suis là"). Beside words for leaving, coming
    later and being late are reasons ("ya no llego", "tá demorando demais")."""
    for f in found:
        if f.kind in _NOT_LEAVING and not (leaving and f.kind in ("not_yet", "late")):
            return f.shown()
        if f.kind == "yes" and not f.phrase.han and len(f.phrase.words) > 1:
            words = f.phrase.words
            for at in range(1, len(words)):
                for inner in lexicon.phrases_at(words[at]):
                    size = len(inner.words)
                    if inner.kind in ("arrive", "not_yet") and words[at : at + size] == inner.words:
                        return f"'{inner.text}' ({inner.language}) in {f.shown()}"
    return ""


def _covered(
    text: Text, found: list[Found], kinds: frozenset[str]
) -> tuple[set[tuple[int, int]], dict[tuple[int, int], int]]:
    """The words (clause, index) in a phrase of these kinds, and in each run of Chinese,
    Japanese or Korean characters how many of its characters are."""
    covered: set[tuple[int, int]] = set()
    chars: dict[tuple[int, int], set[int]] = {}
    for f in found:
        if f.kind not in kinds:
            continue
        if f.phrase.han:
            run = text.clauses[f.clause].words[f.start]
            phrase = f.phrase.words[0]
            at = run.find(phrase)
            while at >= 0:
                chars.setdefault((f.clause, f.start), set()).update(range(at, at + len(phrase)))
                at = run.find(phrase, at + 1)
        else:
            covered.update((f.clause, f.start + i) for i in range(len(f.phrase.words)))
    return covered, {key: len(taken) for key, taken in chars.items()}


def _uncovered(
    text: Text,
    found: list[Found],
    kinds: frozenset[str],
    slack: int = 1,
    names: Sequence[str] = (),
    asked: bool = True,
) -> int:
    """How many words of the text are in no phrase of these kinds, nor one of these `names`
    (in a run of Chinese, Japanese or Korean characters, two characters a word, `slack` of
    them not counted); not `asked`: in the clauses that do not ask."""
    covered, han = _covered(text, found, kinds)
    latin = [n for n in names if not is_cjk_word(n)]
    left = 0
    for c, clause in enumerate(text.clauses):
        if clause.asks and not asked:
            continue
        for w, word in enumerate(clause.words):
            if (c, w) in covered or (word.startswith("emoji_") and word != "emoji_doubt"):
                continue
            if is_cjk_word(word):
                rest = len(word) - han.get((c, w), 0) - slack
                rest -= max((len(n) for n in names if is_cjk_word(n) and n in word), default=0)
                left += (max(0, rest) + 1) // 2
            elif not any(_calls(word, name) for name in latin):
                left += 1
    return left


def _doubt(text: Text, kinds: dict[str, list[Found]], later_where: set[int] | None = None) -> str:
    """What, in an answer that says yes, says it may not be so: a "not", a "later", an
    "earlier" (a yes with a day: "haan kal", "war gestern schon da"), someone else ("sí, mi
    hija ya está ahí": the daughter may be there, the sender not), a laugh ("yes lol",
    "はい笑") or a rolled eye. A wrong check-in costs more than asking once more. With
    `later_where`, a "later" counts only in those clauses."""
    for kind in ("negation", "future", "past"):
        for f in kinds.get(kind, []):
            if kind == "future" and later_where is not None and f.clause not in later_where:
                continue  # a later beside words for leaving, in a clause of its own
            if not text.clauses[f.clause].asks:  # not "네, 어디로 가면 돼요?" (where do I go?)
                return f.shown()
    others = kinds.get("others", [])
    arrivals = [(f.clause, f.start) for k in ("arrive", "check_in") for f in kinds.get(k, [])]
    if others and (not arrivals or (others[0].clause, others[0].start) < min(arrivals)):
        # Someone else first ("sí, mi hija ya llegó", "my son and I are here"); not the
        # sender's arrival with them ("I'm here with my mom").
        return f"{others[0].shown()} (someone else)"
    return _laugh_or_eye(text)


def _laugh_or_eye(text: Text) -> str:
    """A laugh ("yes lol", "はい笑", 😂) or a rolled eye (🙄) anywhere in the text."""
    laugh = next(
        (w for w in text.words if _LAUGHTER.fullmatch(w) or w.endswith("笑") or w == "emoji_laugh"),
        None,
    )
    if laugh:
        return f"'{laugh}' (a laugh)"
    return "a rolled eye" if "emoji_doubt" in text.emoji else ""


def _asking(text: Text, found: list[Found]) -> bool:
    """Whether the text asks something: a question mark, or a clause that opens with a
    question ("how early am I", "ok how early am I", "yes what does early mean")."""
    opening_yes = {f.clause for f in found if f.start == 0 and f.kind in ("yes", "no")}
    return text.asks or any(
        f.kind in ("question", "question_start")
        and (
            f.start == 0
            or (f.start == 1 and f.kind == "question_start" and f.clause in opening_yes)
        )
        for f in found
    )


def _answers(text: Text, found: list[Found]) -> list[Found]:
    """The phrases that can answer a YES/NO question. Not those inside a question ("how long
    would I wait if I check in?"), unless a plain yes or no opens it ("yes, where do I go?");
    an arrival only when nothing in the text asks; a one- or two-letter "y", "k", "si", "la"
    only in a text of a word or two (in other languages they are words: Spanish "y", "si" is
    French for "if", Arabizi "la" is French for "there")."""
    asking = _asking(text, found)
    out = []
    for f in found:
        clause = text.clauses[f.clause]
        if f.kind in ("yes", "no"):
            if clause.asks and f.start > 0:
                continue
            if clause.asks and (
                len(clause.words) == len(f.phrase.words)  # "yes??", "はい？": what do you mean?
                or (f.phrase.han and clause.words[f.start] != f.phrase.words[0])  # "你是谁？"
            ):
                continue
            if len(f.phrase.text) <= 2 and len(clause.words) > 2:
                continue
        elif f.kind in ("arrive", "check_in", "leave", "not_yet") and asking:
            continue  # "if I leave, can I come back?" is a question, not a YES
        out.append(f)
    return out


def _negated(found: Found, kinds: dict[str, list[Found]]) -> bool:
    """An arrival with a "not" (or a "later") in its clause: "I'm not here yet"."""
    if found.kind not in ("arrive", "check_in"):
        return False
    return any(
        f.clause == found.clause
        for k in ("negation", "not_yet", "future")
        for f in kinds.get(k, [])
    )


def _choice(
    text: Text, found: list[Found], expecting: Expecting, lexicon: Lexicon
) -> Reading | None:
    """Who, on a shared phone: a number from the list, "the first one", a name, everyone or
    no one. None when the text names no one (it may ask something else). A wrong choice
    checks the wrong person in: a choice with anything in the text that says otherwise is
    asked again (a question, a "not", "Mia and me", a number that counts or times something:
    "room 3", "3 minutes away", "somos 2", "both" of three)."""
    people = len(expecting.names)
    called_by = _called_by(expecting.names, lexicon)  # each person's names and short forms
    words = text.words
    kinds = _kinds(found)
    doubt = _choice_doubt(text, found, kinds)
    if "all" in kinds:
        every = kinds["all"][0]
        if doubt:
            return Reading(Meaning.UNKNOWN, f"asked again: {every.shown()}, but {doubt}")
        if people != 2 and "both" in kinds:  # "both" of three: which two?
            return Reading(Meaning.UNKNOWN, f"asked again: {every.shown()}, of {people}")
        # "yawm al-ithnayn" is Monday; not "둘 다요", a particle besides.
        if _uncovered(text, found, _CHOICE_WORDS | {"all"}):
            return Reading(Meaning.UNKNOWN, f"asked again: {every.shown()}, with more")
        return Reading(Meaning.CHOICE, f"everyone: {every.shown()}", choice=EVERYONE)
    if "none" in kinds:
        return Reading(Meaning.CHOICE, f"no one: {kinds['none'][0].shown()}", choice=NOBODY)
    picked: set[int] = set()
    numbers: list[str] = []
    off_list = False
    ordinals = [lexicon.ordinals[w] for w in words if w in lexicon.ordinals]
    for word in words:
        value = int(word) if word.isdigit() and len(word) <= 2 else lexicon.numbers.get(word)
        if ordinals and not word.isdigit():
            value = None  # "the second one": the ordinal says which
        ordinal = lexicon.ordinals.get(word)
        if ordinal is not None:
            value = people if ordinal == -1 else ordinal
        if value is None and word.isdigit():
            value = 0  # a number not on the list ("at 10", "room 12") still counts as one
        if value is None:
            continue
        if not word.isdigit() and _named([word], called_by):  # "하나": one, or Hana?
            return Reading(Meaning.UNKNOWN, f"asked again: '{word}', a number and a name")
        numbers.append(word)
        if expecting.everyone is not None and value == expecting.everyone:
            picked.add(EVERYONE)
        elif 1 <= value <= people:
            picked.add(value)
        else:
            off_list = True
    if picked:
        # A number is a choice alone, or with words that only say please or which: "2",
        # "option 2", "2 pls", "1 and 2"; not "room 3", "3 minutes away", "I'm number 2 in
        # line", a number off the list, one said twice ("1 adult 1 child").
        # (A number word on the `option` list, "one", is no word besides itself twice over.)
        covered, _ = _covered(text, found, _CHOICE_WORDS)
        bare_numbers = sum(
            1
            for c, clause in enumerate(text.clauses)
            for w, word in enumerate(clause.words)
            if word in numbers and (c, w) not in covered
        )
        others = _uncovered(text, found, _CHOICE_WORDS, slack=0) - bare_numbers
        again = off_list or len(set(numbers)) < len(numbers) or "self" in kinds
        if doubt or again or others > (1 if ordinals else 0):
            why = doubt or f"'{numbers[0]}' with more"
            return Reading(Meaning.UNKNOWN, f"asked again: a number, but {why}")
    else:
        picked = _named(words, called_by)
        # A name alone, or with a word ("It's Mia", "Sam and Mia", "花子です"); not "Pepe,
        # María se quedó en casa", "Mia and me".
        beside = _beside_names(text, found, called_by)
        # "Bia e Biel", "Benoît… enfin Margot": one name read, and another word brought in
        # with it (someone the bot does not know as a name, or the name taken back).
        more = [f.shown() for f in kinds.get("another", [])]
        # Arabic writes "and" onto the next word ("هدى وخالد"): the name after it, or another.
        for word in words:
            rest = word[1:]
            if word.startswith("و") and len(rest) >= 3:
                picked |= _named([rest], called_by)
                more.append(f"'{word}'")  # "أنا وفاطمة": me and Fatima
        # A name inside a phrase is that phrase ("Слава богу": thank God; not Вячеслав).
        phrased = [f for f in found if f.size >= 2 and f.kind in _CHOICE_WORDS]
        if picked and phrased and _names_only_in(text, phrased, called_by):
            return Reading(Meaning.UNKNOWN, f"asked again: a name in {phrased[0].shown()}")
        if picked and (doubt or _with_me(kinds) or beside > (2 if len(picked) == 1 else 1)):
            why = doubt or _with_me(kinds) or "more than a name"
            return Reading(Meaning.UNKNOWN, f"asked again: a name, but {why}")
        if len(picked) == 1 and more and beside:
            return Reading(Meaning.UNKNOWN, f"asked again: a name, and {more[0]}")
    if picked == {EVERYONE}:
        word = numbers[0] if numbers else "everyone"
        return Reading(Meaning.CHOICE, f"everyone: '{word}' on the list", choice=EVERYONE)
    if len(picked) == 1:
        choice = picked.pop()
        return Reading(
            Meaning.CHOICE, f"chose {choice}: {expecting.names[choice - 1]}", choice=choice
        )
    if len(picked) > 1:
        if "correction" in kinds:  # "Sam actually Mia", "первый, ой, вторая": one taken back
            fix = kinds["correction"][0].shown()
            return Reading(Meaning.UNKNOWN, f"asked again: several people, and {fix}")
        if len(picked) == people:
            return Reading(Meaning.CHOICE, "everyone, by name or number", choice=EVERYONE)
        return Reading(Meaning.UNKNOWN, "asked again: several people, not everyone")
    if "no" in kinds:
        return Reading(Meaning.CHOICE, f"no one: {kinds['no'][0].shown()}", choice=NOBODY)
    return None


# Words a choice may come with: please, thanks, yes, hello, "check in", and words that say
# which ("option", "number", "the": each language's `option` list).
_CHOICE_WORDS = frozenset({"yes", "thanks", "greeting", "check_in", "option"})


def _names_only_in(text: Text, phrases: list[Found], called_by: list[list[str]]) -> bool:
    """Whether every word that names someone stands inside one of these phrases."""
    inside = {(f.clause, f.start + i) for f in phrases for i in range(f.size)}
    naming = [
        (c, w)
        for c, clause in enumerate(text.clauses)
        for w, word in enumerate(clause.words)
        if _named([word], called_by)
    ]
    return bool(naming) and all(place in inside for place in naming)


def _choice_doubt(text: Text, found: list[Found], kinds: dict[str, list[Found]]) -> str:
    """What makes a choice unsure: a question ("Mia? she's parking"), a "not" ("not Sam",
    "1 no wait 2"), not yet or later ("3 minutes away")."""
    if text.asks or any(f.start == 0 and f.kind == "question" for f in found):
        return "a question"
    doubts = ("negation", "no", "not_yet", "late", "future", "past", "unclear")
    for kind in (*doubts, "leave", "status", "question", "help"):
        if kind in kinds:
            return kinds[kind][0].shown()
    return ""


def _with_me(kinds: dict[str, list[Found]]) -> str:
    """ "Mia and me", "José y yo", "我和小明": the sender and someone, the sender unnamed."""
    for f in kinds.get("self", []):
        if len(f.phrase.words) > 1 or (f.phrase.han and len(f.phrase.words[0]) > 1):
            return f.shown()
    return ""


def _beside_names(text: Text, found: list[Found], called_by: list[list[str]]) -> int:
    """How many words of the text are neither a name of the people asked about nor a word a
    choice may come with."""
    parts = [part for parts in called_by for part in parts]
    return _uncovered(text, found, _CHOICE_WORDS, slack=0, names=parts)


def _name_parts(name: str) -> list[str]:
    """The parts of a name a text may call someone by: its words of two letters or more, and
    in a Chinese, Japanese or Korean name written without a space (佐藤花子, 김민준) its last
    two characters (the given name: 花子, 민준) and the rest when that is two or more (佐藤)."""
    parts = [p for p in words_of(plain(name)) if len(p) >= 2]
    for part in list(parts):
        if is_cjk_word(part) and len(part) >= 3:
            parts.append(part[-2:])
            # The rest when two or more; in a name of three, the first two may be the family
            # name (佐藤健: 佐藤) as well as the last two the given name (王小明: 小明).
            parts.append(part[:-2] if len(part) >= 4 else part[:2])
    return parts


def _called_by(names: Sequence[str], lexicon: Lexicon) -> list[list[str]]:
    """Each person's name parts, and what those are shortened to (Михаил: Миша, William:
    Bill) where no one else's name could be shortened to it too (Gabi: Gabriela, or Gabriel?
    Ale: Alejandro, or Alexa?)."""
    parts_of = [_name_parts(name) for name in names]
    out = []
    for number, parts in enumerate(parts_of):
        others = [p for n, ps in enumerate(parts_of) if n != number for p in ps]
        nicknames = [
            nick
            for part in parts
            for nick in lexicon.nicknames.get(part, ())
            if not any(other.startswith(nick[:3]) for other in others)
        ]
        out.append(parts + nicknames)
    return out


def _named(words: Sequence[str], parts_of: list[list[str]]) -> set[int]:
    """People named in the text by a name of theirs (`parts_of`, from `_called_by`: "It's
    Mia", "Mia's", a Vietnamese given name that comes last, a Chinese, Japanese or Korean name
    inside a run of characters: 小明的, 花子です, 민준이요); a name two people share (a
    surname) names no one by itself."""
    han_words = [w for w in words if is_cjk_word(w) and len(w) >= 2]
    counts: dict[str, int] = {}
    for parts in parts_of:
        for part in set(parts):
            counts[part] = counts.get(part, 0) + 1
    picked = set()
    for number, parts in enumerate(parts_of, start=1):
        own = [p for p in parts if counts[p] == 1]  # names only this person has
        if any(is_cjk_word(part) and any(part in w for w in han_words) for part in own):
            picked.add(number)  # "花子です", "小明的"
    for word in words:
        # A word may call several people with an ending ("Александра" Александр too,
        # "Петров" Петрова): the name as written, where one is, decides.
        calls = {
            number
            for number, parts in enumerate(parts_of, start=1)
            for part in parts
            if counts[part] == 1 and not is_cjk_word(part) and _calls(word, part)
        }
        exact = {n for n in calls if word in parts_of[n - 1]}
        picked |= exact or calls
    return picked


def _calls(word: str, name: str) -> bool:
    """A texted word that is a name, or the name with an ending ("Mia's", Russian "за
    Бориса") or without its last letter (Greek "τον Γιώργο" for Γιώργος). Endings only in
    the alphabets whose names take them: in Latin letters "market" is not Mark's."""
    if word == name or word == name + "s":
        return True
    if len(name) < 4 or len(word) < 4 or word.isascii():
        return False
    if word.startswith(name):
        return len(word) - len(name) <= 2
    # Greek names in -ος lose their σ ("τον Γιώργο"); not "Κωνσταντιν" for Κωνσταντίνα.
    return name.startswith(word) and len(name) - len(word) == 1 and name.endswith("σ")


# --- language -------------------------------------------------------------------------------

_SCRIPT_LANGUAGES = {
    "han": "zh",
    "kana": "ja",
    "hangul": "ko",
    "cyrillic": "ru",
    "arabic": "ar",
    "devanagari": "hi",
    "greek": "el",
    "vietnamese": "vi",
}


# Letters that say a text is not in the language its script most often writes: Japanese
# kana (not Chinese), Persian and Urdu letters (not Arabic), Ukrainian, Belarusian, Serbian or
# Kazakh ones (not Russian).
_NOT_THE_LANGUAGE = (("kana", "zh"), ("persian_urdu", "ar"), ("cyrillic_not_russian", "ru"))


def _language(text: Text, found: list[Found], lexicon: Lexicon, prefer: str | None) -> str | None:
    """The language a text was confidently written in: its script says, or its phrases of
    one language clearly outweigh any other's (words every language uses, like HERE or OK,
    say nothing)."""
    ruled_out = {language for script, language in _NOT_THE_LANGUAGE if script in text.scripts}
    by_script = {_SCRIPT_LANGUAGES[s] for s in text.scripts if s in _SCRIPT_LANGUAGES}
    by_script &= set(lexicon.languages) - ruled_out
    evidence = [
        f
        for f in found
        if not f.slip
        and f.phrase.text not in lexicon.commands
        and len(f.phrase.text.replace(" ", "")) >= (2 if f.phrase.han else 3)
        and f.phrase.language not in ruled_out
    ]
    if by_script == {"zh"} and "ja" in lexicon.languages:
        # Han characters without kana: Chinese, unless the conversation is in Japanese or
        # every phrase found is Japanese (到着, 受付: a Japanese customer's kanji-only text).
        if prefer == "ja" or (evidence and all(f.phrase.language == "ja" for f in evidence)):
            return "ja"
    if len(by_script) == 1:
        return by_script.pop()
    score: dict[str, int] = {}
    for f in evidence:
        phrase = f.phrase.text
        score[f.phrase.language] = score.get(f.phrase.language, 0) + len(phrase)
    if not score:
        return None
    ranked = sorted(score.items(), key=lambda item: -item[1])
    best, points = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    if points >= 4 and points >= 2 * runner_up:
        return best
    if prefer in score and score[prefer] == points:
        return prefer
    return None


def _language_request(text: Text, lexicon: Lexicon) -> Reading | None:
    """A language asked for: its name as the text ("español", "中文"), or in a short clause
    ("in Spanish please", "can you text me in Spanish?", "LANGUAGE fr", "请用英文回复"); a
    bare LANGUAGE asks which there are."""
    for clause in text.clauses:
        found = _language_named(clause.words, lexicon)
        if found is not None:
            return found
    if text.whole in lexicon.language_words:
        return Reading(Meaning.LANGUAGE, f"'{text.whole}': which languages?")
    return None


def _language_named(words: Sequence[str], lexicon: Lexicon) -> Reading | None:
    if not words or len(words) > 7:
        return None
    for word in words:  # Chinese, Japanese, Korean: a language's name inside a short run
        if is_cjk_word(word) and len(word) <= 10:
            for han_name, han_code in lexicon.cjk_language_names:
                if han_name in word:
                    why = f"asked for language '{han_name}' ({han_code})"
                    return Reading(Meaning.LANGUAGE, why, choose_language=han_code)
    asked = any(w in lexicon.language_words for w in words)
    for size in (3, 2, 1):
        for start in range(len(words) - size + 1):
            name = " ".join(words[start : start + size])
            code = lexicon.language_names.get(name)
            if code is None and asked and name in lexicon.languages:
                code = name  # "LANGUAGE fr"
            if code and not asked and size < len(words) and lexicon.has_phrase(name):
                # A name that is also a word ("hindi" is Tagalog for "no") names a language
                # only on its own, or with a word like LANGUAGE.
                continue
            if code:
                why = f"asked for language '{name}' ({code})"
                return Reading(Meaning.LANGUAGE, why, choose_language=code)
    return None


# Digits as written, in groups of up to three a space or a dash after the first ("48 213",
# "14-572", "4 8 2 1 3"; "52318 52318" is one number twice) or a dot before thousands
# ("61.425"; "10.30" is a time's two numbers), not inside a word in Latin letters ("A003",
# "BK84072", "2nd"). After a "+", "〒" or a currency sign, they are a phone number, a
# postcode or money.
_MONEY = "$€£¥₹₩₫₽₱₺₴฿"
_NOT_BOOKED = "+〒" + _MONEY
_GROUP = r"[ \-]\d{1,3}(?!\d)|\.\d{3}(?!\d)"
# After the digits, money ("150 €", "5000원", "500元") or a room ("305호").
_UNIT = _MONEY + "원元円块호"
_DIGIT_RUN = re.compile(
    rf"(?<![a-z0-9{_NOT_BOOKED}])(?:[{_NOT_BOOKED}] ?)?\d+(?:{_GROUP})*(?: ?[{_UNIT}])?(?![a-z0-9])"
)
# Digits written as Chinese or Japanese characters, one by one ("四八二一三"), three or more.
_HAN_DIGITS = re.compile("[〇零幺一二三四五六七八九]{3,}")  # 幺: "one" read out in digits
_HAN_DIGIT_VALUES = str.maketrans("〇零幺一二三四五六七八九", "001123456789")
# A word of Latin letters and digits: a ticket ("A003"), a distance or a time ("3km", "16h").
_LETTERED = re.compile(r"(?<![a-z0-9])[a-z0-9]*(?:[a-z]\d|\d[a-z])[a-z0-9]*")
# What a digit with letters measures: "3km", "20min", "15p" (phút), "2nd".
_UNITS = frozenset(
    "k m s h p x am pm st nd rd th hr hrs min mins km kg cm mm mg ml lb lbs mi ft yo yrs".split()
)


def _is_number(word: str) -> bool:
    """A word of letters and digits is a number ("A003", "BK84072", "3km"), unless its digits
    are letters: Arabizi writes ح as 7 and ء as 2 ("7ajz", "ra2am")."""
    if re.search(r"\d\d", word):
        return True
    letters = [part for part in re.split(r"\d", word) if part]
    return len(letters) == 1 and letters[0] in _UNITS  # on one side: "3km", "9am"


PHONE_DIGITS = 9  # a number of this many digits or more that starts with a 0 is a phone's


def _numbers(text: Text, lexicon: Lexicon) -> list[str]:
    """Every number in the text as written: runs of digits (a time's or a date's parts each
    one), words of letters and digits ("3km", "A003"), digits spelled as words three or more
    in a row ("four five two"), Chinese digits."""
    plained = plain(text.raw).replace("r$", "$")  # reais
    found = [m.group() for m in _DIGIT_RUN.finditer(plained)]
    found += [m.group() for m in _LETTERED.finditer(plained) if _is_number(m.group())]
    run: list[str] = []
    spelled = []
    for word in (*text.words, ""):
        digit = lexicon.numbers.get(word)
        if digit is not None and 0 <= digit <= 9 and not word.isdigit():
            run.append(str(digit))
            continue
        if run:
            spelled.append("".join(run))
        run = []
    if any(len(s) >= 3 for s in spelled):
        # Beside digits spelled out, a digit more elsewhere ("quatro oito dois um três", a
        # word missed) is another number: which is theirs?
        found += spelled
    for word in text.words:
        if is_cjk_word(word):
            found += [m.group().translate(_HAN_DIGIT_VALUES) for m in _HAN_DIGITS.finditer(word)]
    return found


# What a booking number may come with ("it's 48213, thanks", "I'm here, my booking number is
# 48213"), and how many words besides that the lexicon does not know.
_BARE_NUMBER = frozenset(
    {"yes", "arrive", "check_in", "thanks", "greeting", "neutral", "option", "self"}
    | {"status", "booking"}
)
NUMBER_WORDS = 2


def _besides_number(text: Text, found: list[Found], lexicon: Lexicon, language: str | None) -> str:
    """What, beside a booking number, says it may not be theirs to check in now: any other
    phrase ("not", "cancel", "tomorrow", "my mum's", "or"), a question, a laugh, or more
    words than a lead-in ("my booking number ends in 213 if that helps")."""
    bare: dict[tuple[object, ...], list[Found]] = {}
    for f in found:
        if f.kind in _BARE_NUMBER:
            bare.setdefault(_place(f), []).append(f)
    for f in found:
        if f.kind == "greeting" and f.start > 0:  # "die 61425 ist für morgen"
            return f.shown()
        if f.kind in _BARE_NUMBER:
            continue
        if f.kind != "numbered" and _read_otherwise(f, bare.get(_place(f), []), text):
            continue
        if f.kind == "question_start" and f.start > 0:
            continue
        short = f.size == 1 and len(f.phrase.text) <= 3
        if short and language is not None and f.phrase.language != language:
            continue
        return f.shown()
    if text.asks:
        return "a question"
    laugh_or_eye = _laugh_or_eye(text)
    if laugh_or_eye:
        return laugh_or_eye
    numbers = sum(any(c.isdigit() for c in w) or w in lexicon.numbers for w in text.words)
    # Chinese digits are the number, not words besides it ("预约号是四八二一三").
    clauses = tuple(
        replace(c, words=tuple(_HAN_DIGITS.sub("", w) or "0" for w in c.words))
        for c in text.clauses
    )
    if _uncovered(replace(text, clauses=clauses), found, _BARE_NUMBER) - numbers > NUMBER_WORDS:
        return "more words"
    return ""


def _read_otherwise(found: Found, same_words: list[Found], text: Text) -> bool:
    """Whether a phrase on the same words is read otherwise: in the same language ("n" in
    "pren. n. 15608" is a number's, not English's "no"), or as any language's lead-in before
    the number ("reserva nº 15608", "Booking no. 61425"); not the Spanish "no" of "48213 no
    es mío"."""
    for other in same_words:
        if other.phrase.language == found.phrase.language:
            return True
        if other.kind in ("booking", "option") and _before_digits(text, other):
            return True
    return False


def _before_digits(text: Text, found: Found) -> bool:
    """Whether digits come after a phrase: it leads the number in ("Booking no. 61425",
    "booking number ko ay 7 4 3 0 2"), and is not said of it ("48213 no es mío")."""
    after = [w for w in text.clauses[found.clause].words[found.start + found.size :]]
    after += [w for c in text.clauses[found.clause + 1 :] for w in c.words]
    return any(c.isdigit() for w in after for c in w)


def _place(found: Found) -> tuple[object, ...]:
    """Where a phrase is: its words' place, and in a run of Han, kana or Hangul, which."""
    return (found.clause, found.start, found.size, found.phrase.han and found.phrase.words)


def _number(text: Text, lexicon: Lexicon, length: tuple[int, int]) -> str | None:
    """A booking number: the text's only number, of `length` digits (a site's, or three to
    ten: CaseIds are 32-bit integers), not a phone number ("+44 7700 900123", "0912345678").
    A text with two numbers ("72946 or 72964", "48213, 20 min away", "DOB 03/11/1958") gives
    none: which one, and what is the other?"""
    found = set(_numbers(text, lexicon))  # one number twice is one ("48213 48213")
    if len(found) != 1:
        return None
    number = found.pop()
    digits = "".join(c for c in number if c.isdigit())
    low, high = length
    if _LETTERED.fullmatch(number):  # "A003" is a ticket; "BK84072": asked for the digits
        return None
    if not low <= len(digits) <= high or number[0] in _NOT_BOOKED or number[-1] in _UNIT:
        return None
    if digits.startswith("0") and len(digits) >= PHONE_DIGITS:
        return None
    if _date_or_time(number):
        return None
    return digits


def _date_or_time(number: str) -> bool:
    """Two groups of one or two digits ("11-30", "30/11", "14.30", "9 15"): a date or a time,
    not a booking number dictated in groups ("482 13", "48-213")."""
    groups = [g for g in re.split(r"\D+", number) if g]
    return len(groups) == 2 and all(len(g) <= 2 for g in groups)
