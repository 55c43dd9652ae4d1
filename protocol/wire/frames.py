"""The muxado frame codec: an 8-byte header, then a payload (docs/spec.md, "Frames").

    byte 0..2   length    uint24, payload bytes after the header
    byte 3      type << 4 | flags
    byte 4..7   stream id uint32, top bit reserved (31-bit ids)

Builders return the bytes of one frame; `parse_header` reads one header. The session parses
frames inline for speed and uses these same constants, so this module is the single place that
knows the layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

HEADER_SIZE = 8
#: The largest payload the 24-bit length field can describe.
MAX_FRAME_LENGTH = 0xFFFFFF
#: Stream ids are 31 bits; the top bit of the field is reserved and ignored on receipt.
STREAM_ID_MASK = 0x7FFFFFFF
MAX_STREAM_ID = STREAM_ID_MASK
#: WNDINC increments are 31 bits as well.
MAX_WINDOW_INCREMENT = 0x7FFFFFFF

_HEADER = struct.Struct(">II")
_U32 = struct.Struct(">I")
_GOAWAY = struct.Struct(">III")


class FrameType(IntEnum):
    RST = 0x0
    DATA = 0x1
    WNDINC = 0x2
    GOAWAY = 0x3


class Flags(IntFlag):
    NONE = 0x0
    FIN = 0x1
    SYN = 0x2


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameHeader:
    length: int
    type: int  # a FrameType, or 0x4-0xF for types this version skips
    flags: int
    stream_id: int


def pack_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    return _HEADER.pack((length << 8) | (frame_type << 4) | flags, stream_id)


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> FrameHeader | None:
    """The header at `offset`, or None if fewer than 8 bytes are there. Consumes nothing."""
    if len(buf) - offset < HEADER_SIZE:
        return None
    word, stream_id = _HEADER.unpack_from(buf, offset)
    return FrameHeader(
        length=word >> 8,
        type=(word >> 4) & 0xF,
        flags=word & 0xF,
        stream_id=stream_id & STREAM_ID_MASK,
    )


def unpack_header(buf: bytes | bytearray | memoryview, offset: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) at `offset`; the caller has checked 8 bytes are there."""
    word, stream_id = _HEADER.unpack_from(buf, offset)
    return word >> 8, (word >> 4) & 0xF, word & 0xF, stream_id & STREAM_ID_MASK


def unpack_u32(buf: bytes | bytearray | memoryview, offset: int) -> int:
    value: int = _U32.unpack_from(buf, offset)[0]
    return value


def data_frame(stream_id: int, payload: bytes = b"", flags: int = 0) -> bytes:
    if len(payload) > MAX_FRAME_LENGTH:
        raise ValueError(f"DATA payload of {len(payload)} bytes exceeds {MAX_FRAME_LENGTH}")
    return pack_header(len(payload), FrameType.DATA, flags, stream_id) + payload


def rst_frame(stream_id: int, code: int) -> bytes:
    return pack_header(4, FrameType.RST, 0, stream_id) + _U32.pack(code)


def wndinc_frame(stream_id: int, increment: int) -> bytes:
    return pack_header(4, FrameType.WNDINC, 0, stream_id) + _U32.pack(increment)


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    length = 8 + len(debug)
    return _GOAWAY.pack((length << 8) | (FrameType.GOAWAY << 4), 0, last_stream_id) + (
        _U32.pack(code) + debug
    )
