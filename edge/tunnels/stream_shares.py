"""Fair shares of one agent session's streams across its endpoints.

Theory of operation. An agent session may hold `limits.max_streams_per_session` muxado streams
at once, and every public connection (tcp, tls) or HTTP exchange to any of its endpoints holds
one proxy stream while it lasts. Without shares, the clients of one endpoint could take them
all and every other endpoint of the same agent would be refused too. So each endpoint (a bind
id of the session) may hold at most `limits.endpoint_stream_percent` of the session's streams:
`StreamShares.take` says whether one more may be opened, and the `SharedStream` wrapped around
the stream gives its share back when it is closed (whichever way: `aclose`, or
`trio.aclose_forcefully` under cancellation). A stream the peer resets still holds its share
until the edge closes its end, which the edge always does.

`StreamShares` is pure bookkeeping (no I/O, no clock); `SharedStream` only delegates, counting
the stream and its bytes in the edge's metrics when given them (`edge.admin.metrics`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from protocol.adapters.mux_stream import Sink

if TYPE_CHECKING:
    from edge.admin.metrics import EdgeMetrics

__all__ = ["SharedStream", "StreamShares"]


class StreamShares:
    """The proxy streams each endpoint of one session holds, against each endpoint's cap."""

    __slots__ = ("_held", "per_endpoint")

    def __init__(self, *, session_limit: int, percent: int) -> None:
        #: The most streams one endpoint may hold: `percent` of `session_limit`, at least one.
        self.per_endpoint = max(1, session_limit * percent // 100)
        self._held: dict[str, int] = {}

    def held(self, bind_id: str) -> int:
        return self._held.get(bind_id, 0)

    @property
    def total(self) -> int:
        """Proxy streams open across all the session's endpoints."""
        return sum(self._held.values())

    def take(self, bind_id: str) -> bool:
        """Count one more stream for `bind_id`; False (and nothing counted) at its cap."""
        held = self._held.get(bind_id, 0)
        if held >= self.per_endpoint:
            return False
        self._held[bind_id] = held + 1
        return True

    def give_back(self, bind_id: str) -> None:
        """One stream of `bind_id` closed."""
        held = self._held.get(bind_id, 0) - 1
        if held > 0:
            self._held[bind_id] = held
        else:
            self._held.pop(bind_id, None)


class _CountedSink:
    """A direct-path sink counting what it took as received from the agent (slotted: one per
    proxy stream while it is spliced, thousands at once, so no closure and its cells)."""

    __slots__ = ("_metrics", "_sink")

    def __init__(self, sink: Sink, metrics: EdgeMetrics) -> None:
        self._sink = sink
        self._metrics = metrics

    def write(self, data: bytes) -> int:
        taken = self._sink(data)
        self._metrics.from_agent(taken)
        return taken


class SharedStream(trio.abc.HalfCloseableStream):
    """A proxy stream that gives its endpoint's share back once closed. Everything else is the
    wrapped stream's own behaviour, errors included (their `__cause__` carries the muxado
    code that `protocol.adapters.mux.reset_code` reads)."""

    __slots__ = ("_bind_id", "_metrics", "_shares", "_stream")

    def __init__(
        self,
        stream: trio.abc.HalfCloseableStream,
        shares: StreamShares,
        bind_id: str,
        *,
        metrics: EdgeMetrics | None = None,
        proto: str = "",
    ) -> None:
        self._stream = stream
        self._shares: StreamShares | None = shares
        self._bind_id = bind_id
        self._metrics = metrics
        if metrics is not None:
            metrics.stream_opened(proto)

    def _give_back(self) -> None:
        shares, self._shares = self._shares, None
        if shares is not None:
            shares.give_back(self._bind_id)
            if self._metrics is not None:
                self._metrics.stream_closed()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)
        if self._metrics is not None:
            self._metrics.to_agent(len(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._stream.receive_some(max_bytes)
        if self._metrics is not None:
            self._metrics.from_agent(len(data))
        return data

    def deliver_to(self, sink: Sink | None) -> None:
        """Let the wrapped stream's producer hand arriving data straight to `sink` (see
        `protocol.adapters.mux.MuxStream.deliver_to`), counted as received from the agent as
        `receive_some` counts it; does nothing if the wrapped stream cannot."""
        deliver = getattr(self._stream, "deliver_to", None)
        if deliver is None:
            return
        metrics = self._metrics
        if sink is None or metrics is None:
            deliver(sink)
            return
        deliver(_CountedSink(sink, metrics).write)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        """Give the share back at once, then close the stream (which closes it even when
        cancelled, as every trio stream's `aclose` must)."""
        self._give_back()
        await self._stream.aclose()
