"""The one seam every public HTTP request passes through, whatever HTTP version it came in.

Theory of operation
-------------------
HTTP/1.1 (`edge/http/h1/proxy.py`, one client connection; `edge/http/h1/exchange.py`, one
relay) and HTTP/2 (`edge/http/h2/proxy.py`, one client connection; `edge/http/h2/stream.py`,
one request stream) own their framing, flow control and timers. What a request *means* is
decided here, once, for both:

1. The shell turns the request head into one value, `HttpRequest` (method, target, routing
   host, scheme, the headers to forward, the client's address, the TLS SNI).
2. `decide` picks what happens to it: forward it to an endpoint (`HttpRoute`, found by
   `HttpRouter.route`: `edge/http/routing.py`), or answer it here with a page (`Refusal`).
3. The shell opens an *agent stream* (`HttpRoute.open_agent_stream`) and relays; the agent
   pipes it to the *upstream*, the customer's service. The response head the client gets is
   `client_response_headers`.
4. Whatever goes wrong (no endpoint, an agent that cannot be reached, an upstream the agent
   cannot dial, a broken or missing response, a timeout, a bad request body) is a `Failure`,
   and `failure_response` is the one mapping from a failure to the status, error code and
   page the client gets (the pages themselves are `edge/http/error_pages.py`):

| Failure              | status | code           | when                                          |
| -------------------- | ------ | -------------- | --------------------------------------------- |
| NO_ENDPOINT          | 404    | ERR_NGROK_3200 | no endpoint online for the host               |
| AGENT_UNREACHABLE    | 502    | ERR_NGROK_3200 | opening the agent stream failed               |
| AGENT_TOO_SLOW       | 502    | ERR_NGROK_3200 | ... or took longer than `idle_timeout`        |
| AGENT_AT_CAPACITY    | 503    | BURROW_*       | the agent's session, or the endpoint's share  |
|                      |        |                | of it, holds all the streams it may           |
| UPSTREAM_UNREACHABLE | 502    | ERR_NGROK_8012 | the agent reset its stream STREAM_REFUSED     |
| INVALID_RESPONSE     | 502    | ERR_NGROK_3004 | EOF, another reset or non-HTTP bytes          |
| RESPONSE_TIMEOUT     | 504    | BURROW_*       | nothing moved for `idle_timeout`, no response |
| BAD_BODY             | 400    | BURROW_*       | a request body that breaks its framing        |
| UNFORWARDABLE        | 400    | BURROW_*       | a head `RequestHead.of` will not forward      |
| HEAD_TIMEOUT         | 408    | BURROW_*       | the request head was not whole in time        |
| BODY_TIMEOUT         | 408    | BURROW_*       | the body came below `body_min_rate` or took   |
|                      |        |                | longer than `body_timeout` (`body_rate.py`)   |

`decide` itself refuses a request whose Host is not the endpoint of its connection's SNI (421
BURROW_MISDIRECTED_REQUEST). Refusals decided while reading the head (bad framing, CONNECT, a
bad Host, a bad request line or target, too many headers) come from
`edge/http/headers.py` as `RefusedError` with their page. Either way the shell logs the answer
with `log_refusal` and renders it with `error_response`.

Traffic Policy. The endpoint's `on_http_request` phase runs in `decide`, once the endpoint is
known and before anything is forwarded, and only when it has a policy (one `is None` check
otherwise): its outcome (`edge.http.policy`) is the request to forward changed (`Policed`, headers
added or removed, target rewritten), a `PolicyAnswer` (deny, custom-response, redirect, 401, 429,
a runtime failure's coded 500) or a `PolicyClose`. Its `on_http_response` phase runs in
`client_response_headers`, on the upstream's final response head before it goes to the client:
header changes, or a `PolicyAnswer` that replaces the response (the shell then discards the
upstream's body and closes the agent stream). Both places serve both HTTP versions; the shells
pass `now` (Unix seconds), so this module keeps no clock.

Everything here but `log_refusal` and `close_agent_stream` is pure: values in, values out, no
clock, no I/O (a policy's `log` records are written by `edge.http.policy` as it runs it).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Literal, overload

import trio

from edge.config import HttpConfig
from edge.endpoints.registry import StreamLimitError
from edge.http.body_buffer import BufferBody
from edge.http.error_pages import (
    ErrorPage,
    agent_unreachable,
    at_capacity,
    bad_request,
    endpoint_offline,
    gateway_timeout,
    invalid_response,
    misdirected_request,
    prefers_json,
    render,
    request_timeout,
    upstream_unreachable,
)
from edge.http.forwarding import ForwardRefused, first_check, follow
from edge.http.headers import Headers, RawHeaders, response_headers
from edge.http.policy import (
    ClientConn,
    Policed,
    PolicyAnswer,
    PolicyClose,
    PolicyForward,
    ResponsePolicy,
    request_phase,
    response_phase,
)
from edge.http.policy_facts import slot_setters
from edge.http.response_body import RewrittenResponse
from edge.http.routing import HttpRoute, HttpRouter
from protocol.adapters.mux import reset_code
from protocol.wire.errors import ErrorCode

__all__ = [
    "CLOSE_TIMEOUT",
    "AgentStreamError",
    "BufferBody",
    "ClientBodyError",
    "ClientGoneError",
    "ClientTooSlowError",
    "Failure",
    "HttpRequest",
    "Policed",
    "PolicyAnswer",
    "PolicyClose",
    "Refusal",
    "RelayError",
    "ResponsePolicy",
    "RewrittenResponse",
    "client_response_headers",
    "close_agent_stream",
    "decide",
    "error_response",
    "failure_kind",
    "failure_response",
    "log_refusal",
    "open_failure",
]

#: A graceful close (a TLS close_notify, a FIN, an agent stream's close) gets this long before
#: it is abandoned.
CLOSE_TIMEOUT = 1.0


# ----------------------------------------------------------------------------- the request


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """One public request as both HTTP versions see it, ready to be decided on."""

    method: bytes
    #: The request target (HTTP/2's `:path`).
    target: bytes
    #: The routing name from Host or `:authority` (`edge.http.headers.route_host`).
    host: str
    scheme: Literal["http", "https"]
    #: The HTTP/1.1 headers to forward (hop-by-hop removed, `X-Forwarded-*` added).
    headers: Headers
    #: The client's Accept header: an error page's format (`error_pages.prefers_json`).
    accept: bytes | None
    #: The public client as "host:port" (logs; the agent stream's ProxyHeader).
    client_addr: str
    #: The TLS server name the client asked for (lowercase, no trailing dot, as the front door's
    #: ClientHello parser gives it); None on the plain-HTTP port. `decide` checks the routing
    #: host against it.
    sni: str | None = None
    #: The connection, for a Traffic Policy's `conn.*` (read only when the endpoint has one).
    conn: ClientConn | None = None
    #: The client's HTTP version, as a policy's `req.version` shows it.
    version: str = "HTTP/1.1"

    def with_head(self, headers: Headers, target: bytes) -> HttpRequest:
        """This request with other `headers` and `target` (a policy's changes, made once per
        request a policy changes): `dataclasses.replace` at a fifth of its cost, every other
        field set as it is here (by the slot setters below, one per field: a field added to
        the class and not to them fails at import)."""
        new = _new(HttpRequest)
        _SET_REQUEST_METHOD(new, self.method)
        _SET_REQUEST_TARGET(new, target)
        _SET_REQUEST_HOST(new, self.host)
        _SET_REQUEST_SCHEME(new, self.scheme)
        _SET_REQUEST_HEADERS(new, headers)
        _SET_REQUEST_ACCEPT(new, self.accept)
        _SET_REQUEST_CLIENT_ADDR(new, self.client_addr)
        _SET_REQUEST_SNI(new, self.sni)
        _SET_REQUEST_CONN(new, self.conn)
        _SET_REQUEST_VERSION(new, self.version)
        return new


_new = object.__new__
(
    _SET_REQUEST_METHOD,
    _SET_REQUEST_TARGET,
    _SET_REQUEST_HOST,
    _SET_REQUEST_SCHEME,
    _SET_REQUEST_HEADERS,
    _SET_REQUEST_ACCEPT,
    _SET_REQUEST_CLIENT_ADDR,
    _SET_REQUEST_SNI,
    _SET_REQUEST_CONN,
    _SET_REQUEST_VERSION,
) = slot_setters(  # raises at import if a field is added to HttpRequest and not here
    HttpRequest,
    (
        "method",
        "target",
        "host",
        "scheme",
        "headers",
        "accept",
        "client_addr",
        "sni",
        "conn",
        "version",
    ),
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer the edge gives itself: the page, and the reason for the log."""

    page: ErrorPage
    reason: str


