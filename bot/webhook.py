"""The Twilio boundary: signature first (403), then a typed InboundSms (400), then TwiML."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from . import phones
from .errors import BadWebhook, ClientGone
from .service import InboundText, Service
from .settings import Settings

log = logging.getLogger("checkin_bot.webhook")

MAX_BODY_BYTES = 64 * 1024
BODY_SECONDS = 5.0  # a client that declares a body must send it in this long (else 408)
MAX_MEDIA = 10  # Twilio delivers at most ten media items with a text
MAX_ROW_ID = 2**31 - 1  # the log's ids are 32-bit integers on PostgreSQL
# Twilio's message statuses (MessageStatus / SmsStatus), as it documents them.
TWILIO_STATUSES = frozenset(
    {
        "accepted",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "canceled",
        "receiving",
        "received",
        "partially_delivered",
    }
)


def _count(value: Any) -> int:
    """NumMedia as a number the log can hold, whatever was posted ("99999999999999999999",
    "-3", "two"): 0 to MAX_MEDIA."""
    try:
        return min(max(int(str(value).strip()), 0), MAX_MEDIA)
    except (TypeError, ValueError):
        return 0


def _error_code(value: Any) -> str | None:
    """Twilio's ErrorCode is a number: anything else is dropped, not stored."""
    text = str(value or "").strip()
    return text if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _status(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text not in TWILIO_STATUSES:
        raise ValueError("not a Twilio message status")
    return text


def _storable(value: Any) -> Any:
    """Text as PostgreSQL can store it: NUL (which its text type refuses) becomes U+FFFD, so
    the message is logged, visibly, instead of failing to be stored at all."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


Storable = Annotated[str, BeforeValidator(_storable)]


def _someone(value: str) -> str:
    """A sender with a letter or digit in it (a phone number, a short code, an alphanumeric
    sender id, "whatsapp:+61…"): not blanks alone, which made a conversation of no one."""
    if not any(c.isalnum() for c in value):
        raise ValueError("no sender")
    return value


class InboundSms(BaseModel):
    """Twilio's messaging webhook form, the fields the bot uses; the rest ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    message_sid: Storable = Field(alias="MessageSid", min_length=1, max_length=64)
    sender: Annotated[Storable, AfterValidator(_someone)] = Field(
        alias="From", min_length=1, max_length=64
    )
    to: str = Field("", alias="To", max_length=64)
    body: Storable = Field("", alias="Body", max_length=10_000)
    num_media: Annotated[int, BeforeValidator(_count)] = Field(0, alias="NumMedia")
    account_sid: str | None = Field(None, alias="AccountSid", max_length=64)
    messaging_service_sid: str | None = Field(None, alias="MessagingServiceSid", max_length=64)


class StatusCallback(BaseModel):
    """Twilio's message status callback, the fields the bot records (sanitised like /sms:
    what is stored cannot fail to be stored)."""

    model_config = ConfigDict(extra="ignore")

    message_sid: Storable = Field(alias="MessageSid", min_length=1, max_length=64)
    status: Annotated[str, BeforeValidator(_status)] = Field(
        validation_alias=AliasChoices("MessageStatus", "SmsStatus")
    )
    error_code: Annotated[str | None, BeforeValidator(_error_code)] = Field(None, alias="ErrorCode")


def reply_id(raw: str) -> int | None:
    """The stored reply a status callback's `?m=` names; None when it names none we could
    have stored (a 32-bit row id)."""
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 10):  # "²".isdigit() too
        return None
    return int(raw) if 0 < int(raw) <= MAX_ROW_ID else None


