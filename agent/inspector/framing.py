"""Where each HTTP/1.1 message on one direction of a connection starts and ends: a cheap framer.

Theory of operation
-------------------
The inspector taps the bytes the agent already relays (`agent.inspector.tap`) and must not slow
them down, so this module does not parse HTTP: it finds message boundaries, which is all it
takes to split the exchanges of a keep-alive connection. It looks for the end of each head
(`CRLF CRLF`), reads just the three headers that frame a body (`Content-Length`,
`Transfer-Encoding`, `Upgrade`) and then skips the body by arithmetic, keeping at most
`body_limit` bytes of it (de-chunked). Headers are parsed properly, with h11, only when the API
asks (`agent.inspector.render`).

`feed(data)` returns what completed in `data`: `HeadEnded` (a message's head, as sent) and
`MessageEnded` (its kept body, the body's full size, whether it was cut). `feed(b"")` is EOF: a
response framed by the connection's end completes there. After a message that switches
protocols (a request carrying `Upgrade`, a `101` response, a `CONNECT`), or bytes that are not
HTTP/1.1 (a head over `head_limit`, a bad length), the framer turns `opaque` and ignores the
rest of the connection: what it captured so far stays, nothing after it is captured.

A response framer needs each request's method (a response to `HEAD` has no body): the caller
passes it in `feed(..., methods=...)`, a queue it fills as request heads end.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

__all__ = ["HeadEnded", "MessageEnded", "MessageFramer"]

#: A chunk-size line longer than this is not HTTP (a size is at most 16 hex digits plus a short
#: extension); the framer turns opaque rather than buffer it.
MAX_CHUNK_LINE = 4096
#: Trailer lines after the last chunk, added up, beyond which the framer gives up (h11's head
#: limit is 16 KiB; trailers are rare and short).
MAX_TRAILERS = 16 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadEnded:
    """A message's head, start line to the blank line, as it went by."""

    head: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEnded:
    """A message's body ended: `body` is its first bytes (de-chunked), `size` all of them."""

    body: bytes
    size: int
    truncated: bool


Event = HeadEnded | MessageEnded


class _State(enum.Enum):
    HEAD = "head"
    LENGTH = "length"  # a Content-Length body, `_remaining` bytes to go
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_CRLF = "chunk-crlf"
    TRAILERS = "trailers"
    UNTIL_EOF = "until-eof"  # a response without a length: the body ends with the connection
    OPAQUE = "opaque"


