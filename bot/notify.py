"""Keeping checked-in customers informed until they are served: "almost your turn", "your
turn, please go to Counter 3", "we called you and missed you".

One process does it for all (the holder of the `notifier` lease in the database, taken over
within LEASE_SECONDS when its process stops): every NOTIFY_POLL_SECONDS it reads the waiting
list of each unit with someone watched (`GET Tickets/Waiting/{unitId}`: a handful of calls,
whatever the crowd), and reads a case (`GET Cases/{id}`) only when it has left the waiting
list (called, served, closed). What to text is decided by `notices`, a pure function of the
watch and what VirtualQ said; texts go through the send queue (bot.outbox), once per case
and kind. When VirtualQ is down it backs off, says so once, and never floods it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from . import memory, phones
from .errors import UpstreamError, UpstreamRefused
from .outbox import Kind, Outbox, Outgoing
from .prompts import Catalogue
from .replies import ReplyKey as K
from .settings import Settings
from .store import Store
from .store.outbox import Leases
from .store.watches import Watch, Watches
from .virtualq import CaseDetail, VirtualQClient

log = logging.getLogger("checkin_bot.notify")

LEASE_SECONDS = 15.0  # a stopped notifier's work is taken over within this
STALE_CALL = timedelta(minutes=2)  # a "your turn" older than this when it could go out is not
MAX_BACKOFF_SECONDS = 300.0
READS_AT_ONCE = 8  # case reads in flight at a time in one poll
WATCHES_A_PAGE = 500  # watches read in full at a time in one poll (an IN list of case ids)
IN_SERVICE, COMPLETED, CANCELLED, NO_SHOW = 6, 8, 15, 17
RESOLUTION_NO_SHOW = 2


class Notice(StrEnum):
    ALMOST = "almost"
    CALLED = "called"
    MISSED = "missed"


@dataclass(frozen=True)
class Seen:
    """What VirtualQ says of a watched case now."""

    position: int | None = None  # 0-based, while it waits
    called: bool = False
    counter: str | None = None
    done: str | None = None  # served, missed, cancelled, gone: no longer watched


def seen_in_case(case: CaseDetail) -> Seen:
    """A case's state as notifications care about it."""
    if case.entity_status == NO_SHOW or case.resolution == RESOLUTION_NO_SHOW:
        return Seen(done="missed")
    if case.entity_status == IN_SERVICE:
        return Seen(called=True, counter=(case.location_name or "").strip() or None)
    if case.entity_status == COMPLETED:
        return Seen(done="served")
    if case.entity_status == CANCELLED:
        return Seen(done="cancelled")
    if not case.active:
        return Seen(done="gone")
    if case.position == 0 and case.location_name:  # at the front, with a counter: called
        return Seen(called=True, counter=case.location_name.strip())
    return Seen(position=case.position)


def notices(watch: Watch, seen: Seen, at_position: int) -> list[Notice]:
    """What to text now: "almost" once when the place in line (QueuePosition + 1) reaches
    `at_position`; "your turn" once when called; "missed" when closed as a no-show after (or
    without) a call. Nothing when served normally or cancelled."""
    out = []
    if seen.done == "missed":
        out.append(Notice.MISSED)
    elif seen.called and watch.called_at is None:
        out.append(Notice.CALLED)
    elif (
        seen.position is not None
        and at_position > 0
        and watch.almost_at is None
        and watch.called_at is None
        and seen.position + 1 <= at_position
    ):
        out.append(Notice.ALMOST)
    return out