def decide(
    request: HttpRequest, router: HttpRouter, *, now: float
) -> HttpRoute | Refusal | Policed | PolicyAnswer | PolicyClose | BufferBody:
    """Where `request` goes: the endpoint to forward it to, or the page to answer with (404
    ERR_NGROK_3200 when no endpoint for its host and scheme is online; 421
    BURROW_MISDIRECTED_REQUEST when its Host is not the endpoint its connection was made for).

    Host and SNI. A TLS connection was terminated with the certificate of its SNI's endpoint,
    so a request on it whose Host names another endpoint (another customer's, perhaps, or none)
    is not forwarded: it gets 421 Misdirected Request (RFC 9110 §15.5.20), as CDNs answer, and
    a client that reused the connection for another name (HTTP/2 coalescing, RFC 9113 §9.1.1)
    retries on a new one. A Host that is another name of the same endpoint (under a wildcard)
    is forwarded. The plain-HTTP port has no SNI: Host alone decides there.

    Traffic Policy. When the endpoint has a policy, its `on_http_request` phase runs here, for
    HTTP/1.1 and HTTP/2 alike, after the lookup (the policy belongs to the endpoint) and before
    the agent stream is opened, at `now` (Unix seconds): `Policed` (forward `Policed.request`,
    its changes applied, to `Policed.route`), `PolicyAnswer` or `PolicyClose`. An endpoint
    without a policy costs one `is None` check. A policy with an action that reads the request
    body (verify-webhook, request-body-find-replace) gets `BufferBody` instead: the shell reads
    the body whole, then runs the phase with `edge.http.body_buffer.decide_with_body`. A
    forward-internal is followed to the internal endpoint (`edge.http.forwarding`), whose
    policy runs too: `Policed.route` is then that endpoint; a failed forward is a `Refusal`
    (404 ERR_NGROK_3200 offline, 502 ERR_NGROK_3501 a loop or too long a chain)."""
    host = request.host
    route = router.route(host, request.scheme)
    sni = request.sni
    if sni is None or sni == host:
        if route is None:
            return _endpoint_offline(host)
    else:
        connected = router.route(sni, request.scheme)
        if route is None or connected is None or route.key != connected.key:
            return _misdirected(host, sni)
    attached = route.policy
    if attached is None:
        return route
    if attached.compiled.reads_request_body:
        return BufferBody(request, route, attached)  # the phase runs once the body is read
    decided = request_phase(
        request, route, attached, now=now, forward_check=first_check(router, route)
    )
    if isinstance(decided, PolicyForward):  # forward-internal: edge/http/forwarding.py
        followed = follow(decided, router, chain=(route.endpoint_facts().url,), now=now)
        if isinstance(followed, ForwardRefused):
            return Refusal(followed.page, followed.reason)
        return followed
    return decided


