"""What a policy's body actions do to a response head and its body
(edge/http/response_body.py): the plan, find-replace within its bound, compression last."""

from __future__ import annotations

import dataclasses
import gzip
import logging
import zlib

import brotli
import h11
import pytest
import re2

from edge.http.headers import Headers
from edge.http.response_body import (
    BodyPlan,
    BodyRewrite,
    RewrittenResponse,
    plan_body,
    replace_all,
)
from edge.http.seam import (
    Policed,
    PolicyAnswer,
    PolicyClose,
    client_response_headers,
)
from edge.policy.run_response_body import BodyStep, CompressStep, FindReplaceStep
from tests.edge.http.test_policy import policed
from tests.edge.http.test_seam import NOW
from tests.edge.http.test_seam import request as seam_request

GZIP = CompressStep(("gzip", "deflate", "br"))
ACCEPT = (("accept-encoding", "gzip, deflate"),)
TEXT: Headers = [(b"Content-Type", b"text/html"), (b"Content-Length", b"5000")]


def swap(pattern: str, to: str) -> FindReplaceStep:
    return FindReplaceStep(((re2.compile(pattern), to),))


def plan(
    steps: tuple[BodyStep, ...],
    headers: Headers = TEXT,
    *,
    method: str = "GET",
    status: int = 200,
    accept: tuple[tuple[str, str], ...] = ACCEPT,
) -> BodyPlan:
    return plan_body(steps, method=method, status=status, request_headers=accept, headers=headers)


def names(headers: Headers) -> list[bytes]:
    return [name.lower() for name, _ in headers]


def value(headers: Headers, name: bytes) -> bytes | None:
    found = [v for n, v in headers if n.lower() == name]
    return found[0] if found else None


# --- the plan --------------------------------------------------------------------------------
def test_compression_sets_the_coding_and_fixes_the_head() -> None:
    headers: Headers = [*TEXT, (b"ETag", b'"v1"'), (b"Accept-Ranges", b"bytes")]
    result = plan((GZIP,), headers)
    assert result.coding == "gzip" and result.rewrites
    assert b"content-length" not in names(result.headers)  # the shell frames the new body
    assert b"accept-ranges" not in names(result.headers)
    assert value(result.headers, b"content-encoding") == b"gzip"
    assert value(result.headers, b"vary") == b"Accept-Encoding"
    assert value(result.headers, b"etag") == b'W/"v1"'  # the bytes changed


@pytest.mark.parametrize(
    ("method", "status", "headers"),
    [
        ("HEAD", 200, TEXT),
        ("GET", 204, [(b"Content-Type", b"text/html")]),
        ("GET", 304, TEXT),
        ("GET", 206, [*TEXT, (b"Content-Range", b"bytes 0-4999/9000")]),
        ("GET", 200, [(b"Content-Type", b"text/html"), (b"Content-Length", b"0")]),
    ],
    ids=["head", "204", "304", "206", "empty"],
)
def test_responses_without_a_body_to_change_are_untouched(
    method: str, status: int, headers: Headers
) -> None:
    result = plan((GZIP, swap("a", "b")), headers, method=method, status=status)
    assert not result.rewrites
    assert result.headers == headers  # not even Vary


@pytest.mark.parametrize(
    "headers",
    [
        [*TEXT, (b"Content-Encoding", b"br")],  # compressed by the upstream already
        [*TEXT, (b"Cache-Control", b"public, no-transform")],  # RFC 9110 §7.7
        [(b"Content-Type", b"image/png"), (b"Content-Length", b"5000")],
        [(b"Content-Type", b"application/zip"), (b"Content-Length", b"5000")],
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"19")],  # would only grow
    ],
    ids=["encoded", "no-transform", "png", "zip", "tiny"],
)
def test_compression_is_skipped_where_it_cannot_help(headers: Headers) -> None:
    result = plan((GZIP,), headers)
    assert result.coding is None and not result.rewrites
    assert result.headers == headers


def test_svg_is_text_and_compressed() -> None:
    headers: Headers = [(b"Content-Type", b"image/svg+xml"), (b"Content-Length", b"900")]
    assert plan((GZIP,), headers).coding == "gzip"


def test_an_unknown_length_is_compressed() -> None:
    headers: Headers = [(b"Content-Type", b"text/plain"), (b"Transfer-Encoding", b"chunked")]
    result = plan((GZIP,), headers)
    assert result.coding == "gzip"
    assert value(result.headers, b"transfer-encoding") == b"chunked"  # framing left to h11


def test_a_client_that_accepts_nothing_gets_the_body_as_is_with_vary() -> None:
    """The response depends on Accept-Encoding either way: a cache must keep them apart."""
    for accept in ((), (("accept-encoding", "identity"),)):
        result = plan((GZIP,), accept=accept)
        assert not result.rewrites
        assert result.headers == [*TEXT, (b"Vary", b"Accept-Encoding")]


