"""HTTP/2 on the public https side, over real loopback sockets and real TLS.

A test listener does what the front door does for an https:// host: TLS with a context from
`CertStore` (a trustme certificate, ALPN from the store's `alpn`), then `serve_http2` when ALPN
chose h2 and `serve_http` otherwise. The router, routes and upstreams are the HTTP/1.1 proxy
tests' (`tests/edge/http/h1/test_proxy.py`): every agent stream is a real TCP connection to a test
upstream, counted when opened and closed, so every test checks that nothing leaked. Clients:
`curl --http2` (built with nghttp2), and `H2Client`, a small client on the `h2` library for
what curl cannot be told to do (many streams at once, resets, withheld window updates).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11
import pytest
import trio
import trio.testing
import trustme
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from edge.certs.cert_store import ALPN_PROTOCOLS, CertStore
from edge.config import CertificateFiles, CertificatesConfig, HttpConfig
from edge.http.h1.proxy import serve_http
from edge.http.h2.proxy import MAX_CONCURRENT_STREAMS, STREAM_WINDOW, serve_http2
from edge.http.headers import RefusedError, h2_response_headers, translate_h2_request
from protocol.adapters.tls import TLSStream
from protocol.formats.units import KiB, MiB
from tests.edge.http.h1.test_proxy import (
    CURL,
    Handler,
    Reply,
    Route,
    Upstream,
    attach,
    echo_headers,
    header,
    read_client_hello,
    read_message,
)
from tests.edge.http.h1.test_proxy import World as ProxyWorld

LIMITS = HttpConfig(max_head_size=16 * KiB, head_timeout=2.0, idle_timeout=5.0, http2=True)
TIMEOUT = 20  # seconds: only to turn a hang into a failure
H2_ALPN = ("h2", "http/1.1")
HOSTS = ("app.test", "big.test", "nobody.test", "gone.test", "refused.test", "bad.test")


# ------------------------------------------------------------------------------- the harness


@pytest.fixture(autouse=True)
def no_unexpected_failures(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """serve_http2 logs (and swallows) what it did not expect: that must never happen."""
    yield
    failures = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert not failures, [record.getMessage() for record in failures]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CertificateFiles]:
    """A CA file for clients, and the certificate files every test server serves."""
    directory = tmp_path_factory.mktemp("h2-tls")
    ca = trustme.CA()
    leaf = ca.issue_cert(*HOSTS)
    files = CertificateFiles(cert=directory / "leaf.pem", key=directory / "leaf.key")
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    files.key.write_bytes(leaf.private_key_pem.bytes())
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca_file, files


class World(ProxyWorld):
    """The HTTP/1.1 tests' world (router, routes, upstreams, leak counts) with a TLS listener
    that serves HTTP/2 or HTTP/1.1 by ALPN."""

    def __init__(
        self,
        nursery: trio.Nursery,
        limits: HttpConfig,
        context: ssl.SSLContext,
        ca_file: Path,
        buffer: int | None,
    ) -> None:
        super().__init__(nursery, limits, buffer)
        self.context = context
        self.ca_file = ca_file
        self.protocols: list[str | None] = []

    async def start_proxy(self) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]

        async def handle(conn: trio.SocketStream) -> None:
            self.started += 1
            peer = conn.socket.getpeername()
            try:
                # As FrontDoor.handle_tls and _terminate_https do: the ClientHello read for its
                # SNI, then TLS, then HTTP with the SNI.
                try:
                    sni, hello = await read_client_hello(conn)
                except trio.BrokenResourceError:
                    await trio.aclose_forcefully(conn)
                    return
                stream = TLSStream(
                    conn, self.context, server_side=True, https_compatible=True, initial_data=hello
                )
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError:
                    await trio.aclose_forcefully(stream)
                    return
                protocol = stream.selected_alpn_protocol()
                self.protocols.append(protocol)
                if protocol == "h2":
                    await serve_http2(
                        stream,
                        client_addr=(peer[0], peer[1]),
                        router=self.router,  # type: ignore[arg-type]
                        limits=self.limits,
                        sni=sni,
                    )
                else:
                    await serve_http(
                        stream,
                        client_addr=(peer[0], peer[1]),
                        scheme="https",
                        router=self.router,  # type: ignore[arg-type]
                        limits=self.limits,
                        sni=sni,
                    )
            except BaseException as exc:  # serve_* must never raise but for cancellation
                self.errors.append(exc)
                raise
            finally:
                self.finished += 1

        self.nursery.start_soon(trio.serve_listeners, handle, listeners)

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.port}{path}"

    def curl_args(self, *hosts: str) -> list[str]:
        resolve = [arg for h in hosts for arg in ("--resolve", f"{h}:{self.port}:127.0.0.1")]
        return ["--cacert", str(self.ca_file), *resolve]

    @asynccontextmanager
    async def client(self, host: str = "app.test", **kwargs: bool) -> AsyncIterator[H2Client]:
        tcp = await trio.open_tcp_stream("127.0.0.1", self.port)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.set_alpn_protocols(["h2"])
        tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() == "h2"
        async with trio.open_nursery() as nursery:
            client = H2Client(tls, host, **kwargs)
            await client.start(nursery)
            yield client
            nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(tls)


@asynccontextmanager
async def world(
    tls_files: tuple[Path, CertificateFiles],
    limits: HttpConfig = LIMITS,
    *,
    alpn: tuple[str, ...] = H2_ALPN,
    buffer: int | None = None,
    check_leaks: bool = True,
) -> AsyncIterator[World]:
    ca_file, files = tls_files
    store = CertStore(CertificatesConfig(files=(files,), development_ca=False), None, alpn=alpn)
    context = store.context_for("app.test")
    assert context is not None
    with trio.fail_after(TIMEOUT * 3):
        async with trio.open_nursery() as nursery:
            w = World(nursery, limits, context, ca_file, buffer)
            await w.start_proxy()
            yield w
            with trio.fail_after(TIMEOUT):
                await w.settle()
            nursery.cancel_scope.cancel()
    assert not w.errors, w.errors
    if check_leaks:
        for route in w.route_list:
            assert route.opened == route.closed, (route.key, route.opened, route.closed)


async def curl(*args: str) -> tuple[int, bytes, bytes]:
    result = await trio.run_process(
        [CURL, "-sS", "--http2", "--noproxy", "*", "--max-time", str(TIMEOUT), *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


# ---------------------------------------------------------------------------- the h2 client


@dataclass
class H2Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None
    done: trio.Event = field(default_factory=trio.Event)
    data: trio.Event = field(default_factory=trio.Event)  # set on each DATA frame

    def get(self, name: str) -> str | None:
        values = header(self.headers, name)
        return values[0] if values else None


class H2Client:
    """An HTTP/2 client on the `h2` library: requests on one connection, concurrently.

    `ack=False` withholds WINDOW_UPDATEs for received data until `release()`, so the server
    can send at most the initial windows (65,535 bytes per stream and per connection).
    `eager=True` grants every DATA frame's window back at once, in two WINDOW_UPDATEs (stream
    and connection), rather than in h2's batches."""

    def __init__(
        self,
        stream: trio.SSLStream[trio.SocketStream],
        host: str,
        ack: bool = True,
        eager: bool = False,
    ):
        self.stream = stream
        self.host = host.encode()
        self.ack = ack
        self.eager = eager
        self.updates = 0  # WINDOW_UPDATE frames sent by `eager`
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.lock = trio.Lock()
        self.responses: dict[int, H2Response] = {}
        self.window = trio.Event()
        self.unacked: dict[int, int] = {}
        self.server_settings: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = trio.Event()
        self.pong = trio.Event()  # set when the server acknowledges a PING

    async def start(self, nursery: trio.Nursery) -> None:
        self.conn.initiate_connection()
        await self.flush()
        nursery.start_soon(self._read)

    async def flush(self) -> None:
        async with self.lock:
            data = self.conn.data_to_send()
            if data:
                await self.stream.send_all(data)

    async def _read(self) -> None:
        try:
            while True:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    return
                for event in self.conn.receive_data(data):
                    self._dispatch(event)
                await self.flush()
        finally:
            self.closed.set()
            for response in self.responses.values():
                response.done.set()
            self.window.set()

    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            response = self.responses[event.stream_id]
            response.headers = [(bytes(n), bytes(v)) for n, v in event.headers]
            response.status = int(dict(response.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self.responses[event.stream_id].informational.append(
                int(dict(event.headers)[b":status"])
            )
        elif isinstance(event, h2.events.DataReceived):
            response = self.responses[event.stream_id]
            response.body += event.data
            response.data.set()
            length = event.flow_controlled_length
            if self.eager and length:
                self.conn.increment_flow_control_window(length)
                self.updates += 1
                if event.stream_ended is None:
                    self.conn.increment_flow_control_window(length, event.stream_id)
                    self.updates += 1
            elif self.ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                self.unacked[event.stream_id] = (
                    self.unacked.get(event.stream_id, 0) + event.flow_controlled_length
                )
        elif isinstance(event, h2.events.StreamEnded):
            self.responses[event.stream_id].ended = True
            self.responses[event.stream_id].done.set()
        elif isinstance(event, h2.events.StreamReset):
            response = self.responses[event.stream_id]
            response.reset = int(event.error_code)
            response.done.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                for code, change in event.changed_settings.items():
                    self.server_settings[int(code)] = change.new_value
            self.window.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.PingAckReceived):
            self.pong.set()

    async def release(self) -> None:
        """Acknowledge everything received so far, and from now on."""
        self.ack = True
        for stream_id, length in self.unacked.items():
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(length, stream_id)
        self.unacked.clear()
        await self.flush()

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        *,
        authority: str | None = None,
        end: bool = True,
    ) -> int:
        """Send a request (the head, then `body` if any); return its stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        self.responses[stream_id] = H2Response()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode() if authority is not None else self.host),
            (b":path", path.encode()),
        ]
        if method == "CONNECT":
            fields = [fields[0], fields[2]]
        fields += [(n.encode(), v.encode()) for n, v in headers or []]
        self.conn.send_headers(stream_id, fields, end_stream=body is None and end)
        await self.flush()
        if body is not None:
            await self.send_body(stream_id, body, end=end)
        return stream_id

    async def send_body(self, stream_id: int, body: bytes, *, end: bool = True) -> int:
        """Send `body` as flow control allows; returns how much was sent (less if reset)."""
        view = memoryview(body)
        sent = 0
        while view:
            if self.responses[stream_id].reset is not None or self.closed.is_set():
                return sent
            try:
                window = self.conn.local_flow_control_window(stream_id)
            except h2.exceptions.StreamClosedError:
                return sent
            if window <= 0:
                self.window = trio.Event()
                await self.window.wait()
                continue
            size = min(window, len(view), self.conn.max_outbound_frame_size)
            self.conn.send_data(stream_id, view[:size].tobytes())
            view = view[size:]
            sent += size
            await self.flush()
        if end:
            self.conn.end_stream(stream_id)
            await self.flush()
        return sent

    async def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        await self.flush()

    async def fetch(self, *args: object, **kwargs: object) -> H2Response:
        stream_id = await self.request(*args, **kwargs)  # type: ignore[arg-type]
        response = self.responses[stream_id]
        await response.done.wait()
        return response


# ---------------------------------------------------------------------------- test upstreams


def pattern(size: int) -> Iterator[bytes]:
    """`size` bytes of a fixed pattern, in 64 KiB pieces."""
    block = hashlib.sha256(b"burrow").digest() * (64 * KiB // 32)
    for offset in range(0, size, len(block)):
        yield block[: min(len(block), size - offset)]


def pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern(size):
        digest.update(piece)
    return digest.hexdigest()


def streaming_app(counters: dict[str, int], gate: trio.Event | None = None) -> Handler:
    """GET /big?size=N streams N pattern bytes (`counters["sent"]` counts them; size 0 means
    until the connection breaks); POST hashes its body (after `gate` is set, if given) and
    answers {"sha256", "size"}."""

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(64 * KiB))
                continue
            if isinstance(event, h11.Request):
                break
            return
        if event.method == b"POST":
            if gate is not None:
                await gate.wait()
            digest = hashlib.sha256()
            size = 0
            while True:
                body_event = conn.next_event()
                if body_event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(64 * KiB))
                elif isinstance(body_event, h11.Data):
                    digest.update(body_event.data)
                    size += len(body_event.data)
                elif isinstance(body_event, h11.EndOfMessage):
                    break
            payload = json.dumps({"sha256": digest.hexdigest(), "size": size}).encode()
            await stream.send_all(
                conn.send(h11.Response(status_code=200, headers=[("content-type", "json")]))
                + conn.send(h11.Data(data=payload))
                + conn.send(h11.EndOfMessage())
            )
            return
        size = int(event.target.decode().partition("size=")[2] or 0)
        if size:
            head = [("content-length", str(size))]
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=head)))
            for piece in pattern(size):
                await stream.send_all(piece)
                counters["sent"] = counters.get("sent", 0) + len(piece)
            return
        await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])))
        while True:  # endless, chunked
            piece = next(pattern(64 * KiB))
            await stream.send_all(conn.send(h11.Data(data=piece)))
            counters["sent"] = counters.get("sent", 0) + len(piece)

    return handler


async def quiet(getter: Callable[[], int], *, still: float = 0.3) -> int:
    """Wait until `getter()` stops changing for `still` seconds; return its value."""
    value = getter()
    while True:
        await trio.sleep(still)
        now = getter()
        if now == value:
            return value
        value = now


# ----------------------------------------------------------------------------------- relaying


async def test_curl_speaks_http2_and_gets_the_upstream_answer(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        upstream = await w.app("app.test", echo_headers)
        code, out, err = await curl(
            "-w", "\n%{http_version}", *w.curl_args("app.test"), w.url("app.test", "/hello?x=1")
        )
        assert code == 0, err
        body, _, version = out.rpartition(b"\n")
        assert version == b"2"
        seen = json.loads(body)
        assert seen["method"] == "GET" and seen["target"] == "/hello?x=1"
        assert header(seen["headers"], "host") == [f"app.test:{w.port}"]
        assert header(seen["headers"], "x-forwarded-proto") == ["https"]
        assert header(seen["headers"], "x-forwarded-for") == ["127.0.0.1"]
        assert len(upstream.requests) == 1
        assert w.protocols == ["h2"]


async def test_request_and_response_heads_are_translated(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    def respond(request: h11.Request, body: bytes) -> Reply:
        status, headers, payload = echo_headers(request, body)
        headers = [
            (b"content-type", b"application/json"),  # no content-length: chunked on HTTP/1.1
            (b"Keep-Alive", b"timeout=5"),
            (b"Connection", b"X-Hop"),
            (b"X-Hop", b"1"),
            (b"Burrow-Error-Code", b"ERR_NGROK_3200"),  # only the edge may say that
            (b"ngrok-error-code", b"ERR_NGROK_3200"),
            (b"X-Kept", b"Yes"),
        ]
        return status, headers, payload

    async with world(tls_files) as w:
        await w.app("app.test", respond)
        async with w.client() as client:
            response = await client.fetch(
                "POST",
                "/form",
                [
                    ("cookie", "a=1"),
                    ("cookie", "b=2"),
                    ("te", "trailers"),
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-host", "original.example"),
                    ("content-length", "5"),
                ],
                b"hello",
            )
            assert response.status == 200 and response.ended
            seen = json.loads(response.body)
            names = [name for name, _ in response.headers]
            assert names == [b":status", b"content-type", b"x-kept"]
            chunked = await client.fetch("PUT", "/stream", [], b"no length")
            seen_chunked = json.loads(chunked.body)
        headers = seen["headers"]
        assert seen["method"] == "POST" and seen["target"] == "/form" and seen["body"] == "hello"
        assert headers[0] == ["host", "app.test"]
        assert header(headers, "cookie") == ["a=1; b=2"]
        assert header(headers, "te") == []
        assert header(headers, "content-length") == ["5"]
        assert header(headers, "transfer-encoding") == []
        assert header(headers, "connection") == []  # kept for the next request (h2.kept)
        assert header(headers, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
        assert header(headers, "x-forwarded-host") == ["original.example"]
        assert header(headers, "x-forwarded-proto") == ["https"]
        assert seen_chunked["body"] == "no length"
        assert header(seen_chunked["headers"], "transfer-encoding") == ["chunked"]
        assert header(seen_chunked["headers"], "x-forwarded-host") == ["app.test"]


async def test_concurrent_streams_on_one_connection_are_each_answered(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    count = 24
    arrived: list[int] = []
    all_arrived = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request, _ = await read_message(conn, stream)
        assert isinstance(request, h11.Request)
        index = int(request.target.decode().strip("/"))
        arrived.append(index)
        if len(arrived) == count:
            all_arrived.set()
        await all_arrived.wait()  # every request in flight at once: none can reuse a stream
        await trio.sleep((count - index) * 0.005)  # the last asked answers first
        payload = f"answer {index} ".encode() * (index * 500 + 1)
        await stream.send_all(
            conn.send(
                h11.Response(status_code=200, headers=[("content-length", str(len(payload)))])
            )
            + conn.send(h11.Data(data=payload))
            + conn.send(h11.EndOfMessage())
        )

    async with world(tls_files) as w:
        await w.upstream("app.test", handler)
        async with w.client() as client:
            ids = [await client.request("GET", f"/{index}") for index in range(count)]
            for index, stream_id in enumerate(ids):
                response = client.responses[stream_id]
                await response.done.wait()
                assert response.status == 200
                assert bytes(response.body) == f"answer {index} ".encode() * (index * 500 + 1)
            assert w.started == 1  # one connection
        assert w.route_list[0].opened == count  # a proxy stream per concurrent request


async def test_large_download_and_upload_with_curl(
    tls_files: tuple[Path, CertificateFiles], tmp_path: Path
) -> None:
    size = 32 * MiB + 7
    counters: dict[str, int] = {}
    async with world(tls_files) as w:
        await w.upstream("big.test", streaming_app(counters))
        out_file = tmp_path / "down.bin"
        code, out, err = await curl(
            "-o",
            str(out_file),
            "-w",
            "%{http_version}",
            *w.curl_args("big.test"),
            w.url("big.test", f"/big?size={size}"),
        )
        assert code == 0, err
        assert out == b"2"
        data = out_file.read_bytes()
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == pattern_sha256(size)

        upload = tmp_path / "up.bin"
        upload.write_bytes(data[: 16 * MiB + 3])
        code, out, err = await curl(
            "--data-binary", f"@{upload}", *w.curl_args("big.test"), w.url("big.test", "/up")
        )
        assert code == 0, err
        assert json.loads(out) == {
            "sha256": hashlib.sha256(data[: 16 * MiB + 3]).hexdigest(),
            "size": 16 * MiB + 3,
        }


async def test_an_upload_waits_for_a_slow_upstream(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    body = bytes(range(256)) * (8 * MiB // 256)
    gate = trio.Event()
    async with world(tls_files, buffer=32 * KiB) as w:
        await w.upstream("big.test", streaming_app({}, gate))
        async with w.client("big.test") as client:
            stream_id = await client.request("POST", "/up", [], None, end=False)
            sent = 0

            async def upload() -> None:
                nonlocal sent
                for offset in range(0, len(body), 64 * KiB):
                    sent += await client.send_body(
                        stream_id, body[offset : offset + 64 * KiB], end=False
                    )
                client.conn.end_stream(stream_id)
                await client.flush()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(upload)
                # The upstream reads nothing yet: the edge acknowledges only what its proxy
                # stream took (a few small socket buffers), so the client stops near one
                # stream window.
                while sent < STREAM_WINDOW:
                    await trio.sleep(0.01)
                held = await quiet(lambda: sent)
                assert STREAM_WINDOW <= held < STREAM_WINDOW + 512 * KiB, held
                gate.set()
            response = client.responses[stream_id]
            await response.done.wait()
            assert json.loads(response.body) == {
                "sha256": hashlib.sha256(body).hexdigest(),
                "size": len(body),
            }


async def test_a_download_waits_for_a_client_that_grants_no_window(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    size = 8 * MiB
    counters: dict[str, int] = {}
    async with world(tls_files, buffer=32 * KiB) as w:
        await w.upstream("big.test", streaming_app(counters))
        async with w.client("big.test", ack=False) as client:
            stream_id = await client.request("GET", f"/big?size={size}")
            response = client.responses[stream_id]
            # The client's windows are 65,535 bytes and it acknowledges nothing: the edge
            # sends that much, then reads at most one more piece from the upstream.
            while len(response.body) < 65535:
                await response.data.wait()
                response.data = trio.Event()
            upstream_sent = await quiet(lambda: counters.get("sent", 0))
            assert len(response.body) == 65535
            assert upstream_sent < 65535 + 64 * KiB + 512 * KiB, upstream_sent
            await client.release()
            await response.done.wait()
            assert len(response.body) == size
            assert hashlib.sha256(response.body).hexdigest() == pattern_sha256(size)


async def test_client_reset_closes_only_its_agent_stream(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    counters: dict[str, int] = {}
    size = 2 * MiB
    async with world(tls_files) as w:
        await w.upstream("big.test", streaming_app(counters))
        route = w.route_list[0]
        async with w.client("big.test") as client:
            endless = await client.request("GET", "/big")
            finite = await client.request("GET", f"/big?size={size}")
            await client.responses[endless].data.wait()
            await client.reset(endless)
            with trio.fail_after(TIMEOUT):
                while route.closed < 1:
                    await trio.sleep(0.01)
            assert route.opened == 2
            response = client.responses[finite]
            await response.done.wait()
            assert response.reset is None and len(response.body) == size
            assert hashlib.sha256(response.body).hexdigest() == pattern_sha256(size)
            # The connection is still good for more.
            again = await client.fetch("GET", "/big?size=10")
            assert again.status == 200 and len(again.body) == 10


@dataclass
class GaugedRoute(Route):
    """A `Route` that also gauges the exchanges holding an agent stream or asking for one:
    each counts from its `open_agent_stream` call until the stream it got is closed (or the call
    failed); `peak` is the most there ever were at once."""

    asked: int = 0
    failed: int = 0
    peak: int = 0

    @property
    def held(self) -> int:
        return self.asked - self.failed - self.closed

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        self.asked += 1
        self.peak = max(self.peak, self.held)
        try:
            return await super().open_agent_stream(client_addr)
        except BaseException:
            self.failed += 1
            raise


async def test_rapid_reset_never_holds_more_exchanges_than_advertised(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """CVE-2023-44487: 1,000 requests, each reset at once (HEADERS, then RST_STREAM), all in
    one write. h2 counts a reset stream as closed, so only the edge's own bound keeps it from
    starting an exchange, and asking the agent for a stream, for every one of them at once.
    It holds at most the advertised number at once (refusing the rest), and the connection
    itself survives (no GOAWAY) and keeps serving.

    The flood limit (`http.h2_max_resets_per_window`, 500 by default) would end this
    connection after at most 500 of them (see the flood tests below); it is raised here above
    the flood's 1,000 resets plus the refusals, so the concurrency bound is still what is
    tested, and so is a connection's survival below the flood limit."""
    flood = 1000
    limits = dataclasses.replace(LIMITS, h2_max_resets_per_window=10 * flood)
    async with world(tls_files, limits) as w:
        upstream = await w.app("app.test", echo_headers)
        route = GaugedRoute(key="app.test", port=upstream.port)
        w.route_list[-1] = w.router.routes["app.test"] = route
        async with w.client() as client:
            first = await client.fetch("GET", "/first")
            assert first.status == 200
            with trio.fail_after(TIMEOUT):  # its agent stream, kept, is released when idle
                while route.held:
                    await trio.sleep(0.01)
            limit = client.server_settings[SettingCodes.MAX_CONCURRENT_STREAMS]
            assert limit == MAX_CONCURRENT_STREAMS
            route.peak = 0
            asked = route.asked
            fields = [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"app.test"),
                (b":path", b"/flood"),
            ]
            for _ in range(flood):
                stream_id = client.conn.get_next_available_stream_id()
                client.responses[stream_id] = H2Response()
                client.conn.send_headers(stream_id, fields, end_stream=True)
                client.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            client.conn.ping(b"flooded!")  # answered once the edge has read the whole flood
            await client.flush()  # one write
            with trio.fail_after(TIMEOUT):
                await client.pong.wait()
                while route.held:
                    await trio.sleep(0.01)
            assert route.asked > asked, "the flood never reached the agent: the test is void"
            assert route.peak <= limit, (route.peak, limit)
            assert client.goaway is None and not client.closed.is_set()
            after = await client.fetch("GET", "/after")
            assert after.status == 200 and after.ended
            assert json.loads(after.body)["target"] == "/after"
        with trio.fail_after(TIMEOUT):  # the connection's end closes the stream it kept
            while route.held:
                await trio.sleep(0.01)


