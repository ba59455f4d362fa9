"""Every staff page's parameters, validated in one place: one model per page, and a short 400
(BadFilter) for anything a page cannot use, before any query runs.

Bounds are the database's: ids are 32-bit on PostgreSQL, days are kept within the years the
log can hold (a `to` of 9999-12-31 would overflow the day after), text has no NUL.
"""

from __future__ import annotations

import string
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

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


TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_")
MAX_TEXT = 2000  # characters a staff text box may send (3 segments are at most 459)


def _token(value: Any) -> str:
    """A form's one-time token, as the page wrote it (secrets.token_urlsafe)."""
    text = str(value or "").strip()
    if not 16 <= len(text) <= 64 or not set(text) <= TOKEN_CHARACTERS:
        raise ValueError("this form has no valid token: reload the page and try again")
    return text


def _key(value: Any) -> str | None:
    """A quick reply's name in prompts/ (come_to_desk)."""
    text = str(value or "").strip()
    if not text:
        return None
    if len(text) > 40 or not set(text) <= frozenset(string.ascii_lowercase + string.digits + "_"):
        raise ValueError("expected a quick reply's name, like come_to_desk")
    return text


def _message(value: Any) -> str:
    """A text staff typed, as it will be sent: a browser's CRLF line ends as LF, trimmed. A
    control character (other than a line end) is refused rather than silently dropped."""
    text = str(value or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if len(text) > MAX_TEXT:
        raise ValueError(f"the text is over {MAX_TEXT} characters: an SMS can take 3 segments")
    if any(not c.isprintable() and c not in "\n" for c in text):
        raise ValueError("the text has a control character (a tab, or something pasted)")
    return text


def _audience(value: Any) -> str:
    """Who a broadcast is for: all, unit:ID or service:NAME (of those waiting today)."""
    text = str(value or "all").strip()
    kind, _, rest = text.partition(":")
    if text == "all" or (kind == "service" and rest and len(rest) <= 100 and rest.isprintable()):
        return text
    if kind == "unit" and rest.isascii() and rest.isdigit() and len(rest) <= 10:
        return text
    raise ValueError("expected all, unit:ID or service:NAME")


def _next(value: Any) -> str:
    """Where a form goes back to: a staff page of ours, never another site."""
    text = str(value or "")
    if text.startswith("/staff/") and "//" not in text and "\\" not in text and len(text) < 500:
        return text
    return "/staff/attention"


def _reason(value: Any) -> str | None:
    from .attention import Reason

    text = str(value or "").strip()
    if not text:
        return None
    if text not in {r.value for r in Reason}:
        raise ValueError(f"unknown reason {text[:40]!r}")
    return text


Day = Annotated[date | None, BeforeValidator(_day)]
RowId = Annotated[int | None, BeforeValidator(_id)]
Token = Annotated[str, BeforeValidator(_token)]
QuickKey = Annotated[str | None, BeforeValidator(_key)]
Message = Annotated[str, BeforeValidator(_message)]


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


class ConversationPage(BaseModel):
    """A conversation's page: a quick reply to start the reply box with; `sent` after one."""

    model_config = ConfigDict(extra="ignore")

    use: QuickKey = None
    sent: Literal["", "1"] = ""


class ReplyForm(BaseModel):
    """A staff reply: the text, the form's one-time token, and whether to send or count."""

    model_config = ConfigDict(extra="ignore")

    text: Message = ""
    token: Token
    action: Literal["send", "check"] = "send"


class HandledForm(BaseModel):
    """Mark a conversation handled, then go back to `next`."""

    model_config = ConfigDict(extra="ignore")

    next: Annotated[str, BeforeValidator(_next)] = "/staff/attention"


class AttentionFilters(Days):
    """The needs-attention list: days, and one reason only (the dashboard's links)."""

    reason: Annotated[str | None, BeforeValidator(_reason)] = None


class AuditFilters(BaseModel):
    """The audit log: where the page starts (an entry's number)."""

    model_config = ConfigDict(extra="ignore")

    before: RowId = None


class BroadcastPage(BaseModel):
    """The broadcast page: a quick reply to start the text box with."""

    model_config = ConfigDict(extra="ignore")

    use: QuickKey = None


class BroadcastForm(BaseModel):
    """A broadcast's text and audience; the confirmation also carries its one-time token."""

    model_config = ConfigDict(extra="ignore")

    text: Message = ""
    audience: Annotated[str, BeforeValidator(_audience)] = "all"


class BroadcastConfirm(BroadcastForm):
    token: Token


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
