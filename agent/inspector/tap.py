"""A passive tap: a stream wrapper that shows the bytes it receives to a capture, unchanged.

`forward` wraps the two sides of an inspected http/https connection: what `receive_some`
returns from the edge side goes to `ConnectionCapture.request_bytes`, what it returns from the
upstream to `response_bytes`, and then on to `splice` as before. Sending, EOF and closing pass
straight through. Once the capture no longer follows the connection (an upgrade, say), the
tap costs one attribute check per read. Errors and cancellation are the wrapped stream's.

The tap keeps `splice`'s direct path (`protocol.adapters.pipe`): over a mux stream it passes
`deliver_to` on, showing the bytes the sink took to the capture (what the sink did not take comes
later through `receive_some`, so the capture still sees every byte once, in order); over a plain
socket it names that socket as `plain_sender`, since sending passes through untouched. Without
this the tap would cost an inspected endpoint the task switch per message the direct path saves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from agent.inspector.capture import ConnectionCapture
from protocol.adapters.mux import Sink

__all__ = ["TapStream", "wall_and_monotonic"]


def wall_and_monotonic() -> tuple[float, float]:
    """The capture's clock: wall time (shown as the request's start) and monotonic time
    (durations)."""
    return time.time(), time.monotonic()


class TapStream(trio.abc.HalfCloseableStream):
    """`inner`, with each received chunk shown to `seen` (b"" at EOF) first."""

    def __init__(
        self,
        inner: trio.abc.Stream,
        capture: ConnectionCapture,
        seen: Callable[[bytes | bytearray], None],
    ) -> None:
        self.inner = inner
        self._capture = capture
        self._seen = seen

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self._capture.following:
            self._seen(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    @property
    def plain_sender(self) -> trio.abc.Stream | None:
        """The plain socket stream `send_all` writes to unchanged, if that is what is wrapped
        (`splice` may write to it directly)."""
        return self.inner if type(self.inner) is trio.SocketStream else None

    def deliver_to(self, sink: Sink | None) -> None:
        """Let the wrapped mux stream hand arriving data straight to `sink`, shown to the
        capture as `receive_some` shows it; does nothing if the wrapped stream cannot."""
        deliver = getattr(self.inner, "deliver_to", None)
        if deliver is None:
            return
        if sink is None:
            deliver(None)
            return
        inner, capture, seen = sink, self._capture, self._seen

        def tapped(data: bytes) -> int:
            taken = inner(data)
            if taken and capture.following:
                seen(data[:taken] if taken < len(data) else data)
            return taken

        deliver(tapped)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close the wrapped stream, or close it if it cannot half-close (as `splice`
        does with such a stream)."""
        if isinstance(self.inner, trio.abc.HalfCloseableStream):
            await self.inner.send_eof()
        else:
            await self.inner.aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()
