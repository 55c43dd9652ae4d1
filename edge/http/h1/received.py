"""The bytes a sans-IO HTTP/1.1 parser holds: received, parsed up to a position.

Both of the edge's codecs (`edge/http/h1/client.py` for the public client's side,
`edge/http/h1/upstream.py` for the agent stream's) keep what they were given as `(buf, pos)`:
`buf[:pos]` is parsed, `buf[pos:]` is not. `append` adds a read to it without copying when
everything before was parsed (the usual case: one read, one message), and otherwise appends
to a bytearray, dropping the parsed prefix first, so holding a message that trickles in costs
amortised O(1) per byte, never a copy of everything held per read. `Received` is what both
codecs build on: that buffer, the end of the stream, and taking parsed bytes off it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["NEED_DATA", "Received", "Sentinel", "append"]


class Sentinel:
    """A named marker a codec returns instead of a parsed thing (`NEED_DATA`, `END`, ...)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: What a codec's next_* returns when more bytes are needed before anything else can be said.
NEED_DATA: Final = Sentinel("NEED_DATA")


def append(
    buf: bytes | bytearray, pos: int, data: bytes | bytearray
) -> tuple[bytes | bytearray, int]:
    """`(buf, pos)` with `data` (not empty) added after what is held: the new buffer and the
    position of its first unparsed byte."""
    if pos >= len(buf):  # all parsed: hold the new bytes as they are (no copy)
        return (data if type(data) is bytes else bytes(data)), 0
    if type(buf) is bytearray:  # appending is amortised O(1), as is dropping a prefix
        if pos:
            del buf[:pos]
        buf += data
        return buf, 0
    grown = bytearray(buf)
    del grown[:pos]
    grown += data
    return grown, 0


class Received:
    """What a codec was given and has not parsed yet; codecs subclass it. `_scanned` counts the
    unparsed bytes already searched for the end the codec awaits (a line end, an empty line),
    so a search resumes instead of starting over; `_max_head` bounds heads, chunk-size lines
    and trailer sections."""

    __slots__ = ("_buf", "_eof", "_max_head", "_pos", "_scanned")

    def __init__(self, max_head: int) -> None:
        self._max_head = max_head
        self._buf: bytes | bytearray = b""  # received; parsed up to _pos
        self._pos = 0
        self._scanned = 0
        self._eof = False

    def receive_data(self, data: bytes | bytearray) -> None:
        """Bytes from the peer; `b""` is its end."""
        if not data:
            self._eof = True
            return
        self._buf, self._pos = append(self._buf, self._pos, data)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received and not parsed (the next message, or after a 101 the upgraded
        protocol's first bytes), and whether EOF came."""
        rest = self._buf[self._pos :]
        return (rest if type(rest) is bytes else bytes(rest)), self._eof

    def _advance(self, to: int) -> None:
        """Mark the bytes before `to` parsed (a new search for an end starts there)."""
        if to >= len(self._buf):
            self._buf = b""
            self._pos = 0
        else:
            self._pos = to
        self._scanned = 0

    def _take(self, count: int) -> bytes:
        """The next `count` unparsed bytes (the received object itself if that is all)."""
        buf, pos = self._buf, self._pos
        if pos == 0 and count == len(buf) and type(buf) is bytes:
            data = buf
        else:
            data = bytes(buf[pos : pos + count])
        self._advance(pos + count)
        return data
