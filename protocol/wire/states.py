"""The stream state machine, as data.

Theory of operation: a stream is a pair of half-connections. Each side ends its own direction with
FIN; either side may abort both with RST. Everything that changes a stream's state is an entry in
`TRANSITIONS`; an input with no entry for the current state is a protocol error, raised as
`LocalProtocolError` for our own actions (`SEND_*`) and as `StreamProtocolError` for the peer's
(`RECV_*`). The session owns windows and buffers; this module knows only states.

muxado has no handshake: a stream is opened by the first DATA frame, which carries SYN. Locally we
move to OPEN at `open_stream()` and put SYN on whatever frame goes out first.
"""

from __future__ import annotations

from enum import Enum, auto

from protocol.wire.errors import ErrorCode, LocalProtocolError, StreamProtocolError


class StreamState(Enum):
    IDLE = auto()
    OPEN = auto()
    HALF_CLOSED_LOCAL = auto()  # we sent FIN; the peer may still send
    HALF_CLOSED_REMOTE = auto()  # the peer sent FIN; we may still send
    CLOSED = auto()


class StreamInput(Enum):
    SEND_SYN = auto()
    SEND_DATA = auto()
    SEND_FIN = auto()
    SEND_RST = auto()
    SEND_WNDINC = auto()
    RECV_SYN = auto()
    RECV_DATA = auto()
    RECV_FIN = auto()
    RECV_RST = auto()
    RECV_WNDINC = auto()


S = StreamState
I = StreamInput  # noqa: E741

TRANSITIONS: dict[tuple[StreamState, StreamInput], StreamState] = {
    (S.IDLE, I.SEND_SYN): S.OPEN,
    (S.IDLE, I.RECV_SYN): S.OPEN,
    # both directions open
    (S.OPEN, I.SEND_DATA): S.OPEN,
    (S.OPEN, I.RECV_DATA): S.OPEN,
    (S.OPEN, I.SEND_WNDINC): S.OPEN,
    (S.OPEN, I.RECV_WNDINC): S.OPEN,
    (S.OPEN, I.SEND_FIN): S.HALF_CLOSED_LOCAL,
    (S.OPEN, I.RECV_FIN): S.HALF_CLOSED_REMOTE,
    (S.OPEN, I.SEND_RST): S.CLOSED,
    (S.OPEN, I.RECV_RST): S.CLOSED,
    # we are done sending; the peer is not
    (S.HALF_CLOSED_LOCAL, I.RECV_DATA): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.SEND_WNDINC): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.RECV_WNDINC): S.HALF_CLOSED_LOCAL,
    (S.HALF_CLOSED_LOCAL, I.RECV_FIN): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, I.SEND_RST): S.CLOSED,
    (S.HALF_CLOSED_LOCAL, I.RECV_RST): S.CLOSED,
    # the peer is done sending; we are not
    (S.HALF_CLOSED_REMOTE, I.SEND_DATA): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_REMOTE, I.RECV_WNDINC): S.HALF_CLOSED_REMOTE,
    (S.HALF_CLOSED_REMOTE, I.SEND_FIN): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, I.SEND_RST): S.CLOSED,
    (S.HALF_CLOSED_REMOTE, I.RECV_RST): S.CLOSED,
    # late frames after close are tolerated where harmless
    (S.CLOSED, I.RECV_RST): S.CLOSED,
    (S.CLOSED, I.RECV_WNDINC): S.CLOSED,
}


def transition(state: StreamState, event: StreamInput, *, stream_id: int) -> StreamState:
    """The state after `event`, or the matching protocol error if the table has no entry."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        message = f"stream {stream_id}: {event.name} is not allowed in state {state.name}"
        if event.name.startswith("SEND_"):
            raise LocalProtocolError(message) from None
        raise StreamProtocolError(
            message, stream_id=stream_id, code=ErrorCode.STREAM_CLOSED
        ) from None
