"""One inbound message, handled: store it, understand it, ask VirtualQ, answer, log it all."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import identity, intents, logs, phones
from .conversation import (
    UNCONFIRMED,
    Action,
    Candidate,
    Checkin,
    Context,
    Conversation,
    NotEnqueued,
    Outcome,
    Policy,
    Reconcile,
    Reply,
    Result,
    State,
    Unavailable,
    Unconfirmed,
    resume,
    step,
    unconfirmed_data,
)
from .errors import UpstreamRefused, UpstreamUnavailable
from .outbound import Texter
from .prompts import Prompts, segments
from .settings import Settings
from .store import Handled, PhoneBusy, Store, Turn, Unanswered, Who
from .virtualq import CallRecord, VirtualQClient

log = logging.getLogger("checkin_bot.service")

MAX_UPSTREAM_HOPS = 3  # e.g. a finished case looked up, then a fresh check-in
DUPLICATE_WAIT_SECONDS = 10.0
PHONE_TURN_WAIT_SECONDS = 10.0  # a message waits this long for the one before it (any process)
# A message's VirtualQ calls stop after this long (inside the SQLite lease of store.LEASE_SECONDS).
HANDLING_LIMIT_SECONDS = 25.0
# A text unanswered this long was dropped by a process that died; after RECLAIM_WITHIN it is
# too late to act on it (the customer was sent to reception by the Fallback URL, or left).
RECLAIM_AFTER = timedelta(seconds=60)
RECLAIM_WITHIN = timedelta(minutes=10)
RECLAIM_EVERY_SECONDS = 30.0
DRAIN_SECONDS = 20.0  # at shutdown, how long late answers may take to finish and be sent


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


@dataclass
class Progress:
    """How far `handle` got, for an answer that misses the webhook's budget."""

    inbound_id: int | None = None
    phone: str | None = None
    repeat: bool = False  # a redelivery: the original's handler owns the answer


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
        texter: Texter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.prompts = prompts
        self.clock = clock or (lambda: datetime.now(UTC))
        self.texter = texter or Texter(settings)
        self.locks = PhoneLocks()
        self._late: set[asyncio.Task[None]] = set()  # answers being finished after the webhook
        base = settings.public_base_url
        self._status_url = f"{base}/sms/status" if base else None
        secret = settings.secret_key or settings.twilio_auth_token
        self._log_key = secret.get_secret_value() if secret else "checkin-bot"
        self.policy = Policy(
            confirm_timeout=timedelta(minutes=settings.confirm_timeout_minutes),
            checked_in_memory=timedelta(hours=settings.checked_in_memory_hours),
            force_prevent_auto_queue=settings.force_prevent_auto_queue,
            booking_number_fallback=settings.booking_number_fallback,
        )

    async def respond(self, sms: InboundText) -> Answer:
        """`handle` within WEBHOOK_BUDGET_SECONDS. Past it: a holding reply now, and the
        answer, when it comes, as a text of our own (or, unable to text, "see reception")."""
        progress = Progress()
        work = asyncio.create_task(self.handle(sms, progress))
        done, _ = await asyncio.wait({work}, timeout=self.settings.webhook_budget_seconds)
        if work in done:
            return work.result()
        key = "holding" if self.texter.enabled else "holding_see_reception"
        text = self.prompts.render(key)
        log.warning(
            "no answer for %s within %gs; sent the %s reply",
            phones.mask(progress.phone or sms.sender),
            self.settings.webhook_budget_seconds,
            key,
        )
        holding_id = None
        if progress.inbound_id is not None and progress.phone and not progress.repeat:
            record = self.store.record_reply(
                progress.inbound_id, progress.phone, text, key, segments(text), self.clock()
            )
            try:
                holding_id = await asyncio.wait_for(asyncio.shield(record), 1.0)
            except Exception as exc:
                log.warning("could not log the holding reply: %s", type(exc).__name__)
        self._later(self._follow_up(work, sms.sender, progress))
        return Answer(text, holding_id)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _follow_up(self, work: asyncio.Task[Answer], to: str, progress: Progress) -> None:
        """Text the answer the webhook could not wait for (a redelivery's handler does not:
        the original's does)."""
        try:
            answer = await work
        except Exception:
            # E.g. the database failed: we promised a text, so send the apology, unlogged.
            log.exception("a late answer failed; texting the apology")
            answer = Answer(self.prompts.render("upstream_unavailable"))
        if not progress.repeat:
            await self.deliver(to, answer)

    async def deliver(self, to: str, answer: Answer) -> None:
        """Send an answer as a text of our own, logging what Twilio said on its row."""
        if answer.text is None:
            return
        callback = None
        if self._status_url and answer.message_id is not None:
            callback = f"{self._status_url}?m={answer.message_id}"
        sent = await self.texter.send(to, answer.text, callback)
        if sent.sid is None:
            log.warning("late answer to %s not sent: %s", phones.mask(to), sent.reason)
        else:
            log.info("late answer sent to %s (%s)", phones.mask(to), sent.status)
        if answer.message_id is None:
            return
        try:
            await self.store.record_status(
                answer.message_id, sent.sid, sent.status, sent.error_code
            )
        except Exception:
            log.exception("could not log a late answer's status")

    async def drain(self, wait: float = DRAIN_SECONDS) -> None:
        """At shutdown: let late answers finish and be sent, for up to `wait` seconds."""
        if self._late:
            log.info("waiting up to %gs for %d late answer(s)", wait, len(self._late))
            await asyncio.wait(set(self._late), timeout=wait)

    async def reclaim(self) -> int:
        """Answer texts a stopped process left unanswered (any process may run this: a text is
        answered once, under its phone's turn), texting the answers; how many were answered.
        Texts older than RECLAIM_WITHIN are only marked as abandoned."""
        now = self.clock()
        answered = 0
        for text in await self.store.unanswered(now - RECLAIM_AFTER):
            answer = await self._reclaim(text, now)
            if answer is not None:
                answered += 1
                await self.deliver(text.phone, answer)
        return answered

    async def _reclaim(self, text: Unanswered, now: datetime) -> Answer | None:
        logs.conversation.set(logs.conversation_key(text.phone, self._log_key))
        async with self.locks.hold(text.phone):
            try:
                async with self.store.turn(text.phone, 0.5) as turn:
                    if await turn.handled(text.id):
                        return None
                    if now - text.created_at > RECLAIM_WITHIN:
                        log.warning(
                            "a text from %s was never answered; too old to act on now",
                            phones.mask(text.phone),
                        )
                        before = await turn.conversation()
                        await turn.finish(
                            Handled(
                                text.id, text.phone, before, None, "abandoned", None, None, (), now
                            )
                        )
                        return None
                    log.warning(
                        "answering a text from %s that a stopped process left unanswered",
                        phones.mask(text.phone),
                    )
                    return await self._answer(turn, text.id, text.phone, text.body)
            except PhoneBusy:
                return None  # someone is answering this phone: they will see it next time

    async def keep_reclaiming(self, every: float = RECLAIM_EVERY_SECONDS) -> None:
        """Run `reclaim` now and then, for as long as the process lives."""
        while True:
            try:
                await self.reclaim()
            except Exception as exc:
                log.warning("could not look for unanswered texts: %s", exc)
            await asyncio.sleep(every * random.uniform(0.5, 1.5))

    async def handle(self, sms: InboundText, progress: Progress | None = None) -> Answer:
        """The reply to one inbound text (None: stay silent). Stored before anything else."""
        progress = progress or Progress()
        phone = phones.sender_key(sms.sender, self.settings.default_region)
        progress.phone = phone
        logs.conversation.set(logs.conversation_key(phone, self._log_key))
        inbound = await self.store.record_inbound(
            phone, sms.sid, sms.body, sms.num_media, self.clock(), sms.idempotency_token
        )
        progress.inbound_id, progress.repeat = inbound.id, inbound.duplicate
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
        sent: dict[str, Any] = {}  # a check-in sent whose outcome we do not know yet
        try:
            candidates = await identity.candidates(turn, self.settings, phone)
            ctx = Context(self.clock(), candidates, self.policy)
            outcome = step(before, parsed, ctx)
            async with asyncio.timeout(HANDLING_LIMIT_SECONDS):
                hops = 0
                while (action := outcome.action) is not None:
                    if hops == MAX_UPSTREAM_HOPS:
                        outcome = _gave_up(before, sent)
                        break
                    if isinstance(action, Checkin):
                        # Write ahead: should this process die mid-call, the phone's next
                        # message (or the reclaimer) looks the check-in up before anything.
                        sent = unconfirmed_data(action.target, self.clock().isoformat())
                        await turn.remember(
                            Conversation(before.state, {**before.data, **sent}), self.clock()
                        )
                    result = await self._perform(action, calls, phone)
                    if _settled(action, result):
                        sent = {}  # we know what became of the check-in
                    outcome = resume(action, result, ctx, before)
                    hops += 1
        except Exception as exc:
            # The one error sink: log with the conversation key, answer with the apology, and
            # remember a check-in that may have happened, to reconcile on the next message.
            if isinstance(exc, TimeoutError):
                log.error(
                    "message for %s: VirtualQ calls took over %gs",
                    phones.mask(phone),
                    HANDLING_LIMIT_SECONDS,
                )
            else:
                log.exception("message for %s failed; sent the fallback reply", phones.mask(phone))
            outcome = _gave_up(before, sent)
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
        return case.view()

    def _render(self, reply: Reply | None) -> str | None:
        if reply is None:
            return None
        if reply.choices is not None:
            return self.prompts.render_choices(reply.key, list(reply.choices))
        return self.prompts.render(reply.key, **reply.values)


def _settled(action: Action, result: Result) -> bool:
    """Whether a check-in's fate is known after `action`: a check-in answered (or never sent),
    or a look-up that found out."""
    if isinstance(action, Checkin):
        return not isinstance(result, Unconfirmed)
    if isinstance(action, Reconcile):
        return not isinstance(result, Unavailable)
    return False


def _gave_up(before: Conversation, sent: dict[str, Any]) -> Outcome:
    """The apology, keeping any check-in whose outcome is still unknown (this message's, or
    one it was reconciling) for the next message to look up."""
    pending = sent or {k: v for k, v in before.data.items() if k == UNCONFIRMED}
    key = "checkin_unconfirmed" if pending else "upstream_unavailable"
    return Outcome(State.IDLE, pending, Reply(key))


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