class Notifier:
    """The notifier job (see the module's docstring) and the send queue's sender."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: VirtualQClient,
        outbox: Outbox,
        catalogue: Catalogue,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.client = client
        self.outbox = outbox
        self.catalogue = catalogue
        self.clock = clock
        self.watches = Watches(store.engine, store.tx)
        self.leases = Leases(store.engine, store.tx)
        self.owner = f"{uuid.uuid4().hex[:12]}"
        self.leader = False
        self.backoff = 0.0  # extra seconds between polls while VirtualQ is down
        self.trouble: str | None = None  # why the last poll failed, for /readyz
        self._next_poll = 0.0
        self._failed = False

    # --- the job ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll and send while this process holds the lease; try to take it otherwise."""
        loop = asyncio.get_running_loop()
        next_claim = 0.0
        while True:
            try:
                if loop.time() >= next_claim:
                    self.leader = await self.leases.hold(
                        "notifier", self.owner, LEASE_SECONDS, self.clock()
                    )
                    next_claim = loop.time() + (LEASE_SECONDS / 3 if self.leader else 5.0)
                if self.leader:
                    if loop.time() >= self._next_poll:
                        await self.outbox.abandon_stuck()
                        await self.poll()
                        await memory.give_back_soon()  # what the waiting lists took
                        self._next_poll = (
                            loop.time() + self.settings.notify_poll_seconds + self.backoff
                        )
                    await self.outbox.send_due(self.owner)
            except Exception as exc:  # the database, say: try again shortly
                log.warning("notifier: %s: %s", type(exc).__name__, exc)
            self.outbox.wake.clear()
            try:
                await asyncio.wait_for(self.outbox.wake.wait(), 0.5 if self.leader else 5.0)
            except TimeoutError:
                pass

    async def stop(self) -> None:
        if self.leader:
            await self.leases.release("notifier", self.owner)

    async def poll(self) -> int:
        """Read the queues of everyone watched and queue the texts due; how many. The texts
        are queued (once per key) before the watches record them, in one transaction each:
        a process that dies between the two leaves nothing to send twice.

        Only the watches with something to do are read in full, a page at a time: a case at
        or near the front (where "almost" is due), one that has left its waiting list or been
        called (its case is read). A crowd further back costs one narrow read of the watched
        case ids, not a read and a write of each (their stored place is the last one acted
        on): 50,000 watched took 1.4 s of CPU a poll when every watch was read."""
        self._failed = False
        units = await self.watches.open_units()
        if not units:
            return 0
        positions, failed = await self._waiting_lists(units)
        near = self.settings.notify_at_position  # a place before this one: "almost" is due
        wanted = sorted(
            case_id
            for case_id, called in (await self.watches.open_cases()).items()
            if called or case_id not in positions or positions[case_id] < near
        )
        queued = 0
        for start in range(0, len(wanted), WATCHES_A_PAGE):
            page = await self.watches.open(cases=wanted[start : start + WATCHES_A_PAGE])
            queued += await self._poll_page(page, positions, failed)
        self._recovered(failed)
        return queued

    async def _poll_page(
        self, page: list[Watch], positions: dict[int, int], failed: set[int]
    ) -> int:
        # VirtualQ is struggling with a unit: leave its cases alone this round.
        mine = [w for w in page if w.unit_id not in failed]
        gone = [w for w in mine if w.case_id not in positions or w.called_at is not None]
        reads = asyncio.Semaphore(READS_AT_ONCE)

        async def read(watch: Watch) -> Seen | None:
            async with reads:
                return await self._read_case(watch)

        read_now = dict(zip(gone, await asyncio.gather(*(read(w) for w in gone)), strict=True))
        texts: list[Outgoing] = []
        changes: list[tuple[int, dict[str, object]]] = []
        for watch in mine:
            seen = read_now[watch] if watch in read_now else Seen(position=positions[watch.case_id])
            if seen is None:
                continue
            due, changed = self._act(watch, seen)
            texts.extend(due)
            if changed:
                changes.append((watch.case_id, changed))
        queued = sum(1 for i in await self.outbox.enqueue(texts) if i is not None) if texts else 0
        await self.watches.update_many(changes)
        return queued

    async def _waiting_lists(self, units: list[int | None]) -> tuple[dict[int, int], set[int]]:
        """Each watched unit's waiting list: every waiting case's place in its service's line."""
        positions: dict[int, int] = {}
        failed: set[int] = set()
        for unit in sorted(u for u in units if u is not None):
            try:
                rows = await self.client.places(unit)
            except UpstreamError as exc:
                failed.add(unit)
                self._trouble(f"waiting list of unit {unit}: {exc.cause}")
                continue
            lines: dict[str, int] = {}
            for row in rows:  # oldest first: a case's place is the count before it in its line
                line = (row.service_name or "").casefold()
                positions[row.case_id] = lines.get(line, 0)
                lines[line] = lines.get(line, 0) + 1
        return positions, failed

    async def _read_case(self, watch: Watch) -> Seen | None:
        try:
            return seen_in_case(await self.client.get_case(watch.case_id))
        except UpstreamRefused as exc:
            if exc.status == 404:
                return Seen(done="gone")
            self._trouble(f"case {watch.case_id}: {exc.cause}")
        except UpstreamError as exc:
            self._trouble(f"case {watch.case_id}: {exc.cause}")
        return None

    def _act(self, watch: Watch, seen: Seen) -> tuple[list[Outgoing], dict[str, object]]:
        """The texts due for a watch, and what changes on it (nothing: no write)."""
        now = self.clock()
        due = notices(watch, seen, self.settings.notify_at_position)
        changes: dict[str, object] = {}
        if seen.position is not None and seen.position != watch.position:
            changes["position"] = seen.position
        if Notice.ALMOST in due:
            changes["almost_at"] = now
        if seen.called and watch.called_at is None:
            changes |= {"called_at": now, "counter": seen.counter}
        if seen.done is not None:
            changes |= {"done_at": now, "outcome": seen.done}
        if changes:
            changes["polled_at"] = now
        for notice in due:
            log.info("%s for ticket %s (%s)", notice, watch.ticket, phones.mask(watch.phone))
        return [self._text(watch, notice, seen) for notice in due], changes

    def _text(self, watch: Watch, notice: Notice, seen: Seen) -> Outgoing:
        prompts = self.catalogue.prompts(watch.language)
        name = (watch.name or "").split(" ")[0] if watch.shared else ""
        values: dict[str, object] = {"ticket": watch.ticket}
        if notice is Notice.ALMOST:
            key = K.NOTIFY_ALMOST_FOR if name else K.NOTIFY_ALMOST
            values["position"] = (seen.position or 0) + 1
        elif notice is Notice.CALLED:
            if seen.counter:
                key = K.NOTIFY_CALLED_FOR if name else K.NOTIFY_CALLED
                values["counter"] = seen.counter
            else:
                key = K.NOTIFY_CALLED_DESK_FOR if name else K.NOTIFY_CALLED_DESK
        else:
            key = (
                K.NOTIFY_MISSED_REQUEUE if self.settings.notify_missed_requeue else K.NOTIFY_MISSED
            )
        if name and key in (K.NOTIFY_ALMOST_FOR, K.NOTIFY_CALLED_FOR, K.NOTIFY_CALLED_DESK_FOR):
            values["name"] = name
        kind = {Notice.ALMOST: Kind.ALMOST, Notice.CALLED: Kind.CALLED, Notice.MISSED: Kind.MISSED}
        return Outgoing(
            phone=watch.phone,
            body=prompts.render(key, **values),
            kind=kind[notice],
            key=f"{notice.value}:{watch.case_id}",
            thread_id=watch.thread_id,
            reply_key=key.value,
            language=prompts.language,
            not_after=self.clock() + STALE_CALL if notice is Notice.CALLED else None,
        )

    # --- when VirtualQ struggles ------------------------------------------------------------

    def _trouble(self, why: str) -> None:
        self._failed = True
        if self.trouble is None:
            log.error("notifications: VirtualQ unavailable (%s); backing off", why)
        self.trouble = why
        self.backoff = min(
            max(self.backoff * 2, self.settings.notify_poll_seconds), MAX_BACKOFF_SECONDS
        )

    def _recovered(self, failed: set[int]) -> None:
        if not failed and not self._failed and self.trouble is not None:
            log.warning(
                "notifications: VirtualQ answers again; polling every %gs",
                self.settings.notify_poll_seconds,
            )
            self.trouble = None
            self.backoff = 0.0

    def health(self) -> tuple[bool, str]:
        """For /readyz: this process's view of the notifier."""
        if not self.leader:
            return True, "another process sends notifications (or none needed yet)"
        if self.trouble:
            return False, f"backing off: {self.trouble}"
        return True, f"polling every {self.settings.notify_poll_seconds:g}s"
