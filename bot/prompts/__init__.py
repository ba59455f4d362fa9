"""Every word a customer reads, and every phrase the bot listens for, per language, from
bot/prompts/<lang>.toml (or PROMPTS_DIR): loaded and checked at start-up, loudly.

A language is a file and nothing else: its [texts] (each with exactly its placeholders, fitting
its segments with the longest values), its [understand] phrases (see bot.understanding), and
[quick_replies] for staff. `load_catalogue` reads them all; `Catalogue.prompts(lang)` renders.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PromptError
from ..replies import CHOICE_LISTS, PIECES, PLACEHOLDERS, ReplyKey
from ..sms import (
    GSM7_SEGMENT,
    UCS2_TWO_SEGMENTS,
    is_gsm7,
    segments,
    septets,
    to_gsm7,
    ucs2_units,
)
from ..understanding import Lexicon, build
from ..understanding.lexicon import LISTS

BUILT_IN = Path(__file__).parent  # the texts shipped with the package, next to this file

# The longest values a text can be given: VirtualQ's Ticket is at most 20 characters; people are
# named by their first name, cut to 20; a counter (LocationName) is cut to 24.
WORST_CASE: dict[str, str] = {
    "ticket": "W" * 20,
    "position": "999",
    "wait": "999",
    "number": "9" * 12,
    "name": "N" * 20,
    "counter": "C" * 24,
    "lines": "L" * 100,  # several people's status lines; cut to fit when longer
}
MAX_CHOICES = 9
SCRIPTS = ("latin", "other")
# [understand] keys besides the phrase lists: more lists of text, and tables.
_UNDERSTAND_TEXT_LISTS = {
    "typo_ok",
    "typo_never",
    "names",
    "commands",
    "language_words",
    "opt_out",
    "opt_in",
}
_UNDERSTAND_EXTRA = _UNDERSTAND_TEXT_LISTS | {"numbers", "ordinals", "aliases", "nicknames"}
# Kept for the segment counters of anything that imports them from here.
__all__ = ["BUILT_IN", "Catalogue", "Prompts", "load", "load_catalogue", "segments", "to_gsm7"]


@dataclass(frozen=True)
class Prompts:
    """One language's texts: rendered with their values, within their segments."""

    language: str
    name: str
    script: str  # latin (GSM-7, one segment) or other (UCS-2, up to two)
    texts: Mapping[str, str]
    quick_replies: Mapping[str, str] = field(default_factory=dict)

    @property
    def limit(self) -> int:
        return GSM7_SEGMENT if self.script == "latin" else UCS2_TWO_SEGMENTS

    def fits(self, text: str) -> bool:
        if self.script == "latin":
            return is_gsm7(text) and septets(text) <= GSM7_SEGMENT
        return ucs2_units(text) <= UCS2_TWO_SEGMENTS

    def value(self, name: str, value: object) -> str:
        """A value as a text may show it: cut to its longest, and GSM-7 in a latin language
        (names are transliterated, never dropped)."""
        text = " ".join(str(value).split())
        if self.script == "latin":
            text = to_gsm7(text)
        longest = len(WORST_CASE.get(name, "")) or 60
        return text[:longest].rstrip()

    def render(self, key: ReplyKey, **values: object) -> str:
        """The text for a reply key with its values filled in, within its segments."""
        safe = {name: self.value(name, value) for name, value in values.items()}
        return self._fitted(self.texts[key].format_map(safe))

    def render_choices(self, key: ReplyKey, names: Sequence[str], everyone: bool = False) -> str:
        """A choose text listing people (and "N for everyone"), each name shortened as needed
        to fit. A name with nothing to show (emoji only) is listed by its number."""
        shown = [self.value("name", n) or f"#{i}" for i, n in enumerate(names, start=1)]
        for limit in (20, 12, 8, 5, 3):
            items = [
                self.texts[ReplyKey.CHOICE_ITEM].format(number=i, name=_shorten(name, limit))
                for i, name in enumerate(shown, start=1)
            ]
            if everyone:
                items.append(self.texts[ReplyKey.CHOICE_ALL].format(number=len(shown) + 1))
            text = self.texts[key].format(options=self.texts[ReplyKey.CHOICE_SEPARATOR].join(items))
            if self.fits(text):
                return text
        return self._fitted(text)

    def render_lines(
        self, key: ReplyKey, lines: Sequence[tuple[ReplyKey, Mapping[str, object]]]
    ) -> str:
        """A text of several people's status, one line each, joined (cut to fit)."""
        parts = [
            self.texts[line].format_map({n: self.value(n, v) for n, v in values.items()})
            for line, values in lines
        ]
        joined = self.texts[ReplyKey.STATUS_SEPARATOR].join(parts)
        return self._fitted(self.texts[key].format(lines=joined))

    def _fitted(self, text: str) -> str:
        while not self.fits(text) and len(text) > 4:
            text = text[: len(text) - 4].rstrip() + "..."
        return text


