"""Read a TLS ClientHello without consuming it, so the front door can route by SNI.

Theory of operation. The front door buffers a new connection's first bytes and calls
`parse_client_hello(buffer)` after each read. The parser walks the TLS record layer from offset 0,
checks each record header as soon as its bytes are there, and concatenates the records' payloads
(RFC 8446 5.1 lets a client fragment a handshake message across records) until the handshake
message declared by the first four payload bytes is complete. Then it decodes the ClientHello
body: version, random, session id, cipher suites, compression methods and extensions, of which it
interprets server_name (0), application_layer_protocol_negotiation (16) and supported_versions (43)
and skips the rest.

It returns `None` while more bytes are needed, a `ClientHello` once the hello is complete, or
raises `ClientHelloError` as soon as the bytes seen cannot begin a well-formed ClientHello. It keeps
no state and never consumes anything: the caller keeps buffering, calls again with the whole
buffer, and on success replays every buffered byte to whoever handles the connection (a
passthrough `tls://` stream or the edge's own TLS server). `ClientHello.record_bytes` says how many
leading bytes of the buffer the hello's records span. Every decision depends only on bytes already
seen, so once a prefix of a stream gives a result or an error, every longer prefix gives the same
one; a caller holding `MAX_HELLO_BYTES` bytes never gets `None`. Oversized length fields are
rejected as soon as they are readable, so a hostile client cannot make the edge buffer more than
`MAX_HELLO_BYTES` per connection.

Errors carry the TLS alert the edge should send (`Alert`, with `alert_record` for the wire bytes).
This module does no I/O, no logging and reads no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

from protocol.formats.hostnames import HostnameError, parse_hostname

__all__ = [
    "MAX_CLIENT_HELLO",
    "MAX_HELLO_BYTES",
    "MAX_HELLO_RECORDS",
    "MAX_RECORD_PAYLOAD",
    "Alert",
    "ClientHello",
    "ClientHelloError",
    "alert_record",
    "parse_client_hello",
]

# --------------------------------------------------------------------------------------- limits

# RFC 8446 5.1: a TLSPlaintext fragment is at most 2^14 bytes; a longer one is a record_overflow.
MAX_RECORD_PAYLOAD = 2**14
# Largest ClientHello body accepted. Real ones run ~0.3-0.6 KiB (curl, Python), ~1.8 KiB (browsers
# with an X25519MLKEM768 key share) and 4-8 KiB with many PSK identities or extensions; 16 KiB is
# twice the biggest, is exactly one record (so no honest client must fragment to stay under it)
# and caps what a silent connection can make the edge hold. Go's crypto/tls stops at 64 KiB.
MAX_CLIENT_HELLO = 16 * 1024
# Records one hello may span. Clients send one (two above 16 KiB); anti-censorship tools split at
# the SNI into a few; 64 admits tiny fragments and bounds the headers buffered to 320 bytes.
MAX_HELLO_RECORDS = 64
# TLS record header: content type (1), legacy_record_version (2), length (2).
_RECORD_HEADER = 5
# Handshake header: msg_type (1), length (3).
_HANDSHAKE_HEADER = 4
# The most bytes a hello's records can span (every record carries at least one byte and no record
# may carry bytes past the hello); a caller holding this many never gets `None` back.
MAX_HELLO_BYTES = MAX_HELLO_RECORDS * _RECORD_HEADER + _HANDSHAKE_HEADER + MAX_CLIENT_HELLO
# Smallest possible body: version (2), random (32), empty session id (1), one cipher suite (2+2),
# one compression method (1+1); a shorter declared length is rejected before it is buffered.
_MIN_CLIENT_HELLO = 41
# RFC 8446 4.1.2 / RFC 5246 7.4.1.2: legacy_session_id<0..32>.
_MAX_SESSION_ID = 32

_CONTENT_HANDSHAKE = 22
_HANDSHAKE_CLIENT_HELLO = 1
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_EXT_SUPPORTED_VERSIONS = 43
_NAME_TYPE_HOST_NAME = 0
_INTERPRETED = frozenset((_EXT_SERVER_NAME, _EXT_ALPN, _EXT_SUPPORTED_VERSIONS))
_TLS1_0 = 0x0301
_TLS1_3 = 0x0304


class Alert(StrEnum):
    """A fatal TLS alert (RFC 8446 6.2); the value is the RFC's name, `code` its wire byte."""

    HANDSHAKE_FAILURE = "handshake_failure"
    DECODE_ERROR = "decode_error"
    PROTOCOL_VERSION = "protocol_version"
    UNRECOGNIZED_NAME = "unrecognized_name"
    # The two below are the ones RFC 8446 5.1 makes mandatory for their cases (a record over
    # 2^14 bytes; a record or handshake message of the wrong type).
    RECORD_OVERFLOW = "record_overflow"
    UNEXPECTED_MESSAGE = "unexpected_message"

    @property
    def code(self) -> int:
        """The AlertDescription byte on the wire."""
        return _ALERT_CODES[self]


