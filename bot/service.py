"""One inbound text, handled: store it, understand it in its conversation, ask VirtualQ what
the conversation needs, answer, and log it all.

The story of a text, top to bottom: `respond` (the webhook's call: `handle` within the
webhook's budget, see bot.late) → `handle` (stored first; a redelivery or a flood answered
from the log) → the phone's turn (bot.store.turns) → `answer` (read the text, `step` the
conversation, perform its actions, write it all in one transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import identity, logs, phones, threads
from .conversation import (
    UNCONFIRMED,
    Action,
    CancelCase,
    Candidate,
    CaseView,
    Checkin,
    Context,
    Conversation,
    Decision,
    Done,
    NotEnqueued,
    Policy,
    Reconcile,
    Reply,
    Result,
    State,
    Unavailable,
    Unconfirmed,
    expecting,
    resume,
    step,
    unconfirmed_data,
    visits,
)
from .errors import BadWebhook, NotHandled, PhoneBusy, UpstreamRefused, UpstreamUnavailable
from .late import Answer, LateAnswers, Progress
from .prompts import Catalogue, Prompts
from .replies import CHOICE_LISTS, LINES, ReplyKey
from .settings import Settings
from .sms import segments
from .store import Store
from .store.log import Call, Handled, Who
from .store.turns import Turn
from .texter import Texter
from .understanding import Reading, read
from .virtualq import CallRecord, CaseDetail, VirtualQClient

log = logging.getLogger("checkin_bot.service")

# e.g. a finished case looked up, then a fresh check-in; or a family checked in one by one
MAX_UPSTREAM_HOPS = 12
DUPLICATE_WAIT_SECONDS = 10.0
PHONE_TURN_WAIT_SECONDS = 10.0  # a message waits this long for the one before it (any process)
# SQLite: texts up to this long are read as they are stored (Service._plan): one SMS segment.
PLAN_MAX_CHARS = 160
# Twilio delivers texts of at most 1,600 characters; a longer body (the webhook takes 10,000)
# is read up to here: reading 10,000 characters took up to ~170 ms of the event loop, 1,600
# up to ~12 ms.
READ_MAX_CHARS = 1600
# A message's VirtualQ calls stop after this long (inside the SQLite lease of turns.LEASE_SECONDS).
HANDLING_LIMIT_SECONDS = 25.0


@dataclass(frozen=True)
class InboundText:
    """What the service needs of an inbound SMS."""

    sid: str
    sender: str
    body: str
    num_media: int = 0
    idempotency_token: str | None = None  # Twilio's, on the webhook request


class Service:
    """The check-in conversation for every phone, on a store and a VirtualQ client."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: VirtualQClient,
        catalogue: Catalogue,
        clock: Callable[[], datetime] | None = None,
        texter: Texter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.catalogue = catalogue
        self.prompts = catalogue.prompts(settings.default_language)  # the default language's
        self.clock = clock or (lambda: datetime.now(UTC))
        self.late = LateAnswers(
            settings, store.log, self.prompts, texter or Texter(settings), self.clock
        )
        secret = settings.secret_key or settings.twilio_auth_token
        self._log_key = secret.get_secret_value() if secret else "checkin-bot"
        self.policy = Policy(
            confirm_timeout=timedelta(minutes=settings.confirm_timeout_minutes),
            checked_in_memory=timedelta(hours=settings.checked_in_memory_hours),
            force_prevent_auto_queue=settings.force_prevent_auto_queue,
            booking_number_fallback=settings.booking_number_fallback,
            booking_number_digits=settings.booking_digits(),
            allow_cancel_booking=settings.allow_cancel_booking,
        )

    # --- the webhook's calls ------------------------------------------------------------------

    async def respond(self, sms: InboundText) -> Answer:
        """The answer to a text within WEBHOOK_BUDGET_SECONDS (a holding reply past it, the
        answer following as a text). NotHandled when it could not even be handled."""
        progress = Progress()
        try:
            return await self.late.within_budget(
                sms.sender, lambda p: self.handle(sms, p), progress
            )
        except BadWebhook:
            raise
        except Exception as exc:
            stored = progress.inbound_id is not None
            raise NotHandled("a text could not be handled", sms.sender, stored=stored) from exc

    async def record_delivery(
        self, reply_id: int | None, sid: str, status: str, error_code: str | None
    ) -> bool:
        """A delivery status callback for one of our texts; False when it changed nothing."""
        try:
            return await self.store.log.record_status(reply_id, sid, status, error_code)
        except Exception as exc:
            raise NotHandled(f"delivery status {status} could not be recorded") from exc

    # --- one text -----------------------------------------------------------------------------

    async def handle(self, sms: InboundText, progress: Progress | None = None) -> Answer:
        """The reply to one inbound text (None: stay silent). Stored before anything else."""
        progress = progress or Progress()
        phone = phones.sender_key(sms.sender, self.settings.default_region)
        progress.phone = phone
        logs.conversation.set(self.log_key(phone))
        now = self.clock()
        # In the phone's line from now on: texts of one phone are answered in the order they
        # arrived (when the phone's line was empty, its turn is taken as the text is stored).
        async with self.store.turns.arrive(phone) as arrival:
            planned: list[_Planned] = []
            inbound = await self.store.log.record_inbound(
                phone,
                sms.sid,
                sms.body,
                sms.num_media,
                now,
                sms.idempotency_token,
                recent_since=now - timedelta(minutes=1),
                then=arrival.with_turn(self._plan(phone, sms.body, planned)),
                taking=arrival.taking,
            )
            progress.inbound_id, progress.repeat = inbound.id, inbound.duplicate
            if not inbound.duplicate:
                limited = await self._rate_limit(inbound.id, phone, inbound.recent)
                if limited is not None:
                    return limited
                try:
                    async with arrival.turn(PHONE_TURN_WAIT_SECONDS) as turn:
                        return await self.answer(
                            turn,
                            inbound.id,
                            phone,
                            sms.body,
                            inbound.thread_id,
                            planned[0] if planned else None,
                        )
                except PhoneBusy as exc:
                    log.warning("%s: %s; sent the fallback reply", phones.mask(phone), exc)
                    return await self._log_aside(
                        inbound.id, phone, "busy", ReplyKey.UPSTREAM_UNAVAILABLE
                    )
        if inbound.other_phone:
            # Twilio never sends one MessageSid from two phones: a replay, or a forgery (the
            # first phone's reply may name its family). Refused, stored nothing.
            log.warning("%s: a MessageSid seen from another phone: refused", phones.mask(phone))
            raise BadWebhook("bad webhook: MessageSid seen before from another phone")
        # A repeated delivery waits for the first one's answer out of the phone's line.
        return await self._repeat(inbound.id, phone)

    async def answer(
        self,
        turn: Turn,
        inbound_id: int,
        phone: str,
        body: str,
        thread_id: int | None = None,
        planned: _Planned | None = None,
    ) -> Answer:
        """Read a text in its conversation, perform what the conversation needs, and write the
        message's whole outcome in one transaction (the caller holds the phone's turn).
        `planned`: the text already read and stepped as it was stored (`_plan`)."""
        saved = turn.saved
        before = Conversation(State(saved.state), saved.data)
        if planned is None:
            candidates, ctx, reading = self._read(turn, phone, body, before)
        else:
            candidates, ctx, reading = planned.candidates, planned.ctx, planned.reading
        calls: list[Call] = []
        seen: list[CaseView] = []
        decision = await self._decide(turn, phone, before, reading, ctx, calls, seen, planned)
        after = Conversation(decision.state, decision.data)
        language = self._language(
            saved.language, saved.language_source, reading, decision, seen, candidates
        )
        text = self.render(decision.reply, language[0])
        key = decision.reply.key if decision.reply else None
        opted_out = after.state is State.OPTED_OUT and before.state is not State.OPTED_OUT
        reply_id = await turn.finish(
            Handled(
                inbound_id=inbound_id,
                thread_id=thread_id,
                phone=phone,
                state_before=before.state.value,
                state_after=after.state.value,
                data_after=after.data,
                intent=reading.label,
                reply=text,
                reply_key=key,
                segments=segments(text) if text else None,
                calls=tuple(calls),
                now=self.clock(),
                advance=threads.advancing(key, opted_out),
                who=_who(candidates, before, after),
                understood=reading.why,
                language=reading.language,
                reply_language=language[0] if text else None,
                remember_language=language,
                watch=self._watch(phone, after, seen, candidates, language[0]),
                stop_watching=_stop_watching(key, opted_out),
            )
        )
        log.info(
            "%s: %s -> %s (%s, read as %s)",
            phones.mask(phone),
            before.state.value,
            after.state.value,
            key or "silent",
            reading.label,
        )
        return Answer(text, reply_id)

    def _read(
        self, turn: Turn, phone: str, body: str, before: Conversation
    ) -> tuple[tuple[Candidate, ...], Context, Reading]:
        """Whom the phone may be, the moment's context, and the text read in it (its first
        READ_MAX_CHARS: the whole text is stored)."""
        candidates = identity.candidates(self.settings, phone, turn.entries)
        ctx = Context(self.clock(), candidates, self.policy)
        text, language = body[:READ_MAX_CHARS], turn.saved.language
        return candidates, ctx, read(text, self.catalogue.lexicon, expecting(before, ctx), language)

    def _plan(
        self, phone: str, body: str, planned: list[_Planned]
    ) -> Callable[[Turn, int], tuple[str, dict[str, Any], datetime] | None] | None:
        """On SQLite, when the text takes its phone's turn as it is stored: read and step it
        there, in the writer thread (`Arrival.with_turn`), and when the conversation's first
        action is a check-in, return its write-ahead record to save with the text (one
        transaction a check-in fewer). Not for a text over the rate limit, which the
        conversation never sees, nor for a long one: the writer holds the database's write
        lock meanwhile, and reading 160 characters takes up to ~1 ms, 10,000 up to ~170 ms
        (those are read in their turn, as on PostgreSQL). What it decided is appended to
        `planned` for `answer`."""
        if len(body) > PLAN_MAX_CHARS:
            return None

        def plan(turn: Turn, recent: int) -> tuple[str, dict[str, Any], datetime] | None:
            if recent > self.settings.rate_limit_per_minute:
                return None
            saved = turn.saved
            before = Conversation(State(saved.state), saved.data)
            candidates, ctx, reading = self._read(turn, phone, body, before)
            decision = step(before, reading, ctx)
            if not isinstance(decision.action, Checkin):
                planned.append(_Planned(candidates, ctx, reading, decision, None))
                return None
            sent, record = self._write_ahead(before, decision.action)
            planned.append(_Planned(candidates, ctx, reading, decision, sent))
            return record

        return plan

    def _write_ahead(
        self, before: Conversation, action: Checkin
    ) -> tuple[dict[str, Any], tuple[str, dict[str, Any], datetime]]:
        """A check-in's write-ahead record: the data marking it unconfirmed, and the
        conversation to save before it is sent (state, data, when)."""
        at = self.clock()
        sent = unconfirmed_data(action.target, at.isoformat())
        return sent, (before.state.value, {**before.data, **sent}, at)

    def _watch(
        self,
        phone: str,
        after: Conversation,
        seen: list[CaseView],
        candidates: tuple[Candidate, ...],
        language: str,
    ) -> tuple[dict[str, Any], ...]:
        """The cases this text checked in, to keep an eye on for notifications."""
        if after.state is not State.CHECKED_IN:
            return ()
        people = {p.case_id: p for p in visits(after.data)}
        now = self.clock()
        at = self.settings.notify_at_position
        rows = []
        for case in seen:
            person = people.get(case.case_id)
            if person is None or not case.active:
                continue
            near = case.position is not None and case.position + 1 <= at
            rows.append(
                {
                    "case_id": case.case_id,
                    "phone": phone,
                    "personal_id": person.target.personal_id,
                    "name": person.target.name,
                    "ticket": case.ticket,
                    "unit_id": case.unit_id,
                    "service_name": case.service,
                    "language": language,
                    "shared": len(candidates) > 1,
                    "created_at": now,
                    "position": case.position,
                    # The check-in's reply said how near they are: no "almost" after it.
                    "almost_at": now if near else None,
                }
            )
        return tuple(rows)

    def _language(
        self,
        saved: str | None,
        source: str | None,
        reading: Reading,
        decision: Decision,
        seen: list[CaseView],
        candidates: tuple[Candidate, ...],
    ) -> tuple[str, str]:
        """The language to reply in, and why, in this order: the customer's own choice, the
        language this text was confidently written in, the one remembered from their earlier
        texts, VirtualQ's LanguageCode, the directory's, DEFAULT_LANGUAGE."""
        knows = self.catalogue.knows
        if knows(decision.language):
            return str(decision.language), "chosen"
        if source == "chosen" and knows(saved):
            return str(saved), "chosen"
        if knows(reading.language):
            return str(reading.language), "detected"
        if source == "detected" and knows(saved):
            return str(saved), "detected"
        for case in seen:
            if knows(case.language):
                return str(case.language), "virtualq"
        if source == "virtualq" and knows(saved):
            return str(saved), "virtualq"
        for candidate in candidates:
            if knows(candidate.language):
                return str(candidate.language), "directory"
        return self.settings.default_language, "default"

    async def _decide(
        self,
        turn: Turn,
        phone: str,
        before: Conversation,
        reading: Reading,
        ctx: Context,
        calls: list[Call],
        seen: list[CaseView],
        planned: _Planned | None = None,
    ) -> Decision:
        """Step the conversation, performing the VirtualQ actions it asks for in turn. The one
        error sink of a text: whatever fails, the customer gets the apology and a check-in
        that may have happened is kept to reconcile on the next text."""
        sent: dict[str, Any] = {}  # a check-in sent whose outcome we do not know yet
        try:
            decision = step(before, reading, ctx) if planned is None else planned.decision
            async with asyncio.timeout(HANDLING_LIMIT_SECONDS):
                for hop in range(MAX_UPSTREAM_HOPS):
                    action = decision.action
                    if action is None:
                        return decision
                    if isinstance(action, Checkin):
                        # Write ahead: should this process die mid-call, the phone's next
                        # message (or the reclaimer) looks the check-in up before anything.
                        if hop == 0 and planned is not None and planned.sent is not None:
                            sent = planned.sent  # saved with the text (`_plan`)
                        else:
                            sent, record = self._write_ahead(before, action)
                            await turn.remember(*record)
                    result = await self._perform(action, calls, phone)
                    if isinstance(result, CaseView):
                        seen.append(result)
                    if _settled(action, result):
                        sent = {}  # we know what became of the check-in
                    decision = resume(decision, result, ctx)
                if decision.action is None:
                    return decision
                log.error(
                    "message for %s: gave up after %d VirtualQ calls",
                    phones.mask(phone),
                    MAX_UPSTREAM_HOPS,
                )
        except TimeoutError:
            log.error(
                "message for %s: VirtualQ calls took over %gs",
                phones.mask(phone),
                HANDLING_LIMIT_SECONDS,
            )
        except Exception:
            log.exception("message for %s failed; sent the fallback reply", phones.mask(phone))
        return _gave_up(before, sent)

    async def _perform(self, action: Action, calls: list[Call], phone: str) -> Result:
        """Run one upstream action; its classified result, never an exception."""

        def observe(record: CallRecord) -> None:
            calls.append(
                Call(
                    record.operation,
                    record.request,
                    record.status,
                    record.latency_ms,
                    record.outcome,
                    record.response,
                    record.error,
                    self.clock(),
                )
            )

        try:
            if isinstance(action, Checkin):
                target = action.target
                case = await self.client.checkin(
                    personal_id=target.personal_id,
                    case_id=target.case_id,
                    force=action.force,
                    observe=observe,
                )
            elif isinstance(action, CancelCase):
                await self.client.cancel_case(
                    action.case_id,
                    note="booking cancelled by the customer by text"
                    if action.booking
                    else "the customer left the queue by text",
                    observe=observe,
                )
                log.info(
                    "%s for %s",
                    "booking cancelled" if action.booking else "left the queue",
                    phones.mask(phone),
                )
                return Done()
            elif isinstance(action, Reconcile):
                found = await self.client.find_checkin(
                    personal_id=action.target.personal_id,
                    case_id=action.target.case_id,
                    units=self.settings.unit_ids(),
                    observe=observe,
                )
                log.warning(
                    "reconciled an unconfirmed check-in for %s: %s",
                    phones.mask(phone),
                    "enqueued" if found else "nothing enqueued",
                )
                if found is None:
                    return NotEnqueued()
                case = found
            else:
                case = await self.client.get_case(action.case_id, observe=observe)
        except UpstreamRefused as exc:
            if isinstance(action, CancelCase):
                log.warning("VirtualQ refused to cancel for %s: %s", phones.mask(phone), exc.cause)
                return Unavailable(exc.cause)
            log.info(
                "VirtualQ refused %s for %s: %s",
                type(action).__name__,
                phones.mask(phone),
                exc.cause,
            )
            return exc.reason
        except UpstreamUnavailable as exc:
            if isinstance(action, Checkin) and exc.request_sent:
                log.warning(
                    "check-in for %s may have happened (%s); looking it up before anything else",
                    phones.mask(phone),
                    exc.cause,
                )
                return Unconfirmed(exc.cause)
            log.warning("VirtualQ unavailable for %s: %s", phones.mask(phone), exc.cause)
            return Unavailable(exc.cause)
        return _view(case)

    # --- texts answered outside the conversation ------------------------------------------------

    async def record_fallback(self, sms: InboundText) -> bool:
        """A text Twilio sent to the Fallback URL (/sms failed or timed out): stored, as
        answered with the apology, unless /sms had stored it (then its handler owns it);
        whether it was stored here."""
        phone = phones.sender_key(sms.sender, self.settings.default_region)
        inbound = await self.store.log.record_inbound(
            phone, sms.sid, sms.body, sms.num_media, self.clock()
        )
        if inbound.duplicate:
            return False
        await self._log_aside(inbound.id, phone, "fallback", ReplyKey.UPSTREAM_UNAVAILABLE)
        return True

    async def _repeat(self, inbound_id: int, phone: str) -> Answer:
        """A redelivered MessageSid: the same reply again, and no second upstream call."""
        handled, reply = await self.store.log.answer_to(inbound_id, DUPLICATE_WAIT_SECONDS)
        log.info("duplicate delivery for %s answered from the log", phones.mask(phone))
        if not handled:
            return Answer(self.render(Reply(ReplyKey.UPSTREAM_UNAVAILABLE)))
        return Answer(None) if reply is None else Answer(reply.body, reply.id)

    async def _rate_limit(self, inbound_id: int, phone: str, sent: int) -> Answer | None:
        """More texts than RATE_LIMIT_PER_MINUTE in the last minute (`sent`, this one
        included): the first text past the limit is told why, the rest get silence; all are
        logged."""
        limit = self.settings.rate_limit_per_minute
        if sent <= limit:
            return None
        key = ReplyKey.RATE_LIMITED if sent == limit + 1 else None
        log.warning(
            "%s: %d texts in a minute, over the limit of %d", phones.mask(phone), sent, limit
        )
        return await self._log_aside(inbound_id, phone, "rate_limited", key)

    async def _log_aside(
        self, inbound_id: int, phone: str, why: str, key: ReplyKey | None
    ) -> Answer:
        """Log a text answered outside the conversation, whose state it leaves alone."""
        text = self.render(Reply(key)) if key else None
        reply_id = await self.store.log.finish(
            Handled(
                inbound_id=inbound_id,
                phone=phone,
                state_before=await self.store.log.state_of(phone),
                state_after=None,
                data_after=None,
                intent=why,
                reply=text,
                reply_key=key,
                segments=segments(text) if text else None,
                calls=(),
                now=self.clock(),
            )
        )
        return Answer(text, reply_id)

    # --- helpers ------------------------------------------------------------------------------

    def render(self, reply: Reply | None, language: str | None = None) -> str | None:
        """A reply's text in a language (None: silence)."""
        return render(self.catalogue.prompts(language), reply)

    def log_key(self, phone: str) -> str:
        """The phone's conversation key in log lines (never the number itself)."""
        return logs.conversation_key(phone, self._log_key)


