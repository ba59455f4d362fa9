"""Every setting the bot reads, with its default and help text (pydantic-settings, `.env`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import SettingsError

BUILT_IN_PROMPTS = Path(__file__).resolve().parent / "prompts"  # shipped inside the package

DEFAULT_REFUSAL_PATTERNS: dict[str, list[str]] = {
    # Checked in this order; the first reason with a matching pattern wins.
    "prevent_auto_queue": [r"prevent[\s_-]*auto[\s_-]*queue", r"auto[\s_-]*queue"],
    "already_checked_in": [
        r"already[\s_-]*(checked|enqueued|arrived|queued|in[\s_-]*(the[\s_-]*)?queue)",
    ],
    "early": [r"too[\s_-]*early", r"(?<![a-z])early(?![a-z])", r"early[\s_-]*arrival"],
    "late": [r"too[\s_-]*late", r"(?<![a-z])late(?![a-z])", r"late[\s_-]*arrival"],
    "not_found": [
        r"not[\s_-]*found",
        r"no[\s_-]+(appointment|booking|case|customer)s?",
        r"does[\s_-]*not[\s_-]*exist",
        r"unknown[\s_-]+(personal|customer|case)",
    ],
}


class PersonalIdSource(StrEnum):
    DIRECTORY = "directory"
    PHONE = "phone"


class PhoneIdFormat(StrEnum):
    E164 = "e164"  # +61491570156
    E164_DIGITS = "e164_digits"  # 61491570156
    NATIONAL_DIGITS = "national_digits"  # 0491570156


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Settings(BaseSettings):
    """The bot's configuration, read from the environment (and `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    # --- Twilio -----------------------------------------------------------------------------
    twilio_auth_token: SecretStr | None = Field(
        None, description="Twilio Auth Token; validates X-Twilio-Signature. Required by `serve`."
    )
    twilio_validate_signature: bool = Field(
        True,
        description="Reject webhooks without a valid Twilio signature (403). "
        "Set false only for local testing.",
    )
    twilio_webhook_shared_keys: SecretStr | None = Field(
        None,
        description="Comma-separated SharedKey secrets for webhooks signed with a Webhook Setting "
        "(X-Twilio-Webhooks-Signature-Settings); several allow rotation.",
    )
    public_base_url: str | None = Field(
        None,
        description="The https URL Twilio calls, e.g. https://myapp.example.com. Signatures are "
        "checked against it, not against what a proxy forwarded.",
    )
    twilio_account_sid: str | None = Field(
        None,
        description="Account SID: with TWILIO_AUTH_TOKEN, lets the bot text an answer that took "
        "longer than WEBHOOK_BUDGET_SECONDS (Twilio's REST API).",
    )
    twilio_from_number: str | None = Field(
        None, description="The bot's Twilio number, the sender of those texts."
    )
    twilio_messaging_service_sid: str | None = Field(
        None,
        description="A Messaging Service (MG…) to send those texts through, instead of "
        "TWILIO_FROM_NUMBER.",
    )
    twilio_api_base_url: str = Field(
        "https://api.twilio.com",
        description="Twilio's REST API; change only to test against a stand-in.",
    )
    webhook_budget_seconds: float = Field(
        8.0,
        gt=0,
        lt=14,
        description="Longest /sms takes to answer (Twilio gives up at 15 s). A check-in still "
        "running then gets a short holding reply; its result follows as a text.",
    )

    twilio_sends_per_second: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Texts the bot sends on its own per second (notifications, staff replies, "
        "broadcasts), most urgent first: a US long code sends about 1 a second.",
    )

    # --- notifications ----------------------------------------------------------------------
    notify_at_position: int = Field(
        3,
        ge=0,
        le=50,
        description="Text 'almost your turn' once when a customer's place in line is at most "
        "this (0: never). 'Your turn' and 'missed your call' are always texted.",
    )
    notify_poll_seconds: float = Field(
        20.0,
        ge=1,
        description="How often the queues of checked-in customers are read for notifications.",
    )
    notify_missed_requeue: bool = Field(
        False,
        description="Set when your VirtualQ accepts a new check-in from a customer whose call "
        "was missed: the 'missed your call' text then says to text HERE again; otherwise it "
        "sends them to reception.",
    )

    # --- VirtualQ -----------------------------------------------------------------------------
    virtualq_base_url: str | None = Field(
        None, description="VirtualQ API base URL, e.g. https://qflow.example.edu/VirtualQ/api/."
    )
    virtualq_auth_header: str | None = Field(
        None, description="Name of a static auth header, e.g. Authorization or X-Api-Key."
    )
    virtualq_auth_value: SecretStr | None = Field(
        None, description="Value of that header, e.g. 'Bearer abc…' or an API key."
    )
    virtualq_username: str | None = Field(None, description="HTTP Basic user for VirtualQ.")
    virtualq_password: SecretStr | None = Field(None, description="HTTP Basic password.")
    virtualq_connect_timeout_seconds: float = Field(
        2.0, gt=0, description="Seconds to wait for a TCP/TLS connection to VirtualQ."
    )
    virtualq_timeout_seconds: float = Field(
        6.0, gt=0, description="Seconds a VirtualQ call may take in all (well inside Twilio's 15)."
    )
    virtualq_max_concurrency: int = Field(
        10,
        ge=1,
        description="VirtualQ calls one web worker makes at once; more wait for a slot within "
        "their time budget, so a slow VirtualQ is not flooded.",
    )
    virtualq_breaker_failures: int = Field(
        5,
        ge=0,
        description="VirtualQ failures in a row (down, slow, nonsense) after which a web worker "
        "stops calling it for VIRTUALQ_BREAKER_SECONDS and apologises at once; 0 turns this off.",
    )
    virtualq_breaker_seconds: float = Field(
        30.0,
        gt=0,
        description="How long VirtualQ is left alone after those failures; then one trial call.",
    )
    virtualq_unit_ids: str = Field(
        "",
        description="Comma-separated UnitIds whose waiting tickets show whether a check-in by "
        "PersonalId that timed out was enqueued; unset, such a customer is sent to reception.",
    )
    refusal_patterns: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_REFUSAL_PATTERNS.items()},
        description="JSON {reason: [regex…]} classifying VirtualQ refusals; reasons: "
        "prevent_auto_queue, already_checked_in, early, late, not_found. Case-insensitive.",
    )
    force_prevent_auto_queue: bool = Field(
        False,
        description="Offer to force check-ins refused as Prevent-Auto-Queue (normally staff-only).",
    )

    # --- identity -----------------------------------------------------------------------------
    personal_id_source: PersonalIdSource = Field(
        PersonalIdSource.DIRECTORY,
        description="Where a phone's PersonalId comes from: `directory` (imported CSV) or `phone`.",
    )
    personal_id_phone_format: PhoneIdFormat = Field(
        PhoneIdFormat.E164,
        description="With PERSONAL_ID_SOURCE=phone: e164, e164_digits or national_digits.",
    )
    default_region: str = Field(
        "AU", description="Region for national-format phone numbers (ISO code, e.g. AU, US, GB)."
    )
    booking_number_fallback: bool = Field(
        False,
        description="Ask unknown numbers for their booking number (CaseId) instead of "
        "sending them to reception.",
    )
    booking_number_digits: str = Field(
        "3-10",
        description="How many digits the site's booking numbers have: one length (5) or a "
        "range (5-7). A number of another length is asked for again, not tried.",
    )

    # --- conversation -------------------------------------------------------------------------
    confirm_timeout_minutes: int = Field(
        10, gt=0, description="How long a YES/NO question (early/late) stays open."
    )
    checked_in_memory_hours: int = Field(
        12, gt=0, description="How long HERE/STATUS answer from the remembered check-in."
    )
    rate_limit_per_minute: int = Field(
        10,
        ge=1,
        description="Texts a phone may send in a minute; past it the bot says why once, then "
        "stays silent until the minute has passed (every text is still logged).",
    )
    default_language: str = Field(
        "en",
        validation_alias=AliasChoices("DEFAULT_LANGUAGE", "LANGUAGE", "default_language"),
        description="Reply language when nothing else says which (a bot/prompts/<lang>.toml). "
        "A customer's own choice, the language they write in, VirtualQ's LanguageCode and the "
        "directory's language column come first.",
    )
    allow_cancel_booking: bool = Field(
        False,
        description="Let customers cancel a booking (not only leave the queue) by text, after "
        "giving its booking number and confirming.",
    )
    prompts_dir: Path = Field(
        BUILT_IN_PROMPTS,
        description="Folder of the per-language prompt files (default: the ones shipped in the "
        "package, bot/prompts/).",
    )

    # --- storage and staff --------------------------------------------------------------------
    database_url: str = Field(
        "sqlite:///checkin-bot.db",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="sqlite:///FILE (default, in the working directory), or postgres://… / "
        "postgresql://… as a PaaS sets it.",
    )
    database_pool_size: int = Field(
        5,
        ge=1,
        le=100,
        description="Phones' turns each web worker runs at once on PostgreSQL; it opens up to "
        "twice this many connections (the other half stores texts and serves the staff pages) "
        "and keeps them: WEB_CONCURRENCY x 2 x this must stay under the database's limit.",
    )
    log_format: LogFormat = Field(
        LogFormat.TEXT,
        description="`text` for people, `json` for one JSON object per line (log services).",
    )
    staff_username: str | None = Field(
        None,
        description="An admin login for the staff pages, kept in the environment (small sites); "
        "named accounts are added with `checkin-bot staff add`.",
    )
    staff_password: SecretStr | None = Field(
        None, description="That login's password (12 characters or more)."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs staff session cookies: a long random string, e.g. from "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`. The staff pages are "
        "off without it.",
    )
    staff_refresh_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="How often the staff lists (today, conversations, needs attention, not "
        "understood) reload themselves, keeping their filters and scroll (0: never). A page "
        "with a text box being typed in never reloads.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        validation_alias=AliasChoices("FORWARDED_ALLOW_IPS", "forwarded_allow_ips"),
        description="Proxies whose X-Forwarded-For is believed, comma-separated addresses or "
        "networks; `*` on a platform whose router addresses vary (every request comes through "
        "it). The client is the right-most hop a trusted proxy wrote.",
    )
    timezone: str = Field(
        "UTC",
        description="The site's IANA time zone, e.g. Australia/Sydney: the staff pages' days and "
        "hours, and the CSV export's times.",
    )
    retention_days: int | None = Field(
        None,
        ge=1,
        description="`checkin-bot purge` deletes conversations older than this many days "
        "(unset: it needs --older-than).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use a name like Europe/London") from exc
        return value

    @field_validator("virtualq_unit_ids")
    @classmethod
    def _unit_ids(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError("use whole numbers separated by commas, e.g. 10,12")
        return ",".join(parts)

    def unit_ids(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.virtualq_unit_ids.split(",") if p)

    def can_text(self) -> bool:
        """Credentials to send texts of our own through Twilio's REST API."""
        return bool(
            self.twilio_account_sid
            and self.twilio_auth_token
            and (self.twilio_from_number or self.twilio_messaging_service_sid)
        )

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def staff_enabled(self) -> bool:
        """The staff pages are on (accounts may still be missing: see doctor)."""
        return bool(self.secret_key)

    def env_staff(self) -> bool:
        """STAFF_USERNAME and STAFF_PASSWORD make an admin account."""
        return bool(self.staff_username and self.staff_password)

    @field_validator("default_language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("booking_number_digits")
    @classmethod
    def _digits(cls, value: str) -> str:
        parts = value.replace(" ", "").split("-")
        if not (1 <= len(parts) <= 2 and all(p.isdigit() for p in parts)):
            raise ValueError("a length (5) or a range (5-7)")
        low, high = int(parts[0]), int(parts[-1])
        if not 1 <= low <= high <= 10:
            raise ValueError("between 1 and 10 digits, the shorter first")
        return f"{low}-{high}"

    def booking_digits(self) -> tuple[int, int]:
        """BOOKING_NUMBER_DIGITS as (shortest, longest)."""
        low, high = self.booking_number_digits.split("-")
        return int(low), int(high)

    @field_validator("default_region")
    @classmethod
    def _region_upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("public_base_url", "virtualq_base_url", "twilio_api_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def shared_keys(self) -> list[str]:
        raw = self.twilio_webhook_shared_keys
        return [k.strip() for k in raw.get_secret_value().split(",") if k.strip()] if raw else []


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, failing with the variable's name on bad values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{str(err['loc'][0]).upper() if err['loc'] else '?'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


def settings_table() -> list[tuple[str, str, str]]:
    """(ENV_NAME, default, help) for every setting, in declaration order."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if name == "prompts_dir":
            default = "<package>/prompts"
        shown = "" if default is None else str(default)
        if isinstance(default, dict):
            shown = "(built-in patterns)"
        rows.append((name.upper(), shown, field.description or ""))
    return rows


def settings_markdown() -> str:
    """The README's settings table (`checkin-bot settings --markdown` prints it)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, help_text in settings_table():
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{name}` | {shown} | {help_text} |")
    return "\n".join(lines) + "\n"
