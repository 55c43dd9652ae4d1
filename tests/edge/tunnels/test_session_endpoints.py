"""`SessionEndpoints` through a real `AgentSession` against an in-memory agent
(`tests/edge/tunnels/memory_agent.py`): Binds onto online URLs, pools, the stream shares of the
proxy streams, and the release of every endpoint when the session ends or drains.
"""

from __future__ import annotations

import pytest
import trio

from edge.config import EdgeConfig, LimitsConfig
from edge.endpoints.registry import StreamLimitError
from edge.store import SQLiteStore
from edge.tunnels.hub import EdgeHub
from protocol.rpc import errcodes
from protocol.wire.errors import ErrorCode
from tests.edge.tunnels.memory_agent import OTHER_ADDR, TIMEOUT, connect, read_proxy_header


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


async def test_an_endpoint_gets_proxy_streams_up_to_its_share_of_the_session(
    store: SQLiteStore, token: str
) -> None:
    """Each endpoint may hold `endpoint_stream_percent` of the session's streams: one busy
    endpoint is refused more, while another endpoint of the same agent still gets its own, and a
    closed stream gives its place back."""
    limits = LimitsConfig(max_streams_per_session=8, endpoint_stream_percent=50)
    hub = EdgeHub(EdgeConfig(limits=limits), store)
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as conn:
            await conn.auth(token)
            assert (await conn.bind("https://busy.example.com")).error == ""
            assert (await conn.bind("https://quiet.example.com")).error == ""
            busy = hub.registry.lookup("https://busy.example.com")
            quiet = hub.registry.lookup("https://quiet.example.com")
            assert busy is not None and quiet is not None
            held = [await busy.open_proxy(f"198.51.100.7:{n}") for n in range(4)]
            assert conn.session.proxy_streams == 4
            with pytest.raises(StreamLimitError, match="endpoint_stream_percent"):
                await busy.open_proxy("198.51.100.7:9")
            other = await quiet.open_proxy("198.51.100.8:1")
            assert conn.session.proxy_streams == 5
            # The agent got the streams, in order, each for its endpoint's bind.
            header = await read_proxy_header(await conn.proxies.receive())
            assert header.id == busy.members[0].bind_id
            assert header.client_addr == "198.51.100.7:0"
            await held[0].aclose()
            again = await busy.open_proxy("198.51.100.7:10")
            assert conn.session.proxy_streams == 5
            for stream in (*held[1:], other, again):
                await stream.aclose()
            assert conn.session.proxy_streams == 0


async def test_unbinding_an_unknown_id_is_3209_and_leaves_the_others_bound(
    hub: EdgeHub, token: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with connect(hub) as conn:
            await conn.auth(token)
            assert (await conn.bind("tls://db.example.com", bind_id="tun_db")).error == ""
            missing = await conn.unbind("tun_nope")
            assert errcodes.ERR_NGROK_3209 in missing.error
            assert hub.registry.lookup("tls://db.example.com") is not None
            assert len(conn.session.endpoints) == 1
            assert (await conn.unbind("tun_db")).error == ""
            assert len(conn.session.endpoints) == 0
            assert hub.registry.lookup("tls://db.example.com") is None
