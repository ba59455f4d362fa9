"""Who a request came from, behind the platform's router: the address the trusted proxy saw.

X-Forwarded-For is a list each proxy appends to; its left end is whatever the client chose to
send. So the client is the right-most hop that is not a trusted proxy: with
FORWARDED_ALLOW_IPS=* (every request comes through the router), the right-most hop, which the
router itself wrote. X-Forwarded-Proto is read the same way. Untrusted peers' headers are
ignored: their own address is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send


class Trusted:
    """FORWARDED_ALLOW_IPS: `*`, or addresses and networks separated by commas."""

    def __init__(self, setting: str) -> None:
        parts = [p.strip() for p in setting.split(",") if p.strip()]
        self.everyone = "*" in parts
        self.networks = []
        for part in parts:
            if part != "*":
                try:
                    self.networks.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    continue  # a host name or junk: trusts nothing

    def __contains__(self, address: object) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def client_of(peer: str, forwarded: Iterable[str], trusted: Trusted) -> str:
    """The client's address: `peer` unless it is a trusted proxy, then the right-most hop of
    X-Forwarded-For that is not one (with `*`, the right-most hop)."""
    if peer not in trusted:
        return peer
    hops = [h.strip() for header in forwarded for h in header.split(",") if h.strip()]
    for hop in reversed(hops):
        if trusted.everyone or hop not in trusted:
            return hop[:64]
    return hops[0][:64] if hops else peer


class ForwardedFor:
    """ASGI middleware: the request's client (and scheme) as `client_of` reads them."""

    def __init__(self, app: ASGIApp, trusted: str) -> None:
        self.app = app
        self.trusted = Trusted(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            peer, port = scope["client"]
            if peer in self.trusted:
                headers = scope["headers"]
                forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
                scope["client"] = (client_of(peer, forwarded, self.trusted), port)
                protos = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-proto"]
                last = [p.strip() for h in protos for p in h.split(",") if p.strip()]
                if last and last[-1] in ("http", "https"):
                    scope["scheme"] = last[-1]
        await self.app(scope, receive, send)