def _misdirected(host: str, sni: str) -> Refusal:
    return Refusal(misdirected_request(host, sni), f"the connection is for {sni}, another endpoint")


@overload
def client_response_headers(headers: RawHeaders) -> Headers: ...
@overload
def client_response_headers(
    headers: RawHeaders, *, policy: ResponsePolicy, status: int, now: float
) -> Headers | PolicyAnswer | RewrittenResponse: ...
def client_response_headers(
    headers: RawHeaders,
    *,
    policy: ResponsePolicy | None = None,
    status: int = 0,
    now: float = 0.0,
) -> Headers | PolicyAnswer | RewrittenResponse:
    """The headers of the upstream's final response head (`status`) as the client gets them:
    hop-by-hop and edge-only headers removed (`edge.http.headers.response_headers`). HTTP/2
    then lowercases them behind `:status`; a 101 is not a final response and does not come here.

    Traffic Policy: `policy` is `Policed.response` when the endpoint has one; its
    `on_http_response` phase runs here at `now`, for HTTP/1.1 and HTTP/2 alike: the headers
    with its changes, or a `PolicyAnswer` to send instead of the upstream's response (whose body
    the shell then discards, closing the agent stream), or a `RewrittenResponse` when its
    compress-response or response-body-find-replace changes the body: the head to send, and
    the rewrite (`start(http.max_buffered_response_body)`) the shell runs the upstream's body
    through. Without a policy the result is always the headers."""
    cleaned = response_headers(headers, upgrade=False)
    if policy is None:
        return cleaned
    return response_phase(policy, status, cleaned, now=now)


