"""A raw TLS peer misbehaving against a real edge process, while a real agent keeps serving.

Each case checks the edge's answer on the wire (GOAWAY or RST with the right code, or an
AuthResp refusal), that the edge process is still alive, and that the well-behaved agent's
endpoint carries traffic throughout.

Most cases share one edge and agent (`shared_serving`) and look only at the log lines of their
own doing; the memory cases (RSS growth) and the stream flood (its own limit) get a fresh edge.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from protocol.rpc.messages import StreamType
from protocol.wire import frames
from protocol.wire.errors import ErrorCode
from protocol.wire.frames import Flags, FrameType
from tests.e2e.harness import (
    PORT_RANGE,
    SHARED_PORT_RANGE,
    Agent,
    EchoServer,
    Edge,
    make_agent,
    make_edge,
    roundtrip,
    rss_kib,
)


class RawPeer:
    """A TLS connection to the edge's agent port that writes whatever bytes it is told to."""

    def __init__(self, edge: Edge) -> None:
        context = ssl.create_default_context(cafile=str(edge.ca_path))
        raw = socket.create_connection(("127.0.0.1", edge.agents_port), timeout=20)
        self.sock = context.wrap_socket(raw, server_hostname="connect.burrow.localhost")
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frames_until_closed(self, timeout: float = 20.0) -> list[tuple[int, int, int, bytes]]:
        """Every frame the edge sends until it closes the connection (or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.1, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLError, ConnectionError):
                break
            if not data:
                break
            self.buf += data
        return self.parse()

    def read_frames(self, until: float) -> list[tuple[int, int, int, bytes]]:
        deadline = time.monotonic() + until
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLError):
                break
            if not data:
                break
            self.buf += data
        return self.parse()

    def read_until(
        self, done: Callable[[list[tuple[int, int, int, bytes]]], bool], timeout: float = 20.0
    ) -> list[tuple[int, int, int, bytes]]:
        """Read until `done(every frame so far)` holds, the edge closes, or `timeout` passes;
        returns every frame so far."""
        deadline = time.monotonic() + timeout
        received = self.parse()
        while not done(received) and time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.05, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except (TimeoutError, ssl.SSLError):
                break
            if not data:
                break
            self.buf += data
            received = self.parse()
        return received

    def authenticate(self, token: str) -> None:
        """Send Auth on stream 1 and wait for the edge's AuthResp accepting it."""
        self.send(typed_open(1, StreamType.AUTH, auth_body(token)))
        received = self.read_until(lambda got: b"ClientId" in auth_response(got))
        response = auth_response(received)
        assert b"ClientId" in response and b"ERR_NGROK" not in response, received

    def parse(self) -> list[tuple[int, int, int, bytes]]:
        out = []
        pos = 0
        while len(self.buf) - pos >= 8:
            length, ftype, flags, sid = frames.unpack_header(self.buf, pos)
            if len(self.buf) - pos - 8 < length:
                break
            out.append((ftype, flags, sid, self.buf[pos + 8 : pos + 8 + length]))
            pos += 8 + length
        return out

    def close(self) -> None:
        # shutdown() first: close() alone leaves a socket blocked in accept() (or recv()) in
        # its thread, which can then take connections meant for a later test's server.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def goaway_code(received: list[tuple[int, int, int, bytes]]) -> int | None:
    for ftype, _, _, body in received:
        if ftype == FrameType.GOAWAY:
            return int(struct.unpack(">I", body[4:8])[0])
    return None


def rst_codes(received: list[tuple[int, int, int, bytes]], sid: int) -> list[int]:
    return [
        int(struct.unpack(">I", body)[0])
        for ftype, _, s, body in received
        if ftype == FrameType.RST and s == sid
    ]


def auth_response(received: list[tuple[int, int, int, bytes]]) -> bytes:
    """What the edge has written on stream 1 (the Auth stream) so far."""
    return b"".join(f[3] for f in received if f[0] == FrameType.DATA and f[2] == 1)


def typed_open(sid: int, stream_type: int, payload: bytes = b"") -> bytes:
    return frames.data_frame(sid, struct.pack(">I", stream_type) + payload, Flags.SYN)


def auth_body(token: str) -> bytes:
    return json.dumps(
        {"Version": ["3", "2"], "ClientId": "", "Extra": {"Authtoken": token}}
    ).encode()


#: The stream limit per agent session of the stream flood's edge: far below the flood, and
#: below the accept backlog (256), so that it is this limit that bounds what the edge holds.
FLOOD_STREAM_LIMIT = 100

#: The edges' auth timeout: the silent and undecodable peers wait it out, so it is short; a
#: peer that authenticates sends Auth right after its handshake, well within it.
AUTH_TIMEOUT = "1s"


