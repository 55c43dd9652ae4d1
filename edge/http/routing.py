"""Where an HTTP request goes: the edge's online http(s) endpoints, found by host and scheme.

`HttpRouter.route` is the one lookup both HTTP/1.1 and HTTP/2 make (through
`edge.http.seam.decide`); the `HttpRoute` it returns is the endpoint, and its
`open_agent_stream` is the one place the edge opens an agent stream for an HTTP request. A
route is made per request, but the `endpoint.*` facts a Traffic Policy reads
(`HttpRoute.endpoint_facts`) are made once per endpoint and shared (`_endpoint_facts`).

Names: an *agent stream* is the proxy stream the edge opens to the endpoint's agent over its
muxado session; the *upstream* is the customer's service behind the agent, which the agent
dials and pipes the agent stream's bytes to.

Pools. A route to a pool pins the member it picked (`Endpoint.pick`: healthy members, power of
two choices), so the Traffic Policy that runs is that member's (ngrok picks the member first,
then runs its policy) and the request goes to it; opening its agent stream falls back to
another member if that fails (`Endpoint.open_proxy`). An https:// connection's router is
`EndpointRouter.admitted` by the member whose `on_tcp_connect` rules let it in: the endpoint's
requests on it go only to members with those same rules.

Keeping an agent stream to a pool. Each request is still balanced on its own: the member is
chosen per request as for a new one (power of two choices over the streams each member holds,
the connection's kept stream counted), except that a tie goes to the member of the stream the
connection keeps (`keeping` hands the router that member). If the choice is that member, the
member is still in the pool and healthy, the kept stream carries the request (`reusable`);
otherwise the connection closes it and opens one to the chosen member. Why per request and not
per connection: the same rule keeps one keep-alive connection alternating over two members
(1 stream against 0: it moves), yet many connections split evenly stay put (8 against 8 under
the benchmark's 16: a tie, so no stream is reopened), and a member that joins takes load from
open connections at once instead of from new ones only. Pinning a connection to its member would
keep a long-lived connection's every request on one member however the pool changes.
A kept stream that turns out dead is the h1 shell's to retry as for any endpoint.
`retry_elsewhere` says whether a request whose agent refused it may be sent again to another
member.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from edge.config import LimitsConfig
from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry, Member, PoolStream
from edge.policy.activation import EndpointFacts
from edge.policy.forward_internal import candidate_urls

__all__ = ["EndpointRouter", "HttpRoute", "HttpRouter", "keeping", "retry_elsewhere", "reusable"]


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
    (an exact name first, then the closest wildcard; `EndpointRegistry.lookup_public`); and,
    for forward-internal (`edge.http.forwarding.InternalRouter`), internal http/https
    endpoints by their canonical URL, with the chain limit `max_forward_hops`."""

    __slots__ = ("_admitted_by", "_admitted_to", "_registry", "max_forward_hops")

    def __init__(
        self,
        registry: EndpointRegistry,
        *,
        max_forward_hops: int = LimitsConfig().forward_internal_max_hops,
    ) -> None:
        self._registry = registry
        self.max_forward_hops = max_forward_hops
        self._admitted_to = ""  # the endpoint URL whose on_tcp_connect let the connection in
        self._admitted_by: Member | None = None  # ... and the member whose rules those were

    def admitted(self, url: str, member: Member) -> EndpointRouter:
        """The router for one connection that `member`'s `on_tcp_connect` rules let in to
        endpoint `url` (no rules count too): that endpoint's requests go only to members with
        the same rules (`Endpoint.pick(like=...)`), never to one whose own `on_tcp_connect`
        would have been another check (in a pool whose members' policies differ: a rolling
        update adding restrict-ips, say). With none left, the endpoint is offline to it."""
        router = EndpointRouter(self._registry, max_forward_hops=self.max_forward_hops)
        router._admitted_to = url
        router._admitted_by = member
        return router

    def route(self, host: str, scheme: str, *, keep: Member | None = None) -> HttpRoute | None:
        """As `HttpRouter.route`; `keep` is the pool member whose agent stream the client
        connection holds, if any: it wins a tie (`Endpoint.pick`)."""
        endpoint = self._registry.lookup_public(scheme, host)
        if endpoint is None:
            return None
        like = self._admitted_by if endpoint.url == self._admitted_to else None
        member = endpoint.pick(keep=keep, like=like)
        return None if member is None else _EndpointRoute(endpoint, member, like)

    def route_internal(self, url: str, *, keep: Member | None = None) -> HttpRoute | None:
        """The online internal http/https endpoint serving the canonical URL `url` (the exact
        one first, then the closest wildcard), or None; `keep` as for `route`."""
        for candidate in candidate_urls(url):
            endpoint = self._registry.lookup(candidate)
            if (
                endpoint is not None
                and endpoint.binding == "internal"
                and endpoint.proto in ("http", "https")
            ):
                member = endpoint.pick(keep=keep)
                if member is not None:
                    return _EndpointRoute(endpoint, member)
        return None


