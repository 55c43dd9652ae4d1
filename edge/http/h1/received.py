"""The bytes a sans-IO HTTP/1.1 parser holds: received, parsed up to a position.

Both of the edge's codecs (`edge/http/h1/client.py` for the public client's side,
`edge/http/h1/upstream.py` for the agent stream's) keep what they were given as `(buf, pos)`:
`buf[:pos]` is parsed, `buf[pos:]` is not. `append` adds a read to it without copying when
everything before was parsed (the usual case: one read, one message), and otherwise appends
to a bytearray, dropping the parsed prefix first, so holding a message that trickles in costs
amortised O(1) per byte, never a copy of everything held per read.
"""

from __future__ import annotations

__all__ = ["append"]


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
