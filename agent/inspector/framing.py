"""Where each HTTP/1.1 message on one direction of a connection starts and ends: a cheap framer.

Theory of operation
-------------------
The inspector taps the bytes the agent already relays (`agent.inspector.tap`) and must not slow
them down, so this module does not parse HTTP: it finds message boundaries, which is all it
takes to split the exchanges of a keep-alive connection. It looks for the end of each head
(`CRLF CRLF`, one `bytes.find` on the read as it came), reads just the three headers that frame a
body (`Content-Length`, `Transfer-Encoding`, `Upgrade`: a few `find`s on the lowercased head,
with a line-by-line parse only when a name appears more than once or oddly placed) and then
skips the body by arithmetic, keeping at most `body_limit` bytes of it (de-chunked; one slice
when the whole body came in the read). Headers are parsed properly, with h11, only when the API
asks (`agent.inspector.render`).

Each completed piece is an event: `HeadEnded` (a message's head, as sent) and `MessageEnded`
(its kept body, the body's full size, whether it was cut). Given `on_head` and `on_end`, the
framer calls them as the pieces complete (the capture's hot path: no event objects); without
them, `feed` returns the events. `feed(b"")` is EOF: a response framed by the connection's end
completes there. After a message that switches protocols (a request carrying `Upgrade`, a `101`
response, a `CONNECT`), or bytes that are not HTTP/1.1 (a head over `head_limit`, a bad length,
a chunk line over its limit), the framer turns `opaque` and ignores the rest of the connection:
what it captured so far stays, nothing after it is captured. `stop()` (from inside `on_head`,
say) turns it opaque at once.

A response framer needs each request's method (a response to `HEAD` has no body): the caller
passes it in `feed(..., methods=...)`, a queue it fills as request heads end.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["EndSink", "HeadEnded", "HeadSink", "MessageEnded", "MessageFramer"]

#: A chunk-size line longer than this is not HTTP (a size is at most 16 hex digits plus a short
#: extension); the framer turns opaque rather than buffer it.
MAX_CHUNK_LINE = 4096
#: A trailer line after the last chunk longer than this turns the framer opaque (h11's head
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
#: Called with each message's head as it ends.
HeadSink = Callable[[bytes], None]
#: Called as each message's body ends: (kept body, full body size, whether it was cut).
EndSink = Callable[[bytes, int, bool], None]


class _State(enum.Enum):
    HEAD = "head"
    LENGTH = "length"  # a Content-Length body, `_remaining` bytes to go
    CHUNK_SIZE = "chunk-size"
    CHUNK_DATA = "chunk-data"
    CHUNK_CRLF = "chunk-crlf"
    TRAILERS = "trailers"
    UNTIL_EOF = "until-eof"  # a response without a length: the body ends with the connection
    OPAQUE = "opaque"


_HEAD = _State.HEAD
_LENGTH = _State.LENGTH
_CHUNK_DATA = _State.CHUNK_DATA
_OPAQUE = _State.OPAQUE


class MessageFramer:
    """The framer for one direction of one connection (requests, or responses)."""

    def __init__(
        self,
        *,
        is_response: bool,
        head_limit: int,
        body_limit: int,
        on_head: HeadSink | None = None,
        on_end: EndSink | None = None,
    ) -> None:
        self._is_response = is_response
        self._head_limit = head_limit
        self._body_limit = body_limit
        self._events: list[Event] = []
        if on_head is None or on_end is None:
            on_head, on_end = self._collect_head, self._collect_end
        self._on_head = on_head
        self._on_end = on_end
        self._state = _HEAD
        self._buffer = bytearray()  # head, chunk-size line or trailer line being collected
        self._body = bytearray()
        self._size = 0
        self._remaining = 0
        self._switch_after = False  # the current message ends HTTP on this connection

    @property
    def opaque(self) -> bool:
        """True once the rest of the connection is not HTTP/1.1 the framer follows."""
        return self._state is _OPAQUE

    def stop(self) -> None:
        """Follow no more of this connection (turn opaque now)."""
        self._state = _OPAQUE

    def feed(self, data: bytes | bytearray, methods: deque[str] | None = None) -> list[Event]:
        """Frame `data`; `b""` is EOF. Returns the events it completed, unless `on_head` and
        `on_end` were given (they got them; `[]`). Never raises (unless a sink does): bytes the
        framer cannot follow turn it opaque. `methods` (responses only): the pending requests'
        methods, oldest first; one is taken per final response."""
        if not data:
            if self._state is _State.UNTIL_EOF:
                self._end_message()
            self._state = _OPAQUE
        else:
            self._advance(data, methods)
        if not self._events:
            return []
        events, self._events = self._events, []
        return events

    # --- states ----------------------------------------------------------------------------

    def _advance(self, data: bytes | bytearray, methods: deque[str] | None) -> None:
        at = 0
        end = len(data)
        while at < end:
            state = self._state
            if state is _HEAD:
                if not self._buffer:  # the usual case: the whole head is in this read
                    found = data.find(b"\r\n\r\n", at, at + self._head_limit)
                    if found >= 0:
                        head_end = found + 4
                        self._frame(bytes(data[at:head_end]), methods)
                        at = head_end
                        continue
                at = self._take_head(data, at, methods)
            elif state is _LENGTH or state is _CHUNK_DATA:
                remaining = self._remaining
                if remaining <= end - at:  # the body (or chunk) ends in this read
                    if state is _LENGTH and not self._size and remaining <= self._body_limit:
                        # The whole body is in this read: one slice, nothing buffered.
                        self._remaining = 0
                        self._finish(bytes(data[at : at + remaining]), remaining, False)
                        at += remaining
                        continue
                    self._keep(data, at, remaining)
                    at += remaining
                    self._remaining = 0
                    if state is _LENGTH:
                        self._end_message()
                    else:
                        self._state = _State.CHUNK_CRLF
                        self._remaining = 2
                else:
                    self._keep(data, at, end - at)
                    self._remaining = remaining - (end - at)
                    at = end
            elif state is _State.CHUNK_CRLF:
                take = min(self._remaining, end - at)
                self._remaining -= take
                at += take
                if self._remaining == 0:
                    self._state = _State.CHUNK_SIZE
            elif state is _State.CHUNK_SIZE or state is _State.TRAILERS:
                at = self._take_line(data, at)
            elif state is _State.UNTIL_EOF:
                self._keep(data, at, end - at)
                at = end
            else:  # OPAQUE
                return

    def _take_head(self, data: bytes | bytearray, at: int, methods: deque[str] | None) -> int:
        """Collect a head split across reads; returns where in `data` its body starts (or
        `len(data)`)."""
        start = max(0, len(self._buffer) - 3)  # the terminator may straddle two reads
        appended = min(len(data) - at, self._head_limit + 4)
        self._buffer += data[at : at + appended]
        found = self._buffer.find(b"\r\n\r\n", start)
        if found < 0 or found + 4 > self._head_limit:
            if found >= 0 or len(self._buffer) > self._head_limit:
                self._state = _OPAQUE
            return len(data)
        head_end = found + 4
        consumed = at + head_end - (len(self._buffer) - appended)
        head = bytes(self._buffer[:head_end])
        self._buffer.clear()
        self._frame(head, methods)
        return consumed

    def _frame(self, head: bytes, methods: deque[str] | None) -> None:
        """Decide how the body after `head` is framed (RFC 9112 section 6.3)."""
        if self._is_response:
            status = _status(head)
            if status is None:
                self._state = _OPAQUE
                return
            if 100 <= status < 200 and status != 101:  # interim: no body, and not shown
                return
            method = methods.popleft() if methods else "GET"
            length, chunked, _ = _body_framing(head)
            self._on_head(head)
            if self._state is _OPAQUE:  # the sink stopped following
                return
            self._switch_after = status == 101 or (method == "CONNECT" and 200 <= status < 300)
            if method == "HEAD" or status in (101, 204, 304) or self._switch_after:
                self._end_message()
            elif chunked:
                self._state = _State.CHUNK_SIZE
            elif length is not None:
                self._body_of(length)
            else:
                self._state = _State.UNTIL_EOF
            return
        length, chunked, upgrade = _body_framing(head)
        self._on_head(head)
        if self._state is _OPAQUE:
            return
        if upgrade or head.startswith((b"CONNECT ", b"CONNECT\r\n")):
            self._switch_after = True
        if chunked:
            self._state = _State.CHUNK_SIZE
        elif not length:  # the usual GET: no body, the message ends with its head
            self._finish(b"", 0, False)
        else:
            self._body_of(length)

    def _body_of(self, length: int) -> None:
        if length < 0:
            self._state = _OPAQUE
        elif length == 0:
            self._finish(b"", 0, False)
        else:
            self._state = _LENGTH
            self._remaining = length

    def _take_line(self, data: bytes | bytearray, at: int) -> int:
        """A chunk-size or trailer line; returns where in `data` the line's end left off."""
        limit = MAX_CHUNK_LINE if self._state is _State.CHUNK_SIZE else MAX_TRAILERS
        end = len(data)
        if not self._buffer:
            found = data.find(b"\r\n", at, at + limit + 2)
            if found < 0:
                if end - at > limit + 1:  # no line end where one had to be
                    self._state = _OPAQUE
                    return end
                self._buffer += data[at:end]
                return end
            line = bytes(data[at:found])
            consumed = found + 2
        else:  # the line began in an earlier read (its CR may be the last byte buffered)
            start = len(self._buffer) - 1
            appended = min(end - at, limit + 2 - len(self._buffer))
            self._buffer += data[at : at + appended]
            found = self._buffer.find(b"\r\n", start)
            if found < 0:
                if len(self._buffer) > limit + 1:
                    self._state = _OPAQUE
                return at + appended
            line = bytes(self._buffer[:found])
            consumed = at + appended - (len(self._buffer) - found - 2)
            self._buffer.clear()
        if self._state is _State.TRAILERS:
            if not line:
                self._end_message()
            return consumed
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            self._state = _OPAQUE
            return consumed
        if size == 0:
            self._state = _State.TRAILERS
        else:
            self._state = _CHUNK_DATA
            self._remaining = size
        return consumed

    # --- helpers ---------------------------------------------------------------------------

    def _keep(self, data: bytes | bytearray, at: int, count: int) -> None:
        """Count `count` body bytes from `data[at:]`, keeping those under the body limit."""
        self._size += count
        room = self._body_limit - len(self._body)
        if room > 0:
            self._body += data[at : at + min(count, room)]

    def _end_message(self) -> None:
        body = bytes(self._body)
        self._body.clear()
        size, self._size = self._size, 0
        self._finish(body, size, size > len(body))

    def _finish(self, body: bytes, size: int, truncated: bool) -> None:
        self._state = _OPAQUE if self._switch_after else _HEAD
        self._switch_after = False
        self._on_end(body, size, truncated)

    def _collect_head(self, head: bytes) -> None:
        self._events.append(HeadEnded(head=head))

    def _collect_end(self, body: bytes, size: int, truncated: bool) -> None:
        self._events.append(MessageEnded(body=body, size=size, truncated=truncated))


