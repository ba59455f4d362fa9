"""Settings: read from the environment, every bad value named, the README's table generated."""

from __future__ import annotations

import pytest

from bot.errors import SettingsError
from bot.settings import PersonalIdSource, Settings, load_settings, settings_table


def test_a_bad_value_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="PERSONAL_ID_SOURCE"):
        load_settings(personal_id_source="fax")


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("timezone", "Mars/Olympus", "TIMEZONE"),
        ("virtualq_unit_ids", "10,abc", "VIRTUALQ_UNIT_IDS"),
        ("webhook_budget_seconds", 20, "WEBHOOK_BUDGET_SECONDS"),
        ("database_pool_size", 0, "DATABASE_POOL_SIZE"),
        ("booking_number_digits", "five", "BOOKING_NUMBER_DIGITS"),
        ("booking_number_digits", "7-5", "BOOKING_NUMBER_DIGITS"),
        ("booking_number_digits", "0-12", "BOOKING_NUMBER_DIGITS"),
    ],
)
def test_each_malformed_setting_says_which(name: str, value: object, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(**{name: value})


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONAL_ID_SOURCE", "phone")
    monkeypatch.setenv("DEFAULT_REGION", "nz")
    monkeypatch.setenv("VIRTUALQ_UNIT_IDS", " 10, 12 ")
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bot.example.com/")
    monkeypatch.setenv("BOOKING_NUMBER_DIGITS", " 5 - 7 ")
    config = load_settings()
    assert config.booking_digits() == (5, 7)
    assert config.personal_id_source is PersonalIdSource.PHONE
    assert config.default_region == "NZ"
    assert config.unit_ids() == (10, 12)
    assert config.public_base_url == "https://bot.example.com"  # signatures need it exact


def test_every_setting_documents_itself() -> None:
    rows = settings_table()
    assert [name for name, _, _ in rows] == [n.upper() for n in Settings.model_fields]
    assert all(help_text for _, _, help_text in rows)


def test_outbound_texts_need_the_sid_the_token_and_a_sender() -> None:
    assert not Settings(twilio_account_sid="AC1", twilio_auth_token="t").can_text()
    assert Settings(
        twilio_account_sid="AC1", twilio_auth_token="t", twilio_from_number="+61400000000"
    ).can_text()
    assert Settings(
        twilio_account_sid="AC1", twilio_auth_token="t", twilio_messaging_service_sid="MG1"
    ).can_text()
