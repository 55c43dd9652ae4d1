"""The edge's HTTP reverse proxy over real loopback sockets.

`serve_http` runs behind a trio listener; a test router opens a real TCP connection to a test
upstream for every agent stream (a SocketStream is a HalfCloseableStream, as a MuxStream is),
counting streams opened and closed so every test can check nothing leaked. Real clients
(`curl`, trio-websocket) cover what real clients do; raw sockets cover hostile peers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest
import trio
import trio.testing
import trustme
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url, serve_websocket

from edge.config import HttpConfig
from edge.endpoints.registry import AttachedPolicy
from edge.front_door.clienthello import MAX_HELLO_BYTES, parse_client_hello
from edge.http.h1.proxy import AGENT_STREAM_HOLD, READ_SIZE, serve_http
from edge.policy.activation import EndpointFacts
from edge.policy.document import load_policy
from edge.policy.validate import validate
from protocol.adapters.mux import open_mux_session
from protocol.adapters.tls import TLSStream
from protocol.formats.units import KiB, MiB
from protocol.wire.errors import ErrorCode
from protocol.wire.session import Role

LIMITS = HttpConfig(max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=5.0)
TIMEOUT = 20  # seconds: only to turn a hang into a failure
CURL = "/usr/bin/curl"

Handler = Callable[[trio.SocketStream], Awaitable[None]]


# ------------------------------------------------------------------------------- the harness


class CountingStream(trio.abc.HalfCloseableStream):
    """The agent stream stand-in: a TCP connection to the upstream, counted when closed."""

    def __init__(self, inner: trio.SocketStream, route: Route) -> None:
        self.inner = inner
        self.route = route
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.route.closed += 1
        await self.inner.aclose()


@dataclass
class Route:
    key: object
    port: int
    forwards_to: str = "http://localhost:3000"
    buffer: int | None = None  # SO_SNDBUF/SO_RCVBUF for the agent streams
    opened: int = 0
    closed: int = 0
    client_addrs: list[str] = field(default_factory=list)
    policy: AttachedPolicy | None = None  # the endpoint's Traffic Policy

    def endpoint_facts(self) -> EndpointFacts:
        return EndpointFacts(
            url=f"https://{self.key}", host=str(self.key), port=443, protocol="https"
        )

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        self.client_addrs.append(client_addr)
        try:
            inner = await trio.open_tcp_stream("127.0.0.1", self.port)
        except OSError as exc:
            raise trio.BrokenResourceError(f"agent unreachable: {exc}") from exc
        if self.buffer:
            small_buffers(inner, self.buffer)
        self.opened += 1
        return CountingStream(inner, self)


class DeadRoute:
    """An endpoint whose agent session is gone."""

    key = "dead"
    forwards_to = "http://localhost:1"
    policy = None

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        raise trio.BrokenResourceError("the session is closed")


class Router:
    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.asked: list[tuple[str, str]] = []

    def route(self, host: str, scheme: str) -> object:
        self.asked.append((host, scheme))
        return self.routes.get(host)


@dataclass
class Upstream:
    port: int = 0
    connections: int = 0
    requests: list[tuple[h11.Request, bytes]] = field(default_factory=list)


class World:
    """A proxy, its router, and upstream servers, all on loopback in one nursery."""

    def __init__(
        self,
        nursery: trio.Nursery,
        limits: HttpConfig,
        buffer: int | None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.nursery = nursery
        self.limits = limits
        self.buffer = buffer
        self.tls = tls
        self.router = Router()
        self.port = 0
        self.started = 0
        self.finished = 0
        self.errors: list[BaseException] = []
        self.route_list: list[Route] = []

    async def start_proxy(self) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]

        async def handle(stream: trio.SocketStream) -> None:
            self.started += 1
            if self.buffer:
                small_buffers(stream, self.buffer)
            peer = stream.socket.getpeername()
            # As the front door does: the ClientHello read for its SNI, TLS terminated here, a
            # plain trio.abc.Stream (no half-close) handed on with the SNI.
            client: trio.abc.Stream = stream
            sni = None
            try:
                if self.tls is not None:
                    try:
                        sni, hello = await read_client_hello(stream)
                    except trio.BrokenResourceError:
                        await trio.aclose_forcefully(stream)
                        return
                    client = TLSStream(
                        stream,
                        self.tls,
                        server_side=True,
                        https_compatible=True,
                        initial_data=hello,
                    )
                await serve_http(
                    client,
                    client_addr=(peer[0], peer[1]),
                    scheme="https" if self.tls else "http",
                    router=self.router,  # type: ignore[arg-type]
                    limits=self.limits,
                    sni=sni,
                )
            except BaseException as exc:  # serve_http must never raise but for cancellation
                self.errors.append(exc)
                raise
            finally:
                self.finished += 1

        self.nursery.start_soon(trio.serve_listeners, handle, listeners)

    async def app(self, host: str, respond: Respond) -> Upstream:
        """Serve an h11 keep-alive app answering `respond(request, body)`; route `host` to it."""
        upstream = Upstream()
        return await self.upstream(host, h11_app(upstream, respond), upstream=upstream)

    async def upstream(
        self, host: str, handler: Handler, *, upstream: Upstream | None = None
    ) -> Upstream:
        """Serve `handler` on a new port and route `host` to it."""
        upstream = upstream or Upstream()
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        upstream.port = listeners[0].socket.getsockname()[1]

        async def handle(stream: trio.SocketStream) -> None:
            upstream.connections += 1
            if self.buffer:
                small_buffers(stream, self.buffer)
            try:
                await handler(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                pass
            finally:
                await trio.aclose_forcefully(stream)

        self.nursery.start_soon(trio.serve_listeners, handle, listeners)
        route = Route(key=host, port=upstream.port, buffer=self.buffer)
        self.route_list.append(route)
        self.router.routes[host] = route
        return upstream

    async def settle(self) -> None:
        """Wait until every proxied connection has ended."""
        while self.finished < self.started:
            await trio.sleep(0.01)

    def url(self, host: str, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    def resolve(self, *hosts: str) -> list[str]:
        return [arg for h in hosts for arg in ("--resolve", f"{h}:{self.port}:127.0.0.1")]

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


@asynccontextmanager
async def world(
    limits: HttpConfig = LIMITS,
    *,
    buffer: int | None = None,
    tls: ssl.SSLContext | None = None,
    check_leaks: bool = True,
) -> AsyncIterator[World]:
    with trio.fail_after(TIMEOUT * 3):
        async with trio.open_nursery() as nursery:
            w = World(nursery, limits, buffer, tls)
            await w.start_proxy()
            yield w
            with trio.fail_after(TIMEOUT):
                await w.settle()
            nursery.cancel_scope.cancel()
    assert not w.errors, w.errors
    if check_leaks:
        for route in w.route_list:
            assert route.opened == route.closed, (route.key, route.opened, route.closed)


async def read_client_hello(stream: trio.SocketStream) -> tuple[str | None, bytes]:
    """A connection's ClientHello, read as the front door reads it (without answering): its
    SNI, and the bytes read, which the TLS stream must then get first."""
    data = bytearray()
    while (hello := parse_client_hello(data)) is None:
        chunk = await stream.receive_some(MAX_HELLO_BYTES)
        if not chunk:
            raise trio.BrokenResourceError("closed before its ClientHello")
        data += chunk
    return hello.sni, bytes(data)


def small_buffers(stream: trio.SocketStream, size: int) -> None:
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


# ---------------------------------------------------------------------------- test upstreams

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
Respond = Callable[[h11.Request, bytes], Reply]


def h11_app(upstream: Upstream, respond: Respond) -> Handler:
    """A keep-alive HTTP/1.1 server that answers each request with `respond(request, body)`."""

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request, body = await read_message(conn, stream)
            if request is None:
                return
            assert isinstance(request, h11.Request)
            upstream.requests.append((request, body))
            status, headers, payload = respond(request, body)
            data = conn.send(h11.Response(status_code=status, headers=headers))
            if payload:
                data += conn.send(h11.Data(data=payload))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    return handler


async def read_message(
    conn: h11.Connection, stream: trio.abc.ReceiveStream
) -> tuple[h11.Request | h11.Response | None, bytes]:
    """One whole message (head and body) from `conn`, or (None, b"") at a clean close."""
    head: h11.Request | h11.Response | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(READ_SIZE))
            continue
        if isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""


def echo_headers(request: h11.Request, body: bytes) -> Reply:
    """The request as JSON: method, target, headers (lowercased names, in order), body."""
    document = {
        "method": request.method.decode(),
        "target": request.target.decode(),
        "headers": [[n.decode(), v.decode()] for n, v in request.headers],
        "body": body.decode("latin-1"),
    }
    payload = json.dumps(document).encode()
    return (
        200,
        [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        payload,
    )


def header(headers: list[list[str]] | list[tuple[bytes, bytes]], name: str) -> list[str]:
    out = []
    for n, v in headers:
        n_text = n.decode() if isinstance(n, bytes) else n
        if n_text.lower() == name:
            out.append(v.decode() if isinstance(v, bytes) else v)
    return out


# ----------------------------------------------------------------------------------- clients


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def get(self, name: str) -> str | None:
        values = header(self.headers, name.lower())
        return values[0] if values else None


async def curl(*args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    result = await trio.run_process(
        [CURL, "-sS", "--noproxy", "*", "--max-time", str(TIMEOUT), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def parse_responses(raw: bytes) -> list[Response]:
    """Responses as curl -i prints them (1xx heads are skipped); bodies need Content-Length or
    a single response."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = [
            (n.strip().lower(), v.strip())
            for n, _, v in (line.partition(b":") for line in lines[1:])
        ]
        if 100 <= status < 200:
            raw = rest
            continue
        length = header(headers, "content-length")
        if length:
            body, raw = rest[: int(length[0])], rest[int(length[0]) :]
        else:
            body, raw = rest, b""
        out.append(Response(status, headers, body))
    return out


