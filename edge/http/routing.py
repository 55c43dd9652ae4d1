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

from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry
from edge.policy.activation import EndpointFacts

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

    @property
    def policy(self) -> AttachedPolicy | None:
        """The endpoint's Traffic Policy (`edge.http.policy` runs it), or None."""
        ...

    def endpoint_facts(self) -> EndpointFacts:
        """The endpoint as a policy sees it (`endpoint.*`); asked only when it has a policy."""
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

    @property
    def policy(self) -> AttachedPolicy | None:
        return self.endpoint.policy

    def endpoint_facts(self) -> EndpointFacts:
        endpoint = self.endpoint
        default = 443 if endpoint.proto == "https" else 80
        return EndpointFacts(
            url=endpoint.url,
            host=endpoint.host,
            port=endpoint.port if endpoint.port is not None else _url_port(endpoint.url, default),
            protocol=endpoint.proto,
        )

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        return await self.endpoint.open_proxy(client_addr)


def _url_port(url: str, default: int) -> int:
    """The explicit port of `scheme://host[:port]`, else `default`."""
    authority = url.partition("://")[2]
    _, colon, port = authority.rpartition(":")
    return int(port) if colon and port.isdigit() and "]" not in port else default