def test_vary_is_not_repeated() -> None:
    for vary in (b"Origin, accept-encoding", b"*"):
        headers: Headers = [*TEXT, (b"Vary", vary)]
        result = plan((GZIP,), headers)
        assert [v for n, v in result.headers if n.lower() == b"vary"] == [vary]


def test_the_last_compress_response_decides_the_algorithms() -> None:
    steps = (CompressStep(("gzip",)), CompressStep(("br",)))
    assert plan(steps, accept=(("accept-encoding", "gzip, br"),)).coding == "br"


def test_find_replace_drops_the_length_and_weakens_the_etag() -> None:
    result = plan((swap("a", "b"),), [*TEXT, (b"ETag", b'"x"')])
    assert result.rewrites and result.coding is None
    assert b"content-length" not in names(result.headers)
    assert value(result.headers, b"etag") == b'W/"x"'
    assert value(result.headers, b"vary") is None  # nothing depends on Accept-Encoding


def test_find_replace_on_an_encoded_body_is_skipped_and_said_so() -> None:
    headers: Headers = [*TEXT, (b"Content-Encoding", b"gzip")]
    result = plan((swap("a", "b"), GZIP), headers)
    assert not result.rewrites and result.headers == headers
    assert result.notes == (
        "response-body-find-replace skipped: the body is gzip-encoded by the upstream",
    )


def test_identity_is_no_encoding() -> None:
    headers: Headers = [*TEXT, (b"Content-Encoding", b"identity")]
    assert plan((swap("a", "b"),), headers).replacements


# --- find-replace ----------------------------------------------------------------------------
def test_replace_all_applies_each_pattern_to_the_previous_result() -> None:
    replacements = (
        (re2.compile(r"error_code: ([0-9]+)"), "code=$1"),
        (re2.compile(r"code=(?P<n>\d)"), "C${n}"),
        (re2.compile("secret"), ""),
    )
    text = "error_code: 42 secret error_code: 7"
    assert replace_all(text, replacements) == "C42  C7"
    assert replace_all("nothing here", replacements) == "nothing here"


def rewrite_of(
    steps: tuple[BodyStep, ...], *, limit: int = 1 << 20, headers: Headers = TEXT
) -> tuple[BodyRewrite, list[str]]:
    reports: list[str] = []
    return BodyRewrite(plan(steps, headers), limit=limit, report=reports.append), reports


