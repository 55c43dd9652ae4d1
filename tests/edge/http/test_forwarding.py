"""Tests for edge/http/forwarding.py: forward-internal on HTTP, through the seam's `decide` (the
one call both HTTP versions make). Pure: values in, values out (no sockets, no clock)."""

from __future__ import annotations

import h11
import trio

from edge.endpoints.registry import AttachedPolicy
from edge.http.forwarding import InternalRouter
from edge.http.policy import Policed, PolicyAnswer
from edge.http.seam import HttpRequest, Refusal, client_response_headers, decide
from edge.policy.activation import EndpointFacts
from edge.policy.document import load_policy
from edge.policy.validate import validate

NOW = 1_700_000_000.0


class Route:
    """An endpoint as the seam sees it, with an optional policy."""

    forwards_to = "http://localhost:3000"

    def __init__(self, url: str, policy: str | None = None) -> None:
        self.url = url
        self.key = url
        self.policy = (
            None
            if policy is None
            else AttachedPolicy(validate(load_policy(policy), protocol="https"), policy)
        )

    def endpoint_facts(self) -> EndpointFacts:
        host = self.url.partition("://")[2]
        return EndpointFacts(url=self.url, host=host, port=443, protocol="https")

    async def open_agent_stream(self, client_addr: str) -> trio.abc.HalfCloseableStream:
        raise AssertionError("the decision never opens a stream")


class Router:
    """Public routes by host, internal ones by URL, and the chain limit."""

    def __init__(self, public: Route, *internal: Route, max_forward_hops: int = 5) -> None:
        self.public = public
        self.internal = {route.url: route for route in internal}
        self.max_forward_hops = max_forward_hops

    def route(self, host: str, scheme: str) -> Route | None:
        return self.public if self.public.url == f"{scheme}://{host}" else None

    def route_internal(self, url: str) -> Route | None:
        return self.internal.get(url)


class PublicOnly:
    """A router that knows no internal endpoints (no `route_internal`)."""

    def __init__(self, public: Route) -> None:
        self.public = public

    def route(self, host: str, scheme: str) -> Route | None:
        return self.public


HEADERS = [
    (b"Host", b"api.acme.example"),
    (b"X-Forwarded-For", b"203.0.113.9"),
    (b"X-Forwarded-Host", b"api.acme.example"),
    (b"X-Forwarded-Proto", b"https"),
]


def request() -> HttpRequest:
    return HttpRequest(
        method=b"GET",
        target=b"/records",
        host="api.acme.example",
        scheme="https",
        headers=list(HEADERS),
        accept=None,
        client_addr="203.0.113.9:5000",
        sni="api.acme.example",
    )


def forwarding(url: str, *, extra: str = "", response: str = "") -> str:
    return (
        "on_http_request:\n"
        "  - actions:\n"
        "      - type: add-headers\n"
        "        config: {headers: {x-via: public}}\n"
        "      - type: forward-internal\n"
        f'        config: {{url: "{url}"{extra}}}\n' + response
    )


def order_header(value: str) -> str:
    return (
        "on_http_response:\n"
        "  - actions:\n"
        "      - type: add-headers\n"
        f"        config: {{headers: {{x-order-{value}: '${{res.headers.size()}}'}}}}\n"
    )


PUBLIC = "https://api.acme.example"
API = "https://api.clinic-a.internal"


def test_router_of_the_edge_is_an_internal_router() -> None:
    assert isinstance(Router(Route(PUBLIC)), InternalRouter)
    assert not isinstance(PublicOnly(Route(PUBLIC)), InternalRouter)


def test_a_forward_goes_to_the_internal_endpoint_with_host_and_x_forwarded_kept() -> None:
    target = Route(API)
    router = Router(Route(PUBLIC, forwarding(API)), target)
    decided = decide(request(), router, now=NOW)
    assert isinstance(decided, Policed)
    assert decided.route is target
    # The original Host and X-Forwarded-* stay (no new connection is made); the forwarding
    # policy's changes made before the forward apply.
    assert decided.request.headers == [*HEADERS, (b"x-via", b"public")]
    assert decided.request.host == "api.acme.example"


