"""The HTTP/2 flood accounting: bytes as a client sends them in, a verdict out (no clock, no I/O).

Frames are built with hyperframe (h2's own frame codec), so the guard's frame scanning is
checked against an independent encoder."""

from __future__ import annotations

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from edge.config import HttpConfig
from edge.http.h2.flood import (
    MAX_BANKED_WINDOW_UPDATES,
    WINDOW_UPDATES_PER_DATA_FRAME,
    Abuse,
    Flood,
    FloodGuard,
    FloodLimits,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LIMITS = FloodLimits(window=10.0, max_resets=5, max_control_frames=8)
ENCODER = hpack.Encoder()
REQUEST = ENCODER.encode(
    [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/")]
)


def wire(*frames: Frame) -> bytes:
    return b"".join(frame.serialize() for frame in frames)


def headers(stream_id: int, *, end: bool = True) -> HeadersFrame:
    return HeadersFrame(stream_id, REQUEST, flags=["END_HEADERS", *(["END_STREAM"] * end)])


def settings() -> SettingsFrame:
    return SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1 << 20})


def ping() -> PingFrame:
    return PingFrame(0, opaque_data=b"12345678")


def reset(stream_id: int) -> RstStreamFrame:
    return RstStreamFrame(stream_id, error_code=8)


def fresh() -> FloodGuard:
    guard = FloodGuard(LIMITS)
    assert guard.receive(PREFACE, 0.0) is None
    return guard


def test_default_limits_come_from_the_http_config() -> None:
    http = HttpConfig()
    assert http.h2_flood_window == 10.0
    assert http.h2_max_resets_per_window == 500
    assert http.h2_max_control_frames_per_window == 1000


def test_a_browser_like_connection_is_never_judged() -> None:
    guard = FloodGuard(FloodLimits(window=10.0, max_resets=500, max_control_frames=1000))
    opening = wire(settings(), WindowUpdateFrame(0, window_increment=15 << 20), headers(1))
    assert guard.receive(PREFACE + opening, 0.0) is None
    assert guard.receive(wire(SettingsFrame(0, flags=["ACK"])), 0.01) is None
    now = 0.0
    for n in range(1, 2000):  # 2,000 requests in 20 s, every 50th cancelled, pings now and then
        now += 0.01
        stream_id = 2 * n + 1
        frames: list[Frame] = [headers(stream_id, end=False), DataFrame(stream_id, b"x" * 100)]
        frames.append(DataFrame(stream_id, b"", flags=["END_STREAM"]))
        if n % 50 == 0:
            frames.append(reset(stream_id))
        if n % 200 == 0:
            frames.append(ping())
        guard.data_sent(2)
        frames += [WindowUpdateFrame(stream_id, window_increment=100)] * 2
        assert guard.receive(wire(*frames), now) is None, n
    assert guard.flood is None


def test_one_reset_over_the_limit_is_a_flood() -> None:
    guard = fresh()
    flood_of = [frame for n in range(5) for frame in (headers(2 * n + 1), reset(2 * n + 1))]
    assert guard.receive(wire(*flood_of), 1.0) is None  # exactly the limit
    verdict = guard.receive(wire(headers(11), reset(11)), 1.5)
    assert verdict == Flood(abuse=Abuse.RESETS, count=6, window=10.0)
    assert guard.flood == verdict
    assert verdict.describe() == "6 reset or refused streams within 10s"


def test_refused_streams_count_as_resets() -> None:
    guard = fresh()
    assert guard.receive(wire(reset(1), reset(3), reset(5)), 1.0) is None
    assert guard.refused(1.0) is None
    assert guard.refused(1.0) is None
    verdict = guard.refused(1.0)
    assert verdict is not None and verdict.abuse is Abuse.RESETS and verdict.count == 6