class MessageFramer:
    """The framer for one direction of one connection (requests, or responses)."""

    def __init__(self, *, is_response: bool, head_limit: int, body_limit: int) -> None:
        self._is_response = is_response
        self._head_limit = head_limit
        self._body_limit = body_limit
        self._state = _State.HEAD
        self._buffer = bytearray()  # head, chunk-size line or trailers being collected
        self._body = bytearray()
        self._size = 0
        self._remaining = 0
        self._switch_after = False  # the current message ends HTTP on this connection

    @property
    def opaque(self) -> bool:
        """True once the rest of the connection is not HTTP/1.1 the framer follows."""
        return self._state is _State.OPAQUE

    def feed(self, data: bytes | bytearray, methods: deque[str] | None = None) -> list[Event]:
        """The events that `data` completes; `b""` is EOF. Never raises: bytes the framer cannot
        follow turn it opaque. `methods` (responses only): the pending requests' methods, oldest
        first; one is taken per final response."""
        events: list[Event] = []
        if not data:
            if self._state is _State.UNTIL_EOF:
                self._end_message(events)
            self._state = _State.OPAQUE
            return events
        view = memoryview(data)
        at = 0
        end = len(view)
        while at < end and self._state is not _State.OPAQUE:
            state = self._state
            if state is _State.HEAD:
                at = self._take_head(data, at, events, methods)
            elif state is _State.LENGTH or state is _State.CHUNK_DATA:
                take = min(self._remaining, end - at)
                self._keep(view[at : at + take])
                self._remaining -= take
                at += take
                if self._remaining == 0:
                    if state is _State.LENGTH:
                        self._end_message(events)
                    else:
                        self._state = _State.CHUNK_CRLF
                        self._remaining = 2
            elif state is _State.CHUNK_CRLF:
                take = min(self._remaining, end - at)
                self._remaining -= take
                at += take
                if self._remaining == 0:
                    self._state = _State.CHUNK_SIZE
            elif state is _State.CHUNK_SIZE or state is _State.TRAILERS:
                at = self._take_line(view, at, events)
            else:  # UNTIL_EOF
                self._keep(view[at:])
                at = end
        return events

    # --- states ----------------------------------------------------------------------------

    def _take_head(
        self, data: bytes | bytearray, at: int, events: list[Event], methods: deque[str] | None
    ) -> int:
        """Collect a head; returns where in `data` its body starts (or `len(data)`)."""
        if not self._buffer:  # the usual case: the whole head is in this read
            found = data.find(b"\r\n\r\n", at, at + self._head_limit)
            if found >= 0:
                self._frame(bytes(data[at : found + 4]), events, methods)
                return found + 4
        start = max(0, len(self._buffer) - 3)  # the terminator may straddle two reads
        appended = min(len(data) - at, self._head_limit + 4)
        self._buffer += data[at : at + appended]
        found = self._buffer.find(b"\r\n\r\n", start)
        if found < 0 or found + 4 > self._head_limit:
            if found >= 0 or len(self._buffer) > self._head_limit:
                self._state = _State.OPAQUE
            return len(data)
        head_end = found + 4
        consumed = at + head_end - (len(self._buffer) - appended)
        head = bytes(self._buffer[:head_end])
        self._buffer.clear()
        self._frame(head, events, methods)
        return consumed

    def _frame(self, head: bytes, events: list[Event], methods: deque[str] | None) -> None:
        """Decide how the body after `head` is framed (RFC 9112 section 6.3)."""
        lines = head.split(b"\r\n")
        length: int | None = None
        chunked = upgrade = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = -1
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"upgrade":
                upgrade = True
        start = lines[0].split(b" ", 2)
        if self._is_response:
            try:
                status = int(start[1])
            except (IndexError, ValueError):
                self._state = _State.OPAQUE
                return
            if 100 <= status < 200 and status != 101:  # interim: no body, and not shown
                return
            method = methods.popleft() if methods else "GET"
            events.append(HeadEnded(head=head))
            self._switch_after = status == 101 or (method == "CONNECT" and 200 <= status < 300)
            if method == "HEAD" or status in (101, 204, 304) or self._switch_after:
                self._end_message(events)
                return
            if chunked:
                self._state = _State.CHUNK_SIZE
            elif length is not None:
                self._body_of(length, events)
            else:
                self._state = _State.UNTIL_EOF
            return
        events.append(HeadEnded(head=head))
        self._switch_after = upgrade or start[0] == b"CONNECT"
        if chunked:
            self._state = _State.CHUNK_SIZE
        else:
            self._body_of(length or 0, events)

    def _body_of(self, length: int, events: list[Event]) -> None:
        if length < 0:
            self._state = _State.OPAQUE
        elif length == 0:
            self._end_message(events)
        else:
            self._state = _State.LENGTH
            self._remaining = length

    def _take_line(self, view: memoryview, at: int, events: list[Event]) -> int:
        start = max(0, len(self._buffer) - 1)
        self._buffer += view[at:]
        found = self._buffer.find(b"\r\n", start)
        limit = MAX_CHUNK_LINE if self._state is _State.CHUNK_SIZE else MAX_TRAILERS
        if found < 0:
            if len(self._buffer) > limit:
                self._state = _State.OPAQUE
            return len(view)
        line = bytes(self._buffer[:found])
        del self._buffer[: found + 2]
        remaining_buffer = len(self._buffer)
        self._buffer.clear()
        consumed = len(view) - remaining_buffer
        if self._state is _State.TRAILERS:
            if not line:
                self._end_message(events)
            return consumed
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            self._state = _State.OPAQUE
            return consumed
        if size == 0:
            self._state = _State.TRAILERS
        else:
            self._state = _State.CHUNK_DATA
            self._remaining = size
        return consumed

    # --- helpers ---------------------------------------------------------------------------

    def _keep(self, chunk: memoryview) -> None:
        self._size += len(chunk)
        room = self._body_limit - len(self._body)
        if room > 0:
            self._body += chunk[:room]

    def _end_message(self, events: list[Event]) -> None:
        events.append(
            MessageEnded(
                body=bytes(self._body), size=self._size, truncated=self._size > len(self._body)
            )
        )
        self._body.clear()
        self._size = 0
        self._state = _State.OPAQUE if self._switch_after else _State.HEAD
        self._switch_after = False
