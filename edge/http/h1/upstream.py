"""The agent-stream side of an HTTP/1.1 exchange, without I/O: the forwarded request's bytes,
and a strict parser of the upstream's response.

Theory of operation
-------------------
The edge relays a public client's request over an agent stream, which the agent pipes
unchanged to the upstream (the customer's service). The request was parsed and checked on the
client's side (`edge/http/h1/client.py`) and rewritten by `edge/http/headers.py`, so it is not
parsed again, only checked once as it is written. Here:

* `RequestHead.of` checks the forwarded head once (method and target characters, every header
  line a token, `:`, a value without CR, LF, NUL or other controls; exactly one Host; framing
  a single `chunked` or one decimal Content-Length) and holds its bytes, Host first (as h11
  wrote it). A value that could inject a line never gets into the head: `UnforwardableError`.
* `UpstreamCodec` frames the request body as the head says (chunked pieces, or counted bytes
  for a Content-Length; trailers are never sent) and parses what comes back: 1xx heads, the
  final head, its body (Content-Length, chunked, to the close; none for HEAD, 204 and 304),
  then whatever follows (`trailing_data`: the next response, or after a 101 the upgraded
  protocol's first bytes).

The response parser protects the public client from a hostile or broken upstream (RFC 9112
§5.2, §6.1, §6.3, §11.2): it refuses (`UpstreamError`) a status line other than
`HTTP/1.x NNN reason`, a status below 100, a bare CR, obs-fold continuation lines, header names
that are not tokens, values with control characters, a Content-Length that is not a decimal
below 2^63 or two that differ, Transfer-Encoding other than one `chunked`, Content-Length with
Transfer-Encoding, a 101 that answers no upgrade request, bad chunk sizes or chunk ends, and a
head (or chunk-size line, or trailer block) larger than `max_head` bytes, whole or not. Chunk
extensions and trailers are checked for line structure and dropped. Where the RFC lets a
recipient be lenient and Go's HTTP client (so ngrok's edge) is, this parser is too, so an
upstream that works through ngrok works here: a bare LF ends a line (heads, chunk lines,
trailers), and repeated equal Content-Length fields count as one (the client gets one).

EOF (`receive_data(b"")`) ends a read-to-close body; anywhere else before the response ended
the next `next_event` raises `UpstreamError`, and `ended` says the stream's end came first.
Nothing here blocks, reads or writes: the shell (`edge/http/h1/exchange.py`) moves the bytes.
"""

from __future__ import annotations

import re
from typing import Final

from edge.http.h1.received import NEED_DATA, Received, Sentinel
from edge.http.headers import MAX_CONTENT_LENGTH, Headers

__all__ = [
    "END",
    "NEED_DATA",
    "PAUSED",
    "FieldList",
    "RequestHead",
    "ResponseHead",
    "UnforwardableError",
    "UpstreamCodec",
    "UpstreamError",
]


