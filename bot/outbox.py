"""Texts the bot sends on its own (notifications, staff replies, broadcasts): queued in the
database first, then sent once each, most urgent first, at TWILIO_SENDS_PER_SECOND.

Exactly once: a text with a `key` ("called:123") is queued once whatever process or restart
asks again; the sender claims one text at a time, just before sending it, so no two
processes send it and a process that dies can only take the one text it was sending with it.
That text is marked lost, not sent again: its send may have gone out, and a second "your
turn" is worse than none (the late-answer path makes the same choice). Every text is a
message in its conversation, with its delivery status. Only the process holding the
notifier lease sends (bot.notify).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from aiolimiter import AsyncLimiter

from . import phones
from .settings import Settings
from .store import Store
from .store.outbox import OutboxTable, Queued
from .texter import Texter

log = logging.getLogger("checkin_bot.outbox")

LOST_AFTER = timedelta(minutes=2)  # a claim this old with no outcome: its process died


class Kind(StrEnum):
    """What a queued text is, by urgency: a lower priority number goes first."""

    CALLED = "called"  # your turn
    MISSED = "missed"
    STAFF = "staff"  # a staff member's reply
    ALMOST = "almost"
    BROADCAST = "broadcast"


PRIORITY = {Kind.CALLED: 0, Kind.MISSED: 1, Kind.STAFF: 1, Kind.ALMOST: 2, Kind.BROADCAST: 3}


@dataclass(frozen=True)
class Outgoing:
    """A text to queue."""

    phone: str
    body: str
    kind: Kind
    key: str | None = None  # once per key, ever
    thread_id: int | None = None
    reply_key: str | None = None
    language: str | None = None
    account: str | None = None  # the staff member who wrote it
    not_after: datetime | None = None  # too stale to send after this (a "your turn")


class Outbox:
    """The send queue: `enqueue` from anywhere, `send_due` in the notifier's process."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        texter: Texter,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.table = OutboxTable(store.engine, store.tx)
        self.texter = texter
        self.clock = clock
        self.limiter = AsyncLimiter(settings.twilio_sends_per_second, 1)
        base = settings.public_base_url
        self._status_url = f"{base}/sms/status" if base else None
        self.wake = asyncio.Event()  # set when this process queues something

    async def enqueue(self, items: Sequence[Outgoing]) -> list[int | None]:
        """Queue texts; an item whose key was queued before is not queued again (None)."""
        ids = await self.table.add(self.rows(items))
        self.wake.set()
        return ids

    def rows(self, items: Sequence[Outgoing]) -> list[dict[str, Any]]:
        """Texts as send-queue rows, for a caller that queues them in a transaction of its own
        (bot.store.outbox.add_in; then set `wake`)."""
        now = self.clock()
        return [
            {
                "key": item.key,
                "phone": item.phone,
                "thread_id": item.thread_id,
                "kind": item.kind.value,
                "priority": PRIORITY[item.kind],
                "body": item.body,
                "reply_key": item.reply_key,
                "language": item.language,
                "account": item.account,
                "created_at": now,
                "not_after": item.not_after,
            }
            for item in items
        ]

    async def send_due(self, owner: str) -> int:
        """Send what is queued, most urgent first, within the rate; how many went out."""
        sent = 0
        while True:
            claimed = await self.table.claim(owner, self.clock(), 1)
            if not claimed:
                return sent
            sent += await self._send(claimed[0])

    async def abandon_stuck(self) -> int:
        """Mark lost the texts whose sender died mid-send (see the module's docstring)."""
        lost = await self.table.abandon_stuck(self.clock() - LOST_AFTER)
        if lost:
            log.error("%d text(s) were being sent by a process that stopped: not resent", lost)
        return lost

    async def _send(self, queued: Queued) -> int:
        now = self.clock()
        if queued.not_after is not None and now > queued.not_after:
            log.warning(
                "a %s text to %s was %.0fs old when it could go out: not sent",
                queued.kind,
                phones.mask(queued.phone),
                (now - queued.created_at).total_seconds(),
            )
            await self.table.settle(queued.id, "stale", now, error="too old to send")
            return 0
        if await self.store.log.state_of(queued.phone) == "opted_out":
            await self.table.settle(queued.id, "skipped", now, error="opted out")
            return 0
        message_id = await self.store.log.record_sent(
            queued.phone,
            queued.thread_id,
            queued.body,
            queued.reply_key,
            queued.language,
            now,
            queued.account,
        )
        async with self.limiter:
            callback = f"{self._status_url}?m={message_id}" if self._status_url else None
            result = await self.texter.send(queued.phone, queued.body, callback)
        await self.store.log.record_status(message_id, result.sid, result.status, result.error_code)
        status = "sent" if result.sid else "unsent"
        await self.table.settle(queued.id, status, self.clock(), message_id, result.reason)
        log.log(
            logging.INFO if result.sid else logging.WARNING,
            "%s text to %s %s%s",
            queued.kind,
            phones.mask(queued.phone),
            status,
            f" ({result.reason})" if result.reason else "",
        )
        return 1 if result.sid else 0
