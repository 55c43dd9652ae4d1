"""The public client's side of an HTTP/1.1 connection, without I/O: its requests parsed, our
responses framed.

Theory of operation
-------------------
`ClientCodec` replaces the h11 SERVER machine the proxy used to speak to the client through,
keeping what h11 accepted and refused for requests (a differential test against h11 holds
the two together), and writing response heads straight to bytes.

Requests. A head is found by its first empty line and parsed by h11's grammar and rules
(`edge/http/h1/request_head.py`: bare LF line ends and obs-fold accepted, Content-Length and
Transfer-Encoding normalised, one Host). Errors raise `ClientError` with the status h11 would
hint: 400, 431 (a head longer than `max_head`, whole or still incomplete; an incomplete
chunk-size line or trailer section too), 501. A head with one Host and no field about the
body or the connection (a plain GET) takes a short path: one pattern match, one search for
the fields that matter. A body is framed by `chunked` (chunk-size lines `hex{1,20} [;ext] OWS
CRLF`, extensions and trailers dropped, each chunk ending in CRLF), else by Content-Length,
else empty. Bytes after a request's end stay buffered (`trailing_data`): the next request, or
after a 101 the upgraded protocol's first bytes.

Keep-alive, as h11: a request with `Connection: close` or a version below 1.1, or a response
with `Connection: close` (or framed to the close), ends the connection after the exchange
(`reusable` is then False); `Connection: close` is then written on the response.

Responses. The head is written as `HTTP/1.1 status reason`, the fields in order (a Host
field first, as h11 did), and checked once for an injected line (CR, LF or NUL in a name,
value or reason: `ClientError`) rather than field by field: values come from the upstream's
strict parser (`edge/http/h1/upstream.py`), from `edge/http/headers.py`, from Traffic Policy
(whose rendered values refuse CR, LF and NUL: `edge.policy.interpolation`), or are the edge's
own constants. Framing headers pass as they are unless the body's length is not known: then an
HTTP/1.1 client gets `Transfer-Encoding: chunked`, and any other (or a client whose request
was never read) a body to the close. HEAD, 204 and 304 responses carry no body. `Expect:
100-continue` is honoured by `waiting_for_100_continue` (cleared by any response, or once body
bytes arrive). A 101 is only sent to a whole request that asked for an upgrade.

Nothing here blocks, reads or writes: the shells (`edge/http/h1/proxy.py`, `exchange.py`,
`buffered.py`) move the bytes. EOF (`receive_data(b"")`) between requests makes
`next_request` return `CLOSED`; within a head it is a `ClientError`.
"""

from __future__ import annotations

import re
from typing import Final

from edge.http.h1.received import NEED_DATA, Received, Sentinel
from edge.http.h1.request_head import (
    CHUNK_HEADER,
    CHUNKED,
    DIGITS,
    FIELD,
    HEAD,
    HEAD_END,
    MAX_LENGTH_DIGITS,
    REQUEST_SPECIAL,
    ClientError,
    Request,
    RequestFields,
    check_trailers,
    comma_tokens,
    normalise,
    parse_slow,
)

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "ClientCodec",
    "ClientError",
    "Request",
    "RequestFields",
]


#: `next_request`: the client closed the connection between requests.
CLOSED: Final = Sentinel("CLOSED")

#: Response field lines the framing looks at, found in the written block.
_RESPONSE_SPECIAL = re.compile(
    rb"\n((?i:content-length|transfer-encoding|connection|host)): ([^\r\n]*)"
)
_NO_BODY_STATUSES = frozenset({204, 304})

# Request side states.
_R_HEAD, _R_LENGTH, _R_CHUNK_SIZE, _R_CHUNK_DATA, _R_CHUNK_END, _R_TRAILERS = range(6)
_R_DONE, _R_CLOSED = range(6, 8)
# Response side states; body framings.
_S_IDLE, _S_BODY, _S_DONE, _S_SWITCHED, _S_ERROR = range(5)
_W_LENGTH, _W_CHUNKED, _W_TO_CLOSE = range(3)


