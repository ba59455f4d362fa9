"""Who is texting: a phone's customers from the directory, or the number as the PersonalId."""

from __future__ import annotations

from bot import identity
from bot.conversation import Candidate
from bot.settings import Settings
from bot.store.directory import Entry

PATELS = (Entry("+61491570110", "S1005", "Sam Patel"), Entry("+61491570110", "S1006", None))


def test_directory_entries_are_the_candidates_in_order() -> None:
    found = identity.candidates(Settings(), "+61491570110", PATELS)
    assert found == (Candidate("S1005", "Sam Patel"), Candidate("S1006", None))


def test_an_unknown_number_has_no_candidates() -> None:
    assert identity.candidates(Settings(), "+61491570199", ()) == ()


def test_the_number_itself_can_be_the_personal_id() -> None:
    config = Settings(personal_id_source="phone", personal_id_phone_format="national_digits")
    assert identity.candidates(config, "+61491570156", PATELS) == (Candidate("0491570156"),)
    assert not identity.needs_directory(config)


def test_a_sender_id_that_is_not_a_number_is_nobody_by_phone() -> None:
    config = Settings(personal_id_source="phone")
    assert identity.candidates(config, "MyClinic", ()) == ()