class Client:
    """An h11 client on one connection to the proxy."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
    ) -> Response:
        if self.conn.our_state is h11.DONE:
            self.conn.start_next_cycle()
        if body:
            headers = [*headers, ("content-length", str(len(body)))]
        data = self.conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        await self.stream.send_all(data)
        response, payload = await read_message(self.conn, self.stream)
        assert isinstance(response, h11.Response)
        return Response(response.status_code, list(response.headers), payload)


async def raw_exchange(w: World, data: bytes, *, pause: float = 0) -> bytes:
    """Send `data`, then read until the proxy closes."""
    stream = await w.connect()
    try:
        await stream.send_all(data)
        if pause:
            await trio.sleep(pause)
        return await read_all(stream)
    finally:
        await stream.aclose()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    chunks = []
    try:
        while chunk := await stream.receive_some(READ_SIZE):
            chunks.append(chunk)
    except trio.BrokenResourceError:
        pass
    return b"".join(chunks)


# ----------------------------------------------------------------------------------- relaying


async def test_get_and_post_relay_with_forwarded_headers() -> None:
    async with world() as w:
        await w.app("app.test", echo_headers)
        code, out, err = await curl(
            "-i",
            *w.resolve("app.test"),
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            "-H",
            "X-Custom: yes",
            w.url("app.test", "/path?q=1"),
        )
        assert code == 0, err
        [response] = parse_responses(out)
        assert response.status == 200
        seen = json.loads(response.body)
        assert seen["method"] == "GET" and seen["target"] == "/path?q=1"
        headers = seen["headers"]
        assert header(headers, "host") == [f"app.test:{w.port}"]
        assert header(headers, "x-custom") == ["yes"]
        assert header(headers, "x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]
        assert header(headers, "x-forwarded-proto") == ["http"]
        assert header(headers, "x-forwarded-host") == [f"app.test:{w.port}"]
        assert w.router.asked == [("app.test", "http")]

        code, out, err = await curl(
            "-i",
            *w.resolve("app.test"),
            "--data-binary",
            "hello=world",
            "-H",
            "X-Forwarded-Host: public.example",
            "-H",
            "X-Forwarded-Proto: https",
            w.url("app.test", "/submit"),
        )
        assert code == 0, err
        [response] = parse_responses(out)
        seen = json.loads(response.body)
        assert seen["method"] == "POST" and seen["body"] == "hello=world"
        assert header(seen["headers"], "content-length") == ["11"]
        assert header(seen["headers"], "x-forwarded-host") == ["public.example"]
        assert header(seen["headers"], "x-forwarded-proto") == ["https, http"]
        route = w.router.routes["app.test"]
        assert isinstance(route, Route)
        assert all(addr.startswith("127.0.0.1:") for addr in route.client_addrs)


async def test_hop_by_hop_headers_are_removed_both_ways() -> None:
    def respond(request: h11.Request, body: bytes) -> Reply:
        return (
            200,
            [
                (b"Connection", b"x-upstream-hop"),
                (b"X-Upstream-Hop", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Proxy-Authenticate", b"Basic"),
                (b"Trailer", b"x-t"),
                (b"ngrok-error-code", b"ERR_NGROK_3200"),
                (b"Burrow-Error-Code", b"ERR_NGROK_3200"),
                (b"X-Kept", b"yes"),
            ],
            b"ok",
        )

    async with world() as w:
        up = await w.app("app.test", respond)
        client = Client(await w.connect())
        response = await client.request(
            "GET",
            "/",
            [
                ("Host", "app.test"),
                ("Connection", "keep-alive, X-Client-Hop"),
                ("X-Client-Hop", "secret"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "x-t"),
                ("Proxy-Authorization", "Basic Zm9v"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),  # without Connection: upgrade it is not an upgrade
                ("X-Kept", "yes"),
            ],
        )
        await client.stream.aclose()
        assert response.status == 200 and response.body == b"ok"
        names = {n.lower() for n, _ in response.headers}
        assert b"x-kept" in names
        for name in (
            b"connection",
            b"x-upstream-hop",
            b"keep-alive",
            b"proxy-authenticate",
            b"trailer",
            b"ngrok-error-code",
            b"burrow-error-code",
        ):
            assert name not in names, name
        [(request, _)] = up.requests
        names = {n for n, _ in request.headers}
        assert b"x-kept" in names
        for name in (
            b"connection",
            b"x-client-hop",
            b"keep-alive",
            b"te",
            b"trailer",
            b"proxy-authorization",
            b"proxy-connection",
            b"upgrade",
        ):
            assert name not in names, name


async def test_keep_alive_reuses_the_upstream_stream() -> None:
    async with world() as w:
        up = await w.app("app.test", echo_headers)
        code, out, err = await curl(
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\\n",
            *w.resolve("app.test"),
            w.url("app.test", "/one"),
            w.url("app.test", "/two"),
        )
        assert code == 0, err
        assert out.split(b"\n")[:2] == [b"200 1", b"200 0"]  # the second reused the connection
        assert up.connections == 1
        assert [r.target for r, _ in up.requests] == [b"/one", b"/two"]


async def test_host_change_mid_connection_opens_its_own_stream() -> None:
    async with world() as w:
        a = await w.app("a.test", echo_headers)
        b = await w.app("b.test", echo_headers)
        client = Client(await w.connect())
        for host in ("a.test", "a.test", "b.test", "b.test", "a.test"):
            response = await client.request("GET", "/", [("Host", host)])
            assert response.status == 200
            assert header(json.loads(response.body)["headers"], "host") == [host]
        await client.stream.aclose()
        assert (len(a.requests), len(b.requests)) == (3, 2)
        assert (a.connections, b.connections) == (2, 1)


async def test_chunked_request_and_chunked_response(tmp_path: Path) -> None:
    def respond(request: h11.Request, body: bytes) -> Reply:
        # No Content-Length: h11 frames the response chunked.
        te = b",".join(v for n, v in request.headers if n == b"transfer-encoding")
        return 200, [(b"x-request-te", te)], body[::-1]

    payload = os.urandom(300 * KiB)
    async with world() as w:
        up = await w.app("app.test", respond)
        headers_file = tmp_path / "headers"
        code, out, err = await curl(
            "-D",
            str(headers_file),
            "-T",
            "-",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",  # this upstream sends no 100 Continue: do not wait for one
            *w.resolve("app.test"),
            w.url("app.test", "/upload"),
            stdin=payload,
        )
        assert code == 0, err
        assert out == payload[::-1]
        head = headers_file.read_bytes().lower()
        assert b"transfer-encoding: chunked" in head
        assert b"x-request-te: chunked" in head
        [(request, body)] = up.requests
        assert body == payload and request.method == b"PUT"


async def test_read_until_close_response_is_reframed_and_connection_kept() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        await read_message(conn, stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nX-Kind: legacy\r\n\r\nhello ")
        await stream.send_all(b"until close")
        await stream.aclose()

    async with world() as w:
        up = await w.upstream("app.test", handler)
        client = Client(await w.connect())
        for _ in range(2):
            response = await client.request("GET", "/", [("Host", "app.test")])
            assert response.status == 200 and response.body == b"hello until close"
            assert response.get("transfer-encoding") == "chunked"
        await client.stream.aclose()
        assert up.connections == 2  # the upstream's close ended its stream, not the client's


async def test_head_204_and_304_have_no_body() -> None:
    def respond(request: h11.Request, body: bytes) -> Reply:
        if request.target == b"/204":
            return 204, [], b""
        if request.target == b"/304":
            return 304, [(b"etag", b'"1"')], b""
        payload = b"" if request.method == b"HEAD" else b"hello"
        return 200, [(b"content-length", b"5")], payload

    async with world() as w:
        up = await w.app("app.test", respond)
        client = Client(await w.connect())
        response = await client.request("HEAD", "/", [("Host", "app.test")])
        assert (response.status, response.get("content-length"), response.body) == (200, "5", b"")
        for target, status in (("/204", 204), ("/304", 304), ("/", 200)):
            response = await client.request("GET", target, [("Host", "app.test")])
            assert response.status == status
        assert response.body == b"hello"
        await client.stream.aclose()
        assert up.connections == 1


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with world() as w:
        up = await w.app("app.test", echo_headers)
        data = (
            b"".join(f"GET /{i} HTTP/1.1\r\nHost: app.test\r\n\r\n".encode() for i in range(3))
            + b"GET /last HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        raw = await raw_exchange(w, data)
        responses = parse_responses(raw)
        targets = [json.loads(r.body)["target"] for r in responses]
        assert targets == ["/0", "/1", "/2", "/last"]
        assert up.connections == 1


async def test_retry_when_the_reused_stream_was_closed_by_the_upstream() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        # Answers one request as keep-alive, then closes (an upstream keep-alive timeout).
        conn = h11.Connection(h11.SERVER)
        await read_message(conn, stream)
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"2")]))
            + conn.send(h11.Data(data=b"ok"))
            + conn.send(h11.EndOfMessage())
        )
        await stream.aclose()

    async with world() as w:
        up = await w.upstream("app.test", handler)
        client = Client(await w.connect())
        for _ in range(3):
            response = await client.request("GET", "/", [("Host", "app.test")])
            assert (response.status, response.body) == (200, b"ok")
            await trio.sleep(0.05)  # let the upstream's FIN arrive before the next request
        await client.stream.aclose()
        assert up.connections == 3


# ----------------------------------------------------------------------- big bodies, streams


async def test_large_bodies_stream_both_ways_with_backpressure() -> None:
    size = 64 * MiB
    block = os.urandom(256 * KiB)
    expected = hashlib.sha256()
    for _ in range(size // len(block)):
        expected.update(block)
    counters = {"up_read": 0, "up_sent": 0}

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        # Upload: read slowly, hashing.
        digest = hashlib.sha256()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                await trio.sleep(0.0005)
                conn.receive_data(await stream.receive_some(64 * KiB))
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                counters["up_read"] += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        await stream.send_all(
            conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"64")]))
            + conn.send(h11.Data(data=digest.hexdigest().encode()))
            + conn.send(h11.EndOfMessage())
        )
        conn.start_next_cycle()
        # Download: send fast.
        await read_message(conn, stream)
        await stream.send_all(
            conn.send(
                h11.Response(status_code=200, headers=[(b"content-length", str(size).encode())])
            )
        )
        for _ in range(size // len(block)):
            await stream.send_all(block)
            counters["up_sent"] += len(block)
        conn.send(h11.EndOfMessage())
        await read_message(conn, stream)

    # Small socket buffers, so what sits in the kernel is small and the bound below is tight.
    async with world(buffer=64 * KiB) as w:
        await w.upstream("big.test", handler)
        stream = await w.connect()
        small_buffers(stream, 64 * KiB)
        conn = h11.Connection(h11.CLIENT)
        in_flight = 0
        sent = 0
        await stream.send_all(
            conn.send(
                h11.Request(
                    method="POST",
                    target="/up",
                    headers=[("host", "big.test"), ("content-length", str(size))],
                )
            )
        )
        for _ in range(size // len(block)):
            await stream.send_all(conn.send(h11.Data(data=block)))
            sent += len(block)
            in_flight = max(in_flight, sent - counters["up_read"])
        conn.send(h11.EndOfMessage())
        response, body = await read_message(conn, stream)
        assert isinstance(response, h11.Response) and response.status_code == 200
        assert body.decode() == expected.hexdigest()
        assert in_flight < 4 * MiB, in_flight  # the proxy did not soak up the upload

        conn.start_next_cycle()
        await stream.send_all(
            conn.send(h11.Request(method="GET", target="/down", headers=[("host", "big.test")]))
            + conn.send(h11.EndOfMessage())
        )
        digest = hashlib.sha256()
        received = 0
        in_flight = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                await trio.sleep(0.0005)
                conn.receive_data(await stream.receive_some(64 * KiB))
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                received += len(event.data)
                in_flight = max(in_flight, counters["up_sent"] - received)
            elif isinstance(event, h11.EndOfMessage):
                break
        assert received == size and digest.hexdigest() == expected.hexdigest()
        assert in_flight < 4 * MiB, in_flight  # the proxy did not soak up the download
        await stream.aclose()


async def test_curl_upload_and_download_files(tmp_path: Path) -> None:
    data = os.urandom(8 * MiB)
    (tmp_path / "in").write_bytes(data)

    def respond(request: h11.Request, body: bytes) -> Reply:
        if request.method == b"PUT":
            return 200, [], hashlib.sha256(body).hexdigest().encode()
        return 200, [(b"content-length", str(len(data)).encode())], data

    async with world() as w:
        await w.app("files.test", respond)
        code, out, err = await curl(
            "-H",
            "Expect:",
            "-T",
            str(tmp_path / "in"),
            *w.resolve("files.test"),
            w.url("files.test", "/in"),
        )
        assert code == 0, err
        assert out.decode() == hashlib.sha256(data).hexdigest()
        code, out, err = await curl(
            "-o", str(tmp_path / "out"), *w.resolve("files.test"), w.url("files.test", "/out")
        )
        assert code == 0, err
        assert (tmp_path / "out").read_bytes() == data


async def test_expect_100_continue_and_early_hints_are_relayed() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(READ_SIZE))
            elif isinstance(event, h11.Request):
                assert (b"expect", b"100-continue") in list(event.headers)
                early_hints = h11.InformationalResponse(
                    status_code=103, headers=[(b"link", b"</app.css>; rel=preload")]
                )
                await stream.send_all(
                    conn.send(early_hints)
                    + conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                )
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        await stream.send_all(
            conn.send(h11.Response(status_code=201, headers=[(b"content-length", b"4")]))
            + conn.send(h11.Data(data=str(len(body)).encode().rjust(4)))
            + conn.send(h11.EndOfMessage())
        )

    async with world() as w:
        await w.upstream("app.test", handler)
        began = time.monotonic()
        code, out, err = await curl(
            "-v",
            "--expect100-timeout",
            "15",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "x" * 5000,
            *w.resolve("app.test"),
            w.url("app.test", "/"),
        )
        assert code == 0, err
        assert out == b"5000"
        assert b"< HTTP/1.1 100" in err
        assert b"< HTTP/1.1 103" in err and b"< link: </app.css>; rel=preload" in err
        assert time.monotonic() - began < 10  # curl did not sit out its expect timeout


async def test_early_response_during_upload_is_relayed_then_closed() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while not isinstance(conn.next_event(), h11.Request):
            conn.receive_data(await stream.receive_some(READ_SIZE))
        await stream.send_all(
            conn.send(
                h11.Response(
                    status_code=413, headers=[(b"content-length", b"8"), (b"connection", b"close")]
                )
            )
            + conn.send(h11.Data(data=b"too big!"))
            + conn.send(h11.EndOfMessage())
        )
        await trio.sleep(0.2)

    async with world() as w:
        await w.upstream("app.test", handler)
        code, out, err = await curl(
            "-i",
            "--data-binary",
            "@-",
            *w.resolve("app.test"),
            w.url("app.test", "/"),
            stdin=b"y" * (32 * MiB),
        )
        assert code == 0, err
        [response] = parse_responses(out)
        assert response.status == 413 and response.body == b"too big!"
        assert response.get("connection") == "close"


# ------------------------------------------------------------------------------- websockets


async def test_websocket_through_the_proxy() -> None:
    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send_message(await ws.get_message())

    async with world() as w:
        upstream_port = 0
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, None)
            upstream_port = server.port
            route = Route(key="ws", port=upstream_port)
            w.route_list.append(route)
            w.router.routes["127.0.0.1"] = route
            async with open_websocket_url(f"ws://127.0.0.1:{w.port}/chat") as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "hello"
                for _ in range(4):  # trio-websocket's default message limit is 1 MiB
                    big = os.urandom(512 * KiB)
                    await ws.send_message(big)
                    assert await ws.get_message() == big
            nursery.cancel_scope.cancel()


async def test_raw_upgrade_forwards_bytes_parsed_ahead_both_ways() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            buffer += await stream.receive_some(READ_SIZE)
        head, _, early = buffer.partition(b"\r\n\r\n")
        assert b"upgrade: x-raw" in head.lower()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-raw\r\n\r\n"
            b"server-first|"
        )
        while len(early) < len(b"client-first|"):
            early += await stream.receive_some(READ_SIZE)
        await stream.send_all(b"got:" + early)
        while data := await stream.receive_some(READ_SIZE):
            await stream.send_all(data.upper())
        await stream.send_eof()

    async with world() as w:
        await w.upstream("app.test", handler)
        stream = await w.connect()
        await stream.send_all(
            b"GET /raw HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: x-raw\r\n\r\n"
            b"client-first|"
        )
        buffer = b""
        while b"got:client-first|" not in buffer:
            buffer += await stream.receive_some(READ_SIZE)
        head, _, rest = buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: x-raw" in head.lower() and b"connection: upgrade" in head.lower()
        assert rest == b"server-first|got:client-first|"
        await stream.send_all(b"shout")
        await stream.send_eof()  # half-close: the reply still comes back
        assert await read_all(stream) == b"SHOUT"
        await stream.aclose()


async def test_upgrade_refused_by_upstream_is_a_normal_response() -> None:
    async with world() as w:
        await w.app("app.test", echo_headers)
        client = Client(await w.connect())
        response = await client.request(
            "GET", "/", [("Host", "app.test"), ("Connection", "upgrade"), ("Upgrade", "websocket")]
        )
        assert response.status == 200
        seen = json.loads(response.body)["headers"]
        assert header(seen, "upgrade") == ["websocket"] and header(seen, "connection") == [
            "upgrade"
        ]
        response = await client.request("GET", "/again", [("Host", "app.test")])
        assert response.status == 200
        await client.stream.aclose()


# ------------------------------------------------------------------------------ error pages


async def test_offline_endpoint_is_404_3200_html_and_json() -> None:
    async with world() as w:
        code, out, err = await curl(
            "-i", *w.resolve("nobody.test"), w.url("nobody.test", "/"), w.url("nobody.test", "/")
        )
        assert code == 0, err
        first, second = parse_responses(out)
        assert first.status == 404
        assert first.get("burrow-error-code") == "ERR_NGROK_3200"
        assert first.get("ngrok-error-code") == "ERR_NGROK_3200"
        assert first.get("content-type") == "text/html; charset=utf-8"
        assert b"nobody.test is offline" in first.body
        assert b"docs/errors.md#err_ngrok_3200" in first.body
        assert first.get("connection") is None  # kept alive
        assert second.status == 404
        code, out, err = await curl(
            "-H", "Accept: application/json", *w.resolve("nobody.test"), w.url("nobody.test")
        )
        assert code == 0, err
        document = json.loads(out)
        assert document["error_code"] == "ERR_NGROK_3200" and document["status_code"] == 404
        assert "nobody.test" in document["msg"]


async def test_agent_gone_is_502_3200() -> None:
    async with world() as w:
        w.router.routes["gone.test"] = DeadRoute()
        code, out, err = await curl("-i", *w.resolve("gone.test"), w.url("gone.test"))
        assert code == 0, err
        [response] = parse_responses(out)
        assert response.status == 502
        assert response.get("ngrok-error-code") == "ERR_NGROK_3200"


async def test_stream_refused_by_the_agent_is_502_8012() -> None:
    async with world() as w:
        left, right = trio.testing.memory_stream_pair()
        async with (
            open_mux_session(left, Role.CLIENT) as agent,
            open_mux_session(right, Role.SERVER) as edge,
            trio.open_nursery() as nursery,
        ):
            opened: list[object] = []

            class MuxRoute:
                key = "mux"
                forwards_to = "http://localhost:5999"
                policy = None

                async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
                    stream = await edge.open_stream()
                    await stream.send_all(b"proxy-header")  # muxado's SYN rides on data
                    opened.append(stream)
                    return stream

            async def refuse() -> None:
                while True:
                    stream = await agent.accept_stream()
                    await stream.receive_some(64)
                    stream.reset(ErrorCode.STREAM_REFUSED)

            nursery.start_soon(refuse)
            w.router.routes["app.test"] = MuxRoute()
            code, out, err = await curl(
                "-i",
                "-H",
                "Accept: application/json",
                *w.resolve("app.test"),
                w.url("app.test"),
                w.url("app.test"),
            )
            assert code == 0, err
            first, second = parse_responses(out)
            assert first.status == second.status == 502
            assert first.get("burrow-error-code") == "ERR_NGROK_8012"
            assert first.get("ngrok-error-code") == "ERR_NGROK_8012"
            assert "http://localhost:5999" in json.loads(first.body)["msg"]
            assert len(opened) == 2
            await w.settle()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "reply",
    [
        b"this is not http\r\n\r\n",
        b"",  # closes without a byte
        b"HTTP/1.1 200 OK\r\nContent-Le",  # closes mid-head
    ],
)
async def test_bad_or_missing_response_is_502_3004(reply: bytes) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(READ_SIZE)
        if reply:
            await stream.send_all(reply)

    async with world() as w:
        await w.upstream("app.test", handler)
        code, out, err = await curl("-i", *w.resolve("app.test"), w.url("app.test"))
        assert code == 0, err
        [response] = parse_responses(out)
        assert response.status == 502
        assert response.get("burrow-error-code") == "ERR_NGROK_3004"
        assert response.get("ngrok-error-code") == "ERR_NGROK_3004"


async def test_upstream_failing_mid_response_aborts_the_client() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(READ_SIZE)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")

    async with world() as w:
        await w.upstream("app.test", handler)
        code, out, err = await curl("-i", *w.resolve("app.test"), w.url("app.test"))
        assert code == 18, (code, err)  # curl: partial file
        assert out.startswith(b"HTTP/1.1 200 ")


def response_head(size: int) -> bytes:
    """A 200 response head of about `size` bytes (1 KiB filler headers), with a 2-byte body."""
    lines = [b"HTTP/1.1 200 OK", b"Content-Length: 2"]
    filler = b"x" * 1000
    while sum(len(line) + 2 for line in lines) < size:
        lines.append(b"X-Filler-%06d: %s" % (len(lines), filler))
    return b"\r\n".join(lines) + b"\r\n\r\nok"


def answering(reply: bytes, *, piece: int | None = None) -> Handler:
    """An upstream that reads the request head, then sends `reply` whatever it asked: at once,
    or `piece` bytes at a time with a pause between (so the edge sees an incomplete head)."""

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while conn.next_event() is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(READ_SIZE))
        step = piece or len(reply)
        for offset in range(0, len(reply), step):
            if offset:
                await trio.sleep(0.02)
            await stream.send_all(reply[offset : offset + step])

    return handler


async def test_oversized_response_head_is_502_and_never_reaches_the_client() -> None:
    """An upstream's response head is held whole before it is relayed, so it is bounded by
    http.max_head_size as a request head is: a 1 MiB one is refused, not buffered."""
    assert LIMITS.max_head_size < MiB
    async with world() as w:
        await w.upstream("app.test", answering(response_head(MiB)))
        raw = await raw_exchange(
            w, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        [response] = parse_responses(raw)
        assert response.status == 502
        assert response.get("burrow-error-code") == "ERR_NGROK_3004"
        assert b"X-Filler" not in raw and b"x" * 1000 not in raw
        assert len(raw) < 64 * KiB


async def test_response_head_up_to_max_head_size_is_relayed() -> None:
    """The bound on a response head is http.max_head_size, not some smaller default (h11's is
    16 KiB): a 40 KiB head, arriving in pieces so the edge holds it incomplete, goes through."""
    limits = HttpConfig(max_head_size=64 * KiB, head_timeout=2.0, idle_timeout=5.0)
    head = response_head(40 * KiB)
    async with world(limits) as w:
        await w.upstream("app.test", answering(head, piece=8 * KiB))
        raw = await raw_exchange(
            w, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        [response] = parse_responses(raw)
        assert response.status == 200 and response.body == b"ok"
        assert len(header(response.headers, "x-filler-000002")) == 1
        assert raw.count(b"X-Filler") == head.count(b"X-Filler")


async def test_silent_upstream_is_504() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(READ_SIZE)
        await trio.sleep_forever()

    # An idle timeout shorter than head_timeout: the deadline moves earlier after the head.
    limits = HttpConfig(max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=0.5)
    async with world(limits) as w:
        await w.upstream("app.test", handler)
        began = time.monotonic()
        code, out, err = await curl("-i", *w.resolve("app.test"), w.url("app.test"))
        assert code == 0, err
        assert 0.4 < time.monotonic() - began < 1.8
        [response] = parse_responses(out)
        assert response.status == 504
        assert response.get("burrow-error-code") == "BURROW_GATEWAY_TIMEOUT"


async def test_stalled_response_body_is_aborted_after_idle_timeout() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(READ_SIZE)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart")
        await trio.sleep_forever()

    limits = HttpConfig(max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=0.5)
    async with world(limits) as w:
        await w.upstream("app.test", handler)
        began = time.monotonic()
        raw = await raw_exchange(w, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"start")
        assert 0.4 < time.monotonic() - began < 5


# -------------------------------------------------------------------------- hostile clients


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\n"
            b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
        (b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\n"
            b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: bad host!\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 needs a Host
        (b"GET / HTTP/1.0\r\n\r\n", 400),  # and we need one to route
        (b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n", 405),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40), 400),  # TLS on plain HTTP
        (b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
async def test_bad_requests_are_refused_and_never_forwarded(
    request_bytes: bytes, status: int
) -> None:
    async with world() as w:
        up = await w.app("app.test", echo_headers)
        raw = await raw_exchange(w, request_bytes)
        [response] = parse_responses(raw)
        assert response.status == status
        assert response.get("connection") == "close"
        assert (response.get("burrow-error-code") or "").startswith("BURROW_")
        assert response.get("ngrok-error-code") is None
        assert up.requests == []


async def test_oversized_head_is_431() -> None:
    limits = HttpConfig(max_head_size=4 * KiB, head_timeout=2.0, idle_timeout=5.0)
    async with world(limits) as w:
        up = await w.app("app.test", echo_headers)
        big = b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + b"a" * (5 * KiB) + b"\r\n\r\n"
        for request_bytes in (big, big[:-4]):  # whole in one read, or still incomplete
            raw = await raw_exchange(w, request_bytes)
            [response] = parse_responses(raw)
            assert response.status == 431
            assert response.get("burrow-error-code") == "BURROW_HEAD_TOO_LARGE"
        # Under the limit is fine.
        client = Client(await w.connect())
        response = await client.request("GET", "/", [("Host", "app.test"), ("X-Big", "a" * 3000)])
        assert response.status == 200
        await client.stream.aclose()
        assert len(up.requests) == 1


async def test_slow_head_is_408_within_head_timeout() -> None:
    limits = HttpConfig(max_head_size=16 * KiB, head_timeout=0.5, idle_timeout=5.0)
    async with world(limits) as w:
        began = time.monotonic()
        stream = await w.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: app.te")
        raw = await read_all(stream)
        await stream.aclose()
        [response] = parse_responses(raw)
        assert response.status == 408
        assert response.get("burrow-error-code") == "BURROW_REQUEST_TIMEOUT"
        assert 0.4 < time.monotonic() - began < 3

        # A later request on a kept-alive connection gets the same bound from its first byte.
        stream = await w.connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        buffer = b""
        while b"</html>" not in buffer:
            buffer += await stream.receive_some(READ_SIZE)
        assert buffer.startswith(b"HTTP/1.1 404 ")
        await trio.sleep(0.3)
        began = time.monotonic()
        await stream.send_all(b"GET / HTTP/1.1\r\n")
        raw = await read_all(stream)
        await stream.aclose()
        assert raw.startswith(b"HTTP/1.1 408 ")
        assert 0.4 < time.monotonic() - began < 3


async def test_silent_connection_and_idle_keep_alive_close_quietly() -> None:
    limits = HttpConfig(
        max_head_size=16 * KiB, head_timeout=0.5, idle_timeout=0.5, keepalive_timeout=0.5
    )
    async with world(limits) as w:
        await w.app("app.test", echo_headers)
        stream = await w.connect()
        assert await read_all(stream) == b""  # nothing asked: closed without a word
        await stream.aclose()

        client = Client(await w.connect())
        response = await client.request("GET", "/", [("Host", "app.test")])
        assert response.status == 200
        began = time.monotonic()
        assert await read_all(client.stream) == b""
        assert 0.4 < time.monotonic() - began < 3
        await client.stream.aclose()


async def test_client_vanishing_mid_upload_closes_the_upstream_stream() -> None:
    upstream_saw_end = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        try:
            while await stream.receive_some(READ_SIZE):
                pass
        finally:
            upstream_saw_end.set()

    async with world() as w:
        await w.upstream("app.test", handler)
        route = w.router.routes["app.test"]
        assert isinstance(route, Route)
        stream = await w.connect()
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000000\r\n\r\n"
        )
        await stream.send_all(b"z" * MiB)
        while route.opened == 0:
            await trio.sleep(0.01)
        await trio.aclose_forcefully(stream)
        await upstream_saw_end.wait()
        await w.settle()
        assert route.opened == route.closed == 1


async def test_hostile_connections_do_not_disturb_others() -> None:
    limits = HttpConfig(max_head_size=16 * KiB, head_timeout=3.0, idle_timeout=5.0)
    async with world(limits) as w:
        await w.app("app.test", echo_headers)
        loris = await w.connect()
        await loris.send_all(b"GET / HTTP/1.1\r\nHo")
        stalled = await w.connect()
        await stalled.send_all(
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 999999\r\n\r\nab"
        )
        garbage = await w.connect()
        await garbage.send_all(os.urandom(1000))
        began = time.monotonic()
        for _ in range(3):
            code, out, err = await curl("-i", *w.resolve("app.test"), w.url("app.test"))
            assert code == 0, err
            assert parse_responses(out)[0].status == 200
        assert time.monotonic() - began < 2.5
        for stream in (loris, stalled, garbage):
            await trio.aclose_forcefully(stream)


async def test_agent_that_never_opens_the_stream_is_502_3200() -> None:
    class StuckRoute:
        key = "stuck"
        forwards_to = "http://localhost:1"
        policy = None

        async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
            await trio.sleep_forever()
            raise AssertionError

    limits = HttpConfig(max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=0.5)
    async with world(limits) as w:
        w.router.routes["stuck.test"] = StuckRoute()
        began = time.monotonic()
        code, out, err = await curl("-i", *w.resolve("stuck.test"), w.url("stuck.test"))
        assert code == 0, err
        assert time.monotonic() - began < 1.8
        [response] = parse_responses(out)
        assert response.status == 502
        assert response.get("ngrok-error-code") == "ERR_NGROK_3200"


async def test_connection_header_cannot_remove_framing_or_host() -> None:
    async with world() as w:
        up = await w.app("app.test", echo_headers)
        client = Client(await w.connect())
        response = await client.request(
            "POST",
            "/",
            [("Host", "app.test"), ("Connection", "content-length, host, x-forwarded-for")],
            body=b"payload",
        )
        await client.stream.aclose()
        seen = json.loads(response.body)
        assert seen["body"] == "payload"
        assert header(seen["headers"], "content-length") == ["7"]
        assert header(seen["headers"], "host") == ["app.test"]
        assert header(seen["headers"], "x-forwarded-for") == ["127.0.0.1"]
        assert len(up.requests) == 1


async def test_client_connection_close_and_http_1_0() -> None:
    def respond(request: h11.Request, body: bytes) -> Reply:
        return 200, [], b"no length, chunked or read-until-close"  # framing left to h11

    async with world() as w:
        await w.app("app.test", respond)
        raw = await raw_exchange(
            w, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        assert raw.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" in raw.lower()
        code, out, err = await curl(
            "-i", "--http1.0", *w.resolve("app.test"), w.url("app.test"), w.url("app.test")
        )
        assert code == 0, err
        assert out.count(b"no length, chunked or read-until-close") == 2
        assert b"transfer-encoding" not in out.lower()  # an HTTP/1.0 client gets no chunks


async def test_upgraded_connection_closes_when_idle() -> None:
    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(READ_SIZE)
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
        )
        await stream.receive_some(READ_SIZE)  # waits for an EOF that comes from the proxy

    limits = HttpConfig(max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=0.5)
    async with world(limits) as w:
        await w.upstream("app.test", handler)
        stream = await w.connect()
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
        )
        began = time.monotonic()
        raw = await read_all(stream)
        await stream.aclose()
        assert raw.startswith(b"HTTP/1.1 101 ")
        assert 0.4 < time.monotonic() - began < 3


async def test_https_client_stream_without_half_close(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("app.test", "127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send_message(await ws.get_message())

    async with world(tls=server_tls) as w:
        up = await w.app("app.test", echo_headers)
        code, out, err = await curl(
            "-i", "--cacert", str(ca_file), *w.resolve("app.test"), w.url("app.test")
        )
        assert code == 0, err
        [response] = parse_responses(out)
        seen = json.loads(response.body)["headers"]
        assert header(seen, "x-forwarded-proto") == ["https"]
        assert w.router.asked[-1] == ("app.test", "https")
        assert len(up.requests) == 1

        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, None)
            route = Route(key="ws", port=server.port)
            w.route_list.append(route)
            w.router.routes["127.0.0.1"] = route
            url = f"wss://127.0.0.1:{w.port}/chat"
            async with open_websocket_url(url, ssl_context=client_tls) as ws:
                for message in ("over", "tls"):
                    await ws.send_message(message)
                    assert await ws.get_message() == message
            nursery.cancel_scope.cancel()


# ------------------------------------------------- misdirected requests and request-line cases


def tls_files(tmp_path: Path, *names: str) -> tuple[ssl.SSLContext, Path]:
    """A server context with one trustme certificate for `names`, and the CA file for curl."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server_tls)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server_tls, ca_file


