"""The bytes a sans-IO HTTP/1.1 parser holds: received, parsed up to a position.

Both of the edge's codecs (`edge/http/h1/client.py` for the public client's side,
`edge/http/h1/upstream.py` for the agent stream's) keep what they were given as `(buf, pos)`:
`buf[:pos]` is parsed, `buf[pos:]` is not. `append` adds a read to it without copying when
everything before was parsed (the usual case: one read, one message), and otherwise appends
to a bytearray, dropping the parsed prefix first, so holding a message that trickles in costs
amortised O(1) per byte, never a copy of everything held per read.
"""

from __future__ import annotations

from typing import Final

__all__ = ["NEED_DATA", "Sentinel", "append"]


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