# ----------------------------------------------------------------------------------- floods

MARKER = b"marker!!"  # the opaque data of the PING sent after a flood
FLOOD_KINDS = ("reset", "settings", "ping")
_GOAWAY, _PING, _SETTINGS, _ACK = 0x7, 0x6, 0x4, 0x1


@dataclass
class Flooded:
    """What the edge answered a flood connection: its GOAWAY (code and debug data), whether it
    answered the PING sent after the flood, how many PINGs and SETTINGS it acknowledged."""

    goaway: int | None = None
    debug: bytes = b""
    answered: bool = False
    acks: int = 0


def flood_bytes(kind: str, count: int) -> bytes:
    """A client's whole connection: preface and SETTINGS, `count` flood frames of `kind` (a
    request head each followed by its RST_STREAM, an empty SETTINGS, or a PING), then a PING
    carrying MARKER."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    if kind == "reset":
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"app.test"),
            (b":path", b"/flood"),
        ]
        for _ in range(count):
            stream_id = conn.get_next_available_stream_id()
            conn.send_headers(stream_id, fields, end_stream=True)
            conn.reset_stream(stream_id, ErrorCodes.CANCEL)
        frames = b""
    elif kind == "settings":
        frames = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" * count
    else:
        frames = (b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678") * count
    marker = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + MARKER
    return conn.data_to_send() + frames + marker


async def flood(w: World, blob: bytes) -> Flooded:
    """Send `blob` on a new connection in one write, reading meanwhile, until the edge says
    GOAWAY, answers the marker PING or closes the connection."""
    tcp = await trio.open_tcp_stream("127.0.0.1", w.port)
    context = ssl.create_default_context(cafile=str(w.ca_file))
    context.set_alpn_protocols(["h2"])
    tls = trio.SSLStream(tcp, context, server_hostname="app.test", https_compatible=True)
    await tls.do_handshake()
    assert tls.selected_alpn_protocol() == "h2"
    flooded = Flooded()

    async def send() -> None:
        # The edge stops reading when it cuts the flood off, and closes with the rest unread.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await tls.send_all(blob)

    async def read() -> None:
        buffer = bytearray()
        while True:
            try:
                data = await tls.receive_some(64 * KiB)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buffer += data
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                length = int.from_bytes(buffer[:3], "big")
                kind, flags, payload = buffer[3], buffer[4], bytes(buffer[9 : 9 + length])
                del buffer[: 9 + length]
                if kind == _GOAWAY:
                    flooded.goaway = int.from_bytes(payload[4:8], "big")
                    flooded.debug = payload[8:]
                    return
                if kind == _PING and flags & _ACK and payload == MARKER:
                    flooded.answered = True
                    return
                if kind in (_PING, _SETTINGS) and flags & _ACK:
                    flooded.acks += 1

    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                await read()
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(tls)
    return flooded


async def flood_while_another_client_is_served(
    tls_files: tuple[Path, CertificateFiles], kind: str, count: int
) -> None:
    """A flood of `count` frames of `kind` on one connection, while another client on another
    connection sends requests one after another: the flood ends with GOAWAY ENHANCE_YOUR_CALM
    after costing the edge no more than the limit's worth, and every request of the other
    client is answered, each within a generous bound."""
    bound = 2.0  # seconds per request: a loopback request takes milliseconds
    blob = flood_bytes(kind, count)
    async with world(tls_files) as w:
        upstream = await w.app("app.test", echo_headers)
        route = w.route_list[-1]
        latencies: list[float] = []
        flooded: Flooded | None = None
        async with w.client() as other:
            warm = await other.fetch("GET", "/warm")
            assert warm.status == 200
            before = len(upstream.requests)

            async def serve_other() -> None:
                for n in range(10_000):
                    start = trio.current_time()
                    response = await other.fetch("GET", f"/other/{n}")
                    latencies.append(trio.current_time() - start)
                    assert response.status == 200, (n, response.status, response.reset)
                    assert json.loads(response.body)["target"] == f"/other/{n}"
                    if flooded is not None and len(latencies) >= 20:
                        return
                    await trio.sleep(0.005)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_other)
                await trio.sleep(0.05)
                flooded = await flood(w, blob)
            assert other.goaway is None and not other.closed.is_set()
        assert flooded.goaway == ErrorCodes.ENHANCE_YOUR_CALM, flooded
        assert not flooded.answered  # nothing after the flood's cut was read
        assert flooded.debug.endswith(b"within 10s")
        limits = LIMITS
        if kind == "reset":
            assert flooded.debug.startswith(f"{limits.h2_max_resets_per_window + 1} reset".encode())
            flood_requests = route.opened - 1 - len(latencies)  # less /warm and the other's
            assert flood_requests <= limits.h2_max_resets_per_window, flood_requests
        else:
            assert flooded.debug.startswith(
                f"{limits.h2_max_control_frames_per_window + 1} control".encode()
            )
            assert flooded.acks <= limits.h2_max_control_frames_per_window, flooded.acks
        if kind != "reset":  # the flood asked the upstream nothing
            assert len(upstream.requests) - before == len(latencies)
        assert len(latencies) >= 20
        assert max(latencies) < bound, sorted(latencies)[-5:]


@pytest.mark.parametrize("kind", FLOOD_KINDS)
async def test_a_flood_gets_enhance_your_calm_while_another_client_is_served(
    tls_files: tuple[Path, CertificateFiles], kind: str
) -> None:
    """Scaled down: 5,000 HEADERS+RST_STREAM, 20,000 SETTINGS or 20,000 PINGs."""
    count = 5_000 if kind == "reset" else 20_000
    await flood_while_another_client_is_served(tls_files, kind, count)


@pytest.mark.slow
@pytest.mark.parametrize("kind", FLOOD_KINDS)
async def test_a_full_size_flood_gets_enhance_your_calm_while_another_client_is_served(
    tls_files: tuple[Path, CertificateFiles], kind: str
) -> None:
    """The hardening probe's size: 100,000 frames (HEADERS+RST_STREAM pairs, SETTINGS or
    PINGs) on one connection."""
    await flood_while_another_client_is_served(tls_files, kind, 100_000)


async def test_a_browser_like_client_is_never_cut_off(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """Hundreds of requests with a few cancelled, pings, priority changes and a settings
    change; a large download whose every DATA frame's window is granted back at once (more
    WINDOW_UPDATEs than the control frame limit); and curl with 200 parallel requests on
    one connection: none is cut off."""
    size = 16 * MiB
    async with world(tls_files) as w:
        await w.app("app.test", echo_headers)
        await w.upstream("big.test", streaming_app({}))
        async with w.client() as client:
            client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 * MiB})
            cancelled = 0
            for batch in range(10):  # 300 requests, 30 at a time
                ids = [await client.request("GET", f"/page/{batch}/{n}") for n in range(29)]
                await client.reset(await client.request("GET", f"/cancelled/{batch}"))
                cancelled += 1
                client.conn.prioritize(ids[-1], weight=200)
                client.conn.ping(f"browser{batch}".encode())
                await client.flush()
                for n, stream_id in enumerate(ids):
                    response = client.responses[stream_id]
                    await response.done.wait()
                    assert response.status == 200, (batch, n, response.reset)
                    assert json.loads(response.body)["target"] == f"/page/{batch}/{n}"
            assert client.goaway is None and not client.closed.is_set()
            assert cancelled == 10
        async with w.client("big.test", eager=True) as client:
            # Windows wide enough that the edge need not wait for each update in turn.
            client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 4 * MiB})
            client.conn.increment_flow_control_window(4 * MiB)
            await client.flush()
            response = await client.fetch("GET", f"/big?size={size}")
            assert len(response.body) == size
            assert hashlib.sha256(response.body).hexdigest() == pattern_sha256(size)
            assert client.updates > LIMITS.h2_max_control_frames_per_window, client.updates
            again = await client.fetch("GET", "/big?size=10")
            assert again.status == 200
            assert client.goaway is None and not client.closed.is_set()
        urls = [w.url("app.test", f"/parallel/{n}") for n in range(200)]
        outputs = ["-o", "/dev/null"] * len(urls)
        code, out, err = await curl(
            "--parallel",
            "--parallel-max",
            "100",
            "-w",
            "%{http_code} %{http_version}\n",
            *outputs,
            *w.curl_args("app.test"),
            *urls,
        )
        assert code == 0, err
        assert out.decode().splitlines() == ["200 2"] * 200


# ------------------------------------------------------------------------------ error pages


async def test_silent_upstream_is_504_then_the_idle_connection_gets_goaway(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    limits = HttpConfig(
        max_head_size=16 * KiB,
        head_timeout=0.5,
        idle_timeout=0.5,
        keepalive_timeout=0.5,
        http2=True,
    )

    async def silent(stream: trio.SocketStream) -> None:
        await stream.receive_some(64 * KiB)
        await trio.sleep_forever()

    async with world(tls_files, limits) as w:
        await w.upstream("app.test", silent)
        async with w.client() as client:
            response = await client.fetch("GET", "/")
            assert response.status == 504
            assert response.get("burrow-error-code") == "BURROW_GATEWAY_TIMEOUT"
            with trio.fail_after(TIMEOUT):
                await client.closed.wait()
            assert client.goaway is not None
            assert client.goaway.error_code == ErrorCodes.NO_ERROR
        # A connection that never asks anything is closed after head_timeout.
        async with w.client() as client:
            with trio.fail_after(TIMEOUT):
                await client.closed.wait()
            assert client.goaway is not None


# ------------------------------------------------- misdirected requests and request-line cases


async def test_authority_of_another_endpoint_than_the_sni_is_421(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """SNI app.test, :authority big.test (a name the certificate also covers, so a client may
    coalesce the two): big.test's endpoint never sees the request; the connection keeps
    serving app.test."""
    async with world(tls_files) as w:
        mine = await w.app("app.test", echo_headers)
        victim = await w.app("big.test", echo_headers)
        async with w.client("app.test") as client:
            for authority in ("big.test", f"big.test:{w.port}", "nobody.test"):
                response = await client.fetch("GET", "/", authority=authority)
                assert response.status == 421, authority
                assert response.get("burrow-error-code") == "BURROW_MISDIRECTED_REQUEST"
                assert b"app.test" in response.body
            response = await client.fetch("GET", "/mine", authority=f"App.Test:{w.port}")
            assert response.status == 200
            assert client.goaway is None
        assert victim.requests == []
        assert [request.target for request, _ in mine.requests] == [b"/mine"]
        # curl turns -H Host into :authority.
        code, out, err = await curl(
            "-i", *w.curl_args("app.test"), "-H", "Host: big.test", w.url("app.test")
        )
        assert code == 0, err
        assert out.startswith(b"HTTP/2 421")
        assert b"burrow-error-code: BURROW_MISDIRECTED_REQUEST" in out
        assert victim.requests == []


async def test_request_edge_cases_over_http2_are_refused_and_never_forwarded(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        up = await w.app("app.test", echo_headers)
        async with w.client() as client:
            asterisk = await client.fetch("GET", "*")
            assert asterisk.status == 400
            many = await client.fetch("GET", "/", [("x-n", "1")] * 101)
            assert (many.status, many.get("burrow-error-code")) == (431, "BURROW_HEAD_TOO_LARGE")
            too_long = await client.fetch(
                "POST", "/", [("content-length", str(2**64 + 5))], end=False
            )
            assert too_long.status == 400
            assert b"Content-Length" in too_long.body
            options = await client.fetch("OPTIONS", "*")
            assert options.status == 200
            assert client.goaway is None
        assert [request.target for request, _ in up.requests] == [b"*"]


# ----------------------------------------------------------------------- settings and ALPN


async def test_settings_advertise_the_limits_and_oversized_headers_end_the_connection(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        await w.app("app.test", echo_headers)
        async with w.client() as client:
            response = await client.fetch("GET", "/")
            assert response.status == 200
            settings = client.server_settings
            assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == MAX_CONCURRENT_STREAMS
            assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == LIMITS.max_head_size
            assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == STREAM_WINDOW
            assert SettingCodes.ENABLE_CONNECT_PROTOCOL not in settings
            await client.request("GET", "/", [("x-big", "x" * LIMITS.max_head_size)])
            with trio.fail_after(TIMEOUT):
                await client.closed.wait()
            assert client.goaway is not None and client.goaway.error_code != 0


async def test_with_http2_off_alpn_never_selects_h2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files, alpn=ALPN_PROTOCOLS) as w:
        await w.app("app.test", echo_headers)
        code, out, err = await curl(
            "-o", "/dev/null", "-w", "%{http_version}", *w.curl_args("app.test"), w.url("app.test")
        )
        assert code == 0, err
        assert out == b"1.1"
        tcp = await trio.open_tcp_stream("127.0.0.1", w.port)
        context = ssl.create_default_context(cafile=str(w.ca_file))
        context.set_alpn_protocols(["h2"])
        tls = trio.SSLStream(tcp, context, server_hostname="app.test", https_compatible=True)
        await tls.do_handshake()
        assert tls.selected_alpn_protocol() is None
        await tls.aclose()
        assert w.protocols == ["http/1.1", None]


# -------------------------------------------------------------------------- header rules


def test_translate_h2_request_refusals() -> None:
    def translate(*fields: tuple[bytes, bytes]) -> None:
        translate_h2_request(list(fields), body=False, client_ip=b"1.2.3.4", scheme=b"https")

    get = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
    with pytest.raises(RefusedError) as refused:
        translate(*get)
    assert refused.value.page.status == 400  # no authority
    with pytest.raises(RefusedError) as refused:
        translate(*get, (b":authority", b"user@app.test"))
    assert refused.value.page.status == 400
    with pytest.raises(RefusedError) as refused:
        translate(
            *get, (b":authority", b"app.test"), (b"content-length", b"1"), (b"content-length", b"2")
        )
    assert refused.value.page.status == 400
    with pytest.raises(RefusedError) as refused:
        translate((b":method", b"CONNECT"), (b":authority", b"app.test:443"))
    assert refused.value.page.status == 405


def test_translate_h2_request_falls_back_to_host_and_frames_the_body() -> None:
    request = translate_h2_request(
        [(b":method", b"POST"), (b":path", b"/x"), (b"host", b"App.Test:8443"), (b"a", b"1")],
        body=True,
        client_ip=b"1.2.3.4",
        scheme=b"https",
    )
    assert (request.method, request.target, request.host) == (b"POST", b"/x", "app.test")
    assert request.headers == [
        (b"host", b"App.Test:8443"),
        (b"a", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"X-Forwarded-For", b"1.2.3.4"),
        (b"X-Forwarded-Host", b"App.Test:8443"),
        (b"X-Forwarded-Proto", b"https"),
    ]


def test_h2_response_headers_drop_what_http2_forbids() -> None:
    response = h11.Response(
        status_code=200,
        headers=[
            ("Content-Type", "text/plain"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Burrow-Error-Code", "FAKE"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ],
    )
    assert h2_response_headers(200, response.headers) == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


# ------------------------------------------------------------------------- Traffic Policy


@asynccontextmanager
async def policy_world(
    tls_files: tuple[Path, CertificateFiles], text: str
) -> AsyncIterator[tuple[World, Upstream]]:
    """An HTTP/2 world with app.test (an echo upstream) under the policy `text`."""
    async with world(tls_files) as w:
        upstream = await w.app("app.test", echo_headers)
        attach(w, "app.test", text)
        yield w, upstream


async def test_policy_deny_and_custom_response_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    text = """
on_http_request:
  - expressions: ["req.url.path == '/teapot'"]
    actions:
      - type: custom-response
        config:
          status_code: 418
          headers: {x-kind: tea, connection: close}
          body: "${req.version}"
  - expressions: ["req.url.path == '/private'"]
    actions:
      - type: deny