async def test_host_of_another_endpoint_than_the_sni_is_421_over_tls(tmp_path: Path) -> None:
    """SNI a.test, Host victim.test: the certificate was a.test's, so the request must not
    reach victim.test's endpoint (another customer's, perhaps); nor a name nobody serves.
    Another spelling of a.test, or another name of a.test's endpoint, is forwarded."""
    server_tls, ca_file = tls_files(tmp_path, "a.test")
    async with world(tls=server_tls) as w:
        mine = await w.app("a.test", echo_headers)
        victim = await w.app("victim.test", echo_headers)
        w.router.routes["alias.test"] = w.router.routes["a.test"]  # one endpoint, two names

        async def get(host_header: str, *extra: str) -> Response:
            code, out, err = await curl(
                "-i",
                "--cacert",
                str(ca_file),
                *w.resolve("a.test"),
                "-H",
                f"Host: {host_header}",
                *extra,
                w.url("a.test"),
            )
            assert code == 0, err
            [response] = parse_responses(out)
            return response

        for host_header in ("victim.test", f"victim.test:{w.port}", "nobody.test"):
            response = await get(host_header)
            assert response.status == 421, host_header
            assert response.get("burrow-error-code") == "BURROW_MISDIRECTED_REQUEST"
            assert response.get("ngrok-error-code") is None
            assert b"a.test" in response.body
        response = await get("victim.test", "-H", "Accept: application/json")
        assert json.loads(response.body)["error_code"] == "BURROW_MISDIRECTED_REQUEST"
        assert victim.requests == []

        for host_header in (f"A.Test:{w.port}", "a.test.", "alias.test"):
            response = await get(host_header)
            assert response.status == 200, host_header
        hosts = [header(request.headers, "host") for request, _ in mine.requests]
        assert hosts == [[f"A.Test:{w.port}"], ["a.test."], ["alias.test"]]


