"""Phone numbers: E.164 from any format, PersonalId formats, and masks for the logs."""

from __future__ import annotations

import pytest

from bot import phones
from bot.settings import PhoneIdFormat


@pytest.mark.parametrize(
    "raw", ["0491 570 156", "+61 491 570 156", "(04) 9157 0156", "0491-570-156", "+61491570156"]
)
def test_any_format_is_the_same_number(raw: str) -> None:
    assert phones.normalise(raw, "AU") == "+61491570156"


@pytest.mark.parametrize("raw", ["", "12", "not a phone", "0" * 50, "+999 1234"])
def test_what_is_not_a_number_is_none(raw: str) -> None:
    assert phones.normalise(raw, "AU") is None


def test_senders_that_are_not_numbers_keep_a_conversation_key() -> None:
    assert phones.sender_key("MyClinic", "AU") == "MyClinic"
    assert phones.sender_key(" 0491 570 156 ", "AU") == "+61491570156"
    assert len(phones.sender_key("x" * 100, "AU")) == 64


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (PhoneIdFormat.E164, "+61491570156"),
        (PhoneIdFormat.E164_DIGITS, "61491570156"),
        (PhoneIdFormat.NATIONAL_DIGITS, "0491570156"),
    ],
)
def test_a_number_as_personal_id(fmt: PhoneIdFormat, expected: str) -> None:
    assert phones.as_personal_id("+61491570156", fmt) == expected


def test_masks_hide_the_middle_digits() -> None:
    assert phones.mask("+61491570156") == "+61 4** *** 156"
    assert phones.mask("12345") == "***"
    assert "570" not in phones.mask("+1 415 570 2671")


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("0491 570 156", "AU"),
        ("(415) 555-2671", "US"),
        ("020 7946 0958", "GB"),
        ("+49 30 901820", "DE"),
        ("090-1234-5678", "JP"),
        ("+971 50 123 4567", None),
        ("6 12 34 56 78", "FR"),
    ],
)
def test_a_number_normalised_is_masked_as_if_parsed_afresh(raw: str, region: str) -> None:
    """normalise() keeps the mask of the number it parsed (one parse a sender): the same
    mask as parsing the E.164 form alone gives."""
    e164 = phones.normalise(raw, region)
    assert e164 is not None
    phones._masked.clear()
    phones.mask.cache_clear()
    fresh = phones.mask(e164)
    phones.normalise.cache_clear()
    phones.mask.cache_clear()
    assert phones.normalise(raw, region) == e164
    assert phones._masked[e164] == fresh
    assert phones.mask(e164) == fresh


def test_masks_from_remembered_layouts_are_the_masks_of_a_fresh_format() -> None:
    """A mask is filled into the layout remembered for its country code, length and first
    digits: for every region's example numbers and others sharing their first digits, the
    same text as formatting each number afresh."""
    import phonenumbers as P

    phones._layouts.clear()
    checked = 0
    for region in sorted(P.SUPPORTED_REGIONS):
        for kind in (P.PhoneNumberType.MOBILE, P.PhoneNumberType.FIXED_LINE):
            example = P.example_number_for_type(region, kind)
            if example is None:
                continue
            nsn = P.national_significant_number(example)
            for variant in (nsn, nsn[:4] + nsn[4:][::-1], nsn[:-1] + str(9 - int(nsn[-1]))):
                number = P.parse(f"+{example.country_code}{variant}", None)
                if not P.is_valid_number(number):
                    continue
                written = P.format_number(number, P.PhoneNumberFormat.INTERNATIONAL)
                fresh = phones._mask_digits(str(written), len(str(number.country_code)) + 1)
                assert phones._mask_number(number) == fresh, (region, variant)
                checked += 1
    assert checked > 500 and phones._layouts
