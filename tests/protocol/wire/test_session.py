"""The sans-IO muxado session: behaviour through a SessionPair and through raw frames."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.wire import frames
from protocol.wire.errors import (
    ErrorCode,
    FrameSizeError,
    LocalProtocolError,
    RemoteGoneAwayError,
    RemoteProtocolError,
    StreamGoneError,
)
from protocol.wire.events import (
    DataReceived,
    GoAwayReceived,
    SessionTerminated,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from protocol.wire.frames import Flags, FrameType
from protocol.wire.session import Role, Session, SessionConfig
from protocol.wire.states import StreamState
from protocol.wire.windows import INITIAL_WINDOW
from tests.protocol.helpers import (
    F,
    Frame,
    SessionPair,
    bytewise,
    feed,
    merge_data,
    parse_frames,
    received_bytes,
)

KiB = 1024
MiB = 1024 * KiB


def sent(session: Session) -> list[Frame]:
    return parse_frames(session.data_to_send())


def server_with_stream(sid: int = 1, config: SessionConfig | None = None) -> Session:
    """A server that has accepted stream `sid` from the peer (and sent nothing)."""
    server = Session(Role.SERVER, config)
    assert server.receive_data(F.data(sid, b"hi", syn=True)) == [
        StreamOpened(stream_id=sid),
        DataReceived(stream_id=sid, data=b"hi"),
    ]
    assert server.data_to_send() == b""
    return server


def assert_goaway_queued(session: Session, code: int, last_stream_id: int = 0) -> None:
    out = sent(session)
    assert out, "no GOAWAY queued"
    goaway = out[-1]
    assert goaway.type == FrameType.GOAWAY
    assert goaway.code == code
    assert goaway.last_stream_id == last_stream_id
    assert session.terminated
    assert session.local_goaway


# ------------------------------------------------------------------------------- opening


def test_open_stream_sends_nothing_until_first_write() -> None:
    client = Session(Role.CLIENT)
    sid = client.open_stream()
    assert client.data_to_send() == b""
    assert client.stream_state(sid) is StreamState.OPEN
    assert client.send_window(sid) == INITIAL_WINDOW
    assert client.receive_window(sid) == INITIAL_WINDOW


def test_first_data_carries_syn_later_frames_do_not() -> None:
    client = Session(Role.CLIENT)
    sid = client.open_stream()
    client.send_data(sid, b"\x00\x00\x00\x00")
    client.send_data(sid, b"more")
    wire = bytes(client.data_to_send())
    # ngrok.md §8.10 step 1, then a plain DATA frame
    assert (
        wire
        == bytes.fromhex("000004120000000100000000") + bytes.fromhex("0000041000000001") + b"more"
    )


@pytest.mark.parametrize(("role", "first"), [(Role.CLIENT, 1), (Role.SERVER, 2)])
def test_stream_ids_by_role(role: Role, first: int) -> None:
    session = Session(role)
    ids = [session.open_stream() for _ in range(4)]
    assert ids == [first, first + 2, first + 4, first + 6]
    assert all(session.is_local(sid) for sid in ids)
    assert not session.is_local(first + 1)


def test_client_and_server_open_streams_to_each_other() -> None:
    pair = SessionPair()
    c1, seen = pair.open_stream(from_client=True, first=b"a")
    assert (c1, seen.server) == (
        1,
        [StreamOpened(stream_id=1), DataReceived(stream_id=1, data=b"a")],
    )
    s2, seen = pair.open_stream(from_client=False, first=b"b")
    assert (s2, seen.client) == (
        2,
        [StreamOpened(stream_id=2), DataReceived(stream_id=2, data=b"b")],
    )
    c3, seen = pair.open_stream(from_client=True, first=b"c")
    assert c3 == 3
    assert seen.server[0] == StreamOpened(stream_id=3)
    assert pair.client.open_streams == pair.server.open_streams == 3


def test_syn_with_fin_opens_a_half_closed_stream() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.data(1, b"x", syn=True, fin=True)) == [
        StreamOpened(stream_id=1),
        DataReceived(stream_id=1, data=b"x"),
        StreamEnded(stream_id=1),
    ]
    assert server.stream_state(1) is StreamState.HALF_CLOSED_REMOTE


def test_stream_ids_exhausted() -> None:
    client = Session(Role.CLIENT)
    client._next_id = frames.MAX_STREAM_ID  # the last odd id
    assert client.open_stream() == frames.MAX_STREAM_ID
    with pytest.raises(StreamGoneError) as info:
        client.open_stream()
    assert info.value.code == ErrorCode.STREAMS_EXHAUSTED


# ----------------------------------------------------------------------------- half-close


def test_half_close_client_direction_first() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.end_stream(sid)
    seen = pair.flush()
    assert seen.server == [StreamEnded(stream_id=sid)]
    assert pair.client.stream_state(sid) is StreamState.HALF_CLOSED_LOCAL
    assert pair.server.stream_state(sid) is StreamState.HALF_CLOSED_REMOTE
    # the other direction still works
    pair.server.send_data(sid, b"reply")
    assert pair.flush().client == [DataReceived(stream_id=sid, data=b"reply")]
    # but the client may not send any more
    with pytest.raises(LocalProtocolError):
        pair.client.send_data(sid, b"late")


def test_half_close_server_direction_first() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.server.send_data(sid, b"bye", end_stream=True)
    seen = pair.flush()
    assert seen.client == [DataReceived(stream_id=sid, data=b"bye"), StreamEnded(stream_id=sid)]
    assert pair.server.stream_state(sid) is StreamState.HALF_CLOSED_LOCAL
    assert pair.client.stream_state(sid) is StreamState.HALF_CLOSED_REMOTE
    pair.client.send_data(sid, b"still here")
    assert pair.flush().server == [DataReceived(stream_id=sid, data=b"still here")]


def test_fin_is_a_zero_length_data_frame() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.end_stream(sid)
    assert bytes(pair.client.data_to_send()) == bytes.fromhex("0000001100000001")  # §8.10 step 5


def test_both_fins_remove_the_stream() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.end_stream(sid)
    pair.server.end_stream(sid)
    seen = pair.flush()
    assert seen.client == [StreamEnded(stream_id=sid)]
    assert seen.server == [StreamEnded(stream_id=sid)]
    for session in (pair.client, pair.server):
        assert session.open_streams == 0
        assert session.stream_state(sid) is StreamState.CLOSED
        with pytest.raises(StreamGoneError):
            session.send_data(sid, b"x")


def test_end_stream_twice_is_harmless() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.end_stream(sid)
    pair.client.end_stream(sid)
    assert [f.flags for f in sent(pair.client)] == [Flags.FIN]


def test_open_then_immediate_end_sends_syn_fin() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    pair.client.end_stream(sid)
    assert bytes(pair.client.data_to_send()) == bytes.fromhex("0000001300000001")


def test_data_after_peer_fin_resets_the_stream() -> None:
    server = server_with_stream(1)
    server.receive_data(F.data(1, fin=True))
    assert server.receive_data(F.data(1, b"late")) == [
        StreamReset(stream_id=1, error_code=ErrorCode.STREAM_CLOSED, remote=False)
    ]
    [rst] = sent(server)
    assert (rst.type, rst.stream_id, rst.code) == (FrameType.RST, 1, ErrorCode.STREAM_CLOSED)


def test_send_after_fin_raises_even_with_no_send_window() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    assert pair.client.send_data(sid, bytes(INITIAL_WINDOW)) == INITIAL_WINDOW
    pair.client.end_stream(sid)
    assert pair.client.send_window(sid) == 0
    # After FIN, sending is a caller error whether or not there is window left.
    with pytest.raises(LocalProtocolError):
        pair.client.send_data(sid, b"x")


# ------------------------------------------------------------------------------------ RST


@pytest.mark.parametrize("code", [ErrorCode.STREAM_CANCELLED, ErrorCode.INTERNAL_ERROR, 0xDEAD])
def test_reset_from_client_reaches_server(code: int) -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.reset_stream(sid, code)
    assert pair.client.open_streams == 0
    seen = pair.flush()
    assert seen.server == [StreamReset(stream_id=sid, error_code=code, remote=True)]
    assert pair.server.open_streams == 0


@pytest.mark.parametrize("code", [ErrorCode.NO_ERROR, ErrorCode.STREAM_RESET])
def test_reset_from_server_reaches_client(code: int) -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.server.reset_stream(sid, code)
    seen = pair.flush()
    assert seen.client == [StreamReset(stream_id=sid, error_code=code, remote=True)]
    with pytest.raises(StreamGoneError):
        pair.client.send_data(sid, b"x")


def test_reset_default_code_is_cancelled() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.reset_stream(sid)
    [rst] = sent(pair.client)
    assert (rst.type, rst.code) == (FrameType.RST, ErrorCode.STREAM_CANCELLED)


def test_reset_of_a_gone_stream_sends_nothing() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.reset_stream(sid)
    pair.client.data_to_send()
    pair.client.reset_stream(sid)
    pair.client.reset_stream(99)
    assert pair.client.data_to_send() == b""


def test_rst_for_unknown_stream_is_ignored() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.rst(7, ErrorCode.STREAM_CLOSED)) == []
    assert server.data_to_send() == b""


def test_data_in_flight_after_reset_is_answered_with_stream_closed() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.server.reset_stream(sid)
    pair.client.send_data(sid, b"crossing")  # the client has not seen the RST yet
    seen = pair.flush()
    assert seen.server == []  # no DataReceived for a dead stream
    assert seen.client == [
        StreamReset(stream_id=sid, error_code=ErrorCode.STREAM_CANCELLED, remote=True)
    ]
    rsts = [f for f in parse_frames(pair.server_wire) if f.type == FrameType.RST]
    assert [(f.stream_id, f.code) for f in rsts] == [
        (sid, ErrorCode.STREAM_CANCELLED),
        (sid, ErrorCode.STREAM_CLOSED),
    ]


# --------------------------------------------------------------------------------- GOAWAY


def test_goaway_with_last_id_and_debug() -> None:
    pair = SessionPair()
    s1, _ = pair.open_stream()
    s3, _ = pair.open_stream()
    s5 = pair.client.open_stream()  # never written: the server does not know it
    pair.server.go_away(ErrorCode.NO_ERROR, b"maintenance")
    [goaway] = sent(pair.server)
    assert (goaway.type, goaway.stream_id) == (FrameType.GOAWAY, 0)
    assert (goaway.last_stream_id, goaway.code, goaway.payload[8:]) == (
        s3,
        ErrorCode.NO_ERROR,
        b"maintenance",
    )
    events = pair.client.receive_data(frames.goaway_frame(s3, ErrorCode.NO_ERROR, b"maintenance"))
    assert events == [
        GoAwayReceived(last_stream_id=s3, error_code=ErrorCode.NO_ERROR, debug=b"maintenance"),
        StreamReset(stream_id=s5, error_code=ErrorCode.REMOTE_GONE_AWAY, remote=True),
    ]
    assert pair.client.remote_goaway
    with pytest.raises(RemoteGoneAwayError):
        pair.client.open_stream()
    with pytest.raises(StreamGoneError):
        pair.client.send_data(s5, b"x")
    # streams the peer knows keep working both ways
    pair.client.send_data(s1, b"one")
    pair.server.send_data(s3, b"three")
    seen = pair.flush()
    assert seen.server == [DataReceived(stream_id=s1, data=b"one")]
    assert seen.client == [DataReceived(stream_id=s3, data=b"three")]


def test_goaway_through_the_pair() -> None:
    pair = SessionPair()
    pair.open_stream()
    pair.server.go_away(ErrorCode.ENHANCE_YOUR_CALM, b"slow down")
    seen = pair.flush()
    assert seen.client == [
        GoAwayReceived(last_stream_id=1, error_code=ErrorCode.ENHANCE_YOUR_CALM, debug=b"slow down")
    ]


def test_goaway_resets_only_local_streams_above_last_id() -> None:
    client = Session(Role.CLIENT)
    for _ in range(4):
        client.open_stream()  # 1, 3, 5, 7
    client.receive_data(F.data(2, b"x", syn=True))  # a server stream, above last id but not ours
    events = client.receive_data(F.goaway(3, ErrorCode.PROTOCOL_ERROR, b""))
    assert events[0] == GoAwayReceived(last_stream_id=3, error_code=1, debug=b"")
    assert [(e.stream_id, e.error_code) for e in events[1:] if isinstance(e, StreamReset)] == [
        (5, ErrorCode.REMOTE_GONE_AWAY),
        (7, ErrorCode.REMOTE_GONE_AWAY),
    ]
    assert client.open_streams == 3  # 1, 3 and the server's 2


def test_local_goaway_is_sent_once_and_blocks_local_opens() -> None:
    server = Session(Role.SERVER)
    server.go_away()
    server.go_away(ErrorCode.INTERNAL_ERROR)
    [goaway] = sent(server)
    assert (goaway.last_stream_id, goaway.code) == (0, ErrorCode.NO_ERROR)
    with pytest.raises(LocalProtocolError):
        server.open_stream()


def test_peer_syn_after_local_goaway_is_refused() -> None:
    server = server_with_stream(1)
    server.go_away()
    server.data_to_send()
    events = server.receive_data(F.data(3, b"new", syn=True))
    assert events == [StreamReset(stream_id=3, error_code=ErrorCode.STREAM_REFUSED, remote=False)]
    [rst] = sent(server)
    assert (rst.type, rst.stream_id, rst.code) == (FrameType.RST, 3, ErrorCode.STREAM_REFUSED)
    # the existing stream carries on
    assert server.receive_data(F.data(1, b"old")) == [DataReceived(stream_id=1, data=b"old")]


def test_goaway_debug_is_capped_and_the_rest_skipped() -> None:
    config = SessionConfig(max_goaway_debug=10)
    client = Session(Role.CLIENT, config)
    debug = b"0123456789" + b"x" * 5000
    wire = F.goaway(0, ErrorCode.NO_ERROR, debug) + F.data(2, b"after", syn=True)
    events = feed(client, wire, lambda d: [d[i : i + 7] for i in range(0, len(d), 7)])
    assert events == [
        GoAwayReceived(last_stream_id=0, error_code=0, debug=b"0123456789"),
        StreamOpened(stream_id=2),
        DataReceived(stream_id=2, data=b"after"),
    ]
    assert len(client._inbuf) < 8


# ---------------------------------------------------------------------- unknown frame types


@pytest.mark.parametrize("frame_type", range(0x4, 0x10))
def test_unknown_frame_types_are_skipped(frame_type: int) -> None:
    server = server_with_stream(1)
    payload = bytes(range(256)) * 40
    wire = F.unknown(frame_type, 1, payload, flags=0x3) + F.data(1, b"next")
    # split across calls, including inside the unknown frame's header and payload
    events = feed(server, wire, lambda d: [d[:3], d[3:8], d[8:100], d[100:5000], d[5000:]])
    assert events == [DataReceived(stream_id=1, data=b"next")]
    assert server.data_to_send() == b""


def test_empty_unknown_frame_on_stream_zero() -> None:
    server = server_with_stream(1)
    assert server.receive_data(F.unknown(0x9, 0) + F.data(1, b"ok")) == [
        DataReceived(stream_id=1, data=b"ok")
    ]


# ----------------------------------------------------------------- DATA for unknown streams


def test_data_for_unknown_stream_is_answered_with_stream_closed() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.data(5, b"ghost")) == []
    [rst] = sent(server)
    assert (rst.type, rst.stream_id, rst.code) == (FrameType.RST, 5, ErrorCode.STREAM_CLOSED)
    assert server.open_streams == 0


def test_zero_length_fin_for_unknown_stream_is_ignored() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.data(5, fin=True)) == []
    assert server.data_to_send() == b""


def test_ten_mib_frame_for_a_dead_stream_is_skipped_not_buffered() -> None:
    server = server_with_stream(1)
    server.reset_stream(1)
    server.data_to_send()
    size = 10 * MiB
    header = frames.pack_header(size, FrameType.DATA, 0, 1)
    events = server.receive_data(header)
    assert events == []
    [rst] = sent(server)  # answered once, as soon as the header arrives
    assert (rst.stream_id, rst.code) == (1, ErrorCode.STREAM_CLOSED)
    piece = b"z" * (64 * KiB)
    peak = 0
    for _ in range(size // len(piece)):
        assert server.receive_data(piece) == []
        peak = max(peak, len(server._inbuf))
    assert peak == 0
    assert server.data_to_send() == b""  # no further RSTs for the same frame
    # the next frame is parsed normally
    assert server.receive_data(F.data(3, b"alive", syn=True)) == [
        StreamOpened(stream_id=3),
        DataReceived(stream_id=3, data=b"alive"),
    ]


def test_data_for_a_stream_of_ours_we_never_opened() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.data(4, b"?")) == []
    [rst] = sent(server)
    assert (rst.stream_id, rst.code) == (4, ErrorCode.STREAM_CLOSED)


def test_wndinc_for_unknown_stream_is_ignored() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.wndinc(9, 100)) == []
    assert server.data_to_send() == b""


# ---------------------------------------------------------------------------- flow control


def test_window_exceeded_resets_only_that_stream() -> None:
    server = server_with_stream(1)
    server.receive_data(F.data(3, b"", syn=True))
    # stream 1 already used 2 bytes of credit; filling the rest is fine
    assert server.receive_data(F.data(1, bytes(INITIAL_WINDOW - 2))) == [
        DataReceived(stream_id=1, data=bytes(INITIAL_WINDOW - 2))
    ]
    assert server.data_to_send() == b""
    # one byte more than the credit
    events = server.receive_data(F.data(1, b"!"))
    assert events == [
        StreamReset(stream_id=1, error_code=ErrorCode.FLOW_CONTROL_ERROR, remote=False)
    ]
    [rst] = sent(server)
    assert (rst.type, rst.stream_id, rst.code) == (FrameType.RST, 1, ErrorCode.FLOW_CONTROL_ERROR)
    # stream 3 keeps working, including a full window of its own
    assert server.receive_data(F.data(3, bytes(INITIAL_WINDOW))) == [
        DataReceived(stream_id=3, data=bytes(INITIAL_WINDOW))
    ]
    assert server.stream_state(3) is StreamState.OPEN
    assert server.data_to_send() == b""


def test_window_exceeded_is_decided_from_the_header() -> None:
    server = server_with_stream(1)
    big = frames.pack_header(INITIAL_WINDOW + 1, FrameType.DATA, 0, 1)
    assert server.receive_data(big) == [
        StreamReset(stream_id=1, error_code=ErrorCode.FLOW_CONTROL_ERROR, remote=False)
    ]
    server.receive_data(bytes(INITIAL_WINDOW + 1))
    assert len(server._inbuf) == 0


def test_syn_frame_larger_than_initial_window_is_refused() -> None:
    server = Session(Role.SERVER)
    events = server.receive_data(F.data(1, bytes(INITIAL_WINDOW + 1), syn=True))
    assert events == [
        StreamReset(stream_id=1, error_code=ErrorCode.FLOW_CONTROL_ERROR, remote=False)
    ]
    assert server.open_streams == 0


def test_send_data_limited_by_window_and_resumed_after_wndinc() -> None:
    pair = SessionPair()
    sid = pair.client.open_stream()
    payload = bytes(range(256)) * 2048  # 512 KiB
    taken = pair.client.send_data(sid, payload)
    assert taken == INITIAL_WINDOW
    assert pair.client.send_window(sid) == 0
    assert pair.client.send_data(sid, payload[taken:]) == 0
    seen = pair.flush()  # the server does not read yet
    assert received_bytes(seen.server) == {sid: payload[:taken]}
    assert seen.client == []
    pair.server.acknowledge_received(sid, 1000)  # below half the window: no update yet
    assert pair.server.data_to_send() == b""
    pair.server.acknowledge_received(sid, INITIAL_WINDOW // 2 - 1000)
    seen = pair.flush()
    [update] = seen.client
    assert isinstance(update, WindowUpdated)
    assert update.stream_id == sid
    assert pair.client.send_window(sid) == update.delta > 0
    more = pair.client.send_data(sid, payload[taken:])
    assert more == min(update.delta, len(payload) - taken)
    seen = pair.flush()
    assert received_bytes(seen.server) == {sid: payload[taken : taken + more]}


def test_frames_split_at_max_send_frame() -> None:
    config = SessionConfig(max_send_frame=1000)
    client = Session(Role.CLIENT, config)
    sid = client.open_stream()
    client.send_data(sid, bytes(2500), end_stream=True)
    out = sent(client)
    assert [len(f.payload) for f in out] == [1000, 1000, 500]
    assert [f.flags for f in out] == [Flags.SYN, 0, Flags.FIN]


def test_default_max_send_frame_is_64_kib() -> None:
    client = Session(Role.CLIENT)
    sid = client.open_stream()
    client.send_data(sid, bytes(INITIAL_WINDOW))
    assert [len(f.payload) for f in sent(client)] == [64 * KiB] * 4


def test_fin_waits_until_all_data_is_taken() -> None:
    client = Session(Role.CLIENT)
    sid = client.open_stream()
    assert client.send_data(sid, bytes(INITIAL_WINDOW + 10), end_stream=True) == INITIAL_WINDOW
    assert all(not f.flags & Flags.FIN for f in sent(client))
    assert client.stream_state(sid) is StreamState.OPEN


def test_zero_wndinc_resets_the_stream() -> None:
    server = server_with_stream(1)
    assert server.receive_data(F.wndinc(1, 0)) == [
        StreamReset(stream_id=1, error_code=ErrorCode.PROTOCOL_ERROR, remote=False)
    ]
    [rst] = sent(server)
    assert (rst.stream_id, rst.code) == (1, ErrorCode.PROTOCOL_ERROR)


def test_wndinc_overflow_resets_the_stream() -> None:
    server = server_with_stream(1)
    assert server.receive_data(F.wndinc(1, frames.MAX_WINDOW_INCREMENT)) == [
        StreamReset(stream_id=1, error_code=ErrorCode.FLOW_CONTROL_ERROR, remote=False)
    ]


def test_wndinc_reaches_the_sender() -> None:
    server = server_with_stream(1)
    assert server.receive_data(F.wndinc(1, 12345)) == [WindowUpdated(stream_id=1, delta=12345)]
    assert server.send_window(1) == INITIAL_WINDOW + 12345


GROWING = SessionConfig(window_growth=True)


def transfer(pair: SessionPair, size: int, *, windows: list[int] | None = None) -> int:
    """Send `size` bytes client -> server on a new stream with a reader that keeps up;
    `windows` collects the client's send window after each round trip."""
    sid = pair.client.open_stream()
    payload = bytes(size)
    offset = 0
    delivered = 0
    for _ in range(10_000):
        offset += pair.client.send_data(sid, payload[offset:])
        seen = pair.flush(ack=True)
        if windows is not None:
            windows.append(pair.client.send_window(sid))
        delivered += sum(len(e.data) for e in seen.server if isinstance(e, DataReceived))
        if offset == len(payload):
            break
    assert delivered == size
    return sid


