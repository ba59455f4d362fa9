"""Notifications after the ticket: "almost your turn", "your turn, Counter 3", "missed your
call", once each per case, through the send queue, in priority order and within the rate;
nothing after STOP, leaving, a normal finish or a staff cancellation; never a stale "your
turn". The pure rules first, then the notifier against the simulator and Twilio's stand-in
over loopback HTTP (tests/faulty.py), on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot import notify
from bot.notify import Notice, Notifier, Seen, notices, seen_in_case
from bot.outbox import Kind, Outbox, Outgoing
from bot.simulator import COMPLETED, NO_SHOW
from bot.staff import queries
from bot.store.tables import notifications, watches
from bot.store.watches import Watch
from bot.virtualq.models import CaseDetail

from .conftest import T0, Clock
from .helpers import ALEX, CASEY, JORDAN, PATELS, FaultyBot, faulty_bot, transcript

ALEX_CASE, JORDAN_CASE, SAM_CASE, MIA_CASE = 100001, 100002, 100005, 100006


# --- the rules (pure) -----------------------------------------------------------------------------


def _watch(**changes: object) -> Watch:
    base: dict[str, object] = dict(
        case_id=1,
        phone=ALEX,
        thread_id=None,
        personal_id="S1001",
        name="Alex Taylor",
        ticket="A003",
        unit_id=10,
        service_name="Enrolment advice",
        language="en",
        shared=False,
        created_at=T0,
        polled_at=None,
        position=5,
        almost_at=None,
        called_at=None,
        counter=None,
    )
    return Watch(**(base | changes))  # type: ignore[arg-type]


def _case(**fields: object) -> CaseDetail:
    return CaseDetail.model_validate(
        {"CaseId": 1, "Ticket": "A003", "CaseStatus": 0, "EntityStatus": 3} | fields
    )


@pytest.mark.parametrize(
    ("fields", "seen"),
    [
        ({"EntityStatus": 3, "QueuePosition": 4}, Seen(position=4)),
        ({"EntityStatus": 6, "LocationName": "Counter 3"}, Seen(called=True, counter="Counter 3")),
        ({"EntityStatus": 6, "LocationName": "  "}, Seen(called=True, counter=None)),
        ({"EntityStatus": 6}, Seen(called=True)),
        # At the front with a counter named: called, whatever the status says.
        (
            {"EntityStatus": 3, "QueuePosition": 0, "LocationName": "Desk 2"},
            Seen(called=True, counter="Desk 2"),
        ),
        ({"EntityStatus": 17, "CaseStatus": 1}, Seen(done="missed")),
        ({"EntityStatus": 8, "CaseStatus": 1, "Resolution": 2}, Seen(done="missed")),
        ({"EntityStatus": 8, "CaseStatus": 1, "Resolution": 0}, Seen(done="served")),
        ({"EntityStatus": 8, "CaseStatus": 1}, Seen(done="served")),
        ({"EntityStatus": 15, "CaseStatus": 1, "Resolution": 1}, Seen(done="cancelled")),
        ({"EntityStatus": 4, "CaseStatus": 1}, Seen(done="gone")),
    ],
)
def test_what_a_case_says_for_notifications(fields: dict[str, object], seen: Seen) -> None:
    assert seen_in_case(_case(**fields)) == seen


@pytest.mark.parametrize(
    ("watch", "seen", "at", "due"),
    [
        (_watch(), Seen(position=3), 3, []),  # place 4
        (_watch(), Seen(position=2), 3, [Notice.ALMOST]),  # place 3
        (_watch(), Seen(position=0), 3, [Notice.ALMOST]),
        (_watch(almost_at=T0), Seen(position=1), 3, []),  # once
        (_watch(), Seen(position=0), 0, []),  # 0 turns "almost" off
        (_watch(), Seen(called=True, counter="Counter 3"), 3, [Notice.CALLED]),
        (_watch(called_at=T0), Seen(called=True, counter="Counter 3"), 3, []),  # once
        (_watch(called_at=T0), Seen(position=0), 3, []),  # no "almost" after the call
        (_watch(), Seen(done="missed"), 3, [Notice.MISSED]),
        (_watch(called_at=T0), Seen(done="missed"), 3, [Notice.MISSED]),
        (_watch(called_at=T0), Seen(done="served"), 3, []),
        (_watch(), Seen(done="cancelled"), 3, []),
        (_watch(), Seen(done="gone"), 3, []),
    ],
)
def test_what_is_texted_when(watch: Watch, seen: Seen, at: int, due: list[Notice]) -> None:
    assert notices(watch, seen, at) == due


# --- the notifier, against the simulator and Twilio's stand-in ---------------------------------


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[FaultyBot]:
    async with faulty_bot(db_url, clock, notify_at_position="2") as b:
        yield b


def _notifier(bot: FaultyBot) -> Notifier:
    notifier: Notifier = bot.app.state.notifier
    notifier.leader = True
    return notifier


async def _round(bot: FaultyBot) -> int:
    """One poll and one sending, as the notifier's loop does them."""
    notifier = _notifier(bot)
    queued = await notifier.poll()
    await notifier.outbox.send_due(notifier.owner)
    return queued


