"""What the edge's HTTP proxy does to headers: pure decisions on parsed heads, no I/O.

Theory of operation
-------------------
The proxy (`edge/http/h1/proxy.py`) relays h11 events between the public client and an upstream
stream; this module decides what each head becomes on the way through:

* A request head is checked, routed and rewritten by `prepare_request`: its Host is reduced to
  a routing name (`route_host`); framing h11 accepts but a proxy must not (Content-Length with
  Transfer-Encoding, repeated Content-Length, which h11 folds into one and only the raw bytes
  show) and CONNECT are refused with an `ErrorPage`; hop-by-hop headers are dropped, with any
  header a `Connection` header names; and `X-Forwarded-For`/`-Proto` are appended to while
  `X-Forwarded-Host` is kept if the client sent one (so a chain of proxies is visible).
* A response head is rewritten by `response_headers`: hop-by-hop headers and the edge's own
  error-code headers are dropped (an upstream must never be able to fake an edge error).
* HTTP/2 (`edge/http/h2/stream.py`) goes through the same rules: `translate_h2_request` turns an
  HTTP/2 header list into an HTTP/1.1 request head (Host from `:authority`, cookies joined,
  the same `X-Forwarded-*`), and `h2_response_headers` turns an HTTP/1.1 response head into an
  HTTP/2 header list (lowercase names, no connection-specific headers, RFC 9113 §8.2.2).

Framing headers (Content-Length, Transfer-Encoding) and Host are never dropped, even when a
`Connection` header names them: h11 frames the other side from them, so removing one would
desynchronise the two sides. The `Connection`/`Upgrade` pair is carried separately and put back
only for a real upgrade.

Every function takes values and returns values (or raises `RefusedError` with the page to
answer with), so all of it is testable without sockets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import h11

from edge.http.error_pages import ErrorPage, bad_request, method_not_allowed

__all__ = [
    "H2Request",
    "Headers",
    "PreparedRequest",
    "RawHeaders",
    "RefusedError",
    "h2_response_fields",
    "h2_response_headers",
    "head_error_page",
    "prepare_request",
    "raw_head",
    "response_headers",
    "route_host",
    "translate_h2_request",
]

Headers = list[tuple[bytes, bytes]]

# Header handling tags (one dict lookup per header on the hot path).
_HOP, _CONNECTION, _UPGRADE, _HOST, _CL, _TE, _ACCEPT, _XFF, _XFP, _XFH = range(10)
#: RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones proxies meet.
_HOP_BY_HOP = (
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"proxy-authenticate",
    b"proxy-authorization",
)
_REQUEST_TAGS = {
    **dict.fromkeys(_HOP_BY_HOP, _HOP),
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"accept": _ACCEPT,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
}
#: Headers only the edge may set: an upstream must never be able to fake an edge error.
_EDGE_HEADERS = (b"burrow-error-code", b"ngrok-error-code")
_RESPONSE_TAGS = {
    **dict.fromkeys(_HOP_BY_HOP + _EDGE_HEADERS, _HOP),
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
}
#: Headers HTTP/2 forbids (RFC 9113 §8.2.2: connection-specific; h11 frames the other side).
_H2_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"}
)
#: Never removed because a Connection header names them: dropping framing would desync the two
#: sides, and Host is what the request is routed by.
_PROTECTED = frozenset({b"content-length", b"transfer-encoding", b"host"})
#: A head ends at its first empty line (h11 accepts bare LF line ends too).
_HEAD_END = re.compile(rb"\n\r?\n")
_CONTENT_LENGTH_LINE = re.compile(rb"\ncontent-length:([^\n]*)")
#: A Host value: a name or a bracketed IPv6 address, then an optional port (lowercased first).
_HOST_VALUE = re.compile(r"(?:([a-z0-9_][a-z0-9_.-]*)|\[([0-9a-f:.]+)\])(?::[0-9]*)?", re.ASCII)


class H2Request(NamedTuple):
    """An HTTP/2 request head translated into an HTTP/1.1 one for the upstream."""

    method: bytes
    #: The request target: `:path`.
    target: bytes
    #: The routing name from `:authority` (see `route_host`).
    host: str
    #: The client's Accept header, for choosing an error page's format.
    accept: bytes | None
    #: The HTTP/1.1 headers: Host first, framing, X-Forwarded-* last.
    headers: Headers


class RawHeaders(Protocol):
    """h11's header list (not exported by h11): names as the peer spelt them."""

    def raw_items(self) -> list[tuple[bytes, bytes]]: ...


class RefusedError(Exception):
    """A request the edge answers itself with `page` instead of forwarding it. `reason` is for
    the log; `accept` is the request's Accept header, if it was read (it picks HTML or JSON)."""

    def __init__(self, page: ErrorPage, reason: str, accept: bytes | None = None) -> None:
        super().__init__(reason)
        self.page = page
        self.reason = reason
        self.accept = accept