@contextmanager
def serve(
    tmp_path: Path, limits: str = "", port_range: tuple[int, int] = PORT_RANGE
) -> Iterator[tuple[Edge, Agent]]:
    """An edge with a short auth timeout (and `limits`, more `limits:` keys), and a
    well-behaved agent serving an echo upstream."""
    echo = EchoServer()
    edge = make_edge(tmp_path, port_range=port_range)
    edge.config_path.write_text(
        edge.config_path.read_text() + f"limits: {{auth_timeout: {AUTH_TIMEOUT}{limits}}}\n"
    )
    edge.start()
    agent = make_agent(edge, edge.credential(), f"127.0.0.1:{echo.port}", tmp_path).start()
    try:
        yield edge, agent
    finally:
        agent.kill()
        edge.stop()
        echo.close()


@pytest.fixture(scope="module")
def shared_serving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Edge, Agent]]:
    """One edge and agent for the cases that hold on an edge other cases have used: each one
    looks only at the log lines after its own start (`Edge.log_since`)."""
    with serve(tmp_path_factory.mktemp("serving"), port_range=SHARED_PORT_RANGE) as running:
        yield running


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Edge, Agent]]:
    """A fresh edge and agent, for the cases that measure the edge's memory growth (memory
    other cases left free in its heap could hide a buffer)."""
    with serve(tmp_path) as running:
        yield running


@pytest.fixture
def serving_few_streams(tmp_path: Path) -> Iterator[tuple[Edge, Agent]]:
    with serve(tmp_path, f", max_streams_per_session: {FLOOD_STREAM_LIMIT}") as running:
        yield running


def assert_still_serving(edge: Edge, agent: Agent) -> None:
    assert edge.proc is not None and edge.proc.poll() is None, "the edge died"
    assert roundtrip(agent.port, b"unaffected") == b"unaffected"


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (b"\x00" * 3 + b"\x00" + b"\x00\x00\x00\x01" + b"\x00\x00\x00", ErrorCode.FRAME_SIZE_ERROR),
        (frames.pack_header(5, FrameType.WNDINC, 0, 1) + b"\x00" * 5, ErrorCode.FRAME_SIZE_ERROR),
        (frames.pack_header(4, FrameType.GOAWAY, 0, 0) + b"\x00" * 4, ErrorCode.FRAME_SIZE_ERROR),
        (frames.data_frame(0, b"x"), ErrorCode.PROTOCOL_ERROR),
        (
            frames.goaway_frame(0, 0)[:4] + b"\x00\x00\x00\x07" + b"\x00" * 8,
            ErrorCode.PROTOCOL_ERROR,
        ),
        (frames.data_frame(2, b"\x00\x00\x00\x00", Flags.SYN), ErrorCode.PROTOCOL_ERROR),
    ],
    ids=["rst-short", "wndinc-long", "goaway-short", "data-on-0", "goaway-on-stream", "our-parity"],
)
def test_malformed_frames_end_only_that_session(
    shared_serving: tuple[Edge, Agent], attack: bytes, code: int
) -> None:
    edge, agent = shared_serving
    mark = edge.log_size()
    peer = RawPeer(edge)
    peer.send(attack)
    received = peer.frames_until_closed()
    peer.close()
    assert goaway_code(received) == code, received
    assert_still_serving(edge, agent)
    assert "broke the protocol" in edge.log_since(mark)


