"""Heartbeats on typed stream 0xFFFFFFFF (muxado's heartbeat decorator).

The requester writes 4 random bytes every `interval` and expects them echoed; no echo within
`interval + tolerance` of a beat means the session is dead. So a peer that goes silent is found
dead between `interval + tolerance` (it went silent just before a beat) and `2 * interval +
tolerance` (just after an echo) later: 25 to 35 s with the defaults of 10 s and 15 s. The
responder echoes every 4 bytes it reads.
Both sides may run a requester: the agent to reconnect, the edge to drop a dead agent's
endpoints at once instead of waiting for TCP to notice.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from protocol.adapters.mux import MuxSession, receive_exactly
from protocol.rpc.messages import StreamType

BEAT_SIZE = 4


class HeartbeatTimeout(Exception):  # noqa: N818 - reads as what happened
    """No echo arrived in time: the peer or the path to it is gone."""


async def answer_heartbeats(stream: trio.abc.Stream) -> None:
    """Echo beats until the stream ends; returns quietly on EOF or a broken stream."""
    try:
        while True:
            beat = await receive_exactly(stream, BEAT_SIZE)
            await stream.send_all(beat)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def send_heartbeats(
    session: MuxSession,
    *,
    interval: float,
    tolerance: float,
    on_rtt: Callable[[float], None] | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> None:
    """Beat forever; raises `HeartbeatTimeout` when an echo is late or wrong.

    Ends quietly (returns) if the session or the stream breaks: that is the session's own
    failure, reported by it.
    """
    try:
        stream = await session.open_typed_stream(StreamType.HEARTBEAT)
    except trio.BrokenResourceError:
        return
    try:
        while True:
            beat = random_bytes(BEAT_SIZE)
            started = trio.current_time()
            with trio.move_on_after(interval + tolerance) as scope:
                await stream.send_all(beat)  # a peer that stops reading times out here too
                echo = await receive_exactly(stream, BEAT_SIZE)
            if scope.cancelled_caught:
                raise HeartbeatTimeout(f"no heartbeat reply within {interval + tolerance:g}s")
            if echo != beat:
                raise HeartbeatTimeout("heartbeat reply did not match the beat sent")
            rtt = trio.current_time() - started
            if on_rtt is not None:
                on_rtt(rtt)
            await trio.sleep(max(0.0, interval - rtt))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        stream.close_now()