async def test_a_421_keeps_the_connection_for_its_own_host(tmp_path: Path) -> None:
    server_tls, ca_file = tls_files(tmp_path, "a.test")
    client_tls = ssl.create_default_context(cafile=str(ca_file))
    async with world(tls=server_tls) as w:
        mine = await w.app("a.test", echo_headers)
        victim = await w.app("victim.test", echo_headers)
        tcp = await w.connect()
        tls = trio.SSLStream(tcp, client_tls, server_hostname="a.test", https_compatible=True)
        client = Client(tls)  # type: ignore[arg-type]
        assert (await client.request("GET", "/1", [("Host", "a.test")])).status == 200
        response = await client.request("GET", "/2", [("Host", "victim.test")])
        assert response.status == 421
        assert response.get("connection") is None  # kept, as after a 404
        assert (await client.request("GET", "/3", [("Host", "a.test")])).status == 200
        await trio.aclose_forcefully(tls)
        assert [request.target for request, _ in mine.requests] == [b"/1", b"/3"]
        assert victim.requests == []


async def test_plain_http_port_routes_by_host_alone() -> None:
    async with world() as w:
        up = await w.app("victim.test", echo_headers)
        client = Client(await w.connect())
        assert (await client.request("GET", "/", [("Host", "victim.test")])).status == 200
        await client.stream.aclose()
        assert len(up.requests) == 1


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 18446744073709551621\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\nHost: app.test\r\n\r\n",
            400,
            "BURROW_BAD_REQUEST",
        ),
        (b"GET * HTTP/1.1\r\nHost: app.test\r\n\r\n", 400, "BURROW_BAD_REQUEST"),
        (b"DELETE * HTTP/1.1\r\nHost: app.test\r\n\r\n", 400, "BURROW_BAD_REQUEST"),
        (b"GET app.test:80 HTTP/1.1\r\nHost: app.test\r\n\r\n", 400, "BURROW_BAD_REQUEST"),
        (b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n", 505, "BURROW_VERSION_NOT_SUPPORTED"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "BURROW_VERSION_NOT_SUPPORTED"),
        (
            b"GET / HTTP/1.1\r\nHost: app.test\r\n" + b"X-N: 1\r\n" * 100 + b"\r\n",
            431,
            "BURROW_HEAD_TOO_LARGE",
        ),
    ],
)
async def test_request_line_and_header_edge_cases_are_refused_and_never_forwarded(
    request_bytes: bytes, status: int, code: str
) -> None:
    async with world() as w:
        up = await w.app("app.test", echo_headers)
        raw = await raw_exchange(w, request_bytes)
        [response] = parse_responses(raw)
        assert response.status == status
        assert response.get("burrow-error-code") == code
        assert response.get("connection") == "close"
        assert up.requests == []


