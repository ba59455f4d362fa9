"""The check-in conversation, one per phone, as pure functions: `step` acts on what a text
meant (in `table`), `resume` on VirtualQ's answer to the action a step asked for (in
`results`); `model` holds the data both work on. No I/O and no clock, so transcripts are
tested as data."""

from __future__ import annotations

from .model import (
    UNCONFIRMED,
    Action,
    CancelCase,
    Candidate,
    CaseView,
    Checkin,
    Context,
    Conversation,
    Decision,
    Done,
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
    Visit,
    unconfirmed,
    unconfirmed_data,
    visits,
)
from .results import resume
from .table import effective, expecting, step

__all__ = [
    "UNCONFIRMED",
    "Action",
    "CancelCase",
    "Candidate",
    "CaseView",
    "Checkin",
    "Context",
    "Conversation",
    "Decision",
    "Done",
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
    "Visit",
    "effective",
    "expecting",
    "resume",
    "step",
    "unconfirmed",
    "unconfirmed_data",
    "visits",
]