class PreparedRequest(NamedTuple):
    """A request head checked and rewritten for the upstream."""

    #: The routing name from Host (see `route_host`).
    host: str
    #: The client's Accept header, for choosing an error page's format.
    accept: bytes | None
    #: The headers to send upstream, without the Connection/Upgrade pair.
    headers: Headers
    #: The Upgrade value if this is an upgrade request (Connection names "upgrade"), else None.
    upgrade: bytes | None


def route_host(value: bytes) -> str | None:
    """The routing name in a Host header value: lowercased, port and one trailing dot removed
    (`Example.COM.:8080` -> `example.com`; `[::1]:80` -> `::1`); None if it is not a name or an
    address."""
    try:
        text = value.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    match = _HOST_VALUE.fullmatch(text)
    if match is None:
        return None
    name = match.group(1)
    if name is None:
        return match.group(2)
    return name.removesuffix(".") or None


def prepare_request(
    request: h11.Request,
    chunks: Sequence[bytes | bytearray],
    *,
    client_ip: bytes,
    scheme: bytes,
) -> PreparedRequest:
    """Check `request` (parsed from the bytes in `chunks`, which may run past its head) and
    rewrite its headers for the upstream, adding `client_ip` and `scheme` ("http"/"https") to
    the X-Forwarded-* headers. Raises RefusedError for a request the edge will not forward."""
    headers: Headers = []
    tokens: set[bytes] = set()
    host = accept = upgrade = forwarded_host = None
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    lengths = 0
    chunked = False
    tags = _REQUEST_TAGS
    for raw, value in request.headers.raw_items():
        tag = tags.get(raw.lower())
        if tag is None:
            headers.append((raw, value))
        elif tag == _HOP:
            pass
        elif tag == _CONNECTION:
            tokens.update(token.strip().lower() for token in value.split(b","))
        elif tag == _UPGRADE:
            upgrade = value
        elif tag == _XFF:
            forwarded_for.append(value)
        elif tag == _XFP:
            forwarded_proto.append(value)
        elif tag == _XFH:
            if forwarded_host is None:
                forwarded_host = value
        else:
            if tag == _HOST:
                host = value
            elif tag == _CL:
                lengths += 1
            elif tag == _TE:
                chunked = True
            elif tag == _ACCEPT:
                accept = value
            headers.append((raw, value))
    if request.method == b"CONNECT":
        raise RefusedError(method_not_allowed("CONNECT"), "CONNECT request", accept)
    if lengths and chunked:
        raise RefusedError(
            bad_request(400, "The request has both Content-Length and Transfer-Encoding."),
            "Content-Length with Transfer-Encoding",
            accept,
        )
    if lengths:
        # h11 folds repeated equal Content-Length lines into one; the raw head shows them.
        values = _CONTENT_LENGTH_LINE.findall(raw_head(chunks).lower())
        if len(values) != 1 or b"," in values[0]:
            raise RefusedError(
                bad_request(400, "The request has more than one Content-Length."),
                "repeated Content-Length",
                accept,
            )
    route = route_host(host) if host is not None else None
    if host is None or route is None:
        raise RefusedError(
            bad_request(400, "The request needs a valid Host header."), "bad Host", accept
        )
    drop = tokens - _PROTECTED
    if drop:
        headers = [item for item in headers if item[0].lower() not in drop]
        if b"x-forwarded-for" in drop:
            forwarded_for = []
        if b"x-forwarded-proto" in drop:
            forwarded_proto = []
        if b"x-forwarded-host" in drop:
            forwarded_host = None
    _append_forwarded(
        headers,
        [*forwarded_for, client_ip],
        [*forwarded_proto, scheme],
        host if forwarded_host is None else forwarded_host,
    )
    if b"upgrade" not in tokens:
        upgrade = None
    return PreparedRequest(route, accept, headers, upgrade)