async def test_ten_thousand_headers_are_431_and_never_forwarded() -> None:
    """10,000 header lines fit in a 64 KiB head; the field count limit refuses them."""
    limits = HttpConfig(max_head_size=64 * KiB, head_timeout=2.0, idle_timeout=5.0)
    async with world(limits) as w:
        up = await w.app("app.test", echo_headers)
        many = b"GET / HTTP/1.1\r\nHost: app.test\r\n" + b"a:b\r\n" * 10_000 + b"\r\n"
        assert len(many) < limits.max_head_size
        [response] = parse_responses(await raw_exchange(w, many))
        assert response.status == 431
        assert response.get("burrow-error-code") == "BURROW_HEAD_TOO_LARGE"
        assert b"100 header fields" in response.body
        assert up.requests == []


async def test_absolute_form_is_routed_by_its_authority_and_forwarded_in_origin_form() -> None:
    async with world() as w:
        up = await w.app("app.test", echo_headers)
        other = await w.app("other.test", echo_headers)
        client = Client(await w.connect())
        target = f"http://App.Test:{w.port}/p?q=1"
        response = await client.request("GET", target, [("Host", "other.test")])
        assert response.status == 200
        seen = json.loads(response.body)
        assert seen["target"] == "/p?q=1"
        assert header(seen["headers"], "host") == [f"App.Test:{w.port}"]
        assert header(seen["headers"], "x-forwarded-host") == [f"App.Test:{w.port}"]
        response = await client.request("OPTIONS", "http://app.test", [("Host", "app.test")])
        assert json.loads(response.body)["target"] == "*"
        response = await client.request("OPTIONS", "*", [("Host", "app.test")])
        assert json.loads(response.body)["target"] == "*"
        await client.stream.aclose()
        assert len(up.requests) == 3
        assert other.requests == []