def test_the_targets_policy_runs_and_response_phases_run_innermost_first() -> None:
    target_policy = (
        "on_http_request:\n"
        "  - actions:\n"
        "      - type: add-headers\n"
        "        config: {headers: {x-via-target: '${endpoint.url}'}}\n" + order_header("target")
    )
    target = Route(API, target_policy)
    router = Router(Route(PUBLIC, forwarding(API, response=order_header("public"))), target)
    decided = decide(request(), router, now=NOW)
    assert isinstance(decided, Policed) and decided.route is target
    assert (b"x-via-target", API.encode()) in decided.request.headers
    upstream = h11.Response(status_code=200, headers=[("Content-Type", "text/plain")])
    headers = client_response_headers(
        upstream.headers, policy=decided.response, status=200, now=NOW
    )
    assert not isinstance(headers, PolicyAnswer)
    # The target's response phase saw one header, the forwarder's saw the target's too.
    assert headers == [
        (b"Content-Type", b"text/plain"),
        (b"x-order-target", b"1"),
        (b"x-order-public", b"2"),
    ]


def test_an_answer_of_the_targets_policy_passes_the_forwarders_response_phase() -> None:
    target = Route(
        API,
        "on_http_request:\n  - actions: [{type: custom-response, config: {status_code: 418}}]\n",
    )
    router = Router(Route(PUBLIC, forwarding(API, response=order_header("public"))), target)
    decided = decide(request(), router, now=NOW)
    assert isinstance(decided, PolicyAnswer)
    assert decided.status == 418
    assert (b"x-order-public", b"1") in decided.headers  # Content-Length, then this


def test_an_offline_target_is_404_err_ngrok_3200() -> None:
    router = Router(Route(PUBLIC, forwarding(API)))
    decided = decide(request(), router, now=NOW)
    assert isinstance(decided, Refusal)
    assert (decided.page.status, decided.page.code) == (404, "ERR_NGROK_3200")
    assert API in decided.page.message


def test_a_router_without_internal_endpoints_finds_no_target() -> None:
    decided = decide(request(), PublicOnly(Route(PUBLIC, forwarding(API))), now=NOW)
    assert isinstance(decided, Refusal) and decided.page.code == "ERR_NGROK_3200"


def test_a_loop_is_refused_with_3501() -> None:
    other = "https://other.clinic-a.internal"
    router = Router(Route(PUBLIC, forwarding(API)), Route(API, forwarding(other)))
    router.internal[other] = Route(other, forwarding(API))
    decided = decide(request(), router, now=NOW)
    assert isinstance(decided, Refusal)
    assert (decided.page.status, decided.page.code) == (502, "ERR_NGROK_3501")
    assert "loop" in decided.page.message
    assert f"{PUBLIC} -> {API} -> {other} -> {API}" in decided.page.message


def test_a_chain_past_the_limit_is_refused_with_3501_and_one_within_it_is_served() -> None:
    last = Route("https://c.internal")
    routes = (
        Route("https://a.internal", forwarding("https://b.internal")),
        Route("https://b.internal", forwarding("https://c.internal")),
        last,
    )
    within = Router(Route(PUBLIC, forwarding("https://a.internal")), *routes, max_forward_hops=3)
    served = decide(request(), within, now=NOW)
    assert isinstance(served, Policed) and served.route is last
    beyond = Router(Route(PUBLIC, forwarding("https://a.internal")), *routes, max_forward_hops=2)
    refused = decide(request(), beyond, now=NOW)
    assert isinstance(refused, Refusal) and refused.page.code == "ERR_NGROK_3501"
    assert "may only forward through 2 endpoints" in refused.page.message


def test_on_error_continue_falls_through_with_the_result_variables() -> None:
    policy = forwarding(API, extra=", on_error: continue") + (
        "      - type: custom-response\n"
        "        config:\n"
        "          status_code: 503\n"
        "          body: '${actions.ngrok.forward_internal.error.code}'\n"
    )
    decided = decide(request(), Router(Route(PUBLIC, policy)), now=NOW)
    assert isinstance(decided, PolicyAnswer)
    assert (decided.status, decided.body) == (503, b"ERR_NGROK_3200")
