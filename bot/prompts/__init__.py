"""Customer-facing texts and keywords, per language, from bot/prompts/<lang>.toml; each text
checked at start-up to fit one SMS segment."""

from __future__ import annotations

import re
import string
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from anyascii import anyascii

from ..errors import PromptError
from ..replies import CHOICE_LISTS, PIECES, PLACEHOLDERS, ReplyKey

BUILT_IN = Path(__file__).parent  # the texts shipped with the package, next to this file

SEGMENT_LIMIT = 160

# GSM 03.38 default alphabet; the extension table's characters cost two septets each.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
_GSM7 = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENSION)

# The longest values a text can be given (VirtualQ: Ticket <= 20 chars; names from the directory).
WORST_CASE: dict[str, str] = {
    "ticket": "W" * 20,
    "position": "999",
    "wait": "999",
    "number": "9" * 12,
    "name": "N" * 50,
}
MAX_CHOICES = 9

INTENTS = ("arrive", "yes", "no", "status", "help", "leave", "running_late")


def is_gsm7(text: str) -> bool:
    return all(char in _GSM7 for char in text)


def septets(text: str) -> int:
    """Length of a GSM-7 text in septets (extension characters count twice)."""
    return sum(2 if char in GSM7_EXTENSION else 1 for char in text)


def segments(text: str) -> int:
    """How many SMS segments a text needs (GSM-7 when it can be, else UCS-2)."""
    if is_gsm7(text):
        length, single, multi = septets(text), 160, 153
    else:
        length, single, multi = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if length <= single else -(-length // multi)


def to_gsm7(value: str) -> str:
    """A value made GSM-7 safe, so a reply never falls back to 70-character UCS-2 segments:
    a word whose accents are all it lacks loses them (Zoë: Zoe); a word in another script is
    transliterated whole (Łukasz: Lukasz, Σοφία: Sofia, 王芳: WangFang); symbols and emoji
    that GSM-7 cannot show are left out."""
    words = []
    for word in value.split():
        kept = "".join(c for c in word if c in _GSM7 or unicodedata.category(c)[0] in "LNM")
        plain = "".join(c if c in _GSM7 else _unaccented(c) for c in kept)
        if not all(c in _GSM7 for c in plain):
            for greek, latin in _GREEK_DIGRAPHS.items():  # anyascii reads ου as "oy"
                kept = kept.replace(greek, latin)
            plain = "".join(c for c in anyascii(kept) if c in _GSM7)
        if plain:
            words.append(plain)
    return " ".join(words)


_GREEK_DIGRAPHS = {"ου": "ou", "ού": "ou", "Ου": "Ou", "ΟΥ": "OU"}


def _unaccented(char: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Prompts:
    """One language's texts and keyword lists."""

    language: str
    texts: Mapping[str, str]
    keywords: Mapping[str, tuple[str, ...]]
    typo_exclusions: frozenset[str]
    opt_out: frozenset[str]
    opt_in: frozenset[str]

    def render(self, key: ReplyKey, **values: object) -> str:
        """The text for a reply key with its values filled in, within one GSM-7 segment."""
        safe = {name: to_gsm7(str(value)) for name, value in values.items()}
        text = self.texts[key].format_map(safe)
        return text if septets(text) <= SEGMENT_LIMIT else _truncate(text)

    def render_choices(self, key: ReplyKey, names: list[str]) -> str:
        """A `choose` text listing the names, each shortened as needed to fit one segment."""
        return self.texts[key].format(options=self._options(key, names))

    def _options(self, key: ReplyKey, names: list[str]) -> str:
        """`1 for Alex, 2 for Sam`, shortening names until the whole text fits one segment."""
        # A name with nothing GSM-7 can show (emoji only) is listed by its number.
        names = [to_gsm7(n) or f"#{i}" for i, n in enumerate(names, start=1)]
        for limit in (50, 20, 12, 8, 5, 3):
            options = self.texts[ReplyKey.CHOICE_SEPARATOR].join(
                self.texts[ReplyKey.CHOICE_ITEM].format(number=i, name=_shorten(name, limit))
                for i, name in enumerate(names, start=1)
            )
            if septets(self.texts[key].format(options=options)) <= SEGMENT_LIMIT:
                break
        return options


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    first = name.split()[0] if name.split() else name
    return first if len(first) <= limit else first[:limit]


def _truncate(text: str) -> str:
    while septets(text) > SEGMENT_LIMIT - 3:
        text = text[:-1]
    return text.rstrip() + "..."


def load(directory: Path, language: str) -> Prompts:
    """Load and check one language's prompts; fail loudly, naming the key, if anything is off."""
    path = directory / f"{language}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PromptError(f"no prompts file for language {language!r} at {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PromptError(f"{path}: not valid TOML: {exc}") from exc
    texts = data.get("texts", {})
    raw_keywords = data.get("keywords", {})
    for key, wanted in PLACEHOLDERS.items():
        if not isinstance(texts.get(key), str):
            raise PromptError(f"{path}: text {str(key)!r} is missing")
        _check_text(path, key, texts[key], wanted)
    keywords: dict[str, tuple[str, ...]] = {}
    for name in (*INTENTS, "typo_exclusions", "opt_out", "opt_in"):
        words = raw_keywords.get(name)
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise PromptError(f"{path}: keyword list {name!r} is missing or not a list of text")
        keywords[name] = tuple(w.casefold().strip() for w in words if w.strip())
    prompts = Prompts(
        language=language,
        texts=dict(texts),
        keywords={name: keywords[name] for name in INTENTS},
        typo_exclusions=frozenset(keywords["typo_exclusions"]),
        opt_out=frozenset(keywords["opt_out"]),
        opt_in=frozenset(keywords["opt_in"]),
    )
    _check_keywords(path, prompts)
    _check_lengths(path, prompts)
    return prompts


def _check_text(path: Path, key: ReplyKey, text: str, wanted: frozenset[str]) -> None:
    used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    name = str(key)
    if unknown := used - wanted:
        raise PromptError(f"{path}: text {name!r} uses unknown placeholder(s) {sorted(unknown)}")
    if missing := wanted - used:
        raise PromptError(f"{path}: text {name!r} must use placeholder(s) {sorted(missing)}")
    if not is_gsm7(text):
        bad = sorted({c for c in text if c not in _GSM7})
        raise PromptError(f"{path}: text {str(key)!r} has non-GSM-7 character(s) {bad}")


def _check_keywords(path: Path, prompts: Prompts) -> None:
    for intent, words in prompts.keywords.items():
        for word in words:
            if normalise_text(word) in prompts.opt_out:
                raise PromptError(
                    f"{path}: keyword {word!r} of {intent!r} is a Twilio opt-out word; "
                    "the bot must never use one as its own command"
                )


def _check_lengths(path: Path, prompts: Prompts) -> None:
    for key in PLACEHOLDERS:
        if key in PIECES:
            continue
        values: dict[str, object] = {
            name: WORST_CASE[name] for name in PLACEHOLDERS[key] if name in WORST_CASE
        }
        if key in CHOICE_LISTS:
            text = prompts.render_choices(key, [WORST_CASE["name"]] * MAX_CHOICES)
        else:
            text = prompts.texts[key].format_map(values)
        if septets(text) > SEGMENT_LIMIT:
            raise PromptError(
                f"{path}: text {str(key)!r} is {septets(text)} characters with the longest values; "
                f"one SMS segment holds {SEGMENT_LIMIT}"
            )


_APOSTROPHES = re.compile(r"['’`´]")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise_text(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents, punctuation and emoji gone."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", plain)).strip()
