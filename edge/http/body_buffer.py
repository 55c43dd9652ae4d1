"""Request bodies read whole for a Traffic Policy that needs them, for both HTTP versions.

Theory of operation. An endpoint's policy may have an `on_http_request` action that reads the
request body (verify-webhook, request-body-find-replace: `CompiledPolicy.reads_request_body`,
known when the policy is compiled). For such an endpoint `edge.http.seam.decide` does not run
the request phase on the head; it answers `BufferBody`. The shell
(`edge.http.h1.buffered`, `edge.http.h2.buffered`) then reads the whole body, at most
`http.max_buffered_body` bytes (`BodyTooLargeError` past it, answered with `too_large`'s 413 page)
and held to the same `BodyLimits` as a streamed body (a 408 when too slow), and calls
`decide_with_body`, which runs the request phase with the body in `RequestFacts.body`.

A `Policed` outcome then carries the body to forward (`Policed.body`: the policy's rewritten
body, or the one read) and headers framed for it: any Content-Length and Transfer-Encoding the
client sent are replaced by one `Content-Length` of the body's length, so the agent stream gets
a fixed-length body whether the client sent it chunked, with a length, or (HTTP/2) with DATA
frames alone (a request with no body and no framing, a GET, stays without one).

Endpoints without such a policy never come here: their bodies stream as before.

Pure: values in, values out (the request phase's `log` records are written by
`edge.http.policy` as it runs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from edge.endpoints.registry import AttachedPolicy
from edge.http.error_pages import ErrorPage, bad_request
from edge.http.headers import Headers
from edge.http.policy import Policed, PolicyAnswer, PolicyClose, request_phase

if TYPE_CHECKING:
    from edge.http.routing import HttpRoute
    from edge.http.seam import HttpRequest

__all__ = [
    "BodyTooLargeError",
    "BufferBody",
    "decide_with_body",
    "declared_length",
    "framed",
    "too_large",
]

#: The headers that frame a request body: replaced by one Content-Length once it is whole.
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})


_UNSUPPORTED: Final = (
    b"BURROW_POLICY_UNSUPPORTED: this endpoint's Traffic Policy forwards a request whose body it "
    b"read (verify-webhook, request-body-find-replace) to an internal endpoint, which this edge "
    b"does not do yet.\n"
)


class BodyTooLargeError(Exception):
    """The request body is (or says it is) longer than `http.max_buffered_body`."""


@dataclass(frozen=True, slots=True)
class BufferBody:
    """`decide`'s answer for an endpoint whose policy reads request bodies: read the body of
    `request` whole, then call `decide_with_body`."""

    request: HttpRequest
    route: HttpRoute
    attached: AttachedPolicy


def declared_length(headers: Headers) -> int | None:
    """The request's Content-Length, if it sent one (the shells have checked it is valid)."""
    for name, value in headers:
        if name.lower() == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def too_large(limit: int) -> ErrorPage:
    """The 413 page for a body over `limit` bytes (BURROW_REQUEST_BODY_TOO_LARGE)."""
    return bad_request(
        413,
        f"The request body is larger than the {limit} bytes this endpoint's Traffic Policy "
        "can inspect.",
    )


def framed(headers: Headers, length: int) -> Headers:
    """`headers` with its body framing replaced by `Content-Length: length`; a request that
    had no body and still has none (a GET) is left without one, as it came."""
    kept = [(name, value) for name, value in headers if name.lower() not in _FRAMING]
    if length or len(kept) != len(headers):
        kept.append((b"Content-Length", b"%d" % length))
    return kept


def decide_with_body(
    pending: BufferBody, body: bytes, *, now: float
) -> Policed | PolicyAnswer | PolicyClose:
    """Run the request phase of `pending` with its whole `body`, at `now` (Unix seconds):
    forward (the body to send in `Policed.body`, framed by its length), answer, or close."""
    outcome = request_phase(pending.request, pending.route, pending.attached, now=now, body=body)
    if isinstance(outcome, PolicyAnswer | PolicyClose):
        return outcome
    if not isinstance(outcome, Policed):
        # forward-internal after a body action: the body is read, and handing it on to the
        # internal endpoint is not done yet; refuse (fail closed) rather than lose the body.
        return PolicyAnswer(
            500,
            [
                (b"Content-Type", b"text/plain; charset=utf-8"),
                (b"Content-Length", b"%d" % len(_UNSUPPORTED)),
                (b"Burrow-Error-Code", b"BURROW_POLICY_UNSUPPORTED"),
            ],
            _UNSUPPORTED,
            "policy forward-internal after a body action (not supported)",
        )
    final = outcome.body if outcome.body is not None else body
    request = replace(outcome.request, headers=framed(outcome.request.headers, len(final)))
    return replace(outcome, request=request, body=final)
