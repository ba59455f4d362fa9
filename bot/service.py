"""One inbound message, handled: store it, understand it, ask VirtualQ, answer, log it all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import identity, intents, logs, phones
from .conversation import (
    Action,
    Candidate,
    Checkin,
    Context,
    Conversation,
    Outcome,
    Policy,
    Reply,
    Result,
    State,
    Unavailable,
    resume,
    step,
)
from .errors import UpstreamRefused, UpstreamUnavailable
from .prompts import Prompts, segments
from .settings import Settings
from .store import Handled, PhoneBusy, Store, Turn, Who
from .virtualq import CallRecord, VirtualQClient

log = logging.getLogger("checkin_bot.service")

MAX_UPSTREAM_HOPS = 3  # e.g. a finished case looked up, then a fresh check-in
DUPLICATE_WAIT_SECONDS = 10.0
PHONE_TURN_WAIT_SECONDS = 10.0  # a message waits this long for the one before it (any process)


@dataclass(frozen=True)
class InboundText:
    """What the service needs of an inbound SMS."""

    sid: str
    sender: str
    body: str
    num_media: int = 0
    idempotency_token: str | None = None  # Twilio's, on the webhook request


@dataclass(frozen=True)
class Answer:
    """The reply to a text (None: silence) and its id in the log, for its delivery status."""

    text: str | None
    message_id: int | None = None


class PhoneLocks:
    """One message at a time per phone within this process, in arrival order (the store's turn
    does the same across processes; this keeps waiters here from each holding a connection)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Service:
    """The check-in conversation for every phone, on a store and a VirtualQ client."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: VirtualQClient,
        prompts: Prompts,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.prompts = prompts
        self.clock = clock or (lambda: datetime.now(UTC))
        self.locks = PhoneLocks()
        secret = settings.secret_key or settings.twilio_auth_token
        self._log_key = secret.get_secret_value() if secret else "checkin-bot"
        self.policy = Policy(
            confirm_timeout=timedelta(minutes=settings.confirm_timeout_minutes),
            checked_in_memory=timedelta(hours=settings.checked_in_memory_hours),
            force_prevent_auto_queue=settings.force_prevent_auto_queue,
            booking_number_fallback=settings.booking_number_fallback,
        )

    async def handle(self, sms: InboundText) -> Answer:
        """The reply to one inbound text (None: stay silent). Stored before anything else."""
        phone = phones.sender_key(sms.sender, self.settings.default_region)
        logs.conversation.set(logs.conversation_key(phone, self._log_key))
        inbound = await self.store.record_inbound(
            phone, sms.sid, sms.body, sms.num_media, self.clock(), sms.idempotency_token
        )
        if inbound.duplicate:
            return await self._repeat(inbound.id, phone)
        limited = await self._rate_limit(inbound.id, phone)
        if limited is not None:
            return limited
        async with self.locks.hold(phone):
            try:
                async with self.store.turn(phone, PHONE_TURN_WAIT_SECONDS) as turn:
                    return await self._answer(turn, inbound.id, phone, sms.body)
            except PhoneBusy as exc:
                return await self._busy(inbound.id, phone, exc)

    async def _repeat(self, inbound_id: int, phone: str) -> Answer:
        """A redelivered MessageSid: the same reply again, and no second upstream call."""
        handled, reply = await self.store.answer_to(inbound_id, DUPLICATE_WAIT_SECONDS)
        log.info("duplicate delivery for %s answered from the log", phones.mask(phone))
        if not handled:
            return Answer(self.prompts.render("upstream_unavailable"))
        return Answer(None) if reply is None else Answer(reply.body, reply.id)

    async def _rate_limit(self, inbound_id: int, phone: str) -> Answer | None:
        """More texts than RATE_LIMIT_PER_MINUTE in the last minute (this one included): the
        first text past the limit is told why, the rest get silence; all are logged."""
        now = self.clock()
        sent = await self.store.inbound_since(phone, now - timedelta(minutes=1))
        limit = self.settings.rate_limit_per_minute
        if sent <= limit:
            return None
        key = "rate_limited" if sent == limit + 1 else None
        log.warning(
            "%s: %d texts in a minute, over the limit of %d", phones.mask(phone), sent, limit
        )
        return await self._log_aside(inbound_id, phone, "rate_limited", key)

    async def _busy(self, inbound_id: int, phone: str, exc: PhoneBusy) -> Answer:
        """Another message from this phone is still being answered (elsewhere, stuck): apologise
        and log it, leaving the conversation to the message that holds it."""
        log.warning("%s: %s; sent the fallback reply", phones.mask(phone), exc)
        return await self._log_aside(inbound_id, phone, "busy", "upstream_unavailable")

    async def _log_aside(self, inbound_id: int, phone: str, why: str, key: str | None) -> Answer:
        """Log a text answered outside the conversation, whose state it leaves alone."""
        text = self.prompts.render(key) if key else None
        reply_id = await self.store.finish(
            Handled(
                inbound_id=inbound_id,
                phone=phone,
                before=await self.store.conversation(phone),
                after=None,
                intent=why,
                reply=text,
                segments=segments(text) if text else None,
                calls=(),
                now=self.clock(),
                prompt=key,
            )
        )
        return Answer(text, reply_id)

    async def _answer(self, turn: Turn, inbound_id: int, phone: str, body: str) -> Answer:
        before = await turn.conversation()
        parsed = intents.parse(body, self.prompts)
        calls: list[tuple[CallRecord, datetime]] = []
        candidates: tuple[Candidate, ...] = ()
        try:
            candidates = await identity.candidates(turn, self.settings, phone)
            ctx = Context(self.clock(), candidates, self.policy)
            outcome = step(before, parsed, ctx)
            hops = 0
            while (action := outcome.action) is not None:
                if hops == MAX_UPSTREAM_HOPS:
                    outcome = Outcome(State.IDLE, {}, Reply("upstream_unavailable"))
                    break
                result = await self._perform(action, calls, phone)
                outcome = resume(action, result, ctx, before)
                hops += 1
        except Exception:
            # The one error sink: log with the conversation key, answer with the apology.
            log.exception("message for %s failed; sent the fallback reply", phones.mask(phone))
            outcome = Outcome(State.IDLE, {}, Reply("upstream_unavailable"))
        after = Conversation(outcome.state, outcome.data)
        text = self._render(outcome.reply)
        reply_id = await turn.finish(
            Handled(
                inbound_id=inbound_id,
                phone=phone,
                before=before,
                after=after,
                intent=",".join(sorted(parsed.intents)) or ("number" if parsed.number else ""),
                reply=text,
                segments=segments(text) if text else None,
                calls=tuple(calls),
                now=self.clock(),
                opt_out_keyword=" ".join(parsed.words)[:32] or None,
                prompt=outcome.reply.key if outcome.reply else None,
                who=_who(candidates, before, after),
            )
        )
        log.info(
            "%s: %s -> %s (%s)",
            phones.mask(phone),
            before.state.value,
            after.state.value,
            outcome.reply.key if outcome.reply else "silent",
        )
        return Answer(text, reply_id)

    async def _perform(
        self, action: Action, calls: list[tuple[CallRecord, datetime]], phone: str
    ) -> Result:
        """Run one upstream action; its classified result, never an exception."""

        def observe(record: CallRecord) -> None:
            calls.append((record, self.clock()))

        try:
            if isinstance(action, Checkin):
                target = action.target
                case = await self.client.checkin(
                    personal_id=target.personal_id,
                    case_id=target.case_id,
                    force=action.force,
                    observe=observe,
                )
            else:
                case = await self.client.get_case(action.case_id, observe=observe)
        except UpstreamRefused as exc:
            log.info(
                "VirtualQ refused %s for %s: %s",
                type(action).__name__,
                phones.mask(phone),
                exc.cause,
            )
            return exc.reason
        except UpstreamUnavailable as exc:
            log.warning("VirtualQ unavailable for %s: %s", phones.mask(phone), exc.cause)
            return Unavailable(exc.cause)
        return case.view()

    def _render(self, reply: Reply | None) -> str | None:
        if reply is None:
            return None
        if reply.choices is not None:
            return self.prompts.render_choices(reply.key, list(reply.choices))
        return self.prompts.render(reply.key, **reply.values)


def _who(candidates: tuple[Candidate, ...], before: Conversation, after: Conversation) -> Who:
    """What one message showed of whom the phone belongs to, for the staff pages' search."""
    checked_in = after.data if after.state is State.CHECKED_IN else {}
    target = after.data.get("target") or before.data.get("target") or {}
    personal_id = target.get("personal_id")
    chosen = [c for c in candidates if c.personal_id == personal_id]
    if chosen:
        name = chosen[0].name
    elif len(candidates) == 1:
        personal_id, name = candidates[0].personal_id, candidates[0].name
    else:
        name = ", ".join(c.name for c in candidates if c.name) or None
    case_id = checked_in.get("case_id") or target.get("case_id")
    return Who(personal_id, name, checked_in.get("ticket"), int(case_id) if case_id else None)
