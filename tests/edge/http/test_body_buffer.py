"""edge/http/body_buffer.py: `decide` asks for the body only when the endpoint's policy reads
bodies; `decide_with_body` runs the request phase on it and frames what it forwards by length;
`framed`, `declared_length` and the 413 page."""

from __future__ import annotations

from dataclasses import replace

from edge.endpoints.registry import AttachedPolicy
from edge.http.body_buffer import (
    BufferBody,
    decide_with_body,
    declared_length,
    framed,
    too_large,
)
from edge.http.seam import HttpRequest, Policed, PolicyAnswer, decide
from edge.policy.document import load_policy
from edge.policy.validate import validate
from tests.edge.http.test_seam import NOW, Route, Router, request

REWRITE = """
on_http_request:
  - actions:
      - type: request-body-find-replace
        config: {replacements: [{from: "cat", to: "dog"}]}
"""
VERIFY = """
on_http_request:
  - actions:
      - type: verify-webhook
        config: {provider: shopify, secret: s}
"""


def routed(text: str | None) -> tuple[Route, Router]:
    route = Route()
    if text is not None:
        route.policy = AttachedPolicy(validate(load_policy(text), protocol="https"), text)
    return route, Router({("app.test", "https"): route})


def post(*headers: tuple[bytes, bytes]) -> HttpRequest:
    return replace(request(), method=b"POST", headers=[(b"Host", b"app.test"), *headers])


def test_only_a_policy_that_reads_bodies_makes_decide_ask_for_the_body() -> None:
    route, router = routed(None)
    assert decide(request(), router, now=NOW) is route
    route, router = routed(
        "on_http_request: [{actions: [{type: add-headers, config: {headers: {a: b}}}]}]"
    )
    assert isinstance(decide(request(), router, now=NOW), Policed)
    route, router = routed(REWRITE)
    pending = decide(request(), router, now=NOW)
    assert isinstance(pending, BufferBody) and pending.route is route


def test_decide_with_body_rewrites_and_frames_by_length() -> None:
    _, router = routed(REWRITE)
    chunked = post((b"Transfer-Encoding", b"chunked"), (b"X-Other", b"1"))
    pending = decide(chunked, router, now=NOW)
    assert isinstance(pending, BufferBody)
    outcome = decide_with_body(pending, b"my cat and cat", now=NOW)
    assert isinstance(outcome, Policed)
    assert outcome.body == b"my dog and dog"
    assert outcome.request.headers == [
        (b"Host", b"app.test"),
        (b"X-Other", b"1"),
        (b"Content-Length", b"14"),
    ]
    # The response phase sees the body's length as `req.content_length`.
    assert outcome.response.request.content_length == 14


def test_decide_with_body_forwards_an_unchanged_body_with_its_length() -> None:
    _, router = routed(REWRITE)
    pending = decide(post((b"Content-Length", b"5")), router, now=NOW)
    assert isinstance(pending, BufferBody)
    outcome = decide_with_body(pending, b"horse", now=NOW)
    assert isinstance(outcome, Policed)
    assert outcome.body == b"horse"
    assert declared_length(outcome.request.headers) == 5
    assert [n for n, _ in outcome.request.headers].count(b"Content-Length") == 1


def test_decide_with_body_answers_a_forged_webhook() -> None:
    _, router = routed(VERIFY)
    pending = decide(post((b"X-Shopify-Hmac-Sha256", b"AAAA")), router, now=NOW)
    assert isinstance(pending, BufferBody)
    outcome = decide_with_body(pending, b"{}", now=NOW)
    assert isinstance(outcome, PolicyAnswer) and outcome.status == 403


def test_framed_and_declared_length() -> None:
    headers = [(b"content-length", b"3"), (b"TRANSFER-ENCODING", b"chunked"), (b"a", b"b")]
    assert declared_length(headers) == 3
    assert declared_length([(b"a", b"b")]) is None
    assert framed(headers, 0) == [(b"a", b"b"), (b"Content-Length", b"0")]
    assert framed([(b"a", b"b")], 2) == [(b"a", b"b"), (b"Content-Length", b"2")]
    assert framed([(b"a", b"b")], 0) == [(b"a", b"b")]  # a GET stays without a length


def test_too_large_is_a_coded_413() -> None:
    page = too_large(1024)
    assert (page.status, page.code) == (413, "BURROW_REQUEST_BODY_TOO_LARGE")
    assert "1024" in page.message
    assert page.reason == b"Content Too Large"