def run(rewrite: BodyRewrite, chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    return [rewrite.feed(chunk) for chunk in chunks], rewrite.finish()


def test_find_replace_holds_the_body_so_a_match_may_span_reads() -> None:
    rewrite, reports = rewrite_of((swap("Alice Smith", "[REDACTED]"),))
    sent, tail = run(rewrite, [b"<p>Hello Ali", b"ce Sm", b"ith, welcome</p>"])
    assert sent == [b"", b"", b""]  # held until the end
    assert tail == b"<p>Hello [REDACTED], welcome</p>"
    assert reports == []


def test_find_replace_keeps_utf8_text_and_matches_it() -> None:
    rewrite, _ = rewrite_of((swap("café", "tea"),))
    body = "un café, deux cafés".encode()
    assert body[6:8] == "é".encode()
    _, tail = run(rewrite, [body[:7], body[7:]])  # split inside the é
    assert tail == b"un tea, deux teas"


def test_a_body_over_the_limit_is_sent_unchanged_and_reported() -> None:
    rewrite, reports = rewrite_of((swap("x", "y"),), limit=10)
    sent, tail = run(rewrite, [b"xxxx", b"xxxx", b"xxxx", b"xx"])
    assert sent == [b"", b"", b"xxxxxxxxxxxx", b"xx"]  # the held bytes first, then the rest
    assert tail == b""
    assert reports == [
        "response-body-find-replace skipped: the body is over "
        "http.max_buffered_response_body (10 bytes); sent unchanged"
    ]


def test_a_body_that_is_not_utf8_is_sent_unchanged_and_reported() -> None:
    rewrite, reports = rewrite_of((swap("a", "b"),))
    sent, tail = run(rewrite, [b"a\xff\xfea"])
    assert b"".join(sent) + tail == b"a\xff\xfea"
    assert reports == ["response-body-find-replace skipped: the body is not UTF-8 text"]


def test_find_replace_runs_before_compression() -> None:
    rewrite, _ = rewrite_of((GZIP, swap("secret", "public")))
    sent, tail = run(rewrite, [b"a secret ", b"and another secret" * 3])
    assert b"".join(sent) == b""
    assert gzip.decompress(tail) == b"a public " + b"and another public" * 3


def test_compression_alone_streams() -> None:
    rewrite, _ = rewrite_of((CompressStep(("deflate",)),), headers=TEXT)
    decompressor = zlib.decompressobj()
    sent, tail = run(rewrite, [b"first ", b"second"])
    assert [decompressor.decompress(piece) for piece in sent] == [b"first ", b"second"]
    assert decompressor.decompress(tail) == b"" and decompressor.eof


def test_an_overflowing_body_is_still_compressed() -> None:
    rewrite, reports = rewrite_of((GZIP, swap("x", "y")), limit=4)
    sent, tail = run(rewrite, [b"xxx", b"xxx", b"xxx"])
    assert gzip.decompress(b"".join(sent) + tail) == b"xxxxxxxxx"
    assert len(reports) == 1


# --- the outcome the shells get --------------------------------------------------------------
def test_rewritten_response_whole_and_a_chain() -> None:
    first = plan((swap("cat", "dog"),))
    second = plan((GZIP,), first.headers)
    rewritten = RewrittenResponse(first.headers, (first,))
    chained = rewritten.then(RewrittenResponse(second.headers, (second,)))
    assert chained.headers == second.headers and chained.plans == (first, second)
    assert gzip.decompress(chained.whole(b"a cat and a cat")) == b"a dog and a dog"
    stream = chained.start(1 << 20)
    assert stream.feed(b"cat ") == b""  # held by the find-replace
    assert gzip.decompress(stream.feed(b"food") + stream.finish()) == b"dog food"
    headers_only = rewritten.then([(b"X-After", b"1")])
    assert headers_only.headers == [(b"X-After", b"1")] and headers_only.plans == (first,)


# --- at the seam: the response phase's outcome (edge/http/policy.py) -------------------------
def policed_request(text: str, accept: str | None) -> Policed | PolicyAnswer | PolicyClose:
    base = seam_request()
    headers = [*base.headers, (b"Accept-Encoding", accept.encode())] if accept else base.headers
    return policed(text, dataclasses.replace(base, headers=headers))


COMPRESS_POLICY = "on_http_response: [{actions: [{type: compress-response}]}]"


def test_the_response_phase_returns_a_rewrite_for_the_shells() -> None:
    decision = policed_request(COMPRESS_POLICY, "br;q=0.9, gzip;q=0.8")
    assert isinstance(decision, Policed)
    raw = h11.Response(status_code=200, headers=[("Content-Length", "5000")]).headers
    outcome = client_response_headers(raw, policy=decision.response, status=200, now=NOW)
    assert isinstance(outcome, RewrittenResponse)
    assert outcome.headers == [(b"Content-Encoding", b"br"), (b"Vary", b"Accept-Encoding")]
    stream = outcome.start(1 << 20)
    assert brotli.decompress(stream.feed(b"x" * 5000) + stream.finish()) == b"x" * 5000


def test_a_response_phase_with_nothing_to_rewrite_returns_headers() -> None:
    decision = policed_request(COMPRESS_POLICY, None)  # no Accept-Encoding
    assert isinstance(decision, Policed)
    raw = h11.Response(status_code=200, headers=[("Content-Length", "5000")]).headers
    outcome = client_response_headers(raw, policy=decision.response, status=200, now=NOW)
    assert outcome == [(b"Content-Length", b"5000"), (b"Vary", b"Accept-Encoding")]


def test_a_request_phase_answer_is_compressed_whole_with_its_new_length() -> None:
    text = """
on_http_request:
  - actions:
      - type: custom-response
        config: {status_code: 200, body: "maintenance window, back soon. "}
on_http_response:
  - actions:
      - type: response-body-find-replace
        config: {replacements: [{from: soon, to: "at noon"}]}
      - type: compress-response
"""
    decision = policed_request(text, "gzip")
    assert isinstance(decision, PolicyAnswer)
    assert gzip.decompress(decision.body) == b"maintenance window, back at noon. "
    assert (b"Content-Length", b"%d" % len(decision.body)) in decision.headers
    assert (b"Content-Encoding", b"gzip") in decision.headers
    assert sum(name == b"Content-Length" for name, _ in decision.headers) == 1


def test_find_replace_on_an_encoded_upstream_body_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = (
        "on_http_response: [{actions: [{type: response-body-find-replace, "
        "config: {replacements: [{from: a}]}}]}]"
    )
    decision = policed_request(text, None)
    assert isinstance(decision, Policed)
    raw = h11.Response(status_code=200, headers=[("Content-Encoding", "gzip")]).headers
    with caplog.at_level(logging.INFO, logger="edge.http.policy"):
        outcome = client_response_headers(raw, policy=decision.response, status=200, now=NOW)
    assert outcome == [(b"Content-Encoding", b"gzip")]
    assert "response-body-find-replace skipped: the body is gzip-encoded" in caplog.text
