"""Tests for edge/http/h2/relay.py: an HTTP/2 request stream's exchange over its agent stream,
written and parsed by the same strict HTTP/1.1 codec as HTTP/1.1 clients get
(`edge/http/h1/upstream.py`), through the real HTTP/2 proxy and the `h2`-library client of
`tests/edge/http/h2/test_proxy.py`'s harness. The hostile responses are those
`tests/edge/http/h1/test_proxy.py` refuses over HTTP/1.1."""

from __future__ import annotations

import json
from pathlib import Path

import h11
import pytest
import trio
from h2.errors import ErrorCodes

from edge.config import CertificateFiles
from protocol.formats.units import KiB
from tests.edge.http.h1.test_proxy import Reply, answering, echo_headers, header
from tests.edge.http.h2 import test_proxy as harness
from tests.edge.http.h2.test_proxy import TIMEOUT, world

# The HTTP/2 tests' fixtures: no ERROR log in any test (autouse), and the certificate files.
no_unexpected_failures = harness.no_unexpected_failures
tls_files = harness.tls_files


def kept_alive(reply: bytes) -> harness.Handler:
    """A keep-alive upstream that answers every bodiless request on its connection with the
    raw bytes `reply`, until the edge closes the connection."""

    async def handler(stream: trio.SocketStream) -> None:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                data = await stream.receive_some(64 * KiB)
                if not data:
                    return
                buffered += data
            buffered = buffered.split(b"\r\n\r\n", 1)[1]
            await stream.send_all(reply)

    return handler


# ----------------------------------------------------------------- the upstream's response

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\nok",  # obs-fold
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\nContent-Length: 2\r\n\r\nok",  # a bare CR
    ],
)
async def test_a_response_a_proxy_must_not_pass_on_is_502_3004(
    tls_files: tuple[Path, CertificateFiles], reply: bytes
) -> None:
    """Smuggling-prone framing, obs-fold, a bare CR and a 101 no one asked for never reach an
    HTTP/2 client either: the edge answers 502 in their place, relays nothing of the
    upstream's head, closes the agent stream (the world's leak check) and the connection
    carries on."""
    async with world(tls_files) as w:
        await w.upstream("app.test", answering(reply))
        route = w.route_list[0]
        async with w.client() as client:
            response = await client.fetch("GET", "/")
            assert response.status == 502 and response.ended
            assert response.get("ngrok-error-code") == "ERR_NGROK_3004"
            assert response.informational == []  # no 101 (nor any 1xx) relayed
            assert response.get("x-a") is None and response.get("x-b") is None
            assert response.get("transfer-encoding") is None
            assert b"folded" not in response.body
            assert client.goaway is None
        assert route.opened == 1  # refused, not retried


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\nX-A: 1\n\nok",  # bare LF line ends
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_a_bare_lf_or_equal_content_lengths_are_relayed_as_ngrok_does(
    tls_files: tuple[Path, CertificateFiles], reply: bytes
) -> None:
    """What RFC 9112 lets a recipient accept and Go's client (ngrok's edge) accepts reaches an
    HTTP/2 client too, with one content-length; and its agent stream is kept for the next
    request (the exchange ended cleanly)."""
    async with world(tls_files) as w:
        upstream = await w.upstream("app.test", kept_alive(reply))
        route = w.route_list[0]
        async with w.client() as client:
            for _ in range(2):
                response = await client.fetch("GET", "/")
                assert response.status == 200 and bytes(response.body) == b"ok"
                assert response.ended and response.get("x-a") == "1"
                assert header(response.headers, "content-length") == ["2"]
            assert route.opened == 1 and upstream.connections == 1


@pytest.mark.parametrize(
    ("reply", "closes"),
    [
        # The upstream keeps its connection open: were the stream kept, the next request
        # would be answered on it (one agent stream, one upstream connection).
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (OK + OK, False),  # more than the request asked for
        (b"HTTP/1.1 200 OK\r\nX-Framing: none\r\n\r\nok", True),  # a body to the close
    ],
)
async def test_an_exchange_the_codec_calls_unreusable_leaves_the_next_request_a_new_stream(
    tls_files: tuple[Path, CertificateFiles], reply: bytes, closes: bool
) -> None:
    """Only an exchange `UpstreamCodec.reusable` approves keeps its agent stream: after a
    `Connection: close`, an HTTP/1.0 answer, bytes beyond the response or a body read to the
    close, the next request gets a new agent stream (and is answered)."""
    async with world(tls_files) as w:
        upstream = await w.upstream("app.test", answering(reply) if closes else kept_alive(reply))
        route = w.route_list[0]
        async with w.client() as client:
            for path in ("/one", "/two"):
                response = await client.fetch("GET", path)
                assert (response.status, bytes(response.body)) == (200, b"ok")
                assert response.ended
        assert route.opened == 2 and upstream.connections == 2


async def test_a_response_that_ends_early_is_502_before_its_head_and_a_reset_after(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        await w.upstream("app.test", answering(b"HTTP/1.1 200 OK\r\nContent-Le"))
        await w.upstream("big.test", answering(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok"))
        async with w.client() as client:
            cut = await client.fetch("GET", "/")
            assert cut.status == 502 and cut.get("ngrok-error-code") == "ERR_NGROK_3004"
        async with w.client("big.test") as client:
            started = await client.fetch("GET", "/")
            assert started.status == 200 and started.reset == ErrorCodes.INTERNAL_ERROR
            assert not started.ended and bytes(started.body) in (b"", b"ok")


# ------------------------------------------------------------------------------ the request


def echo_framing(request: h11.Request, body: bytes) -> Reply:
    """The request's framing headers and body, as JSON."""
    framing = [
        [name.decode(), value.decode()]
        for name, value in request.headers
        if name in (b"content-length", b"transfer-encoding")
    ]
    payload = json.dumps({"framing": framing, "body": body.decode()}).encode()
    return 200, [(b"content-length", str(len(payload)).encode())], payload


async def test_a_request_body_is_framed_by_its_content_length_else_chunked(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    async with world(tls_files) as w:
        upstream = await w.app("app.test", echo_framing)
        async with w.client() as client:
            stream_id = await client.request("POST", "/", [], b"abc", end=False)
            await trio.sleep(0.05)
            await client.send_body(stream_id, b"def")
            response = client.responses[stream_id]
            with trio.fail_after(TIMEOUT):
                await response.done.wait()
            assert json.loads(response.body) == {
                "framing": [["transfer-encoding", "chunked"]],
                "body": "abcdef",
            }
            counted = await client.fetch("POST", "/", [("content-length", "3")], b"xyz")
            assert json.loads(counted.body) == {
                "framing": [["content-length", "3"]],
                "body": "xyz",
            }
        assert len(upstream.requests) == 2


async def test_a_request_head_http11_cannot_carry_is_400_and_never_forwarded(
    tls_files: tuple[Path, CertificateFiles],
) -> None:
    """A header name HTTP/2 took but that is no HTTP/1.1 token is refused as the HTTP/1.1
    proxy refuses an unforwardable head, before any agent stream opens."""
    async with world(tls_files) as w:
        upstream = await w.app("app.test", echo_headers)
        route = w.route_list[0]
        async with w.client() as client:
            response = await client.fetch("GET", "/", [("x(y)", "1")])
            assert response.status == 400
            assert response.get("burrow-error-code") == "BURROW_BAD_REQUEST"
            assert (await client.fetch("GET", "/")).status == 200
        assert route.opened == 1 and len(upstream.requests) == 1
