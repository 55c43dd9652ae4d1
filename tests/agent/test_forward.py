"""Proxy streams: header parsing, upstream dialing (plain and https), payload order, failures."""

from __future__ import annotations

import logging
import ssl
from dataclasses import replace
from functools import partial

import pytest
import trio
import trustme

from agent.forward import Route, handle_proxy_stream
from agent.inspector.capture import CaptureStore
from agent.metrics import AgentMetrics
from agent.tls_contexts import upstream_context
from agent.upstream import resolve_host
from protocol.adapters.mux import MuxStream, read_stream_type, receive_exactly, reset_code
from protocol.formats.urls import UpstreamURL
from protocol.rpc.codec import Codec
from protocol.rpc.messages import StreamType
from protocol.wire.errors import ErrorCode
from tests.agent.conftest import PemFiles
from tests.agent.proxying import (
    free_port,
    header,
    mux_pair,
    read_all,
    serve_one,
    serve_upstream,
)

REQUEST = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("localhost", "127.0.0.1"),
        ("connect.burrow.localhost", "127.0.0.1"),
        ("LOCALHOST.", "127.0.0.1"),
        ("127.0.0.2", "127.0.0.2"),
        ("::1", "::1"),
        ("example.com", "example.com"),
        ("10.0.0.5", "10.0.0.5"),
    ],
)
def test_resolve_host_keeps_loopback_names_off_the_resolver(host: str, address: str) -> None:
    assert resolve_host(host) == address


def route(
    port: int,
    proto: str = "tcp",
    *,
    scheme: str | None = None,
    upstream_tls: ssl.SSLContext | None = None,
) -> dict[str, Route]:
    scheme = scheme or ("http" if proto in ("http", "https") else "tcp")
    upstream = UpstreamURL(scheme, "localhost", port)
    web = Route(name="web", url="", proto=proto, upstream=upstream, upstream_tls=upstream_tls)
    return {"bd_1": web}


async def expect_reset(stream: MuxStream, code: ErrorCode) -> None:
    with pytest.raises(trio.BrokenResourceError) as caught:
        await read_all(stream)
    assert reset_code(caught.value) == code


async def test_payload_after_the_header_reaches_the_upstream_first() -> None:
    received: list[bytes] = []

    async def upstream(stream: trio.SocketStream) -> None:
        received.append(await read_all(stream))
        await stream.send_all(b"bye")
        await stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await serve_upstream(nursery, upstream)
            nursery.start_soon(serve_one, agent, route(port))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + b"first ")
            await stream.send_all(b"second")
            await stream.send_eof()  # half-close: the reply still comes back
            assert await receive_exactly(stream, 3) == b"bye"
            assert await stream.receive_some() == b""
            nursery.cancel_scope.cancel()
    assert received == [b"first second"]


async def test_http_requests_are_piped_to_a_plain_http_upstream() -> None:
    """Two keep-alive requests on one stream reach the upstream byte for byte."""

    async def upstream(stream: trio.SocketStream) -> None:
        for _ in range(2):
            assert await receive_exactly(stream, len(REQUEST)) == REQUEST
            await stream.send_all(RESPONSE)
        await stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await serve_upstream(nursery, upstream)
            nursery.start_soon(serve_one, agent, route(port, "https"))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + REQUEST)
            assert await receive_exactly(stream, len(RESPONSE)) == RESPONSE
            await stream.send_all(REQUEST)
            assert await read_all(stream) == RESPONSE
            nursery.cancel_scope.cancel()


