"""agent.proxy_dial against real proxies on loopback: tinyproxy (HTTP CONNECT, BasicAuth) and
Dante (SOCKS5, username auth), plus TLS to an https:// proxy, the environment's proxy
variables, and one clear line for each failure."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from agent.proxy_dial import dial_edge_transport, open_through_proxy
from agent.proxy_handshake import ProxyError
from agent.proxy_url import ProxyURL, parse_proxy_url
from tests.agent.proxying import free_port, serve_upstream
from tests.agent.real_proxies import RunningProxy, danted, socks_user, tinyproxy

USER, PASSWORD = "clinic", "pr0xy-pass"
TIMEOUT = 20  # generous: a healthy proxy answers in milliseconds


@pytest.fixture
def http_proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    with tinyproxy(tmp_path / "tinyproxy", user=USER, password=PASSWORD) as proxy:
        yield proxy


@pytest.fixture
def open_http_proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    with tinyproxy(tmp_path / "tinyproxy-open") as proxy:
        yield proxy


@pytest.fixture
def socks_proxy(tmp_path: Path) -> Iterator[RunningProxy]:
    with danted(tmp_path / "danted") as proxy:
        yield proxy


@pytest.fixture
def socks_auth_proxy(tmp_path: Path) -> Iterator[tuple[RunningProxy, str, str]]:
    user, password = socks_user()
    with danted(tmp_path / "danted-auth", username_auth=True) as proxy:
        yield proxy, user, password


async def _echo_once(stream: trio.SocketStream) -> None:
    data = await stream.receive_some()
    await stream.send_all(b"echo:" + data)


async def _roundtrip(stream: trio.abc.Stream) -> bytes:
    await stream.send_all(b"hello")
    reply = b""
    while len(reply) < len(b"echo:hello"):
        chunk = await stream.receive_some()
        assert chunk, f"tunnel closed after {reply!r}"
        reply += chunk
    await stream.aclose()
    return reply


async def _through(proxy: ProxyURL, proxy_tls: ssl.SSLContext | None = None) -> tuple[bytes, int]:
    """Open a tunnel through `proxy` to an echo server named `localhost` (the proxy resolves the
    name) and return the echo and the server's port."""
    async with trio.open_nursery() as nursery:
        port = await serve_upstream(nursery, _echo_once)
        stream = await open_through_proxy(
            proxy, "localhost", port, connect_timeout=5, proxy_tls=proxy_tls
        )
        reply = await _roundtrip(stream)
        nursery.cancel_scope.cancel()
    return reply, port


async def _broken_message(proxy: ProxyURL, port: int = 9) -> str:
    with pytest.raises(trio.BrokenResourceError) as caught:
        await open_through_proxy(proxy, "localhost", port, connect_timeout=5)
    assert isinstance(caught.value.__cause__, ProxyError)
    assert str(caught.value.__cause__) == str(caught.value)
    return str(caught.value)


async def test_http_connect_with_basic_credentials(http_proxy: RunningProxy) -> None:
    with trio.fail_after(TIMEOUT):
        reply, port = await _through(parse_proxy_url(http_proxy.url(USER, PASSWORD)))
    assert reply == b"echo:hello"
    assert f"CONNECT localhost:{port} HTTP/1.1" in http_proxy.log()


async def test_http_connect_wrong_password_is_one_clear_line(http_proxy: RunningProxy) -> None:
    with trio.fail_after(TIMEOUT):
        message = await _broken_message(parse_proxy_url(http_proxy.url(USER, "wrong")))
    # tinyproxy answers a wrong password with 401 (a missing one with 407).
    assert message == (
        f"proxy {http_proxy.address} refused the credentials (401); check the user name and "
        "password in agent.proxy_url"
    )


async def test_http_connect_missing_credentials(http_proxy: RunningProxy) -> None:
    with trio.fail_after(TIMEOUT):
        message = await _broken_message(parse_proxy_url(http_proxy.url()))
    assert message.startswith(
        f"proxy {http_proxy.address} requires credentials (407 Proxy Authentication Required)"
    )


async def test_http_connect_target_refused_is_the_proxys_answer(
    open_http_proxy: RunningProxy,
) -> None:
    with trio.fail_after(TIMEOUT):
        dead = await free_port()
        message = await _broken_message(parse_proxy_url(open_http_proxy.url()), dead)
    assert re.fullmatch(
        rf"proxy {open_http_proxy.address} refused CONNECT localhost:{dead}: 5\d\d .+", message
    )


async def test_socks5_without_auth(socks_proxy: RunningProxy) -> None:
    with trio.fail_after(TIMEOUT):
        reply, port = await _through(parse_proxy_url(socks_proxy.url()))
    assert reply == b"echo:hello"
    assert f"127.0.0.1.{port}" in socks_proxy.log()  # Dante logs host.port


async def test_socks5_with_username_auth(socks_auth_proxy: tuple[RunningProxy, str, str]) -> None:
    proxy, user, password = socks_auth_proxy
    with trio.fail_after(TIMEOUT):
        reply, _port = await _through(parse_proxy_url(proxy.url(user, password)))
    assert reply == b"echo:hello"
    assert f"username%{user}@" in proxy.log()