_ALERT_CODES = {
    Alert.UNEXPECTED_MESSAGE: 10,
    Alert.RECORD_OVERFLOW: 22,
    Alert.HANDSHAKE_FAILURE: 40,
    Alert.DECODE_ERROR: 50,
    Alert.PROTOCOL_VERSION: 70,
    Alert.UNRECOGNIZED_NAME: 112,
}


def alert_record(alert: Alert) -> bytes:
    """The plaintext record carrying `alert` as fatal, for the edge to send before it closes."""
    # legacy_record_version 0x0303, as RFC 8446 5.1 has every record after the ClientHello carry.
    return bytes((21, 3, 3, 0, 2, 2, alert.code))


class ClientHelloError(ValueError):
    """The bytes cannot begin a well-formed TLS ClientHello; `str()` is a short reason."""

    def __init__(self, reason: str, alert: Alert = Alert.DECODE_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert = alert


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientHello:
    """What the front door needs from a ClientHello to route and to log the connection."""

    # The host_name from server_name, lower-cased and checked as a DNS name; None if not sent.
    sni: str | None
    # ALPN protocol names in the client's order, decoded as Latin-1 so any octets round-trip.
    alpn: tuple[str, ...]
    # ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients).
    legacy_version: int
    # supported_versions in the client's order, GREASE values (RFC 8701) included; () if absent.
    supported_versions: tuple[int, ...]
    # Cipher suite code points in the client's order, GREASE included.
    cipher_suites: tuple[int, ...]
    # Extension types in the order sent, for logs and fingerprints.
    extensions: tuple[int, ...]
    # How many leading bytes of the parsed buffer the hello's records span.
    record_bytes: int

    @property
    def offers_tls13(self) -> bool:
        """Whether the client can speak TLS 1.3 (only supported_versions can offer it)."""
        return _TLS1_3 in self.supported_versions


def parse_client_hello(data: bytes | bytearray | memoryview) -> ClientHello | None:
    """Parse the ClientHello at the start of `data`, a connection's first bytes.

    Returns None when `data` is a valid beginning that needs more bytes (empty input included: a
    connection that reaches EOF while this is None closed before its hello). Raises
    `ClientHelloError` when it is not a TLS ClientHello, with the alert to send. Bytes after the
    hello's last record are not looked at. Nothing is consumed either way.
    """
    # Released on the way out, errors included: a view left in a kept exception's traceback
    # would stop the caller from growing its bytearray buffer.
    with memoryview(data) as raw, raw.cast("B") as view:
        return _parse_records(view)


def _parse_records(view: memoryview) -> ClientHello | None:
    # While the hello is incomplete only its handshake header is copied out, so a caller that
    # calls again after every small read pays per record, not per byte buffered.
    header = bytearray()
    spans: list[tuple[int, int]] = []  # each complete record's payload, joined once at the end
    gathered = 0  # payload bytes in the complete records
    offset = 0
    records = 0
    while True:
        available = len(view) - offset
        if available >= 1:
            _check_content_type(view[offset], first=records == 0)
        if available >= 2 and view[offset + 1] != 3:
            raise ClientHelloError(f"record version major {view[offset + 1]} is not TLS (3)")
        if available >= 3 and not 1 <= view[offset + 2] <= 4:
            raise ClientHelloError(
                f"record version 0x03{view[offset + 2]:02x} is not TLS 1.0-1.3",
                Alert.PROTOCOL_VERSION,
            )
        if available < _RECORD_HEADER:
            return None
        length = int.from_bytes(view[offset + 3 : offset + 5], "big")
        if length == 0:
            raise ClientHelloError("empty handshake record (RFC 8446 5.1)")
        if length > MAX_RECORD_PAYLOAD:
            raise ClientHelloError(
                f"record length {length} exceeds 2^14 (RFC 8446 5.1)", Alert.RECORD_OVERFLOW
            )
        start = offset + _RECORD_HEADER
        end = start + length
        if len(header) < _HANDSHAKE_HEADER:
            header += view[start : min(end, start + _HANDSHAKE_HEADER - len(header))]
        records += 1
        body_length = _check_handshake_header(header)
        if body_length is not None and gathered + length > _HANDSHAKE_HEADER + body_length:
            # Nothing may follow a ClientHello before the server answers, and RFC 8446 5.1 has
            # handshake messages end at a record boundary where the keys change after them.
            raise ClientHelloError(
                "handshake data after the ClientHello in its last record",
                Alert.UNEXPECTED_MESSAGE,
            )
        if len(view) < end:
            return None
        spans.append((start, end))
        gathered += length
        offset = end
        if body_length is not None and gathered == _HANDSHAKE_HEADER + body_length:
            message = b"".join(view[a:b] for a, b in spans)
            return _parse_body(message[_HANDSHAKE_HEADER:], record_bytes=offset)
        if records == MAX_HELLO_RECORDS:
            raise ClientHelloError(
                f"ClientHello fragmented over more than {MAX_HELLO_RECORDS} records",
                Alert.HANDSHAKE_FAILURE,
            )


def _check_content_type(content_type: int, *, first: bool) -> None:
    if content_type == _CONTENT_HANDSHAKE:
        return
    if first and content_type & 0x80:
        raise ClientHelloError("SSLv2-style ClientHello", Alert.PROTOCOL_VERSION)
    where = "first record" if first else "record inside the ClientHello"
    raise ClientHelloError(
        f"{where} has content type {content_type}, not handshake (22)", Alert.UNEXPECTED_MESSAGE
    )


def _check_handshake_header(header: bytearray) -> int | None:
    """Check the handshake header as far as it has arrived; its body length once readable."""
    if header and header[0] != _HANDSHAKE_CLIENT_HELLO:
        raise ClientHelloError(
            f"handshake message type {header[0]}, not ClientHello (1)", Alert.UNEXPECTED_MESSAGE
        )
    if len(header) < _HANDSHAKE_HEADER:
        return None
    length = int.from_bytes(header[1:_HANDSHAKE_HEADER], "big")
    if length > MAX_CLIENT_HELLO:
        raise ClientHelloError(
            f"ClientHello of {length} bytes exceeds the {MAX_CLIENT_HELLO}-byte limit",
            Alert.HANDSHAKE_FAILURE,
        )
    if length < _MIN_CLIENT_HELLO:
        raise ClientHelloError(f"ClientHello of {length} bytes is too short to be one")
    return length


class _Reader:
    """A cursor over a complete structure; reading past its end is a decode_error."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int, field: str) -> bytes:
        if n > self.remaining():
            raise ClientHelloError(
                f"{field} needs {n} bytes but {self._what} has {self.remaining()} left"
            )
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, length_size: int, field: str) -> _Reader:
        """A length-prefixed vector (RFC 8446 3.4) as its own reader."""
        return _Reader(self.take(self.uint(length_size, field), field), field)

    def rest(self) -> bytes:
        return self.take(self.remaining(), self._what)

    def expect_end(self) -> None:
        if self.remaining():
            raise ClientHelloError(f"{self.remaining()} stray bytes after {self._what}")


def _parse_body(body: bytes, *, record_bytes: int) -> ClientHello:
    reader = _Reader(body, "ClientHello")
    legacy_version = reader.uint(2, "legacy_version")
    if legacy_version >> 8 != 3 or legacy_version < _TLS1_0:
        raise ClientHelloError(
            f"legacy_version 0x{legacy_version:04x} is not TLS 1.0 or later", Alert.PROTOCOL_VERSION
        )
    reader.take(32, "random")
    session_id = reader.vector(1, "legacy_session_id")
    if session_id.remaining() > _MAX_SESSION_ID:
        raise ClientHelloError(f"session id of {session_id.remaining()} bytes (at most 32)")
    suites = reader.vector(2, "cipher_suites")
    if suites.remaining() < 2 or suites.remaining() % 2:
        raise ClientHelloError(f"cipher_suites of {suites.remaining()} bytes")
    cipher_suites = _uint16s(suites.rest())
    if not reader.vector(1, "compression_methods").remaining():
        raise ClientHelloError("no compression methods")

    sni: str | None = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    seen: list[int] = []
    seen_set: set[int] = set()  # a list alone is quadratic over ~4,000 empty extensions
    # Before TLS 1.2 a hello could end after compression_methods (RFC 5246 7.4.1.2).
    if reader.remaining():
        block = reader.vector(2, "extensions").rest()
        reader.expect_end()
        # Indexed by hand rather than through _Reader: a 16 KiB hello can hold ~4,000 extensions.
        pos, end = 0, len(block)
        while pos < end:
            if end - pos < 4:
                raise ClientHelloError(
                    f"extension header needs 4 bytes but extensions has {end - pos} left"
                )
            ext_type = block[pos] << 8 | block[pos + 1]
            length = block[pos + 2] << 8 | block[pos + 3]
            pos += 4
            if length > end - pos:
                raise ClientHelloError(
                    f"extension {ext_type} needs {length} bytes but extensions has {end - pos} left"
                )
            if ext_type in seen_set:
                raise ClientHelloError(f"extension {ext_type} sent twice (RFC 8446 4.2)")
            seen.append(ext_type)
            seen_set.add(ext_type)
            if ext_type in _INTERPRETED:
                ext = _Reader(block[pos : pos + length], f"extension {ext_type}")
                if ext_type == _EXT_SERVER_NAME:
                    sni = _parse_server_name(ext)
                elif ext_type == _EXT_ALPN:
                    alpn = _parse_alpn(ext)
                else:
                    supported_versions = _parse_supported_versions(ext)
            pos += length
    return ClientHello(
        sni=sni,
        alpn=alpn,
        legacy_version=legacy_version,
        supported_versions=supported_versions,
        cipher_suites=cipher_suites,
        extensions=tuple(seen),
        record_bytes=record_bytes,
    )


def _parse_server_name(ext: _Reader) -> str:
    names = ext.vector(2, "server_name_list")
    ext.expect_end()
    # RFC 6066 3 allows one name per type and host_name is the only type ever defined; like
    # OpenSSL, require exactly one host_name entry rather than guess at other types' layout.
    name_type = names.uint(1, "server name type")
    if name_type != _NAME_TYPE_HOST_NAME:
        raise ClientHelloError(f"server name type {name_type}, not host_name (0)")
    host = names.vector(2, "host_name")
    names.expect_end()
    if not host.remaining():
        raise ClientHelloError("empty host_name in server_name")
    return _host_name(host.take(host.remaining(), "host_name"))


def _host_name(raw: bytes) -> str:
    """The SNI host name, lower-cased, if it is a host name by Burrow's one rule.

    RFC 6066 3: ASCII (IDNs travel as A-labels), no trailing dot, never an IP literal; the rest
    is `protocol.formats.hostnames.parse_hostname`, the rule that decides which hosts can be
    bound and certified, so a name refused here is one no endpoint or certificate could have.
    """
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ClientHelloError(
            "server name is not ASCII (IDNs travel as A-labels)", Alert.UNRECOGNIZED_NAME
        ) from None
    try:
        return parse_hostname(name, trailing_dot=False)
    except HostnameError as exc:
        raise ClientHelloError(f"server name {exc}", Alert.UNRECOGNIZED_NAME) from None


def _parse_alpn(ext: _Reader) -> tuple[str, ...]:
    names = ext.vector(2, "protocol_name_list")
    ext.expect_end()
    data = names.rest()
    if not data:
        raise ClientHelloError("empty ALPN protocol list (RFC 7301 3.1)")
    protocols: list[str] = []
    pos = 0
    while pos < len(data):
        length = data[pos]
        pos += 1
        if not length:
            raise ClientHelloError("empty ALPN protocol name (RFC 7301 3.1)")
        if length > len(data) - pos:
            raise ClientHelloError(
                f"ALPN protocol name needs {length} bytes"
                f" but protocol_name_list has {len(data) - pos} left"
            )
        protocols.append(data[pos : pos + length].decode("latin-1"))
        pos += length
    return tuple(protocols)


def _parse_supported_versions(ext: _Reader) -> tuple[int, ...]:
    versions = ext.vector(1, "supported_versions")
    ext.expect_end()
    if versions.remaining() < 2 or versions.remaining() % 2:
        raise ClientHelloError(f"supported_versions of {versions.remaining()} bytes")
    offered = _uint16s(versions.rest())
    if not any(v >= _TLS1_0 and not _is_grease(v) for v in offered):
        raise ClientHelloError(
            "supported_versions offers nothing from TLS 1.0 on", Alert.PROTOCOL_VERSION
        )
    return offered


def _uint16s(data: bytes) -> tuple[int, ...]:
    """A vector of uint16 (its length already checked even)."""
    return struct.unpack(f">{len(data) // 2}H", data)


def _is_grease(value: int) -> bool:
    """RFC 8701's reserved values: 0x0a0a, 0x1a1a, ... 0xfafa."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF
