"""The in-memory half of `protocol.adapters.tls.TLSStream`: what OpenSSL does without any I/O.

`TLSRecordLayer` is `TLSStream`'s base class. It holds the synchronous steps between the
`ssl.SSLObject` and its two `ssl.MemoryBIO`s: decrypting every complete record in the incoming
BIO into the plaintext buffer (`_drain_incoming`), handing that plaintext out
(`_take_plaintext`), encrypting into the outgoing BIO (`_encrypt`), the stream's state and the
errors it becomes (`_check_status`, `_fail`), and what the handshake agreed (ALPN, the peer's
certificate, version, cipher). Nothing here awaits, reads or writes the transport, or takes a
lock: that is `TLSStream`'s, which also creates every field declared below (in `__init__`).

Errors: a TLS error met while decrypting is kept in `_receive_error` for the receive loop to
raise once the data before it is returned; one met while encrypting breaks the stream at once.
"""

from __future__ import annotations

import ssl
from enum import Enum
from typing import Any, Literal, overload

import trio

__all__ = ["TLSRecordLayer", "TLSState"]

#: Largest plaintext in one TLS record (RFC 8446 5.1); OpenSSL may hold one partial record.
_MAX_RECORD_PLAINTEXT = 16 * 1024


class TLSState(Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class TLSRecordLayer:
    """`TLSStream`'s synchronous half (see the module docstring); not used on its own."""

    # Set by `TLSStream.__init__`.
    _ssl: ssl.SSLObject
    _incoming: ssl.MemoryBIO
    _outgoing: ssl.MemoryBIO
    _state: TLSState
    #: Decrypted bytes not yet returned: `_plaintext[_plaintext_pos:]`.
    _plaintext: bytearray
    _plaintext_pos: int
    _close_notify_received: bool
    _receive_error: BaseException | None

    # ---- information about the connection ---------------------------------------------

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The underlying `ssl.SSLObject`, for anything not forwarded below."""
        return self._ssl

    @property
    def server_side(self) -> bool:
        return self._ssl.server_side

    def selected_alpn_protocol(self) -> str | None:
        """The ALPN protocol agreed in the handshake, or None (also before the handshake)."""
        return self._ssl.selected_alpn_protocol()

    @overload
    def getpeercert(self, binary_form: Literal[False] = False) -> dict[str, Any] | None: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...
    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate as `ssl.SSLObject.getpeercert` returns it (None before the
        handshake, or when the peer sent none; an empty dict if it was not verified)."""
        if binary_form:
            return self._ssl.getpeercert(True)
        return self._ssl.getpeercert(False)

    def version(self) -> str | None:
        """The negotiated protocol, such as "TLSv1.3", or None before the handshake."""
        return self._ssl.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._ssl.cipher()

    # ---- error translation ------------------------------------------------------------

    def _check_status(self) -> None:
        if self._state is TLSState.CLOSED:
            raise trio.ClosedResourceError("this TLSStream was closed")
        if self._state is TLSState.BROKEN:
            raise trio.BrokenResourceError("this TLSStream is broken by an earlier error")

    def _fail(self, message: str) -> trio.BrokenResourceError | trio.ClosedResourceError:
        """Mark the stream broken and build the error to raise (`from` the cause).

        An error caused by our own `aclose` (the transport was closed under a blocked call)
        reads as `ClosedResourceError`, as trio's streams do.
        """
        if self._state is TLSState.CLOSED:
            return trio.ClosedResourceError("this TLSStream was closed")
        self._state = TLSState.BROKEN
        return trio.BrokenResourceError(message)

    # ---- records ----------------------------------------------------------------------

    def _drain_incoming(self) -> bool:
        """Decrypt every complete record in the incoming BIO into `_plaintext`.

        Returns True if that changed anything the receive loop must look at (new plaintext,
        `close_notify`, or an error), False if OpenSSL needs more ciphertext first.
        """
        ssl_object = self._ssl
        incoming = self._incoming
        capacity = incoming.pending + ssl_object.pending() + _MAX_RECORD_PLAINTEXT
        buffer = bytearray(capacity)
        view = memoryview(buffer)
        filled = 0
        changed = False
        try:
            while filled < capacity:
                target = view[filled:]
                try:
                    # With a buffer, read() returns a count; typeshed says bytes.
                    count: int = ssl_object.read(capacity - filled, target)  # type: ignore[assignment]
                finally:
                    # An SSLError keeps the call's arguments alive in its traceback; the
                    # buffer must have no exports left for the resize below.
                    target.release()
                if count == 0:
                    # close_notify: CPython returns 0 rather than raising SSLZeroReturnError
                    # unless we had already sent our own close_notify.
                    self._close_notify_received = True
                    changed = True
                    break
                filled += count
                if not incoming.pending and not ssl_object.pending():
                    break  # nothing left to decrypt: skip the read that would only fail
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self._close_notify_received = True
            changed = True
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._receive_error = exc
            changed = True
        finally:
            view.release()
        if filled:
            del buffer[filled:]
            self._plaintext = buffer
            self._plaintext_pos = 0
            changed = True
        return changed

    def _take_plaintext(self, max_bytes: int | None) -> bytearray:
        buffer = self._plaintext
        start = self._plaintext_pos
        available = len(buffer) - start
        if max_bytes is None or max_bytes >= available:
            self._plaintext = bytearray()
            self._plaintext_pos = 0
            return buffer if start == 0 else buffer[start:]
        end = start + max_bytes
        self._plaintext_pos = end
        return buffer[start:end]

    def _encrypt(self, chunk: memoryview) -> None:
        try:
            written = self._ssl.write(chunk)
        except ssl.SSLWantReadError as exc:
            raise self._fail("TLS renegotiation is not supported") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise self._fail(f"TLS error while sending: {exc}") from exc
        # Memory BIOs grow without bound, so OpenSSL takes the whole buffer in one call.
        if written != len(chunk):  # pragma: no cover
            raise self._fail(f"TLS short write ({written} of {len(chunk)} bytes)")
