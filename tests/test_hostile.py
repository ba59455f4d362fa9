"""Odd and hostile texts: each gets a sensible answer (or none) and is in the log, as sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot import phones

from .conftest import Clock
from .helpers import ALEX, Bot, form, reply_text, running_bot, transcript


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[Bot]:
    async with running_bot(db_url, clock) as b:
        yield b


@pytest.mark.parametrize(
    ("body", "stored"),
    [
        ("here\u0000", "here\ufffd"),  # PostgreSQL's text cannot hold NUL: kept visible
        ("\u0000\u0000", "\ufffd\ufffd"),
        ("مرحبا \u202e here", "مرحبا \u202e here"),
        ("x" * 1600, "x" * 1600),
        ("🙂" * 400, "🙂" * 400),
    ],
    ids=["nul", "only nul", "rtl", "1600 chars", "emoji"],
)
async def test_odd_bodies_are_logged_as_sent_and_answered(bot: Bot, body: str, stored: str) -> None:
    response = await bot.post(form(ALEX, body))
    assert response.status_code == 200 and reply_text(response.text)
    [inbound] = [m for m in await transcript(bot.store, ALEX) if m["direction"] == "in"]
    assert inbound["body"] == stored
    assert inbound["handled_at"] is not None


@pytest.mark.parametrize(
    "sender",
    ["ACME", "TWILIO-123", "12345", "+1 555 0100 ext 5", "\u0000+61"],
    ids=["alphanumeric", "dashed id", "short code", "not a number", "nul"],
)
async def test_senders_that_are_not_phone_numbers_still_get_a_conversation(
    bot: Bot, sender: str
) -> None:
    response = await bot.post(form(sender, "HERE"))
    assert response.status_code == 200
    assert "recognise" in (reply_text(response.text) or "")
    key = phones.sender_key(sender.replace("\x00", "\ufffd"), "AU")
    assert [m["direction"] for m in await transcript(bot.store, key)] == ["in", "out"]


async def test_a_channel_prefixed_number_is_the_number(bot: Bot) -> None:
    # e.g. Twilio's WhatsApp senders: the number inside is the customer's.
    response = await bot.post(form("whatsapp:" + ALEX, "HERE"))
    assert "Ticket A003" in (reply_text(response.text) or "")


async def test_an_mms_without_text_is_logged_with_its_media_count(bot: Bot) -> None:
    response = await bot.post(form(ALEX, "", NumMedia="2"))
    assert response.status_code == 200 and reply_text(response.text)
    [inbound] = [m for m in await transcript(bot.store, ALEX) if m["direction"] == "in"]
    assert (inbound["body"], inbound["num_media"]) == ("", 2)