@dataclass(frozen=True)
class _Planned:
    """A text read and stepped as it was stored (`Service._plan`), and the check-in written
    ahead with it, if its first action is one (`unconfirmed_data`)."""

    candidates: tuple[Candidate, ...]
    ctx: Context
    reading: Reading
    decision: Decision
    sent: dict[str, Any] | None


def render(prompts: Prompts, reply: Reply | None) -> str | None:
    """A conversation's reply in one language's words (None: silence)."""
    if reply is None:
        return None
    if reply.key in CHOICE_LISTS:
        return prompts.render_choices(reply.key, reply.choices or (), reply.everyone)
    if reply.key in LINES:
        return prompts.render_lines(reply.key, reply.lines)
    return prompts.render(reply.key, **reply.values)


def _view(case: CaseDetail) -> CaseView:
    language = (case.language_code or "").strip().lower().replace("_", "-").split("-")[0]
    return CaseView(
        case.case_id,
        case.ticket.strip(),
        case.position,
        case.wait,
        case.active,
        language or None,
        case.unit_id,
        case.service_name,
    )


def _stop_watching(key: ReplyKey | None, opted_out: bool) -> str | None:
    """Why a phone's cases are no longer watched after this reply (None: they still are)."""
    if opted_out:
        return "opted_out"
    if key is ReplyKey.LEFT_QUEUE:
        return "left"
    return None


