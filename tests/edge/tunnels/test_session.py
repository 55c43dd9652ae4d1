"""A real `AgentSession` against an in-memory agent (`tests/edge/tunnels/memory_agent.py`):
Auth, a Bind's proxy stream and its Unbind, the session's end, resumption, failed logins.
What the session's endpoints do (pools, shares, release) is in test_session_endpoints.py.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from edge.config import EdgeConfig, LimitsConfig
from edge.store import SQLiteStore
from edge.tunnels.hub import EdgeHub
from protocol.adapters.mux import open_mux_session
from protocol.rpc import errcodes
from protocol.rpc.codec import encode
from protocol.rpc.messages import (
    Auth,
    AuthExtra,
    ProxyHeader,
    StreamType,
)
from protocol.wire.session import Role
from tests.edge.tunnels.memory_agent import (
    AGENT_ADDR,
    CODEC,
    OTHER_ADDR,
    TIMEOUT,
    connect,
    read_proxy_header,
    serve_edge,
)


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
            header = await read_proxy_header(agent_stream)
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
                serve_edge, hub, trio.StapledStream(edge_out, edge_in)
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
