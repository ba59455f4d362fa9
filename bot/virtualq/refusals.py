"""VirtualQ's refusals: the words in an error body, classified by configurable patterns."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping

from ..errors import Refusal


class RefusalClassifier:
    """Turns a 4xx answer into a `Refusal` reason with configurable, case-insensitive patterns."""

    def __init__(self, patterns: Mapping[str, list[str]]) -> None:
        self._patterns = [
            (Refusal(reason), [re.compile(p, re.IGNORECASE) for p in regexes])
            for reason, regexes in patterns.items()
        ]

    def classify(self, status: int, message: str) -> Refusal:
        for reason, regexes in self._patterns:
            if any(r.search(message) for r in regexes):
                return reason
        return Refusal.NOT_FOUND if status == 404 else Refusal.OTHER


_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)


def error_message(body: str) -> str:
    """The human words in an error body: JSON Message/message/ExceptionMessage/ModelState, plain
    text, or the text of an HTML page."""
    text = body.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [
            str(data[k])
            for k in ("Message", "message", "ExceptionMessage", "error", "Error", "title")
            if isinstance(data.get(k), str | int)
        ]
        state = data.get("ModelState") or data.get("errors")
        if isinstance(state, dict):
            parts += [
                str(v) for vs in state.values() for v in (vs if isinstance(vs, list) else [vs])
            ]
        if parts:
            return " ".join(parts)[:500]
    if isinstance(data, str):
        return data[:500]
    if "<" in text:
        text = html.unescape(_TAGS.sub(" ", text))
    return re.sub(r"\s+", " ", text).strip()[:500]
