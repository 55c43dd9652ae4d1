"""The two encodings of RPC bodies and ProxyHeaders: JSON (ngrok's) and msgpack (Burrow's).

Both carry the same value, a map with ngrok's key names (`messages.to_wire`). ngrok's clients
speak JSON; Burrow's own agent speaks msgpack. The edge picks the codec for a whole session from
the first byte of the Auth body (`detect_codec`) and answers in kind.

* `encode` / `decode` turn one message into bytes and back.
* `MessageReader` finds values in a byte stream (an RPC stream carries one request or response
  with no length prefix, and the reader must not wait for FIN). It follows the decoder shape
  of the sans-IO core: `next_value()` returns a value, or None for "need more", or raises
  `RpcDecodeError`; a partial value consumes nothing.
* `encode_proxy_header` / `parse_proxy_header` frame the header that opens every proxy stream:
  an int64 little-endian length N, then N bytes of the encoded header, then raw bytes.

Every failure to parse, whatever the json or msgpack library raised underneath, surfaces as
`RpcDecodeError`.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from typing import NoReturn, TypeVar

import msgpack

from protocol.rpc.messages import Message, ProxyHeader, RpcDecodeError, from_wire, to_wire

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_PROXY_HEADER_SIZE",
    "PROXY_HEADER_LENGTH_SIZE",
    "Codec",
    "MessageReader",
    "RpcDecodeError",
    "decode",
    "decode_value",
    "detect_codec",
    "encode",
    "encode_proxy_header",
    "encode_value",
    "parse_proxy_header",
]

#: The largest RPC body accepted. Real ones are well under 64 KiB (a Bind carrying a large
#: traffic policy is the biggest); the bound caps what one stream can make us buffer.
MAX_MESSAGE_SIZE = 1 << 20
#: The largest ProxyHeader accepted. Real ones are about 200 bytes (ids, an address, a proto).
MAX_PROXY_HEADER_SIZE = 64 * 1024
#: The int64 little-endian length that precedes a ProxyHeader.
PROXY_HEADER_LENGTH_SIZE = 8

M = TypeVar("M", bound=Message)

_LENGTH = struct.Struct("<q")
_JSON_WHITESPACE = b" \t\r\n"
_MSGPACK_MAP_MARKERS = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
# Errors the json and msgpack libraries raise for bad input; all become RpcDecodeError.
_PARSE_ERRORS = (ValueError, TypeError, RecursionError, msgpack.UnpackException)


class Codec(enum.Enum):
    JSON = "json"
    MSGPACK = "msgpack"


def detect_codec(first_byte: int) -> Codec:
    """The codec of a body that starts with `first_byte`.

    `{` or JSON whitespace means JSON; a msgpack map marker (fixmap 0x80-0x8F, map16 0xDE,
    map32 0xDF) means msgpack. Anything else raises RpcDecodeError: every RPC body is a map.
    """
    if first_byte == 0x7B or first_byte in _JSON_WHITESPACE:
        return Codec.JSON
    if first_byte in _MSGPACK_MAP_MARKERS:
        return Codec.MSGPACK
    raise RpcDecodeError(f"0x{first_byte:02X} cannot start an RPC body (a JSON or msgpack map)")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"msgpack extension type {code} is not valid in an RPC body")


# Go and Rust reject NaN and Infinity, so we do too.
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def encode_value(value: dict[str, object], codec: Codec, *, newline: bool = True) -> bytes:
    """Encode one wire map. JSON is compact and, with `newline`, ends in "\\n" as Go's
    `json.Encoder` writes it; msgpack uses the bin type for bytes."""
    if codec is Codec.JSON:
        text = json.dumps(value, separators=(",", ":"))
        return (text + "\n").encode() if newline else text.encode()
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def decode_value(data: bytes | bytearray | memoryview, codec: Codec) -> dict[str, object]:
    """Decode exactly one wire map (JSON may have whitespace around it).

    Raises RpcDecodeError for malformed bytes, trailing bytes, or a value that is not a map.
    """
    try:
        if codec is Codec.JSON:
            value: object = _JSON_DECODER.decode(bytes(data).decode())
        else:
            value = msgpack.unpackb(data, raw=False, ext_hook=_reject_ext)
    except _PARSE_ERRORS as exc:
        raise RpcDecodeError(f"malformed {codec.value} RPC body: {exc}") from exc
    return _expect_map(value, codec)


def _expect_map(value: object, codec: Codec) -> dict[str, object]:
    if type(value) is not dict:
        raise RpcDecodeError(f"an RPC body must be a {codec.value} map, not {type(value).__name__}")
    return value


def encode(msg: Message, codec: Codec) -> bytes:
    """The bytes of one RPC body."""
    return encode_value(to_wire(msg), codec)


def decode(cls: type[M], data: bytes | bytearray | memoryview, codec: Codec) -> M:
    """Decode one RPC body as `cls`; raises RpcDecodeError (see `messages.from_wire`)."""
    return from_wire(cls, decode_value(data, codec))


# --- incremental reading ----------------------------------------------------------------

# Inside a JSON string only `"` and `\` matter; outside, braces and the opening quote.
_JSON_OUTSIDE = re.compile(rb'[{}"]')
_JSON_INSIDE = re.compile(rb'["\\]')


class MessageReader:
    """Finds wire maps in a byte stream: `feed` bytes, then call `next_value` until None.

    A value larger than `max_size` bytes, malformed bytes, or a top-level value that is not a
    map raise RpcDecodeError; after that the reader stays broken and raises again. The reader
    buffers what it is fed until `next_value` consumes it, so call `next_value` after each
    `feed`. `unconsumed()` gives the bytes after the last value returned (a partial value
    included), so a caller can hand them on once it has what it wanted.
    """

    def __init__(self, codec: Codec, *, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.codec = codec
        self.max_size = max_size
        self._buffer = bytearray()
        self._error: RpcDecodeError | None = None
        # JSON scanner state, relative to the start of `_buffer`: where to resume, brace depth,
        # and whether we stopped inside a string.
        self._scan_pos = 0
        self._depth = 0
        self._in_string = False
        # msgpack: a resumable Unpacker; `_fed` bytes of `_buffer` have been given to it, and
        # `_offset` is its tell() at the start of `_buffer`.
        self._unpacker = self._new_unpacker()
        self._fed = 0
        self._offset = 0

    def _new_unpacker(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(
            raw=False, ext_hook=_reject_ext, max_buffer_size=max(self.max_size + 1, 1024)
        )

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer more bytes. Never raises."""
        self._buffer += data

    def unconsumed(self) -> bytes:
        """The bytes after the last value returned, including any partial value."""
        return bytes(self._buffer)

    def next_value(self) -> dict[str, object] | None:
        """The next complete map, or None if more bytes are needed."""
        if self._error is not None:
            raise self._error
        try:
            if self.codec is Codec.JSON:
                return self._next_json()
            return self._next_msgpack()
        except RpcDecodeError as exc:
            self._error = exc
            raise

    def _fail(self, message: str, exc: BaseException | None = None) -> NoReturn:
        raise RpcDecodeError(f"malformed {self.codec.value} RPC stream: {message}") from exc

    def _too_large(self) -> NoReturn:
        raise RpcDecodeError(f"RPC body larger than the {self.max_size}-byte limit")

    def _next_json(self) -> dict[str, object] | None:
        buf = self._buffer
        # Skip whitespace between values in C (a Python loop here let a peer burn CPU), and
        # drop a run longer than max_size so that whitespace cannot grow the buffer unbounded.
        start = len(buf) - len(buf.lstrip(_JSON_WHITESPACE)) if buf[:1].isspace() else 0
        if start > self.max_size:
            del buf[:start]
            self._scan_pos = max(0, self._scan_pos - start)
            start = 0
        if start == len(buf):
            return None
        if buf[start] != 0x7B:
            self._fail(f"byte 0x{buf[start]:02X} cannot start a JSON object")
        end = self._scan_json(max(self._scan_pos, start))
        if end is None:
            if len(buf) - start > self.max_size:
                self._too_large()
            return None
        if end - start > self.max_size:
            self._too_large()
        try:
            value = _JSON_DECODER.decode(bytes(buf[start:end]).decode())
        except _PARSE_ERRORS as exc:
            self._fail(str(exc), exc)
        del buf[:end]
        self._scan_pos, self._depth, self._in_string = 0, 0, False
        return _expect_map(value, Codec.JSON)

    def _scan_json(self, pos: int) -> int | None:
        """The end (exclusive) of the object that starts the buffer, or None if incomplete.

        Counts braces outside strings, skipping escapes inside them, by regex jumps between the
        bytes that matter. Resumable: it saves its state when it runs out of bytes. Malformed
        JSON is left for the real decoder to reject once the braces balance.
        """
        buf = self._buffer
        depth, in_string = self._depth, self._in_string
        limit = len(buf)
        while True:
            pattern = _JSON_INSIDE if in_string else _JSON_OUTSIDE
            match = pattern.search(buf, pos)
            if match is None:
                pos = limit
                break
            pos = match.start()
            char = buf[pos]
            if char == 0x5C:  # backslash: skip the escaped byte, if we have it
                if pos + 1 >= limit:
                    break
                pos += 2
            elif char == 0x22:
                in_string = not in_string
                pos += 1
            elif char == 0x7B:
                depth += 1
                pos += 1
            else:  # "}"
                depth -= 1
                pos += 1
                if depth == 0:
                    return pos
        self._scan_pos, self._depth, self._in_string = pos, depth, in_string
        return None

    def _next_msgpack(self) -> dict[str, object] | None:
        buf = self._buffer
        if not buf:
            return None
        at_value_start = self._unpacker.tell() == self._offset
        if at_value_start and buf[0] not in _MSGPACK_MAP_MARKERS:
            self._fail(f"byte 0x{buf[0]:02X} cannot start a msgpack map")
        # Never hand the Unpacker more than max_size + 1 bytes of one value: enough to tell
        # that the value is too large, and a bound on its buffer.
        window = min(len(buf), self.max_size + 1)
        if window > self._fed:
            self._unpacker.feed(bytes(buf[self._fed : window]))
            self._fed = window
        try:
            value = self._unpacker.unpack()
        except msgpack.OutOfData:
            if self._fed > self.max_size:
                self._too_large()
            return None
        except _PARSE_ERRORS as exc:
            self._fail(str(exc), exc)
        size = self._unpacker.tell() - self._offset
        if size > self.max_size:
            self._too_large()
        del buf[:size]
        self._fed -= size
        self._offset += size
        return _expect_map(value, Codec.MSGPACK)


