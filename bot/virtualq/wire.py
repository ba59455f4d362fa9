"""VirtualQ's HTTP, on the wire: one request in, its status and body out, or a `WireError`
that says whether the request may have reached VirtualQ.

Two wires with one contract. `AiohttpWire` talks to a real VirtualQ (what `serve` uses):
aiohttp (installed anyway: twilio's async client uses it) parses HTTP in C, and a call costs
about a third of the CPU httpx's client and httpcore spent on it (~1.6 ms, the largest single
cost of a check-in). `HttpxWire` takes an httpx transport: the tests' mock transports and the
built-in simulator, served in process to the demo and `chat`.

"Not sent" only when nothing can have left this process (the connection was never made): a
check-in that may have reached VirtualQ is looked up before it is ever sent again.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL


@dataclass(frozen=True)
class WireAnswer:
    """An HTTP answer: its status and body."""

    status: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class WireError(Exception):
    """A request without an answer: `sent` when VirtualQ may have received it, `timeout`
    when it was a timeout; `kind` names the failure (as httpx names its errors)."""

    def __init__(self, kind: str, detail: str, *, sent: bool, timeout: bool = False) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.sent = sent
        self.timeout = timeout


class Wire(ABC):
    """One HTTP request at a time to VirtualQ; closed with `aclose` or `async with`."""

    @abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> WireAnswer:
        """`path` under the base URL, `body` as JSON; its answer, or a WireError."""

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@dataclass(frozen=True)
class Timeouts:
    total: float  # reading an answer (each read), and waiting for a pooled connection
    connect: float


class AiohttpWire(Wire):
    """A real VirtualQ over aiohttp: one session of keep-alive connections (at most `limit`),
    opened on first use in the running event loop."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        basic_auth: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._headers = dict(headers)
        if basic_auth:  # as httpx.BasicAuth encodes it
            pair = b":".join(part.encode() for part in basic_auth)
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.total,
            sock_connect=timeouts.connect,
            sock_read=timeouts.total,
        )
        self._limit = limit
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()  # certifi's roots, as httpx had
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                # HTTP(S)_PROXY is read once per host (_env_proxy), not on every request
                # (aiohttp's trust_env asks a thread for it each time).
                trust_env=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> WireAnswer:
        url = URL(self.base_url + path.lstrip("/"))
        headers = self._headers
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            headers = {**headers, "Content-Type": "application/json"}
        proxy, proxy_auth = _env_proxy(url.scheme, url.host or "")
        try:
            async with self._open().request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                proxy=proxy,
                proxy_auth=proxy_auth,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                return WireAnswer(response.status, await response.read())
        except aiohttp.ClientError as exc:
            raise _classified(exc) from exc
        except TimeoutError as exc:  # asyncio's, from a timeout of aiohttp's own
            raise WireError("ReadTimeout", str(exc), sent=True, timeout=True) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.lru_cache(maxsize=64)
def _env_proxy(scheme: str, host: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """HTTP(S)_PROXY for a host unless NO_PROXY spares it (as httpx and aiohttp read them)."""
    try:
        return get_env_proxy_for_url(URL.build(scheme=scheme, host=host))
    except LookupError:
        return None, None


def _classified(exc: aiohttp.ClientError) -> WireError:
    """An aiohttp error as a WireError. Not sent: a connection never made (refused, DNS, TLS
    handshake, a proxy's refusal, the connect timeout) or a URL it could not use; anything
    after the request may have left is sent."""
    detail = str(exc)
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return WireError("ProxyError", detail, sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return WireError("ConnectError", detail, sent=False)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return WireError("ConnectTimeout", detail, sent=False, timeout=True)
    if isinstance(exc, aiohttp.InvalidUrlClientError | aiohttp.NonHttpUrlClientError):
        return WireError("UnsupportedProtocol", detail, sent=False)
    if isinstance(exc, aiohttp.ServerTimeoutError):  # the read timeout
        return WireError("ReadTimeout", detail, sent=True, timeout=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return WireError("RemoteProtocolError", detail, sent=True)
    return WireError("ReadError", f"{type(exc).__name__}: {detail}", sent=True)


# httpx's errors raised before any of the request left this process.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)


class HttpxWire(Wire):
    """VirtualQ through an httpx client (a mock transport, or the simulator in process)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> WireAnswer:
        try:
            response = await self.client.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise WireError(
                type(exc).__name__,
                str(exc),
                sent=not isinstance(exc, _NOT_SENT),
                timeout=isinstance(exc, httpx.TimeoutException),
            ) from exc
        return WireAnswer(response.status_code, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()
