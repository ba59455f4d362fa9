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


@dataclass(frozen=True)
class Sent:
    """What became of one send: Twilio's SID and status, or "unsent" with the reason."""

    sid: str | None
    status: str
    error_code: str | None = None
    reason: str | None = None


class Texter:
    """Sends a text through `POST /2010-04-01/Accounts/{sid}/Messages.json`, once: a send
    whose answer is lost is not retried (a second copy is worse than a late status)."""

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
        try:
            message = await asyncio.to_thread(client.messages.create, to=to, body=body, **options)
        except TwilioRestException as exc:
            log.error(
                "Twilio refused a text to %s: HTTP %s, error %s",
                phones.mask(to),
                exc.status,
                exc.code,
            )
            return Sent(
                None, "unsent", str(exc.code or exc.status)[:16], f"Twilio error {exc.code}"
            )
        except (TwilioException, requests.RequestException) as exc:
            log.error("could not reach Twilio to text %s: %s", phones.mask(to), type(exc).__name__)
            return Sent(None, "unsent", reason=type(exc).__name__)
        return Sent(message.sid, (message.status or "queued").lower())
