"""A passive tap: a stream wrapper that shows the bytes passing through it to a capture, unchanged.

`forward` wraps the edge side of an inspected http/https connection only: what `receive_some`
returns from it (the public client's requests) goes to `ConnectionCapture.request_bytes`, what
`send_all` is given for it (the upstream's responses) to `response_bytes` (and `send_eof`, the
responses' end, as `b""`), then on as before. The upstream socket stays a plain
`trio.SocketStream`, so `splice` keeps reading it directly. Closing passes straight through.
Once the capture no longer follows the connection (an upgrade, say), each read and write costs
one call that returns at once. Errors and cancellation are the wrapped stream's; the bytes a
failed `send_all` was given have been shown already.

The tap keeps `splice`'s direct path (`protocol.adapters.pipe`): over a mux stream it passes
`deliver_to` on, showing the bytes the sink took to the capture (what the sink did not take comes
later through `receive_some`, so the capture still sees every byte once, in order); over a plain
socket whose sends it does not watch it names that socket as `plain_sender`. Without this the tap
would cost an inspected endpoint the task switch per message the direct path saves.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from agent.inspector.capture import ConnectionCapture
from protocol.adapters.mux_stream import Sink

__all__ = ["TapStream", "wall_and_monotonic"]


def wall_and_monotonic() -> tuple[float, float]:
    """The capture's clock: wall time (shown as the request's start) and monotonic time
    (durations)."""
    return time.time(), time.monotonic()


class TapStream(trio.abc.HalfCloseableStream):
    """`inner`, with each received chunk shown to `seen` (b"" at EOF) first and, if `sent` is
    given, each chunk sent shown to `sent` (b"" at `send_eof`) before it goes. `capture` is the
    capture they feed (the tap itself calls only them)."""

    def __init__(
        self,
        inner: trio.abc.Stream,
        capture: ConnectionCapture,
        seen: Callable[[bytes | bytearray], None],
        *,
        sent: Callable[[bytes | bytearray], None] | None = None,
    ) -> None:
        del capture  # `seen` and `sent` are its methods
        self.inner = inner
        self._seen = seen
        self._sent = sent

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self._seen(data)
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sent is not None and data:
            self._sent(data if not isinstance(data, memoryview) else bytes(data))
        await self.inner.send_all(data)

    @property
    def plain_sender(self) -> trio.abc.Stream | None:
        """The plain socket stream `send_all` writes to unchanged and unwatched, if that is what
        is wrapped (`splice` may write to it directly)."""
        if self._sent is None and type(self.inner) is trio.SocketStream:
            return self.inner
        return None

    def deliver_to(self, sink: Sink | None) -> None:
        """Let the wrapped mux stream hand arriving data straight to `sink`, shown to the
        capture as `receive_some` shows it; does nothing if the wrapped stream cannot."""
        deliver = getattr(self.inner, "deliver_to", None)
        if deliver is None:
            return
        if sink is None:
            deliver(None)
            return
        inner, seen = sink, self._seen

        def tapped(data: bytes) -> int:
            taken = inner(data)
            if taken:
                seen(data if taken == len(data) else data[:taken])
            return taken

        deliver(tapped)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close the wrapped stream, or close it if it cannot half-close (as `splice`
        does with such a stream)."""
        if self._sent is not None:
            self._sent(b"")
        if isinstance(self.inner, trio.abc.HalfCloseableStream):
            await self.inner.send_eof()
        else:
            await self.inner.aclose()

    async def aclose(self) -> None:
        await self.inner.aclose()