"""
    async with policy_world(tls_files, text) as (w, upstream):
        async with w.client() as client:
            teapot = await client.fetch("GET", "/teapot")
            assert (teapot.status, bytes(teapot.body), teapot.ended) == (418, b"HTTP/2.0", True)
            assert teapot.get("x-kind") == "tea"
            assert teapot.get("connection") is None  # HTTP/2 forbids it
            denied = await client.fetch("GET", "/private")
            assert denied.status == 403 and denied.get("burrow-error-code") is None
            assert (await client.fetch("GET", "/open")).status == 200
        assert [request.target for request, _ in upstream.requests] == [b"/open"]


async def test_policy_request_changes_over_http2_are_what_the_upstream_sees(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    text = """
on_http_request:
  - actions:
      - type: add-headers
        config:
          headers: {x-client: "${conn.client_ip}", x-sni: "${conn.tls.sni}", host: internal.example}
      - type: remove-headers
        config: {headers: [x-secret]}
      - type: url-rewrite
        config: {from: "/v1/([a-z]+)", to: "/api/$1"}
"""
    async with policy_world(tls_files, text) as (w, upstream):
        async with w.client() as client:
            response = await client.fetch("GET", "/v1/users?id=7", [("x-secret", "hunter2")])
        assert response.status == 200
        seen = json.loads(response.body)
        assert seen["target"] == "/api/users?id=7"
        assert header(seen["headers"], "x-secret") == []
        assert header(seen["headers"], "x-client") == ["127.0.0.1"]
        assert header(seen["headers"], "x-sni") == ["app.test"]
        assert header(seen["headers"], "host") == ["internal.example"]
        assert len(upstream.requests) == 1


async def test_policy_redirect_and_basic_auth_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    text = """
on_http_request:
  - actions:
      - type: redirect
        config: {from: /old, to: /new}
      - type: basic-auth
        config: {credentials: ["ops:s3cret-pass"]}
