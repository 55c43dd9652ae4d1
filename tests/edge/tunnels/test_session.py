"""A real `AgentSession` against an in-memory agent: Auth, Bind, proxy streams, Unbind, the
session's end and resumption, over muxado on `trio.testing` memory streams.

The harness (`connect`) runs the edge side as `edge.server` does (a SERVER mux session and an
`AgentSession` over it, GOAWAY once the session ends) and the agent side as a CLIENT mux session
whose accept loop answers the edge's heartbeats and hands proxy streams to the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from edge.config import EdgeConfig, LimitsConfig
from edge.store import SQLiteStore
from edge.tunnels.hub import EdgeHub
from edge.tunnels.session import AgentSession
from protocol.adapters.heartbeat import answer_heartbeats
from protocol.adapters.mux import MuxSession, MuxStream, open_mux_session, read_stream_type
from protocol.adapters.rpc import call
from protocol.rpc import errcodes
from protocol.rpc.codec import Codec, encode, parse_proxy_header
from protocol.rpc.messages import (
    Auth,
    AuthExtra,
    AuthResp,
    Bind,
    BindExtra,
    BindResp,
    ProxyHeader,
    StreamType,
    Unbind,
    UnbindResp,
)
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role

#: Every test here is in memory; none should come near this.
TIMEOUT = 10
AGENT_ADDR = ("203.0.113.9", 50123)
OTHER_ADDR = ("198.51.100.20", 40404)
CODEC = Codec.MSGPACK


@dataclass
class Connection:
    """One agent connection: the edge's session, the agent's mux, the proxy streams the edge
    opened (their type already read), and an event set once the edge's session has ended."""

    session: AgentSession
    agent: MuxSession
    proxies: trio.MemoryReceiveChannel[MuxStream]
    ended: trio.Event

    async def auth(self, token: str, *, client_id: str = "", cookie: str = "") -> AuthResp:
        request = Auth(
            version=("2",),
            client_id=client_id,
            extra=AuthExtra(authtoken=token, cookie=cookie, version="3.0.0", os="linux"),
        )
        return await call(self.agent, StreamType.AUTH, request, AuthResp, CODEC)

    async def bind(self, url: str, *, bind_id: str = "", pooling: bool = False) -> BindResp:
        proto = url.split("://", 1)[0]
        request = Bind(
            id=bind_id,
            proto=proto,
            opts={"URL": url},
            forwards_to="localhost:3000",
            extra=BindExtra(pooling_enabled=pooling),
        )
        return await call(self.agent, StreamType.BIND, request, BindResp, CODEC)

    async def unbind(self, bind_id: str) -> UnbindResp:
        return await call(self.agent, StreamType.UNBIND, Unbind(id=bind_id), UnbindResp, CODEC)


