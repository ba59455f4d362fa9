"""Properties of the webhook over random input (hypothesis): random forms and raw bodies,
signed or not, never get a 5xx, and every message the webhook accepts is in the log."""

from __future__ import annotations

import asyncio
import contextlib

import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.store.tables import messages

from .conftest import Clock
from .helpers import PUBLIC, Bot, running_bot, sign

FIELDS = ["MessageSid", "From", "To", "Body", "NumMedia", "AccountSid", "MessagingServiceSid"]
# Text of every kind: NUL and other controls, RTL marks, emoji, astral planes, long runs.
chars = st.characters(codec="utf-8") | st.sampled_from("\x00\x1b\u202e\u200f\ufeff\u2028🙂&=%+")
texts = st.text(chars, max_size=300) | st.sampled_from(
    ["here", "HERE!", "yes", "STOP", "\x00", "\u202eereh", "🙂" * 200, "x" * 1600, ""]
)
senders = st.text(chars, min_size=1, max_size=40) | st.sampled_from(
    ["+61491570156", "0491 570 156", "whatsapp:+61491570157", "ACME", "12345", "+1"]
)
short = st.text(chars, max_size=64)
forms = st.fixed_dictionaries(
    {"MessageSid": st.text(min_size=1, max_size=40).map(lambda s: "SM" + s), "From": senders},
    optional={
        "Body": texts,
        "To": short,
        "NumMedia": short | st.integers(-5, 20).map(str),
        "AccountSid": short,
        "MessagingServiceSid": short,
    },
) | st.dictionaries(st.sampled_from(FIELDS) | texts, texts, max_size=8)


def _sync(db_url: str, clock: Clock) -> tuple[asyncio.Runner, Bot, contextlib.AsyncExitStack]:
    runner = asyncio.Runner()
    stack = contextlib.AsyncExitStack()
    bot = runner.run(stack.enter_async_context(running_bot(db_url, clock)))
    return runner, bot, stack


def test_random_forms_get_2xx_or_4xx_and_every_accepted_one_is_logged(
    db_url: str, clock: Clock
) -> None:
    runner, bot, stack = _sync(db_url, clock)

    async def stored(sid: str) -> bool:
        async with bot.store.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(messages)
                .where(messages.c.message_sid == sid.replace("\x00", "\ufffd"))
            )
        return bool(found)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(params=forms, signed=st.sampled_from([True, True, True, False]))
    def check(params: dict[str, str], signed: bool) -> None:
        response = runner.run(bot.post(params, signed=signed))
        event(f"HTTP {response.status_code}")
        assert response.status_code < 500, response.text
        if not signed:
            assert response.status_code == 403
        if response.status_code == 200:
            assert runner.run(stored(params["MessageSid"])), params

    try:
        check()
    finally:
        runner.run(stack.aclose())
        runner.close()


def test_random_raw_bodies_get_a_4xx_never_a_5xx(db_url: str, clock: Clock) -> None:
    runner, bot, stack = _sync(db_url, clock)

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        body=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode),
        content_type=st.sampled_from(
            ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", ""]
        ),
        signature=st.sampled_from(["", "garbage", "sign"]),
    )
    def check(body: bytes, content_type: str, signature: str) -> None:
        headers = {"Content-Type": content_type} if content_type else {}
        if signature == "sign":
            # A valid signature over whatever the body parses to: get past the 403.
            from urllib.parse import parse_qsl

            try:
                params = dict(parse_qsl(body.decode(), keep_blank_values=True))
            except (UnicodeDecodeError, ValueError):
                params = {}
            headers["X-Twilio-Signature"] = sign(f"{PUBLIC}/sms", params)
        elif signature:
            headers["X-Twilio-Signature"] = signature
        response = runner.run(bot.client.post("/sms", content=body, headers=headers))
        assert response.status_code < 500, response.text
        if response.status_code == 200:
            assert "<Response" in response.text

    try:
        check()
    finally:
        runner.run(stack.aclose())
        runner.close()
