"""Logs on stdout: one line per event, text or JSON (LOG_FORMAT), with the request id and the
conversation key, and never a whole phone number, whoever logged it (uvicorn included)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import logging.config
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from . import phones
from .settings import LogFormat

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
conversation: ContextVar[str | None] = ContextVar("conversation", default=None)

_PHONE = re.compile(r"\+\d{7,15}\b")
_GOOD_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PHONE_LIKE = re.compile(r"[\d.-]{7,}")
# Line breaks, and every other control a terminal acts on (escape sequences, backspace, bell,
# Unicode's line and paragraph separators, bidirectional overrides): written as escapes.
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_CONTROLS += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_LINE_BREAKS = str.maketrans(
    {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in _CONTROLS if c != 0x09}
    | {0x0D: "\\r", 0x0A: "\\n"}
)
LOGGERS = ("checkin_bot", "uvicorn")
ACCESS = "checkin_bot.access"  # one line a request (bot.app.Boundary)

# What no line prints is not looked up for each record (the logging HOWTO's "Optimization"):
# the caller's file and line (a walk up the stack), the thread's and the process's names.
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False


def mask_phones(text: str) -> str:
    return _PHONE.sub(lambda m: phones.mask(m.group()), text)


def conversation_key(phone: str, secret: str) -> str:
    """A short stable key for a phone's conversation, for logs: it names the conversation
    without giving the number away (keyed, so it cannot be reversed by trying every number)."""
    return hmac.new(secret.encode(), phone.encode(), hashlib.sha256).hexdigest()[:12]


class ContextFilter(logging.Filter):
    """Stamps each record with the request id and conversation key of the code that logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.conversation = conversation.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        # logging's own format ("2026-11-29 22:41:07,123"), the date and time written once a
        # second rather than once a line (the handler's lock keeps formatting to one at a time).
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        # One event, one line: a line break inside a message (a value a request carried) is
        # written as \n, so no request can forge a line of its own, nor move a terminal's
        # cursor (ESC[2J, ESC[1A): controls are escaped too. Tracebacks keep their lines.
        record.message = record.message.translate(_LINE_BREAKS)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{name}={value}"
            for name, value in (
                ("req", getattr(record, "request_id", None)),
                ("conv", getattr(record, "conversation", None)),
            )
            if value
        ]
        if context:
            first, newline, rest = line.partition("\n")
            line = f"{first} [{' '.join(context)}]{newline}{rest}"
        return mask_phones(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, conversation, and
    the traceback (one string) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_phones(record.getMessage()),
        }
        for field in ("request_id", "conversation"):
            value = getattr(record, field, None)
            if value:
                event[field] = value
        if record.exc_info:
            event["exception"] = mask_phones(self.formatException(record.exc_info))
        return json.dumps(event, ensure_ascii=False)


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is when a record arrives, not when logging was set up."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_config(
    log_format: LogFormat, level: str = "INFO", server_level: str | None = None
) -> dict[str, Any]:
    """logging.config.dictConfig for our loggers and (at `server_level`) uvicorn's; also what
    uvicorn.run(log_config=…) applies in each worker process."""
    levels = {"checkin_bot": level, "uvicorn": server_level or level}
    # The access lines are the app's (bot.app.Boundary: no query values, no answered texts),
    # at the server's level; uvicorn's own are off (it writes them only while its logger has
    # a handler, and it is checked on each connection).
    access = {"level": server_level or level, "handlers": ["stdout"], "propagate": False}
    formatter = JsonFormatter if log_format is LogFormat.JSON else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"line": {"()": formatter}},
        "handlers": {
            "stdout": {
                "()": StdoutHandler,
                "formatter": "line",
                "filters": ["context"],
            }
        },
        "loggers": {
            **{
                name: {
                    "handlers": ["stdout"],
                    "level": levels[name.split(".")[0]],
                    "propagate": False,
                }
                for name in LOGGERS
            },
            ACCESS: access,
            "uvicorn.access": {"handlers": [], "propagate": False},
            # Twilio's client logs each request's form, phone numbers and texts included, at
            # INFO: only its warnings reach the log.
            "twilio": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(log_format: LogFormat = LogFormat.TEXT, server_level: str = "INFO") -> None:
    logging.config.dictConfig(log_config(log_format, server_level=server_level))


def request_id_for(headers: list[tuple[bytes, bytes]]) -> str:
    """A request's id: the platform's X-Request-Id when it sent a sane one, else a new one
    (not one that is a phone number: it is on every line of the request)."""
    for name, value in headers:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _GOOD_REQUEST_ID.fullmatch(given) and not _PHONE_LIKE.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex[:16]
