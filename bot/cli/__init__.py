"""The `checkin-bot` command line (also `python -m bot`): one module per group of commands,
each registering its commands on `main`."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from ..errors import ConfigurationError
from ..settings import Settings, load_settings

T = TypeVar("T")


@click.group()
def main() -> None:
    """SMS check-in bot for Q-Flow VirtualQ: customers text HERE and get their ticket."""


def run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's async work; a configuration problem (settings, prompts, a database on
    the wrong schema) is a clean one-line error."""
    try:
        return asyncio.run(work)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


def settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc


class PortInUse(click.ClickException):
    exit_code = 2


def require_free_port(host: str, port: int, option: str = "--port") -> None:
    """One clear line and exit status 2 when another program has the port, instead of a
    server's traceback."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is in use; try {option} {port + 10}") from None
            raise PortInUse(f"cannot listen on {host}:{port} ({exc.strerror})") from None


# The command modules register themselves on `main`.
from . import directory, manage, run_bot, staff  # noqa: E402, F401
