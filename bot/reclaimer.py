"""Texts a stopped process left unanswered: found in the log and answered once, by text."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timedelta

from . import logs, phones
from .errors import PhoneBusy
from .late import Answer
from .service import Service
from .store.log import UNANSWERED_AFTER, Handled, Unanswered

log = logging.getLogger("checkin_bot.reclaimer")

# After RECLAIM_WITHIN it is too late to act on a text: the customer was sent to reception by
# the Fallback URL, or left.
RECLAIM_WITHIN = timedelta(minutes=10)
RECLAIM_EVERY_SECONDS = 30.0
RECLAIM_AT_ONCE = 8  # phones answered at once


class Reclaimer:
    """Answers texts whose process died before answering them (any process may run this: a
    text is answered once, under its phone's turn)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def reclaim(self) -> int:
        """Answer the unanswered texts, texting the answers; how many were answered. Texts
        older than RECLAIM_WITHIN are only marked as abandoned.

        Phones are answered RECLAIM_AT_ONCE at a time, each phone's texts in the order they
        came: one at a time, a probe's 180 texts left by a kill -9, behind a VirtualQ taking
        0.5-3 s a check-in, took 9.5 of the 10 minutes before the last was answered. Each
        text's age is judged on the clock as it is reached, not as the pass began."""
        clock = self.service.clock
        by_phone: dict[str, list[Unanswered]] = {}
        for text in await self.service.store.log.unanswered(clock() - UNANSWERED_AFTER):
            by_phone.setdefault(text.phone, []).append(text)
        slots = asyncio.Semaphore(RECLAIM_AT_ONCE)

        async def one_phone(texts: list[Unanswered]) -> int:
            answered = 0
            async with slots:
                for text in texts:
                    answer = await self._reclaim(text, clock())
                    if answer is not None:
                        answered += 1
                        await self.service.late.deliver(text.phone, answer)
            return answered

        done = await asyncio.gather(*map(one_phone, by_phone.values()), return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                log.warning("could not answer a text left unanswered: %r", outcome)
        return sum(outcome for outcome in done if isinstance(outcome, int))

    async def _reclaim(self, text: Unanswered, now: datetime) -> Answer | None:
        service = self.service
        logs.conversation.set(service.log_key(text.phone))
        try:
            async with service.store.turns.take(text.phone, 0.5) as turn:
                if await turn.handled(text.id):
                    return None
                why = None
                if await turn.superseded(text.id):
                    why = "superseded"  # they texted again and got an answer: that one stands
                elif now - text.created_at > RECLAIM_WITHIN:
                    why = "abandoned"
                if why is not None:
                    log.warning(
                        "a text from %s was never answered; %s",
                        phones.mask(text.phone),
                        "a later one was" if why == "superseded" else "too old to act on now",
                    )
                    state = turn.saved.state
                    await turn.finish(
                        Handled(
                            inbound_id=text.id,
                            phone=text.phone,
                            state_before=state,
                            state_after=None,
                            data_after=None,
                            intent=why,
                            reply=None,
                            reply_key=None,
                            segments=None,
                            calls=(),
                            now=now,
                        )
                    )
                    return None
                log.warning(
                    "answering a text from %s that a stopped process left unanswered",
                    phones.mask(text.phone),
                )
                return await service.answer(turn, text.id, text.phone, text.body)
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
