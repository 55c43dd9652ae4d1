"""edge/policy/jwks_fetch.py against real HTTPS servers on 127.0.0.1 (certificates from a test
CA made with trustme): keys fetched and cached with the server's max-age; a server that hangs
costs one bounded timeout; errors (status, size, not a JWKS, untrusted certificate) are
reported naming the URL; the refresher keeps other URLs' keys flowing while one hangs. Also the
pure helpers (`refresh_after`, `jwks_urls`) and the `jwks:` section of the edge config."""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio
import trustme

from edge.config import JwksConfig
from edge.config_file import ConfigError, load_edge_config
from edge.policy.document import load_policy
from edge.policy.jwk import JwksCache
from edge.policy.jwks_fetch import (
    JwksFetchError,
    fetch_jwks,
    jwks_ssl_context,
    jwks_urls,
    keep_jwks_fresh,
    refresh_after,
)
from edge.policy.validate import validate
from tests.edge.policy.jwt_helpers import key_for, public_jwk

Handler = Callable[[trio.SSLStream[trio.SocketStream]], Awaitable[None]]
JWKS_BODY = json.dumps({"keys": [public_jwk(key_for("ES256"), "k1")]}).encode()
FAST = JwksConfig(fetch_timeout=0.5, retry_interval=0.2, min_refresh=0.05)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def context(ca: trustme.CA, tmp_path: Path) -> ssl.SSLContext:
    """The client context the edge would build with `jwks.ca_file` set to the test CA."""
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.cert_pem.bytes())
    return jwks_ssl_context(path)


async def read_head(stream: trio.SSLStream[trio.SocketStream]) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


def answering(status: str, body: bytes, *extra: str) -> Handler:
    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await read_head(stream)
            head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", "connection: close"]
            head.extend(extra)
            await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    return handler