class SignatureChecker:
    """Validates X-Twilio-Signature (Auth Token, HMAC-SHA1) and SharedKey signatures."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.twilio_validate_signature
        token = settings.twilio_auth_token
        self.token = RequestValidator(token.get_secret_value()) if token else None
        self.shared = [RequestValidator(key) for key in settings.shared_keys()]
        self.public_base_url = settings.public_base_url

    def url_for(self, request: Request) -> str:
        """The URL Twilio signed: PUBLIC_BASE_URL + path + query, not what a proxy forwarded
        (read from the ASGI scope as Starlette's URL reads it, without building one)."""
        if not self.public_base_url:
            return str(request.url)
        scope = request.scope
        path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        query = scope.get("query_string", b"").decode("latin-1")
        return f"{self.public_base_url}{path}?{query}" if query else f"{self.public_base_url}{path}"

    def valid(self, request: Request, params: ImmutableMultiDict[str, str]) -> bool:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return False
        url = self.url_for(request)
        settings_header = request.headers.get(SIGNATURE_SETTINGS_HEADER)
        if settings_header:
            algorithm = get_signature_algorithm(settings_header)
            return any(_signed(v, url, params, signature, algorithm) for v in self.shared)
        return self.token is not None and _signed(self.token, url, params, signature)


def _signed(
    validator: RequestValidator,
    url: str,
    params: ImmutableMultiDict[str, str],
    signature: str,
    algorithm: str | None = None,
) -> bool:
    """`validator.validate`, trying first the URL as it is: `validate` computes the signature
    for the URL with its port and without it (two HMACs, every request), and a URL as it is
    is one of the two. A match is a signature of this URL by the token; anything else gets
    `validate`'s verdict (a bodySHA256 URL always does)."""
    if "bodySHA256" not in url:
        computed = validator.compute_signature(url, params, algorithm)
        if hmac.compare_digest(computed.encode(), signature.encode()):
            return True
    return bool(validator.validate(url, params, signature, algorithm))


class Form(ImmutableMultiDict[str, str]):
    """A webhook's form. `getall` is what the twilio library's RequestValidator asks a form
    for each parameter's values first: without it, it raises and catches an AttributeError a
    parameter, twice a request (with and without the port)."""

    def getall(self, key: str) -> list[str]:
        return self.getlist(key)


async def read_form(request: Request) -> Form:
    """The url-encoded form, refusing oversized (413), slow (408) or undecodable (400) bodies;
    a client that hangs up mid-body is a ClientGone, logged as one line."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadWebhook("body too large", status=413)
    raw = b""
    receive = request.receive  # ASGI's messages, as Request.stream reads them, without it
    try:
        async with asyncio.timeout(BODY_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone("the client hung up before sending its whole body")
                if message["type"] != "http.request":
                    continue
                raw += message.get("body", b"")
                if len(raw) > MAX_BODY_BYTES:
                    raise BadWebhook("body too large", status=413)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BadWebhook(f"body not sent within {BODY_SECONDS:g}s", status=408) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadWebhook("body is not UTF-8") from exc
    try:
        return Form(parse_qsl(text, keep_blank_values=True, max_num_fields=200))
    except ValueError as exc:
        raise BadWebhook(f"unreadable form: {exc}") from exc


async def verified_form(request: Request, checker: SignatureChecker) -> Form:
    """A webhook's form once readable (else BadWebhook 400/413) and signed by Twilio (else
    BadWebhook 403)."""
    form = await read_form(request)
    if checker.enabled and not checker.valid(request, form):
        url, asked, _ = checker.url_for(request).partition("?")  # not the query's values
        raise BadWebhook(
            f"missing or invalid Twilio signature for {url}{'?…' if asked else ''}", status=403
        )
    return form


_XML = '<?xml version="1.0" encoding="UTF-8"?>'


def twiml(text: str | None, status_url: str | None = None) -> Response:
    """A TwiML reply; with `status_url`, Twilio reports the reply's delivery status there.
    Written out as the twilio library's MessagingResponse writes it, without building its
    element tree (a tenth of the CPU)."""
    if not text:
        return Response(f"{_XML}<Response />", media_type="text/xml")
    action = ""
    if status_url:
        action = f' action="{escape(status_url, _ATTRIBUTE)}" method="POST"'
    return Response(
        f"{_XML}<Response><Message{action}>{escape(text)}</Message></Response>",
        media_type="text/xml",
    )


_ATTRIBUTE = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}


Model = TypeVar("Model", bound=BaseModel)


async def verified_model(
    request: Request, checker: SignatureChecker, model: type[Model], what: str
) -> tuple[Model, ImmutableMultiDict[str, str]]:
    """A webhook's form, signed (else 403) and valid as `model` (else 400), and the raw form."""
    form = await verified_form(request, checker)
    try:
        return model.model_validate(dict(form)), form
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        raise BadWebhook(f"bad {what}: {fields}") from None


