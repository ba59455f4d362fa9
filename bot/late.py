"""Answers that miss the webhook: a holding reply inside Twilio's window, the answer texted when
it comes (Twilio's REST API), and at shutdown a wait for those still coming."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import phones
from .prompts import Prompts, segments
from .replies import ReplyKey
from .settings import Settings
from .store.log import Log
from .texter import Texter

log = logging.getLogger("checkin_bot.late")

DRAIN_SECONDS = 20.0  # at shutdown, how long late answers may take to finish and be sent


@dataclass(frozen=True)
class Answer:
    """The reply to a text (None: silence) and its id in the log, for its delivery status."""

    text: str | None
    message_id: int | None = None


@dataclass
class Progress:
    """How far handling a text got, for an answer that misses the webhook's budget."""

    inbound_id: int | None = None
    phone: str | None = None
    repeat: bool = False  # a redelivery: the original's handler owns the answer


class LateAnswers:
    """The webhook's budget, and the texts that follow a holding reply."""

    def __init__(
        self,
        settings: Settings,
        log_: Log,
        prompts: Prompts,
        texter: Texter,
        clock: Callable[[], datetime],
    ) -> None:
        self.budget = settings.webhook_budget_seconds
        self.log = log_
        self.prompts = prompts
        self.texter = texter
        self.clock = clock
        base = settings.public_base_url
        self._status_url = f"{base}/sms/status" if base else None
        self._late: set[asyncio.Task[None]] = set()  # answers being finished after the webhook

    async def within_budget(
        self,
        sender: str,
        handle: Callable[[Progress], Awaitable[Answer]],
        progress: Progress | None = None,
    ) -> Answer:
        """`handle`'s answer if it comes within the budget. Past it: a holding reply now, and
        the answer, when it comes, as a text of our own (or, unable to text, "see reception")."""
        progress = progress or Progress()
        work = asyncio.ensure_future(handle(progress))
        done, _ = await asyncio.wait({work}, timeout=self.budget)
        if work in done:
            return work.result()
        key = ReplyKey.HOLDING if self.texter.enabled else ReplyKey.HOLDING_SEE_RECEPTION
        text = self.prompts.render(key)
        log.warning(
            "no answer for %s within %gs; sent the %s reply",
            phones.mask(progress.phone or sender),
            self.budget,
            key,
        )
        holding_id = None
        if progress.inbound_id is not None and progress.phone and not progress.repeat:
            record = self.log.record_reply(
                progress.inbound_id, progress.phone, text, key, segments(text), self.clock()
            )
            try:
                holding_id = await asyncio.wait_for(asyncio.shield(record), 1.0)
            except Exception as exc:
                log.warning("could not log the holding reply: %s", type(exc).__name__)
        self._later(self._follow_up(work, sender, progress))
        return Answer(text, holding_id)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _follow_up(self, work: asyncio.Future[Answer], to: str, progress: Progress) -> None:
        """Text the answer the webhook could not wait for (a redelivery's handler does not:
        the original's does)."""
        try:
            answer = await work
        except Exception:
            # E.g. the database failed: we promised a text, so send the apology, unlogged.
            log.exception("a late answer failed; texting the apology")
            answer = Answer(self.prompts.render(ReplyKey.UPSTREAM_UNAVAILABLE))
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
            await self.log.record_status(answer.message_id, sent.sid, sent.status, sent.error_code)
        except Exception:
            log.exception("could not log a late answer's status")

    async def drain(self, wait: float = DRAIN_SECONDS) -> None:
        """At shutdown: let late answers finish and be sent, for up to `wait` seconds."""
        if self._late:
            log.info("waiting up to %gs for %d late answer(s)", wait, len(self._late))
            await asyncio.wait(set(self._late), timeout=wait)