async def hanging(stream: trio.SSLStream[trio.SocketStream]) -> None:
    """Completes the TLS handshake and reads the request, then never answers."""
    try:
        await read_head(stream)
        await trio.sleep_forever()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def serve(
    nursery: trio.Nursery, ca: trustme.CA, handler: Handler, *, name: str = "127.0.0.1"
) -> str:
    """An HTTPS server on 127.0.0.1 with a certificate for `name`; its URL."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(server_context)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    ssl_listeners = [
        trio.SSLListener(lis, server_context, https_compatible=True) for lis in listeners
    ]
    nursery.start_soon(trio.serve_listeners, handler, ssl_listeners)
    return f"https://127.0.0.1:{port}/.well-known/jwks.json"


async def test_fetch_returns_keys_and_cache_control(
    ca: trustme.CA, context: ssl.SSLContext
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await serve(
                nursery, ca, answering("200 OK", JWKS_BODY, "cache-control: public, max-age=120")
            )
            fetched = await fetch_jwks(url, config=FAST, context=context)
            assert [key.kid for key in fetched.keys] == ["k1"]
            assert fetched.cache_control == "public, max-age=120"
            nursery.cancel_scope.cancel()


async def test_a_hanging_server_costs_one_bounded_timeout(
    ca: trustme.CA, context: ssl.SSLContext
) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            url = await serve(nursery, ca, hanging)
            started = trio.current_time()
            with pytest.raises(JwksFetchError, match=r"no complete answer within .*0\.5s"):
                await fetch_jwks(url, config=FAST, context=context)
            elapsed = trio.current_time() - started
            assert 0.5 <= elapsed < 2.0
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        ("500 Internal Server Error", b"oops", "answered 500"),
        ("302 Found", b"", "answered 302"),  # redirects are not followed
        ("200 OK", b"<html>login</html>", "did not serve a JWKS: the document is not JSON"),
        ("200 OK", b'{"keys": []}', "did not serve a JWKS"),
        ("200 OK", b"x" * 2048, "larger than jwks.max_bytes"),
    ],
)
async def test_bad_answers_are_errors_naming_the_url(
    ca: trustme.CA, context: ssl.SSLContext, status: str, body: bytes, reason: str
) -> None:
    config = replace(FAST, max_bytes=1024)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await serve(nursery, ca, answering(status, body))
            with pytest.raises(JwksFetchError, match=reason) as caught:
                await fetch_jwks(url, config=config, context=context)
            assert url in str(caught.value)
            nursery.cancel_scope.cancel()


async def test_an_untrusted_or_misnamed_certificate_is_refused(
    ca: trustme.CA, context: ssl.SSLContext
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            url = await serve(nursery, ca, answering("200 OK", JWKS_BODY))
            system_only = jwks_ssl_context(None)  # the test CA is not in the system store
            with pytest.raises(JwksFetchError, match=r"JWKS https://127\.0\.0\.1"):
                await fetch_jwks(url, config=FAST, context=system_only)
            misnamed = await serve(nursery, ca, answering("200 OK", JWKS_BODY), name="idp.example")
            with pytest.raises(JwksFetchError):
                await fetch_jwks(misnamed, config=FAST, context=context)
            nursery.cancel_scope.cancel()


async def test_nothing_listening_is_an_error() -> None:
    with trio.fail_after(10):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()  # the port is now closed: connect is refused
        with pytest.raises(
            JwksFetchError, match=r"JWKS https://127\.0\.0\.1:\d+/jwks: (OSError|Connect)"
        ):
            await fetch_jwks(
                f"https://127.0.0.1:{port}/jwks", config=FAST, context=jwks_ssl_context(None)
            )


async def test_the_refresher_keeps_good_urls_flowing_while_one_hangs(
    ca: trustme.CA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert_pem.bytes())
    config = replace(FAST, ca_file=ca_file, fetch_timeout=1.5)  # room for the good fetch
    cache = JwksCache()
    clock = [1000.0]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            good = await serve(
                nursery, ca, answering("200 OK", JWKS_BODY, "cache-control: max-age=0")
            )
            stuck = await serve(nursery, ca, hanging)
            nursery.start_soon(
                lambda: keep_jwks_fresh((stuck, good), cache, config=config, clock=lambda: clock[0])
            )
            while cache.keys(good, now=clock[0]) is None:  # arrives while `stuck` hangs
                await trio.sleep(0.01)
            assert cache.keys(stuck, now=clock[0]) is None
            assert cache.error(stuck) is None  # still inside its one timeout
            while cache.error(stuck) is None:
                await trio.sleep(0.01)
            assert "no complete answer within" in (cache.error(stuck) or "")
            assert cache.keys(stuck, now=clock[0]) is None  # never any keys: requests get 503
            # max-age=0 is raised to min_refresh; usable_until = now + refresh + max_stale.
            assert cache.keys(good, now=clock[0] + 0.05 + config.max_stale - 0.01) is not None
            nursery.cancel_scope.cancel()
    assert any("no complete answer within" in record.getMessage() for record in caplog.records)


async def test_an_unreadable_ca_file_fetches_nothing_and_fails_closed(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    cache = JwksCache()
    url = "https://127.0.0.1:9/jwks"
    with trio.fail_after(10):
        await keep_jwks_fresh((url,), cache, config=replace(FAST, ca_file=bad))
    assert cache.keys(url, now=0.0) is None
    assert "jwks.ca_file cannot be loaded" in (cache.error(url) or "")


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 900.0),
        ("public", 900.0),
        ("max-age=3600", 3600.0),
        ('public, max-age="7200"', 7200.0),
        ("max-age=5", 60.0),  # raised to min_refresh
        ("max-age=999999999", 86400.0),  # lowered to max_refresh
        ("no-cache", 60.0),
        ("s-maxage=10, no-store", 60.0),
        ("max-age=abc", 900.0),
    ],
)
def test_refresh_after_respects_max_age_within_bounds(header: str | None, seconds: float) -> None:
    assert refresh_after(header, JwksConfig()) == seconds


def test_jwks_urls_lists_the_policys_urls_in_order() -> None:
    text = """
on_http_request:
  - expressions: ["req.url.path.startsWith('/api')"]
    actions:
      - type: jwt-validation
        config:
          issuer: {allow_list: [{value: "https://idp"}]}
          http: {tokens: [{type: jwt, method: header, name: X-Token}]}
          jws:
            allowed_algorithms: [ES256]
            keys: {sources: {additional_jkus: ["https://b/jwks", "https://a/jwks"]}}
"""
    compiled = validate(load_policy(text), protocol="https")
    assert jwks_urls(compiled) == ("https://b/jwks", "https://a/jwks")
    plain = validate(load_policy("on_http_request: [{actions: [{type: deny}]}]"), protocol="https")
    assert jwks_urls(plain) == ()


def test_the_jwks_config_section_loads_and_is_validated(ca: trustme.CA, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    path = tmp_path / "edge.yml"
    path.write_text("jwks:\n  fetch_timeout: 3s\n  max_bytes: 64KiB\n  ca_file: ca.pem\n")
    config = load_edge_config(path).jwks
    assert config.fetch_timeout == 3.0 and config.max_bytes == 64 * 1024
    assert config.ca_file == (tmp_path / "ca.pem").absolute()
    path.write_text("jwks:\n  refresh_interval: 10s\n")
    with pytest.raises(ConfigError, match=r"jwks.refresh_interval: 10.0s is outside"):
        load_edge_config(path)
    path.write_text("jwks:\n  timeout: 3s\n")
    with pytest.raises(ConfigError, match=r"jwks.timeout: unknown key; did you mean"):
        load_edge_config(path)
    path.write_text("jwks:\n  ca_file: missing.pem\n")
    with pytest.raises(ConfigError, match=r"jwks\.ca_file"):
        load_edge_config(path)
