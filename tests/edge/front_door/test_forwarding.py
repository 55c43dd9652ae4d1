"""`edge.front_door.forwarding`: forward-internal on on_tcp_connect, on real loopback connections
(clients bound to 127.0.0.2 and 127.0.0.3) and in-memory agent streams."""

from __future__ import annotations

import functools
import logging

import pytest
import trio

from edge.endpoints.registry import AttachedPolicy, Endpoint, EndpointRegistry, Member
from edge.front_door.forwarding import InternalTargets, admit_to
from edge.front_door.tcp_ports import open_tcp_endpoint_listeners, peer_address, proxy_connection
from edge.policy.document import load_policy
from edge.policy.validate import validate
from tests.edge.front_door.test_connect_policy import connect_from
from tests.edge.front_door.test_tcp_ports import FakeAgent, receive_exactly

BOUND = 10
PUBLIC = "tls://db.acme.example"
DB = "tls://db.clinic-a.internal:5432"


def forward(url: str, *, continue_: bool = False) -> str:
    on_error = ", on_error: continue" if continue_ else ""
    return (
        "on_tcp_connect:\n"
        "  - actions:\n"
        "      - type: forward-internal\n"
        f'        config: {{url: "{url}"{on_error}}}\n'
    )


def endpoint(
    url: str, policy: str | None, agent: FakeAgent | None, *, binding: str = "internal"
) -> Endpoint:
    async def unreachable(client_addr: str) -> trio.abc.HalfCloseableStream:
        raise AssertionError(f"no proxy stream expected to {url}")

    proto = url.partition("://")[0]
    attached = None
    if policy is not None:
        attached = AttachedPolicy(validate(load_policy(policy), protocol=proto), policy)
    member = Member(
        bind_id=f"tun_{url}",
        token="",
        session_id="ts_1",
        client_id="client",
        opener=agent.open if agent is not None else unreachable,
        policy=attached,
    )
    host = url.partition("://")[2].partition(":")[0]
    return Endpoint(url=url, proto=proto, binding=binding, host=host, members=(member,))


def registry(*endpoints: Endpoint) -> EndpointRegistry:
    result = EndpointRegistry()
    for item in endpoints:
        result.add(item)
    return result


async def proxied(
    nursery: trio.Nursery, source: str, public: Endpoint, internal: InternalTargets, hello: bytes
) -> trio.SocketStream:
    """A client from `source` whose connection (its first bytes `hello` already peeked, as the
    front door peeks a ClientHello) is proxied for `public` in `nursery`."""
    listener = (await open_tcp_endpoint_listeners("127.0.0.1", 0))[0]
    port = listener.socket.getsockname()[1]
    client = await connect_from(source, port)
    conn = await listener.accept()
    await listener.aclose()
    await client.send_all(hello)
    assert await receive_exactly(conn, len(hello)) == hello
    nursery.start_soon(
        functools.partial(
            proxy_connection, conn, public, initial_data=hello, sni="db.acme.example",
            internal=internal,
        )
    )  # fmt: skip
    return client


async def test_the_bytes_go_untouched_to_the_internal_endpoints_agent() -> None:
    agent = FakeAgent()
    public = endpoint(PUBLIC, forward(DB), None, binding="public")
    internal = InternalTargets(registry(public, endpoint(DB, None, agent)), max_hops=5)
    hello = b"\x16\x03\x01\x00\x05HELLO"  # stands for the peeked ClientHello
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            client = await proxied(nursery, "127.0.0.2", public, internal, hello)
            stream = await agent.streams.receive()
            assert await receive_exactly(stream, len(hello)) == hello
            await client.send_all(b"\x17\x03\x03 opaque")
            assert await receive_exactly(stream, 10) == b"\x17\x03\x03 opaque"
            await stream.send_all(b"reply")
            assert await receive_exactly(client, 5) == b"reply"
            await client.aclose()
            assert await stream.receive_some(10) == b""  # the client's EOF reaches the agent
            await stream.aclose()
    assert agent.client_addrs and agent.client_addrs[0].startswith("127.0.0.2:")