#: `next_event`: the response ended (trailers, if any, dropped).
END: Final = Sentinel("END")
#: `next_event` after the end or after a 101: nothing more is parsed until `start_next_cycle`.
PAUSED: Final = Sentinel("PAUSED")

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_METHOD = re.compile(_TOKEN)
#: A request target: visible ASCII only (h11's rule; the client's was parsed by it).
_TARGET = re.compile(rb"[\x21-\x7e]+")
#: Header lines as the edge writes them: `name: value` (no whitespace around the value).
_VISIBLE = rb"[\x21-\x7e\x80-\xff]"
_OUT_FIELDS = re.compile(
    rb"(?:"
    + _TOKEN
    + rb": (?:"
    + _VISIBLE
    + rb"(?:[\t\x20-\x7e\x80-\xff]*"
    + _VISIBLE
    + rb")?)?\r\n)*"
)
_STATUS_LINE = re.compile(rb"HTTP/1\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
#: Received header lines: every line `token:value CRLF`, value without CR, LF or controls.
_IN_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
_IN_FIELD = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\t\x20-\x7e\x80-\xff]*" + _VISIBLE + rb")?)[ \t]*\r\n"
)
#: The lengths of the names `_frame` looks for (content-length, connection, transfer-encoding):
#: other names are not lowercased to be compared.
_FRAMING_NAME_LENGTHS = frozenset({14, 10, 17})
#: ... and those `RequestHead.of` looks for (the same, and host, upgrade).
_REQUEST_NAME_LENGTHS = frozenset({14, 10, 17, 4, 7})
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")
#: A CR not before a LF (a CR at the very end may await its LF).
_BARE_CR = re.compile(rb"\r(?=[^\n])")
#: A LF not after a CR: a line end RFC 9112 §2.2 lets a recipient accept (Go's client does).
_BARE_LF = re.compile(rb"(?<!\r)\n")
#: The end of a head or trailer block whose lines may end in a bare LF, and any line end.
_BLANK_LINE = re.compile(rb"\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_NO_BODY_STATUSES = frozenset({204, 304})

# Response parser states.
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(6)
_TO_CLOSE, _ENDING, _DONE, _SWITCHED = range(6, 10)
# Request body framing (`_request_left`): a count of bytes still owed, or one of these.
_CHUNKED = -1
_NO_BODY = 0


class UnforwardableError(ValueError):
    """A request head (or body) that cannot go to the upstream as it is: a header line that
    would not parse back as the same header, a missing or repeated Host, bad framing, or a body
    that does not fit its Content-Length."""


class UpstreamError(Exception):
    """What came over the agent stream is not an acceptable HTTP/1.1 response (or it ended
    before one did: `UpstreamCodec.ended`)."""


class FieldList:
    """Header fields as received: `(name as sent, value)`, whitespace around values removed
    (what `edge.http.headers.response_headers` reads through `raw_items`)."""

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[bytes, bytes]]) -> None:
        self.items = items

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        return self.items


class ResponseHead:
    """A response head: a 1xx (`status` < 200) or the final one."""

    __slots__ = ("headers", "http_version", "reason", "status")

    def __init__(self, status: int, reason: bytes, http_version: bytes, headers: FieldList):
        self.status = status
        self.reason = reason
        self.http_version = http_version
        self.headers = headers

    def __repr__(self) -> str:
        return f"ResponseHead({self.status}, {self.reason!r})"


class RequestHead:
    """A request head checked for the upstream, with its bytes (`encoded`). Build it with
    `RequestHead.of`."""

    __slots__ = ("encoded", "framing", "method", "target", "upgrade")

    def __init__(
        self, method: bytes, target: bytes, encoded: bytes, framing: int, upgrade: bool
    ) -> None:
        self.method = method
        self.target = target
        self.encoded = encoded  # request line, Host first, the other fields, empty line
        self.framing = framing  # a Content-Length, _CHUNKED, or _NO_BODY
        self.upgrade = upgrade  # Connection names upgrade and an Upgrade header is there

    @classmethod
    def of(cls, method: bytes, target: bytes, headers: Headers) -> RequestHead:
        """The HTTP/1.1 head for `method`, `target` and `headers`. Raises UnforwardableError
        for a method that is not a token, a target with other than visible ASCII, a header
        name that is not a token or a value with CR, LF, NUL, another control character or
        whitespace at its ends, no Host or more than one, Transfer-Encoding other than one
        `chunked`, a Content-Length that is not one decimal (repeats must agree), or both."""
        if _METHOD.fullmatch(method) is None:
            raise UnforwardableError(f"illegal method {method[:40]!r}")
        if _TARGET.fullmatch(target) is None:
            raise UnforwardableError(f"illegal request target {target[:80]!r}")
        host: list[bytes] = []
        fields: list[bytes] = []  # name, ": ", value, CRLF, ... (Host's go first)
        length: bytes | None = None
        chunked = False
        upgrade = connection_upgrade = False
        for name, value in headers:
            if len(name) not in _REQUEST_NAME_LENGTHS:  # none of the names looked at below
                fields += (name, b": ", value, b"\r\n")
                continue
            lower = name.lower()
            if lower == b"host":
                host += (name, b": ", value, b"\r\n")
                continue
            fields += (name, b": ", value, b"\r\n")
            if lower == b"content-length":
                values = {item.strip() for item in value.split(b",")}
                single = values.pop()
                if values or (length is not None and length != single) or not single.isdigit():
                    raise UnforwardableError("conflicting or bad Content-Length")
                length = single
            elif lower == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise UnforwardableError("Transfer-Encoding other than one chunked")
                chunked = True
            elif lower == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                connection_upgrade = connection_upgrade or b"upgrade" in tokens
            elif lower == b"upgrade":
                upgrade = True
        if len(host) != 4:
            raise UnforwardableError("a request needs exactly one Host header")
        block = b"".join(host + fields)
        # Every line checked at once; a CR or LF inside a name or value adds a line the count
        # shows, or breaks a line's shape the pattern shows.
        if _OUT_FIELDS.fullmatch(block) is None or block.count(b"\n") != len(headers):
            raise UnforwardableError("a header name or value that cannot be sent")
        if chunked and length is not None:
            raise UnforwardableError("Content-Length with Transfer-Encoding")
        if length is not None and int(length) > MAX_CONTENT_LENGTH:
            raise UnforwardableError("Content-Length beyond 2^63-1")
        framing = _CHUNKED if chunked else int(length) if length is not None else _NO_BODY
        encoded = b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, block)
        return cls(method, target, encoded, framing, upgrade and connection_upgrade)


