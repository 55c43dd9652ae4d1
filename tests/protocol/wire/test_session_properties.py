"""Hypothesis properties of the sans-IO session.

1. Splitting: a random exchange between a client and a server gives the same events, and the same
   bytes on the wire, whether each delivery is fed whole, split at random points or byte by byte.
2. Robustness: valid frames, mutated and split at random points, give only events or a
   `RemoteProtocolError`; after one the session is terminated with its GOAWAY queued last.
3. Delivery: the bytes each stream delivers are exactly the bytes its peer's `send_data` took, in
   order (a prefix of them if the stream was reset or its reader stopped reading).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocol.wire.errors import (
    ErrorCode,
    LocalProtocolError,
    MuxError,
    RemoteGoneAwayError,
    RemoteProtocolError,
    StreamGoneError,
)
from protocol.wire.events import DataReceived, Event, StreamOpened, StreamReset
from protocol.wire.frames import FrameType
from protocol.wire.session import Role, Session, SessionConfig
from tests.protocol.helpers import (
    F,
    SessionPair,
    Splitter,
    bytewise,
    merge_data,
    parse_frames,
    whole,
)

KiB = 1024

# A period-251 byte pattern: consecutive slices of it expose reordered or duplicated chunks.
PATTERN = bytes(i % 251 for i in range(251)) * (2 * 1024 * KiB // 251 + 2)


def payload_for(sid: int, offset: int, size: int) -> bytes:
    start = (offset + 37 * sid) % 251
    return PATTERN[start : start + size]


def random_splitter(rnd: random.Random) -> Splitter:
    """Cut each delivery at random points, sometimes into single bytes around a cut."""

    def split(data: bytes) -> list[bytes]:
        if len(data) <= 1:
            return [data]
        cuts = sorted({rnd.randrange(1, len(data)) for _ in range(rnd.randrange(0, 12))})
        if rnd.random() < 0.3:
            at = rnd.randrange(1, len(data))
            cuts = sorted({*cuts, *range(at, min(len(data), at + 10))})
        bounds = [0, *cuts, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    return split


# ------------------------------------------------------------------------ random exchanges

SIDES = ("client", "server")
LOCAL_ERRORS = (StreamGoneError, LocalProtocolError)

Op = tuple[Any, ...]


def ops_strategy(max_send: int, max_ops: int, *, chaos: bool = True) -> st.SearchStrategy[list[Op]]:
    """A few opens, then a mix weighted towards sends and flushes, and at most one GOAWAY.

    Without `chaos` there are no RSTs, half-closes or GOAWAYs: streams live long enough for
    their windows to fill, reopen and grow."""
    side = st.sampled_from(SIDES)
    index = st.integers(0, 15)
    open_op = st.tuples(st.just("open"), side)
    sizes = st.one_of(
        st.integers(0, max_send),
        st.sampled_from([n for n in (0, 1, 999, 65537, 200 * KiB, max_send) if n <= max_send]),
    )
    send = st.tuples(st.just("send"), side, index, sizes, st.booleans())
    flush = st.tuples(st.just("flush"), st.booleans())
    ack = st.tuples(st.just("ack"), side, index, st.integers(0, 2 * max_send))
    by_kind: dict[str, st.SearchStrategy[Op]] = {
        "open": open_op,
        "send": send,
        "flush": flush,
        "ack": ack,
        "ack_all": st.tuples(st.just("ack_all"), side),
        "end": st.tuples(st.just("end"), side, index, st.booleans()),
        "rst": st.tuples(
            st.just("rst"),
            side,
            index,
            st.sampled_from([ErrorCode.STREAM_CANCELLED, ErrorCode.NO_ERROR, 0x1234]),
        ),
    }
    # sampled_from weights by repetition; sends and flushes dominate so data actually moves
    weighted = ["open", *["send"] * 6, *["flush"] * 3, *["ack"] * 2, "ack_all"]
    if chaos:
        weighted += ["end", "rst"]
    body_op = st.sampled_from(weighted).flatmap(by_kind.__getitem__)
    goaway = st.one_of(st.none(), st.tuples(side, st.integers(0, max_ops))) if chaos else st.none()

    def assemble(opens: list[Op], body: list[Op], goaway_at: tuple[str, int] | None) -> list[Op]:
        ops = opens + body
        if goaway_at is not None:
            who, where = goaway_at
            ops.insert(min(where, len(ops)), ("goaway", who))
        return ops

    return st.builds(
        assemble,
        st.lists(open_op, min_size=1, max_size=4),
        st.lists(body_op, min_size=min(5, max_ops), max_size=max_ops),
        goaway,
    )


configs = st.builds(
    SessionConfig,
    window_growth=st.booleans(),
    max_send_frame=st.sampled_from([64, 1000, 64 * KiB]),
    max_stream_window=st.sampled_from([256 * KiB, 1024 * KiB]),
    session_window_budget=st.sampled_from([0, 512 * KiB]),
)


@dataclass
class Exchange:
    """Runs a list of operations on a SessionPair and records what happened."""

    config: SessionConfig
    split: Splitter
    pair: SessionPair = field(init=False)
    events: dict[str, list[Event]] = field(init=False)
    sent: dict[str, dict[int, bytearray]] = field(init=False)
    unacked: dict[str, dict[int, int]] = field(init=False)
    stopped_reading: dict[str, set[int]] = field(init=False)
    known: dict[str, list[int]] = field(init=False)
    backlog: dict[str, dict[int, tuple[bytes, bool]]] = field(init=False)
    reset_locally: set[int] = field(init=False)
    local_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pair = SessionPair(self.config, self.config, split=self.split)
        self.events = {side: [] for side in SIDES}
        self.sent = {side: {} for side in SIDES}
        self.unacked = {side: {} for side in SIDES}
        self.stopped_reading = {side: set() for side in SIDES}
        self.known = {side: [] for side in SIDES}  # streams each side has opened or seen open
        self.backlog = {side: {} for side in SIDES}  # data (and FIN) not yet taken by send_data
        self.reset_locally = set()  # reset_stream() raises no event, so remember it here

    def session(self, side: str) -> Session:
        return self.pair.client if side == "client" else self.pair.server

    def stream(self, side: str, index: int) -> int | None:
        known = self.known[side]
        return known[index % len(known)] if known else None

    def flush(self, ack: bool = False) -> None:
        """Deliver everything; with `ack` the readers acknowledge what they got. Writers with a
        backlog send more as windows open, until nothing moves any more."""
        for _ in range(10_000):
            seen = self.pair.flush()
            progress = False
            for side, events in (("client", seen.client), ("server", seen.server)):
                self.events[side] += events
                for seen_event in events:
                    if isinstance(seen_event, StreamOpened):
                        self.known[side].append(seen_event.stream_id)
                    if isinstance(seen_event, DataReceived):
                        pending = self.unacked[side]
                        sid = seen_event.stream_id
                        pending[sid] = pending.get(sid, 0) + len(seen_event.data)
                if ack:
                    progress |= self.ack_all(side)  # the WNDINCs still need delivering
            progress |= self.pump_all()
            if not seen.client and not seen.server and not progress:
                return
        raise AssertionError("the exchange never went quiet")

    def pump(self, side: str, sid: int) -> bool:
        """Send as much of a stream's backlog as its window allows (what a writer task does);
        True if anything went out or the backlog was dropped."""
        queued, fin = self.backlog[side].pop(sid)
        try:
            taken = self.session(side).send_data(sid, queued, end_stream=fin)
        except LOCAL_ERRORS as exc:
            self.local_errors.append(type(exc).__name__)
            return True  # the backlog is dropped
        assert 0 <= taken <= len(queued)
        self.sent[side].setdefault(sid, bytearray()).extend(queued[:taken])
        if taken < len(queued):
            self.backlog[side][sid] = (queued[taken:], fin)
        return taken > 0 or (fin and taken == len(queued))

    def pump_all(self) -> bool:
        progress = False
        for side in SIDES:
            for sid in list(self.backlog[side]):
                progress |= self.pump(side, sid)
        return progress

    def ack_all(self, side: str) -> bool:
        acked = any(self.unacked[side].values())
        for sid, n in self.unacked[side].items():
            self.session(side).acknowledge_received(sid, n)
        self.unacked[side].clear()
        return acked

    def apply(self, op: Op) -> None:
        kind = op[0]
        if kind == "flush":
            self.flush(ack=op[1])
            return
        side = op[1]
        session = self.session(side)
        if kind == "open":
            try:
                self.known[side].append(session.open_stream())
            except (RemoteGoneAwayError, LocalProtocolError) as exc:
                self.local_errors.append(type(exc).__name__)
            return
        if kind == "ack_all":
            self.ack_all(side)
            return
        if kind == "goaway":
            session.go_away(ErrorCode.NO_ERROR, b"test")
            return
        sid = self.stream(side, op[2])
        if sid is None:
            return
        try:
            if kind == "send":
                size, fin = op[3], op[4]
                queued, fin_pending = self.backlog[side].get(sid, (b"", False))
                offset = len(self.sent[side].get(sid, b"")) + len(queued)
                data = payload_for(sid, offset, size)
                self.backlog[side][sid] = (queued + data, fin_pending or fin)
                self.pump(side, sid)
            elif kind == "ack":
                n = min(op[3], self.unacked[side].get(sid, 0))
                session.acknowledge_received(sid, n)
                if n:
                    self.unacked[side][sid] -= n
            elif kind == "end":
                session.end_stream(sid, stop_reading=op[3])
                if op[3]:
                    self.stopped_reading[side].add(sid)
            elif kind == "rst":
                session.reset_stream(sid, op[3])
                self.reset_locally.add(sid)
        except LOCAL_ERRORS as exc:
            self.local_errors.append(type(exc).__name__)

    def run(self, ops: list[Op]) -> Exchange:
        for op in ops:
            self.apply(op)
        self.flush()
        return self

    def describe(self) -> None:
        """Hypothesis statistics (`--hypothesis-show-statistics`): what the examples exercised."""
        most = max([len(data) for side in SIDES for data in self.sent[side].values()] or [0])
        amount = "0" if not most else "<= 256 KiB" if most <= 256 * KiB else "more"
        event(f"most on one stream: {amount}")
        kinds = {type(e).__name__ for side in SIDES for e in self.events[side]}
        for kind in sorted(kinds):
            event(f"saw {kind}")


def run_everywhere(
    config: SessionConfig, ops: list[Op], splitters: list[Splitter]
) -> list[Exchange]:
    return [Exchange(config, split).run(ops) for split in splitters]


def assert_same(reference: Exchange, other: Exchange) -> None:
    for side in SIDES:
        # frames are delivered whole, so even without merging the lists must be identical
        assert merge_data(other.events[side]) == merge_data(reference.events[side])
        assert other.events[side] == reference.events[side]
    assert other.pair.client_wire == reference.pair.client_wire
    assert other.pair.server_wire == reference.pair.server_wire
    assert other.local_errors == reference.local_errors


CHAOTIC = ops_strategy(max_send=300 * KiB, max_ops=40)
BULK = ops_strategy(max_send=600 * KiB, max_ops=30, chaos=False)


@pytest.mark.parametrize("ops_kind", ["chaotic", "bulk"])
@settings(max_examples=50, deadline=None)
@given(config=configs, data=st.data(), rnd=st.randoms(use_true_random=False))
def test_split_deliveries_give_the_same_events(
    ops_kind: str, config: SessionConfig, data: st.DataObject, rnd: random.Random
) -> None:
    ops = data.draw(CHAOTIC if ops_kind == "chaotic" else BULK, label="ops")
    reference, split = run_everywhere(config, ops, [whole, random_splitter(rnd)])
    reference.describe()
    assert_same(reference, split)


@settings(max_examples=40, deadline=None)
@given(config=configs, ops=ops_strategy(max_send=700, max_ops=25))
def test_byte_by_byte_deliveries_give_the_same_events(config: SessionConfig, ops: list[Op]) -> None:
    reference, split = run_everywhere(config, ops, [whole, bytewise])
    assert_same(reference, split)


@pytest.mark.parametrize("ops_kind", ["chaotic", "bulk"])
@settings(max_examples=60, deadline=None)
@given(config=configs, data=st.data())
def test_bytes_delivered_equal_bytes_sent_in_order(
    ops_kind: str, config: SessionConfig, data: st.DataObject
) -> None:
    ops = data.draw(CHAOTIC if ops_kind == "chaotic" else BULK, label="ops")
    exchange = Exchange(config, whole).run(ops)
    check_delivered_equals_sent(exchange)
    exchange.describe()


def test_a_writer_past_the_window_finishes_when_the_reader_stops_reading() -> None:
    """Regression, found by the property above: the server's writer sent one byte more than the
    window, the client stopped reading with all of it unread, and the last byte waited forever
    for credit (the dropped bytes were never granted back)."""
    config = SessionConfig(
        window_growth=False,
        max_send_frame=64,
        max_stream_window=256 * KiB,
        session_window_budget=0,
    )
    ops: list[Op] = [
        *[("open", "client")] * 6,
        ("open", "server"),
        ("send", "server", 0, 256 * KiB + 1, False),
        ("flush", False),
        ("end", "client", 6, True),  # index 6 is stream 2, the server's
    ]
    exchange = Exchange(config, whole).run(ops)
    assert exchange.stopped_reading["client"] == {2}
    check_delivered_equals_sent(exchange)
    # the writer learnt that nobody reads: its last byte drew the RST
    assert len(exchange.sent["server"][2]) == 256 * KiB + 1
    rst = StreamReset(stream_id=2, error_code=ErrorCode.STREAM_CLOSED, remote=True)
    assert rst in exchange.events["server"]


def check_delivered_equals_sent(exchange: Exchange) -> None:
    """Drain the exchange, then check property 3 (see the module docstring)."""
    # drain: both readers catch up, so every window reopens and the writers finish
    exchange.flush(ack=True)
    assert not any(exchange.backlog.values()), "the writers never finished"
    reset = set(exchange.reset_locally)
    for side in SIDES:
        for seen in exchange.events[side]:
            if isinstance(seen, StreamReset):
                reset.add(seen.stream_id)
                if not seen.remote:
                    # a well-behaved peer never breaks flow control or the stream rules
                    assert seen.error_code in (ErrorCode.STREAM_CLOSED, ErrorCode.STREAM_REFUSED)
    for sender, receiver in (("client", "server"), ("server", "client")):
        delivered: dict[int, bytearray] = {}
        for seen in exchange.events[receiver]:
            if isinstance(seen, DataReceived):
                delivered.setdefault(seen.stream_id, bytearray()).extend(seen.data)
        stray = delivered.keys() - exchange.sent[sender].keys()
        assert not stray, f"{receiver} got data on {stray} that {sender} never sent"
        for sid, taken in exchange.sent[sender].items():
            got = bytes(delivered.get(sid, b""))
            if sid in reset or sid in exchange.stopped_reading[receiver]:
                assert bytes(taken).startswith(got), f"stream {sid}: not a prefix"
            else:
                assert got == bytes(taken), f"stream {sid}: {len(got)} of {len(taken)} bytes"
    for side in SIDES:
        assert not exchange.session(side).terminated
        parse_frames(exchange.pair.client_wire if side == "client" else exchange.pair.server_wire)


# ----------------------------------------------------------------------- mutated frames

stream_ids = st.sampled_from([1, 3, 5, 7, 2, 4, 0x7FFFFFFF])
codes = st.sampled_from([0, 1, 4, 5, 0xB, 0xFFFFFFFF])
frame = st.one_of(
    st.builds(
        F.data,
        stream_ids,
        st.binary(max_size=40),
        syn=st.booleans(),
        fin=st.booleans(),
    ),
    st.builds(F.data, st.sampled_from([1, 3, 5]), st.binary(max_size=40), syn=st.just(True)),
    st.builds(F.rst, stream_ids, codes),
    st.builds(F.wndinc, stream_ids, st.integers(0, 0xFFFFFFFF)),
    st.builds(F.goaway, st.integers(0, 9), codes, st.binary(max_size=20)),
    st.builds(F.unknown, st.integers(4, 15), stream_ids, st.binary(max_size=30)),
)

Mutation = tuple[str, int, int]
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete"]),
        st.integers(0, 10_000),
        st.integers(1, 255),
    ),
    max_size=4,
)


def mutate(data: bytes, muts: list[Mutation]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in muts:
        if kind == "insert":
            buf.insert(where % (len(buf) + 1), value)
        elif not buf:
            continue
        elif kind == "flip":
            buf[where % len(buf)] ^= value
        else:
            del buf[where % len(buf)]
    return bytes(buf)


@dataclass
class Outcome:
    events: list[Event]
    error: RemoteProtocolError | None
    output: bytes


def feed_checked(session: Session, pieces: list[bytes]) -> Outcome:
    events: list[Event] = []
    output = bytearray()
    for piece in pieces:
        if not piece:
            continue
        try:
            got = session.receive_data(piece)
        except RemoteProtocolError as exc:
            out = bytes(session.data_to_send())
            output += out
            check_after_session_error(session, exc, bytes(output))
            return Outcome(events, exc, bytes(output))
        except MuxError as exc:  # pragma: no cover - reported below
            raise AssertionError(f"receive_data raised {exc!r}, not a RemoteProtocolError") from exc
        assert isinstance(got, list)
        assert all(isinstance(event, Event) for event in got)
        events += got
        output += session.data_to_send()
        assert not session.terminated
    parse_frames(output)  # everything the session answered is well formed
    return Outcome(events, None, bytes(output))


def check_after_session_error(session: Session, exc: RemoteProtocolError, output: bytes) -> None:
    assert session.terminated
    assert session.open_streams == 0
    sent = parse_frames(output)
    assert sent[-1].type == FrameType.GOAWAY
    assert sent[-1].code == exc.code
    assert exc.code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.FRAME_SIZE_ERROR)
    # a terminated session ignores whatever else arrives
    assert session.receive_data(b"\x00" * 20) == []
    assert session.data_to_send() == b""


@settings(max_examples=250, deadline=None)
@given(
    frame_list=st.lists(frame, max_size=12),
    muts=mutations,
    rnd=st.randoms(use_true_random=False),
)
def test_mutated_frames_give_events_or_a_protocol_error(
    frame_list: list[bytes], muts: list[Mutation], rnd: random.Random
) -> None:
    data = mutate(b"".join(frame_list), muts)
    at_once = feed_checked(Session(Role.SERVER), [data])
    pieces = random_splitter(rnd)(data)
    split = feed_checked(Session(Role.SERVER), pieces)
    one_by_one = feed_checked(Session(Role.SERVER), bytewise(data))
    event("session error" if at_once.error else f"{len(at_once.events) // 4 * 4}+ events")
    for other in (split, one_by_one):
        if at_once.error is None:
            assert other.error is None
            assert other.events == at_once.events
            assert other.output == at_once.output
        else:
            # the same frame breaks the session whatever the split; events that came before it
            # in the same receive_data call are not reported (the session is over anyway)
            assert other.error is not None
            assert type(other.error) is type(at_once.error)
            assert str(other.error) == str(at_once.error)
            # and the session answered with the same frames (RSTs, then the GOAWAY)
            assert other.output == at_once.output


@settings(max_examples=60, deadline=None)
@given(
    ops=ops_strategy(max_send=3000, max_ops=25),
    muts=mutations,
    rnd=st.randoms(use_true_random=False),
)
def test_mutated_real_exchanges_give_events_or_a_protocol_error(
    ops: list[Op], muts: list[Mutation], rnd: random.Random
) -> None:
    exchange = Exchange(SessionConfig(max_send_frame=500), whole).run(ops)
    directions = (
        (exchange.pair.client_wire, Role.SERVER),
        (exchange.pair.server_wire, Role.CLIENT),
    )
    for wire, role in directions:
        data = mutate(bytes(wire), muts)
        at_once = feed_checked(Session(role), [data])
        split = feed_checked(Session(role), random_splitter(rnd)(data))
        assert (at_once.error is None) == (split.error is None)
        if at_once.error is None:
            assert split.events == at_once.events