async def test_the_targets_own_policy_runs() -> None:
    agent = FakeAgent()
    only_office = (
        "on_tcp_connect:\n  - actions: [{type: restrict-ips, config: {allow: [127.0.0.2/32]}}]\n"
    )
    public = endpoint(PUBLIC, forward(DB), None, binding="public")
    internal = InternalTargets(registry(public, endpoint(DB, only_office, agent)), max_hops=5)
    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            refused = await proxied(nursery, "127.0.0.3", public, internal, b"hi")
            assert await refused.receive_some(10) == b""  # closed by the target's restrict-ips
            await refused.aclose()
            allowed = await proxied(nursery, "127.0.0.2", public, internal, b"hi")
            stream = await agent.streams.receive()
            assert await receive_exactly(stream, 2) == b"hi"
            await allowed.aclose()
            await stream.aclose()
    assert len(agent.client_addrs) == 1


async def admitted(public: Endpoint, internal: InternalTargets) -> tuple[Endpoint, object]:
    listener = (await open_tcp_endpoint_listeners("127.0.0.1", 0))[0]
    client = await connect_from("127.0.0.2", listener.socket.getsockname()[1])
    conn = await listener.accept()
    await listener.aclose()
    peer = peer_address(conn)
    assert peer is not None
    endpoint, member, verdict = await admit_to(
        conn, public, peer, sni="db.acme.example", internal=internal
    )
    assert member is None or any(m is member for m in endpoint.members)
    if verdict:
        await conn.aclose()
    else:
        assert await client.receive_some(10) == b""  # closed, nothing sent
    await client.aclose()
    return endpoint, verdict


async def test_an_offline_target_closes_the_connection_with_3200_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.front_door.forwarding")
    public = endpoint(PUBLIC, forward(DB), None, binding="public")
    with trio.fail_after(BOUND):
        where, admitted_ = await admitted(public, InternalTargets(registry(public), max_hops=5))
    assert (where, admitted_) == (public, False)
    assert any("ERR_NGROK_3200" in r.getMessage() and DB in r.getMessage() for r in caplog.records)


async def test_on_error_continue_lets_the_connection_reach_the_forwarding_endpoint() -> None:
    public = endpoint(PUBLIC, forward(DB, continue_=True), FakeAgent(), binding="public")
    with trio.fail_after(BOUND):
        where, admitted_ = await admitted(public, InternalTargets(registry(public), max_hops=5))
    assert (where, admitted_) == (public, True)


async def test_a_loop_and_a_chain_past_the_limit_close_with_3501(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.front_door.forwarding")
    other = "tcp://other.clinic-a.internal:7000"
    public = endpoint(PUBLIC, forward(DB), None, binding="public")
    looping = registry(
        public, endpoint(DB, forward(other), None), endpoint(other, forward(DB), None)
    )
    with trio.fail_after(BOUND):
        assert (await admitted(public, InternalTargets(looping, max_hops=5)))[1] is False
    assert any(
        "ERR_NGROK_3501" in r.getMessage() and "loop" in r.getMessage() for r in caplog.records
    )
    caplog.clear()
    last = endpoint(other, None, FakeAgent())
    chain = registry(public, endpoint(DB, forward(other), None), last)
    with trio.fail_after(BOUND):
        assert await admitted(public, InternalTargets(chain, max_hops=2)) == (last, True)
        assert (await admitted(public, InternalTargets(chain, max_hops=1)))[1] is False
    assert any("may only forward through 1 endpoints" in r.getMessage() for r in caplog.records)


def test_lookup_finds_only_online_internal_tls_and_tcp_endpoints() -> None:
    api = endpoint("https://api.clinic-a.internal", None, None)
    public = endpoint(PUBLIC, None, None, binding="public")
    db = endpoint(DB, None, None)
    internal = InternalTargets(registry(api, public, db), max_hops=5)
    assert internal.lookup(DB) is db
    assert internal.lookup("https://api.clinic-a.internal") is None  # an HTTP endpoint
    assert internal.lookup(PUBLIC) is None  # a public one
    assert internal.lookup("tls://gone.clinic-a.internal:5432") is None


def test_lookup_falls_back_to_the_closest_wildcard_internal_endpoint() -> None:
    wildcard = endpoint("tls://*.clinic-a.internal:5432", None, None)
    internal = InternalTargets(registry(wildcard), max_hops=5)
    assert internal.lookup(DB) is wildcard
    assert internal.lookup("tls://db.clinic-b.internal:5432") is None