def _texts(bot: FaultyBot, phone: str = ALEX) -> list[str]:
    return [t["Body"] for t in bot.upstream.texts.sent if t["To"] == phone]


async def _queue(bot: FaultyBot) -> list[dict[str, object]]:
    async with bot.store.engine.connect() as conn:
        rows = await conn.execute(sa.select(notifications).order_by(notifications.c.id))
        return [dict(r) for r in rows.mappings()]


async def _watch_row(bot: FaultyBot, case_id: int) -> dict[str, object]:
    async with bot.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(watches).where(watches.c.case_id == case_id))).one()
        return dict(row._mapping)


async def test_almost_then_your_turn_at_the_counter_then_nothing_once_served(
    bot: FaultyBot,
) -> None:
    assert "A003" in (await bot.text(ALEX, "here") or "")  # third in line: not yet "almost"
    assert await _round(bot) == 0
    bot.sim.call_next(1)  # second in line
    await _round(bot)
    assert _texts(bot) == [
        "Almost your turn! Ticket A003: you're number 2. Please make your way back to the "
        "waiting area."
    ]
    bot.sim.call_next(1)
    await _round(bot)
    await _round(bot)
    assert len(_texts(bot)) == 1  # "almost" once
    bot.sim.call(bot.sim.cases[ALEX_CASE], "Counter 3")
    await _round(bot)
    await _round(bot)
    assert _texts(bot)[1:] == ["It's your turn! Ticket A003: please go to Counter 3."]
    bot.clock.advance(4)
    bot.sim.set_status(bot.sim.cases[ALEX_CASE], COMPLETED)
    await _round(bot)
    assert len(_texts(bot)) == 2
    watch = await _watch_row(bot, ALEX_CASE)
    assert (watch["outcome"], watch["counter"]) == ("served", "Counter 3")
    assert watch["done_at"] - watch["called_at"] == timedelta(minutes=4)  # type: ignore[operator]
    # In the transcript, with Twilio's status; and nothing more is polled for the case.
    sent = [m for m in await transcript(bot.store, ALEX) if m["prompt"] == "notify_called"]
    assert [(m["direction"], m["status"]) for m in sent] == [("out", "queued")]
    assert sent[0]["message_sid"]
    assert await _notifier(bot).watches.open() == []
    # The dashboard counts them, and the time from "your turn" to served.
    zone = bot.settings.zone()
    today = queries.period(None, None, zone, queries.local_today(zone, bot.clock()))
    shown = await queries.dashboard(
        bot.store.engine, today, now=bot.clock(), confirm_timeout=timedelta(minutes=10)
    )
    counts = shown["notifications"]["by_kind"]
    assert counts["almost"] == counts["called"] == {"sent": 1, "not_sent": 0, "waiting": 0}
    assert shown["notifications"]["called_to_served"] == {"count": 1, "median": 240.0}


async def test_a_check_in_near_the_front_gets_no_almost_after_its_ticket(bot: FaultyBot) -> None:
    bot.sim.call_next(1)
    bot.sim.call_next(1)
    reply = await bot.text(ALEX, "here") or ""
    assert "A003" in reply
    for _ in range(3):
        await _round(bot)
    assert _texts(bot) == []  # the ticket's reply already said how near


async def test_your_turn_without_a_counter_says_the_front_desk(bot: FaultyBot) -> None:
    await bot.text(ALEX, "here")
    case = bot.sim.cases[ALEX_CASE]
    bot.sim.call(case, "")
    await _round(bot)
    assert _texts(bot)[-1] == "It's your turn! Ticket A003: please go to the front desk."


async def test_a_no_show_is_told_what_to_do_once(bot: FaultyBot) -> None:
    await bot.text(ALEX, "here")
    bot.sim.call(bot.sim.cases[ALEX_CASE], "Counter 1")
    await _round(bot)
    bot.sim.set_status(bot.sim.cases[ALEX_CASE], NO_SHOW)
    await _round(bot)
    await _round(bot)
    assert _texts(bot)[1:] == ["We called ticket A003 but couldn't find you. Please see reception."]


