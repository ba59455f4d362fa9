"""Texts the bot sends on its own through Twilio's REST API: answers that took longer than the
webhook's budget, and answers to texts whose process died before answering them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from . import phones
from .settings import Settings

log = logging.getLogger("checkin_bot.texter")

SEND_TIMEOUT_SECONDS = 10.0
# A send Twilio certainly did not take is tried again after these many seconds: answered 429
# (too many requests: Twilio's concurrency limit, most likely while a broadcast or a burst of
# notifications goes out) or 503, or a connection never made. Not one whose answer was lost
# (a read timeout, a dropped connection, a 500): it may have gone out.
RETRY_DELAYS = (1.0, 2.0, 4.0)
_NOT_TAKEN = frozenset({429, 503})


@dataclass(frozen=True)
class Sent:
    """What became of one send: Twilio's SID and status, or "unsent" with the reason."""

    sid: str | None
    status: str
    error_code: str | None = None
    reason: str | None = None


class Texter:
    """Sends a text through `POST /2010-04-01/Accounts/{sid}/Messages.json`: again after a
    short wait when Twilio certainly did not take it (RETRY_DELAYS), never when its answer was
    lost (a second copy is worse than a late status)."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.can_text()
        self.account_sid = settings.twilio_account_sid or ""
        token = settings.twilio_auth_token
        self.auth_token = token.get_secret_value() if token else ""
        self.from_number = settings.twilio_from_number
        self.messaging_service_sid = settings.twilio_messaging_service_sid
        if self.from_number and self.from_number.startswith("MG"):
            self.messaging_service_sid = self.messaging_service_sid or self.from_number
        self.api_base_url = settings.twilio_api_base_url

    async def send(self, to: str, body: str, status_callback: str | None = None) -> Sent:
        if not self.enabled:
            return Sent(None, "unsent", reason="no Twilio REST credentials")
        # Imported at the first send: twilio's REST client and requests, its HTTP client, are
        # ~5 MB of every worker's memory (~12 MB once a client is made), and a deployment
        # without REST credentials never sends.
        import requests
        from twilio.base.exceptions import TwilioException, TwilioRestException
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        # The library's blocking client, in a thread: its asyncio one (aiohttp) warns of
        # deprecated calls on every send.
        http = TwilioHttpClient(pool_connections=False, timeout=SEND_TIMEOUT_SECONDS)
        client = Client(self.account_sid, self.auth_token, http_client=http)
        client.api.base_url = self.api_base_url
        options: dict[str, str] = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid
            else {"from_": self.from_number or ""}
        )
        if status_callback:
            options["status_callback"] = status_callback
        for again in (*RETRY_DELAYS, None):
            try:
                message = await asyncio.to_thread(
                    client.messages.create, to=to, body=body, **options
                )
            except TwilioRestException as exc:
                if again is not None and exc.status in _NOT_TAKEN:
                    log.warning(
                        "Twilio answered HTTP %s to a text to %s: again in %gs",
                        exc.status,
                        phones.mask(to),
                        again,
                    )
                    await asyncio.sleep(again)
                    continue
                log.error(
                    "Twilio refused a text to %s: HTTP %s, error %s",
                    phones.mask(to),
                    exc.status,
                    exc.code,
                )
                code = str(exc.code or exc.status)[:16]
                return Sent(None, "unsent", code, f"Twilio error {exc.code or exc.status}")
            except (TwilioException, requests.RequestException) as exc:
                if again is not None and _never_connected(exc):
                    log.warning(
                        "could not connect to Twilio to text %s: again in %gs",
                        phones.mask(to),
                        again,
                    )
                    await asyncio.sleep(again)
                    continue
                name = type(exc).__name__
                log.error("could not reach Twilio to text %s: %s", phones.mask(to), name)
                return Sent(None, "unsent", reason=name)
            return Sent(message.sid, (message.status or "queued").lower())
        raise AssertionError("unreachable: the last try returns")


def _never_connected(exc: Exception) -> bool:
    """A request that never reached Twilio: the connection was refused or timed out before
    anything was sent (not a read timeout, nor a connection dropped after the request)."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)