def test_auto_tuning_grows_the_window_when_the_reader_keeps_up() -> None:
    pair = SessionPair(GROWING, GROWING)
    windows: list[int] = []
    sid = transfer(pair, 4 * MiB, windows=windows)
    assert pair.server.receive_window(sid) > INITIAL_WINDOW
    assert pair.server.receive_window(sid) <= GROWING.max_stream_window
    # the sender saw the bigger window too: it could have more than 256 KiB in flight
    assert max(windows) > INITIAL_WINDOW


def test_no_growth_by_default_for_ngrok_peers() -> None:
    # ngrok's muxado clamps its send window at 256 KiB: never grant credit beyond it by default
    pair = SessionPair()
    windows: list[int] = []
    sid = transfer(pair, 2 * MiB, windows=windows)
    assert pair.server.receive_window(sid) == INITIAL_WINDOW
    assert max(windows) <= INITIAL_WINDOW
    increments = [f.increment for f in parse_frames(pair.server_wire) if f.type == FrameType.WNDINC]
    assert increments
    assert sum(increments) == 2 * MiB - INITIAL_WINDOW + pair.client.send_window(sid)
    assert pair.client.send_window(sid) <= INITIAL_WINDOW


def test_allow_window_growth_applies_to_open_streams() -> None:
    pair = SessionPair()
    sid = transfer(pair, 1 * MiB)
    assert pair.server.receive_window(sid) == INITIAL_WINDOW
    pair.server.allow_window_growth()
    pair.client.send_data(sid, bytes(pair.client.send_window(sid)))
    pair.flush(ack=True)
    assert pair.server.receive_window(sid) > INITIAL_WINDOW
    # and to streams opened later
    later = transfer(pair, 1 * MiB)
    assert pair.server.receive_window(later) > INITIAL_WINDOW


