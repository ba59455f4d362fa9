"""Every staff page's parameters, validated in one place: one model per page, and a short 400
(BadFilter) for anything a page cannot use, before any query runs.

Bounds are the database's: ids are 32-bit on PostgreSQL, days are kept within the years the
log can hold (a `to` of 9999-12-31 would overflow the day after), text has no NUL.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import BadFilter
from ..threads import ThreadOutcome

FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2099, 12, 31)
MAX_ID = 2**31 - 1
MAX_DAYS = 3660  # ten years a page


def _day(value: Any) -> date | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a date like 2026-11-24, got {text[:20]!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"expected a day between {FIRST_DAY} and {LAST_DAY}")
    return day


def _id(value: Any) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not 0 < int(text) <= MAX_ID:
        raise ValueError("expected a conversation number")
    return int(text)


def _text(value: Any) -> str:
    """Search text as a person typed it: no NUL or other control characters, at most 100."""
    return "".join(c for c in str(value or "") if c.isprintable()).strip()[:100]


def _outcome(value: Any) -> str:
    text = str(value or "").strip()
    if text and text not in {o.value for o in ThreadOutcome}:
        raise ValueError(f"unknown outcome {text[:40]!r}")
    return text


Day = Annotated[date | None, BeforeValidator(_day)]
RowId = Annotated[int | None, BeforeValidator(_id)]


class Days(BaseModel):
    """The days a page covers (the dashboard, the list of texts not understood, the export)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    first: Day = Field(None, alias="from")
    last: Day = Field(None, alias="to")


class ListFilters(Days):
    """The conversations list: a search, an outcome, days, and where the page starts."""

    q: Annotated[str, BeforeValidator(_text)] = ""
    outcome: Annotated[str, BeforeValidator(_outcome)] = ""
    before: RowId = None


class ThreadPath(BaseModel):
    """A conversation's page: its number."""

    thread_id: Annotated[int, BeforeValidator(_id)]


Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], params: Any) -> Model:
    """Parameters as `model`, or BadFilter naming the first that is wrong."""
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "parameters"
        reason = str(error.get("ctx", {}).get("error", "")) or error["msg"]
        status = 404 if model is ThreadPath else 400
        raise BadFilter(f"{where}: {reason}", status) from None