class ClientCodec(Received):
    """One client connection's HTTP/1.1 server side: request events in, response bytes out,
    one exchange at a time (`start_next_cycle` between them)."""

    __slots__ = (
        "_discard",
        "_keep_alive",
        "_left",
        "_method",
        "_ours",
        "_out_left",
        "_proposed",
        "_theirs",
        "_version",
        "_writer",
        "waiting_for_100_continue",
    )

    def __init__(self, max_head: int) -> None:
        super().__init__(max_head)  # the largest head (whole or not), chunk line, trailers
        self._theirs = _R_HEAD
        self._left = 0  # request body bytes still due (_R_LENGTH / _R_CHUNK_DATA)
        self._discard = b""  # what is left to see of a chunk's CRLF
        self._method: bytes | None = None  # the request being answered
        self._version: bytes | None = None  # ... its HTTP version
        self._keep_alive = True
        self._proposed = False  # the request asked for an upgrade
        self._ours = _S_IDLE
        self._writer = _W_LENGTH
        self._out_left = 0  # response body bytes still due (_W_LENGTH)
        #: The request said `Expect: 100-continue` and no response nor body byte came since.
        self.waiting_for_100_continue = False

    # ----------------------------------------------------------------------------- input

    @property
    def http_version(self) -> bytes | None:
        """The HTTP version of the request being answered (None before one was read)."""
        return self._version

    @property
    def request_done(self) -> bool:
        """The request's body was read to its end."""
        return self._theirs == _R_DONE

    def next_request(self) -> Request | Sentinel:
        """The next request head, `NEED_DATA`, or `CLOSED` (EOF between requests). Raises
        ClientError for a head that is malformed or too large, or EOF within one."""
        assert self._theirs == _R_HEAD, "a request is already under way"
        buf, pos = self._buf, self._pos
        held = len(buf) - pos
        if not held:
            if self._eof:
                self._theirs = _R_CLOSED
                return CLOSED
            return NEED_DATA
        found = HEAD_END.search(buf, pos + max(self._scanned - 2, 0))
        if found is None:
            if buf[pos] < 0x21:
                raise ClientError("illegal request line")
            if held > self._max_head:
                raise ClientError("the request head is too large", 431)
            if self._eof:
                raise ClientError("the client closed the connection within a request head")
            self._scanned = held
            return NEED_DATA
        end = found.end()
        head = buf[pos:end]
        if type(head) is not bytes:
            head = bytes(head)
        if end - pos > self._max_head:  # (after the parse: a malformed head is a 400)
            return self._request_slow(head, end)
        match = HEAD.fullmatch(head)
        if match is None:
            return self._request_slow(head, end)
        method, target, version, block = match.groups()
        items = FIELD.findall(block)
        special = REQUEST_SPECIAL.findall(head)
        if len(special) != 1 or len(special[0]) != 4 or method == b"CONNECT":
            return self._request_slow(head, end, (method, target, version, items))
        # The common case: one Host, no body, no Connection, Expect or Upgrade field.
        self._method = method
        self._version = version
        if version < b"1.1":
            self._keep_alive = False
        self._theirs = _R_DONE
        if end >= len(buf):
            self._buf = b""
            self._pos = 0
        else:
            self._pos = end
        self._scanned = 0
        return Request(method, target, version, RequestFields(items), head)

    def _request_slow(
        self,
        head: bytes,
        end: int,
        parsed: tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]] | None = None,
    ) -> Request:
        """`next_request` for a head with more to look at than one Host (or that `HEAD`
        refused: then parsed line by line)."""
        method, target, version, items = parsed or parse_slow(head)
        meaning = normalise(method, version, items)
        self._method = method
        self._version = version
        self._proposed = meaning.upgrade
        if meaning.close or version < b"1.1":
            self._keep_alive = False
        self.waiting_for_100_continue = meaning.expect_continue
        length = meaning.length
        if length == CHUNKED:
            self._theirs = _R_CHUNK_SIZE
        elif length:
            self._left = length
            self._theirs = _R_LENGTH
        else:
            self._theirs = _R_DONE
        if len(head) > self._max_head:
            raise ClientError(f"the request head has {len(head)} bytes", 431)
        self._advance(end)
        return Request(method, target, version, RequestFields(meaning.items), head)

    def take_body(self) -> tuple[list[bytes], bool]:
        """The request body bytes held (none of them empty), and whether the body ended.
        Raises ClientError for a body that breaks its framing. (EOF is the shell's to see.)"""
        assert self._theirs not in (_R_HEAD, _R_CLOSED), "no request under way"
        datas: list[bytes] = []
        while True:
            state = self._theirs
            if state == _R_DONE:
                break
            if state in (_R_LENGTH, _R_CHUNK_DATA):
                held = len(self._buf) - self._pos
                if not held:
                    return datas, False
                data = self._take(min(held, self._left))
                self._left -= len(data)
                datas.append(data)
                if not self._left:
                    if state == _R_LENGTH:
                        self._theirs = _R_DONE
                    else:
                        self._discard = b"\r\n"
                        self._theirs = _R_CHUNK_END
            elif state == _R_CHUNK_SIZE:
                if not self._chunk_size():
                    return datas, False
            elif state == _R_CHUNK_END:
                if not self._chunk_end():
                    return datas, False
            elif not self._trailers():
                return datas, False
        self.waiting_for_100_continue = False  # the body's end came (h11: EndOfMessage)
        return datas, True

    # ------------------------------------------------------------------------- parsing

    def _take(self, count: int) -> bytes:
        data = super()._take(count)
        if data:
            self.waiting_for_100_continue = False
        return data

    def _need(self, what: str) -> bool:
        if len(self._buf) - self._pos > self._max_head:
            raise ClientError(f"the {what} is too large", 431)
        return False

    def _chunk_size(self) -> bool:
        buf, pos = self._buf, self._pos
        end = buf.find(b"\r\n", pos + max(self._scanned - 1, 0))
        if end < 0:
            self._scanned = len(buf) - pos
            return self._need("chunk-size line")
        match = CHUNK_HEADER.fullmatch(buf, pos, end + 2)
        if match is None:
            raise ClientError(f"illegal chunk header: {bytes(buf[pos : end + 2])[:40]!r}")
        size = int(match.group(1), 16)
        self._advance(end + 2)
        if size:
            self._left = size
            self._theirs = _R_CHUNK_DATA
        else:
            self._theirs = _R_TRAILERS
        return True

    def _chunk_end(self) -> bool:
        buf, pos = self._buf, self._pos
        want = self._discard
        got = bytes(buf[pos : pos + len(want)])
        if not got:
            return False
        if got != want[: len(got)]:
            raise ClientError(f"malformed chunk footer: {got!r} (expected {want!r})")
        self._advance(pos + len(got))
        self._discard = want[len(got) :]
        if self._discard:
            return False
        self._theirs = _R_CHUNK_SIZE
        return True

    def _trailers(self) -> bool:
        buf, pos = self._buf, self._pos
        if buf[pos : pos + 1] == b"\n":
            self._advance(pos + 1)
        elif buf[pos : pos + 2] == b"\r\n":
            self._advance(pos + 2)
        else:
            found = HEAD_END.search(buf, pos + max(self._scanned - 2, 0))
            if found is None:
                self._scanned = len(buf) - pos
                return self._need("trailer section")
            check_trailers(bytes(buf[pos : found.end()]))
            self._advance(found.end())
        self._theirs = _R_DONE
        return True

    # ---------------------------------------------------------------------------- output

    @property
    def can_respond(self) -> bool:
        """No final response (nor a 101) has been started, and none failed."""
        return self._ours == _S_IDLE

    def send_informational(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> bytes:
        """The bytes of a 1xx head; a 101 switches the connection to raw bytes (only after a
        whole request that asked for an upgrade). Raises ClientError otherwise."""
        if self._ours != _S_IDLE or not 100 <= status < 200:
            raise self._failed(f"cannot send a {status} now")
        if status == 101:
            if not (self._proposed and self._theirs == _R_DONE):
                raise self._failed("a 101 that answers no upgrade request")
            self._ours = _S_SWITCHED
        self.waiting_for_100_continue = False
        return self._head(status, reason, headers)

    def send_response(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
    ) -> bytes:
        """The bytes of a final response head, framed for this client (see the module's
        docstring). Raises ClientError for a status out of range, a head with an injected
        line, or a response already started."""
        if self._ours != _S_IDLE or not 200 <= status < 1000:
            raise self._failed(f"cannot send a {status} now")
        self.waiting_for_100_continue = False
        head = self._head(status, reason, headers)
        found = _RESPONSE_SPECIAL.findall(head, head.find(b"\n"))
        method = self._method
        if len(found) == 1 and self._keep_alive:
            name, value = found[0]
            if len(name) == 14 and value.isdigit() and len(value) <= MAX_LENGTH_DIGITS:
                # The common case: one Content-Length, a connection kept alive.
                self._writer = _W_LENGTH
                no_body = method == b"HEAD" or status in _NO_BODY_STATUSES
                self._out_left = 0 if no_body else int(value)
                self._ours = _S_BODY
                return head
        if found or method == b"HEAD" or status in _NO_BODY_STATUSES:
            return self._framed(status, reason, headers, found, head)
        # Neither Content-Length nor Transfer-Encoding: the length is not known.
        version = self._version
        if version is not None and version >= b"1.1":
            self._writer = _W_CHUNKED
            head = head[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
            if not self._keep_alive:
                head = head[:-2] + b"Connection: close\r\n\r\n"
        else:
            self._writer = _W_TO_CLOSE
            self._keep_alive = False
            head = head[:-2] + b"Connection: close\r\n\r\n"
        self._ours = _S_BODY
        return head

    def _framed(
        self,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        found: list[tuple[bytes, bytes]],
        head: bytes,
    ) -> bytes:
        """`send_response` for a head with framing or connection fields (or HEAD, 204, 304):
        h11's clean-up, done literally on the field list."""
        lengths: list[bytes] = []
        chunked = close = rewrite = False
        for name, value in found:
            lower = name.lower()
            if lower == b"content-length":
                parts = {item.strip() for item in value.split(b",")}
                single = parts.pop()
                if parts or DIGITS.fullmatch(single) is None or len(single) > 20:
                    raise self._failed("bad Content-Length")
                if lengths and lengths[0] != single:
                    raise self._failed("conflicting Content-Length headers")
                rewrite = rewrite or bool(lengths) or single != value
                lengths.append(single)
            elif lower == b"transfer-encoding":
                if chunked or value.lower() != b"chunked":
                    raise self._failed("Only Transfer-Encoding: chunked is supported")
                chunked = True
                rewrite = rewrite or value != b"chunked"  # written lowercase
            elif lower == b"connection":
                close = close or b"close" in comma_tokens(value)
            else:  # host: written first
                rewrite = True
        method = self._method
        version = self._version
        http11 = version is not None and version >= b"1.1"
        need_close = False
        unknown = status not in _NO_BODY_STATUSES and (chunked or not lengths)
        if unknown:  # as for a GET, even for HEAD: the head is the one a GET would get
            rewrite = True
            if not http11 and method != b"HEAD":
                need_close = True
        keep_alive = self._keep_alive and not need_close
        if rewrite or not keep_alive:
            fields = _normalised(headers)
            if unknown:
                fields = [(n, v) for n, v in fields if n.lower() not in _FRAMING]
                if http11:
                    fields.append((b"Transfer-Encoding", b"chunked"))
            if not keep_alive:
                tokens = {
                    t for n, v in fields if n.lower() == b"connection" for t in comma_tokens(v)
                }
                tokens.discard(b"keep-alive")
                tokens.add(b"close")
                fields = [(n, v) for n, v in fields if n.lower() != b"connection"]
                fields += [(b"Connection", token) for token in sorted(tokens)]
                close = True
            head = self._head(status, reason, fields)
        if close or need_close:
            self._keep_alive = False
        if method == b"HEAD" or status in _NO_BODY_STATUSES:
            self._writer = _W_LENGTH
            self._out_left = 0
        elif unknown:
            self._writer = _W_CHUNKED if http11 else _W_TO_CLOSE
        else:
            self._writer = _W_LENGTH
            self._out_left = int(lengths[0])
        self._ours = _S_BODY
        return head

    def send_data(self, data: bytes) -> list[bytes]:
        """The bytes that carry response body `data` (the object itself among them). Raises
        ClientError for more than the response's Content-Length."""
        if self._ours != _S_BODY:
            raise self._failed("body bytes with no response under way")
        if not data:
            return []
        writer = self._writer
        if writer == _W_LENGTH:
            left = self._out_left - len(data)
            if left < 0:
                raise self._failed("Too much data for declared Content-Length")
            self._out_left = left
            return [data]
        if writer == _W_CHUNKED:
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        return [data]

    def send_end(self) -> bytes:
        """The bytes that end the response. Raises ClientError if it is short of its
        Content-Length."""
        if self._ours != _S_BODY:
            raise self._failed("no response under way")
        writer = self._writer
        self._ours = _S_DONE
        if writer == _W_LENGTH:
            if self._out_left:
                raise self._failed("Too little data for declared Content-Length")
            return b""
        if writer == _W_CHUNKED:
            return b"0\r\n\r\n"
        self._keep_alive = False
        return b""

    def send_whole(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> bytes:
        """A whole response the edge made (`send_response`, `send_data`, `send_end`)."""
        head = self.send_response(status, reason, headers)
        return b"".join([head, *self.send_data(body), self.send_end()])

    @property
    def reusable(self) -> bool:
        """Request and response are both whole and the connection is kept alive."""
        return self._ours == _S_DONE and self._theirs == _R_DONE and self._keep_alive

    def start_next_cycle(self) -> None:
        """Ready for the next request (only when `reusable`)."""
        assert self.reusable
        self._theirs = _R_HEAD
        self._ours = _S_IDLE
        self._method = self._version = None
        self._proposed = False
        self.waiting_for_100_continue = False

    def _head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The head's bytes, checked for an injected line in one pass."""
        if headers:
            head = b"HTTP/1.1 %d %s\r\n%s\r\n\r\n" % (
                status,
                reason,
                b"\r\n".join(map(b": ".join, headers)),
            )
        else:
            head = b"HTTP/1.1 %d %s\r\n\r\n" % (status, reason)
        lines = len(headers) + 2
        if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
            raise self._failed("a response head with CR, LF or NUL in a field or the reason")
        return head

    def _failed(self, message: str) -> ClientError:
        self._ours = _S_ERROR
        return ClientError(message, 500)


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def _normalised(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response fields as h11 wrote them: Host first, Content-Length values folded into the
    first, Transfer-Encoding lowercased."""
    hosts: list[tuple[bytes, bytes]] = []
    out: list[tuple[bytes, bytes]] = []
    seen_length = False
    for name, raw in headers:
        lower = name.lower()
        value = raw
        if lower == b"host":
            hosts.append((name, value))
            continue
        if lower == b"content-length":
            if seen_length:
                continue
            seen_length = True
            value = {item.strip() for item in raw.split(b",")}.pop()
        elif lower == b"transfer-encoding":
            value = raw.lower()
        out.append((name, value))
    return hosts + out