async def test_replace_x_forwarded_host_sets_it_to_the_host() -> None:
    limits = HttpConfig(
        max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=5.0, replace_x_forwarded_host=True
    )
    async with world(limits) as w:
        await w.app("app.test", echo_headers)
        client = Client(await w.connect())
        response = await client.request(
            "GET", "/", [("Host", "app.test"), ("X-Forwarded-Host", "spoofed.example")]
        )
        await client.stream.aclose()
        seen = json.loads(response.body)
        assert header(seen["headers"], "x-forwarded-host") == ["app.test"]


# ------------------------------------------------------------------- idle clients (issue 9)


async def test_idle_client_releases_its_agent_stream_but_back_to_back_requests_reuse_it() -> None:
    async with world() as w:
        upstream = await w.app("app.test", echo_headers)
        route = w.router.routes["app.test"]
        assert isinstance(route, Route)
        client = Client(await w.connect())
        for _ in range(3):
            assert (await client.request("GET", "/", [("Host", "app.test")])).status == 200
        assert (route.opened, route.closed) == (1, 0)  # back to back: one agent stream
        idle_since = time.monotonic()
        with trio.fail_after(AGENT_STREAM_HOLD + TIMEOUT):
            while route.closed < 1:
                await trio.sleep(0.02)
        # Released a moment after the client went idle, the client still connected.
        assert time.monotonic() - idle_since >= AGENT_STREAM_HOLD * 0.8
        assert (route.opened, route.closed) == (1, 1)
        # The client's next request is served on a new agent stream.
        assert (await client.request("GET", "/", [("Host", "app.test")])).status == 200
        assert route.opened == 2
        assert upstream.connections == 2
        await client.stream.aclose()