def test_oversized_frame_is_refused_without_buffering(serving: tuple[Edge, Agent]) -> None:
    edge, agent = serving
    assert edge.proc is not None
    token = edge.credential()  # made before the connection, so Auth follows the handshake
    peer = RawPeer(edge)
    peer.authenticate(token)  # the session's own memory is in place before
    # A new stream whose first frame claims 16 MiB: more than the 256 KiB window.
    peer.send(frames.pack_header(frames.MAX_FRAME_LENGTH, FrameType.DATA, Flags.SYN, 3))
    chunk = b"\x00" * 65536
    sent = 12 * 1024 * 1024  # 12 MiB of it (the frame stays incomplete); the edge skips it
    before = rss_kib(edge.proc.pid)
    for _ in range(sent // len(chunk)):
        peer.send(chunk)
    received = peer.read_frames(until=1.0)
    grown = rss_kib(edge.proc.pid) - before
    # Well under what was sent: an edge that kept the frame's bytes would grow by all of it.
    assert grown * 1024 < sent // 3, f"the edge buffered the frame: it grew {grown} KiB"
    assert ErrorCode.FLOW_CONTROL_ERROR in rst_codes(received, 3), received
    assert goaway_code(received) is None  # a stream error, not a session error
    assert_still_serving(edge, agent)
    peer.close()


def test_stream_flood_is_bounded(serving_few_streams: tuple[Edge, Agent]) -> None:
    """An authenticated peer opening 20,000 streams at once gets at most the session's stream
    limit of them; every other one is refused (RST) at once, not queued."""
    edge, agent = serving_few_streams
    assert edge.proc is not None
    token = edge.credential()  # made before the connection, so Auth follows the handshake
    peer = RawPeer(edge)
    peer.authenticate(token)  # past Auth the limit is the configured one
    # 20,000 streams that send one byte of their type and then nothing: the edge waits 10 s
    # for the rest of the type, so every stream it admits stays open meanwhile.
    flood = set(range(3, 40_003, 2))
    peer.send(b"".join(frames.data_frame(sid, b"\x00", Flags.SYN) for sid in sorted(flood)))
    refusals = (ErrorCode.STREAM_REFUSED, ErrorCode.ACCEPT_QUEUE_FULL)

    def refused_ids(got: list[tuple[int, int, int, bytes]]) -> set[int]:
        return {
            sid
            for ftype, _, sid, body in got
            if ftype == FrameType.RST and struct.unpack(">I", body)[0] in refusals
        }

    received = peer.read_until(
        lambda got: len(refused_ids(got) & flood) >= len(flood) - FLOOD_STREAM_LIMIT,
        timeout=8.0,  # under the 10 s in which the admitted streams must send their type
    )
    refused = [f for f in received if f[0] == FrameType.RST]
    assert refused, "no stream was refused"
    reset = {f[2] for f in refused}
    admitted = flood - reset
    assert 0 < len(admitted) <= FLOOD_STREAM_LIMIT, len(admitted)
    assert reset & flood == refused_ids(received) & flood, "a flood stream was reset otherwise"
    assert_still_serving(edge, agent)
    peer.close()


def test_undecodable_auth_gets_no_session(shared_serving: tuple[Edge, Agent]) -> None:
    edge, agent = shared_serving
    mark = edge.log_size()
    peer = RawPeer(edge)
    peer.send(typed_open(1, StreamType.AUTH, b"{this is not json") + frames.data_frame(1, b"", 1))
    received = peer.frames_until_closed()
    peer.close()
    assert not any(f[0] == FrameType.DATA and b"ClientId" in f[3] for f in received)
    assert "bad request" in edge.log_since(mark)
    assert_still_serving(edge, agent)


def test_wrong_token_gets_err_ngrok_107_then_goaway(shared_serving: tuple[Edge, Agent]) -> None:
    edge, agent = shared_serving
    peer = RawPeer(edge)
    peer.send(
        typed_open(1, StreamType.AUTH, auth_body("cr_nope_nope")) + frames.data_frame(1, b"", 1)
    )
    received = peer.frames_until_closed()
    peer.close()
    body = b"".join(f[3] for f in received if f[0] == FrameType.DATA and f[2] == 1)
    assert b"ERR_NGROK_107" in body
    assert goaway_code(received) == ErrorCode.NO_ERROR
    assert_still_serving(edge, agent)


def test_silent_peer_is_dropped_after_auth_timeout(shared_serving: tuple[Edge, Agent]) -> None:
    edge, agent = shared_serving
    mark = edge.log_size()
    peer = RawPeer(edge)
    started = time.monotonic()
    received = peer.frames_until_closed(timeout=20)
    peer.close()
    assert goaway_code(received) is not None
    assert time.monotonic() - started < 10
    assert "no Auth in time" in edge.log_since(mark)
    assert_still_serving(edge, agent)


def test_data_for_a_reset_stream_is_answered_with_rst(shared_serving: tuple[Edge, Agent]) -> None:
    edge, agent = shared_serving
    token = edge.credential()  # made before the connection, so Auth follows the handshake
    peer = RawPeer(edge)
    peer.send(typed_open(1, StreamType.AUTH, auth_body(token)))
    peer.send(typed_open(3, 0xABCD))  # an unknown type: the edge closes it
    time.sleep(0.3)
    peer.send(frames.rst_frame(3, ErrorCode.STREAM_CANCELLED))
    peer.send(frames.data_frame(3, b"late data"))
    received = peer.read_frames(until=1.0)
    assert ErrorCode.STREAM_CLOSED in rst_codes(received, 3), received
    assert goaway_code(received) is None
    assert_still_serving(edge, agent)
    peer.close()


def test_connections_reset_at_once_do_not_take_the_edge_down(
    shared_serving: tuple[Edge, Agent],
) -> None:
    """A client that resets its connection before the edge looks at it (found in review: the
    edge's getpeername() raised ENOTCONN and the error ended the whole process)."""
    edge, agent = shared_serving
    for port in (edge.agents_port, agent.port) * 50:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    time.sleep(0.5)
    assert_still_serving(edge, agent)


def test_unauthenticated_peer_may_hold_only_a_few_streams(serving: tuple[Edge, Agent]) -> None:
    edge, agent = serving
    assert edge.proc is not None
    peer = RawPeer(edge)
    before = rss_kib(edge.proc.pid)
    # 200 streams before any Auth, each trying to park 200 KiB with the edge.
    junk = b"x" * (200 * 1024)
    for sid in range(1, 401, 2):
        peer.send(typed_open(sid, 0x77, junk))
    received = peer.read_frames(until=1.5)
    # Past the pre-auth limit streams are refused outright (STREAM_REFUSED); the few admitted
    # are closed with their data unread (STREAM_CLOSED). Either way every one is reset.
    reset = {f[2]: f[3] for f in received if f[0] == FrameType.RST}
    assert set(reset) == set(range(1, 401, 2))
    assert sum(code == b"\x00\x00\x00\x05" for code in reset.values()) > 0
    assert rss_kib(edge.proc.pid) - before < 16 * 1024
    assert_still_serving(edge, agent)
    peer.close()
