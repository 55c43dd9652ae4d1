"""edge/http/routing.py: Host -> endpoint over the real registry, and the agent stream open."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest
import trio
import trio.testing

from edge.endpoints.health import HEALTHY, gone
from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry, Member
from edge.http.routing import EndpointRouter, keeping, retry_elsewhere, reusable
from edge.policy.document import load_policy
from edge.policy.validate import validate


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


def test_route_internal_finds_online_internal_http_endpoints_exact_then_wildcard() -> None:
    registry = EndpointRegistry()
    exact = endpoint("https://api.clinic.internal", binding="internal")
    wild = endpoint("https://*.clinic.internal", binding="internal")
    for item in (
        exact,
        wild,
        endpoint("https://public.example.com"),
        endpoint("tls://db.clinic.internal", binding="internal"),
    ):
        registry.add(item)
    router = EndpointRouter(registry, max_forward_hops=3)
    assert router.max_forward_hops == 3
    found = router.route_internal("https://api.clinic.internal")
    assert found is not None and found.key is exact
    other = router.route_internal("https://web.clinic.internal")
    assert other is not None and other.key is wild
    assert router.route_internal("https://public.example.com") is None  # not internal
    assert router.route_internal("https://db.other.internal") is None
    assert EndpointRouter(registry).max_forward_hops == 5  # limits.forward_internal_max_hops


def pooled_member(
    session_id: str,
    opened: list[str],
    policy: AttachedPolicy | None,
    *,
    refusing: set[str] | None = None,
) -> Member:
    """A pool member whose agent streams are memory streams; with its session id in `refusing`,
    opening one fails as a gone session's does."""

    async def opener(client_addr: str) -> trio.abc.HalfCloseableStream:
        if refusing is not None and session_id in refusing:
            raise trio.BrokenResourceError("the agent's session is gone")
        opened.append(session_id)
        left, _right = trio.testing.memory_stream_pair()
        return left

    return Member(
        bind_id="tun_1",
        token="",
        session_id=session_id,
        client_id="cl",
        forwards_to=f"http://{session_id}:8080",
        opener=opener,
        policy=policy,
        pooling=True,
    )


async def test_a_pool_route_pins_its_member_runs_its_policy_and_balances_requests() -> None:
    registry = EndpointRegistry(rng=random.Random(5))
    opened: list[str] = []
    policy = AttachedPolicy(validate(load_policy("{}"), protocol="https"), "{}")
    url = "https://api.clinic.internal"
    for session_id, attached in (("ts_a", policy), ("ts_b", None)):
        registry.add(
            Endpoint(
                url=url,
                proto="https",
                binding="internal",
                host="api.clinic.internal",
                members=(pooled_member(session_id, opened, attached),),
                runtime=registry.runtime,
            )
        )
    router = EndpointRouter(registry)
    streams = []
    for _ in range(20):
        route = router.route_internal(url)  # forward-internal to a pooled internal target
        assert route is not None
        member = route.member  # type: ignore[attr-defined]
        assert route.policy is member.policy  # the picked member's own policy
        assert route.forwards_to == f"http://{member.session_id}:8080"
        stream = await route.open_agent_stream("1.1.1.1:1")
        assert opened[-1] == member.session_id  # the request goes to the member it picked
        assert reusable(stream, route)  # kept for a request routed to its (healthy) member
        assert retry_elsewhere(stream)  # nothing came back yet and the other member is there
        streams.append(stream)
    assert sorted(Counter(opened).values()) == [10, 10]  # open streams kept even: 10 and 10
    for stream in streams:
        await stream.aclose()


def public_pool(opened: list[str], *, seed: int = 5) -> tuple[EndpointRegistry, EndpointRouter]:
    registry = EndpointRegistry(rng=random.Random(seed))
    for session_id in ("ts_a", "ts_b"):
        registry.add(
            Endpoint(
                url="https://app.example.com",
                proto="https",
                host="app.example.com",
                members=(pooled_member(session_id, opened, None),),
                runtime=registry.runtime,
            )
        )
    return registry, EndpointRouter(registry)


