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
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import trio

from protocol.adapters.mux import Sink

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


async def splice(a: trio.abc.Stream, b: trio.abc.Stream) -> tuple[int, int]:
    """Copy a→b and b→a until both directions end; close both. Returns (a→b, b→a) bytes.

    Never raises for a broken or closed stream (that is how connections end); cancellation
    propagates as usual.
    """
    counts = [0, 0]
    failed = False

    async def copy(src: trio.abc.Stream, dst: trio.abc.Stream, index: int) -> None:
        nonlocal failed
        receive = _socket_reader(src) if type(src) is trio.SocketStream else src.receive_some
        try:
            while True:
                data = await receive(COPY_CHUNK)
                if not data:
                    break
                await dst.send_all(data)
                counts[index] += len(data)
            if isinstance(dst, trio.abc.HalfCloseableStream):
                await dst.send_eof()
            else:
                await dst.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("splice: direction %d ended: %s", index, exc)
            failed = True
            nursery.cancel_scope.cancel()

    def direct(src: trio.abc.Stream, dst: trio.abc.Stream, index: int) -> None:
        # A wrapper that sends unchanged to a plain socket (the agent inspector's tap) names it.
        target = dst if type(dst) is trio.SocketStream else getattr(dst, "plain_sender", None)
        if type(target) is trio.SocketStream and isinstance(src, DirectSource):
            src.deliver_to(_counted(_socket_sink(target), counts, index))

    direct(a, b, 0)
    direct(b, a, 1)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(copy, a, b, 0)
            nursery.start_soon(copy, b, a, 1)
    finally:
        for stream in (a, b):
            if isinstance(stream, DirectSource):
                stream.deliver_to(None)
        await _close(a, abort=failed)
        await _close(b, abort=failed)
    return counts[0], counts[1]


def _socket_reader(stream: trio.SocketStream) -> Callable[[int], Awaitable[bytes]]:
    """`stream.receive_some` without trio's per-call wrapping: read the socket at once, or wait
    until it is readable. No checkpoint when data was there (the copy's `send_all` is one);
    OS errors become `trio.BrokenResourceError`, as the stream's own would."""
    sock = stream.socket
    fd = sock.fileno()

    async def receive(max_bytes: int) -> bytes:
        while True:
            try:
                return os.read(fd, max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket read failed: {exc!r}") from exc
            await trio.lowlevel.wait_readable(sock)

    return receive


def _socket_sink(stream: trio.SocketStream) -> Sink:
    """A non-blocking write to `stream`'s socket: the bytes the kernel took at once, 0 if none
    (buffer full, or any error: the copy task's own `send_all` then meets and reports it).
    Valid while `stream` is open; splice detaches it before closing."""
    fd = stream.socket.fileno()

    def sink(data: bytes) -> int:
        try:
            return os.write(fd, data)
        except OSError:  # BlockingIOError, or a broken socket (SIGPIPE is ignored by Python)
            return 0

    return sink


def _counted(sink: Sink, counts: list[int], index: int) -> Sink:
    def counted(data: bytes) -> int:
        taken = sink(data)
        counts[index] += taken
        return taken

    return counted


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
