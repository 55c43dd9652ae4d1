"""edge/http/policy_facts.py: the facts a Traffic Policy sees of HTTP traffic, made from the
seam's request and response as a plain reading would make them."""

from __future__ import annotations

import dataclasses

import pytest

from edge.http.headers import Headers
from edge.http.policy_facts import (
    KNOWN_NAMES,
    NAMES,
    bare_response_facts,
    decoded_headers,
    new_response_facts,
    request_facts,
    request_facts_and_names,
    slot_setters,
)
from edge.http.seam import HttpRequest
from edge.policy.activation import RequestFacts, ResponseFacts
from tests.edge.http.test_seam import request


def reference_facts(request: HttpRequest) -> RequestFacts:
    """The reference for `request_facts`, written out plainly: every header decoded, the last
    Host and the last all-digit Content-Length (by folded name) taken."""
    path, _, query = request.target.decode("latin-1").partition("?")
    headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers)
    host, length = request.host, None
    for name, value in headers:
        if name.lower() == "host":
            host = value
        elif name.lower() == "content-length" and value.isdigit():
            length = int(value)
    return RequestFacts(
        method=request.method.decode("latin-1"),
        scheme=request.scheme,
        host=host,
        path=path if path.startswith("/") else "/" + path,
        query=query,
        headers=headers,
        content_length=length,
        version=request.version,
    )


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"Host", b"app.test")],
        [(b"HOST", b"one.test"), (b"x-a", b"1"), (b"host", b"two.test")],
        [(b"Content-Length", b"12"), (b"Host", b"app.test")],
        [(b"content-length", b"12"), (b"CONTENT-LENGTH", b"x"), (b"Content-Length", b"7")],
        [(b"Content-Length", b"7"), (b"Content-Length", b"nope")],
        [(b"\xc0-Name", b"\xe9t\xe9"), (b"X-\xdc", b"1"), (b"Host", b"h.test")],
    ],
)
def test_request_facts_are_what_the_plain_reading_gives(headers: Headers) -> None:
    req = dataclasses.replace(request(), target=b"small?a=1", headers=headers)
    assert request_facts(req) == reference_facts(req)
    # and the names the phase is given, folded as `header_values` folds them
    facts, lowered = request_facts_and_names(req)
    assert lowered == tuple(name.lower() for name, _ in facts.headers)


def test_the_decoded_header_names_are_kept_up_to_a_bound() -> None:
    before = len(NAMES)
    names = [(b"X-Unseen-%d" % number, b"v") for number in range(KNOWN_NAMES + 10)]
    decoded, lowered = decoded_headers(names)
    assert decoded[-1] == (f"X-Unseen-{KNOWN_NAMES + 9}", "v")
    assert lowered[-1] == f"x-unseen-{KNOWN_NAMES + 9}"
    assert before <= len(NAMES) == KNOWN_NAMES


def test_the_fast_builders_make_what_the_constructors_make() -> None:
    headers = (("Host", "app.test"), ("X-A", "1"), ("Content-Length", "3"))
    req = HttpRequest(
        method=b"GET",
        target=b"/p?q=1",
        host="app.test",
        scheme="https",
        headers=[(name.encode(), value.encode()) for name, value in headers],
        accept=None,
        client_addr="203.0.113.9:5000",
        sni="app.test",
        version="HTTP/2.0",
    )
    facts = request_facts(req)
    assert facts == RequestFacts(
        method="GET",
        scheme="https",
        host="app.test",
        path="/p",
        query="q=1",
        headers=headers,
        content_length=3,
        version="HTTP/2.0",
    )
    assert facts.body is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.method = "POST"  # type: ignore[misc]
    assert new_response_facts(204, headers) == ResponseFacts(status=204, headers=headers)


def test_a_builder_that_misses_a_field_is_refused_at_import() -> None:
    with pytest.raises(TypeError, match="ResponseFacts has the fields"):
        slot_setters(ResponseFacts, ("status", "headers"))
    with pytest.raises(TypeError, match="its builder sets"):
        slot_setters(ResponseFacts, ("headers", "status", "content_length"))


def test_bare_response_facts_are_one_per_status_and_only_for_real_statuses() -> None:
    first = bare_response_facts(299)
    assert first == ResponseFacts(status=299, headers=())
    assert bare_response_facts(299) is first  # kept, one per status
    assert bare_response_facts(299) == first
    assert bare_response_facts(1000) == ResponseFacts(status=1000, headers=())
    # a status no codec passes is made, not kept
    assert bare_response_facts(1000) is not bare_response_facts(1000)