def test_outbound_size_counts_queued_bytes() -> None:
    client = Session(Role.CLIENT)
    assert client.outbound_size == 0
    sid = client.open_stream()
    client.send_data(sid, b"abc")
    assert client.outbound_size == frames.HEADER_SIZE + 3
    client.data_to_send()
    assert client.outbound_size == 0


def test_no_tuning_when_the_reader_never_acknowledges() -> None:
    pair = SessionPair(GROWING, GROWING)
    sid = pair.client.open_stream()
    payload = bytes(4 * MiB)
    offset = 0
    for _ in range(10):
        offset += pair.client.send_data(sid, payload[offset:])
        pair.flush(ack=False)
    assert offset == INITIAL_WINDOW
    assert pair.client.send_window(sid) == 0
    assert pair.server.receive_window(sid) == INITIAL_WINDOW


def test_window_growth_capped_by_max_stream_window() -> None:
    config = SessionConfig(window_growth=True, max_stream_window=1 * MiB)
    pair = SessionPair(config, config)
    sid = pair.client.open_stream()
    payload = bytes(8 * MiB)
    offset = 0
    while offset < len(payload):
        offset += pair.client.send_data(sid, payload[offset:])
        pair.flush(ack=True)
    assert pair.server.receive_window(sid) == 1 * MiB


