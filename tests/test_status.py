"""POST /sms/status: Twilio's delivery status callbacks, signed like /sms, recorded on the reply
they name, never moved backwards by a late callback."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from .conftest import Clock
from .helpers import ALEX, PUBLIC, Bot, form, running_bot, sign, transcript


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[Bot]:
    async with running_bot(db_url, clock) as b:
        yield b


async def _reply_status_url(bot: Bot, body: str = "HERE") -> str:
    response = await bot.post(form(ALEX, body))
    message = ET.fromstring(response.text).find("Message")
    assert message is not None
    return message.get("action") or ""


async def _callback(
    bot: Bot, url: str, status: str, sid: str = "SM" + "a" * 32, signed: bool = True, **extra: str
) -> httpx.Response:
    params = {
        "MessageSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "To": ALEX,
        "From": "+61400000000",
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = sign(url, params)
    path = url.removeprefix(PUBLIC)
    return await bot.client.post(path, content=urlencode(params), headers=headers)


async def _reply(bot: Bot) -> dict[str, Any]:
    return [m for m in await transcript(bot.store, ALEX) if m["direction"] == "out"][-1]


async def test_each_status_is_recorded_on_the_reply(bot: Bot) -> None:
    url = await _reply_status_url(bot)
    assert (await _reply(bot))["status"] == "replied"
    for status in ("queued", "sent", "delivered"):
        assert (await _callback(bot, url, status)).status_code == 204
        reply = await _reply(bot)
        assert (reply["status"], reply["message_sid"]) == (status, "SM" + "a" * 32)


async def test_a_failure_keeps_its_error_code(bot: Bot) -> None:
    url = await _reply_status_url(bot)
    await _callback(bot, url, "sent")
    await _callback(bot, url, "undelivered", ErrorCode="30006")
    reply = await _reply(bot)
    assert (reply["status"], reply["error_code"]) == ("undelivered", "30006")


async def test_a_late_callback_does_not_move_the_status_back(bot: Bot) -> None:
    url = await _reply_status_url(bot)
    await _callback(bot, url, "delivered")
    assert (await _callback(bot, url, "sent")).status_code == 204
    assert (await _reply(bot))["status"] == "delivered"


async def test_a_second_copy_of_the_reply_does_not_take_it_over(bot: Bot) -> None:
    # A duplicate webhook delivery answers with the same reply (and the same ?m=) again.
    url = await _reply_status_url(bot)
    await _callback(bot, url, "delivered", sid="SM" + "1" * 32)
    await _callback(bot, url, "failed", sid="SM" + "2" * 32, ErrorCode="30008")
    reply = await _reply(bot)
    assert (reply["message_sid"], reply["status"]) == ("SM" + "1" * 32, "delivered")


async def test_unsigned_or_forged_callbacks_are_refused(bot: Bot) -> None:
    url = await _reply_status_url(bot)
    assert (await _callback(bot, url, "failed", signed=False)).status_code == 403
    other = url.replace("m=", "m=9")  # signed for another reply id than the one asked
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "failed"}
    assert (await bot.post_signed(other, params, signed_for=url)).status_code == 403
    assert (await _reply(bot))["status"] == "replied"


@pytest.mark.parametrize(
    ("query", "params", "status"),
    [
        ("?m=1", {"MessageStatus": "sent"}, 400),  # no MessageSid
        ("?m=1", {"MessageSid": "SM1"}, 400),  # no status
        ("?m=abc", {"MessageSid": "SM1", "MessageStatus": "sent"}, 400),
        ("?m=99999", {"MessageSid": "SM1", "MessageStatus": "sent"}, 204),  # no such reply
        ("", {"MessageSid": "SMunknown", "MessageStatus": "sent"}, 204),
    ],
)
async def test_odd_callbacks_get_a_clear_answer(
    bot: Bot, query: str, params: dict[str, str], status: int
) -> None:
    response = await bot.post_signed(f"{PUBLIC}/sms/status{query}", params)
    assert response.status_code == status


async def test_a_text_sent_outside_a_reply_is_found_by_its_sid(bot: Bot) -> None:
    url = await _reply_status_url(bot)
    await _callback(bot, url, "sent")
    # Later callbacks for a known MessageSid need no ?m= (texts sent through the REST API).
    assert (await _callback(bot, f"{PUBLIC}/sms/status", "delivered")).status_code == 204
    assert (await _reply(bot))["status"] == "delivered"


async def test_a_callback_with_another_messages_sid_changes_nothing_and_is_not_an_error(
    bot: Bot,
) -> None:
    """An inbound text's MessageSid is unique in the log: a callback that names a reply with
    it cannot be Twilio's (a forgery, a replay) and must not turn into a 503 Twilio retries."""
    inbound = form(ALEX, "status", sid="SM" + "b" * 32)
    await bot.post(inbound)
    url = await _reply_status_url(bot)
    answer = await _callback(bot, url, "delivered", sid=inbound["MessageSid"])
    assert answer.status_code == 204
    replies = [m for m in await transcript(bot.store, ALEX) if m["direction"] == "out"]
    assert all(m["message_sid"] != inbound["MessageSid"] for m in replies)