async def _serve_edge(
    hub: EdgeHub,
    transport: trio.abc.Stream,
    remote: tuple[str, int] = AGENT_ADDR,
    *,
    task_status: trio.TaskStatus[tuple[AgentSession, trio.Event]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """What `edge.server._serve_agent_connection` does once TLS is up."""
    async with open_mux_session(transport, Role.SERVER) as mux:
        session = AgentSession(hub, mux, remote)
        ended = trio.Event()
        task_status.started((session, ended))
        try:
            await session.run()
        finally:
            ended.set()
        await mux.aclose(ErrorCode.NO_ERROR, session.stop_reason or "session closed")


async def _agent_accepts(mux: MuxSession, proxies: trio.MemorySendChannel[MuxStream]) -> None:
    """The agent's side of edge-opened streams: heartbeats are answered, proxies handed over."""
    async with trio.open_nursery() as nursery:
        while True:
            try:
                stream = await mux.accept_stream()
                kind = await read_stream_type(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if kind == StreamType.HEARTBEAT:
                nursery.start_soon(answer_heartbeats, stream)
            elif kind == StreamType.PROXY:
                await proxies.send(stream)


@asynccontextmanager
async def connect(hub: EdgeHub, remote: tuple[str, int] = AGENT_ADDR) -> AsyncIterator[Connection]:
    edge_side, agent_side = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        session, ended = await nursery.start(_serve_edge, hub, edge_side, remote)
        async with open_mux_session(agent_side, Role.CLIENT) as agent:
            send, receive = trio.open_memory_channel[MuxStream](16)
            nursery.start_soon(_agent_accepts, agent, send)
            yield Connection(session, agent, receive, ended)
        nursery.cancel_scope.cancel()


async def _read_proxy_header(stream: MuxStream) -> ProxyHeader:
    buf = bytearray()
    while (parsed := parse_proxy_header(buf, CODEC)) is None:
        chunk = await stream.receive_some()
        assert chunk, "the proxy stream ended before its header"
        buf += chunk
    header, used = parsed
    assert used == len(buf)  # nothing but the header was sent yet
    return header


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore.open(tmp_path / "burrow.db") as opened:
        yield opened


@pytest.fixture
def hub(store: SQLiteStore) -> EdgeHub:
    return EdgeHub(EdgeConfig(), store)


@pytest.fixture
def token(store: SQLiteStore) -> str:
    _, secret = store.create_credential(description="agent")
    return secret


def _event_types(store: SQLiteStore) -> list[str]:
    return [event.event_type for event in reversed(store.list_events())]


async def test_auth_bind_proxy_unbind(hub: EdgeHub, store: SQLiteStore, token: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as conn:
            auth = await conn.auth(token)
            assert auth.error == ""
            assert auth.client_id.startswith("cl_")
            assert auth.extra.agent_session_id == conn.session.id
            assert auth.extra.cookie

            bound = await conn.bind("https://app.example.com", bind_id="tun_app")
            assert bound.error == ""
            assert (bound.id, bound.url, bound.proto) == (
                "tun_app",
                "https://app.example.com",
                "https",
            )
            endpoint = hub.registry.lookup_public("https", "app.example.com")
            assert endpoint is not None
            (member,) = endpoint.members
            assert (member.bind_id, member.session_id, member.client_id) == (
                "tun_app",
                conn.session.id,
                auth.client_id,
            )
            assert member.token == bound.extra.token
            assert endpoint.forwards_to == "localhost:3000"

            # The edge opens a proxy stream for a client; the agent reads its header, then
            # bytes flow both ways.
            edge_stream = await endpoint.open_proxy("198.51.100.7:40000")
            agent_stream = await conn.proxies.receive()
            header = await _read_proxy_header(agent_stream)
            assert header == ProxyHeader(
                id="tun_app",
                client_addr="198.51.100.7:40000",
                proto="https",
                edge_type="3",
                passthrough_tls=False,
            )
            await edge_stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
            assert await agent_stream.receive_some() == b"GET / HTTP/1.1\r\n\r\n"
            await agent_stream.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            assert await edge_stream.receive_some() == b"HTTP/1.1 204 No Content\r\n\r\n"
            await edge_stream.aclose()
            await agent_stream.aclose()

            unbound = await conn.unbind("tun_app")
            assert unbound.error == ""
            assert hub.registry.lookup("https://app.example.com") is None
            assert hub.registry.held_by(conn.session.id) == []
            missing = await conn.unbind("tun_app")
            assert errcodes.ERR_NGROK_3209 in missing.error
    assert _event_types(store) == [
        "agent_session_start.v0",
        "endpoint_bound.v0",
        "endpoint_unbound.v0",
        "agent_session_stop.v0",
    ]
    unbound_event = store.list_events(event_type="endpoint_unbound.v0")[0]
    assert unbound_event.object["reason"] == "unbound"


async def test_a_second_bind_of_an_online_url_is_334(hub: EdgeHub, token: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as first, connect(hub) as second:
            await first.auth(token)
            await second.auth(token)
            assert (await first.bind("tls://db.example.com")).error == ""
            refused = await second.bind("tls://db.example.com")
            assert refused.error == errcodes.format_wire_error(
                "The tunnel 'tls://db.example.com' is already bound to another tunnel session. "
                "Either stop the existing endpoint first, or start both endpoints with "
                "`--pooling-enabled` (`pooling_enabled: true` in the config file) to load "
                "balance between them.",
                errcodes.ERR_NGROK_334,
            )
            endpoint = hub.registry.lookup("tls://db.example.com")
            assert endpoint is not None
            assert [m.session_id for m in endpoint.members] == [first.session.id]


@pytest.mark.parametrize(
    ("secret", "code"),
    [("", errcodes.ERR_NGROK_4018), ("cr_nonsense_token", errcodes.ERR_NGROK_107)],
)
async def test_a_refused_auth_ends_the_session(
    hub: EdgeHub, store: SQLiteStore, secret: str, code: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as conn:
            auth = await conn.auth(secret)
            assert auth.error.endswith(f"\r\n\r\n{code}\r\n")
            assert auth.client_id == ""
            await conn.ended.wait()
            assert conn.session.stop_reason == f"auth refused: {code}"
            assert conn.session.credential is None
            assert hub.sessions == {}
    # Nobody authenticated, so no session events; the failed login itself is audited
    # (issue 9.6), without the token.
    (event,) = store.list_events()
    assert event.event_type == "agent_login_failed.v0"
    assert event.principal is None
    assert event.object["error_code"] == code
    assert event.object["agent_ip"] == AGENT_ADDR[0]
    assert event.object["credential"] is None
    assert not secret or secret not in repr(event.object)


async def test_a_revoked_authtoken_is_refused_with_300(
    hub: EdgeHub, store: SQLiteStore, token: str
) -> None:
    (credential,) = store.list_credentials()
    assert store.update_credential(credential.id, active=False) is not None
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as conn:
            auth = await conn.auth(token)
            assert auth.error == errcodes.format_wire_error(
                f"The authtoken credential {credential.id} has been revoked. "
                "Ask the edge's operator for a new one.",
                errcodes.ERR_NGROK_300,
            )
            await conn.ended.wait()


async def test_the_session_end_releases_its_endpoints(
    hub: EdgeHub, store: SQLiteStore, token: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as conn:
            await conn.auth(token)
            assert (await conn.bind("https://a.example.com")).error == ""
            assert (await conn.bind("tls://b.example.com")).error == ""
            session_id = conn.session.id
            assert len(hub.registry.held_by(session_id)) == 2
            await conn.agent.aclose()  # the agent goes away
            await conn.ended.wait()
            assert hub.registry.held_by(session_id) == []
            assert hub.registry.lookup("https://a.example.com") is None
            assert hub.registry.lookup("tls://b.example.com") is None
            assert session_id not in hub.sessions
            assert conn.session.stop_reason.startswith("agent closed the session")
    reasons = [e.object["reason"] for e in store.list_events(event_type="endpoint_unbound.v0")]
    assert reasons == [conn.session.stop_reason] * 2


async def test_resuming_with_the_right_cookie_takes_over(hub: EdgeHub, token: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as old, connect(hub) as new:
            first = await old.auth(token)
            assert (await old.bind("https://app.example.com", bind_id="tun_1")).error == ""

            resumed = await new.auth(token, client_id=first.client_id, cookie=first.extra.cookie)
            assert resumed.error == ""
            assert resumed.client_id == first.client_id
            await old.ended.wait()
            assert old.session.stop_reason == (
                "replaced by a reconnecting session of the same agent"
            )
            assert hub.registry.lookup("https://app.example.com") is None

            # The URL is free for the resumed session at once: no "already bound".
            rebound = await new.bind("https://app.example.com", bind_id="tun_1")
            assert rebound.error == ""
            endpoint = hub.registry.lookup("https://app.example.com")
            assert endpoint is not None
            assert [m.session_id for m in endpoint.members] == [new.session.id]
            assert list(hub.sessions) == [new.session.id]


async def test_resuming_with_a_wrong_cookie_does_not_take_over(hub: EdgeHub, token: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as old, connect(hub) as impostor:
            first = await old.auth(token)
            assert (await old.bind("https://app.example.com")).error == ""

            other = await impostor.auth(token, client_id=first.client_id, cookie="not-the-cookie")
            assert other.error == ""
            assert other.client_id != first.client_id  # a new agent, not a resumption
            assert not old.ended.is_set()
            assert old.session.stop_reason == ""
            refused = await impostor.bind("https://app.example.com")
            assert errcodes.ERR_NGROK_334 in refused.error
            endpoint = hub.registry.lookup("https://app.example.com")
            assert endpoint is not None
            assert [m.session_id for m in endpoint.members] == [old.session.id]
            assert set(hub.sessions) == {old.session.id, impostor.session.id}


# ------------------------------------------------------------- the login audit race (issue 9.5)


async def test_an_agent_gone_right_after_auth_gets_start_and_stop_events(
    hub: EdgeHub, store: SQLiteStore, token: str
) -> None:
    """An agent that sends Auth and closes at once: the edge authenticates it but cannot answer.
    The session still has both audit events, naming its credential, and is forgotten.

    Deterministic: the agent's bytes reach the edge only when the test moves them, after the
    agent has closed its connection, so the edge's AuthResp always meets a broken transport."""
    agent_out = trio.testing.MemorySendStream()  # the agent's bytes wait here
    edge_in = trio.testing.MemoryReceiveStream()
    edge_out, agent_in = trio.testing.memory_stream_one_way_pair()
    request = Auth(version=("2",), extra=AuthExtra(authtoken=token, version="3.0.0", os="linux"))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            session, ended = await nursery.start(
                _serve_edge, hub, trio.StapledStream(edge_out, edge_in)
            )
            async with open_mux_session(
                trio.StapledStream(agent_out, agent_in), Role.CLIENT
            ) as agent:
                stream = await agent.open_typed_stream(StreamType.AUTH)
                await stream.send_all(encode(request, CODEC))
                await stream.send_eof()
                await trio.testing.wait_all_tasks_blocked()
                sent = agent_out.get_data_nowait()
            assert sent, "the agent wrote its Auth"
            # The agent's connection is closed (leaving the block closed agent_in): whatever
            # the edge writes now fails. Only now does its Auth reach the edge.
            edge_in.put_data(sent)
            await ended.wait()
            assert session.credential is not None, "the Auth was read and authenticated"
            assert hub.sessions == {}
            # The edge's task then ends by itself (cancelling it could hide what it raised).
    (credential,) = store.list_credentials()
    assert _event_types(store) == ["agent_session_start.v0", "agent_session_stop.v0"]
    for event in store.list_events():
        assert event.object["credential"] == {
            "id": credential.id,
            "uri": f"/credentials/{credential.id}",
        }
        assert event.object["session"] == {
            "id": session.id,
            "uri": f"/tunnel_sessions/{session.id}",
        }
    (stop,) = store.list_events(event_type="agent_session_stop.v0")
    assert stop.object["error"], "the stop event says why the session ended"


# --------------------------------------------------------- failed-login throttling (issue 9.6)

WRONG_TOKEN = "cr_2bW5q1NotARealIdAtAll_butShapedLikeOneXXXXXXXXXXXXXXXXXXXXXX"


def _throttled_hub(store: SQLiteStore, failures: int = 3) -> EdgeHub:
    limits = LimitsConfig(auth_failures_per_address=failures, auth_failure_window=60.0)
    return EdgeHub(EdgeConfig(limits=limits), store)


async def _refusal_code(hub: EdgeHub, secret: str, remote: tuple[str, int] = AGENT_ADDR) -> str:
    async with connect(hub, remote) as conn:
        refused = await conn.auth(secret)
        await conn.ended.wait()
    parsed = errcodes.parse_wire_error(refused.error)
    assert parsed.code is not None, refused.error
    return parsed.code


async def test_failed_logins_are_throttled_per_address_but_valid_tokens_are_not(
    store: SQLiteStore, token: str
) -> None:
    hub = _throttled_hub(store, failures=3)
    with trio.fail_after(TIMEOUT):
        for _ in range(3):  # the budget: answered with the real reason
            assert await _refusal_code(hub, WRONG_TOKEN) == errcodes.ERR_NGROK_107
        async with connect(hub) as conn:
            refused = await conn.auth(WRONG_TOKEN)
        parsed = errcodes.parse_wire_error(refused.error)
        assert parsed.code == errcodes.ERR_NGROK_5001
        assert f"Too many failed logins from {AGENT_ADDR[0]}" in parsed.message
        assert "3 failed agent logins per 60s" in parsed.message
        assert "Try again in 60s" in parsed.message or "Try again in 59s" in parsed.message
        for secret in ("", WRONG_TOKEN):  # every kind of failure is throttled now
            assert await _refusal_code(hub, secret) == errcodes.ERR_NGROK_5001

        # A valid authtoken from the throttled address is accepted, and quickly.
        started = trio.current_time()
        async with connect(hub) as conn:
            accepted = await conn.auth(token)
            assert accepted.error == ""
            assert accepted.client_id.startswith("cl_")
        assert trio.current_time() - started < 1.0
        # Another address is not affected: its failure gets the real reason.
        assert await _refusal_code(hub, WRONG_TOKEN, OTHER_ADDR) == errcodes.ERR_NGROK_107
        async with connect(hub, OTHER_ADDR) as conn:
            assert (await conn.auth(token)).error == ""


async def test_a_throttled_address_is_answered_again_when_its_window_ends(
    store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    hub = _throttled_hub(store, failures=2)
    with trio.fail_after(TIMEOUT):
        for _ in range(2):
            assert await _refusal_code(hub, WRONG_TOKEN) == errcodes.ERR_NGROK_107
        assert await _refusal_code(hub, WRONG_TOKEN) == errcodes.ERR_NGROK_5001
    await trio.sleep(60)  # the autojump clock: instant
    with trio.fail_after(TIMEOUT):
        assert await _refusal_code(hub, WRONG_TOKEN) == errcodes.ERR_NGROK_107


async def test_failed_login_events_are_bounded_per_address_and_window(
    store: SQLiteStore, autojump_clock: trio.testing.MockClock
) -> None:
    """3 failures allowed: each answered failure and the first throttled one are events; the
    next throttled ones are only counted, and the count rides on the address's next event."""
    hub = _throttled_hub(store, failures=3)
    with trio.fail_after(TIMEOUT):
        for _ in range(20):
            await _refusal_code(hub, WRONG_TOKEN)
        await _refusal_code(hub, WRONG_TOKEN, OTHER_ADDR)
        events = list(reversed(store.list_events(event_type="agent_login_failed.v0")))
        assert [
            (e.object["agent_ip"], e.object["error_code"], e.object["throttled"]) for e in events
        ] == [
            (AGENT_ADDR[0], errcodes.ERR_NGROK_107, False),
            (AGENT_ADDR[0], errcodes.ERR_NGROK_107, False),
            (AGENT_ADDR[0], errcodes.ERR_NGROK_107, False),
            (AGENT_ADDR[0], errcodes.ERR_NGROK_5001, True),
            (OTHER_ADDR[0], errcodes.ERR_NGROK_107, False),
        ]
        assert [e.object["failures_in_window"] for e in events] == [1, 2, 3, 4, 1]
        assert all(e.object["unrecorded_failures"] == 0 for e in events)
    await trio.sleep(60)  # a new window (the autojump clock: instant)
    with trio.fail_after(TIMEOUT):
        await _refusal_code(hub, WRONG_TOKEN)
    latest = store.list_events(event_type="agent_login_failed.v0")[0]
    assert latest.object["unrecorded_failures"] == 16
    assert latest.object["failures_in_window"] == 1
    assert latest.object["throttled"] is False
    for event in store.list_events():
        assert WRONG_TOKEN not in repr(event.object) and event.principal is None
    assert store.list_events(event_type="agent_session_start.v0") == []


async def test_a_revoked_credentials_failed_login_names_it(
    hub: EdgeHub, store: SQLiteStore, token: str
) -> None:
    (credential,) = store.list_credentials()
    assert store.update_credential(credential.id, active=False) is not None
    with trio.fail_after(TIMEOUT):
        assert await _refusal_code(hub, token) == errcodes.ERR_NGROK_300
    (event,) = store.list_events(event_type="agent_login_failed.v0")
    assert event.object["credential"] == {
        "id": credential.id,
        "uri": f"/credentials/{credential.id}",
    }
    assert token not in repr(event.object)
    assert token.partition("_")[2] not in repr(event.object)


async def test_pooled_binds_share_a_url_and_a_goaway_takes_a_member_out_at_once(
    hub: EdgeHub, token: str
) -> None:
    url = "https://app.example.com"
    with trio.fail_after(TIMEOUT):
        async with (
            connect(hub) as first,
            connect(hub, OTHER_ADDR) as second,
            connect(hub) as third,
        ):
            for conn in (first, second, third):
                await conn.auth(token)
            assert (await first.bind(url, pooling=True)).error == ""
            assert (await second.bind(url, pooling=True)).error == ""
            endpoint = hub.registry.lookup(url)
            assert endpoint is not None
            assert [m.session_id for m in endpoint.members] == [
                first.session.id,
                second.session.id,
            ]
            assert endpoint.members[1].agent_addr == "198.51.100.20:40404"
            refused = await third.bind(url)  # no pooling: refused, naming the fix
            assert errcodes.ERR_NGROK_334 in refused.error
            assert "--pooling-enabled" in refused.error
            # The first agent drains: GOAWAY, its session still open.
            first.agent.go_away(ErrorCode.NO_ERROR, "draining")
            while len(endpoint.members) != 1:
                await trio.sleep(0.01)
                endpoint = hub.registry.lookup(url) or endpoint
            (left,) = endpoint.members
            assert left.session_id == second.session.id
            assert not first.ended.is_set()  # in-flight streams may still finish
            # New requests go to the remaining member only.
            route = hub.registry.lookup_public("https", "app.example.com")
            assert route is not None and {route.pick() for _ in range(10)} == {left}


async def test_a_pooled_bind_onto_an_unpooled_endpoint_is_334(hub: EdgeHub, token: str) -> None:
    url = "tls://db.example.com"
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as first, connect(hub) as second:
            await first.auth(token)
            await second.auth(token)
            assert (await first.bind(url)).error == ""
            refused = await second.bind(url, pooling=True)
            assert errcodes.ERR_NGROK_334 in refused.error
            assert "the endpoint already online does not" in refused.error