def test_session_budget_is_returned_when_a_stream_ends() -> None:
    config = SessionConfig(window_growth=True, session_window_budget=256 * KiB)
    pair = SessionPair(config, config)
    first = pair.client.open_stream()
    pair.client.send_data(first, bytes(128 * KiB))
    pair.flush(ack=True)
    assert pair.server.receive_window(first) == 512 * KiB  # the whole budget
    second = pair.client.open_stream()
    pair.client.send_data(second, bytes(128 * KiB))
    pair.flush(ack=True)
    assert pair.server.receive_window(second) == INITIAL_WINDOW  # nothing left to grow with
    pair.client.reset_stream(first)
    pair.flush()
    third = pair.client.open_stream()
    pair.client.send_data(third, bytes(128 * KiB))
    pair.flush(ack=True)
    assert pair.server.receive_window(third) == 512 * KiB


# ------------------------------------------------------------------------------- stop_reading


def test_end_stream_stop_reading_then_peer_data_is_reset() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream(from_client=False)
    pair.client.end_stream(sid, stop_reading=True)
    seen = pair.flush()
    assert seen.server == [StreamEnded(stream_id=sid)]
    pair.server.send_data(sid, b"nobody listens")
    seen = pair.flush()
    assert seen.client == [
        StreamReset(stream_id=sid, error_code=ErrorCode.STREAM_CLOSED, remote=False)
    ]
    assert seen.server == [
        StreamReset(stream_id=sid, error_code=ErrorCode.STREAM_CLOSED, remote=True)
    ]
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_stop_reading_still_accepts_the_peer_fin() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    pair.client.end_stream(sid, stop_reading=True)
    pair.server.end_stream(sid)
    seen = pair.flush()
    assert seen.client == [StreamEnded(stream_id=sid)]
    assert pair.client.open_streams == 0