# ------------------------------------------------------------------------------- failures


class RelayError(Exception):
    """Why relaying a request and its response stopped before the response ended."""


class ClientGoneError(RelayError):
    """The client closed or reset its connection (or its HTTP/2 stream), or stopped taking
    bytes."""


class ClientBodyError(RelayError):
    """The client's request body broke its framing (a bad chunk, more or less than its
    Content-Length)."""


class ClientTooSlowError(RelayError):
    """The client's request body came slower than `http.body_min_rate`, or took longer than
    `http.body_timeout` (`edge.http.body_rate`)."""


class AgentStreamError(RelayError):
    """The agent stream ended or was reset, or what came over it is not an HTTP response. (The
    agent pipes the upstream's bytes unchanged, so this is often the upstream's doing; a reset
    raised from a stream error carries the agent's code, see `failure_kind`.)"""

    @classmethod
    def from_upstream(
        cls, exc: Exception, *, ended: bool, head_seen: bool
    ) -> AgentStreamError:
        """What the upstream codec's complaint (`edge.http.h1.upstream.UpstreamError`) about a
        response means: the agent stream ended early (`ended`: its EOF was received), or the
        bytes were not an acceptable response."""
        if ended:
            what = "response" if head_seen else "response head"
            return cls(f"the agent stream ended before a complete {what}")
        return cls(f"invalid response: {exc}")


class Failure(Enum):
    """What went wrong with a request, as far as the client's answer goes."""

    NO_ENDPOINT = "no endpoint"
    AGENT_UNREACHABLE = "agent unreachable"
    AGENT_TOO_SLOW = "agent too slow"
    AGENT_AT_CAPACITY = "agent at capacity"
    UPSTREAM_UNREACHABLE = "upstream unreachable"
    INVALID_RESPONSE = "invalid response"
    RESPONSE_TIMEOUT = "response timeout"
    BAD_BODY = "bad body"
    UNFORWARDABLE = "unforwardable"
    HEAD_TIMEOUT = "head timeout"
    BODY_TIMEOUT = "body timeout"


def open_failure(exc: BaseException) -> Failure:
    """What a failure to open an agent stream (`HttpRoute.open_agent_stream` raised `exc`) means
    for the client: the agent at its stream limit, or the agent unreachable."""
    if isinstance(exc, StreamLimitError):
        return Failure.AGENT_AT_CAPACITY
    return Failure.AGENT_UNREACHABLE