FALLBACK_STORE_SECONDS = 3.0  # the fallback stores the text if the database answers this soon


class Webhooks:
    """Twilio's webhooks: each verified at the boundary, then handed to the service."""

    def __init__(self, service: Service, checker: SignatureChecker, apology: str) -> None:
        self.service = service
        self.checker = checker
        self.apology = apology
        # Each reply names /sms/status as its status callback (relative to the webhook's URL
        # when PUBLIC_BASE_URL is unset).
        self.status_base = f"{checker.public_base_url or ''}/sms/status"

    async def sms(self, request: Request) -> Response:
        """POST /sms: Twilio's messaging webhook, answered with TwiML."""
        inbound, _ = await verified_model(request, self.checker, InboundSms, "webhook")
        token = request.headers.get("I-Twilio-Idempotency-Token", "")[:128] or None
        answer = await self.service.respond(
            InboundText(inbound.message_sid, inbound.sender, inbound.body, inbound.num_media, token)
        )
        status_url = None
        if answer.message_id is not None:
            status_url = f"{self.status_base}?m={answer.message_id}"
        return twiml(answer.text, status_url)

    async def status(self, request: Request) -> Response:
        """POST /sms/status: Twilio's delivery status callback for a reply (`?m=` names the
        stored reply, as /sms set it) or for a text sent through the REST API (by MessageSid)."""
        callback, form = await verified_model(
            request, self.checker, StatusCallback, "status callback"
        )
        raw_id = request.query_params.get("m", "")
        if raw_id and not (raw_id.isascii() and raw_id.isdigit()):
            raise BadWebhook("bad status callback: m")
        stored = reply_id(raw_id)
        if raw_id and stored is None:
            # Not a reply of ours (we name them by 32-bit ids): nothing to record, and Twilio
            # would only retry an error.
            log.info("delivery status for an unknown reply id (%d digits) ignored", len(raw_id))
            return Response(status_code=204)
        updated = await self.service.record_delivery(
            stored, callback.message_sid, callback.status, callback.error_code
        )
        failed = callback.status.lower() in ("failed", "undelivered")
        log.log(
            logging.WARNING if failed and updated else logging.INFO,
            "delivery status %s%s for %s%s",
            callback.status,
            f" (error {callback.error_code})" if callback.error_code else "",
            phones.mask(form.get("To", "?")),
            "" if updated else ": no such reply, or an older status than recorded",
        )
        return Response(status_code=204)

    async def fallback(self, request: Request) -> Response:
        """POST /sms/fallback: Twilio's Fallback URL, called when /sms failed or timed out. A
        fixed apology from memory: no database, no VirtualQ, so it answers when both are down."""
        form = await verified_form(request, self.checker)
        # Twilio reporting that /sms failed: a warning here; the failure itself was logged (as
        # an error) where it happened, if this process saw it at all.
        stored = "the text is not in the log"
        try:
            inbound = InboundSms.model_validate(dict(form))
            text = InboundText(inbound.message_sid, inbound.sender, inbound.body, inbound.num_media)
            kept = await asyncio.wait_for(
                self.service.record_fallback(text), FALLBACK_STORE_SECONDS
            )
            stored = "the text is in the log" if kept else "/sms had stored the text"
        except ValidationError:
            stored = "the form was not a text's; nothing stored"
        except Exception as exc:  # the database is down, say: the apology from memory anyway
            stored = f"the text is not in the log ({type(exc).__name__})"
        log.warning(
            "Twilio used the Fallback URL for a text from %s (ErrorCode %s): /sms failed or "
            "timed out; answered the apology, %s",
            phones.mask(form.get("From", "?")),
            (_error_code(form.get("ErrorCode")) or "?")[:6],
            stored,
        )
        return twiml(self.apology)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})
