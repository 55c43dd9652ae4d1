"""Reaching the edge (agent/edge_dial.py): the context that verifies it, the TLS layer over a
real loopback connection, and the reason a failed dial reports."""

from __future__ import annotations

import ssl
from contextlib import suppress
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme

from agent.edge_dial import edge_tls_context, why_dial_failed, wrap_edge_tls
from agent.errors import AgentError
from protocol.adapters.mux import receive_exactly
from protocol.adapters.tls import TLSStream
from tests.agent.conftest import write_pems


def test_edge_tls_context_rejects_an_unusable_ca_file() -> None:
    with pytest.raises(AgentError, match="cannot load CA certificates"):
        edge_tls_context("/nonexistent/ca.pem")
    assert edge_tls_context("host").verify_mode.name == "CERT_REQUIRED"


def test_edge_tls_context_loads_a_pem_file_and_requires_tls_1_2(
    tmp_path: Path, ca: trustme.CA
) -> None:
    pems = write_pems(tmp_path / "edge", ca, ca.issue_cert("connect.example.com"))
    context = edge_tls_context(pems.ca_path)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


async def serve_tls_echo(nursery: trio.Nursery, ca: trustme.CA, host: str) -> int:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(server_context)

    async def echo(tcp: trio.SocketStream) -> None:
        tls = trio.SSLStream(tcp, server_context, server_side=True)
        with suppress(trio.BrokenResourceError):
            async with tls:
                while data := await tls.receive_some():
                    await tls.send_all(data)

    listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def test_wrap_edge_tls_completes_the_handshake_with_sni_and_verification(
    tmp_path: Path, ca: trustme.CA
) -> None:
    context = edge_tls_context(write_pems(tmp_path / "ca", ca, ca.issue_cert("x")).ca_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_tls_echo(nursery, ca, "connect.example.com")
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = await wrap_edge_tls(tcp, context, "connect.example.com")
            assert isinstance(tls, TLSStream) and tls.version() in ("TLSv1.2", "TLSv1.3")
            await tls.send_all(b"ping")
            assert await receive_exactly(tls, 4) == b"ping"
            await tls.aclose()
            nursery.cancel_scope.cancel()


async def test_wrap_edge_tls_closes_the_transport_when_verification_fails(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    context = edge_tls_context(write_pems(tmp_path / "ca", ca, ca.issue_cert("x")).ca_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await serve_tls_echo(nursery, other_ca, "connect.example.com")
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            with pytest.raises(trio.BrokenResourceError) as failed:
                await wrap_edge_tls(tcp, context, "connect.example.com")
            assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)
            assert tcp.socket.fileno() == -1, "the transport was closed"
            reason = why_dial_failed(failed.value)
            assert "certificate verify failed" in reason
            assert "set connect_cas (or BURROW_CONNECT_CAS)" in reason
            nursery.cancel_scope.cancel()


def test_why_dial_failed_says_timed_out_and_gives_each_address_reason_once() -> None:
    assert why_dial_failed(trio.TooSlowError()) == "timed out"
    refused = OSError(111, "Connection refused")
    group = BaseExceptionGroup("attempts", [refused, OSError(111, "Connection refused")])
    failed = OSError("all attempts to connect to edge:443 failed")
    failed.__cause__ = group
    assert why_dial_failed(failed) == "Connection refused"
    assert why_dial_failed(OSError("no route")) == "no route"
