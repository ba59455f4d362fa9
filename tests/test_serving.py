"""The HTTP server as `serve` runs it: a request must finish its headers in time."""

from __future__ import annotations

import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.serving import HeadersDeadline

from .helpers import free_port


class QuickDeadline(HeadersDeadline):
    headers_timeout = 0.3


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (within a generous 10 s)."""
    try:
        return await asyncio.wait_for(reader.read(), 10) is not None
    except TimeoutError:
        return False


async def test_a_request_that_never_finishes_its_headers_is_closed() -> None:
    """Slowloris: half a request line and nothing more, or a kept-alive connection that
    starts its next request and stops, was held for good by uvicorn; now it is closed, and
    a whole request on another connection is answered meanwhile."""
    app = Starlette(routes=[Route("/", _ok)])
    port = free_port()
    config = uvicorn.Config(app, port=port, http=QuickDeadline, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        half_reader, half = await asyncio.open_connection("127.0.0.1", port)
        half.write(b"POST /sms HTTP/1.1\r\nHost: x\r\n")
        kept_reader, kept = await asyncio.open_connection("127.0.0.1", port)
        kept.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(kept_reader.readuntil(b"ok"), 10)
        assert answer.startswith(b"HTTP/1.1 200")
        kept.write(b"G")  # the next request begins, and goes no further
        assert await _closed(silent_reader)
        assert await _closed(half_reader)
        assert await _closed(kept_reader)
        for writer in (silent, half, kept):
            writer.close()
    finally:
        server.should_exit = True
        await task