async def https_upstream(
    nursery: trio.Nursery, cert: trustme.LeafCert, seen: dict[str, object]
) -> int:
    """An HTTPS server on loopback answering one request per connection; records the SNI and
    ALPN it saw, and how its handshake ended."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.set_alpn_protocols(["h2", "http/1.1"])

    def on_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        seen["sni"] = name

    context.sni_callback = on_sni

    async def serve(tcp: trio.SocketStream) -> None:
        stream = trio.SSLStream(tcp, context, server_side=True, https_compatible=True)
        try:
            await stream.do_handshake()
            seen["alpn"] = stream.selected_alpn_protocol()
            assert await receive_exactly(stream, len(REQUEST)) == REQUEST
            await stream.send_all(RESPONSE)
        except trio.BrokenResourceError as exc:
            seen["failed"] = exc
        finally:
            await trio.aclose_forcefully(stream)

    return await serve_upstream(nursery, serve)


async def test_https_upstream_verified_against_the_configured_ca(
    localhost_pems: PemFiles,
) -> None:
    seen: dict[str, object] = {}
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await https_upstream(nursery, localhost_pems.cert, seen)
            context = upstream_context(cas=localhost_pems.ca_path)
            nursery.start_soon(
                serve_one, agent, route(port, "https", scheme="https", upstream_tls=context)
            )
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + REQUEST)
            assert await read_all(stream) == RESPONSE
            nursery.cancel_scope.cancel()
    assert seen == {"sni": "localhost", "alpn": "http/1.1"}


@pytest.mark.parametrize("case", ["other CA", "wrong host name"])
async def test_untrusted_https_upstream_resets_the_stream_refused(
    case: str, ca: trustme.CA, other_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    cert = other_ca.issue_cert("localhost") if case == "other CA" else ca.issue_cert("example.org")
    context = upstream_context()
    ca.configure_trust(context)  # trust `ca` only (plus the system store)
    seen: dict[str, object] = {}
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await https_upstream(nursery, cert, seen)
            nursery.start_soon(
                serve_one, agent, route(port, "https", scheme="https", upstream_tls=context)
            )
            stream = await edge.open_typed_stream(StreamType.PROXY)
            with caplog.at_level(logging.WARNING, logger="agent.forward"):
                await stream.send_all(header() + REQUEST)
                await expect_reset(stream, ErrorCode.STREAM_REFUSED)
            nursery.cancel_scope.cancel()
    assert "alpn" not in seen, "the handshake must not have completed"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "agent.forward"]
    assert f"agent could not reach upstream https://localhost:{port}" in line
    assert "certificate verify failed" in line
    assert line.endswith("(ERR_NGROK_8012)")


async def test_tls_verify_false_accepts_any_upstream_certificate(other_ca: trustme.CA) -> None:
    seen: dict[str, object] = {}
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            port = await https_upstream(nursery, other_ca.issue_cert("example.org"), seen)
            context = upstream_context(verify=False)
            nursery.start_soon(
                serve_one, agent, route(port, "https", scheme="https", upstream_tls=context)
            )
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + REQUEST)
            assert await read_all(stream) == RESPONSE
            nursery.cancel_scope.cancel()


async def test_unreachable_tcp_upstream_logs_8012_and_refuses_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # STREAM_REFUSED (not a plain close) tells the edge no byte reached an upstream, so it may
    # move the connection to another member of the endpoint's pool.
    port = await free_port()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(port))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            with caplog.at_level(logging.WARNING, logger="agent.forward"):
                await stream.send_all(header())
                with pytest.raises(trio.BrokenResourceError) as refused:
                    await stream.receive_some()
                assert reset_code(refused.value) == ErrorCode.STREAM_REFUSED
    (line,) = [r.getMessage() for r in caplog.records if r.name == "agent.forward"]
    assert line == (
        f"endpoint web: agent could not reach upstream localhost:{port}: "
        "cannot connect: Connection refused (ERR_NGROK_8012)"
    )


@pytest.mark.parametrize("proto", ["http", "https"])
async def test_unreachable_http_upstream_resets_the_stream_refused(
    proto: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = await free_port()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(port, proto))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            with caplog.at_level(logging.WARNING, logger="agent.forward"):
                await stream.send_all(header() + REQUEST)
                await expect_reset(stream, ErrorCode.STREAM_REFUSED)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "agent.forward"]
    assert f"upstream http://localhost:{port}: cannot connect" in line
    assert "ERR_NGROK_8012" in line


async def test_unknown_endpoint_id_closes_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(1))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header("bd_unknown"))
            assert await stream.receive_some() == b""
    assert "unknown endpoint id 'bd_unknown'" in caplog.text


async def test_oversized_header_length_closes_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(1))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all((1 << 40).to_bytes(8, "little"))
            assert await stream.receive_some() == b""
    assert "malformed header" in caplog.text


async def test_stream_that_ends_before_its_header_is_closed() -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            nursery.start_soon(serve_one, agent, route(1))
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header()[:4])
            await stream.send_eof()
            assert await stream.receive_some() == b""


UNSET = UpstreamURL("http", "unset.invalid", 1)  # replaced with the test upstream's port


async def _two_requests_through(
    routes: dict[str, Route], captures: CaptureStore, metrics: AgentMetrics
) -> None:
    async def upstream(stream: trio.SocketStream) -> None:
        for _ in range(2):
            assert await receive_exactly(stream, len(REQUEST)) == REQUEST
            await stream.send_all(RESPONSE)
        await stream.aclose()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery, mux_pair() as (agent, edge):
            listeners = await nursery.start(partial(trio.serve_tcp, upstream, 0, host="127.0.0.1"))
            port = int(listeners[0].socket.getsockname()[1])
            web = routes["bd_1"]
            routes = {"bd_1": replace(web, upstream=UpstreamURL("http", "localhost", port))}

            served = trio.Event()

            async def serve() -> None:
                stream = await agent.accept_stream()
                await read_stream_type(stream)
                await handle_proxy_stream(
                    stream, routes, Codec.MSGPACK, captures=captures, metrics=metrics
                )
                served.set()

            nursery.start_soon(serve)
            stream = await edge.open_typed_stream(StreamType.PROXY)
            await stream.send_all(header() + REQUEST)
            assert await receive_exactly(stream, len(RESPONSE)) == RESPONSE
            await stream.send_all(REQUEST)
            await stream.send_eof()
            assert await read_all(stream) == RESPONSE  # bytes pass unchanged through the tap
            await served.wait()  # the connection ended both ways: its bytes are counted
            nursery.cancel_scope.cancel()


async def test_an_inspected_http_endpoint_is_captured_and_counted() -> None:
    captures, metrics = CaptureStore(10**6), AgentMetrics()
    web = Route(name="web", url="", proto="https", upstream=UNSET, inspect=True)
    await _two_requests_through({"bd_1": web}, captures, metrics)
    assert [e.request.head for e in captures] == [REQUEST, REQUEST]
    assert all(e.response is not None and e.response.body == b"ok" for e in captures)
    text = metrics.exposition().decode()
    assert 'burrow_agent_streams_opened_total{endpoint="web"} 1.0' in text
    assert 'burrow_agent_streams_open{endpoint="web"} 0.0' in text
    relayed = 'burrow_agent_bytes_total{{direction="{}",endpoint="web"}} {}'
    assert relayed.format("in", 2.0 * len(REQUEST)) in text
    assert relayed.format("out", 2.0 * len(RESPONSE)) in text
    assert 'burrow_agent_upstream_dial_seconds_count{endpoint="web"} 1.0' in text


async def test_inspect_false_captures_nothing() -> None:
    captures = CaptureStore(10**6)
    web = Route(name="web", url="", proto="https", upstream=UNSET, inspect=False)
    await _two_requests_through({"bd_1": web}, captures, AgentMetrics())
    assert len(captures) == 0
