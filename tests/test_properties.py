"""Properties of the app over random input (hypothesis): random forms and raw bodies, signed or
not, never get a 5xx on any Twilio route, every message the webhook accepts is in the log,
and the staff pages answer any parameter with a page or a short 4xx, security headers on."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

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
# Numbers from the whole integer range, and as text: what broke the log's 32-bit columns.
numbers = (
    st.integers(-(2**70), 2**70).map(str)
    | st.sampled_from(["2147483648", "99999999999999999999", "-1", "1e9", "0x10", " 7 ", "٣"])
    | short
)
forms = st.fixed_dictionaries(
    {
        "MessageSid": st.text(chars, min_size=1, max_size=40).map(lambda s: "SM" + s),
        "From": senders,
    },
    optional={
        "Body": texts,
        "To": short,
        "NumMedia": numbers,
        "AccountSid": short,
        "MessagingServiceSid": short,
    },
) | st.dictionaries(st.sampled_from(FIELDS) | texts, texts | numbers, max_size=8)
statuses = st.sampled_from(["delivered", "failed", "sent", "queued", "DELIVERED"]) | short
callbacks = st.fixed_dictionaries(
    {"MessageSid": short, "MessageStatus": statuses},
    optional={"ErrorCode": numbers, "SmsStatus": statuses, "To": senders, "From": senders},
)


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


def test_random_status_callbacks_and_fallbacks_never_get_a_5xx(db_url: str, clock: Clock) -> None:
    """Any `?m=` and NUL anywhere, signed: the callback is recorded or ignored, never a 5xx
    (Twilio retries and logs those); the Fallback URL always answers its apology."""
    runner, bot, stack = _sync(db_url, clock)
    runner.run(bot.text("+61491570156", "here"))

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(params=callbacks, m=numbers | st.just(""), route=st.sampled_from(["status", "fb"]))
    def check(params: dict[str, str], m: str, route: str) -> None:
        if route == "fb":
            url = f"{PUBLIC}/sms/fallback"
        else:
            url = f"{PUBLIC}/sms/status" + (f"?m={quote(m)}" if m else "")
        response = runner.run(bot.post_signed(url, params))
        event(f"{route} HTTP {response.status_code}")
        assert response.status_code < 500, (url, params, response.text)
        if route == "fb":
            assert response.status_code == 200 and "<Message>" in response.text

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


# --- the staff pages -----------------------------------------------------------------------------

days = st.dates().map(str) | st.sampled_from(
    ["9999-12-31", "0001-01-01", "2026-02-30", "2026-13-01", "", "today", "2026-11-24T00:00"]
)
STAFF_GETS = [
    "/staff/dashboard",
    "/staff/dashboard.json",
    "/staff/conversations",
    "/staff/conversations.json",
    "/staff/unread",
    "/staff/unread.json",
    "/staff/messages.csv",
]


def test_staff_pages_answer_any_parameter_with_a_page_or_a_short_4xx(
    db_url: str, clock: Clock
) -> None:
    """Dates at the calendar's edges, ids from the whole integer range, NUL in a search:
    a page or a 4xx, never a 5xx, and every answer carries the security headers."""
    from .test_staff import PASSWORD, SECRET, USER

    runner = asyncio.Runner()
    stack = contextlib.AsyncExitStack()
    bot = runner.run(
        stack.enter_async_context(
            running_bot(
                db_url, clock, staff_username=USER, staff_password=PASSWORD, secret_key=SECRET
            )
        )
    )
    runner.run(bot.text("+61491570156", "here"))
    auth = (USER, PASSWORD)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        path=st.sampled_from(STAFF_GETS)
        | numbers.map(lambda n: f"/staff/conversations/{quote(n.strip(), safe='')}")
        | numbers.map(lambda n: f"/staff/conversations/{quote(n.strip(), safe='')}.json"),
        params=st.fixed_dictionaries(
            {},
            optional={
                "from": days,
                "to": days,
                "before": numbers,
                "q": texts,
                "outcome": short | st.sampled_from(["checked_in", "asked", "nope"]),
            },
        ),
        signed_in=st.booleans(),
    )
    def check(path: str, params: dict[str, str], signed_in: bool) -> None:
        response = runner.run(bot.client.get(path, params=params, auth=auth if signed_in else None))
        event(f"HTTP {response.status_code}")
        assert response.status_code < 500, (path, params, response.text[:200])
        if path.startswith("/staff"):
            for header in ("content-security-policy", "x-frame-options", "cache-control"):
                assert header in response.headers, (path, response.status_code)

    try:
        check()
    finally:
        runner.run(stack.aclose())
        runner.close()
