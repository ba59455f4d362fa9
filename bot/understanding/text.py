"""A customer's text made comparable: one case, no accents where a script has them as marks,
one form of each Arabic letter, digits as digits, emoji as words, clauses and their questions.

Pure and cheap: a text is a few dozen characters, read once.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Emoji people answer with, as words the lexicons use (skin tones and variants dropped first).
EMOJI = {
    "👍": "emoji_yes",
    "✅": "emoji_yes",
    "✔": "emoji_yes",
    "☑": "emoji_yes",
    "🙆": "emoji_yes",
    "👌": "emoji_ok",
    "🆗": "emoji_ok",
    "👎": "emoji_no",
    "❌": "emoji_no",
    "✖": "emoji_no",
    "🚫": "emoji_no",
    "🙅": "emoji_no",
    "🙏": "emoji_thanks",
    "❤": "emoji_love",
    "💙": "emoji_love",
    "😘": "emoji_love",
    "🥰": "emoji_love",
    "🅿": "emoji_parking",  # "🅿️ sí": in the car park
    # A rolled eye, a side-eye: "sí claro, y esperar dos horas más 🙄" is no yes.
    "🙄": "emoji_doubt",
    "😒": "emoji_doubt",
    "🤨": "emoji_doubt",
    "😑": "emoji_doubt",
    # A raised hand: "🙋" (here!, me!): a yes to "are you here now?", no yes to leaving.
    "🙋": "emoji_here",
    # Tears of laughter: "dao le dao le... zai beiwo li 😂" (in bed) is a joke, like a "lol".
    "😂": "emoji_laugh",
    "🤣": "emoji_laugh",
}
# Variation selectors, joiners, skin tones and the keycap of "2️⃣", which leave the digit.
_MODIFIERS = dict.fromkeys([0xFE0F, 0xFE0E, 0x200D, 0x20E3, *range(0x1F3FB, 0x1F400)])
_QUESTION_MARKS = "?？؟¿"
_APOSTROPHES = dict.fromkeys(map(ord, "'’`´ʼ‘"))
_LETTER_MAP = str.maketrans(
    {"đ": "d", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ı": "i", "ſ": "s"}
)
# Arabic: vowel marks and the stretching tatweel dropped, one form of alef, ya, ta marbuta.
_ARABIC_MARKS = dict.fromkeys([*range(0x064B, 0x0653), 0x0670, 0x0640])
_ARABIC_LETTERS = str.maketrans(
    {"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"}
)
# Digits of other scripts (Arabic-Indic, Persian, Devanagari) as ASCII.
_DIGITS = str.maketrans(
    {
        **{chr(0x0660 + i): str(i) for i in range(10)},
        **{chr(0x06F0 + i): str(i) for i in range(10)},
        **{chr(0x0966 + i): str(i) for i in range(10)},
    }
)
# Where one thought ends and another starts; kept, to see which clause asks a question.
_CLAUSE_BREAK = re.compile(r"([.!?？؟¿;\n。！；]+|,\s|[，،、]|\s-\s|\b(?:but|mais|aber|но)\b)")


# Letters of the Arabic script that Arabic does not use (Persian's and Urdu's pe, che, zhe,
# gaf, keheh, farsi yeh; Urdu's tteh, ddal, rreh, noon ghunna, heh goal, barree yeh, do
# chashmee heh): a text with them is in the script, not in the language.
_NOT_ARABIC_LETTERS = frozenset("پچژگکیٹڈڑںہےھ")
# Cyrillic letters Russian does not use: Ukrainian's і ї є ґ, Belarusian's ў, Serbian's and
# Macedonian's ђ ј љ њ ћ џ ѓ ќ ѕ, Kazakh's ә ғ қ ң ө ұ ү һ (upper case too).
_NOT_RUSSIAN_LETTERS = frozenset("іїєґўђјљњћџѓќѕәғқңөұүһ" + "ІЇЄҐЎЂЈЉЊЋЏЃЌЅӘҒҚҢӨҰҮҺ")


def _is_han(char: str) -> bool:
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0xF900 <= code <= 0xFAFF
        or 0x3005 <= code <= 0x3007  # 々 (佐々木), 〆, 〇
    )


def _is_kana(char: str) -> bool:
    code = ord(char)
    return 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9F


def _is_hangul(char: str) -> bool:
    code = ord(char)
    return 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def _is_cjk(char: str) -> bool:
    """Han, Japanese kana or Korean Hangul: scripts whose phrases are found inside a run of
    characters (Chinese and Japanese have no spaces; Korean words take endings and particles,
    and are often texted without spaces)."""
    return ord(char) >= 0x1100 and (_is_han(char) or _is_kana(char) or _is_hangul(char))


def is_cjk_word(word: str) -> bool:
    """A word that is a run of Han, kana or Hangul characters (see `words_of`)."""
    return bool(word) and _is_cjk(word[0])


def _has_marks_to_drop(code: int) -> bool:
    """Latin, Greek and Cyrillic (with Vietnamese's precomposed letters): accents are marks
    people drop when they text. Not Devanagari or Arabic, whose marks are letters."""
    return code < 0x0590 or 0x1E00 <= code <= 0x1FFF


def scripts_of(text: str) -> frozenset[str]:
    """The scripts that say which language a text is in, as far as letters can."""
    found = set()
    for char in text:
        code = ord(char)
        if 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F:
            found.add("arabic")
            if char in _NOT_ARABIC_LETTERS:
                found.add("persian_urdu")
        elif 0x0900 <= code <= 0x097F:
            found.add("devanagari")
        elif 0x0370 <= code <= 0x03FF or 0x1F00 <= code <= 0x1FFF:
            found.add("greek")
        elif 0x0400 <= code <= 0x04FF:
            found.add("cyrillic")
            if char in _NOT_RUSSIAN_LETTERS:
                found.add("cyrillic_not_russian")
        elif _is_han(char):
            found.add("han")
        elif _is_kana(char):
            found.add("kana")
        elif _is_hangul(char):
            found.add("hangul")
        elif char in "ăâđêôơưĂÂĐÊÔƠƯ" or 0x1EA0 <= code <= 0x1EF9:
            found.add("vietnamese")
    return frozenset(found)


def plain(text: str) -> str:
    """One comparable form of a word or phrase: lower case, no accents where they are marks,
    no apostrophes ("I'm" is "im"), Arabic letters in one form, digits as ASCII."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_MODIFIERS)
    text = text.translate(_APOSTROPHES).translate(_DIGITS).translate(_ARABIC_MARKS)
    text = text.translate(_ARABIC_LETTERS).translate(_LETTER_MAP)
    out = []
    for char in text:
        code = ord(char)
        if code < 0x80:
            out.append(char)
        elif _has_marks_to_drop(code):
            out.extend(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
            )
        else:
            out.append(char)
    return "".join(out)


def words_of(text: str) -> list[str]:
    """The words of a plain text: runs of letters, digits and marks; each run of Han, kana and
    Hangul characters is one word (Chinese and Japanese have no spaces: phrases are found
    inside it)."""
    out: list[str] = []
    current: list[str] = []
    cjk = False
    for char in text:
        kind = unicodedata.category(char)[0]
        keep = kind in "LNM" or char == "_"
        char_cjk = keep and _is_cjk(char)
        if not keep or (current and char_cjk != cjk):
            if current:
                out.append("".join(current))
            current = []
        if keep:
            current.append(char)
            cjk = char_cjk
    if current:
        out.append("".join(current))
    return out


@dataclass(frozen=True)
class Clause:
    """A stretch of a text between sentence breaks, as words, and whether it asks."""

    words: tuple[str, ...]
    asks: bool  # ends with (or holds) a question mark


@dataclass(frozen=True)
class Text:
    """A customer's text, ready to read."""

    raw: str
    whole: str  # the plain text as one string of words, for whole-message keywords
    clauses: tuple[Clause, ...]
    scripts: frozenset[str]
    emoji: tuple[str, ...]

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(w for clause in self.clauses for w in clause.words)

    @property
    def asks(self) -> bool:
        return any(c.asks for c in self.clauses)


# Words someone else wrote, quoted: "it says "text HERE when you arrive"", 「着きました」と
# 送ればいい？, or the sender's own words taken back: sorry, 'em tới rồi' là em gửi nhầm. A
# quote of two words or more (three characters or more in Han or kana) is not the sender's
# own words now, nor is a one-word quote in a text of more besides it; a quoted keyword
# alone ("HERE", 'here pls') is. Single quotes only as quotes, not apostrophes: opened
# after a space, closed before one (I'm, o'clock and the Arabizi 9' are not).
_QUOTED = re.compile(
    r'"([^"]{1,300})"|“([^”]{1,300})”|«([^»]{1,300})»|„([^“”]{1,300})[“”]|「([^」]{1,300})」'
    r"|『([^』]{1,300})』|(?<![\w'’])['‘](\w[^'’‘\n]{0,298}?[^\s'’‘])['’](?![\w'’])"
)
_QUOTE_MARKS = "\"“«„「『'‘"
ALONE_WITH_A_QUOTE = 3  # words besides a one-word quote that still leave it the sender's
# A link: spam ("Claim your prize here: bit.ly/…"), never how someone says they have arrived.
LINK = re.compile(
    r"https?://|www\.|\b[a-z0-9-]+\.(?:ly|com|net|org|io|co|me|link|info|xyz|gl)/", re.I
)


def _unquoted(raw: str) -> str:
    if not any(q in raw for q in _QUOTE_MARKS) or not _QUOTED.search(raw):
        return raw
    besides = len(words_of(plain(_QUOTED.sub(" ", raw))))

    def drop(match: re.Match[str]) -> str:
        quoted = next(g for g in match.groups() if g is not None)
        words = words_of(plain(quoted))
        if (
            len(words) >= 2
            or (len(words) == 1 and is_cjk_word(words[0]) and len(words[0]) >= 3)
            or besides > ALONE_WITH_A_QUOTE
        ):
            return " "
        return match.group()

    return _QUOTED.sub(drop, raw)


def prepare(raw: str) -> Text:
    """Read a raw SMS body into clauses of plain words."""
    raw = _unquoted(raw)
    emoji = tuple(word for char, word in EMOJI.items() if char in raw)
    for char, word in EMOJI.items():
        raw = raw.replace(char, f" {word} ")
    scripts = scripts_of(raw)
    marks = _QUESTION_MARKS + (";" if "greek" in scripts else "")  # Greek's "?" is ";"
    parts = _CLAUSE_BREAK.split(raw)
    clauses = []
    for index in range(0, len(parts), 2):
        before = parts[index - 1] if index else ""
        after = parts[index + 1] if index + 1 < len(parts) else ""
        words = tuple(words_of(plain(parts[index])))
        if words:
            asks = any(q in after or q in parts[index] for q in marks) or "¿" in before
            clauses.append(Clause(words, asks))
    whole = " ".join(w for c in clauses for w in c.words)
    return Text(raw, whole, tuple(clauses), scripts, emoji)