def test_stop_reading_with_the_window_used_up_lets_the_writer_learn_of_it() -> None:
    # Regression (found by test_bytes_delivered_equal_bytes_sent_in_order): the reader stopped
    # with a whole window unread, the dropped bytes were never re-granted, and the writer's last
    # byte waited for credit forever.
    config = SessionConfig(max_send_frame=64)
    pair = SessionPair(config, config)
    sid = pair.server.open_stream()
    data = bytes(INITIAL_WINDOW + 1)
    assert pair.server.send_data(sid, data) == INITIAL_WINDOW
    pair.flush()  # nobody reads
    assert pair.server.send_window(sid) == 0
    pair.client.end_stream(sid, stop_reading=True)
    wire = bytes(pair.client.data_to_send())
    out = parse_frames(wire)
    assert [(f.type, f.flags) for f in out] == [(FrameType.DATA, Flags.FIN), (FrameType.WNDINC, 0)]
    assert out[1].increment == INITIAL_WINDOW  # the dropped bytes count as read
    assert pair.server.receive_data(wire) == [
        StreamEnded(stream_id=sid),
        WindowUpdated(stream_id=sid, delta=INITIAL_WINDOW),
    ]
    assert pair.server.send_data(sid, data[INITIAL_WINDOW:]) == 1
    seen = pair.flush()
    assert seen.client == [
        StreamReset(stream_id=sid, error_code=ErrorCode.STREAM_CLOSED, remote=False)
    ]
    assert seen.server == [
        StreamReset(stream_id=sid, error_code=ErrorCode.STREAM_CLOSED, remote=True)
    ]
    assert pair.client.open_streams == pair.server.open_streams == 0


