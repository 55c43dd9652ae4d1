"""`edge.front_door.connect_policy`: on_tcp_connect run on real loopback connections (clients
bound to 127.0.0.2 and 127.0.0.3), and the facts it gives the policy."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio

from edge.admin.metrics import EdgeMetrics
from edge.endpoints.registry import AttachedPolicy, Endpoint, Member
from edge.events import EventLog
from edge.front_door.connect_policy import conn_facts, endpoint_facts
from edge.front_door.forwarding import admit
from edge.front_door.tcp_ports import (
    open_tcp_endpoint_listeners,
    peer_address,
    serve_tcp_endpoint,
)
from edge.policy.document import load_policy
from edge.policy.validate import validate
from edge.store import SQLiteStore
from tests.edge.admin.test_metrics import samples
from tests.edge.front_door.test_tcp_ports import FakeAgent, receive_exactly

BOUND = 10
RESTRICT = """
on_tcp_connect:
  - name: note
    actions:
      - type: log
        config:
          metadata: {who: "${conn.client_ip}", sni: "${conn.tls.sni}"}
  - name: office only
    actions:
      - type: restrict-ips
        config: {allow: [127.0.0.2/32]}
"""


def endpoint(text: str | None, port: int = 5432, agent: FakeAgent | None = None) -> Endpoint:
    async def unreachable(client_addr: str) -> trio.abc.HalfCloseableStream:
        raise AssertionError("no proxy stream expected")

    policy = None
    if text is not None:
        policy = AttachedPolicy(validate(load_policy(text), protocol="tcp"), text)
    member = Member(
        bind_id="tun_1",
        token="tok",
        session_id="ts_1",
        client_id="client",
        opener=agent.open if agent is not None else unreachable,
        policy=policy,
    )
    return Endpoint(
        url=f"tcp://127.0.0.1:{port}", proto="tcp", host="127.0.0.1", port=port, members=(member,)
    )


async def connect_from(source: str, port: int) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


def test_facts() -> None:
    conn = conn_facts(("127.0.0.2", 40000), ("127.0.0.1", 443), sni="a.example.com", started_at=5)
    assert (conn.client_ip, conn.client_port, conn.server_ip, conn.server_port) == (
        "127.0.0.2",
        40000,
        "127.0.0.1",
        443,
    )
    assert conn.sni == "a.example.com"
    assert conn.tls_version is None  # the edge terminated no TLS before on_tcp_connect
    facts = endpoint_facts(endpoint(None, port=15432), 99)
    assert (facts.url, facts.host, facts.port, facts.protocol, facts.id) == (
        "tcp://127.0.0.1:15432",
        "127.0.0.1",
        15432,
        "tcp",
        "tun_1",
    )
    https = Endpoint(url="https://a.example.com", proto="https", host="a.example.com")
    assert endpoint_facts(https, 8443).port == 8443  # the port the connection reached


async def test_admit_lets_an_allowed_address_through_and_closes_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge.front_door.connect_policy")
    caplog.set_level(logging.INFO, logger="edge.front_door.forwarding")  # the shell that closes
    record = endpoint(RESTRICT)
    results: dict[str, bool] = {}
    with trio.fail_after(BOUND):
        listener = (await open_tcp_endpoint_listeners("127.0.0.1", 0))[0]
        port = listener.socket.getsockname()[1]
        for source in ("127.0.0.2", "127.0.0.3"):
            client = await connect_from(source, port)
            conn = await listener.accept()
            peer = peer_address(conn)
            assert peer is not None
            results[source], admitted_by = await admit(conn, record, peer, sni="db.example.com")
            # the member whose on_tcp_connect ran (the router keeps the requests with it)
            assert admitted_by is record.members[0]
            if results[source]:
                await conn.send_all(b"welcome")
                assert await receive_exactly(client, 7) == b"welcome"
                await conn.aclose()
            else:
                assert await client.receive_some(10) == b""  # closed, nothing sent
            await client.aclose()
        await listener.aclose()
    assert results == {"127.0.0.2": True, "127.0.0.3": False}
    messages = [r.getMessage() for r in caplog.records]
    logged = [m for m in messages if "policy on_tcp_connect" in m]
    assert len(logged) == 2
    assert '"who": "127.0.0.2"' in logged[0] and '"sni": "db.example.com"' in logged[0]
    assert '"who": "127.0.0.3"' in logged[1]
    assert any("127.0.0.3" in m and "closed by its traffic policy" in m for m in messages)
    assert all(r.levelno == logging.INFO for r in caplog.records)


async def test_no_policy_admits_without_reading_anything() -> None:
    record = endpoint(None)
    with trio.fail_after(BOUND):
        listener = (await open_tcp_endpoint_listeners("127.0.0.1", 0))[0]
        port = listener.socket.getsockname()[1]
        client = await connect_from("127.0.0.3", port)
        conn = await listener.accept()
        assert await admit(conn, record, ("127.0.0.3", 1)) == (True, record.members[0])
        await conn.aclose()
        await client.aclose()
        await listener.aclose()


async def test_a_tcp_endpoint_runs_its_policy_before_opening_a_proxy_stream() -> None:
    agent = FakeAgent()
    metrics = EdgeMetrics()
    with trio.fail_after(BOUND):
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        record = endpoint(RESTRICT, port=port, agent=agent)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(serve_tcp_endpoint, listeners, record, metrics=metrics))
            refused = await connect_from("127.0.0.3", port)
            assert await refused.receive_some(10) == b""
            await refused.aclose()
            allowed = await connect_from("127.0.0.2", port)
            proxied = await agent.streams.receive()
            await allowed.send_all(b"ping")
            assert await receive_exactly(proxied, 4) == b"ping"
            # Only the allowed client cost a proxy stream, and only the refused one is counted.
            assert len(agent.client_addrs) == 1
            counted = samples(metrics)
            key = (("code", "tcp_restrict-ips"), ("kind", "policy"))
            assert counted[("burrow_edge_refusals_total", key)] == 1
            assert agent.client_addrs[0].startswith("127.0.0.2:")
            await allowed.aclose()
            await proxied.aclose()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()


async def test_a_pool_runs_the_chosen_members_own_policy_and_never_crosses_it() -> None:
    """ngrok picks a pool's member first, then runs *its* on_tcp_connect (traffic-policy.md
    §2). With members whose policies differ (a rolling update adding restrict-ips, say), a
    client the restricting member refuses may still reach the member without a policy, but
    never the restricting member itself, and its connection is never moved there."""
    strict_agent, open_agent = FakeAgent(), FakeAgent()
    with trio.fail_after(BOUND):
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        strict = replace(endpoint(RESTRICT, port=port, agent=strict_agent).members[0])
        loose = replace(endpoint(None, port=port, agent=open_agent).members[0], bind_id="tun_2")
        record = replace(endpoint(None, port=port), members=(strict, loose))
        assert not strict.same_connect_policy(loose) and loose.same_connect_policy(loose)
        refused = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_tcp_endpoint, listeners, record)
            for _ in range(24):
                proxied = len(open_agent.client_addrs)
                client = await connect_from("127.0.0.3", port)
                while len(open_agent.client_addrs) == proxied:  # until proxied, or closed
                    with trio.move_on_after(0.02):
                        try:
                            data = await client.receive_some(10)
                        except trio.BrokenResourceError:  # closed with a reset
                            data = b""
                        assert data == b""
                        refused += 1  # the strict member was chosen: its policy closed it
                        break
                await client.aclose()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()
    assert strict_agent.client_addrs == []  # never a stream to the member that refuses it
    assert 0 < refused < 24  # each member was chosen some of the time
    assert len(open_agent.client_addrs) == 24 - refused


async def test_pick_like_a_member_keeps_to_members_with_the_same_connect_policy() -> None:
    first = endpoint(RESTRICT).members[0]
    twin = replace(endpoint(RESTRICT).members[0], bind_id="tun_2")  # same document, own state
    other = replace(endpoint(None).members[0], bind_id="tun_3")
    record = replace(endpoint(None), members=(first, twin, other))
    assert first.same_connect_policy(twin) and not first.same_connect_policy(other)
    assert {record.pick(like=first) for _ in range(40)} == {first, twin}
    assert record.pick(exclude=(first, twin), like=first) is None
    assert record.pick(like=other) is other


async def test_a_pool_members_log_action_is_recorded_with_that_members_event_log(
    tmp_path: Path,
) -> None:
    """The records of the policy that ran (the chosen member's) go to its event log, not to
    the log of the pool's first member's policy (which has none here)."""
    logged = (
        "on_tcp_connect:\n  - actions:\n      - type: log\n        config: {metadata: {m: b}}\n"
    )
    agent_a, agent_b = FakeAgent(), FakeAgent()
    with SQLiteStore.open(tmp_path / "burrow.db") as store, trio.fail_after(BOUND):
        events = EventLog(store, None)
        listeners = await open_tcp_endpoint_listeners("127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        plain = endpoint(RESTRICT, port=port, agent=agent_a).members[0]  # no event log
        with_log = replace(endpoint(logged, port=port, agent=agent_b).members[0], bind_id="tun_2")
        assert with_log.policy is not None
        with_log = replace(with_log, policy=replace(with_log.policy, events=events))
        record = replace(endpoint(None, port=port), members=(plain, with_log))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_tcp_endpoint, listeners, record)
            while not agent_b.client_addrs:  # until a connection is chosen for member b
                client = await connect_from("127.0.0.2", port)
                with trio.move_on_after(0.05):
                    while not (agent_a.client_addrs or agent_b.client_addrs):
                        await trio.sleep(0.005)
                await client.aclose()
                agent_a.client_addrs.clear()
            nursery.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()
        types = [e.event_type for e in store.list_events()]
    assert types.count("traffic_policy_log.v0") >= 1
