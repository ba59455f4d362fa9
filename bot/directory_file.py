"""Read a front office's directory export, whatever its encoding and columns, into rows."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import phones

MAX_PERSONAL_ID = 30
MAX_NAME = 100
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# A legitimate multi-line cell (an address, a name) spans a few lines; more is a quote left open,
# which would otherwise swallow every following row without a word.
MAX_LINES_PER_ROW = 10


@dataclass(frozen=True)
class Row:
    line: int  # where the row starts in the file, counting lines inside quoted cells
    phone: str  # E.164
    personal_id: str
    name: str | None
    language: str | None  # ISO 639-1


@dataclass
class DirectoryFile:
    rows: list[Row]
    rejected: list[tuple[int, str]]  # (line, why)
    notes: list[str]  # what was detected and ignored, one line each, for the person importing
    encoding: str
    delimiter: str


def _key(label: str) -> str:
    return re.sub(r"[\s_\-.]+", "", label.casefold())


def _keys(names: str) -> frozenset[str]:
    return frozenset(_key(n) for n in names.split(","))


PHONE_NAMES = "phone, mobile, cell, tel, telephone, sms, msisdn, number"
PERSONAL_ID_NAMES = "personal_id, id, student id, patient id, client id, customer id, mrn"
ALIASES = {
    "phone": _keys(
        "phone,phone number,mobile,mobile number,mobile phone,cell,cell phone,tel,telephone,"
        "telnumber1,tel number 1,phone 1,sms,msisdn,number"
    ),
    "phone2": _keys(
        "telnumber2,tel number 2,phone 2,mobile 2,alternate phone,alt phone,home phone,work phone"
    ),
    "personal_id": _keys(
        "personal_id,personal id,id,student id,student number,patient id,client id,customer id,"
        "mrn,external id"
    ),
    "name": _keys("name,full name,customer name,display name"),
    "first": _keys("first,first name,given name,forename"),
    "last": _keys("last,last name,surname,family name"),
    "language": _keys("language,lang,language code,preferred language,locale"),
}

GENERIC = {"id", "number"}

ISO_639_1 = frozenset(
    "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy "
    "da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu "
    "hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb "
    "lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om "
    "or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw "
    "ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu".split()
)
LANGUAGE_NAMES = {
    "en": "english",
    "es": "spanish|español|castellano",
    "zh": "chinese|中文|mandarin|汉语|漢語|普通话",
    "vi": "vietnamese|tiếng việt",
    "ar": "arabic|العربية|عربي",
    "hi": "hindi|हिन्दी|हिंदी",
    "tl": "tagalog|filipino|pilipino|fil",
    "pt": "portuguese|português",
    "fr": "french|français",
    "el": "greek|ελληνικά",
    "it": "italian|italiano",
    "de": "german|deutsch",
    "ru": "russian|русский|русский язык",
    "ko": "korean|한국어|한국말|조선어",
    "ja": "japanese|日本語|にほんご",
}


def _plain(text: str) -> str:
    """Without accents, so "Espanol" and "tieng viet" from ASCII-only exports still match."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


LANGUAGES = {
    form: code
    for code, names in LANGUAGE_NAMES.items()
    for name in names.split("|")
    for form in (name, _plain(name))
}


def language_code(cell: str) -> str | None:
    """The ISO 639-1 code for a language cell ("es-MX", "Español", "Chinese (Simplified)")."""
    text = " ".join(unicodedata.normalize("NFC", cell).casefold().split())
    code = re.fullmatch(r"([a-z]{2})(?:[-_][a-z0-9]{1,8})*", text)
    if code and code[1] in ISO_639_1:
        return code[1]
    bare = re.sub(r"\s*\(.*\)$", "", text)
    for form in (text, _plain(text), bare, _plain(bare)):
        if form in LANGUAGES:
            return LANGUAGES[form]
    return None