def _status(head: bytes) -> int | None:
    """A response head's status code; None if its start line has none."""
    if head.startswith(b"HTTP/1.1 ") and head[9:12].isdigit() and head[12] in b" \r":
        return int(head[9:12])  # the usual start line, read without splitting it
    try:
        return int(head[: head.find(b"\r\n")].split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _body_framing(head: bytes) -> tuple[int | None, bool, bool]:
    """(Content-Length or None, -1 if it is not a number; whether the body is chunked; whether
    the head carries `Upgrade`). Each header's last line wins. The usual head, with at most one
    `Content-Length` line and neither of the others, takes a few scans of the lowercased head;
    any other is read line by line."""
    low = head.lower()
    counted = low.count
    if counted(b"transfer-encoding") or counted(b"upgrade"):
        return _body_framing_by_lines(low)
    found = counted(b"content-length")
    if not found:
        return None, False, False
    at = low.find(b"\r\ncontent-length:")
    if found > 1 or at < 0:
        return _body_framing_by_lines(low)
    value_at = at + 17
    return _length(low[value_at : low.find(b"\r\n", value_at)]), False, False


def _body_framing_by_lines(low: bytes) -> tuple[int | None, bool, bool]:
    length: int | None = None
    chunked = upgrade = False
    for line in low.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip()
        if name == b"content-length":
            length = _length(value)
        elif name == b"transfer-encoding":
            chunked = value.strip().endswith(b"chunked")
        elif name == b"upgrade":
            upgrade = True
    return length, chunked, upgrade


def _length(value: bytes) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return -1
