"""What the edge's HTTP proxy does to headers: pure decisions on parsed heads, no I/O.

Theory of operation
-------------------
The proxy (`edge/http/h1/proxy.py`) relays requests and responses between the public client and
an upstream stream (`edge/http/h1/upstream.py` writes the forwarded head and parses the answer);
this module decides what each head becomes on the way through:

* A request head is checked, routed and rewritten by `prepare_request`: its Host is reduced to
  a routing name (`route_host`); framing h11 accepts but a proxy must not (Content-Length with
  Transfer-Encoding, repeated Content-Length, which h11 folds into one and only the raw bytes
  show, a Content-Length above `MAX_CONTENT_LENGTH`) and CONNECT are refused with an
  `ErrorPage`; so are request lines h11 parses but HTTP/1.1 does not allow (a major version
  other than 1: 505; a target that is neither origin-form nor absolute-form, or `*` with a
  method other than OPTIONS: 400) and heads with more than `http.max_headers` fields (431).
  An absolute-form target (`GET http://host/path`) is routed by its own authority, which
  replaces the Host header, and forwarded in origin-form (`request_target`, RFC 9112 §3.2.2).
  Hop-by-hop headers are dropped, with any header a `Connection` header names; and
  `X-Forwarded-For`/`-Proto` are appended to while `X-Forwarded-Host` is kept if the client
  sent one (so a chain of proxies is visible; ngrok does the same), unless
  `http.replace_x_forwarded_host` says to set it to the request's Host.
* A response head is rewritten by `response_headers`: hop-by-hop headers and the edge's own
  error-code headers are dropped (an upstream must never be able to fake an edge error).
* HTTP/2 (`edge/http/h2/stream.py`) goes through the same rules: `translate_h2_request` turns an
  HTTP/2 header list into an HTTP/1.1 request head (Host from `:authority`, cookies joined,
  the same `X-Forwarded-*`), and `h2_response_headers` turns an HTTP/1.1 response head into an
  HTTP/2 header list (lowercase names, no connection-specific headers, RFC 9113 §8.2.2).

Framing headers (Content-Length, Transfer-Encoding) and Host are never dropped, even when a
`Connection` header names them: the other side is framed from them, so removing one would
desynchronise the two sides. The `Connection`/`Upgrade` pair is carried separately and put back
only for a real upgrade.

Every function takes values and returns values (or raises `RefusedError` with the page to
answer with), so all of it is testable without sockets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from edge.config import HttpConfig
from edge.http.error_pages import ErrorPage, bad_request, method_not_allowed

__all__ = [
    "MAX_CONTENT_LENGTH",
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
    "request_target",
    "response_headers",
    "route_host",
    "translate_h2_request",
]

#: The largest Content-Length forwarded: what a signed 64-bit integer holds (Go's net/http
#: parses it with ParseUint(v, 10, 63); nginx and most servers keep it in an off_t). An upstream
#: that keeps 64 bits would read 2^64+5 as 5 and take the rest of the body for the next request,
#: so a larger value is refused (400: RFC 9112 §6.3 makes an unusable length a bad request).
MAX_CONTENT_LENGTH = 2**63 - 1

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
#: An absolute-form request target (RFC 9112 §3.2.2): http(s)://authority, then the rest.
_ABSOLUTE_FORM = re.compile(rb"[hH][tT][tT][pP][sS]?://([^/?#]*)(.*)", re.DOTALL)


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


class RequestFields(RawHeaders, Protocol):
    """A parsed request's header list (h11's, or `edge.http.h1.client.RequestFields`)."""

    def __len__(self) -> int: ...


class ParsedRequest(Protocol):
    """A parsed request head: an `h11.Request`, or `edge.http.h1.client.Request`."""

    @property
    def method(self) -> bytes: ...
    @property
    def target(self) -> bytes: ...
    @property
    def http_version(self) -> bytes: ...
    @property
    def headers(self) -> RequestFields: ...


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
    #: The request target to forward: origin-form (an absolute-form one rewritten), or `*`.
    target: bytes


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


def request_target(
    method: bytes, target: bytes, *, absolute: bool, accept: bytes | None = None
) -> tuple[bytes, bytes | None]:
    """The target to forward and, for an absolute-form target, its authority (the name to route
    by and to send as Host, RFC 9112 §3.2.2): `(target, None)` for origin-form (`/...`) and for
    `*` with OPTIONS; `(b"/path?query", b"host:port")` for `http://host:port/path?query` (an
    empty path is `/`, or `*` for OPTIONS, §3.2.4). `absolute` says whether absolute-form is
    allowed (HTTP/1.1; HTTP/2's `:path` is never absolute). Raises RefusedError (400) for `*`
    with another method, authority-form (only CONNECT has it, and CONNECT is refused first),
    an absolute-form target with userinfo or without a valid host, and anything else."""
    if target[:1] == b"/":
        return target, None
    if target == b"*":
        if method == b"OPTIONS":
            return target, None
        raise RefusedError(
            bad_request(400, "Only an OPTIONS request may have the request target *."),
            f"{method.decode('ascii', 'replace')} * request",
            accept,
        )
    match = _ABSOLUTE_FORM.fullmatch(target) if absolute else None
    if match is None:
        raise RefusedError(
            bad_request(400, "The request target must be a path (/...) or an http(s) URL."),
            "bad request target",
            accept,
        )
    authority, rest = match.groups()
    # RFC 9110 §4.2.4: userinfo in an http(s) URI is deprecated and a recipient should treat it
    # as an error (it is a phishing vector); an empty or invalid host routes nowhere.
    if b"@" in authority or route_host(authority) is None:
        raise RefusedError(
            bad_request(400, "The request target's URL has no valid host."),
            "bad authority in an absolute-form target",
            accept,
        )
    if not rest:
        return (b"*" if method == b"OPTIONS" else b"/"), authority
    if rest[:1] == b"?":
        return b"/" + rest, authority
    if rest[:1] == b"/":
        return rest, authority
    raise RefusedError(  # a fragment: never part of a request target (RFC 9112 §3.2)
        bad_request(400, "The request target must not carry a fragment (#)."),
        "fragment in the request target",
        accept,
    )


def _too_many_headers(count: int, max_headers: int) -> RefusedError:
    return RefusedError(
        bad_request(431, f"The request has more than {max_headers} header fields."),
        f"{count} header fields (http.max_headers is {max_headers})",
    )


def _content_length_limit(value: bytes, accept: bytes | None) -> None:
    """Raise RefusedError (400) unless `value` is a Content-Length an upstream can hold."""
    value = value.strip()
    if not value.isdigit() or int(value) > MAX_CONTENT_LENGTH:
        raise RefusedError(
            bad_request(400, "The request's Content-Length is not a usable length."),
            f"Content-Length {value[:40].decode('ascii', 'replace')} beyond 2^63-1",
            accept,
        )


def prepare_request(
    request: ParsedRequest,
    chunks: Sequence[bytes | bytearray],
    *,
    client_ip: bytes,
    scheme: bytes,
    max_headers: int = HttpConfig.max_headers,
    replace_forwarded_host: bool = HttpConfig.replace_x_forwarded_host,
) -> PreparedRequest:
    """Check `request` (parsed from the bytes in `chunks`, which may run past its head) and
    rewrite its headers for the upstream, adding `client_ip` and `scheme` ("http"/"https") to
    the X-Forwarded-* headers. `max_headers` and `replace_forwarded_host` are the
    `http.max_headers` and `http.replace_x_forwarded_host` settings. Raises RefusedError for a
    request the edge will not forward."""
    count = len(request.headers)
    if count > max_headers:
        raise _too_many_headers(count, max_headers)
    headers: Headers = []
    tokens: set[bytes] = set()
    host = accept = upgrade = forwarded_host = length = None
    host_at = 0  # where the Host header is in `headers`
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
                host_at = len(headers)
            elif tag == _CL:
                lengths += 1
                length = value
            elif tag == _TE:
                chunked = True
            elif tag == _ACCEPT:
                accept = value
            headers.append((raw, value))
    version = request.http_version
    if not version.startswith(b"1."):
        # RFC 9112 §2.3: a server may answer 505 to refuse a major version; an HTTP/2 request
        # line is not HTTP/1.1, and what follows it is not HTTP/1.1 framing.
        raise RefusedError(
            bad_request(505, "This connection speaks HTTP/1.x only."),
            f"HTTP/{version.decode('ascii', 'replace')} request line",
            accept,
        )
    if request.method == b"CONNECT":
        raise RefusedError(method_not_allowed("CONNECT"), "CONNECT request", accept)
    target, authority = request_target(request.method, request.target, absolute=True, accept=accept)
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
        assert length is not None
        _content_length_limit(length, accept)
    if authority is not None:
        # RFC 9112 §3.2.2: the target's authority replaces Host, for routing and upstream.
        if host is None:  # HTTP/1.0 may leave Host out
            headers.append((b"Host", authority))
        else:
            headers[host_at] = (headers[host_at][0], authority)
        host = authority
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
    if replace_forwarded_host:
        forwarded_host = None
    _append_forwarded(
        headers,
        [*forwarded_for, client_ip],
        [*forwarded_proto, scheme],
        host if forwarded_host is None else forwarded_host,
    )
    if b"upgrade" not in tokens:
        upgrade = None
    return PreparedRequest(route, accept, headers, upgrade, target)


def translate_h2_request(
    fields: Sequence[tuple[bytes, bytes]],
    *,
    body: bool,
    client_ip: bytes,
    scheme: bytes,
    max_headers: int = HttpConfig.max_headers,
    replace_forwarded_host: bool = HttpConfig.replace_x_forwarded_host,
) -> H2Request:
    """The HTTP/1.1 request for an HTTP/2 request's header list `fields` (pseudo-headers
    included, names lowercase as HTTP/2 requires). `body` says whether a body follows the head:
    it is framed by the request's Content-Length, else chunked. Host is `:authority` (else the
    `host` header); hop-by-hop headers are dropped and `cookie` crumbs joined into one header
    (RFC 9113 §8.2.3); `X-Forwarded-*` as `prepare_request` sets them. No Connection header:
    the agent stream, and the upstream connection behind it, may carry the HTTP/2
    connection's next request (`edge.http.h2.kept`).

    Raises RefusedError for CONNECT, a missing or invalid authority, a missing method or path,
    a `:path` that is not origin-form (or `*` for OPTIONS), conflicting Content-Length values
    or one above `MAX_CONTENT_LENGTH` (400), and more than `max_headers` fields (431; pseudo-
    headers aside, cookie crumbs counting as the one header they become).
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
    # Header fields, pseudo-headers aside; cookie crumbs count as the one header they become.
    count = sum(1 for name, _ in fields if name[:1] != b":" and name != b"cookie")
    count += 1 if cookies else 0
    if count > max_headers:
        raise _too_many_headers(count, max_headers)
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
    target, _ = request_target(method, target, absolute=False, accept=accept)
    for length in lengths:
        _content_length_limit(length, accept)
    if replace_forwarded_host:
        forwarded_host = None
    out: Headers = [(b"host", authority), *headers]
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    if lengths:
        out.append((b"content-length", lengths.pop()))
    elif body:
        out.append((b"transfer-encoding", b"chunked"))
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
