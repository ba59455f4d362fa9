"""What staff do from the staff pages: reply to a customer, mark a conversation handled, and
broadcast a text to everyone waiting. Each is a POST with the session's CSRF token and a
one-time form token (a double click sends once), refused with a clear message when it cannot
be done, and written to the audit log."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import phones
from ..errors import BadFilter, HttpError
from ..outbox import Kind, Outgoing
from ..sms import GSM7_SEGMENT, UCS2_SEGMENT, encoding, is_gsm7, segments, septets, ucs2_units
from ..store.watches import Watch, Watches
from ..webhook import read_form
from . import filters, queries
from .attention import needing_attention

if TYPE_CHECKING:
    from .accounts import Account
    from .app import Staff

log = logging.getLogger("checkin_bot.staff")

MAX_SEGMENTS = 3
NO_CREDENTIALS = (
    "Nothing was sent: the bot has no Twilio REST credentials. Set TWILIO_ACCOUNT_SID, "
    "TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER (or TWILIO_MESSAGING_SERVICE_SID)."
)
STALE_FORM = "This form had expired, so nothing was done. Reload the page and try again."


@dataclass(frozen=True)
class Count:
    """A text's cost: its encoding and segments, for the counter next to a text box."""

    encoding: str
    segments: int
    length: int  # GSM-7 septets or UCS-2 code units
    per_segment: int  # what one segment holds at this length

    @property
    def too_long(self) -> bool:
        return self.segments > MAX_SEGMENTS

    def short(self) -> str:
        return f"{self.encoding}, {self.segments} segment{'s' if self.segments > 1 else ''}"

    def describe(self) -> str:
        unit = "character" if self.length == 1 else "characters"
        count = "1 segment" if self.segments == 1 else f"{self.segments} segments"
        return (
            f"{self.encoding}, {count} ({self.length} {unit}; "
            f"{self.per_segment} a segment{self._why()})"
        )

    def _why(self) -> str:
        if self.encoding == "UCS-2":
            return ": a character outside GSM-7, like an emoji or some accents, makes it UCS-2"
        return ""


def count(text: str) -> Count:
    gsm = is_gsm7(text)
    length = septets(text) if gsm else ucs2_units(text)
    single = GSM7_SEGMENT if gsm else UCS2_SEGMENT
    n = segments(text)
    return Count(encoding(text), n, length, single if n == 1 else single - (7 if gsm else 3))


@dataclass(frozen=True)
class Refused:
    """Why a staff text was not sent, and the status the page is answered with."""

    message: str
    status: int

    def __str__(self) -> str:
        return self.message


def refusal(text: str, can_text: bool) -> Refused | None:
    """Why a staff text cannot be sent to anyone (None: it can)."""
    if not text:
        return Refused("Nothing was sent: the text is empty.", 400)
    cost = count(text)
    if cost.too_long:
        fix = (
            "Shorten it, or leave out the characters that make it UCS-2."
            if cost.encoding == "UCS-2"
            else "Shorten it."
        )
        return Refused(
            f"Nothing was sent: this text needs {cost.segments} segments ({cost.encoding}, "
            f"{cost.length} characters); at most {MAX_SEGMENTS} are allowed. {fix}",
            400,
        )
    if not can_text:
        return Refused(NO_CREDENTIALS, 503)
    return None