@dataclass(frozen=True, slots=True)
class _EndpointRoute:
    """A registry endpoint as an `HttpRoute`: the endpoint is the identity (an agent stream is
    reused only for the same endpoint), `member` the one it picked (its policy runs, its agent
    gets the request unless opening a stream to it fails)."""

    endpoint: Endpoint
    member: Member
    # Only members with this one's on_tcp_connect rules may take the request (`admitted`).
    like: Member | None = None

    @property
    def key(self) -> object:
        return self.endpoint

    @property
    def forwards_to(self) -> str:
        return self.member.forwards_to or "its upstream"

    @property
    def policy(self) -> AttachedPolicy | None:
        return self.member.policy

    def endpoint_facts(self) -> EndpointFacts:
        endpoint = self.endpoint
        return _endpoint_facts(endpoint.url, endpoint.host, endpoint.port, endpoint.proto)

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        return await self.endpoint.open_proxy(client_addr, first=self.member, like=self.like)


@dataclass(frozen=True, slots=True)
class _KeepingRouter:
    """An `EndpointRouter` routing a request on a connection that keeps an agent stream to
    pool member `keep` (see the module docstring)."""

    router: EndpointRouter
    keep: Member

    @property
    def max_forward_hops(self) -> int:
        return self.router.max_forward_hops

    def route(self, host: str, scheme: str) -> HttpRoute | None:
        return self.router.route(host, scheme, keep=self.keep)

    def route_internal(self, url: str) -> HttpRoute | None:
        return self.router.route_internal(url, keep=self.keep)


def keeping(router: HttpRouter, kept: trio.abc.HalfCloseableStream | None) -> HttpRouter:
    """The router to route a connection's next request with, when it keeps agent stream
    `kept` (None: it keeps none): `router` itself, unless `kept` goes to a pool member and
    `router` is an `EndpointRouter`; then one that lets that member win a tie."""
    if (
        isinstance(kept, PoolStream)
        and isinstance(router, EndpointRouter)
        and len(kept.endpoint.members) > 1
    ):
        return _KeepingRouter(router, kept.member)
    return router


def reusable(stream: trio.abc.HalfCloseableStream, route: HttpRoute) -> bool:
    """Whether a kept agent stream may carry a request routed to `route` (the caller has
    checked it is the stream's endpoint: the same `key`): a stream to a member that has left
    never; a stream to a pool only when `route` chose its member and that member is still in
    the pool and healthy (`Endpoint.keeps`); any other stream always."""
    if not isinstance(stream, PoolStream):
        return True
    if stream.reusable:
        return True
    return (
        isinstance(route, _EndpointRoute)
        and not stream.member.gone
        and route.endpoint.keeps(stream.member, route.member)
    )


def retry_elsewhere(stream: trio.abc.HalfCloseableStream) -> bool:
    """Whether a request whose agent stream failed before any byte came back (a STREAM_REFUSED
    or REMOTE_GONE_AWAY reset: no byte reached an upstream) may go to another member of the
    same pool now: the stream's member is in back-off, so opening again picks another."""
    return (
        isinstance(stream, PoolStream)
        and stream.refused_early
        and stream.endpoint.alternative(stream.member)
    )


#: How many endpoints' `endpoint.*` facts are kept made (`_endpoint_facts`): a route is made
#: per request, but its endpoint's facts only change with the endpoint, so each policed request
#: would otherwise build the same frozen facts again. Past the bound the oldest are made anew.
_ENDPOINT_FACTS_KEPT: Final = 1024


@functools.lru_cache(maxsize=_ENDPOINT_FACTS_KEPT)
def _endpoint_facts(url: str, host: str, port: int | None, proto: str) -> EndpointFacts:
    """The endpoint as a policy sees it, made once per distinct endpoint (frozen: shared)."""
    default = 443 if proto == "https" else 80
    return EndpointFacts(
        url=url,
        host=host,
        port=port if port is not None else _url_port(url, default),
        protocol=proto,
    )


def _url_port(url: str, default: int) -> int:
    """The explicit port of `scheme://host[:port]`, else `default`."""
    authority = url.partition("://")[2]
    _, colon, port = authority.rpartition(":")
    return int(port) if colon and port.isdigit() and "]" not in port else default