def translate_h2_request(
    fields: Sequence[tuple[bytes, bytes]],
    *,
    body: bool,
    client_ip: bytes,
    scheme: bytes,
) -> H2Request:
    """The HTTP/1.1 request for an HTTP/2 request's header list `fields` (pseudo-headers
    included, names lowercase as HTTP/2 requires). `body` says whether a body follows the head:
    it is framed by the request's Content-Length, else chunked. Host is `:authority` (else the
    `host` header); hop-by-hop headers are dropped and `cookie` crumbs joined into one header
    (RFC 9113 §8.2.3); `X-Forwarded-*` as `prepare_request` sets them. Every upstream stream
    carries one HTTP/2 request, so the head asks the upstream to close after it.

    Raises RefusedError for CONNECT, a missing or invalid authority, a missing method or path,
    and conflicting Content-Length values.
    """
    method = target = authority = host_header = accept = forwarded_host = None
    headers: Headers = []
    cookies: list[bytes] = []
    lengths: set[bytes] = set()
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    tags = _REQUEST_TAGS
    for name, value in fields:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
            continue  # :scheme is the edge's own; :protocol only rides on CONNECT
        tag = tags.get(name)
        if tag is None:
            if name == b"cookie":
                cookies.append(value)
            else:
                headers.append((name, value))
        elif tag == _HOST:
            host_header = value
        elif tag == _CL:
            lengths.add(value.strip())
        elif tag == _ACCEPT:
            accept = value
            headers.append((name, value))
        elif tag == _XFF:
            forwarded_for.append(value)
        elif tag == _XFP:
            forwarded_proto.append(value)
        elif tag == _XFH and forwarded_host is None:
            forwarded_host = value
        # else: hop-by-hop, Connection, Upgrade, Transfer-Encoding (HTTP/2 frames its own body)
    if method == b"CONNECT":
        raise RefusedError(method_not_allowed("CONNECT"), "CONNECT request", accept)
    if authority is None:
        authority = host_header
    route = route_host(authority) if authority is not None else None
    if authority is None or route is None:
        raise RefusedError(
            bad_request(400, "The request needs a valid :authority."), "bad :authority", accept
        )
    if method is None or not target:
        raise RefusedError(
            bad_request(400, "The request needs :method and :path."), "no :method/:path", accept
        )
    if len(lengths) > 1:
        raise RefusedError(
            bad_request(400, "The request has more than one Content-Length."),
            "conflicting Content-Length",
            accept,
        )
    out: Headers = [(b"host", authority), *headers]
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    if lengths:
        out.append((b"content-length", lengths.pop()))
    elif body:
        out.append((b"transfer-encoding", b"chunked"))
    out.append((b"connection", b"close"))
    _append_forwarded(
        out,
        [*forwarded_for, client_ip],
        [*forwarded_proto, scheme],
        authority if forwarded_host is None else forwarded_host,
    )
    return H2Request(method, target, route, accept, out)


def _append_forwarded(
    headers: Headers, forwarded_for: list[bytes], forwarded_proto: list[bytes], host: bytes
) -> None:
    """Append X-Forwarded-For/-Host/-Proto: the chains so far (this hop already added)."""
    headers.append((b"X-Forwarded-For", b", ".join(forwarded_for)))
    headers.append((b"X-Forwarded-Host", host))
    headers.append((b"X-Forwarded-Proto", b", ".join(forwarded_proto)))


def response_headers(headers: RawHeaders, *, upgrade: bool) -> Headers:
    """A response's headers as the client gets them: hop-by-hop and edge-only ones removed;
    for a 101, `Connection: upgrade` and the upstream's `Upgrade` kept."""
    out: Headers = []
    tokens: set[bytes] = set()
    upgrade_value = None
    tags = _RESPONSE_TAGS
    for raw, value in headers.raw_items():
        tag = tags.get(raw.lower())
        if tag is None:
            out.append((raw, value))
        elif tag == _CONNECTION:
            tokens.update(token.strip().lower() for token in value.split(b","))
        elif tag == _UPGRADE:
            upgrade_value = value
    drop = tokens - _PROTECTED
    if drop:
        out = [item for item in out if item[0].lower() not in drop]
    if upgrade:
        out.append((b"Connection", b"upgrade"))
        if upgrade_value is not None:
            out.append((b"Upgrade", upgrade_value))
    return out


def h2_response_headers(status: int, headers: RawHeaders) -> Headers:
    """An HTTP/1.1 response head as an HTTP/2 header list: `:status` first, names lowercased,
    hop-by-hop, connection-specific and edge-only headers removed (as `response_headers`)."""
    return h2_response_fields(status, response_headers(headers, upgrade=False))


def h2_response_fields(status: int, headers: Headers) -> Headers:
    """Response headers already cleared of hop-by-hop and edge-only ones (`response_headers`)
    as an HTTP/2 header list: `:status` first, names lowercased, connection-specific ones
    removed."""
    out: Headers = [(b":status", b"%d" % status)]
    for name, value in headers:
        lower = name.lower()
        if lower not in _H2_CONNECTION_SPECIFIC:
            out.append((lower, value))
    return out


def raw_head(chunks: Sequence[bytes | bytearray]) -> bytes:
    """The bytes of a request head (through its empty line) from the chunks it arrived in; all
    of them if no empty line is among them yet."""
    joined = b"".join(chunks)
    match = _HEAD_END.search(joined)
    return joined if match is None else joined[: match.end()]


def head_error_page(status: int, max_head_size: int) -> ErrorPage:
    """The page for a request head h11 refused with `status` (its `error_status_hint`)."""
    if status == 431:
        return bad_request(431, f"The request head is larger than {max_head_size} bytes.")
    if status == 501:
        return bad_request(501, "Only Transfer-Encoding: chunked is supported.")
    return bad_request(status if 400 <= status < 600 else 400, "The request is malformed.")