async def test_socks5_wrong_password_is_one_clear_line(
    socks_auth_proxy: tuple[RunningProxy, str, str],
) -> None:
    proxy, user, _password = socks_auth_proxy
    with trio.fail_after(TIMEOUT):
        message = await _broken_message(parse_proxy_url(proxy.url(user, "wrong")))
    assert message == (
        f"SOCKS5 proxy {proxy.address}: authentication failed; check the user name and "
        "password in agent.proxy_url"
    )


async def test_socks5_target_refused(socks_proxy: RunningProxy) -> None:
    with trio.fail_after(TIMEOUT):
        dead = await free_port()
        message = await _broken_message(parse_proxy_url(socks_proxy.url()), dead)
    assert message.startswith(
        f"SOCKS5 proxy {socks_proxy.address} could not connect to localhost:{dead}: "
    )


async def test_unreachable_proxy() -> None:
    with trio.fail_after(TIMEOUT):
        port = await free_port()
        message = await _broken_message(parse_proxy_url(f"http://127.0.0.1:{port}"))
    assert (
        message == f"cannot reach the proxy 127.0.0.1:{port} (agent.proxy_url): connection refused"
    )


async def test_silent_proxy_times_out() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, silent)
            proxy = parse_proxy_url(f"socks5://127.0.0.1:{port}")
            with pytest.raises(trio.BrokenResourceError) as caught:
                await open_through_proxy(
                    proxy, "localhost", 443, connect_timeout=5, handshake_timeout=0.3
                )
            nursery.cancel_scope.cancel()
    assert str(caught.value) == (
        f"proxy 127.0.0.1:{port} (agent.proxy_url) did not finish the handshake within 0.3s"
    )


async def test_https_proxy_speaks_tls_to_the_proxy(
    open_http_proxy: RunningProxy, ca: trustme.CA
) -> None:
    """An https:// proxy: TLS to the proxy (verified), CONNECT inside it. The TLS end is a
    relay in front of tinyproxy, as a TLS-terminating load balancer would be."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("proxy.localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def relay(stream: trio.SSLStream[trio.SocketStream]) -> None:
        inner = await trio.open_tcp_stream("127.0.0.1", open_http_proxy.port)

        async def pump(source: trio.abc.ReceiveStream, sink: trio.abc.SendStream) -> None:
            while data := await source.receive_some():
                await sink.send_all(data)

        async with trio.open_nursery() as pumps:
            pumps.start_soon(pump, stream, inner)
            pumps.start_soon(pump, inner, stream)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_ssl_over_tcp, relay, 0, server_context, host="127.0.0.1")
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            proxy = parse_proxy_url(f"https://proxy.localhost:{port}")
            reply, target = await _through(proxy, proxy_tls=client_context)
            nursery.cancel_scope.cancel()
    assert reply == b"echo:hello"
    assert f"CONNECT localhost:{target} HTTP/1.1" in open_http_proxy.log()


async def test_https_proxy_with_an_untrusted_certificate(ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("proxy.localhost").configure_cert(server_context)

    async def handshake_only(stream: trio.SSLStream[trio.SocketStream]) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.do_handshake()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(
                    trio.serve_ssl_over_tcp, handshake_only, 0, server_context, host="127.0.0.1"
                )
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            proxy = parse_proxy_url(f"https://proxy.localhost:{port}")
            message = await _broken_message(proxy)
            nursery.cancel_scope.cancel()
    assert message.startswith(
        f"TLS with the proxy proxy.localhost:{port} (agent.proxy_url) failed: "
    )
    assert "CERTIFICATE_VERIFY_FAILED" in message


async def test_environment_proxy_is_used(open_http_proxy: RunningProxy) -> None:
    env = {"HTTPS_PROXY": open_http_proxy.address}  # no scheme: http://, as curl reads it
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, _echo_once)
            stream = await dial_edge_transport(
                "localhost", port, proxy=None, connect_timeout=5, environ=env
            )
            assert await _roundtrip(stream) == b"echo:hello"
            nursery.cancel_scope.cancel()
    assert f"CONNECT localhost:{port} HTTP/1.1" in open_http_proxy.log()


async def test_no_proxy_dials_directly() -> None:
    with trio.fail_after(TIMEOUT):
        dead = await free_port()
        env = {"HTTPS_PROXY": f"http://127.0.0.1:{dead}", "NO_PROXY": "example.com,localhost"}
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, _echo_once)
            stream = await dial_edge_transport(
                "localhost", port, proxy=None, connect_timeout=5, environ=env
            )
            assert await _roundtrip(stream) == b"echo:hello"
            nursery.cancel_scope.cancel()


async def test_configured_proxy_ignores_no_proxy(open_http_proxy: RunningProxy) -> None:
    env = {"NO_PROXY": "*"}
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await serve_upstream(nursery, _echo_once)
            stream = await dial_edge_transport(
                "localhost",
                port,
                proxy=parse_proxy_url(open_http_proxy.url()),
                connect_timeout=5,
                environ=env,
            )
            assert await _roundtrip(stream) == b"echo:hello"
            nursery.cancel_scope.cancel()
    assert f"CONNECT localhost:{port} HTTP/1.1" in open_http_proxy.log()


async def test_a_bad_environment_proxy_names_the_variable() -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(trio.BrokenResourceError) as caught:
        await dial_edge_transport(
            "localhost", 443, proxy=None, connect_timeout=5, environ={"ALL_PROXY": "socks4://x"}
        )
    assert str(caught.value).startswith("ALL_PROXY scheme socks4:// is not supported")
    assert isinstance(caught.value.__cause__, ProxyError)