def _decode(data: bytes) -> tuple[str, str, str]:
    """(text, codec, how it was chosen)."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, "replace"), codec, "byte order mark"
    sample = data[:4096]
    if len(sample) >= 4:
        # ASCII-heavy UTF-16 has a NUL in every other byte; UTF-8 and cp1252 text have none.
        even = sample[0::2].count(0) / len(sample[0::2])
        odd = sample[1::2].count(0) / len(sample[1::2])
        guess = None
        if odd > 0.3 and even < 0.05:
            guess = "utf-16-le"
        elif even > 0.3 and odd < 0.05:
            guess = "utf-16-be"
        if guess:
            try:
                return data.decode(guess), guess, "NUL bytes, no byte order mark"
            except UnicodeDecodeError:
                pass
    try:
        return data.decode("utf-8"), "utf-8", "valid UTF-8"
    except UnicodeDecodeError:
        pass
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; latin-1 maps them to themselves.
    text = data.decode("cp1252", "surrogateescape")
    text = re.sub("[\udc80-\udcff]", lambda m: chr(ord(m[0]) - 0xDC00), text)
    return text, "cp1252", "not valid UTF-8"


def _delimiter(text: str) -> tuple[str, str]:
    """(delimiter, how it was found): the Sniffer, checked against the header line's counts."""
    sample = "".join(itertools.islice(io.StringIO(text, newline=""), 50))
    header = next((line for line in sample.splitlines() if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", header)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    try:
        sniffed = csv.Sniffer().sniff(sample, "".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = ""
    # The Sniffer prefers a comma among equally consistent candidates, which picks the decimal
    # comma of a semicolon file; the header line has no numbers to mislead it.
    if sniffed in counts and counts[sniffed] and counts[sniffed] == counts[best]:
        return sniffed, "sniffed"
    if counts[best]:
        return best, "counted on the first line"
    return ",", "none found, comma assumed"


def _records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, stripped cells) of each non-empty record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            cells = [c.strip() for c in record]
            if any(cells):
                yield start, end, cells
    except csv.Error as exc:
        raise ValueError(f"line {end + 1}: {exc}") from exc


@dataclass(frozen=True)
class _Columns:
    phones: tuple[int, ...]
    personal_id: int
    name: int | None = None
    first: int | None = None
    last: int | None = None
    language: int | None = None


def _columns(header: list[str], notes: list[str]) -> _Columns:
    found: dict[str, list[int]] = {role: [] for role in ALIASES}
    for i, label in enumerate(header):
        role = next((r for r, keys in ALIASES.items() if _key(label) in keys), None)
        if role:
            found[role].append(i)
    for role, columns in found.items():
        # "ID" is often a database key next to the real "Student ID"; "Number" a house number.
        specific = [i for i in columns if _key(header[i]) not in GENERIC]
        found[role] = specific or columns
    missing = [r for r in ("phone", "personal_id") if not found[r]]
    if missing:
        listed = ", ".join(c for c in header if c) or "none"
        wants = {"phone": PHONE_NAMES, "personal_id": PERSONAL_ID_NAMES}
        raise ValueError(
            f"no {' or '.join(missing)} column: found columns {listed}; "
            + "name "
            + " and ".join(f"one of {wants[r]}, …" for r in missing)
        )
    chosen = {r: found[r][0] if found[r] else None for r in ALIASES}
    phone_columns = (*found["phone"], *found["phone2"])
    used = {*phone_columns, *(i for i in chosen.values() if i is not None)}
    parts = ["phone=" + " + ".join(header[i] for i in phone_columns)]
    parts += [f"{r}={header[i]}" for r, i in chosen.items() if i is not None and "phone" not in r]
    notes.append("columns: " + ", ".join(parts))
    ignored = [label for i, label in enumerate(header) if i not in used and label]
    if ignored:
        notes.append("ignored columns: " + ", ".join(ignored))
    return _Columns(
        phone_columns,
        found["personal_id"][0],
        chosen["name"],
        chosen["first"],
        chosen["last"],
        chosen["language"],
    )


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")  # str.isalnum() in any script, as one regex


def _name(raw: str) -> str | None:
    """The name with whitespace collapsed, or None when nothing in it is a letter or digit."""
    name = " ".join(raw.split())[:MAX_NAME].rstrip()
    return name if _LETTER_OR_DIGIT.search(name) else None


def read_directory(
    data: bytes, region: str, progress: Callable[[int], None] | None = None
) -> DirectoryFile:
    """Directory rows from an exported CSV; ValueError if it has no phone or personal_id column.
    `progress` is told the line reached, every thousand rows."""
    text, encoding, how = _decode(data)
    text = text.lstrip("\ufeff")
    delimiter, found_by = _delimiter(text)
    notes = [f"encoding: {encoding} ({how})", f"delimiter: {DELIMITERS[delimiter]} ({found_by})"]
    result = DirectoryFile([], [], notes, encoding, delimiter)
    records = _records(text, delimiter)
    head = next(records, None)
    if head is None:
        notes.append("no rows")
        return result
    phone_cell = head[2][0]
    # A header has a known column name, or at least a letter where the phone would be; a phone
    # cell, even a mistyped one, rarely has a letter.
    known = any(_key(c) in keys for c in head[2] for keys in ALIASES.values())
    if phones.normalise(phone_cell, region) or not (known or any(map(str.isalpha, phone_cell))):
        columns = _Columns((0,), 1, name=2)
        notes.append("no header row: columns read as phone, personal_id, name")
        records = itertools.chain([head], records)
    else:
        columns = _columns(head[2], notes)

    cache: dict[str, str | None] = {}
    kept: dict[tuple[str, str], Row] = {}
    duplicates = 0
    bad_extra: list[int] = []
    languages: dict[str, str | None] = {}

    def cell(cells: list[str], index: int | None) -> str:
        return cells[index] if index is not None and index < len(cells) else ""

    for count, (start, end, cells) in enumerate(records, start=1):
        if progress and count % 1000 == 0:
            progress(end)
        raw_phones = [p for p in (cell(cells, i) for i in columns.phones) if p]
        personal_id = cell(cells, columns.personal_id)
        if end - start >= MAX_LINES_PER_ROW:
            why = f"a quoted cell runs to line {end}: is a closing quote missing?"
        elif not raw_phones or not personal_id:
            why = " and ".join(
                w
                for w, ok in (("no phone number", raw_phones), ("no personal_id", personal_id))
                if not ok
            )
        elif len(personal_id) > MAX_PERSONAL_ID:
            why = f"personal_id longer than {MAX_PERSONAL_ID} characters: {personal_id!r}"
        else:
            why = ""
        if why:
            result.rejected.append((start, why))
            continue
        valid: dict[str, None] = {}
        for raw in raw_phones:
            if raw not in cache:
                cache[raw] = phones.normalise(raw, region)
            if e164 := cache[raw]:
                valid[e164] = None
        if not valid:
            bad = raw_phones[0][:40]
            result.rejected.append(
                (start, f"not a valid phone number for region {region}: {bad!r}")
            )
            continue
        if any(cache[raw] is None for raw in raw_phones):
            bad_extra.append(start)
        name = _name(cell(cells, columns.name)) or _name(
            f"{cell(cells, columns.first)} {cell(cells, columns.last)}"
        )
        language = None
        if raw_language := cell(cells, columns.language):
            if raw_language not in languages:
                languages[raw_language] = language_code(raw_language)
            language = languages[raw_language]
        for e164 in valid:
            key = (e164, personal_id)
            if key in kept:
                duplicates += 1
                del kept[key]  # so the kept row sits where it was last seen
            kept[key] = Row(start, e164, personal_id, name, language)

    result.rows = list(kept.values())
    if duplicates:
        notes.append(f"{duplicates} duplicate phone and personal_id row(s): the last one kept")
    if bad_extra:
        lines = ", ".join(map(str, bad_extra[:5])) + (", …" if len(bad_extra) > 5 else "")
        notes.append(f"invalid phone numbers ignored next to a valid one (lines {lines})")
    if unknown := [cell for cell, code in languages.items() if code is None]:
        shown = unknown[:5]
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        notes.append("unknown languages, left empty: " + ", ".join(shown) + more)
    return result