async def test_keep_alive_wait_has_its_own_shorter_timeout() -> None:
    limits = HttpConfig(
        max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=TIMEOUT, keepalive_timeout=0.5
    )

    async def slow_handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            request, _ = await read_message(conn, stream)
            if request is None:
                return
            await trio.sleep(1.0)  # longer than keepalive_timeout, within idle_timeout
            data = conn.send(h11.Response(status_code=200, headers=[("Content-Length", "4")]))
            data += conn.send(h11.Data(data=b"slow")) + conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            conn.start_next_cycle()

    async with world(limits) as w:
        await w.upstream("app.test", slow_handler)
        client = Client(await w.connect())
        response = await client.request("GET", "/", [("Host", "app.test")])
        assert (response.status, response.body) == (200, b"slow")  # idle_timeout applied
        began = time.monotonic()
        assert await read_all(client.stream) == b""  # then closed, quietly, while idle
        assert 0.4 < time.monotonic() - began < 0.5 + 3
        await client.stream.aclose()


# ------------------------------------------------------------------------- Traffic Policy


def attach(w: World, host: str, text: str) -> AttachedPolicy:
    """Give `host`'s endpoint the policy `text` (as Bind would, validated for https)."""
    route = w.router.routes[host]
    assert isinstance(route, Route)
    route.policy = AttachedPolicy(validate(load_policy(text), protocol="https"), text)
    return route.policy


@asynccontextmanager
async def policy_world(tmp_path: Path, text: str) -> AsyncIterator[tuple[World, Upstream, Get]]:
    """A TLS world with app.test (an echo upstream) under the policy `text`, and a curl GET."""
    server_tls, ca_file = tls_files(tmp_path, "app.test")
    async with world(tls=server_tls) as w:
        upstream = await w.app("app.test", echo_headers)
        attach(w, "app.test", text)

        async def get(path: str = "/", *extra: str) -> Response:
            code, out, err = await curl(
                "-i",
                "--cacert",
                str(ca_file),
                *w.resolve("app.test"),
                *extra,
                w.url("app.test", path),
            )
            assert code == 0, err
            [response] = parse_responses(out)
            return response

        yield w, upstream, get


Get = Callable[..., Awaitable[Response]]


async def test_policy_deny_answers_403_and_forwards_nothing(tmp_path: Path) -> None:
    async with policy_world(tmp_path, "on_http_request: [{actions: [{type: deny}]}]") as (
        _,
        upstream,
        get,
    ):
        response = await get()
        assert response.status == 403
        assert response.get("burrow-error-code") is None  # a policy's answer, not an edge error
        assert response.get("content-length") == str(len(response.body))
        head = await get("/", "--head")  # the same answer, without its body
        assert (head.status, head.body) == (403, b"")
        assert head.get("content-length") == str(len(response.body))
        assert upstream.requests == []


async def test_policy_runtime_failure_is_the_coded_500_and_the_next_request_is_served(
    tmp_path: Path,
) -> None:
    text = """
on_http_request:
  - expressions: ["req.headers['x-missing'][0] == 'yes'"]
    actions: [{type: deny}]
"""
    async with policy_world(tmp_path, text) as (_, upstream, get):
        failed = await get()
        assert failed.status == 500
        assert failed.get("burrow-error-code") == "ERR_NGROK_2254"
        assert b"ERR_NGROK_2254" in failed.body
        assert (await get("/", "-H", "X-Missing: no")).status == 200  # the policy stays loaded
        assert len(upstream.requests) == 1


async def test_policy_custom_response_answers_with_its_status_headers_and_body(
    tmp_path: Path,
) -> None:
    text = """
on_http_request:
  - expressions: ["req.url.path == '/teapot'"]
    actions:
      - type: custom-response
        config: {status_code: 418, headers: {x-kind: tea}, body: "short and stout ${req.method}"}
"""
    async with policy_world(tmp_path, text) as (_, upstream, get):
        response = await get("/teapot")
        assert (response.status, response.body) == (418, b"short and stout GET")
        assert response.get("x-kind") == "tea"
        assert (await get("/other")).status == 200  # no match: forwarded
        assert [request.target for request, _ in upstream.requests] == [b"/other"]