class Connection:
    """A client connection as the h1 shell treats one: the agent stream it keeps, routed with
    `keeping` and reused when `reusable` says so, else closed and replaced."""

    def __init__(self) -> None:
        self.kept: trio.abc.HalfCloseableStream | None = None
        self.members: list[str] = []

    async def request(self, router: EndpointRouter) -> bool:
        """One request; True when it reused the kept stream."""
        route = keeping(router, self.kept).route("app.example.com", "https")
        assert route is not None
        member = route.member  # type: ignore[attr-defined]
        self.members.append(member.session_id)
        if self.kept is not None and reusable(self.kept, route):
            return True
        if self.kept is not None:
            await self.kept.aclose()
        self.kept = await route.open_agent_stream("1.1.1.1:1")
        return False


async def test_many_keep_alive_connections_split_evenly_then_reuse_their_streams() -> None:
    opened: list[str] = []
    registry, router = public_pool(opened)
    connections = [Connection() for _ in range(16)]  # the benchmark's wrk -c16
    for connection in connections:
        assert not await connection.request(router)  # each first request opens a stream
    assert sorted(Counter(opened).values()) == [8, 8]
    reused = [await c.request(router) for _ in range(50) for c in connections]
    assert all(reused)  # 8 against 8 is a tie, won by the kept member: no stream reopened
    assert len(opened) == 16
    served = Counter(m for c in connections for m in c.members)
    assert served["ts_a"] == served["ts_b"]  # and the requests split evenly
    endpoint = registry.lookup("https://app.example.com")
    assert endpoint is not None
    assert [m.load.outstanding for m in endpoint.members] == [8, 8]


async def test_one_keep_alive_connection_still_alternates_over_the_pool() -> None:
    opened: list[str] = []
    _, router = public_pool(opened)
    connection = Connection()
    reused = [await connection.request(router) for _ in range(20)]
    # Its own stream counts: 1 against 0, so every request moves to the other member.
    assert not any(reused)
    assert Counter(connection.members) == {"ts_a": 10, "ts_b": 10}


async def test_a_kept_pool_stream_is_not_reused_when_its_member_is_unwell_or_gone() -> None:
    opened: list[str] = []
    registry, router = public_pool(opened)
    endpoint = registry.lookup("https://app.example.com")
    assert endpoint is not None
    route = router.route("app.example.com", "https")
    assert route is not None
    member = route.member  # type: ignore[attr-defined]
    other = next(m for m in endpoint.members if m is not member)
    stream = await route.open_agent_stream("1.1.1.1:1")
    assert reusable(stream, route)
    # A route that chose the other member: the kept stream is closed, not reused.
    elsewhere = type(route)(endpoint, other)
    assert not reusable(stream, elsewhere)
    # Its member in a back-off (another stream got 8012): a fresh stream, not the kept one.
    endpoint.refused(member, "test")
    assert not reusable(stream, route)
    member.load.health = HEALTHY  # healthy again
    assert reusable(stream, route)
    member.load.health = gone(HEALTHY, "its session ended")
    assert not reusable(stream, route)
    member.load.health = HEALTHY
    # Its member left the pool: the endpoint it is routed on no longer holds it.
    registry.remove(endpoint.url, member)
    after = registry.lookup(endpoint.url)
    assert after is not None
    assert not reusable(stream, type(route)(after, member))
    await stream.aclose()


def test_keeping_passes_a_plain_router_or_stream_through() -> None:
    router = EndpointRouter(EndpointRegistry())
    assert keeping(router, None) is router
    left, _right = trio.testing.memory_stream_pair()
    assert keeping(router, left) is router  # not a pool's stream


