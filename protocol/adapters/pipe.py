"""Bidirectional copy between two trio streams, with TCP half-close semantics.

Each direction copies until its source reaches EOF, then half-closes its destination
(`send_eof`), so a client that shuts down its write side still gets the whole reply. If either
direction fails (reset, broken transport), both streams are closed at once: a failure is never
half-hidden. Payload is never copied in Python beyond what `receive_some` returns.

A direction from a `DirectSource` (a `MuxStream`, or a wrapper that passes `deliver_to` on) to a
plain `trio.SocketStream` (the agent's proxy stream to its upstream, the edge's to a tcp://
client; or a wrapper that names one as its `plain_sender`) also lets the mux session's reader
task write arriving data to the socket itself (`MuxStream.deliver_to`, a non-blocking write), so
a small message costs no switch to the copy task; whatever the socket does not take at once
goes through the copy task as usual, in order.

A direction from a plain `trio.SocketStream` reads its socket directly (`_SocketReader`): after
a read that filled less than it asked for, the socket is most likely drained, so the next read
waits for readability first instead of trying the read and meeting EAGAIN (one syscall fewer per
message on request/response traffic); after a full read it reads again at once, so a bulk
transfer pays no extra scheduler pass.

Memory: thousands of idle connections may each sit in a splice, so it keeps what it holds per
connection small: one child task (the other direction runs in the caller's task), one slotted
state object, and for the direct path one slotted sink whose bound method the mux calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Protocol, runtime_checkable

import trio

from protocol.adapters.mux_stream import Sink

log = logging.getLogger(__name__)

#: Bytes asked of a source per read: large enough to amortise per-call cost on fast links.
COPY_CHUNK = 256 * 1024
#: A graceful close (e.g. a TLS close_notify) gets this long before it is abandoned.
CLOSE_TIMEOUT = 1.0


@runtime_checkable
class DirectSource(Protocol):
    """A stream whose data a sink may take straight from its producer (`MuxStream.deliver_to`
    says the contract)."""

    def deliver_to(self, sink: Sink | None) -> None: ...


class _Splice:
    """What the two directions of one splice share: byte counts and how it ended."""

    __slots__ = ("ab", "ba", "failed", "scope")

    def __init__(self) -> None:
        self.ab = 0
        self.ba = 0
        self.failed = False
        self.scope: trio.CancelScope | None = None

    def count(self, index: int, length: int) -> None:
        if index == 0:
            self.ab += length
        else:
            self.ba += length


async def splice(a: trio.abc.Stream, b: trio.abc.Stream) -> tuple[int, int]:
    """Copy a→b and b→a until both directions end; close both. Returns (a→b, b→a) bytes.

    Never raises for a broken or closed stream (that is how connections end); cancellation
    propagates as usual.
    """
    state = _Splice()
    sinks = (_direct(a, b), _direct(b, a))
    try:
        async with trio.open_nursery() as nursery:
            state.scope = nursery.cancel_scope
            nursery.start_soon(_copy, b, a, 1, state)
            await _copy(a, b, 0, state)
    finally:
        for stream in (a, b):
            if isinstance(stream, DirectSource):
                stream.deliver_to(None)
        await _close(a, abort=state.failed)
        await _close(b, abort=state.failed)
    ab, ba = sinks
    return state.ab + (ab.taken if ab else 0), state.ba + (ba.taken if ba else 0)


def _direct(src: trio.abc.Stream, dst: trio.abc.Stream) -> _SocketSink | None:
    """Attach the direct path src→dst if it applies (see the module doc); its sink, or None."""
    # A wrapper that sends unchanged to a plain socket (the agent inspector's tap) names it.
    target = dst if type(dst) is trio.SocketStream else getattr(dst, "plain_sender", None)
    if type(target) is trio.SocketStream and isinstance(src, DirectSource):
        sink = _SocketSink(target)
        src.deliver_to(sink.write)
        return sink
    return None


async def _copy(src: trio.abc.Stream, dst: trio.abc.Stream, index: int, state: _Splice) -> None:
    """One direction: src→dst until src's EOF, then half-close dst (or close it). A broken or
    closed stream ends the whole splice (`state.failed`, both directions cancelled)."""
    receive = _SocketReader(src).receive if type(src) is trio.SocketStream else src.receive_some
    try:
        while True:
            data = await receive(COPY_CHUNK)
            if not data:
                break
            await dst.send_all(data)
            state.count(index, len(data))
        if isinstance(dst, trio.abc.HalfCloseableStream):
            await dst.send_eof()
        else:
            await dst.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        log.debug("splice: direction %d ended: %s", index, exc)
        state.failed = True
        assert state.scope is not None
        state.scope.cancel()


class _SocketReader:
    """`stream.receive_some` without trio's per-call wrapping: read the socket at once, or wait
    until it is readable. After a short read (less than asked: the socket is most likely
    drained) the next call waits for readability first, saving the read that would only meet
    EAGAIN; after a full one it reads at once. No checkpoint when it read without waiting (the
    copy's `send_all` is one); cancellation while waiting propagates and loses nothing. OS
    errors become `trio.BrokenResourceError`, as the stream's own would; a socket closed under
    the wait raises `trio.ClosedResourceError`."""

    __slots__ = ("_drained", "_fd", "_sock")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._sock = stream.socket
        self._fd = self._sock.fileno()
        self._drained = False

    async def receive(self, max_bytes: int) -> bytes:
        sock = self._sock
        try:
            if self._drained:
                await trio.lowlevel.wait_readable(sock)
            while True:
                try:
                    data = os.read(self._fd, max_bytes)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                self._drained = len(data) < max_bytes
                return data
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket read failed: {exc!r}") from exc


class _SocketSink:
    """A non-blocking write to a socket (`write`, the `Sink` handed to `deliver_to`): the bytes
    the kernel took at once, 0 if none (buffer full, or any error: the copy task's own
    `send_all` then meets and reports it); `taken` counts them. Valid while the socket is
    open; splice detaches it before closing."""

    __slots__ = ("_fd", "taken")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._fd = stream.socket.fileno()
        self.taken = 0

    def write(self, data: bytes) -> int:
        try:
            written = os.write(self._fd, data)
        except OSError:  # BlockingIOError, or a broken socket (SIGPIPE is ignored by Python)
            return 0
        self.taken += written
        return written


async def _close(stream: trio.abc.Stream, *, abort: bool) -> None:
    if abort:
        await trio.aclose_forcefully(stream)
        return
    with (
        trio.CancelScope(shield=True),
        trio.move_on_after(CLOSE_TIMEOUT),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
    ):
        await stream.aclose()
