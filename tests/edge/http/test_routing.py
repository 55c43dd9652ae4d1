"""edge/http/routing.py: Host -> endpoint over the real registry, and the agent stream open."""

from __future__ import annotations

import trio
import trio.testing

from edge.endpoints.registry import Endpoint, EndpointRegistry, Member
from edge.http.routing import EndpointRouter


def endpoint(url: str, *, binding: str = "public", opened: list[str] | None = None) -> Endpoint:
    scheme, host = url.split("://")

    async def opener(client_addr: str) -> trio.abc.HalfCloseableStream:
        if opened is not None:
            opened.append(client_addr)
        left, _right = trio.testing.memory_stream_pair()
        return left

    member = Member(
        bind_id="tun_1",
        token="t",
        session_id="ts_1",
        client_id="cl_1",
        forwards_to="http://localhost:8080",
        opener=opener,
    )
    return Endpoint(url=url, proto=scheme, binding=binding, host=host, members=(member,))


def test_an_exact_name_wins_over_a_wildcard_and_the_scheme_must_match() -> None:
    registry = EndpointRegistry()
    exact, wild = endpoint("https://a.example.com"), endpoint("https://*.example.com")
    registry.add(exact)
    registry.add(wild)
    router = EndpointRouter(registry)
    route = router.route("a.example.com", "https")
    assert route is not None and route.key is exact
    other = router.route("b.example.com", "https")
    assert other is not None and other.key is wild
    assert router.route("a.example.com", "http") is None
    assert router.route("example.org", "https") is None


def test_internal_endpoints_are_never_routed_from_a_public_port() -> None:
    registry = EndpointRegistry()
    registry.add(endpoint("https://api.clinic.internal", binding="internal"))
    assert EndpointRouter(registry).route("api.clinic.internal", "https") is None


async def test_a_route_opens_agent_streams_through_its_endpoint() -> None:
    registry = EndpointRegistry()
    opened: list[str] = []
    registry.add(endpoint("https://a.example.com", opened=opened))
    route = EndpointRouter(registry).route("a.example.com", "https")
    assert route is not None
    assert route.forwards_to == "http://localhost:8080"
    with trio.fail_after(5):
        stream = await route.open_agent_stream("203.0.113.5:4000")
    await stream.aclose()
    assert opened == ["203.0.113.5:4000"]