"""
    token = base64.b64encode(b"ops:s3cret-pass").decode()
    async with policy_world(tls_files, text) as (w, upstream):
        async with w.client() as client:
            moved = await client.fetch("GET", "/old")
            assert moved.status == 302
            assert moved.get("location") == "https://app.test/new"
            assert (await client.fetch("GET", "/new")).status == 401
            assert upstream.requests == []
            allowed = await client.fetch("GET", "/new", [("authorization", f"Basic {token}")])
            assert allowed.status == 200
        assert len(upstream.requests) == 1


async def test_policy_restrict_ips_over_http2_uses_the_client_address(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    text = "on_http_request: [{actions: [{type: restrict-ips, config: {deny: [127.0.0.2/32]}}]}]"
    async with policy_world(tls_files, text) as (w, upstream):
        statuses = []
        for source in ("127.0.0.2", "127.0.0.1"):
            code, out, err = await curl(
                "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                "--interface", source, *w.curl_args("app.test"), w.url("app.test"),
            )  # fmt: skip
            assert code == 0, err
            statuses.append(out.decode())
        assert statuses == ["403 2", "200 2"]
        assert len(upstream.requests) == 1


async def test_policy_response_phase_over_http2(tls_files: tuple[Path, CertificateFiles]) -> None:
    """Header changes reach the client; a replacing answer discards the upstream's response
    (its agent stream is closed: the leak check) and the connection carries on."""
    text = """
