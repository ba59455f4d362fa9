"""The bot's one error tree. Foreign exceptions are translated once, where they enter.

    CheckinBotError
    ├── UpstreamError                 the VirtualQ API did not check someone in
    │   ├── UpstreamUnavailable       down, slow or nonsense: connection refused, timeout, 5xx,
    │   │   │                         non-JSON 2xx, 2xx without a Ticket, 408/429;
    │   │   │                         `request_sent` says whether VirtualQ may have acted on
    │   │   │                         it (a check-in is then reconciled, never re-sent)
    │   │   ├── UpstreamTimeout       no answer in time
    │   │   └── UpstreamAuthError     401/403: a configuration error for the deployer
    │   └── UpstreamRefused           a 4xx answer, classified: early, late,
    │                                 prevent_auto_queue, not_found, already_checked_in, other
    └── BadWebhook                    a webhook request we cannot use (400, or 413)

Each error carries what the one error sink needs: the cause for the log, the status and the
classified reason for the conversation.
"""

from __future__ import annotations

from .conversation import Refusal


class CheckinBotError(Exception):
    """Base of every error the bot raises on purpose."""


class UpstreamError(CheckinBotError):
    """VirtualQ did not check the customer in."""

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


class BadWebhook(CheckinBotError):
    """A webhook request that is not a usable Twilio message (answered with `status`)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