def test_stop_reading_with_credit_left_sends_only_the_fin() -> None:
    # The writer can still send and draw the RST: no WNDINC is needed, none goes out.
    pair = SessionPair()
    sid, _ = pair.open_stream(from_client=False)
    assert pair.server.send_data(sid, bytes(100 * KiB)) == 100 * KiB
    pair.flush()
    pair.client.end_stream(sid, stop_reading=True)
    out = sent(pair.client)
    assert [(f.type, f.flags) for f in out] == [(FrameType.DATA, Flags.FIN)]


def test_stop_reading_after_the_peer_fin_grants_nothing() -> None:
    # The peer has finished sending: the stream closes and no credit is owed.
    pair = SessionPair()
    sid = pair.server.open_stream()
    assert pair.server.send_data(sid, bytes(INITIAL_WINDOW), end_stream=True) == INITIAL_WINDOW
    pair.flush()
    pair.client.end_stream(sid, stop_reading=True)
    out = sent(pair.client)
    assert [(f.type, f.flags) for f in out] == [(FrameType.DATA, Flags.FIN)]
    assert pair.client.open_streams == 0


# --------------------------------------------------------------------------- session errors


def test_peer_syn_in_our_id_space_is_a_session_error() -> None:
    server = server_with_stream(1)
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(F.data(2, b"mine?", syn=True))
    assert type(info.value) is RemoteProtocolError
    assert info.value.code == ErrorCode.PROTOCOL_ERROR
    assert_goaway_queued(server, ErrorCode.PROTOCOL_ERROR, last_stream_id=1)
    assert server.open_streams == 0
    # nothing more is processed
    assert server.receive_data(F.data(1, b"more")) == []
    assert server.data_to_send() == b""