on_http_response:
  - expressions: ["req.url.path == '/hidden'"]
    actions:
      - type: custom-response
        config: {status_code: 404, body: gone}
  - actions:
      - type: add-headers
        config: {headers: {x-policy: "${string(res.status_code)}"}}
"""
    async with policy_world(tls_files, text) as (w, upstream):
        async with w.client() as client:
            hidden = await client.fetch("GET", "/hidden")
            assert (hidden.status, bytes(hidden.body), hidden.ended) == (404, b"gone", True)
            assert hidden.get("x-policy") is None  # the phase ended at the answer
            shown = await client.fetch("GET", "/shown")
            assert shown.status == 200 and shown.get("x-policy") == "200"
            assert json.loads(shown.body)["target"] == "/shown"
        assert [request.target for request, _ in upstream.requests] == [b"/hidden", b"/shown"]


async def test_policy_rate_limit_and_close_connection_over_http2(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    text = """
on_http_request:
  - expressions: ["req.url.path == '/close'"]
    actions:
      - type: close-connection
  - actions:
      - type: rate-limit
        config:
          name: two
          algorithm: sliding_window
          capacity: 2
          rate: 60s
          bucket_key: [conn.client_ip]
"""
    async with policy_world(tls_files, text) as (w, upstream):
        async with w.client() as client:
            statuses = [(await client.fetch("GET", "/")).status for _ in range(3)]
            assert statuses == [200, 200, 429]
            closed = await client.fetch("GET", "/close")
            assert closed.reset == ErrorCodes.CANCEL and closed.status == 0
            assert client.goaway is None  # only that stream
        assert len(upstream.requests) == 2