class UpstreamCodec(Received):
    """One agent stream's HTTP/1.1 client side: request bytes out, response events in, one
    exchange at a time (`start_next_cycle` between them)."""

    __slots__ = (
        "_head",
        "_keep_alive",
        "_left",
        "_lenient",
        "_request_done",
        "_request_left",
        "_state",
    )

    def __init__(self, max_head: int) -> None:
        super().__init__(max_head)  # the largest response head, chunk-size line, trailer block
        self._head: RequestHead | None = None
        self._request_left = _NO_BODY
        self._request_done = False
        self._state = _HEAD
        self._left = 0  # body bytes still due in _LENGTH / _CHUNK_DATA
        self._keep_alive = False
        self._lenient = False  # the block being read has a bare-LF line end

    # ------------------------------------------------------------------------ the request

    def send_head(self, head: RequestHead) -> bytes:
        """The bytes of `head`, which is the request the response will answer."""
        self._head = head
        self._request_left = head.framing
        self._request_done = False
        return head.encoded

    def send_body(self, data: bytes) -> list[bytes]:
        """The bytes that carry `data` (the payload object itself among them). Raises
        UnforwardableError for more than the Content-Length or a head without a body."""
        if not data:
            return []
        left = self._request_left
        if left == _CHUNKED:
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        if len(data) > left:
            raise UnforwardableError("more request body than its Content-Length")
        self._request_left = left - len(data)
        return [data]

    def send_end(self) -> bytes:
        """The bytes that end the request body. Raises UnforwardableError if it is short of
        its Content-Length."""
        left = self._request_left
        if left > 0:
            raise UnforwardableError("less request body than its Content-Length")
        self._request_done = True
        return b"0\r\n\r\n" if left == _CHUNKED else b""

    # ----------------------------------------------------------------------- the response

    @property
    def ended(self) -> bool:
        """The agent stream's end has been received."""
        return self._eof

    @property
    def done(self) -> bool:
        """The response was read to its end (not after a 101)."""
        return self._state == _DONE

    @property
    def reusable(self) -> bool:
        """Both messages are whole, the upstream keeps the connection (HTTP/1.1, no
        `Connection: close`, a framed body) and sent nothing more: another exchange may
        follow."""
        return (
            self._state == _DONE
            and self._request_done
            and self._keep_alive
            and self._pos >= len(self._buf)
            and not self._eof
        )

    def start_next_cycle(self) -> None:
        """Ready for the next exchange (only when `reusable`)."""
        assert self.reusable
        self._head = None
        self._request_left = _NO_BODY
        self._request_done = False
        self._state = _HEAD
        self._keep_alive = False

    def next_event(self) -> ResponseHead | bytes | Sentinel:
        """The next thing the bytes say: a `ResponseHead`, body bytes, `END`, `NEED_DATA`, or
        `PAUSED` (after `END` or a 101). Raises UpstreamError for bytes that are not an
        acceptable response, or an end (EOF) before the response's."""
        state = self._state
        if state in (_LENGTH, _CHUNK_DATA):
            return self._counted(state)
        if state == _HEAD:
            return self._response_head()
        if state == _ENDING:
            self._state = _DONE
            return END
        if state == _CHUNK_SIZE_LINE:
            return self._chunk_size()
        if state == _CHUNK_END:
            return self._chunk_end()
        if state == _TRAILERS:
            return self._trailers()
        if state == _TO_CLOSE:
            if self._pos < len(self._buf):
                return self._take(len(self._buf) - self._pos)
            if self._eof:
                self._state = _DONE
                return END
            return NEED_DATA
        return PAUSED

    # ----------------------------------------------------------------------------- parsing

    def _find(self, end_mark: bytes) -> int:
        """Where `end_mark` starts among the unparsed bytes, or -1; each byte is searched once
        however the bytes trickle in (`_need` records how far the search went)."""
        skip = max(self._scanned - len(end_mark) + 1, 0)
        return self._buf.find(end_mark, self._pos + skip)

    def _need(self, what: str) -> Sentinel:
        """NEED_DATA, unless the stream ended (then UpstreamError) or `what` (still without
        its end) is already over the size limit or holds a bare CR."""
        buf, pos = self._buf, self._pos
        held = len(buf) - pos
        if held > self._max_head:
            raise UpstreamError(f"{what} larger than {self._max_head} bytes")
        if _BARE_CR.search(buf, pos + max(self._scanned - 1, 0)) is not None:
            raise UpstreamError(f"a bare CR in the {what}")
        if self._eof:
            raise UpstreamError(f"the stream ended within the {what}")
        self._scanned = held
        return NEED_DATA

    def _block(self, what: str) -> bytes | None:
        """The next head or trailer block through its empty line, its line ends made CRLF;
        None when more bytes are needed (`_need`'s checks ran).

        Lines end in CRLF; a bare LF is accepted as a line end too (RFC 9112 §2.2 allows it,
        and Go's client, hence ngrok, relays such responses). The first bare LF seen switches
        the block to the slower search for an empty line of either kind.
        """
        buf, pos = self._buf, self._pos
        if not self._lenient:
            end = self._find(b"\r\n\r\n")
            if end >= 0:
                block = buf[pos : end + 4]
                if type(block) is not bytes:
                    block = bytes(block)
                if block.count(b"\n") == block.count(b"\r\n"):  # every line ends in CRLF
                    if end + 4 - pos > self._max_head:
                        raise UpstreamError(f"{what} larger than {self._max_head} bytes")
                    self._advance(end + 4)
                    return block
            elif _BARE_LF.search(buf, pos + max(self._scanned - 1, 0)) is None:
                self._need(what)
                return None
            self._lenient = True
        # The searched bytes held no bare LF, and an empty line of either kind ends in one: it
        # ends among the new bytes, so it starts at most 2 bytes before them.
        match = _BLANK_LINE.search(buf, pos + max(self._scanned - 2, 0))
        if match is None:
            self._need(what)
            return None
        end = match.end()
        if end - pos > self._max_head:
            raise UpstreamError(f"{what} larger than {self._max_head} bytes")
        block = _LINE_END.sub(b"\r\n", buf[pos:end])
        self._advance(end)
        self._lenient = False
        return block

    def _response_head(self) -> ResponseHead | Sentinel:
        head = self._block("response head")
        if head is None:
            return NEED_DATA
        line_end = head.find(b"\r\n")
        status_line = _STATUS_LINE.fullmatch(head, 0, line_end)
        if status_line is None:
            raise UpstreamError("illegal status line")
        fields_at, fields_end = line_end + 2, len(head) - 2
        if _IN_FIELDS.fullmatch(head, fields_at, fields_end) is None:
            raise UpstreamError("illegal header line (bare CR/LF, obs-fold, bad name or value)")
        items = _IN_FIELD.findall(head, fields_at, fields_end)
        minor, code, reason = status_line.groups()
        status = int(code)
        response = ResponseHead(status, reason or b"", b"1." + minor, FieldList(items))
        if status < 200:
            if status < 100:
                raise UpstreamError(f"illegal status code {status}")
            if status == 101:
                request = self._head
                if request is None or not request.upgrade:
                    raise UpstreamError("a 101 that answers no upgrade request")
                self._state = _SWITCHED
            return response
        self._frame(response, minor != b"0")
        return response

    def _frame(self, head: ResponseHead, http11: bool) -> None:
        """Check a final head's framing and enter the state that reads its body."""
        length: bytes | None = None
        chunked = False
        close = False
        repeated = False
        for name, value in head.headers.items:
            if len(name) not in _FRAMING_NAME_LENGTHS:
                continue
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and value != length):
                    raise UpstreamError("a bad Content-Length, or two that differ")
                repeated = length is not None
                length = value
            elif lower == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise UpstreamError("Transfer-Encoding other than one chunked")
                chunked = True
            elif lower == b"connection":
                close = close or b"close" in {t.strip().lower() for t in value.split(b",")}
        if chunked and length is not None:
            raise UpstreamError("Content-Length with Transfer-Encoding")
        if repeated:  # equal values (RFC 9110 §8.6 lets a recipient take one, as Go's client does)
            head.headers.items = _one_content_length(head.headers.items)
        if length is not None and (len(length) > 19 or int(length) > MAX_CONTENT_LENGTH):
            raise UpstreamError("Content-Length beyond 2^63-1")
        request = self._head
        self._keep_alive = http11 and not close
        if (request is not None and request.method == b"HEAD") or (
            head.status in _NO_BODY_STATUSES
        ):
            self._state = _ENDING
        elif chunked:
            self._state = _CHUNK_SIZE_LINE
        elif length is not None:
            self._left = int(length)
            self._state = _LENGTH if self._left else _ENDING
        else:
            self._keep_alive = False
            self._state = _TO_CLOSE

    def _counted(self, state: int) -> bytes | Sentinel:
        """Body bytes of a Content-Length body or a chunk."""
        held = len(self._buf) - self._pos
        if not held:
            if self._eof:
                raise UpstreamError("the stream ended within the body")
            return NEED_DATA
        left = self._left
        data = self._take(min(held, left))
        left -= len(data)
        self._left = left
        if not left:
            self._state = _ENDING if state == _LENGTH else _CHUNK_END
        return data

    def _chunk_size(self) -> ResponseHead | bytes | Sentinel:
        end = self._find(b"\n")  # CRLF, or a bare LF (as for head lines)
        if end < 0:
            return self._need("chunk-size line")
        buf, pos = self._buf, self._pos
        if end - pos > self._max_head:
            raise UpstreamError(f"chunk-size line larger than {self._max_head} bytes")
        stop = end - 1 if end > pos and buf[end - 1] == 13 else end
        match = _CHUNK_SIZE.fullmatch(buf, pos, stop)
        if match is None:
            raise UpstreamError("illegal chunk-size line")
        size = int(match.group(1), 16)
        if size > MAX_CONTENT_LENGTH:
            raise UpstreamError("a chunk beyond 2^63-1 bytes")
        self._advance(end + 1)
        if size:
            self._left = size
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILERS
        return self.next_event()

    def _chunk_end(self) -> ResponseHead | bytes | Sentinel:
        buf, pos = self._buf, self._pos
        ending = buf[pos : pos + 2]
        if ending != b"\r\n":
            if ending[:1] == b"\n":  # a bare LF (as for head lines)
                self._advance(pos + 1)
                self._state = _CHUNK_SIZE_LINE
                return self.next_event()
            if ending not in (b"", b"\r"):
                raise UpstreamError("missing CRLF after a chunk")
            if self._eof:
                raise UpstreamError("the stream ended within the body")
            return NEED_DATA
        self._advance(pos + 2)
        self._state = _CHUNK_SIZE_LINE
        return self.next_event()

    def _trailers(self) -> ResponseHead | bytes | Sentinel:
        buf, pos = self._buf, self._pos
        if buf[pos : pos + 2] == b"\r\n":  # no trailer fields
            self._advance(pos + 2)
        elif buf[pos : pos + 1] == b"\n":
            self._advance(pos + 1)
        else:
            block = self._block("trailer section")
            if block is None:
                return NEED_DATA
            if _IN_FIELDS.fullmatch(block, 0, len(block) - 2) is None:
                raise UpstreamError("illegal trailer line")
        self._state = _DONE
        return END


def _one_content_length(items: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`items` with only the first of its (equal) Content-Length fields."""
    kept: list[tuple[bytes, bytes]] = []
    seen = False
    for name, value in items:
        if len(name) == 14 and name.lower() == b"content-length":
            if seen:
                continue
            seen = True
        kept.append((name, value))
    return kept