def test_client_rejects_odd_syn_from_server() -> None:
    client = Session(Role.CLIENT)
    with pytest.raises(RemoteProtocolError):
        client.receive_data(F.data(1, syn=True))
    assert_goaway_queued(client, ErrorCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "header",
    [
        F.raw(0, FrameType.RST, 0, 1),
        F.raw(3, FrameType.RST, 0, 1),
        F.raw(5, FrameType.RST, 0, 1),
        F.raw(0, FrameType.WNDINC, 0, 1),
        F.raw(8, FrameType.WNDINC, 0, 1),
        F.raw(0xFFFFFF, FrameType.WNDINC, 0, 1),
        F.raw(0, FrameType.GOAWAY, 0, 0),
        F.raw(7, FrameType.GOAWAY, 0, 0),
    ],
    ids=["rst0", "rst3", "rst5", "wndinc0", "wndinc8", "wndinc-max", "goaway0", "goaway7"],
)
def test_bad_fixed_lengths_are_frame_size_errors(header: bytes) -> None:
    server = server_with_stream(1)
    # decided from the header alone: no payload needs to arrive
    with pytest.raises(FrameSizeError) as info:
        server.receive_data(header)
    assert info.value.code == ErrorCode.FRAME_SIZE_ERROR
    assert_goaway_queued(server, ErrorCode.FRAME_SIZE_ERROR, last_stream_id=1)


