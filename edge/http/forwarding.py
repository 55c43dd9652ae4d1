"""forward-internal on HTTP: from the policy that forwards a request to the internal endpoint
that serves it, for HTTP/1.1 and HTTP/2 alike (`edge.http.seam.decide` calls this).

Theory of operation. A policy's `on_http_request` that runs forward-internal ends with a
`PolicyForward` (`edge.http.policy`): the target's canonical URL, the request with the
policy's changes, and the forwarding endpoint's response phase. `follow` then looks the target
up (`InternalRouter.route_internal`: online internal http/https endpoints only) and runs *its*
`on_http_request` on the request; that may answer, close, forward again (a chain) or let the
request through, in which case the shell opens the agent stream to the target's agent as for
any endpoint. No new connection is made, so the target's `on_tcp_connect` never runs; the
request keeps the original Host and the `X-Forwarded-For/-Host/-Proto` the shell set for the
public client (ngrok.md §3.3).

Response phases run innermost first: the target's `on_http_response`, then the forwarding
endpoint's (`ResponsePolicy.outer`), as ngrok runs each endpoint's policy on what passes it.
An answer of the target's own policy also passes the forwarding endpoint's response phase.

Failures are edge pages, not policy answers (no response phase runs on them): a target that is
offline is 404 ERR_NGROK_3200; a loop, or a chain past `limits.forward_internal_max_hops`
forwards, is 502 ERR_NGROK_3501 (`edge.policy.forward_internal.chain_check`, which also serves
`on_error: continue`, since the engine asks it before it decides). Everything here is pure:
values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from edge.http.error_pages import ErrorPage
from edge.http.policy import (
    Policed,
    PolicyAnswer,
    PolicyClose,
    PolicyForward,
    ResponsePolicy,
    answer_phase,
    request_phase,
)
from edge.http.routing import HttpRoute, HttpRouter
from edge.policy.forward_internal import (
    ERR_NGROK_3200,
    ERR_NGROK_3501,
    ForwardCheck,
    chain_check,
)

__all__ = ["ForwardRefused", "InternalRouter", "first_check", "follow"]

#: The status of each forward failure's page; any other code (a `${...}` URL that rendered
#: into no internal endpoint URL) is the policy's fault: 500.
_STATUS = {ERR_NGROK_3200: 404, ERR_NGROK_3501: 502}


@runtime_checkable
class InternalRouter(Protocol):
    """A router that can also find internal endpoints (`edge.http.routing.EndpointRouter`)."""

    @property
    def max_forward_hops(self) -> int:
        """How many forwards one request may make (`limits.forward_internal_max_hops`)."""
        ...

    def route_internal(self, url: str) -> HttpRoute | None:
        """The online internal http/https endpoint whose canonical URL is `url`, or None."""
        ...


@dataclass(frozen=True, slots=True)
class ForwardRefused:
    """A forward that failed: the page to answer with, and the reason to log."""

    page: ErrorPage
    reason: str


def _check(router: HttpRouter, chain: tuple[str, ...]) -> ForwardCheck:
    if not isinstance(router, InternalRouter):  # a router with no internal endpoints
        return lambda url: (ERR_NGROK_3200, f"The internal endpoint {url} is offline.")
    internal = router
    return chain_check(
        chain,
        max_hops=internal.max_forward_hops,
        online=lambda url: internal.route_internal(url) is not None,
    )


def first_check(router: HttpRouter, route: HttpRoute) -> ForwardCheck:
    """The forward check for the policy of `route`, the endpoint the request came in to; its
    chain is built only if the policy runs a forward-internal."""

    def check(url: str) -> tuple[str, str] | None:
        return _check(router, (route.endpoint_facts().url,))(url)

    return check


def follow(
    forward: PolicyForward, router: HttpRouter, *, chain: tuple[str, ...], now: float
) -> Policed | PolicyAnswer | PolicyClose | ForwardRefused:
    """Where a forwarded request goes (see the module docstring). `chain` holds the URLs of
    the endpoints the request has passed, the public one first (not yet `forward.url`)."""
    if forward.error is not None:
        return _refused(forward.error)
    url = forward.url
    target = router.route_internal(url) if isinstance(router, InternalRouter) else None
    if target is None:  # the engine's check saw it online in this same step: defensive
        return _refused((ERR_NGROK_3200, f"The internal endpoint {url} is offline."))
    chain = (*chain, url)
    attached = target.policy
    if attached is None:
        return Policed(target, forward.request, forward.response)
    phase = request_phase(
        forward.request, target, attached, now=now, forward_check=_check(router, chain)
    )
    decided = (
        follow(phase, router, chain=chain, now=now) if isinstance(phase, PolicyForward) else phase
    )
    if isinstance(decided, Policed):
        return replace(decided, response=_then(decided.response, forward.response))
    if (
        isinstance(decided, PolicyAnswer)
        and not _is_failure(decided)
        and forward.response.attached.compiled.on_http_response
    ):
        return answer_phase(forward.response, decided, now=now)
    return decided


def _then(first: ResponsePolicy, last: ResponsePolicy) -> ResponsePolicy:
    """`first` (and whatever runs after it) followed by `last`."""
    if not last.attached.compiled.on_http_response:
        return first  # nothing to run
    outer = last if first.outer is None else _then(first.outer, last)
    return replace(first, outer=outer)


def _is_failure(answer: PolicyAnswer) -> bool:
    """A runtime failure's coded 500 (no response phase runs on it)."""
    return any(name == b"Burrow-Error-Code" for name, _ in answer.headers)


def _refused(error: tuple[str, str]) -> ForwardRefused:
    code, message = error
    page = ErrorPage(status=_STATUS.get(code, 500), code=code, message=message)
    return ForwardRefused(page, f"forward-internal failed: {message}")
