"""TLS over any trio stream, decrypting every ready record per wakeup.

Theory of operation
-------------------
`TLSStream` drives an `ssl.SSLObject` through two `ssl.MemoryBIO`s: ciphertext read from the
transport goes into `_incoming`, and whatever OpenSSL wants on the wire collects in
`_outgoing`. It exists because `trio.SSLStream.receive_some` returns one 16 KiB record per
call at about 17 us each, which caps one connection near 0.9 GB/s with the receiver at 100%
CPU (docs: reference/performance.md, "What this means for the trio tunnel"). Here one
transport read of up to `max_receive_chunk` bytes is followed by `SSLObject.read` in a loop
until OpenSSL wants more input, so one `receive_some` returns every record that arrived.
The synchronous steps against the BIOs (decrypting, encrypting, the plaintext buffer, the
stream's state and what the handshake agreed) are in its base class,
`protocol.adapters.tls_records.TLSRecordLayer`; this module holds the I/O around them.

What this class does not do, and why it can stay simple:

* No renegotiation. Post-handshake, `read` only consumes `_incoming` and `write` only fills
  `_outgoing`; if `write` ever asks for input (a TLS 1.2 renegotiation), the stream breaks.
  TLS 1.3 post-handshake messages (session tickets, KeyUpdate) are handled: `read` consumes
  them and raises `SSLWantReadError` with no data, which the drain loop treats as "done".
  A KeyUpdate reply OpenSSL queues while reading is sent by the next `send_all`, or by the
  receiver itself when no send is in progress.
* No half-close (TLS has none), so this is a plain `trio.abc.Stream` without `send_eof`.
* No `unwrap`.

Ordering rule for the outgoing BIO: bytes are taken out of `_outgoing` only while holding
`_send_lock`, and sent before releasing it. Since the BIO is FIFO and taking+sending is
atomic under the lock, ciphertext reaches the wire in the order OpenSSL produced it. Tasks
that only *might* have something to flush (the receiver, `aclose`) never wait for the lock:
if it is held, the holder's next send carries the bytes.

TLS 1.3 server quirk (as trio does, openssl/openssl#7948): when the server's handshake
finishes, OpenSSL has already queued session tickets. Sending them right away can deadlock
on an unbuffered transport, because the client's handshake is done and it is not reading.
So the server holds them back and prepends them to its first `send_all`.

EOF: a `close_notify` makes `receive_some` return b"". A transport EOF without one is a
`trio.BrokenResourceError` (a truncation attack looks exactly like that), unless
`https_compatible=True`, which accepts it as EOF and also skips sending `close_notify` in
`aclose`, matching `trio.SSLStream`. Ragged EOF is detected here, not by OpenSSL, so
`ssl.OP_IGNORE_UNEXPECTED_EOF` on the context does not change the behaviour.

Cancellation: after the handshake, cancelling `receive_some` loses nothing (decrypted bytes
stay buffered for the next call). Cancelling the handshake, or `send_all` once it has
started writing to the transport, breaks the stream, as with `trio.SSLStream`.
"""

from __future__ import annotations

import operator
import os
import ssl
from typing import Generic, TypeVar

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from protocol.adapters.conflict import ConflictDetector
from protocol.adapters.tls_records import TLSRecordLayer, TLSState

__all__ = [
    "DEFAULT_MAX_RECEIVE_CHUNK",
    "DEFAULT_MAX_SEND_CHUNK",
    "TLSStream",
]

#: One transport read per `receive_some`; 256 KiB was the measured sweet spot (16 records per
#: wakeup, 1.26-1.35 GB/s) and bounds the plaintext kept over between calls to about this much.
DEFAULT_MAX_RECEIVE_CHUNK = 256 * 1024
#: Plaintext encrypted per transport write. Any `send_all` up to this size is one transport
#: `send_all`; larger ones go out in slices so the ciphertext held at once stays bounded.
#: Writes of 64 KiB or more are what matters for throughput (728 MB/s at 16 KiB, 1,080 at 64).
DEFAULT_MAX_SEND_CHUNK = 1024 * 1024

T_Stream = TypeVar("T_Stream", bound=trio.abc.Stream)


