"""SMS arithmetic: GSM-7 or UCS-2, how many segments a text costs, and names made GSM-7 safe."""

from __future__ import annotations

import unicodedata

from anyascii import anyascii

# GSM 03.38 default alphabet; the extension table's characters cost two septets each.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
_GSM7 = frozenset(GSM7_BASIC) | frozenset(GSM7_EXTENSION)
GSM7_SEGMENT = 160  # septets in a single GSM-7 segment
UCS2_SEGMENT = 70  # UTF-16 code units in a single UCS-2 segment
UCS2_TWO_SEGMENTS = 134  # two concatenated UCS-2 segments (67 each)


# Every reply is measured (is_gsm7, septets) and its values made safe (to_gsm7): in C's
# loops (set and str methods), not a generator's, a reply's arithmetic costs ~2 µs, not ~20.


def is_gsm7(text: str) -> bool:
    return _GSM7.issuperset(text)


def septets(text: str) -> int:
    """Length of a GSM-7 text in septets (extension characters count twice)."""
    return len(text) + sum(map(text.count, GSM7_EXTENSION))


def ucs2_units(text: str) -> int:
    """Length of a text in UCS-2 code units (an emoji takes two)."""
    return len(text.encode("utf-16-le")) // 2


def encoding(text: str) -> str:
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def segments(text: str) -> int:
    """How many SMS segments a text needs (GSM-7 when it can be, else UCS-2)."""
    if is_gsm7(text):
        length, single, multi = septets(text), GSM7_SEGMENT, 153
    else:
        length, single, multi = ucs2_units(text), UCS2_SEGMENT, 67
    return 1 if length <= single else -(-length // multi)


def to_gsm7(value: str) -> str:
    """A value made GSM-7 safe, so a reply never falls back to 70-character UCS-2 segments:
    a word whose accents are all it lacks loses them (Zoë: Zoe); a word in another script is
    transliterated whole (Łukasz: Lukasz, Σοφία: Sofia, 王芳: WangFang); symbols and emoji
    that GSM-7 cannot show are left out."""
    if _GSM7.issuperset(value):
        return " ".join(value.split())
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