@pytest.mark.parametrize(
    "wire",
    [
        F.raw(1, FrameType.DATA, 0, 0, b"x"),
        F.raw(0, FrameType.DATA, Flags.SYN, 0),
        F.raw(4, FrameType.RST, 0, 0, b"\0\0\0\0"),
        F.raw(4, FrameType.WNDINC, 0, 0, b"\0\0\0\1"),
        F.raw(8, FrameType.GOAWAY, 0, 1, bytes(8)),
        F.raw(8, FrameType.GOAWAY, 0, 0x7FFFFFFF, bytes(8)),
    ],
    ids=["data", "data-syn", "rst", "wndinc", "goaway-1", "goaway-max"],
)
def test_wrong_stream_zero_rules_are_protocol_errors(wire: bytes) -> None:
    server = Session(Role.SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        server.receive_data(wire)
    assert not isinstance(info.value, FrameSizeError)
    assert_goaway_queued(server, ErrorCode.PROTOCOL_ERROR)


def test_session_error_after_good_frames_in_the_same_call() -> None:
    server = Session(Role.SERVER)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(F.data(1, b"a", syn=True) + F.data(3, b"b", syn=True) + F.rst(0, 0))
    # the GOAWAY names the streams the peer had opened before the error
    assert_goaway_queued(server, ErrorCode.PROTOCOL_ERROR, last_stream_id=3)


def test_syn_on_an_already_open_stream_resets_it() -> None:
    server = server_with_stream(1)
    events = server.receive_data(F.data(1, b"again", syn=True))
    assert events == [StreamReset(stream_id=1, error_code=ErrorCode.PROTOCOL_ERROR, remote=False)]
    [rst] = sent(server)
    assert (rst.stream_id, rst.code) == (1, ErrorCode.PROTOCOL_ERROR)
    assert not server.terminated


# ----------------------------------------------------------------------------- max_streams


def test_max_streams_refuses_further_peer_opens() -> None:
    server = Session(Role.SERVER, SessionConfig(max_streams=3))
    events = server.receive_data(b"".join(F.data(sid, syn=True) for sid in (1, 3, 5, 7, 9)))
    assert events == [
        StreamOpened(stream_id=1),
        StreamOpened(stream_id=3),
        StreamOpened(stream_id=5),
        StreamReset(stream_id=7, error_code=ErrorCode.STREAM_REFUSED, remote=False),
        StreamReset(stream_id=9, error_code=ErrorCode.STREAM_REFUSED, remote=False),
    ]
    assert [(f.type, f.stream_id, f.code) for f in sent(server)] == [
        (FrameType.RST, 7, ErrorCode.STREAM_REFUSED),
        (FrameType.RST, 9, ErrorCode.STREAM_REFUSED),
    ]
    assert server.open_streams == 3
    # once one closes there is room again
    server.reset_stream(1)
    assert server.receive_data(F.data(11, syn=True)) == [StreamOpened(stream_id=11)]
    assert server.open_streams == 3


def test_local_streams_count_toward_max_streams() -> None:
    server = Session(Role.SERVER, SessionConfig(max_streams=2))
    server.open_stream()
    server.open_stream()
    assert server.receive_data(F.data(1, syn=True)) == [
        StreamReset(stream_id=1, error_code=ErrorCode.STREAM_REFUSED, remote=False)
    ]


def test_a_peer_opening_100000_streams_costs_bounded_memory() -> None:
    limit = 256
    server = Session(Role.SERVER, SessionConfig(max_streams=limit))
    opened = refused = 0
    sid = 1
    batch_size = 1000
    for _ in range(100):
        batch = bytearray()
        for _ in range(batch_size):
            batch += frames.pack_header(1, FrameType.DATA, Flags.SYN, sid) + b"x"
            sid += 2
        events = server.receive_data(batch)
        opened += sum(isinstance(e, StreamOpened) for e in events)
        refused += sum(
            isinstance(e, StreamReset) and e.error_code == ErrorCode.STREAM_REFUSED for e in events
        )
        assert server.open_streams <= limit
        assert len(server._inbuf) == 0
        out = server.data_to_send()
        assert len(out) == 12 * sum(isinstance(e, StreamReset) for e in events)
    assert (opened, refused) == (limit, 100_000 - limit)
    assert server.open_streams == limit


# ------------------------------------------------------------------------------------- EOF


def test_eof_terminates_the_session() -> None:
    pair = SessionPair()
    sid, _ = pair.open_stream()
    events = pair.client.receive_data(b"")
    assert events == [SessionTerminated(error_code=ErrorCode.PEER_EOF, message="transport closed")]
    assert pair.client.terminated
    assert pair.client.open_streams == 0
    with pytest.raises(StreamGoneError) as info:
        pair.client.send_data(sid, b"x")
    assert info.value.code == ErrorCode.SESSION_CLOSED
    with pytest.raises(StreamGoneError):
        pair.client.end_stream(sid)
    with pytest.raises(StreamGoneError) as info:
        pair.client.open_stream()
    assert info.value.code == ErrorCode.SESSION_CLOSED
    assert not isinstance(info.value, RemoteGoneAwayError)
    # after EOF nothing more is reported or sent
    assert pair.client.receive_data(F.data(2, b"x", syn=True)) == []
    assert pair.client.receive_data(b"") == []
    pair.client.go_away()
    pair.client.reset_stream(sid)
    pair.client.acknowledge_received(sid, 10)
    assert pair.client.data_to_send() == b""


def test_eof_with_a_partial_frame_buffered() -> None:
    server = Session(Role.SERVER)
    assert server.receive_data(F.data(1, b"abcdef", syn=True)[:10]) == []
    assert server.receive_data(b"") == [
        SessionTerminated(error_code=ErrorCode.PEER_EOF, message="transport closed")
    ]


def test_eof_returns_window_growth_to_the_budget() -> None:
    config = SessionConfig(window_growth=True, session_window_budget=256 * KiB)
    pair = SessionPair(config, config)
    sid = pair.client.open_stream()
    pair.client.send_data(sid, bytes(128 * KiB))
    pair.flush(ack=True)
    assert pair.server._budget.available == 0
    pair.server.receive_data(b"")
    assert pair.server._budget.available == 256 * KiB


# --------------------------------------------------------------------------- input splitting


def test_the_same_events_byte_by_byte() -> None:
    wire = (
        F.data(1, b"hello", syn=True)
        + F.unknown(0x7, 1, b"skip me")
        + F.data(3, b"", syn=True)
        + F.wndinc(1, 10)
        + F.data(1, b" world", fin=True)
        + F.rst(3, ErrorCode.STREAM_CANCELLED)
        + F.goaway(3, ErrorCode.NO_ERROR, b"bye")
    )
    whole_events = Session(Role.SERVER).receive_data(wire)
    split_events = feed(Session(Role.SERVER), wire, bytewise)
    assert split_events == whole_events
    assert merge_data(whole_events) == [
        StreamOpened(stream_id=1),
        DataReceived(stream_id=1, data=b"hello"),
        StreamOpened(stream_id=3),
        WindowUpdated(stream_id=1, delta=10),
        DataReceived(stream_id=1, data=b" world"),
        StreamEnded(stream_id=1),
        StreamReset(stream_id=3, error_code=ErrorCode.STREAM_CANCELLED, remote=True),
        GoAwayReceived(last_stream_id=3, error_code=0, debug=b"bye"),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_send_frame": 0},
        {"max_send_frame": 0x1000000},
        {"max_streams": 0},
        {"max_stream_window": 1024},
    ],
)
def test_session_config_rejects_values_that_cannot_work(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="SessionConfig"):
        SessionConfig(**bad)


def test_protocol_error_after_local_goaway_sends_no_second_goaway() -> None:
    session = Session(Role.SERVER)
    session.go_away()
    session.data_to_send()
    with pytest.raises(RemoteProtocolError):
        session.receive_data(frames.data_frame(0, b"x"))
    assert session.data_to_send() == b""
