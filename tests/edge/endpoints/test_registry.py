"""The endpoint registry: pure bookkeeping of endpoints, their members, ports and bind tokens."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import trio
import trio.testing

from edge.endpoints.health import HealthPolicy
from edge.endpoints.registry import (
    RECENT_BINDINGS,
    Endpoint,
    EndpointRegistry,
    Member,
    PoolStream,
)
from protocol.rpc.messages import StreamType
from protocol.wire.errors import ErrorCode
from tests.agent.proxying import mux_pair


class _Agent:
    """Stands in for an agent session: each proxy stream it opens is one end of an in-memory
    stream pair; the other end is kept in `opened` with the client address."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, trio.abc.HalfCloseableStream]] = []

    async def open_proxy(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        mine, theirs = trio.testing.memory_stream_pair()
        self.opened.append((client_addr, theirs))
        return mine


def _member(
    session_id: str = "ts_1",
    bind_id: str = "tun_1",
    token: str = "",
    forwards_to: str = "",
    agent: _Agent | None = None,
) -> Member:
    return Member(
        bind_id=bind_id,
        token=token,
        session_id=session_id,
        client_id=f"cl_{session_id}",
        forwards_to=forwards_to,
        opener=(agent or _Agent()).open_proxy,
    )


def _endpoint(
    url: str,
    *members: Member,
    binding: str = "public",
    port: int | None = None,
) -> Endpoint:
    proto, host = url.split("://", 1)
    return Endpoint(
        url=url,
        proto=proto,
        binding=binding,
        host=host,
        port=port,
        members=members or (_member(),),
    )


def test_add_then_lookup_by_url_and_len() -> None:
    registry = EndpointRegistry()
    endpoint = _endpoint("https://app.example.com")
    registry.add(endpoint)
    assert registry.lookup("https://app.example.com") is endpoint
    assert registry.lookup("https://other.example.com") is None
    assert len(registry) == 1


def test_a_second_endpoint_for_an_online_url_is_refused() -> None:
    registry = EndpointRegistry()
    first = _endpoint("https://app.example.com", _member("ts_1"))
    registry.add(first)
    with pytest.raises(KeyError, match="already registered"):
        registry.add(_endpoint("https://app.example.com", _member("ts_2")))
    assert registry.lookup("https://app.example.com") is first


def test_an_endpoint_without_members_is_refused() -> None:
    registry = EndpointRegistry()
    with pytest.raises(KeyError, match="no member"):
        registry.add(Endpoint(url="https://a.example.com", proto="https", host="a.example.com"))
    assert registry.lookup("https://a.example.com") is None


def test_remove_forgets_only_the_given_member() -> None:
    registry = EndpointRegistry()
    old_member = _member("ts_old")
    registry.add(_endpoint("https://app.example.com", old_member))
    assert registry.remove("https://app.example.com", old_member) is True
    new_member = _member("ts_old")  # equal by value, but another session's bind
    newer = _endpoint("https://app.example.com", new_member)
    registry.add(newer)
    # The old member is gone; removing it again must not take the newer endpoint offline.
    assert registry.remove("https://app.example.com", old_member) is False
    assert registry.lookup("https://app.example.com") is newer
    assert registry.remove("https://elsewhere.example.com", new_member) is False
    assert registry.lookup("https://app.example.com") is newer


def test_removing_one_member_of_a_pool_keeps_the_others_online() -> None:
    registry = EndpointRegistry()
    first, second = _member("ts_1", token="tok1"), _member("ts_2", token="tok2")
    registry.add(_endpoint("tcp://edge.example.com:20001", first, second, port=20001))
    assert registry.remove("tcp://edge.example.com:20001", first) is True
    left = registry.lookup("tcp://edge.example.com:20001")
    assert left is not None
    assert left.members == (second,)
    assert registry.port_in_use(20001)
    assert registry.recent_url("tok1") == "tcp://edge.example.com:20001"
    assert registry.remove("tcp://edge.example.com:20001", second) is True
    assert registry.lookup("tcp://edge.example.com:20001") is None
    assert not registry.port_in_use(20001)
    assert len(registry) == 0


def test_lookup_public_prefers_exact_then_the_closest_wildcard() -> None:
    registry = EndpointRegistry()
    for url in (
        "https://*.example.com",
        "https://*.b.example.com",
        "https://a.b.example.com",
        "tls://a.b.example.com",
    ):
        registry.add(_endpoint(url))
    cases: dict[tuple[str, str], str | None] = {
        ("https", "a.b.example.com"): "https://a.b.example.com",
        ("https", "c.b.example.com"): "https://*.b.example.com",
        ("https", "x.y.b.example.com"): "https://*.b.example.com",
        ("https", "z.example.com"): "https://*.example.com",
        ("tls", "a.b.example.com"): "tls://a.b.example.com",
        ("tls", "c.b.example.com"): None,
        ("https", "example.org"): None,
        ("http", "a.b.example.com"): None,
    }
    for (scheme, host), expected in cases.items():
        found = registry.lookup_public(scheme, host)
        assert (found.url if found is not None else None) == expected, (scheme, host)


def test_internal_endpoints_are_never_public() -> None:
    registry = EndpointRegistry()
    registry.add(_endpoint("https://api.clinic.internal", binding="internal"))
    registry.add(_endpoint("https://*.internal", binding="internal"))
    assert registry.lookup_public("https", "api.clinic.internal") is None
    assert registry.lookup_public("https", "db.clinic.internal") is None
    assert registry.lookup("https://api.clinic.internal") is not None


def test_ports_are_held_while_online_and_allocated_from_the_free_ones() -> None:
    registry = EndpointRegistry(rng=random.Random(7))
    ports = range(20000, 20003)
    member = _member()
    registry.add(_endpoint("tcp://edge.example.com:20001", member, port=20001))
    assert registry.port_in_use(20001)
    allocated = {registry.allocate_port(ports) for _ in range(50)}
    assert allocated == {20000, 20002}
    assert registry.allocate_port(ports, unusable={20000, 20002}) is None
    registry.remove("tcp://edge.example.com:20001", member)
    assert not registry.port_in_use(20001)
    assert registry.allocate_port(ports, unusable={20000, 20002}) == 20001


def test_recent_url_by_bind_token_survives_removal() -> None:
    registry = EndpointRegistry()
    member = _member(token="tok")
    registry.add(_endpoint("https://r7.burrow.localhost", member))
    assert registry.recent_url("tok") is None  # still online: nothing to give back yet
    registry.remove("https://r7.burrow.localhost", member)
    assert registry.recent_url("tok") == "https://r7.burrow.localhost"
    assert registry.recent_url("") is None
    assert registry.recent_url("other") is None


def test_recent_urls_are_bounded() -> None:
    registry = EndpointRegistry()
    for n in range(RECENT_BINDINGS + 1):
        member = _member(token=f"tok{n}")
        registry.add(_endpoint(f"https://r{n}.example.com", member))
        registry.remove(f"https://r{n}.example.com", member)
    assert registry.recent_url("tok0") is None  # the oldest was forgotten
    assert registry.recent_url(f"tok{RECENT_BINDINGS}") == f"https://r{RECENT_BINDINGS}.example.com"


def test_held_by_lists_a_sessions_endpoints_with_its_member() -> None:
    registry = EndpointRegistry()
    mine_a, mine_b, theirs = _member("ts_me", "a"), _member("ts_me", "b"), _member("ts_them")
    a = _endpoint("https://a.example.com", mine_a)
    b = _endpoint("tls://b.example.com", mine_b)
    registry.add(a)
    registry.add(b)
    registry.add(_endpoint("https://c.example.com", theirs))
    assert registry.held_by("ts_me") == [(a, mine_a), (b, mine_b)]
    assert registry.held_by("ts_nobody") == []


def test_forwards_to_is_the_members() -> None:
    endpoint = _endpoint("https://a.example.com", _member(forwards_to="http://localhost:3000"))
    assert endpoint.forwards_to == "http://localhost:3000"


async def test_open_proxy_goes_to_the_member_with_the_client_address() -> None:
    with trio.fail_after(5):
        agent = _Agent()
        member = _member(agent=agent)
        endpoint = _endpoint("https://a.example.com", member)
        assert endpoint.pick() is member
        stream = await endpoint.open_proxy("203.0.113.9:4242")
        ((client_addr, theirs),) = agent.opened
        assert client_addr == "203.0.113.9:4242"
        await stream.send_all(b"hello")
        assert await theirs.receive_some(5) == b"hello"


async def test_open_proxy_without_members_is_a_broken_resource() -> None:
    with trio.fail_after(5):
        endpoint = Endpoint(url="https://a.example.com", proto="https", host="a.example.com")
        assert endpoint.pick() is None
        with pytest.raises(trio.BrokenResourceError, match="no agent session"):
            await endpoint.open_proxy("203.0.113.9:4242")


# ------------------------------------------------------------------------------------- pools


class _Clock:
    """The registry's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pooled(session_id: str, agent: _Agent | None = None, *, opener: object = None) -> Member:
    member = _member(session_id=session_id, agent=agent)
    return (
        replace(member, pooling=True)
        if opener is None
        else replace(member, pooling=True, opener=opener)
    )


def _pool_registry(clock: _Clock | None = None) -> EndpointRegistry:
    return EndpointRegistry(
        rng=random.Random(3),
        health_policy=HealthPolicy(backoff=1.0, backoff_max=4.0),
        clock=clock or _Clock(),
    )


def _pool_endpoint(registry: EndpointRegistry, url: str, member: Member, **kw: object) -> Endpoint:
    return replace(_endpoint(url, member, **kw), runtime=registry.runtime)  # type: ignore[arg-type]


def test_pooled_members_form_a_pool_that_dissolves_with_its_last_member() -> None:
    registry = _pool_registry()
    url = "tcp://1.2.3.4:20001"
    a, b = _pooled("ts_a"), _pooled("ts_b")
    registry.add(_pool_endpoint(registry, url, a, port=20001))
    joined = registry.add(_pool_endpoint(registry, url, b, port=20001))
    assert [m.session_id for m in joined.members] == ["ts_a", "ts_b"]
    assert registry.lookup(url) is joined and len(registry) == 1
    assert registry.remove(url, a)
    left = registry.lookup(url)
    assert left is not None and left.members == (b,)
    assert registry.port_in_use(20001)  # the pool still holds its port
    assert registry.remove(url, b)
    assert registry.lookup(url) is None and not registry.port_in_use(20001)


def test_a_member_without_pooling_never_joins() -> None:
    registry = _pool_registry()
    url = "https://app.example.com"
    registry.add(_pool_endpoint(registry, url, _pooled("ts_a")))
    with pytest.raises(KeyError, match="already registered"):
        registry.add(_pool_endpoint(registry, url, _member(session_id="ts_b")))
    plain = _pool_registry()
    plain.add(_pool_endpoint(plain, url, _member(session_id="ts_a")))
    with pytest.raises(KeyError, match="already registered"):
        plain.add(_pool_endpoint(plain, url, _pooled("ts_b")))


async def test_requests_spread_over_the_pool_by_open_streams() -> None:
    registry = _pool_registry()
    url = "https://app.example.com"
    agents = {"ts_a": _Agent(), "ts_b": _Agent()}
    registry.add(_pool_endpoint(registry, url, _pooled("ts_a", agents["ts_a"])))
    registry.add(_pool_endpoint(registry, url, _pooled("ts_b", agents["ts_b"])))
    endpoint = registry.lookup(url)
    assert endpoint is not None
    held = [await endpoint.open_proxy("1.1.1.1:1") for _ in range(10)]
    # Each stream stays open, so the member holding fewer always wins: 5 and 5.
    assert [len(agent.opened) for agent in agents.values()] == [5, 5]
    assert sorted(m.load.outstanding for m in endpoint.members) == [5, 5]
    for stream in held:
        await stream.aclose()
    assert [m.load.outstanding for m in endpoint.members] == [0, 0]
    assert [m.load.opened for m in endpoint.members] == [5, 5]


async def test_opening_fails_over_to_another_member_and_backs_the_first_off() -> None:
    clock = _Clock()
    registry = _pool_registry(clock)
    url = "https://app.example.com"

    async def gone(client_addr: str) -> trio.abc.HalfCloseableStream:
        raise trio.BrokenResourceError("the session is gone")

    good = _Agent()
    dead = _pooled("ts_dead", opener=gone)
    registry.add(_pool_endpoint(registry, url, dead))
    registry.add(_pool_endpoint(registry, url, _pooled("ts_good", good)))
    endpoint = registry.lookup(url)
    assert endpoint is not None
    stream = await endpoint.open_proxy("1.1.1.1:1", first=dead)  # as if routed to it
    assert len(good.opened) == 1 and stream is not None
    assert dead.load.health.failures == 1
    # In its back-off nothing is routed to it ...
    assert {endpoint.pick() for _ in range(20)} == {endpoint.members[1]}
    # ... and once it is over, it may be probed again.
    clock.now += 1.0
    assert dead in {endpoint.pick() for _ in range(40)}


async def test_opening_fails_when_every_member_fails() -> None:
    registry = _pool_registry()
    url = "https://app.example.com"

    async def gone(client_addr: str) -> trio.abc.HalfCloseableStream:
        raise trio.BrokenResourceError("the session is gone")

    registry.add(_pool_endpoint(registry, url, _pooled("ts_a", opener=gone)))
    registry.add(_pool_endpoint(registry, url, _pooled("ts_b", opener=gone)))
    endpoint = registry.lookup(url)
    assert endpoint is not None
    with pytest.raises(trio.BrokenResourceError, match="gone"):
        await endpoint.open_proxy("1.1.1.1:1")
    assert [m.load.health.failures for m in endpoint.members] == [1, 1]


async def test_a_removed_member_is_never_picked_from_an_endpoint_value_held_before() -> None:
    registry = _pool_registry()
    url = "https://app.example.com"
    a, b = _pooled("ts_a"), _pooled("ts_b")
    registry.add(_pool_endpoint(registry, url, a))
    held = registry.add(_pool_endpoint(registry, url, b))
    registry.remove(url, a, reason="agent sent GOAWAY")
    assert a.gone and a.load.health.reason == "agent sent GOAWAY"
    assert {held.pick() for _ in range(20)} == {b}
    registry.remove(url, b)
    assert held.pick() is None
    with pytest.raises(trio.BrokenResourceError, match="no agent session"):
        await held.open_proxy("1.1.1.1:1")


async def test_a_stream_refused_before_any_byte_backs_its_member_off() -> None:
    registry = _pool_registry()
    url = "https://app.example.com"
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):

            async def refuse_one() -> None:
                stream = await agent.accept_stream()
                await stream.receive_some()
                stream.reset(ErrorCode.STREAM_REFUSED)  # as an agent whose upstream is down

            async def over_mux(client_addr: str) -> trio.abc.HalfCloseableStream:
                return await edge.open_typed_stream(StreamType.PROXY)

            member = _pooled("ts_a", opener=over_mux)
            registry.add(_pool_endpoint(registry, url, member))
            registry.add(_pool_endpoint(registry, url, _pooled("ts_b")))
            endpoint = registry.lookup(url)
            assert endpoint is not None
            nursery.start_soon(refuse_one)
            stream = await endpoint.open_proxy("1.1.1.1:1", first=member)
            assert isinstance(stream, PoolStream) and stream.member is member
            await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some()
            assert stream.refused_early and member.load.health.failures == 1
            assert "8012" in member.load.health.reason
            assert endpoint.alternative(member)
            await stream.aclose()
            assert member.load.outstanding == 0


async def test_the_first_bytes_back_make_a_probed_member_healthy() -> None:
    clock = _Clock()
    registry = _pool_registry(clock)
    url = "https://app.example.com"
    agent = _Agent()
    member = _pooled("ts_a", agent)
    registry.add(_pool_endpoint(registry, url, member))
    registry.add(_pool_endpoint(registry, url, _pooled("ts_b")))
    endpoint = registry.lookup(url)
    assert endpoint is not None
    endpoint.refused(member, "test")
    clock.now += 1.0  # back-off over: probing
    stream = await endpoint.open_proxy("1.1.1.1:1", first=member)
    (_, theirs) = agent.opened[0]
    await theirs.send_all(b"HTTP/1.1 200 OK\r\n")
    assert await stream.receive_some() == b"HTTP/1.1 200 OK\r\n"
    assert member.load.health.failures == 0
    assert not stream.reusable  # a pool balances every request


async def test_pick_lets_the_kept_member_win_a_tie_and_keeps_says_when_it_may_carry_on() -> None:
    clock = _Clock()
    registry = _pool_registry(clock)
    url = "https://app.example.com"
    registry.add(_pool_endpoint(registry, url, _pooled("ts_a", _Agent())))
    registry.add(_pool_endpoint(registry, url, _pooled("ts_b", _Agent())))
    endpoint = registry.lookup(url)
    assert endpoint is not None
    a, b = endpoint.members
    held = [await endpoint.open_proxy("1.1.1.1:1", first=m) for m in (a, b)]  # 1 against 1
    assert {endpoint.pick(keep=a) for _ in range(50)} == {a}
    assert {endpoint.pick(keep=b) for _ in range(50)} == {b}
    assert {endpoint.pick() for _ in range(50)} == {a, b}  # without one, ties are random
    extra = await endpoint.open_proxy("1.1.1.1:1", first=a)  # a holds 2, b 1
    assert {endpoint.pick(keep=a) for _ in range(50)} == {b}  # fewer streams still win
    assert endpoint.keeps(a, a) and not endpoint.keeps(a, b)
    endpoint.refused(a, "test")
    assert not endpoint.keeps(a, a)  # in its back-off
    clock.now += 1.0
    assert not endpoint.keeps(a, a)  # probing: a fresh stream is the probe
    registry.remove(url, b)
    alone = registry.lookup(url)
    assert alone is not None and not alone.keeps(b, b)  # b left the pool
    for stream in (*held, extra):
        await stream.aclose()


async def test_a_pool_stream_keeps_splices_direct_path_and_confirms_by_it() -> None:
    """A tcp:// connection to a pooled endpoint is spliced from a PoolStream: it must pass
    `deliver_to` on (else every message costs a task switch), and bytes delivered that way
    mark a probed member healthy as received ones do."""
    clock = _Clock()
    registry = _pool_registry(clock)
    url = "tcp://1.tcp.example.com:20001"
    with trio.fail_after(5):
        async with mux_pair() as (agent, edge):

            async def over_mux(client_addr: str) -> trio.abc.HalfCloseableStream:
                return await edge.open_typed_stream(StreamType.PROXY)

            member = _pooled("ts_a", opener=over_mux)
            registry.add(_pool_endpoint(registry, url, member))
            registry.add(_pool_endpoint(registry, url, _pooled("ts_b")))
            endpoint = registry.lookup(url)
            assert endpoint is not None
            endpoint.refused(member, "test")
            clock.now += 1.0  # back-off over: probing
            stream = await endpoint.open_proxy("1.1.1.1:1", first=member)
            assert isinstance(stream, PoolStream)
            theirs = await agent.accept_stream()
            delivered: list[bytes] = []

            def sink(data: bytes) -> int:
                delivered.append(bytes(data))
                return len(data)

            stream.deliver_to(sink)
            async with trio.open_nursery() as nursery:
                # deliver_to hands data over only while a reader is parked in receive_some
                nursery.start_soon(stream.receive_some)
                await trio.testing.wait_all_tasks_blocked()
                await theirs.send_all(b"220 ready\r\n")
                while not delivered:
                    await trio.sleep(0.001)
                assert delivered == [b"220 ready\r\n"]
                assert member.load.health.failures == 0 and not stream.refused_early
                stream.deliver_to(None)
                await theirs.send_all(b"after\r\n")
            assert delivered == [b"220 ready\r\n"]  # detached: the parked reader got it
            await stream.aclose()