@pytest.mark.parametrize(
    "frame",
    [
        settings(),
        SettingsFrame(0, flags=["ACK"]),
        ping(),
        PingFrame(0, opaque_data=b"12345678", flags=["ACK"]),
        PriorityFrame(3, depends_on=0, stream_weight=16),
        DataFrame(1, b""),  # empty, without END_STREAM
        WindowUpdateFrame(0, window_increment=1),  # no DATA sent: nothing earned it
        GoAwayFrame(0, last_stream_id=0, error_code=0),
    ],
    ids=lambda frame: "-".join([type(frame).__name__, *sorted(frame.flags)]),
)
def test_control_frames_over_the_limit_are_a_flood(frame: Frame) -> None:
    guard = fresh()
    assert guard.receive(wire(headers(1, end=False)), 0.0) is None
    assert guard.receive(frame.serialize() * 8, 1.0) is None
    verdict = guard.receive(frame.serialize(), 2.0)
    assert verdict == Flood(abuse=Abuse.CONTROL_FRAMES, count=9, window=10.0)


def test_unknown_frame_types_and_trailers_are_control_frames() -> None:
    guard = fresh()
    unknown = (0).to_bytes(3, "big") + bytes([0x42, 0]) + (1).to_bytes(4, "big")
    assert guard.receive(wire(headers(1, end=False)), 0.0) is None
    assert guard.receive(unknown * 4, 0.0) is None
    assert guard.receive(wire(headers(1), headers(1), headers(1), headers(1)), 0.0) is None
    verdict = guard.receive(unknown, 0.0)
    assert verdict is not None and verdict.abuse is Abuse.CONTROL_FRAMES


def test_streams_data_and_continuations_are_not_counted() -> None:
    guard = fresh()
    frames: list[Frame] = []
    for n in range(50):
        stream_id = 2 * n + 1
        frames += [
            HeadersFrame(stream_id, REQUEST[:3]),
            ContinuationFrame(stream_id, REQUEST[3:], flags=["END_HEADERS"]),
            DataFrame(stream_id, b"body"),
            DataFrame(stream_id, b"", flags=["END_STREAM"]),
        ]
    assert guard.receive(wire(*frames), 0.0) is None
    assert guard.flood is None


def test_window_updates_are_free_as_far_as_data_sent_earned_them() -> None:
    guard = fresh()
    guard.data_sent(2)
    update = wire(WindowUpdateFrame(1, window_increment=1))
    earned = 2 * WINDOW_UPDATES_PER_DATA_FRAME
    assert guard.receive(update * (earned + 8), 0.0) is None  # earned, then the control budget
    assert guard.receive(update, 0.0) is not None
    banked = FloodGuard(LIMITS)
    banked.data_sent(10 * MAX_BANKED_WINDOW_UPDATES)
    assert banked.receive(PREFACE + update * (MAX_BANKED_WINDOW_UPDATES + 8), 0.0) is None
    assert banked.receive(update, 0.0) is not None


def test_counts_start_again_in_a_new_window() -> None:
    guard = fresh()
    for now in (0.0, 10.0, 20.0, 30.0):  # each window holds exactly the limits
        assert guard.receive(ping().serialize() * 8, now) is None
        assert guard.receive(wire(reset(1)) * 5, now + 9.5) is None
    guard = fresh()
    assert guard.receive(ping().serialize() * 8, 0.0) is None
    assert guard.receive(ping().serialize(), 9.99) is not None  # still the first window


def test_the_verdict_is_final() -> None:
    guard = fresh()
    verdict = guard.receive(wire(ping()) * 9, 0.0)
    assert verdict is not None
    assert guard.receive(wire(headers(1)), 100.0) is verdict
    assert guard.refused(100.0) is verdict


@pytest.mark.parametrize("step", [1, 2, 7, 9, 10, 31])
def test_split_reads_give_the_same_verdict_at_the_same_frame(step: int) -> None:
    """Bytes fed whole and in pieces of any size give the same verdict, in the piece that
    holds the header of the first frame over the limit."""
    body = PREFACE + wire(settings(), headers(1), DataFrame(1, b"x" * 40), ping(), ping())
    body += wire(*[ping()] * 5)  # the 8th control frame: the limit
    cut = len(body)
    body += wire(ping(), ping())  # the 9th is over it
    whole = FloodGuard(LIMITS)
    assert whole.receive(body[:cut], 0.0) is None
    assert whole.receive(body[cut:], 0.0) is not None
    pieces = FloodGuard(LIMITS)
    judged_at = None
    for offset in range(0, len(body), step):
        if pieces.receive(body[offset : offset + step], 0.0) is not None:
            judged_at = offset
            break
    assert judged_at is not None
    header_end = cut + 9
    assert judged_at < header_end <= judged_at + step
