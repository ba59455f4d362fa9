"""Running uvicorn the way `checkin-bot serve` does (shared with bench/echo.py, the ceiling it is
measured against; kept free of the app's imports so the echo stays bare)."""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess


class HeadersDeadline(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request has not finished its
    headers `headers_timeout` seconds after it began (or after the connection opened).

    uvicorn times out neither: a connection that sends half a request line and then nothing
    was held for good (slowloris: a probe held 4,000, ~5 KB each; with a file limit of 300,
    320 of them made real webhooks fail with a reset). Its keep-alive timeout ends at the
    first byte of the next request; the body has the webhook's own deadline (read_form).
    Twilio sends a request's headers at once."""

    headers_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.headers_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def run_uvicorn(server: uvicorn.Config) -> None:
    """What `uvicorn.run` does, with one fix for several workers: uvicorn binds their shared
    socket without IPPROTO_TCP, so asyncio never sets TCP_NODELAY on the connections it accepts
    and every answer on a kept-alive connection waits ~40 ms for a delayed ACK (uvicorn #3149,
    measured in bench/RESULTS.md). Linux hands the listening socket's TCP_NODELAY on."""
    if server.workers == 1:
        one = uvicorn.Server(server)
        one.run()
        if not one.started:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE
        return
    sock = server.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(server, sockets=[sock]).run()
