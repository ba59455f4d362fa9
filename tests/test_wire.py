"""The VirtualQ client on the wire (bot.virtualq.wire, aiohttp) against a real
socket server that misbehaves as upstreams do: what reaches VirtualQ, what comes back, and
which failures may have reached it (a check-in to look up) and which cannot have."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.errors import UpstreamTimeout, UpstreamUnavailable
from bot.settings import Settings
from bot.virtualq import VirtualQClient, make_client, make_http_client
from bot.virtualq.wire import Wire

CASE = {"CaseId": 7, "Ticket": "A001", "QueuePosition": 2, "WaitTimeEst": 10}

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A raw HTTP/1.1 server on 127.0.0.1: every request it read, and one entry per
    connection it accepted."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while (request := await _read_request(reader)) is not None:
                requests.append(request)
                await handler(request, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/api", requests, connections
    finally:
        server.close()


def _client(url: str, **settings: Any) -> tuple[VirtualQClient, Wire]:
    config = Settings(virtualq_base_url=url, **settings)
    http = make_http_client(config)
    return make_client(config, http), http


async def _gzip_json(request: bytes, writer: asyncio.StreamWriter) -> None:
    body = gzip.compress(json.dumps(CASE).encode())
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()


async def test_a_check_in_goes_out_as_json_with_auth_and_connections_are_kept() -> None:
    async with upstream(_gzip_json) as (url, requests, connections):
        client, http = _client(url, virtualq_username="u", virtualq_password="p")
        try:
            for _ in range(3):
                case = await client.checkin(personal_id="S1")
                assert (case.ticket, case.position) == ("A001", 2)  # gzip read as JSON
        finally:
            await http.aclose()
    head, _, body = requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /api/Appointments/Checkin HTTP/1.1")
    assert b"authorization: basic dtpw" in head.lower()
    assert json.loads(body) == {"ForceEarlyLate": False, "PersonalId": "S1"}
    assert len(requests) == 3 and len(connections) == 1  # one kept-alive connection


async def _hang(request: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def _hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.close()  # read the request, answered nothing


async def _half_answer(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"CaseId"')
    await writer.drain()
    writer.close()


async def _garbage(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SMTP ready\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (_hang, UpstreamTimeout),
        (_hang_up, UpstreamUnavailable),
        (_half_answer, UpstreamUnavailable),
        (_garbage, UpstreamUnavailable),
    ],
)
async def test_a_failure_after_the_request_left_may_have_checked_in(
    handler: Handler, error: type[UpstreamUnavailable]
) -> None:
    async with upstream(handler) as (url, requests, _):
        client, http = _client(url, virtualq_timeout_seconds=0.5)
        try:
            with pytest.raises(error) as caught:
                await client.checkin(personal_id="S1")
        finally:
            await http.aclose()
    assert requests, "the request reached the server"
    assert caught.value.request_sent  # so the next text looks the check-in up first


async def test_a_connection_never_made_cannot_have_checked_in() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed on exit: nothing listens there
    client, http = _client(f"http://127.0.0.1:{port}/api")
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.checkin(personal_id="S1")
    finally:
        await http.aclose()
    assert not caught.value.request_sent
    assert "ConnectError" in caught.value.cause


def test_a_proxy_from_the_environment_is_used_unless_no_proxy_spares_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.virtualq.wire import _env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "vq.internal")
    _env_proxy.cache_clear()
    try:
        proxy, _ = _env_proxy("https", "qflow.example.org")
        assert str(proxy) == "http://proxy.example:3128"
        assert _env_proxy("https", "vq.internal") == (None, None)
    finally:
        _env_proxy.cache_clear()