def test_a_routes_endpoint_facts_are_made_once_per_endpoint_and_follow_its_fields() -> None:
    registry = EndpointRegistry()
    https = endpoint("https://a.example.com")
    plain = dataclasses.replace(endpoint("http://b.example.com"), port=8080)
    registry.add(https)
    registry.add(plain)
    router = EndpointRouter(registry)
    first, again = router.route("a.example.com", "https"), router.route("a.example.com", "https")
    assert first is not None and again is not None and first is not again  # a route per request
    facts = first.endpoint_facts()
    assert (facts.url, facts.host, facts.port, facts.protocol) == (
        "https://a.example.com",
        "a.example.com",
        443,
        "https",
    )
    assert again.endpoint_facts() is facts  # made once, not per request
    other = router.route("b.example.com", "http")
    assert other is not None
    assert other.endpoint_facts().port == 8080  # the port it holds: another endpoint's facts
    assert other.endpoint_facts().url == "http://b.example.com"
    assert other.endpoint_facts().protocol == "http"


RESTRICTED = "on_tcp_connect: [{actions: [{type: restrict-ips, config: {allow: [127.0.0.2/32]}}]}]"
#: The same on_tcp_connect rules in another document (its HTTP phases run per request anyway).
RESTRICTED_AND_MARKED = (
    RESTRICTED + "\non_http_response: [{actions: [{type: add-headers, "
    "config: {headers: {x-v: '2'}}}]}]"
)


async def test_an_admitted_connection_goes_only_to_members_with_the_admitting_policy() -> None:
    """A connection one pool member's on_tcp_connect let in is served only by members with the
    same on_tcp_connect rules (whatever their HTTP phases): the member without them gets none
    of its requests, nor a fallback stream; other endpoints and other connections are balanced
    as before."""
    registry = EndpointRegistry(rng=random.Random(7))
    opened: list[str] = []
    url = "https://app.example.com"
    strict = AttachedPolicy(validate(load_policy(RESTRICTED), protocol="https"), RESTRICTED)
    marked = AttachedPolicy(
        validate(load_policy(RESTRICTED_AND_MARKED), protocol="https"), RESTRICTED_AND_MARKED
    )
    refusing: set[str] = set()
    members = {}
    for session_id, attached in (("ts_a", strict), ("ts_b", None), ("ts_c", marked)):
        member = pooled_member(session_id, opened, attached, refusing=refusing)
        members[session_id] = member
        registry.add(
            Endpoint(
                url=url,
                proto="https",
                host="app.example.com",
                members=(member,),
                runtime=registry.runtime,
            )
        )
    registry.add(endpoint("https://other.example.com"))
    base = EndpointRouter(registry)
    admitted = base.admitted(url, members["ts_a"])
    picked = set()
    for _ in range(40):
        route = admitted.route("app.example.com", "https")
        assert route is not None
        picked.add(route.member.session_id)  # type: ignore[attr-defined]
        kept = keeping(admitted, None).route("app.example.com", "https")
        assert kept is not None and kept.member.session_id != "ts_b"  # type: ignore[attr-defined]
    assert picked == {"ts_a", "ts_c"}  # the member with the same rules still shares the load
    assert admitted.route("other.example.com", "https") is not None  # another endpoint: as ever
    assert {base.route("app.example.com", "https").member.session_id for _ in range(40)} == {  # type: ignore[union-attr]
        "ts_a",
        "ts_b",
        "ts_c",
    }
    # A failed open falls back only to a member with the same policy.
    members["ts_c"].load.health = gone(HEALTHY, "its session ended")
    route = admitted.route("app.example.com", "https")
    assert route is not None and route.member.session_id == "ts_a"  # type: ignore[attr-defined]

    refusing.add("ts_a")
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
        await route.open_agent_stream("1.1.1.1:1")
    assert "ts_b" not in opened
    # With no member of that policy left, the endpoint is offline to this connection only.
    members["ts_a"].load.health = gone(HEALTHY, "its session ended")
    assert admitted.route("app.example.com", "https") is None
    assert base.route("app.example.com", "https") is not None