async def test_a_case_cancelled_by_staff_gets_nothing(bot: FaultyBot) -> None:
    await bot.text(ALEX, "here")
    bot.sim.set_status(bot.sim.cases[ALEX_CASE], 15)
    await _round(bot)
    assert _texts(bot) == []
    assert (await _watch_row(bot, ALEX_CASE))["outcome"] == "cancelled"


async def test_stop_between_check_in_and_call_stops_everything_at_once(bot: FaultyBot) -> None:
    await bot.text(ALEX, "here")
    bot.sim.call_next(1)
    notifier = _notifier(bot)
    await notifier.poll()  # "almost" is queued, not yet sent…
    assert [q["status"] for q in await _queue(bot)] == ["queued"]
    assert await bot.text(ALEX, "STOP") is None
    await notifier.outbox.send_due(notifier.owner)  # …and never goes out
    bot.sim.call(bot.sim.cases[ALEX_CASE], "Counter 2")
    await _round(bot)
    assert _texts(bot) == []
    assert [q["status"] for q in await _queue(bot)] == ["skipped"]
    assert (await _watch_row(bot, ALEX_CASE))["outcome"] == "opted_out"


async def test_leaving_the_queue_cancels_once_and_stops_the_texts(bot: FaultyBot) -> None:
    await bot.text(ALEX, "here")
    assert "Reply YES" in (await bot.text(ALEX, "i can't make it, take me off the list") or "")
    assert "left the queue" in (await bot.text(ALEX, "yes") or "")
    await bot.text(ALEX, "yes")  # a second YES cancels nothing more
    case = bot.sim.cases[ALEX_CASE]
    assert case.status == 15 and case.notes and "text" in case.notes[0]
    await _round(bot)
    assert _texts(bot) == []
    assert (await _watch_row(bot, ALEX_CASE))["outcome"] == "left"


async def test_a_family_is_named_in_each_notification(bot: FaultyBot) -> None:
    reply = await bot.text(PATELS, "here, both of us") or ""
    assert "Sam" in reply and "Mia" in reply
    bot.sim.call(bot.sim.cases[SAM_CASE], "Counter 2")
    bot.sim.call(bot.sim.cases[MIA_CASE], "Counter 3")
    await _round(bot)
    assert sorted(_texts(bot, PATELS)) == [
        "It's Mia's turn! Ticket C002: please go to Counter 3.",
        "It's Sam's turn! Ticket B004: please go to Counter 2.",
    ]


async def test_a_your_turn_too_old_to_send_is_not_sent(bot: FaultyBot) -> None:
    await bot.text(ALEX, "here")
    notifier = _notifier(bot)
    bot.sim.call(bot.sim.cases[ALEX_CASE], "Counter 3")
    await notifier.poll()
    bot.clock.advance(3)  # the sender was held up (a burst, a restart)
    await notifier.outbox.send_due(notifier.owner)
    assert _texts(bot) == []
    assert [(q["kind"], q["status"]) for q in await _queue(bot)] == [("called", "stale")]


async def test_the_most_urgent_text_goes_first(bot: FaultyBot) -> None:
    outbox: Outbox = bot.app.state.outbox
    await outbox.enqueue(
        [
            Outgoing(JORDAN, "everyone: the centre closes at five", Kind.BROADCAST),
            Outgoing(CASEY, "almost", Kind.ALMOST),
            Outgoing(ALEX, "your turn", Kind.CALLED, key="called:x"),
            Outgoing(ALEX, "your turn again", Kind.CALLED, key="called:x"),  # the same key
        ]
    )
    await outbox.send_due("me")
    assert [t["Body"] for t in bot.upstream.texts.sent] == [
        "your turn",
        "almost",
        "everyone: the centre closes at five",
    ]


async def test_a_restart_mid_poll_neither_skips_nor_repeats_your_turn(
    bot: FaultyBot, clock: Clock
) -> None:
    """Process A queues "your turn" and dies before recording the call on the watch; B takes
    the lease over and polls the same case: the key keeps it to one text."""
    await bot.text(ALEX, "here")
    a = _notifier(bot)
    assert await a.leases.hold("notifier", a.owner, 15, clock())
    bot.sim.call(bot.sim.cases[ALEX_CASE], "Counter 3")
    watch = next(w for w in await a.watches.open() if w.case_id == ALEX_CASE)
    await a.outbox.enqueue([a._text(watch, Notice.CALLED, Seen(called=True, counter="Counter 3"))])
    # A is gone without a word. B, another process on the same database:
    outbox = Outbox(a.settings, bot.store, a.outbox.texter, clock)
    b = Notifier(a.settings, bot.store, a.client, outbox, a.catalogue, clock)
    assert not await b.leases.hold("notifier", b.owner, 15, clock())  # A's lease still runs
    clock.advance(0.5)
    assert await b.leases.hold("notifier", b.owner, 15, clock())  # taken over
    assert await b.poll() == 0  # the call was queued already
    await b.outbox.send_due(b.owner)
    await b.poll()
    await b.outbox.send_due(b.owner)
    assert _texts(bot) == ["It's your turn! Ticket A003: please go to Counter 3."]


