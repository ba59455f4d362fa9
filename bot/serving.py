"""Running uvicorn the way `checkin-bot serve` does (shared with bench/echo.py, the ceiling it is
measured against; kept free of the app's imports so the echo stays bare)."""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess


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
