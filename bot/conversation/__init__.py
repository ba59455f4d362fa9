"""The check-in conversation, one per phone, as pure functions: `step` reads a message (in
`table`), `resume` reads VirtualQ's answer to the action a step asked for (in `results`);
`model` holds the data both work on. No I/O and no clock, so transcripts are tested as data."""

from __future__ import annotations

from .model import (
    UNCONFIRMED,
    Action,
    Candidate,
    CaseView,
    Checkin,
    Context,
    Conversation,
    Decision,
    GetCase,
    NotEnqueued,
    Policy,
    Reconcile,
    Reply,
    Result,
    State,
    Target,
    Unavailable,
    Unconfirmed,
    unconfirmed,
    unconfirmed_data,
)
from .results import resume
from .table import step

__all__ = [
    "UNCONFIRMED",
    "Action",
    "Candidate",
    "CaseView",
    "Checkin",
    "Context",
    "Conversation",
    "Decision",
    "GetCase",
    "NotEnqueued",
    "Policy",
    "Reconcile",
    "Reply",
    "Result",
    "State",
    "Target",
    "Unavailable",
    "Unconfirmed",
    "resume",
    "step",
    "unconfirmed",
    "unconfirmed_data",
]
