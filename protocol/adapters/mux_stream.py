"""One muxado stream as a trio `HalfCloseableStream`: `MuxStream`, fed by its session's reader
task and writing through its session (`protocol.adapters.mux.MuxSession`, which creates it).

Theory of operation: the session's reader task hands a stream its data, EOF, errors and window
updates (`_feed`, `_feed_eof`, `_fail`, `_window_opened`), which wake the one task parked in
`receive_some` or in a send; nothing here awaits per frame. `send_all` hands the session at
most `SEND_CHUNK` bytes at a time, never more than the stream's send window, and then lets the
session write them (`MuxSession._write_soon`). A stream's unread bytes are bounded by the
receive window it grants (see `protocol/wire/windows.py`).

Errors: a reset or the end of the session fails the stream with `trio.BrokenResourceError`
whose `__cause__` says why, after any data that arrived before it has been read; use after
`aclose` or `reset` raises `trio.ClosedResourceError`.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from trio.lowlevel import (
    Abort,
    Task,
    checkpoint,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from protocol.wire.errors import ErrorCode, StreamGoneError
from protocol.wire.states import StreamState

if TYPE_CHECKING:
    from protocol.adapters.mux import MuxSession

__all__ = ["SEND_CHUNK", "MuxStream", "Sink"]

#: Bytes one `send_all` hands the session before checking the outbound high-water mark.
SEND_CHUNK = 256 * 1024

_RECEIVING = "another task is already receiving on this stream"
_SENDING = "another task is already sending on this stream"

#: A non-blocking writer the reader task may hand a stream's data to (`MuxStream.deliver_to`):
#: takes bytes, returns how many it wrote at once.
Sink = Callable[[bytes], int]


class MuxStream(trio.abc.HalfCloseableStream):
    """One muxado stream as a trio `HalfCloseableStream`.

    `receive_some` returns b"" once the peer half-closed (FIN) and all data was read; it raises
    `BrokenResourceError` if the stream was reset or the session died (after delivering the data
    that arrived first). `send_eof` sends FIN. `aclose` sends FIN if not yet sent and stops
    reading: data the peer sends afterwards is refused with RST STREAM_CLOSED (muxado's Close);
    if data was left unread, it resets the stream at once instead, as TCP does.
    """

    # Slots, and one waiting task per direction instead of a ParkingLot each: an idle stream
    # (thousands of them per session) then holds no instance dict and no lot objects.
    __slots__ = (
        "_chunks",
        "_closed",
        "_eof",
        "_eof_sent",
        "_error",
        "_receiver",
        "_receiving",
        "_sender",
        "_sending",
        "_session",
        "_sink",
        "stream_id",
        "stream_type",
    )

    def __init__(self, session: MuxSession, stream_id: int, stream_type: int | None = None) -> None:
        self._session = session
        self.stream_id = stream_id
        #: The typed-stream type, once known (set by `open_typed_stream`/`read_stream_type`).
        self.stream_type = stream_type
        #: Data read and not yet taken by `receive_some`; None while there is none (a deque
        #: costs 0.7 KiB, and most streams hold nothing most of the time).
        self._chunks: deque[bytes | memoryview] | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._closed = False
        self._eof_sent = False
        #: The task parked in `receive_some` (only then has everything read been passed on),
        #: and the one parked in a send waiting for window; at most one of each, since a
        #: second receiver or sender is refused (BusyResourceError) while one is inside.
        self._receiver: Task | None = None
        self._sender: Task | None = None
        self._receiving = False
        self._sending = False
        #: Where the reader task may write arriving data itself (`deliver_to`).
        self._sink: Sink | None = None

    def __repr__(self) -> str:
        return f"<MuxStream {self.stream_id}>"

    def deliver_to(self, sink: Sink | None) -> None:
        """Let the session's reader task hand arriving data straight to `sink` (None: stop).

        `sink(data)` must not block: it writes what it can at once and returns how many bytes
        it took (0 when it can take nothing now; it must not raise). It is called only while a
        task is parked in `receive_some` with nothing unread, so data reaches the sink in order
        with what that task has read and passed on itself; bytes the sink does not take are
        queued for `receive_some` as usual. Taken bytes count as read (credit goes back to the
        peer). Used by `protocol.adapters.pipe.splice` to save a task switch per message."""
        self._sink = sink

    # --------------------------------------------------------------- fed by the reader task

    def _feed(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None and self._receiver is not None and not self._chunks:
            taken = sink(data)
            if taken:
                self._session._acknowledge(self.stream_id, taken)
                if taken >= len(data):
                    return
                data = data[taken:]
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append(data)
        self._wake_receiver()

    def _feed_eof(self) -> None:
        self._eof = True
        self._wake_receiver()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake_receiver()
        self._wake_sender()

    def _window_opened(self) -> None:
        self._wake_sender()

    # ------------------------------------------------------------------------------ waiting

    def _wake_receiver(self) -> None:
        task = self._receiver
        if task is not None:
            self._receiver = None
            reschedule(task)

    def _wake_sender(self) -> None:
        task = self._sender
        if task is not None:
            self._sender = None
            reschedule(task)

    # A parked task sleeps in `wait_task_rescheduled` until a `_wake_*` call; cancelled, it
    # just stops waiting (these aborts forget it).

    def _abort_receive(self, _: object) -> Abort:
        self._receiver = None
        return Abort.SUCCEEDED

    def _abort_send(self, _: object) -> Abort:
        self._sender = None
        return Abort.SUCCEEDED

    # ---------------------------------------------------------------------------- receiving

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._receiving:
            raise trio.BusyResourceError(_RECEIVING)
        self._receiving = True
        try:
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            if self._closed:
                raise trio.ClosedResourceError("this stream was closed")
            if not self._chunks and not self._eof and self._error is None:
                while not self._chunks and not self._eof and self._error is None:
                    self._receiver = current_task()
                    await wait_task_rescheduled(self._abort_receive)
                    if self._closed:
                        raise trio.ClosedResourceError("this stream was closed")
            else:
                await checkpoint()
            chunks = self._chunks
            if chunks:
                chunk = chunks.popleft()
                if max_bytes is not None and len(chunk) > max_bytes:
                    chunks.appendleft(memoryview(chunk)[max_bytes:])
                    chunk = memoryview(chunk)[:max_bytes]
                elif not chunks:
                    self._chunks = None
                self._session._acknowledge(self.stream_id, len(chunk))
                return bytes(chunk) if isinstance(chunk, memoryview) else chunk
            if self._error is not None:
                raise trio.BrokenResourceError(str(self._error)) from self._error
            return b""
        finally:
            self._receiving = False

    # ------------------------------------------------------------------------------ sending

    def _enter_send(self) -> None:
        if self._sending:
            raise trio.BusyResourceError(_SENDING)
        self._sending = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._enter_send()
        try:
            self._check_sendable()
            session = self._session
            view = memoryview(data)
            total = len(view)
            offset = 0
            if not total:
                await checkpoint()
            while offset < total:
                self._check_sendable()
                try:
                    taken = session._conn.send_data(
                        self.stream_id, view[offset : offset + SEND_CHUNK]
                    )
                except StreamGoneError as exc:
                    self._fail(exc)
                    raise trio.BrokenResourceError(str(exc)) from exc
                if taken:
                    offset += taken
                    await session._write_soon()
                else:
                    self._sender = current_task()
                    await wait_task_rescheduled(self._abort_send)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        self._enter_send()
        try:
            self._check_sendable()
            await checkpoint()
            while self._session._conn.send_window(self.stream_id) == 0:
                self._check_sendable()
                if self._session._conn.stream_state(self.stream_id) is StreamState.CLOSED:
                    return
                self._sender = current_task()
                await wait_task_rescheduled(self._abort_send)
            await self._session._wait_outbound_room()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        self._enter_send()
        try:
            if self._closed:
                raise trio.ClosedResourceError("this stream was closed")
            await checkpoint()
            if self._eof_sent:
                return
            if self._error is not None:
                raise trio.BrokenResourceError(str(self._error)) from self._error
            self._eof_sent = True
            try:
                self._session._conn.end_stream(self.stream_id)
            except StreamGoneError as exc:
                self._fail(exc)
                raise trio.BrokenResourceError(str(exc)) from exc
            self._session._kick()
            self._session._forget_if_closed(self.stream_id)
        finally:
            self._sending = False

    def _check_sendable(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if self._eof_sent:
            raise trio.ClosedResourceError("send_eof() was called on this stream")
        if self._error is not None:
            raise trio.BrokenResourceError(str(self._error)) from self._error

    # ------------------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        self.close_now()
        await checkpoint()

    def reset(self, code: int = ErrorCode.STREAM_CANCELLED) -> None:
        """Abort both directions at once with RST `code` (the peer's reads and writes fail with
        it); a no-op on a stream that is already closed."""
        if self._closed:
            return
        self._closed = True
        self._chunks = None
        self._wake_receiver()
        self._wake_sender()
        session = self._session
        session._streams.pop(self.stream_id, None)
        if session._conn.stream_state(self.stream_id) is StreamState.CLOSED:
            return
        if not session.closed.is_set():
            session._conn.reset_stream(self.stream_id, code)
            session._kick()

    def close_now(self) -> None:
        """Close without waiting (what `aclose` does before its checkpoint)."""
        if self._closed:
            return
        self._closed = True
        unread = bool(self._chunks)
        self._chunks = None
        self._wake_receiver()
        self._wake_sender()
        self._session._close_stream(self, abort=unread)
