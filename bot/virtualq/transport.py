"""httpx's transport on aiohttp: VirtualQ calls keep httpx's client (and the transports tests
and the in-process simulator pass in), and cost a third of the CPU.

httpx's own transport (httpcore, h11, anyio) spent about 1.6 ms of CPU a call here, the
largest single cost of a check-in; aiohttp (already installed: twilio's async client uses it)
parses HTTP in C. Its errors become httpx's, and "not sent" only when nothing can have left
this process (the connection was never made): a check-in that may have reached VirtualQ is
looked up before it is ever sent again.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx

# Response headers that describe the bytes on the wire, not the body httpx is handed (aiohttp
# has decompressed it and read it in full).
_WIRE_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (keep-alive connections, at most `limit`), made on first use in
    the running event loop."""

    def __init__(self, *, limit: int = 100, ssl_context: ssl.SSLContext | None = None) -> None:
        self._limit = limit
        self._ssl = ssl_context or httpx.create_ssl_context()  # certifi's roots, as httpx's
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                trust_env=True,  # HTTP(S)_PROXY / NO_PROXY, as httpx honours them
                auto_decompress=True,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"content-length"]
        try:
            async with self._open().request(
                request.method,
                str(request.url),
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=request.content or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as response:
                content = await response.read()
                raw_headers = [
                    (k, v) for k, v in response.raw_headers if k.lower() not in _WIRE_HEADERS
                ]
                reason = (response.reason or "").encode("latin-1", "replace")
        except aiohttp.ClientError as exc:
            raise _as_httpx(exc, request) from exc
        except TimeoutError as exc:  # asyncio's, from a timeout of aiohttp's own
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        return httpx.Response(
            response.status,
            headers=raw_headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _as_httpx(exc: aiohttp.ClientError, request: httpx.Request) -> httpx.TransportError:
    """The httpx error for an aiohttp one. Only a connection never made (refused, DNS, TLS
    handshake, a proxy's refusal, the connect timeout or a bad URL) is an error httpx counts as
    "not sent" (bot.virtualq.client._NOT_SENT); anything after the request may have left is a
    read error or a read timeout."""
    message = f"{type(exc).__name__}: {exc}"
    error: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        error = httpx.ProxyError
    elif isinstance(exc, aiohttp.ClientConnectorError):
        error = httpx.ConnectError
    elif isinstance(exc, aiohttp.ConnectionTimeoutError):
        error = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.InvalidUrlClientError | aiohttp.NonHttpUrlClientError):
        error = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.ServerTimeoutError):  # the read timeout (SocketTimeoutError)
        error = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        error = httpx.RemoteProtocolError
    else:  # ClientOSError, ClientPayloadError, a reset mid-request, …
        error = httpx.ReadError
    return error(message, request=request)
