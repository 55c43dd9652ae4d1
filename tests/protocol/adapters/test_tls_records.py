"""The in-memory half of TLSStream (protocol/adapters/tls_records.py), through real TLS over
in-memory transports: every ready record decrypted per call, plaintext kept between calls, what
the handshake agreed, and a record that fails to decrypt."""

from __future__ import annotations

import os
import ssl

import pytest
import trio
import trio.testing

from tests.protocol.adapters.tls_pairs import HOSTNAME, client_context, handshake_both, tls_pair


@pytest.fixture(params=["tls13", "tls12"])
def client_ctx(request: pytest.FixtureRequest) -> ssl.SSLContext:
    return client_context(request.param)


async def test_receive_returns_many_records_per_call(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport)
    payload = os.urandom(200 * 1024)  # 13 records of 16 KiB
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(payload)
        received = await server.receive_some()
        # trio.SSLStream would return one 16 KiB record here.
        assert received == payload


async def test_max_bytes_keeps_leftover(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport)
    payload = os.urandom(100_000)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(payload)
        await client.aclose()
        pieces = []
        while chunk := await server.receive_some(7_000):
            assert len(chunk) <= 7_000
            pieces.append(bytes(chunk))
        assert b"".join(pieces) == payload
        assert await server.receive_some(10) == b""


async def test_alpn_and_peer_certificate(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport)
    assert client.selected_alpn_protocol() is None
    with trio.fail_after(10):
        await handshake_both(client, server)
    assert client.selected_alpn_protocol() == "burrow/1"
    assert server.selected_alpn_protocol() == "burrow/1"
    cert = client.getpeercert()
    assert cert is not None
    assert ("DNS", HOSTNAME) in cert["subjectAltName"]
    assert isinstance(client.getpeercert(binary_form=True), bytes)
    assert server.getpeercert() is None  # no client certificate
    assert server.server_side and not client.server_side
    expected = "TLSv1.2" if client_ctx.maximum_version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    assert client.version() == server.version() == expected
    assert client.cipher() is not None


async def test_garbage_after_handshake_is_broken(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client, server = tls_pair(client_ctx, client_transport, server_transport)
    with trio.fail_after(10):
        await handshake_both(client, server)
        await client.send_all(b"fine")
        # Garbage on the wire: a well-framed application-data record that fails its MAC,
        # then pure junk.
        await client_transport.send_all(b"\x17\x03\x03\x00\x20" + b"\x00" * 32 + b"junk" * 50)
        assert await server.receive_some() == b"fine"
        with pytest.raises(trio.BrokenResourceError) as info:
            await server.receive_some()
    assert isinstance(info.value.__cause__, ssl.SSLError)