def _shorten(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    first = name.split()[0] if name.split() else name
    return first if len(first) <= limit else first[:limit]


@dataclass(frozen=True)
class Catalogue:
    """Every language's prompts, the default one, and every language's phrases."""

    languages: Mapping[str, Prompts]
    default: str
    lexicon: Lexicon

    def prompts(self, language: str | None = None) -> Prompts:
        """A language's prompts (the default language's when it has none)."""
        return self.languages.get(language or self.default) or self.languages[self.default]

    def knows(self, language: str | None) -> bool:
        return language is not None and language in self.languages


def load_catalogue(directory: Path, default: str = "en") -> Catalogue:
    """Every <lang>.toml in `directory`, checked; PromptError naming the file and the key if
    anything is off, or if the default language has no file."""
    files = sorted(p for p in directory.glob("*.toml") if not p.name.startswith("_"))
    tables: dict[str, dict[str, object]] = {}
    languages: dict[str, Prompts] = {}
    for path in files:
        data = _read(path)
        languages[path.stem] = _prompts(path, data)
        tables[path.stem] = _understand(path, data)
    if default not in languages:
        raise PromptError(f"no prompts file for language {default!r} in {directory}")
    lexicon = build(tables)
    opt_words = lexicon.opt_out | lexicon.opt_in
    if any(lexicon.has_phrase(w) for w in opt_words):  # some list has one: find which
        _check_opt_out(directory, tables, opt_words)
    return Catalogue(languages, default, lexicon)


def load(directory: Path, language: str) -> Prompts:
    """One language's prompts, checked (the whole catalogue is checked by load_catalogue)."""
    path = directory / f"{language}.toml"
    return _prompts(path, _read(path))


def _read(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PromptError(f"no prompts file for language {path.stem!r} at {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PromptError(f"{path}: not valid TOML: {exc}") from exc


def _prompts(path: Path, data: Mapping[str, object]) -> Prompts:
    meta = data.get("meta", {})
    meta = meta if isinstance(meta, Mapping) else {}
    script = meta.get("script", "latin")
    if script not in SCRIPTS:
        raise PromptError(f"{path}: [meta] script must be one of {', '.join(SCRIPTS)}")
    texts = data.get("texts", {})
    if not isinstance(texts, Mapping):
        raise PromptError(f"{path}: [texts] must be a table")
    for key, wanted in PLACEHOLDERS.items():
        if not isinstance(texts.get(key), str):
            raise PromptError(f"{path}: text {str(key)!r} is missing")
        _check_text(path, key, str(texts[key]), wanted, script)
    unknown = sorted(set(texts) - {k.value for k in ReplyKey})
    if unknown:
        raise PromptError(f"{path}: unknown text(s) {unknown}: no reply uses them")
    quick = data.get("quick_replies", {})
    if not isinstance(quick, Mapping) or not all(isinstance(v, str) for v in quick.values()):
        raise PromptError(f"{path}: [quick_replies] must be a table of texts")
    prompts = Prompts(
        language=path.stem,
        name=str(meta.get("name", path.stem)),
        script=str(script),
        texts={str(k): str(v) for k, v in texts.items()},
        quick_replies={str(k): str(v) for k, v in quick.items()},
    )
    _check_lengths(path, prompts)
    return prompts


def _check_text(path: Path, key: ReplyKey, text: str, wanted: frozenset[str], script: str) -> None:
    used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    name = str(key)
    if unknown := used - wanted:
        raise PromptError(f"{path}: text {name!r} uses unknown placeholder(s) {sorted(unknown)}")
    if missing := wanted - used:
        raise PromptError(f"{path}: text {name!r} must use placeholder(s) {sorted(missing)}")
    if script == "latin" and not is_gsm7(text):
        bad = sorted({c for c in text if not is_gsm7(c)})
        raise PromptError(
            f"{path}: text {name!r} has non-GSM-7 character(s) {bad}: leave the accents out, or "
            'set [meta] script = "other" (two UCS-2 segments a text)'
        )


def _check_lengths(path: Path, prompts: Prompts) -> None:
    what = "one SMS segment (160 GSM-7)" if prompts.script == "latin" else "two UCS-2 segments"
    for key in PLACEHOLDERS:
        if key in PIECES:
            continue
        values = {name: WORST_CASE[name] for name in PLACEHOLDERS[key] if name in WORST_CASE}
        if key in CHOICE_LISTS:
            text = prompts.render_choices(key, [WORST_CASE["name"]] * 3, everyone=True)
        else:
            text = prompts.texts[key].format_map(values)
        if not prompts.fits(text):
            raise PromptError(
                f"{path}: text {str(key)!r} is {len(text)} characters ({segments(text)} "
                f"segments) with the longest values; it must fit {what}"
            )
    for name, text in prompts.quick_replies.items():
        if not prompts.fits(text):
            raise PromptError(f"{path}: quick reply {name!r} must fit {what}")


def _understand(path: Path, data: Mapping[str, object]) -> dict[str, object]:
    table = data.get("understand", {})
    if not isinstance(table, Mapping):
        raise PromptError(f"{path}: [understand] must be a table")
    for key, value in table.items():
        if key in LISTS or key in _UNDERSTAND_TEXT_LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PromptError(f"{path}: [understand] {key!r} must be a list of text")
        elif key in ("numbers", "ordinals"):
            if not isinstance(value, Mapping) or not all(
                isinstance(v, int) for v in value.values()
            ):
                raise PromptError(f"{path}: [understand] {key!r} must map words to numbers")
        elif key == "aliases":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, str) for v in value.values()
            ):
                raise PromptError(f"{path}: [understand] aliases must map words to words")
        elif key == "nicknames":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, list) and all(isinstance(n, str) for n in v) for v in value.values()
            ):
                raise PromptError(f"{path}: [understand] nicknames must map names to lists")
        elif key not in _UNDERSTAND_EXTRA:
            raise PromptError(f"{path}: [understand] {key!r} is not a list the bot reads")
    return dict(table)


def _check_opt_out(
    directory: Path, tables: Mapping[str, Mapping[str, object]], words: set[str] | frozenset[str]
) -> None:
    """The bot never uses a Twilio opt-out word as a command of its own."""
    from ..understanding.lexicon import phrase_words

    for language, table in tables.items():
        for kind in LISTS:
            phrases = table.get(kind, ())
            for phrase in phrases if isinstance(phrases, list) else ():
                if isinstance(phrase, str) and " ".join(phrase_words(phrase)[0]) in words:
                    raise PromptError(
                        f"{directory / (language + '.toml')}: {phrase!r} in {kind!r} is a "
                        "Twilio opt-out word; the bot must never use one as its own command"
                    )