class Actions:
    """The staff pages' forms, and the pages that carry them (a conversation, broadcast)."""

    def __init__(self, staff: Staff) -> None:
        self.staff = staff
        self.engine = staff.store.engine
        self.watches = Watches(staff.store.engine, staff.store.tx)

    # --- helpers ------------------------------------------------------------------------------

    @staticmethod
    def account(request: Request) -> Account:
        found: Account | None = request.scope.get("staff_account")
        if found is None:  # every route here is behind Staff.page
            raise HttpError("log in first", 401)
        return found

    @property
    def can_text(self) -> bool:
        outbox = self.staff.outbox
        return outbox is not None and outbox.texter.enabled

    async def _form(self, request: Request) -> dict[str, str]:
        """The posted form, or 403 when it lacks the session's CSRF token."""
        form = await read_form(request)
        if not self.staff.csrf_ok(request, form):
            log.warning("staff form %s refused: missing or stale CSRF token", request.url.path)
            raise HttpError(STALE_FORM, 403)
        return dict(form)

    def quick_replies(self, language: str | None) -> list[dict[str, Any]]:
        """The canned texts in `language` when its prompts file has them, else the default
        language's; each with the default language's wording beside it when they differ."""
        catalogue = self.staff.catalogue
        if catalogue is None:
            return []
        default = catalogue.prompts()
        chosen = catalogue.prompts(language) if catalogue.knows(language) else default
        if not chosen.quick_replies:
            chosen = default
        out = []
        for key, text in chosen.quick_replies.items():
            meaning = default.quick_replies.get(key) if chosen is not default else None
            out.append(
                {
                    "key": key,
                    "text": text,
                    "language": chosen.language,
                    "meaning": meaning,
                    "count": count(text).short(),
                }
            )
        return out

    def _quick(self, key: str | None, language: str | None) -> str:
        if key is None:
            return ""
        for quick in self.quick_replies(language):
            if quick["key"] == key:
                return str(quick["text"])
        raise BadFilter(f"use: no quick reply {key!r} in prompts/")

    # --- a conversation and its reply box -----------------------------------------------------

    async def _detail(self, thread_id: int) -> dict[str, Any]:
        found = await queries.conversation_detail(
            self.engine,
            thread_id,
            zone=self.staff.zone,
            now=self.staff.clock(),
            confirm_timeout=self.staff.timeout,
        )
        if found is None:
            raise BadFilter("no such conversation", 404)
        return found

    async def conversation(self, request: Request) -> Response:
        """GET /staff/conversations/ID: the transcript, what needs attention, the reply box."""
        path = filters.parse(filters.ThreadPath, request.path_params)
        asked = filters.parse(filters.ConversationPage, request.query_params)
        data = await self._detail(path.thread_id)
        draft = self._quick(asked.use, _language(data))
        notice = "Your text is queued: it goes out in a moment." if asked.sent else None
        return await self._conversation_page(request, data, draft=draft, notice=notice)

    async def _conversation_page(
        self,
        request: Request,
        data: dict[str, Any],
        *,
        draft: str = "",
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        thread_id = data["conversation"]["id"]
        needs = await needing_attention(
            self.engine,
            None,
            zone=self.staff.zone,
            now=self.staff.clock(),
            confirm_timeout=self.staff.timeout,
            thread_id=thread_id,
        )
        state = data["state_now"]["state"] if data["state_now"] else None
        return self.staff.render(
            request,
            "conversation.html",
            status=status,
            data=data,
            attention=needs["conversations"][0] if needs["conversations"] else None,
            quick=self.quick_replies(_language(data)),
            draft=draft,
            counter=count(draft).describe() if draft else None,
            token=secrets.token_urlsafe(18),
            notice=notice,
            error=error,
            opted_out=state == "opted_out",
            can_text=self.can_text,
            here=f"/staff/conversations/{thread_id}",  # not /reply, where a refusal is shown
        )

    async def reply(self, request: Request) -> Response:
        """POST /staff/conversations/ID/reply: text the customer (or count the text's
        segments, `action=check`). Sent through the send queue once per form token."""
        path = filters.parse(filters.ThreadPath, request.path_params)
        form = await self._form(request)
        asked = filters.parse(filters.ReplyForm, form)
        data = await self._detail(path.thread_id)
        text = asked.text
        if asked.action == "check":
            return await self._conversation_page(request, data, draft=text)
        phone = data["conversation"]["phone"]
        refused = refusal(text, self.can_text)
        if refused is None and await self.staff.store.log.state_of(phone) == "opted_out":
            refused = Refused(
                "Nothing was sent: this customer texted STOP, and texts to them are blocked "
                "until they text START.",
                409,
            )
        if refused is not None:
            return await self._conversation_page(
                request, data, draft=text, error=str(refused), status=refused.status
            )
        assert self.staff.outbox is not None  # can_text
        account = self.account(request)
        [queued] = await self.staff.outbox.enqueue(
            [
                Outgoing(
                    phone,
                    text,
                    Kind.STAFF,
                    key=f"staff:{asked.token}",
                    thread_id=path.thread_id,
                    account=account.name,
                )
            ]
        )
        if queued is not None:  # not a second click on the same form
            await self.staff.staff_store.audit(
                account.name, "reply", f"conversation {path.thread_id}", text, self.staff.clock()
            )
            log.info("staff reply by %s to %s queued", account.name, phones.mask(phone))
        return RedirectResponse(
            f"/staff/conversations/{path.thread_id}?sent=1#reply", status_code=303
        )

    async def handled(self, request: Request) -> Response:
        """POST /staff/attention/ID/handled: the conversation has been looked at."""
        path = filters.parse(filters.ThreadPath, request.path_params)
        form = await self._form(request)
        asked = filters.parse(filters.HandledForm, form)
        data = await self._detail(path.thread_id)
        account = self.account(request)
        now = self.staff.clock()
        await self.staff.staff_store.mark_handled(path.thread_id, account.name, now)
        who = data["conversation"]["name"] or data["conversation"]["phone_display"]
        await self.staff.staff_store.audit(
            account.name, "handled", f"conversation {path.thread_id}", who, now
        )
        return RedirectResponse(asked.next, status_code=303)

    # --- broadcast ----------------------------------------------------------------------------

    def _since(self) -> datetime:
        """The start of today, where the site is."""
        today = queries.local_today(self.staff.zone, self.staff.clock())
        return datetime.combine(today, time(), self.staff.zone)

    async def _waiting(self) -> list[Watch]:
        return await self.watches.waiting(self._since())

    @staticmethod
    def _audiences(waiting: list[Watch]) -> list[dict[str, Any]]:
        """The choices of who to text: everyone, each unit, each service (with how many)."""
        out = [{"value": "all", "label": "Everyone waiting", "count": len(_by_phone(waiting))}]
        units = sorted({w.unit_id for w in waiting if w.unit_id is not None})
        for unit in units:
            chosen = _chosen(waiting, f"unit:{unit}")
            out.append({"value": f"unit:{unit}", "label": f"Unit {unit}", "count": len(chosen)})
        for service in sorted({w.service_name for w in waiting if w.service_name}):
            chosen = _chosen(waiting, f"service:{service}")
            out.append({"value": f"service:{service}", "label": str(service), "count": len(chosen)})
        return out

    async def _broadcast_refused(
        self, request: Request, asked: filters.BroadcastForm, refused: Refused
    ) -> Response:
        """The broadcast page again, the text kept, saying why nothing was sent."""
        return await self._broadcast_page(
            request,
            text=asked.text,
            audience=asked.audience,
            error=str(refused),
            status=refused.status,
        )

    async def _broadcast_page(
        self,
        request: Request,
        *,
        text: str = "",
        audience: str = "all",
        error: str | None = None,
        status: int = 200,
        **values: Any,
    ) -> Response:
        waiting = await self._waiting()
        return self.staff.render(
            request,
            "broadcast.html",
            status=status,
            text=text,
            audience=audience,
            audiences=self._audiences(waiting),
            quick=self.quick_replies(None),
            counter=count(text).describe() if text else None,
            error=error,
            can_text=self.can_text,
            recent=await self.staff.staff_store.broadcasts_since(self._since()),
            zone=self.staff.zone,
            **({"preview": None, "sent": None} | values),
        )

    async def broadcast(self, request: Request) -> Response:
        """GET /staff/broadcast: write a text to everyone waiting today."""
        asked = filters.parse(filters.BroadcastPage, request.query_params)
        return await self._broadcast_page(request, text=self._quick(asked.use, None))

    async def broadcast_preview(self, request: Request) -> Response:
        """POST /staff/broadcast/preview: who would get it, how many, at what cost; and the
        confirmation form with its one-time token."""
        form = await self._form(request)
        asked = filters.parse(filters.BroadcastForm, form)
        refused = refusal(asked.text, self.can_text)
        if refused is not None:
            return await self._broadcast_refused(request, asked, refused)
        recipients = _chosen(await self._waiting(), asked.audience)
        return await self._broadcast_page(
            request,
            text=asked.text,
            audience=asked.audience,
            preview={
                "recipients": [_recipient(w) for w in recipients],
                "count": count(asked.text).describe(),
                "token": secrets.token_urlsafe(24),
                "audience_label": _audience_label(asked.audience),
            },
        )

    async def broadcast_send(self, request: Request) -> Response:
        """POST /staff/broadcast/send: queue the text for everyone in the audience now, once
        per confirmation token: the same token again sends nothing and shows the first."""
        form = await self._form(request)
        asked = filters.parse(filters.BroadcastConfirm, form)
        account = self.account(request)
        store = self.staff.staff_store
        earlier = await store.broadcast_by_token(asked.token)
        if earlier is not None:
            return await self._broadcast_page(request, sent=earlier, again=True)
        refused = refusal(asked.text, self.can_text)
        recipients = _chosen(await self._waiting(), asked.audience)
        if refused is None and not recipients:
            refused = Refused("Nothing was sent: nobody in this audience is waiting now.", 409)
        if refused is not None:
            return await self._broadcast_refused(request, asked, refused)
        outbox = self.staff.outbox
        assert outbox is not None  # can_text
        texts = outbox.rows(
            [
                Outgoing(
                    w.phone,
                    asked.text,
                    Kind.BROADCAST,
                    key=f"broadcast:{asked.token}:{w.phone}"[:100],
                    thread_id=w.thread_id,
                    account=account.name,
                )
                for w in recipients
            ]
        )
        label = _audience_label(asked.audience)
        now = self.staff.clock()
        row, first = await store.broadcast(asked.token, account.name, asked.text, label, texts, now)
        if first:
            outbox.wake.set()
            await store.audit(
                account.name, "broadcast", f"{row.recipients} waiting ({label})", asked.text, now
            )
            log.info("broadcast by %s to %d waiting (%s) queued", account.name, len(texts), label)
        return await self._broadcast_page(request, sent=row, again=not first)


def _language(data: dict[str, Any]) -> str | None:
    state = data.get("state_now")
    return state.get("language") if state else None


def _by_phone(waiting: list[Watch]) -> list[Watch]:
    """One per phone (a family checked in from one phone gets one text)."""
    seen: dict[str, Watch] = {}
    for watch in waiting:
        seen.setdefault(watch.phone, watch)
    return list(seen.values())


def _chosen(waiting: list[Watch], audience: str) -> list[Watch]:
    kind, _, value = audience.partition(":")
    if kind == "unit":
        waiting = [w for w in waiting if str(w.unit_id) == value]
    elif kind == "service":
        waiting = [w for w in waiting if w.service_name == value]
    return _by_phone(waiting)


def _audience_label(audience: str) -> str:
    kind, _, value = audience.partition(":")
    if kind == "unit":
        return f"unit {value}"
    if kind == "service":
        return f"service {value}"
    return "everyone waiting"


def _recipient(watch: Watch) -> dict[str, Any]:
    return {
        "name": watch.name,
        "ticket": watch.ticket,
        "service": watch.service_name,
        "unit": watch.unit_id,
        "phone_display": queries.phone_display(watch.phone),
        "conversation": watch.thread_id,
    }
