"""edge/http/h2/buffered.py, through the HTTP/2 proxy over real loopback TLS: for an endpoint
whose Traffic Policy reads request bodies, the DATA frames are read whole (acknowledged as they
come, so bodies larger than the client's window arrive), the policy runs on the body, and the
upstream gets the (rewritten) body with a Content-Length; a body over `http.max_buffered_body`
gets 413, a slow one 408, a forged webhook 403.
"""

from __future__ import annotations

import dataclasses
import hmac
from pathlib import Path

import trio

from edge.config import CertificateFiles
from protocol.formats.units import KiB
from tests.edge.http.h1.test_proxy import Upstream, attach, echo_headers, header
from tests.edge.http.h2.test_proxy import LIMITS, World, no_unexpected_failures, tls_files, world

__all__ = ["no_unexpected_failures", "tls_files"]  # fixtures, used by name

BODY_LIMITS = dataclasses.replace(LIMITS, max_buffered_body=512 * KiB)
Files = tuple[Path, CertificateFiles]

REWRITE = """
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: "token=[a-z0-9]+"
              to: "token=X"
"""


async def app(w: World, text: str = REWRITE) -> Upstream:
    upstream = await w.app("app.test", echo_headers)
    attach(w, "app.test", text)
    return upstream


def seen(upstream: Upstream, index: int = 0) -> tuple[list[str], list[str], bytes]:
    request, body = upstream.requests[index]
    headers = list(request.headers)
    return header(headers, "content-length"), header(headers, "transfer-encoding"), body


async def test_data_frames_without_a_length_are_buffered_rewritten_and_framed(
    tls_files: Files,
) -> None:
    async with world(tls_files, BODY_LIMITS) as w:
        upstream = await app(w)
        async with w.client() as client:
            stream_id = await client.request("POST", "/in", body=b"a=1&token=", end=False)
            await trio.sleep(0.05)  # a second DATA frame, later
            await client.send_body(stream_id, b"abc123&b=2")
            response = client.responses[stream_id]
            await response.done.wait()
        assert response.status == 200
        assert seen(upstream) == (["15"], [], b"a=1&token=X&b=2")


async def test_a_body_larger_than_the_client_window_arrives_whole(tls_files: Files) -> None:
    async with world(tls_files, BODY_LIMITS) as w:
        upstream = await app(w)
        body = b"token=abc " * (30 * KiB)  # 300 KiB: more than the 64 KiB initial windows
        async with w.client() as client:
            response = await client.fetch("POST", "/big", body=body)
        assert response.status == 200
        expected = b"token=X " * (30 * KiB)
        assert seen(upstream) == ([str(len(expected))], [], expected)


async def test_declared_length_over_the_limit_is_413(tls_files: Files) -> None:
    async with world(tls_files, BODY_LIMITS) as w:
        upstream = await app(w)
        async with w.client() as client:
            headers = [("content-length", str(512 * KiB + 1))]
            stream_id = await client.request("POST", "/", headers, end=False)
            response = client.responses[stream_id]
            await response.done.wait()
        assert response.status == 413
        assert response.get("burrow-error-code") == "BURROW_REQUEST_BODY_TOO_LARGE"
        assert upstream.requests == []


async def test_a_body_growing_over_the_limit_is_413(tls_files: Files) -> None:
    limits = dataclasses.replace(BODY_LIMITS, max_buffered_body=100 * KiB)
    async with world(tls_files, limits) as w:
        upstream = await app(w)
        async with w.client() as client:
            stream_id = await client.request("POST", "/", body=b"x" * (100 * KiB), end=False)
            await client.send_body(stream_id, b"y")
            response = client.responses[stream_id]
            await response.done.wait()
        assert response.status == 413
        assert upstream.requests == []


async def test_slow_body_still_times_out_with_408(tls_files: Files) -> None:
    limits = dataclasses.replace(BODY_LIMITS, body_min_rate=1000, body_rate_window=0.3)
    async with world(tls_files, limits) as w:
        upstream = await app(w)
        async with w.client() as client:
            stream_id = await client.request("POST", "/", body=b"ab", end=False)
            response = client.responses[stream_id]
            with trio.fail_after(5):
                await response.done.wait()
        assert response.status == 408
        assert response.get("burrow-error-code") == "BURROW_REQUEST_TIMEOUT"
        assert upstream.requests == []


async def test_expect_100_continue_is_answered_by_the_edge(tls_files: Files) -> None:
    async with world(tls_files, BODY_LIMITS) as w:
        upstream = await app(w)
        async with w.client() as client:
            headers = [("expect", "100-continue")]
            stream_id = await client.request("POST", "/", headers, end=False)
            response = client.responses[stream_id]
            with trio.fail_after(5):
                while 100 not in response.informational:
                    await trio.sleep(0.01)
            await client.send_body(stream_id, b"token=zz")
            await response.done.wait()
        assert response.status == 200
        assert seen(upstream)[2] == b"token=X"


async def test_webhook_signature_verified_or_refused_with_403(tls_files: Files) -> None:
    text = """
on_http_request:
  - actions:
      - type: verify-webhook
        config: {provider: github, secret: topsecret}
"""
    async with world(tls_files, BODY_LIMITS) as w:
        upstream = await app(w, text)
        body = b'{"ref":"refs/heads/main"}'
        mac = hmac.new(b"topsecret", body, "sha256").hexdigest()
        headers = [("x-hub-signature-256", f"sha256={mac}")]
        async with w.client() as client:
            good = await client.fetch("POST", "/hook", headers, body)
            bad = await client.fetch("POST", "/hook", headers, body + b" ")
        assert good.status == 200
        assert bad.status == 403 and bad.get("ngrok-error-code") == "ERR_NGROK_3204"
        assert [b for _, b in upstream.requests] == [body]