async def test_a_text_whose_sender_died_mid_send_is_marked_lost_not_resent(
    bot: FaultyBot, clock: Clock
) -> None:
    outbox: Outbox = bot.app.state.outbox
    await outbox.enqueue([Outgoing(ALEX, "your turn", Kind.CALLED, key="called:1")])
    assert len(await outbox.table.claim("dead-process", clock(), 1)) == 1
    assert await outbox.send_due("live-process") == 0
    clock.advance(3)
    assert await outbox.abandon_stuck() == 1
    assert await outbox.send_due("live-process") == 0
    assert [q["status"] for q in await _queue(bot)] == ["lost"]
    assert bot.upstream.texts.sent == []


async def test_when_virtualq_is_down_the_notifier_backs_off_and_says_so_once(
    bot: FaultyBot, caplog: pytest.LogCaptureFixture
) -> None:
    await bot.text(ALEX, "here")
    notifier = _notifier(bot)
    bot.upstream.down = True
    with caplog.at_level("WARNING", logger="checkin_bot.notify"):
        for _ in range(3):
            await notifier.poll()
        assert notifier.health()[0] is False
        assert "backing off" in notifier.health()[1]
        first_backoff = notifier.backoff
        await notifier.poll()
        assert notifier.backoff >= first_backoff
        bot.upstream.down = False
        await notifier.poll()
    said = [r.getMessage() for r in caplog.records if r.name == "checkin_bot.notify"]
    assert len([s for s in said if "unavailable" in s]) == 1
    assert len([s for s in said if "answers again" in s]) == 1
    assert notifier.health() == (True, "polling every 20s")


def _counting_reads(bot: FaultyBot, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The case ids of each page of watches the notifier reads in full, from now on."""
    pages: list[list[int]] = []
    watches_of = _notifier(bot).watches
    read_page = watches_of.open

    async def counted(
        after: int | None = None, limit: int | None = None, cases: Collection[int] | None = None
    ) -> list[Watch]:
        page = await read_page(after, limit, cases)
        pages.append([w.case_id for w in page])
        return page

    monkeypatch.setattr(watches_of, "open", counted)
    return pages


async def test_a_poll_reads_the_watches_a_page_at_a_time_and_misses_nobody(
    bot: FaultyBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "WATCHES_A_PAGE", 1)
    pages = _counting_reads(bot, monkeypatch)
    assert "Ticket" in (await bot.text(ALEX, "here") or "")
    assert "early" in (await bot.text(JORDAN, "here") or "")
    assert "Ticket" in (await bot.text(JORDAN, "yes") or "")
    for case in (ALEX_CASE, JORDAN_CASE):
        bot.sim.call(bot.sim.cases[case], "Counter 3")
    assert await _round(bot) == 2
    assert pages == [[ALEX_CASE], [JORDAN_CASE]]
    for phone in (ALEX, JORDAN):
        assert _texts(bot, phone)[-1].startswith("It's your turn!")


async def test_a_poll_reads_in_full_only_the_watches_with_something_to_do(
    bot: FaultyBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Texted "almost" at place 2 (this bot's setting): a case further back is not read in
    full (nor written) until it comes near, is called or leaves the waiting list."""
    pages = _counting_reads(bot, monkeypatch)
    assert "A003" in (await bot.text(ALEX, "here") or "")  # third in line
    assert "early" in (await bot.text(JORDAN, "here") or "")
    assert "Ticket" in (await bot.text(JORDAN, "yes") or "")  # further back
    await _round(bot)
    assert pages == []  # nobody near the front, called or gone
    bot.sim.call_next(1)  # Alex second: "almost"
    await _round(bot)
    assert pages == [[ALEX_CASE]] and len(_texts(bot)) == 1
    bot.sim.set_status(bot.sim.cases[JORDAN_CASE], COMPLETED)  # Jordan's case closed, unseen
    await _round(bot)
    assert pages[1:] == [[ALEX_CASE, JORDAN_CASE]]
    assert (await _watch_row(bot, JORDAN_CASE))["done_at"] is not None
    await _round(bot)
    assert pages[2:] == [[ALEX_CASE]]  # still at the front; Jordan's watch is closed
