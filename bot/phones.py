"""Phone numbers: E.164 normalisation, PersonalId formats and masking for logs."""

from __future__ import annotations

import functools
import re

import phonenumbers

from .settings import PhoneIdFormat

# Parsing a number costs ~100 µs and every text needs its sender's more than once (its key,
# each log line's mask): the latest few thousand are remembered (pure functions of strings),
# and a number normalised is masked from the same parse.
_SEEN = 4096
_masked: dict[str, str] = {}  # E.164 -> mask, filled by normalise


@functools.lru_cache(maxsize=_SEEN)
def normalise(raw: str, region: str) -> str | None:
    """The E.164 form of a phone number in any format, or None if it is not a valid number."""
    text = raw.strip()
    if not text or len(text) > 40:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    if len(_masked) >= _SEEN:
        _masked.clear()
    _masked[e164] = _mask_number(number)
    return e164


def sender_key(raw: str, region: str) -> str:
    """The conversation key for a sender: E.164 when it is a phone, else the cleaned raw id.

    Twilio also delivers short codes and alphanumeric sender ids; they still get a conversation.
    """
    return normalise(raw, region) or re.sub(r"\s+", "", raw.strip())[:64]


def is_e164(text: str) -> bool:
    return re.fullmatch(r"\+[1-9]\d{5,14}", text) is not None


def as_personal_id(e164: str, fmt: PhoneIdFormat) -> str:
    """The PersonalId for a phone when the organisation uses the number itself as the id."""
    if fmt is PhoneIdFormat.E164:
        return e164
    if fmt is PhoneIdFormat.E164_DIGITS:
        return e164.lstrip("+")
    number = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return re.sub(r"\D", "", str(national))


@functools.lru_cache(maxsize=_SEEN)
def mask(value: str) -> str:
    """A phone number with the middle digits hidden, for logs: +61 4** *** 156."""
    known = _masked.get(value)
    if known is not None:
        return known
    try:
        return _mask_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return _mask_digits(value, 3)


def _mask_number(number: phonenumbers.PhoneNumber) -> str:
    """The number as written internationally (+61 491 570 156), its middle digits hidden.

    Writing it is a quarter of a new sender's parse: the layout is remembered for its country
    code, length and first four digits, and later numbers filled into it. Where a country's
    layout depends on more digits than that, a number may be spaced as another was; the
    digits hidden are the same either way (all but the country code's, the next one and the
    last three)."""
    cc = str(number.country_code)
    digits = cc + phonenumbers.national_significant_number(number)
    if len(digits) < 7:
        return "***"
    key = (digits[: len(cc) + 4], len(digits))
    layout = _layouts.get(key)
    if layout is None:
        value = str(
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        )
        if "".join(c for c in value if c.isdigit()) != digits:  # an extension, or odd digits
            return _mask_digits(value, len(cc) + 1)
        if len(_layouts) >= _SEEN:
            _layouts.clear()
        layout = _layouts[key] = "".join("{}" if c.isdigit() else c for c in value)
    keep = len(cc) + 1
    return layout.format(*digits[:keep], *"*" * (len(digits) - keep - 3), *digits[-3:])


_layouts: dict[tuple[str, int], str] = {}  # (country code + 4 digits, digits) -> "+{}{} {}{}{}…"


def _mask_digits(value: str, keep_head: int) -> str:
    total = sum(c.isdigit() for c in value)
    if total < 7:
        return "***"
    out, seen = [], 0
    for char in value:
        if char.isdigit():
            out.append("*" if keep_head <= seen < total - 3 else char)
            seen += 1
        else:
            out.append(char)
    return "".join(out)