def failure_kind(failure: RelayError) -> Failure | None:
    """The `Failure` a relay error means for the client, or None when the client is gone (there
    is nobody to answer)."""
    if isinstance(failure, ClientGoneError):
        return None
    if isinstance(failure, ClientBodyError):
        return Failure.BAD_BODY
    if isinstance(failure, ClientTooSlowError):
        return Failure.BODY_TIMEOUT
    cause = failure.__cause__  # a stream error carries the agent's reset code
    if reset_code(cause if cause is not None else failure) == ErrorCode.STREAM_REFUSED:
        return Failure.UPSTREAM_UNREACHABLE
    return Failure.INVALID_RESPONSE


def failure_response(
    failure: Failure,
    *,
    limits: HttpConfig,
    host: str = "",
    forwards_to: str = "",
    detail: str = "",
) -> Refusal:
    """The answer to `failure`: its page (status, error code, body) and the reason to log.
    `host` is the request's routing name, `forwards_to` the endpoint's upstream as its agent
    described it, `detail` what the relay or a codec said (logged where there is one)."""
    if failure is Failure.NO_ENDPOINT:
        return _endpoint_offline(host)
    if failure is Failure.AGENT_UNREACHABLE:
        return Refusal(agent_unreachable(host), "the agent is unreachable")
    if failure is Failure.AGENT_TOO_SLOW:
        return Refusal(agent_unreachable(host), "the agent did not open a stream in time")
    if failure is Failure.AGENT_AT_CAPACITY:
        return Refusal(at_capacity(host), f"the agent is at its stream limit: {detail}")
    if failure is Failure.UPSTREAM_UNREACHABLE:
        return Refusal(
            upstream_unreachable(forwards_to), f"the agent could not reach {forwards_to}"
        )
    if failure is Failure.INVALID_RESPONSE:
        return Refusal(invalid_response(), detail)
    if failure is Failure.RESPONSE_TIMEOUT:
        return Refusal(
            gateway_timeout(limits.idle_timeout),
            "nothing moved for the idle timeout before a response",
        )
    if failure is Failure.BAD_BODY:
        return Refusal(bad_request(400, "The request body is malformed."), detail)
    if failure is Failure.UNFORWARDABLE:
        page = bad_request(400, "The request cannot be forwarded.")
        return Refusal(page, f"unforwardable request: {detail}")
    if failure is Failure.BODY_TIMEOUT:
        message = (
            f"The request body came too slowly: it must average {limits.body_min_rate} bytes a "
            f"second and arrive within {limits.body_timeout:g} seconds."
        )
        return Refusal(bad_request(408, message), detail)
    assert failure is Failure.HEAD_TIMEOUT
    return Refusal(request_timeout(limits.head_timeout), "the request head was too slow")


def _endpoint_offline(host: str) -> Refusal:
    return Refusal(endpoint_offline(host), "no endpoint is online")


def error_response(page: ErrorPage, accept: bytes | None) -> tuple[Headers, bytes]:
    """A page's headers (HTTP/1.1 spelling) and body, HTML or JSON as `accept` prefers."""
    return render(page, as_json=prefers_json(accept))


def log_refusal(
    logger: logging.Logger, label: str, peer: str, host: str | None, page: ErrorPage, reason: str
) -> None:
    """Log an answer the edge gave itself: WARNING for what an operator may need to act on
    (agents, upstreams: 502, 503, 504), INFO for what clients get wrong. `label` names the protocol
    ("http", "http2"), `peer` the client."""
    level = logging.WARNING if page.status in (502, 503, 504) else logging.INFO
    logger.log(
        level, "%s %s: %s: %d %s: %s", label, peer, host or "-", page.status, page.code, reason
    )


# ------------------------------------------------------------------------ the agent stream


async def close_agent_stream(stream: trio.abc.HalfCloseableStream, *, clean: bool) -> None:
    """Close an agent stream: gracefully (within `CLOSE_TIMEOUT`) after a clean exchange, so
    the agent sees an orderly end, else at once. Never raises but for cancellation."""
    if not clean:
        await trio.aclose_forcefully(stream)
        return
    with trio.move_on_after(CLOSE_TIMEOUT):
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()
            return
    await trio.aclose_forcefully(stream)