def _settled(action: Action, result: Result) -> bool:
    """Whether a check-in's fate is known after `action`: a check-in answered (or never sent),
    or a look-up that found out."""
    if isinstance(action, Checkin):
        return not isinstance(result, Unconfirmed)
    if isinstance(action, Reconcile):
        return not isinstance(result, Unavailable)
    return False


def _gave_up(before: Conversation, sent: dict[str, Any]) -> Decision:
    """The apology, keeping any check-in whose outcome is still unknown (this message's, or
    one it was reconciling) for the next message to look up."""
    pending = sent or {k: v for k, v in before.data.items() if k == UNCONFIRMED}
    key = ReplyKey.CHECKIN_UNCONFIRMED if pending else ReplyKey.UPSTREAM_UNAVAILABLE
    return Decision(State.IDLE, pending, Reply(key))


def _who(candidates: tuple[Candidate, ...], before: Conversation, after: Conversation) -> Who:
    """What one message showed of whom the phone belongs to, for the staff pages' search."""
    people = visits(after.data) if after.state is State.CHECKED_IN else []
    checked_in = people[0].to_data() if people else {}
    target = checked_in.get("target") or after.data.get("target") or before.data.get("target") or {}
    personal_id = target.get("personal_id")
    chosen = [c for c in candidates if c.personal_id == personal_id]
    if chosen:
        name = chosen[0].name
    elif len(candidates) == 1:
        personal_id, name = candidates[0].personal_id, candidates[0].name
    else:
        name = ", ".join(c.name for c in candidates if c.name) or None
    if len(people) > 1:
        name = ", ".join(p.target.name or p.ticket for p in people)
    case_id = checked_in.get("case_id") or target.get("case_id")
    return Who(personal_id, name, checked_in.get("ticket"), int(case_id) if case_id else None)