class TLSStream(TLSRecordLayer, trio.abc.Stream, Generic[T_Stream]):
    """TLS 1.2/1.3 over `transport_stream`, client or server side.

    Args:
      transport_stream: carries the ciphertext; normally a `trio.SocketStream`. Closed by
        `aclose`.
      ssl_context: used as is; set ALPN, versions and certificates on it beforehand.
      server_side: act as the TLS server.
      server_hostname: SNI and the name checked against the server's certificate
        (required by a client context with `check_hostname`).
      max_receive_chunk: bytes asked of the transport per read.
      max_send_chunk: plaintext bytes encrypted per transport write.
      https_compatible: accept a transport EOF without `close_notify` as EOF, and do not
        send `close_notify` on close. Default False: a missing `close_notify` is an error.
      initial_data: ciphertext already read from the transport (the edge's front door reads
        the ClientHello to route by SNI, then hands those bytes back here).

    The handshake runs on first use, or explicitly with `do_handshake`. All failures of TLS
    or of the transport surface as `trio.BrokenResourceError` (the cause is chained), and the
    stream stays broken; use after `aclose` raises `trio.ClosedResourceError`.
    """

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        max_receive_chunk: int = DEFAULT_MAX_RECEIVE_CHUNK,
        max_send_chunk: int = DEFAULT_MAX_SEND_CHUNK,
        https_compatible: bool = False,
        initial_data: bytes | bytearray = b"",
    ) -> None:
        if max_receive_chunk < 1 or max_send_chunk < 1:
            raise ValueError("max_receive_chunk and max_send_chunk must be >= 1")
        self.transport_stream: T_Stream = transport_stream
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        if initial_data:
            self._incoming.write(initial_data)
        self._ssl = ssl_context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._max_receive_chunk = max_receive_chunk
        self._max_send_chunk = max_send_chunk
        self._https_compatible = https_compatible

        self._state = TLSState.OK
        self._handshake_done = False
        self._handshake_lock = trio.Lock()
        # Held while taking bytes out of `_outgoing` and putting them on the transport.
        self._send_lock = trio.Lock()
        # TLS 1.3 server: session tickets queued at the end of the handshake (module doc).
        self._delayed_outgoing = b""
        # Ciphertext `send_now` could not write at once; goes out before anything else.
        self._unsent = b""
        # The transport's socket when it is a plain `trio.SocketStream`: read and written
        # directly, without trio's per-call wrapping (the stream still owns and closes it).
        # Whether the last `_receive_transport` reached a schedule point (it waited).
        self._transport_yielded = False
        # Whether the last socket read came back short (see `_receive_transport`).
        self._socket_drained = False
        self._socket: trio.socket.SocketType | None = None
        if isinstance(transport_stream, trio.SocketStream) and (
            type(transport_stream) is trio.SocketStream
        ):
            self._socket = transport_stream.socket

        # Decrypted bytes not yet returned: `_plaintext[_plaintext_pos:]`. At most one
        # transport read's worth plus one record, because the transport is read only when
        # this is empty and every complete record has been decrypted.
        self._plaintext = bytearray()
        self._plaintext_pos = 0
        self._close_notify_received = False
        self._transport_eof = False
        # A fatal TLS error met while draining, raised once the data before it is returned.
        self._receive_error: BaseException | None = None

        self._send_conflict = ConflictDetector(
            "another task is currently sending data on this TLSStream"
        )
        self._receive_conflict = ConflictDetector(
            "another task is currently receiving data on this TLSStream"
        )

    # ---- transport I/O ----------------------------------------------------------------

    async def _send_outgoing_locked(self) -> None:
        """Send everything in the outgoing BIO. Caller holds `_send_lock`."""
        data = self._outgoing.read()
        if self._delayed_outgoing:
            data = self._delayed_outgoing + data
            self._delayed_outgoing = b""
        if self._unsent:  # what send_now could not write goes first
            data = self._unsent + data
            self._unsent = b""
        if not data:
            return
        try:
            sock = self._socket
            if sock is not None:
                # Straight to the socket: trio's `SocketStream.send_all` costs a dozen Python
                # calls per write around the same syscall. The schedule point it would end
                # with is kept; the rest, if the socket is full, goes through it.
                written = _write_nowait(sock, data)
                if written == len(data):
                    await cancel_shielded_checkpoint()
                    return
                await self.transport_stream.send_all(memoryview(data)[written:])
                return
            await self.transport_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise self._fail(f"TLS transport failed while sending: {exc!r}") from exc
        except BaseException:
            # Cancelled (or anything else) part-way: an unknown prefix of a record went out.
            if self._state is TLSState.OK:
                self._state = TLSState.BROKEN
            raise

    async def _receive_transport(self) -> bytes | bytearray:
        """One read of the transport. Over a plain socket it is read directly (trio's
        `SocketStream.receive_some` wraps the same syscall in a dozen Python calls) and this
        is no checkpoint unless it had to wait; `receive_some` adds the schedule point.

        After a read that filled less than it asked for, the socket is most likely drained:
        the next one waits for readability first rather than meeting EAGAIN (one syscall
        fewer per message on request/response traffic); after a full read it reads at once,
        so bulk transfers pay no extra scheduler pass. Cancelled while waiting, it loses
        nothing."""
        try:
            sock = self._socket
            if sock is None:
                self._transport_yielded = True
                return await self.transport_stream.receive_some(self._max_receive_chunk)
            self._transport_yielded = False
            if self._socket_drained:
                await trio.lowlevel.wait_readable(sock)
                self._transport_yielded = True
            fd = sock.fileno()
            while True:
                try:
                    data = os.read(fd, self._max_receive_chunk)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    self._transport_yielded = True
                    continue
                self._socket_drained = len(data) < self._max_receive_chunk
                return data
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise self._fail(f"TLS transport failed while receiving: {exc!r}") from exc

    # ---- handshake --------------------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the TLS handshake if it has not run yet; return once it is complete.

        `send_all` and `receive_some` call this themselves. Concurrent callers wait for one
        handshake. Raises `trio.BrokenResourceError` if it fails (bad certificate, protocol
        error, transport EOF); cancelling it breaks the stream.
        """
        self._check_status()
        if self._handshake_done:
            await checkpoint()
            return
        await self._ensure_handshake()

    async def _ensure_handshake(self) -> None:
        async with self._handshake_lock:
            self._check_status()
            if self._handshake_done:
                return
            try:
                await self._handshake()
            except BaseException:
                if self._state is TLSState.OK:
                    self._state = TLSState.BROKEN
                raise

    async def _handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            except (ssl.SSLError, ssl.CertificateError) as exc:
                await self._send_alert_best_effort()
                raise self._fail(f"TLS handshake failed: {exc}") from exc
            else:
                done = True
            if done and self._ssl.server_side and self._ssl.version() == "TLSv1.3":
                # Only session tickets are left to send; hold them back (module doc).
                self._delayed_outgoing = self._outgoing.read()
            elif self._outgoing.pending:
                async with self._send_lock:
                    await self._send_outgoing_locked()
            if done:
                self._handshake_done = True
                return
            data = await self._receive_transport()
            if not data:
                self._transport_eof = True
                raise self._fail("TLS handshake failed: the peer closed the connection")
            self._incoming.write(data)

    async def _send_alert_best_effort(self) -> None:
        """Tell the peer why the handshake failed (OpenSSL queued an alert), if we can."""
        if not self._outgoing.pending or self._send_lock.locked():
            return
        try:
            async with self._send_lock:
                await self.transport_stream.send_all(self._outgoing.read())
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    # ---- receiving --------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Return decrypted bytes: everything ready, or at most `max_bytes` of it.

        At most one transport read per call; every complete record it brought is decrypted,
        and what does not fit in `max_bytes` is kept for the next call. Returns b"" at EOF
        (the peer's `close_notify`; or a bare transport EOF when `https_compatible`). Raises
        `trio.BrokenResourceError` for TLS errors, garbage, or a transport EOF without
        `close_notify`; `trio.ClosedResourceError` after `aclose`; `trio.BusyResourceError`
        if another task is receiving. Cancellation after the handshake loses no data.
        """
        with self._receive_conflict:
            if max_bytes is not None:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            self._check_status()
            await checkpoint_if_cancelled()
            yielded = False
            if not self._handshake_done:
                await self._ensure_handshake()
                yielded = True
            while True:
                if self._plaintext_pos < len(self._plaintext):
                    if not yielded:
                        await cancel_shielded_checkpoint()
                    return self._take_plaintext(max_bytes)
                if self._receive_error is not None:
                    exc = self._receive_error
                    raise self._fail(f"TLS error while receiving: {exc}") from exc
                if self._close_notify_received:
                    if not yielded:
                        await cancel_shielded_checkpoint()
                    return b""
                # Only new ciphertext can make progress: OpenSSL reads records from the BIO
                # exactly (no read-ahead), and every drain reads until it wants more.
                if (self._incoming.pending or self._ssl.pending()) and self._drain_incoming():
                    if self._outgoing.pending and not self._send_lock.locked():
                        async with self._send_lock:
                            await self._send_outgoing_locked()
                        yielded = True
                    continue
                if self._transport_eof:
                    # Everything complete is decrypted; whatever is left is a partial record.
                    if self._https_compatible:
                        self._close_notify_received = True
                        continue
                    raise self._fail(
                        "the peer closed the connection without a TLS close_notify"
                        " (truncated stream)"
                    )
                data = await self._receive_transport()
                yielded = yielded or self._transport_yielded
                if data:
                    self._incoming.write(data)
                else:
                    self._transport_eof = True

    # ---- sending ----------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt `data` and send it; one transport `send_all` per `max_send_chunk` bytes.

        Raises `trio.BrokenResourceError` if TLS or the transport fails,
        `trio.ClosedResourceError` after `aclose`, `trio.BusyResourceError` if another task
        is sending. Cancelling it once it is writing to the transport breaks the stream.
        """
        with self._send_conflict:
            self._check_status()
            await checkpoint_if_cancelled()
            if not self._handshake_done:
                await self._ensure_handshake()
            with memoryview(data) as raw, raw.cast("B") as view:
                total = len(view)
                if total == 0:
                    await cancel_shielded_checkpoint()
                    return
                step = self._max_send_chunk
                lock = self._send_lock
                for start in range(0, total, step):
                    # An uncontended lock is taken without `Lock.acquire`'s extra yield: the
                    # transport write below is this call's checkpoint, and one scheduler
                    # round trip fewer per write is a measurable share of a small request.
                    if lock.locked():
                        await lock.acquire()
                    else:
                        lock.acquire_nowait()
                    try:
                        self._check_status()
                        self._encrypt(view[start : start + step])
                        await self._send_outgoing_locked()
                    finally:
                        lock.release()

    # ---- sending without waiting (for the mux's own writes) ----------------------------

    def can_send_now(self) -> bool:
        """Whether `send_now` may be called: the handshake is done, nothing is being sent or
        waits to be, and the transport is a plain `trio.SocketStream` (whose socket can be
        written without an await)."""
        return (
            self._handshake_done
            and self._state is TLSState.OK
            and not self._send_lock.locked()
            and not self._unsent
            and self._socket is not None
        )

    def send_now(self, data: bytes | bytearray | memoryview) -> bool:
        """Encrypt `data` and write the ciphertext to the socket without waiting; True if the
        socket took all of it. Otherwise the rest is kept, and `flush` must be awaited before
        anything else is sent (`send_all` sends it first too). Only after `can_send_now`.

        This is no checkpoint, unlike `send_all`: it is for a caller that has just yielded
        anyway (the mux's writes), and saves the schedule point trio's socket `send_all` ends
        with, one pass of the scheduler per message. Raises `trio.BrokenResourceError` if TLS
        or the socket fails (the stream is then broken)."""
        with self._send_conflict:
            self._check_status()
            with memoryview(data) as raw, raw.cast("B") as view:
                for start in range(0, len(view), self._max_send_chunk):
                    self._encrypt(view[start : start + self._max_send_chunk])
            ciphertext = self._outgoing.read()
            if self._delayed_outgoing:
                ciphertext = self._delayed_outgoing + ciphertext
                self._delayed_outgoing = b""
            if not ciphertext:
                return True
            assert self._socket is not None  # can_send_now checked it
            try:
                written = _write_nowait(self._socket, ciphertext)
            except OSError as exc:
                raise self._fail(f"TLS transport failed while sending: {exc!r}") from exc
            if written < len(ciphertext):
                self._unsent = ciphertext[written:]
                return False
            return True

    async def flush(self) -> None:
        """Send the ciphertext `send_now` left (and anything queued since); a checkpoint.
        Cancelling it part-way breaks the stream, as with `send_all`."""
        with self._send_conflict:
            self._check_status()
            async with self._send_lock:
                await self._send_outgoing_locked()

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport can take more data (see `trio.abc.SendStream`)."""
        with self._send_conflict:
            self._check_status()
            async with self._send_lock:
                try:
                    await self.transport_stream.wait_send_all_might_not_block()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    raise self._fail(f"TLS transport failed: {exc!r}") from exc

    # ---- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Send `close_notify` (best effort) and close the transport. Idempotent.

        Skips `close_notify` if the stream is broken, the handshake never finished, another
        task is in the middle of sending, or `https_compatible` is set. Sending it can block
        if the peer stops reading; bound it with `trio.move_on_after` if that matters. If
        cancelled, the transport is still closed (forcefully). Tasks blocked in other calls
        on this stream get `trio.ClosedResourceError`.
        """
        if self._state is TLSState.CLOSED:
            await checkpoint()
            return
        send_close_notify = (
            self._state is TLSState.OK
            and self._handshake_done
            and not self._https_compatible
            and not self._send_lock.locked()
        )
        self._state = TLSState.CLOSED
        if not send_close_notify:
            await self.transport_stream.aclose()
            return
        try:
            try:
                self._ssl.unwrap()
            except ssl.SSLWantReadError:
                pass  # close_notify queued; we do not wait for the peer's reply
            except (ssl.SSLError, ssl.CertificateError):
                pass
            self._delayed_outgoing = b""  # tickets are of no use to a closing peer
            data = self._unsent + self._outgoing.read()  # send_now's rest goes first
            self._unsent = b""
            if data:
                async with self._send_lock:
                    await self.transport_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.transport_stream.aclose()
        except BaseException:
            await trio.aclose_forcefully(self.transport_stream)
            raise
        else:
            await self.transport_stream.aclose()


def _write_nowait(sock: trio.socket.SocketType, data: bytes | bytearray | memoryview) -> int:
    """Write what a non-blocking socket takes at once; 0 if its buffer is full. Raises OSError
    for a broken socket (EPIPE: Python ignores SIGPIPE)."""
    try:
        return os.write(sock.fileno(), data)
    except BlockingIOError:
        return 0
