"""VirtualQ's payloads: validate what the bot uses, tolerate the rest (VIRTUALQ.md: the help
pages' samples carry out-of-range values, seven-digit fractions and unknown fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_pascal
from pydantic.dataclasses import dataclass

_CONFIG = ConfigDict(alias_generator=to_pascal, validate_by_name=True, extra="ignore")


class _Model(BaseModel):
    model_config = _CONFIG


class Customer(_Model):
    customer_id: int | None = None
    personal_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    tel_number1: str | None = None
    tel_number2: str | None = None
    dob: datetime | None = Field(None, validation_alias=AliasChoices("DOB", "Dob", "dob"))
    sex: int | None = None  # documented 0..2; samples carry 64
    is_active: bool | None = None
    custom_properties: dict[str, Any] | None = None


_FINISHED = (8, 15)  # EntityStatus Completed, Cancelled


class CaseDetail(_Model):
    case_id: int
    process_id: int | None = None
    ticket: str = Field(min_length=1, max_length=40)
    case_date_created: datetime | None = None
    arrival_time: datetime | None = None
    time_zone_offset: int | None = None
    case_status: int | None = None  # documented 0/1; samples carry 10
    process_status: int | None = None
    customer: Customer | None = None
    service_id: int | None = None
    service_name: str | None = None
    unit_id: int | None = None
    unit_name: str | None = None
    location_name: str | None = None
    language_code: str | None = None
    entity_status: int | None = None
    resolution: int | None = None
    queue_position: int | None = None
    wait_time_est: int | None = None

    @property
    def active(self) -> bool:
        """Still waiting or being served: not closed (CaseStatus 1), completed or cancelled.

        Resolution is not used: a default 0 ("Complete") on an open case is plausible."""
        return self.case_status != 1 and self.entity_status not in _FINISHED

    @property
    def position(self) -> int | None:
        """0-based place in line (QueuePosition); None when VirtualQ gave none or nonsense."""
        return self.queue_position if (self.queue_position or 0) >= 0 else None

    @property
    def wait(self) -> int | None:
        """Estimated minutes left (WaitTimeEst), never negative."""
        return max(self.wait_time_est, 0) if self.wait_time_est is not None else None


@dataclass(frozen=True, slots=True, config=_CONFIG)
class WaitingTicket:
    """One row of `GET Tickets/Waiting/{unitId}`. A slotted dataclass, not a model: a waiting
    list can be long (the notifier reads each watched unit's every poll), and parsing 100,000
    rows left 133 MB more RSS as models, 30 MB as this (bench/RESULTS.md)."""

    case_id: int
    process_id: int | None = None
    personal_id: str | None = None
    service_name: str | None = None
    unit_id: int | None = None
    q_code: Annotated[
        str | None, Field(validation_alias=AliasChoices("QCode", "qCode", "q_code"))
    ] = None
    q_number: Annotated[
        int | None, Field(validation_alias=AliasChoices("QNumber", "qNumber", "q_number"))
    ] = None


@dataclass(frozen=True, slots=True, config=_CONFIG)
class WaitingPlace:
    """A row of `GET Tickets/Waiting/{unitId}` read for its case and service only: the
    notifier's poll reads every watched unit's list, and this halves the parse (50,000 rows:
    65 ms of CPU, 135 as WaitingTicket)."""

    case_id: int
    service_name: str | None = None


class CaseState(_Model):
    """What a case says about whether it was enqueued (a booking may have no Ticket yet)."""

    entity_status: int | None = None
    case_status: int | None = None


ANY_JSON: TypeAdapter[Any] = TypeAdapter(Any)
CASE = TypeAdapter(CaseDetail)
WAITING = TypeAdapter(list[WaitingTicket])
PLACES = TypeAdapter(list[WaitingPlace])
EXPECTED = 0  # EntityStatus of a booking nobody has checked in yet
CANCELLED = 15  # the Status Cases/Cancel sets when a customer leaves