# --- proxy stream header ----------------------------------------------------------------


def encode_proxy_header(header: ProxyHeader, codec: Codec) -> bytes:
    """The int64 little-endian length and the encoded header that open a proxy stream.

    The JSON form has no trailing newline: N covers the object exactly. ngrok-rust reads N
    bytes and parses them with serde_json, which would also tolerate trailing whitespace.
    """
    body = encode_value(to_wire(header), codec, newline=False)
    return _LENGTH.pack(len(body)) + body


def parse_proxy_header(
    buf: bytes | bytearray | memoryview, codec: Codec, max_size: int = MAX_PROXY_HEADER_SIZE
) -> tuple[ProxyHeader, int] | None:
    """Parse the header at the start of `buf`: the header and how many bytes it took, or None
    if `buf` does not hold all of it yet (nothing is consumed then).

    Raises RpcDecodeError for a negative length, one over `max_size`, or a bad body.
    """
    if len(buf) < PROXY_HEADER_LENGTH_SIZE:
        return None
    (length,) = _LENGTH.unpack_from(buf)
    if length < 0 or length > max_size:
        raise RpcDecodeError(f"proxy header length {length} is outside 0..{max_size}")
    total = PROXY_HEADER_LENGTH_SIZE + length
    if len(buf) < total:
        return None
    body = bytes(buf[PROXY_HEADER_LENGTH_SIZE:total])
    return from_wire(ProxyHeader, decode_value(body, codec)), total
