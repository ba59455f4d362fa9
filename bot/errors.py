"""The bot's one error tree. Foreign exceptions are translated once, where they enter.

    CheckinBotError
    ├── ConfigurationError            the deployment is set up wrong: refuse to start, say how
    │   ├── SettingsError             a setting missing or malformed (names the variable)
    │   ├── PromptError               a prompts/ file unusable (names the file and key)
    │   └── SchemaError               the database is not at this release's schema
    ├── UpstreamError                 the VirtualQ API did not do what was asked
    │   ├── UpstreamUnavailable       down, slow or nonsense: connection refused, timeout, 5xx,
    │   │   │                         non-JSON 2xx, 2xx without a Ticket, 408/429;
    │   │   │                         `request_sent` says whether VirtualQ may have acted on
    │   │   │                         it (a check-in is then reconciled, never re-sent)
    │   │   ├── UpstreamTimeout       no answer in time
    │   │   └── UpstreamAuthError     401/403: a configuration error for the deployer
    │   └── UpstreamRefused           a 4xx answer, classified into a `Refusal`
    ├── PhoneBusy                     another text from this phone held its turn too long
    ├── ClientGone                    the client hung up mid-request: nothing to answer
    ├── NotHandled                    a webhook could not be handled (the database, a bug): the
    │                                 cause is chained; /sms answers the apology
    └── HttpError                     a request we answer with a 4xx of our own (`status`)
        ├── BadWebhook                a webhook we cannot use: 400, 408, 413
        └── BadFilter                 a staff page parameter we cannot use: 400, 404

Each error carries what the one error sink needs (`bot.app.exception_handlers`): the cause for
the log, the status for the response, the classified reason for the conversation.
"""

from __future__ import annotations

from enum import StrEnum


class CheckinBotError(Exception):
    """Base of every error the bot raises on purpose."""


class ConfigurationError(CheckinBotError):
    """The deployment is set up wrong; the message says what to change."""


class SettingsError(ConfigurationError):
    """A setting is missing or malformed; the message names the variable and the fix."""


class PromptError(ConfigurationError):
    """The prompts file for a language is missing a text, or a text is unusable."""


class SchemaError(ConfigurationError):
    """The database is not at this release's schema version; the message says what to run."""


class Refusal(StrEnum):
    """Why the queue system would not do what was asked (a check-in, usually)."""

    EARLY = "early"
    LATE = "late"
    PREVENT_AUTO_QUEUE = "prevent_auto_queue"
    NOT_FOUND = "not_found"
    ALREADY_CHECKED_IN = "already_checked_in"
    OTHER = "other"


class UpstreamError(CheckinBotError):
    """VirtualQ did not do what was asked."""

    def __init__(self, cause: str, status: int | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status


class UpstreamUnavailable(UpstreamError):
    """VirtualQ could not be used: the customer is sent to reception, the cause logged.

    `request_sent`: the request reached VirtualQ and may have been acted on (a timeout while
    waiting for the answer, a dropped connection, a 500/502/504, a 2xx we cannot read)."""

    def __init__(self, cause: str, status: int | None = None, request_sent: bool = False) -> None:
        super().__init__(cause, status)
        self.request_sent = request_sent


class UpstreamTimeout(UpstreamUnavailable):
    """VirtualQ did not answer in time."""

    def __init__(self, cause: str, request_sent: bool) -> None:
        super().__init__(cause, request_sent=request_sent)


class UpstreamAuthError(UpstreamUnavailable):
    """VirtualQ rejected our credentials: fix VIRTUALQ_AUTH_* / VIRTUALQ_USERNAME settings."""


class UpstreamRefused(UpstreamError):
    """VirtualQ answered with a 4xx refusal, classified into a `Refusal` reason."""

    def __init__(self, status: int, message: str, reason: Refusal) -> None:
        super().__init__(f"{status} {reason.value}: {message}", status)
        self.message = message
        self.reason = reason


class PhoneBusy(CheckinBotError):
    """Another text from this phone held its turn for longer than we could wait."""


class ClientGone(CheckinBotError):
    """The client hung up before its request was read: there is no one to answer."""


class NotHandled(CheckinBotError):
    """A webhook could not be handled outside the conversation's own error handling (the
    database was down, say); the original exception is chained as `__cause__`."""

    def __init__(self, what: str, phone: str | None = None, stored: bool = True) -> None:
        super().__init__(what)
        self.what = what
        self.phone = phone
        self.stored = stored  # False: an inbound text that is not in the log


class HttpError(CheckinBotError):
    """A request answered with a 4xx of our own: `status` and a short message for the client."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadWebhook(HttpError):
    """A webhook request that is not a usable Twilio message (400, 408 or 413)."""


class BadFilter(HttpError):
    """A staff page parameter that cannot be used (an unreadable date, an unknown id)."""
