"""One session to the edge (agent/session_tasks.py), through a real `Agent` against the
in-memory fake edge: Binds and Forwarding lines, proxy streams, heartbeats, the edge's Stop,
Restart, Update and StopTunnel, and draining."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trustme

from agent.cli import endpoint_from_argv
from protocol.adapters.mux import receive_exactly
from protocol.adapters.rpc import read_message
from protocol.adapters.tls import TLSStream
from protocol.rpc.codec import Codec, encode, encode_proxy_header
from protocol.rpc.messages import (
    ProxyHeader,
    Restart,
    RestartResp,
    Stop,
    StopResp,
    StopTunnel,
    StreamType,
    Update,
    UpdateResp,
)
from tests.agent.conftest import write_pems
from tests.agent.proxying import HeaderFirst, header
from tests.agent.session_harness import Harness, echo_server, endpoint


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_proxy_stream_is_piped_to_the_upstream(nursery: trio.Nursery) -> None:
    port = await echo_server(nursery)
    h = Harness(nursery, [endpoint(f"127.0.0.1:{port}")])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        mux = h.edge.sessions[0].mux
        stream = await mux.open_typed_stream(StreamType.PROXY)
        header = encode_proxy_header(
            ProxyHeader(id="bind_1", client_addr="203.0.113.5:4000", proto="tcp"), Codec.MSGPACK
        )
        # The header split across writes, with payload in the same write as its tail.
        await stream.send_all(header[:5])
        await stream.send_all(header[5:] + b"hello ")
        await stream.send_all(b"world")
        assert await receive_exactly(stream, 11) == b"hello world"
        await stream.send_eof()
        assert await stream.receive_some() == b""


@pytest.mark.parametrize(
    ("argv", "forwarding", "proto", "opts"),
    [
        (
            ["http", "8080"],
            "Forwarding https://3f9a-1.edge.localhost -> http://localhost:8080\n",
            "https",
            {"URL": "", "ProxyProto": 0},
        ),
        (
            ["http", "https://app.local:8443", "--url", "http://app.example.com"],
            "Forwarding http://app.example.com -> https://app.local:8443\n",
            "http",
            {"URL": "http://app.example.com", "ProxyProto": 0},
        ),
        (
            ["tls", "5432", "--upstream-proxy-protocol=2"],
            "Forwarding tls://3f9a-1.edge.localhost -> localhost:5432\n",
            "tls",
            {"URL": "", "ProxyProto": 2, "MutualTLSAtAgent": False},
        ),
    ],
    ids=["http", "http-url", "tls"],
)
async def test_http_and_tls_commands_bind_and_print_forwarding(
    nursery: trio.Nursery,
    argv: list[str],
    forwarding: str,
    proto: str,
    opts: dict[str, object],
) -> None:
    """What `burrow http|tls ...` starts: the endpoint the command line builds, bound against
    the (fake) edge, with the Forwarding line scripts parse."""
    h = Harness(nursery, [endpoint_from_argv(argv)])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
    assert h.out.getvalue() == forwarding
    (bind,) = h.edge.binds
    assert (bind.proto, bind.opts) == (proto, opts)


async def test_a_terminated_tls_endpoint_with_mutual_tls_serves_a_good_client(
    nursery: trio.Nursery, tmp_path: Path, ca: trustme.CA
) -> None:
    """`burrow tls PORT --crt --key --mutual-tls-cas` end to end through the Agent: Bind says
    MutualTLSAtAgent, and a client with a good certificate reaches the upstream."""
    server = write_pems(tmp_path / "server", ca, ca.issue_cert("secure.example.com"))
    clients_ca = trustme.CA()
    clients = write_pems(tmp_path / "clients", clients_ca, clients_ca.issue_cert("client-1"))
    port = await echo_server(nursery)
    argv = ["tls", f"127.0.0.1:{port}", "--url", "tls://secure.example.com"]
    argv += ["--crt", server.cert_path, "--key", server.key_path]
    argv += ["--mutual-tls-cas", clients.ca_path]
    h = Harness(nursery, [endpoint_from_argv(argv)])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        assert h.out.getvalue() == f"Forwarding tls://secure.example.com -> 127.0.0.1:{port}\n"
        assert h.edge.binds[0].opts["MutualTLSAtAgent"] is True
        stream = await h.edge.sessions[0].mux.open_typed_stream(StreamType.PROXY)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        clients.cert.configure_cert(context)
        client = TLSStream(
            HeaderFirst(stream, header("bind_1")), context, server_hostname="secure.example.com"
        )
        await client.send_all(b"ping")
        assert await receive_exactly(client, 4) == b"ping"
        await client.aclose()


async def test_proxy_stream_for_an_unknown_id_is_closed(nursery: trio.Nursery) -> None:
    h = Harness(nursery, [endpoint()])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        stream = await h.edge.sessions[0].mux.open_typed_stream(StreamType.PROXY)
        await stream.send_all(encode_proxy_header(ProxyHeader(id="nope"), Codec.MSGPACK))
        assert await stream.receive_some() == b""  # the agent closed it


async def test_heartbeat_timeout_ends_the_session_and_reconnects(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    h = Harness(nursery, [endpoint()], heartbeat_interval=0.05, heartbeat_tolerance=0.05)
    h.edge.answer_heartbeats = False
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        h.edge.answer_heartbeats = True
        await h.edge.wait_session(2)
    assert "stopped answering heartbeats" in h.err.getvalue()


async def test_stop_request_is_answered_and_run_returns(nursery: trio.Nursery) -> None:
    h = Harness(nursery, [endpoint()])
    done = trio.Event()

    async def run() -> None:
        await h.agent.run()
        done.set()

    with trio.fail_after(5):
        nursery.start_soon(run)
        session = await h.edge.wait_session(1)
        stream = await session.mux.open_typed_stream(StreamType.STOP)
        await stream.send_all(encode(Stop(), Codec.MSGPACK))
        response, _ = await read_message(stream, StopResp, Codec.MSGPACK)
        assert response.error == ""
        await done.wait()
    assert "stopped by the edge" in h.err.getvalue()
    assert len(h.edge.sessions) == 1


async def test_stop_names_who_asked_the_edge(nursery: trio.Nursery) -> None:
    h = Harness(nursery, [endpoint()])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        stream = await h.edge.sessions[0].mux.open_typed_stream(StreamType.STOP)
        await stream.send_all(encode(Stop(message="the admin API, key ak_1"), Codec.JSON))
        response, _ = await read_message(stream, StopResp, None)
        assert response.error == ""
        while h.agent.established:
            await trio.sleep(0.01)
    assert "stopped by the edge on behalf of the admin API, key ak_1" in h.err.getvalue()
    assert not h.agent.established and len(h.edge.sessions) == 1


async def test_restart_is_answered_and_reconnects_at_once_as_a_new_session(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    h = Harness(nursery, [endpoint()])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        first = h.edge.sessions[0]
        stream = await first.mux.open_typed_stream(StreamType.RESTART)
        await stream.send_all(encode(Restart(message="the admin API, key ak_1"), Codec.JSON))
        response, codec = await read_message(stream, RestartResp, None)
        assert len(h.edge.sessions) == 1, "the session lasts until the edge has the answer"
        started = trio.current_time()
        await stream.aclose()  # as Burrow's edge does once it has read the answer
        await h.edge.wait_session(2)
        reconnected_after = trio.current_time() - started
    assert codec is Codec.JSON and response.error == ""
    assert reconnected_after < 0.1, "no backoff wait before the new session"
    assert "restart requested by the edge on behalf of the admin API, key ak_1" in (
        h.err.getvalue()
    )
    # The new session resumes: same client id, same endpoint (bind id and token).
    assert h.edge.auths[1].client_id == h.agent.resume.client_id
    assert h.edge.binds[1].id != ""


@pytest.mark.parametrize(
    ("kind", "request_message", "response_cls", "words"),
    [
        (StreamType.UPDATE, Update(version="9"), UpdateResp, "remote update"),
    ],
)
async def test_update_is_refused_with_a_reason(
    nursery: trio.Nursery,
    kind: StreamType,
    request_message: Restart | Update,
    response_cls: type[RestartResp] | type[UpdateResp],
    words: str,
) -> None:
    h = Harness(nursery, [endpoint()])
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        stream = await h.edge.sessions[0].mux.open_typed_stream(kind)
        await stream.send_all(encode(request_message, Codec.JSON))  # the codec is detected
        response, codec = await read_message(stream, response_cls, None)
    assert codec is Codec.JSON
    assert "Burrow does not support" in response.error
    assert words in response.error


async def test_stop_tunnel_stops_that_endpoint_and_is_not_rebound(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    h = Harness(nursery, [endpoint(name="a"), endpoint(name="b", addr="127.0.0.1:6000")])
    with trio.fail_after(10):
        await nursery.start(h.agent.run)
        stream = await h.edge.sessions[0].mux.open_typed_stream(StreamType.STOP_TUNNEL)
        request = StopTunnel(id="bind_1", message="credential revoked", error_code="ERR_NGROK_300")
        await stream.send_all(encode(request, Codec.MSGPACK))
        await stream.send_eof()
        while len(h.agent.endpoints) != 1:
            await trio.sleep(0.01)
        h.edge.endpoints = 1
        h.edge.sessions[0].close()
        await h.edge.wait_session(2)
    assert [e.name for e in h.agent.endpoints] == ["b"]
    assert [b.extra.name for b in h.edge.binds[2:]] == ["b"]
    assert "the edge stopped endpoint 'a'" in h.err.getvalue()
    assert "credential revoked (ERR_NGROK_300)" in h.err.getvalue()


async def test_drain_says_goaway_and_lets_the_stream_in_flight_finish(
    nursery: trio.Nursery,
) -> None:
    port = await echo_server(nursery)
    h = Harness(nursery, [endpoint(f"127.0.0.1:{port}")], drain_timeout=5.0)
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        mux = h.edge.sessions[0].mux
        stream = await mux.open_typed_stream(StreamType.PROXY)
        header = encode_proxy_header(
            ProxyHeader(id="bind_1", client_addr="203.0.113.5:4000", proto="tcp"), Codec.MSGPACK
        )
        await stream.send_all(header + b"hello ")
        assert await receive_exactly(stream, 6) == b"hello "
        h.agent.drain()
        await mux.goaway_received.wait()  # at once, while the stream is still open
        assert mux.goaway is not None and b"draining" in mux.goaway.debug
        with pytest.raises(trio.BrokenResourceError):  # the edge may open no new stream
            await mux.open_typed_stream(StreamType.PROXY)
        await stream.send_all(b"world")  # the stream in flight goes on
        assert await receive_exactly(stream, 5) == b"world"
        assert not mux.closed.is_set()
        await stream.send_eof()
        assert await stream.receive_some() == b""
        await stream.aclose()
        await mux.closed.wait()  # its last stream done, the agent closed the session
        while "stopped" not in h.err.getvalue():  # and `run` returned, reporting it
            await trio.sleep(0.01)


async def test_a_drain_ends_after_drain_timeout_with_streams_still_open(
    nursery: trio.Nursery,
) -> None:
    port = await echo_server(nursery)
    h = Harness(nursery, [endpoint(f"127.0.0.1:{port}")], drain_timeout=0.3)
    with trio.fail_after(5):
        await nursery.start(h.agent.run)
        mux = h.edge.sessions[0].mux
        stream = await mux.open_typed_stream(StreamType.PROXY)
        header = encode_proxy_header(
            ProxyHeader(id="bind_1", client_addr="203.0.113.5:4000", proto="tcp"), Codec.MSGPACK
        )
        await stream.send_all(header + b"hi")
        assert await receive_exactly(stream, 2) == b"hi"
        started = trio.current_time()
        h.agent.drain()
        await mux.closed.wait()  # the stream never ended: closed after drain_timeout
        assert 0.25 <= trio.current_time() - started < 2.0
