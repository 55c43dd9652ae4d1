"""Where an HTTP request goes: the edge's online http(s) endpoints, found by host and scheme.

`HttpRouter.route` is the one lookup both HTTP/1.1 and HTTP/2 make (through
`edge.http.seam.decide`); the `HttpRoute` it returns is the endpoint, and its
`open_agent_stream` is the one place the edge opens an agent stream for an HTTP request.

Names: an *agent stream* is the proxy stream the edge opens to the endpoint's agent over its
muxado session; the *upstream* is the customer's service behind the agent, which the agent
dials and pipes the agent stream's bytes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import trio

from edge.endpoints.registry import Endpoint, EndpointRegistry

__all__ = ["EndpointRouter", "HttpRoute", "HttpRouter"]


class HttpRoute(Protocol):
    """An endpoint a request was routed to."""

    @property
    def key(self) -> object:
        """The endpoint's identity: an agent stream is reused only for the same key."""
        ...

    @property
    def forwards_to(self) -> str:
        """The agent's upstream as the agent described it (named in ERR_NGROK_8012's page)."""
        ...

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        """A new agent stream with its ProxyHeader written; `client_addr` is the public client
        as "host:port". Raises trio.BrokenResourceError if the agent's session is gone."""
        ...


class HttpRouter(Protocol):
    """Where requests go: the edge's view of online http(s) endpoints."""

    def route(self, host: str, scheme: str) -> HttpRoute | None:
        """The endpoint serving `host` (lowercased, no port, no trailing dot) for `scheme`
        ("http" or "https"), or None when none is online."""
        ...


class EndpointRouter:
    """The `HttpRouter` of a running edge: public endpoints in the registry, by scheme and host
    (an exact name first, then the closest wildcard; `EndpointRegistry.lookup_public`)."""

    __slots__ = ("_registry",)

    def __init__(self, registry: EndpointRegistry) -> None:
        self._registry = registry

    def route(self, host: str, scheme: str) -> HttpRoute | None:
        endpoint = self._registry.lookup_public(scheme, host)
        return None if endpoint is None else _EndpointRoute(endpoint)


@dataclass(frozen=True, slots=True)
class _EndpointRoute:
    """A registry endpoint as an `HttpRoute`: the endpoint is the identity (an agent stream is
    reused only for the same endpoint), and it opens the agent streams (to one of its agents)."""

    endpoint: Endpoint

    @property
    def key(self) -> object:
        return self.endpoint

    @property
    def forwards_to(self) -> str:
        return self.endpoint.forwards_to or "its upstream"

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        return await self.endpoint.open_proxy(client_addr)
