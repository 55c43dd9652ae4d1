"""edge/http/h1/buffered.py, through the HTTP/1.1 proxy over real loopback sockets: for an
endpoint whose Traffic Policy reads request bodies, the body is read whole (Content-Length or
chunked), the policy runs on it, and the upstream gets the (rewritten) body with a Content-Length
that fits; a body over `http.max_buffered_body` gets 413, a slow one 408, a forged webhook 403.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import replace

import trio

from edge.http.body_buffer import too_large
from tests.edge.http.h1.test_proxy import (
    LIMITS,
    Client,
    Upstream,
    World,
    attach,
    echo_headers,
    header,
    parse_responses,
    raw_exchange,
    read_all,
    world,
)

BODY_LIMITS = replace(LIMITS, max_buffered_body=4096)

REWRITE = """
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: "password=[^&]*"
              to: "password=REDACTED"
"""

VERIFY = """
on_http_request:
  - actions:
      - type: verify-webhook
        config: {provider: github, secret: topsecret}
"""


def upstream_saw(upstream: Upstream, index: int = 0) -> tuple[list[str], list[str], bytes]:
    """The Content-Length and Transfer-Encoding values the upstream got, and the body."""
    request, body = upstream.requests[index]
    headers = list(request.headers)
    return header(headers, "content-length"), header(headers, "transfer-encoding"), body


async def rewriting_world(w: World, text: str = REWRITE) -> Upstream:
    upstream = await w.app("app.test", echo_headers)
    attach(w, "app.test", text)
    return upstream


async def test_body_is_rewritten_and_its_content_length_fixed() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w)
        client = Client(await w.connect())
        body = b"user=ann&password=hunter2&remember=1"
        response = await client.request("POST", "/login", [("host", "app.test")], body)
        assert response.status == 200
        expected = b"user=ann&password=REDACTED&remember=1"
        assert upstream_saw(upstream) == ([str(len(expected))], [], expected)
        assert json.loads(response.body)["body"] == expected.decode()
        # The connection stays usable: the body was read whole.
        again = await client.request("POST", "/x", [("host", "app.test")], b"password=a")
        assert again.status == 200
        assert upstream_saw(upstream, 1)[2] == b"password=REDACTED"
        await client.stream.aclose()


async def test_chunked_body_is_buffered_and_reframed_with_a_length() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w)
        raw = (
            b"POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n"
            b"9\r\npassword=\r\n5\r\nabcde\r\n4\r\n&x=1\r\n0\r\n\r\n"
        )
        [response] = parse_responses(await raw_exchange(w, raw))
        assert response.status == 200
        assert upstream_saw(upstream) == (["21"], [], b"password=REDACTED&x=1")


async def test_empty_and_unchanged_bodies_are_forwarded_with_their_length() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w)
        client = Client(await w.connect())
        assert (await client.request("GET", "/", [("host", "app.test")])).status == 200
        assert (await client.request("POST", "/", [("host", "app.test")], b"hello")).status == 200
        assert upstream_saw(upstream, 0) == ([], [], b"")  # a GET gets no Content-Length
        assert upstream_saw(upstream, 1) == (["5"], [], b"hello")
        await client.stream.aclose()


async def test_declared_length_over_the_limit_is_413_before_reading() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w)
        raw = b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 4097\r\n\r\n"
        [response] = parse_responses(await raw_exchange(w, raw))
        assert response.status == 413
        page = too_large(4096)
        assert response.get("burrow-error-code") == page.code == "BURROW_REQUEST_BODY_TOO_LARGE"
        assert response.get("connection") == "close"
        assert upstream.requests == []


async def test_chunked_body_growing_over_the_limit_is_413() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w)
        chunk = b"1000\r\n" + b"a" * 4096 + b"\r\n"
        raw = b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        [response] = parse_responses(await raw_exchange(w, raw + chunk + b"1\r\nb\r\n"))
        assert response.status == 413
        assert upstream.requests == []


async def test_slow_body_still_times_out_with_408() -> None:
    limits = replace(BODY_LIMITS, body_min_rate=1000, body_rate_window=0.3)
    async with world(limits) as w:
        upstream = await rewriting_world(w)
        stream = await w.connect()
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nab")
        with trio.fail_after(5):
            [response] = parse_responses(await read_all(stream))
        await stream.aclose()
        assert response.status == 408
        assert response.get("burrow-error-code") == "BURROW_REQUEST_TIMEOUT"
        assert upstream.requests == []


async def test_expect_100_continue_is_answered_by_the_edge() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w)
        stream = await w.connect()
        await stream.send_all(
            b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        with trio.fail_after(5):
            first = await stream.receive_some(1024)
        assert first.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(b"password=x")
        [response] = parse_responses(await read_all(stream))
        await stream.aclose()
        assert response.status == 200
        assert upstream_saw(upstream)[2] == b"password=REDACTED"


async def test_webhook_signature_verified_or_refused_with_403() -> None:
    async with world(BODY_LIMITS) as w:
        upstream = await rewriting_world(w, VERIFY)
        client = Client(await w.connect())
        body = b'{"ref":"refs/heads/main"}'
        mac = hmac.new(b"topsecret", body, "sha256").hexdigest()
        headers = [("host", "app.test"), ("x-hub-signature-256", f"sha256={mac}")]
        good = await client.request("POST", "/hook", headers, body)
        assert good.status == 200
        assert upstream_saw(upstream)[2] == body
        bad = await client.request("POST", "/hook", headers, body.replace(b"main", b"evil"))
        assert bad.status == 403
        assert bad.get("ngrok-error-code") == "ERR_NGROK_3204"
        assert len(upstream.requests) == 1
        await client.stream.aclose()
