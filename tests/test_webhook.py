from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from bot.webhook import twiml

from .conftest import Clock
from .helpers import (
    ALEX,
    JORDAN,
    PUBLIC,
    TOKEN,
    Bot,
    form,
    mock_upstream_bot,
    reply_text,
    running_bot,
    sign,
    transcript,
)

SHARED_KEY = "shared-key-secret-for-webhook-settings"


@pytest.fixture
async def bot(db_url: str, clock: Clock) -> AsyncIterator[Bot]:
    async with running_bot(db_url, clock, twilio_webhook_shared_keys=f"old-key,{SHARED_KEY}") as b:
        yield b


async def test_a_signed_here_gets_the_ticket_as_twiml(bot: Bot) -> None:
    response = await bot.post(form(ALEX, "HERE"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message ')
    assert "Ticket A003" in (reply_text(response.text) or "")
    # The reply names its stored id so its delivery status can be recorded against it.
    message = ET.fromstring(response.text).find("Message")
    assert message is not None
    reply = [m for m in await transcript(bot.store, ALEX) if m["direction"] == "out"][0]
    assert message.get("action") == f"{PUBLIC}/sms/status?m={reply['id']}"
    assert message.get("method") == "POST"


async def test_a_forged_signature_is_refused_and_nothing_is_checked_in(bot: Bot) -> None:
    params = form(ALEX, "HERE")
    forged = sign(f"{PUBLIC}/sms", params, token="not-the-token")
    response = await bot.post(params, signed=False, headers={"X-Twilio-Signature": forged})
    assert response.status_code == 403
    assert bot.sim.checkins == 0


async def test_a_missing_signature_is_refused(bot: Bot) -> None:
    assert (await bot.post(form(ALEX, "HERE"), signed=False)).status_code == 403


async def test_a_signature_over_other_params_is_refused(bot: Bot) -> None:
    params = form(ALEX, "HERE")
    signature = sign(f"{PUBLIC}/sms", params)
    params["Body"] = "HERE please"
    response = await bot.post(params, signed=False, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403


async def test_signatures_are_checked_against_public_base_url_not_the_proxied_url(bot: Bot) -> None:
    # The app is reached as http://internal:8000 behind the proxy; Twilio signed the https URL.
    params = form(ALEX, "HERE")
    internal = sign("http://internal:8000/sms", params)
    assert (
        await bot.post(params, signed=False, headers={"X-Twilio-Signature": internal})
    ).status_code == 403
    assert (await bot.post(params)).status_code == 200


async def test_the_query_string_is_part_of_the_signed_url(bot: Bot) -> None:
    params = form(ALEX, "HERE")
    signature = sign(f"{PUBLIC}/sms?site=north", params)
    response = await bot.client.post(
        "/sms?site=north",
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert response.status_code == 200


async def test_a_signature_over_the_url_with_its_default_port_is_accepted(bot: Bot) -> None:
    # Twilio may sign https://host:443/sms for https://host/sms: the twilio library's
    # validate accepts either form, and so does the bot's first try with the URL as it is.
    assert PUBLIC.startswith("https://") and PUBLIC.count(":") == 1
    host = PUBLIC.removeprefix("https://")
    for url, status in (
        (f"https://{host}:443/sms", 200),
        (f"https://{host}/sms", 200),
        (f"https://{host}:8443/sms", 403),
        (f"http://{host}/sms", 403),
    ):
        params = form(ALEX, "HERE")  # a new MessageSid each time
        headers = {"X-Twilio-Signature": sign(url, params)}
        response = await bot.post(params, signed=False, headers=headers)
        assert response.status_code == status, url


def _shared_key_signature(url: str, params: dict[str, str], key: str) -> str:
    payload = url + "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def test_shared_key_signatures_are_accepted(bot: Bot) -> None:
    params = form(ALEX, "HERE")
    headers = {
        "X-Twilio-Signature": _shared_key_signature(f"{PUBLIC}/sms", params, SHARED_KEY),
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_01,algorithm=HMAC_SHA256",
    }
    assert (await bot.post(params, signed=False, headers=headers)).status_code == 200


async def test_a_shared_key_signature_with_the_wrong_key_is_refused(bot: Bot) -> None:
    params = form(ALEX, "HERE")
    headers = {
        "X-Twilio-Signature": _shared_key_signature(f"{PUBLIC}/sms", params, "wrong"),
        "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sharedkey_01,algorithm=HMAC_SHA256",
    }
    assert (await bot.post(params, signed=False, headers=headers)).status_code == 403
    # and an auth-token signature does not pass as a shared-key one
    headers["X-Twilio-Signature"] = sign(f"{PUBLIC}/sms", params, TOKEN)
    assert (await bot.post(params, signed=False, headers=headers)).status_code == 403


@pytest.mark.parametrize("sender", ["   ", "\u200b", "--", "\t"])
async def test_a_sender_of_blanks_alone_is_a_400(bot: Bot, sender: str) -> None:
    response = await bot.post(form(sender, "HERE"))
    assert response.status_code == 400 and "From" in response.text


@pytest.mark.parametrize("missing", ["From", "MessageSid"])
async def test_a_form_without_from_or_message_sid_is_a_400(bot: Bot, missing: str) -> None:
    params = form(ALEX, "HERE")
    del params[missing]
    response = await bot.post(params)
    assert response.status_code == 400 and missing in response.text


async def test_a_message_sid_seen_before_from_another_phone_is_a_400(bot: Bot) -> None:
    """Twilio never sends one MessageSid from two phones: a replay or a forgery, refused;
    the first phone's reply (which may name its family) is not given to the second."""
    first = await bot.post(form(ALEX, "HERE", sid="SM" + "7" * 32))
    assert "Ticket" in (reply_text(first.text) or "")
    again = await bot.post(form(JORDAN, "HERE", sid="SM" + "7" * 32))
    assert again.status_code == 400 and "Ticket" not in again.text
    assert await transcript(bot.store, JORDAN) == []
    redelivered = await bot.post(form(ALEX, "HERE", sid="SM" + "7" * 32))  # Twilio's retry
    assert redelivered.text == first.text


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00garbage", b"%%%", b"a=1&" * 300, b""],
    ids=["not utf-8", "bad escapes", "too many fields", "empty"],
)
async def test_garbage_bodies_are_a_4xx_never_a_500(bot: Bot, content: bytes) -> None:
    response = await bot.client.post(
        "/sms",
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert response.status_code in (400, 403)


async def test_an_oversized_body_is_413(bot: Bot) -> None:
    response = await bot.client.post(
        "/sms",
        content=b"Body=" + b"a" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    ["", "x" * 1600, "مرحبا \u202e here", "here\u0000", "🙂" * 400, "<script>alert(1)</script>"],
    ids=["empty mms", "1600 chars", "rtl", "nul", "emoji", "markup"],
)
async def test_any_body_gets_an_answer(bot: Bot, body: str) -> None:
    params = form(ALEX, body, NumMedia="1" if not body else "0")
    response = await bot.post(params)
    assert response.status_code == 200
    assert reply_text(response.text)


async def test_a_non_numeric_num_media_is_tolerated(bot: Bot) -> None:
    assert (await bot.post(form(ALEX, "help", NumMedia="lots"))).status_code == 200


async def test_opt_out_words_get_an_empty_response(bot: Bot) -> None:
    response = await bot.post(form(ALEX, "STOP"))
    assert response.status_code == 200
    assert response.text == '<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert (await bot.text(ALEX, "HERE")) is None
    assert bot.sim.checkins == 0
    assert "again" in ((await bot.text(ALEX, "START")) or "")


async def test_unknown_extra_fields_are_ignored(bot: Bot) -> None:
    assert (
        await bot.post(
            form(
                ALEX,
                "help",
                FromCity="MELBOURNE",
                SmsStatus="received",
                ApiVersion="2010-04-01",
                Whatever="1",
            )
        )
    ).status_code == 200


async def test_healthz(bot: Bot) -> None:
    assert (await bot.client.get("/healthz")).json() == {"status": "ok"}


async def test_signature_checks_can_be_turned_off_for_local_use(db_url: str, clock: Clock) -> None:
    async with running_bot(db_url, clock, twilio_validate_signature=False) as local:
        assert (await local.post(form(ALEX, "HERE"), signed=False)).status_code == 200


async def test_the_fallback_url_answers_the_apology_without_database_or_upstream(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("everything is down")

    monkeypatch.setattr(bot.store.log, "record_inbound", down)
    monkeypatch.setattr(bot.store.turns, "take", down)
    params = form(ALEX, "HERE", ErrorCode="11200", ErrorUrl=f"{PUBLIC}/sms")
    signature = sign(f"{PUBLIC}/sms/fallback", params)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await bot.client.post(
        "/sms/fallback",
        content=urlencode(params),
        headers={**headers, "X-Twilio-Signature": signature},
    )
    assert answer.status_code == 200
    assert reply_text(answer.text) == bot.service.prompts.render("upstream_unavailable")
    forged = await bot.client.post("/sms/fallback", content=urlencode(params), headers=headers)
    assert forged.status_code == 403
    assert bot.sim.checkin_requests == 0
    assert await transcript(bot.store, ALEX) == []


async def test_the_fallback_url_stores_the_text_it_answers_unless_sms_had(bot: Bot) -> None:
    """Twilio calls the Fallback URL when /sms failed or took over 15 s: the text goes in the
    log, answered with the apology; a text /sms had stored is left to /sms's handler."""
    lost = form(ALEX, "HERE I AM", ErrorCode="11200")
    answer = await bot.post_signed(f"{PUBLIC}/sms/fallback", lost)
    assert reply_text(answer.text) == bot.service.prompts.render("upstream_unavailable")
    log = await transcript(bot.store, ALEX)
    assert [(m["direction"], m["body"], m["intent"]) for m in log] == [
        ("in", "HERE I AM", "fallback"),
        ("out", bot.service.prompts.render("upstream_unavailable"), None),
    ]
    assert bot.sim.checkin_requests == 0  # an apology, not a check-in
    stored = form(JORDAN, "here")
    await bot.text(JORDAN, "here", sid=stored["MessageSid"])
    before = await transcript(bot.store, JORDAN)
    await bot.post_signed(f"{PUBLIC}/sms/fallback", stored)
    assert await transcript(bot.store, JORDAN) == before


async def test_a_text_that_could_not_be_stored_is_a_503_for_twilio_to_fall_back(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def saturated(*args: object, **kwargs: object) -> None:
        raise TimeoutError("QueuePool limit of size 5 overflow 5 reached")

    monkeypatch.setattr(bot.store.log, "record_inbound", saturated)
    answer = await bot.post(form(ALEX, "HERE"))
    assert answer.status_code == 503


@pytest.mark.parametrize(
    "url", ["sqlite:////nonexistent/dir/bot.db", "postgresql://nobody@127.0.0.1:1/none"]
)
async def test_the_app_starts_and_answers_while_the_database_is_unreachable(
    url: str, clock: Clock
) -> None:
    async with mock_upstream_bot(url, clock, lambda r: httpx.Response(500)) as (client, app):
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False
        # The text could not be stored: a 503, so that Twilio calls the Fallback URL (which
        # answers the apology from memory) rather than a 200 that lost the text.
        sms = await client.post("/sms", data=form(ALEX, "HERE"))
        assert sms.status_code == 503
        fallback = await client.post("/sms/fallback", data=form(ALEX, "HERE"))
        assert fallback.status_code == 200
        assert reply_text(fallback.text) == app.state.service.prompts.render("upstream_unavailable")


# XML 1.0's characters (what an SMS reply can carry): no C0 controls other than tab/LF/CR.
_XML_TEXT = st.text(
    st.characters(
        blacklist_categories=["Cs"],
        blacklist_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)],
    )
)


@given(
    text=_XML_TEXT,
    url=st.none()
    | st.from_regex(
        r"https://[a-z.]{1,20}/sms/status\?m=[0-9]{1,10}[&\"<>a-z=]{0,6}", fullmatch=True
    ),
)
def test_replies_are_written_as_the_twilio_library_writes_twiml(text: str, url: str | None) -> None:
    expected = MessagingResponse()
    if text and url:
        expected.message(text, action=url, method="POST")
    elif text:
        expected.message(text)
    assert twiml(text, url).body.decode() == str(expected)
