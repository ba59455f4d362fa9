"""The VirtualQ REST API (VIRTUALQ.md): `client` makes the calls (every one observed, errors
from `bot.errors` only), `models` reads the payloads, `refusals` classifies a 4xx, `breaker`
stops calling an API that is down."""

from __future__ import annotations

from .breaker import CircuitBreaker
from .client import CallRecord, Observer, VirtualQClient, make_client, make_http_client
from .models import CaseDetail, Customer, WaitingTicket
from .refusals import RefusalClassifier, error_message

__all__ = [
    "CallRecord",
    "CaseDetail",
    "CircuitBreaker",
    "Customer",
    "Observer",
    "RefusalClassifier",
    "VirtualQClient",
    "WaitingTicket",
    "error_message",
    "make_client",
    "make_http_client",
]