async def test_policy_request_changes_are_what_the_upstream_sees(tmp_path: Path) -> None:
    """add-headers (with conn.* facts from the TLS connection), remove-headers, url-rewrite,
    and an added Host that replaces the client's."""
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers:
            x-client: "${conn.client_ip}"
            x-tls: "${conn.tls.version} ${conn.tls.sni}"
            x-server-port: "${string(conn.server_port)}"
            host: internal.example
      - type: remove-headers
        config: {headers: [x-secret]}
      - type: url-rewrite
        config: {from: "/v1/([a-z]+)", to: "/api/$1"}
"""
    async with policy_world(tmp_path, text) as (w, upstream, get):
        response = await get("/v1/users?id=7", "-H", "X-Secret: hunter2")
        assert response.status == 200
        seen = json.loads(response.body)
        assert seen["target"] == "/api/users?id=7"
        assert header(seen["headers"], "x-secret") == []
        assert header(seen["headers"], "x-client") == ["127.0.0.1"]
        assert header(seen["headers"], "x-tls") == ["1.3 app.test"]
        assert header(seen["headers"], "x-server-port") == [str(w.port)]
        assert header(seen["headers"], "host") == ["internal.example"]
        assert len(upstream.requests) == 1


async def test_policy_redirect_answers_with_the_location(tmp_path: Path) -> None:
    text = """
on_http_request:
  - actions:
      - type: redirect
        config: {from: /old, to: /new, status_code: 301}
"""
    async with policy_world(tmp_path, text) as (w, upstream, get):
        response = await get("/old")
        assert response.status == 301
        assert response.get("location") == f"https://app.test:{w.port}/new"
        assert upstream.requests == []


async def test_policy_basic_auth_is_401_then_200_with_credentials(tmp_path: Path) -> None:
    text = """
on_http_request:
  - actions:
      - type: basic-auth
        config: {realm: burrow, credentials: ["ops:s3cret-pass"]}
"""
    async with policy_world(tmp_path, text) as (_, upstream, get):
        refused = await get()
        assert refused.status == 401
        assert (refused.get("www-authenticate") or "").startswith('Basic realm="burrow"')
        assert (await get("/", "-u", "ops:wrong")).status == 401
        assert upstream.requests == []
        allowed = await get("/", "-u", "ops:s3cret-pass")
        assert allowed.status == 200
        assert len(upstream.requests) == 1


async def test_policy_restrict_ips_uses_the_client_address(tmp_path: Path) -> None:
    text = "on_http_request: [{actions: [{type: restrict-ips, config: {allow: [127.0.0.1/32]}}]}]"
    async with policy_world(tmp_path, text) as (_, upstream, get):
        assert (await get("/", "--interface", "127.0.0.2")).status == 403
        assert upstream.requests == []
        assert (await get("/", "--interface", "127.0.0.1")).status == 200
        assert len(upstream.requests) == 1


async def test_policy_response_phase_changes_the_headers_the_client_gets(tmp_path: Path) -> None:
    text = """
on_http_response:
  - expressions: [res.status_code == 200]
    actions:
      - type: add-headers
        config: {headers: {x-policy: "${req.url.path}"}}
      - type: remove-headers
        config: {headers: [content-type]}
"""
    async with policy_world(tmp_path, text) as (_, _upstream, get):
        response = await get("/seen")
        assert response.status == 200
        assert response.get("x-policy") == "/seen"
        assert response.get("content-type") is None
        assert json.loads(response.body)["target"] == "/seen"


async def test_policy_response_headers_cannot_inject_a_line_into_the_head(
    tmp_path: Path,
) -> None:
    """A response header a policy adds from a decoded query parameter holding CR LF: no line
    of it reaches the client's head (the rendered value is refused, ERR_NGROK_2238:
    edge.policy.interpolation; the client codec would refuse the head too, see
    tests/edge/http/h1/test_client.py)."""
    text = """
on_http_response:
  - actions:
      - type: add-headers
        config: {headers: {x-echo: "${req.url.query_params['v'][0]}"}}
"""
    async with policy_world(tmp_path, text) as (_, _upstream, get):
        fine = await get("/?v=plain")
        assert fine.status == 200 and fine.get("x-echo") == "plain"
        evil = await get("/?v=a%0d%0aSet-Cookie:%20owned=1")
        assert evil.status == 500
        assert evil.get("set-cookie") is None and evil.get("x-echo") is None


async def test_policy_response_phase_answer_replaces_the_response(tmp_path: Path) -> None:
    """The upstream's body is discarded and its agent stream closed (the leak check), and the
    client's connection carries on."""
    text = """
on_http_response:
  - expressions: ["req.url.path == '/hidden'"]
    actions:
      - type: custom-response
        config: {status_code: 404, body: gone}
"""
    server_tls, ca_file = tls_files(tmp_path, "app.test")
    client_tls = ssl.create_default_context(cafile=str(ca_file))
    async with world(tls=server_tls) as w:
        upstream = await w.app("app.test", echo_headers)
        attach(w, "app.test", text)
        tcp = await w.connect()
        tls = trio.SSLStream(tcp, client_tls, server_hostname="app.test", https_compatible=True)
        client = Client(tls)  # type: ignore[arg-type]
        hidden = await client.request("GET", "/hidden", [("Host", "app.test")])
        assert (hidden.status, hidden.body) == (404, b"gone")
        shown = await client.request("GET", "/shown", [("Host", "app.test")])
        assert shown.status == 200 and json.loads(shown.body)["target"] == "/shown"
        await trio.aclose_forcefully(tls)
        assert [request.target for request, _ in upstream.requests] == [b"/hidden", b"/shown"]
        route = w.router.routes["app.test"]
        assert isinstance(route, Route) and route.opened == 2  # the first stream was not kept


async def test_policy_rate_limit_is_429_after_its_capacity(tmp_path: Path) -> None:
    text = """
on_http_request:
  - actions:
      - type: rate-limit
        config:
          name: three a minute
          algorithm: sliding_window
          capacity: 3
          rate: 60s
          bucket_key: [conn.client_ip]
"""
    async with policy_world(tmp_path, text) as (_, upstream, get):
        statuses = [(await get()).status for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert len(upstream.requests) == 3


async def test_policy_close_connection_closes_without_an_answer(tmp_path: Path) -> None:
    server_tls, ca_file = tls_files(tmp_path, "app.test")
    async with world(tls=server_tls) as w:
        upstream = await w.app("app.test", echo_headers)
        attach(w, "app.test", "on_http_request: [{actions: [{type: close-connection}]}]")
        code, out, _ = await curl(
            "-i", "--cacert", str(ca_file), *w.resolve("app.test"), w.url("app.test")
        )
        assert code == 52 and out == b""  # curl: empty reply from server
        assert upstream.requests == []


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",  # obs-fold
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
    ],
)
async def test_a_response_a_proxy_must_not_pass_on_is_502_3004(reply: bytes) -> None:
    """Smuggling-prone framing, obs-fold and a 101 no one asked for never reach the client: the
    edge answers 502 in their place, and the upstream's head is not relayed."""
    async with world() as w:
        await w.upstream("app.test", answering(reply))
        raw = await raw_exchange(
            w, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        [response] = parse_responses(raw)
        assert response.status == 502
        assert response.get("burrow-error-code") == "ERR_NGROK_3004"
        assert b"HTTP/1.1 200" not in raw and b"HTTP/1.1 101" not in raw
        assert b"folded" not in raw and b"Transfer-Encoding" not in raw


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok",  # bare LF line ends
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_a_bare_lf_or_equal_content_lengths_are_relayed_as_ngrok_does(reply: bytes) -> None:
    """What RFC 9112 lets a recipient accept and Go's client (ngrok's edge) accepts reaches the
    client, in CRLF lines with one Content-Length."""
    async with world() as w:
        await w.upstream("app.test", answering(reply))
        raw = await raw_exchange(
            w, b"GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
        )
        [response] = parse_responses(raw)
        assert response.status == 200 and response.body == b"ok"
        assert response.get("x-a") == "1"
        assert raw.lower().count(b"content-length: 2\r\n") == 1
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert head.count(b"\n") == head.count(b"\r\n")
