"""`edge.certs.connect_cert`: the connect host's certificate from files, checked at start."""

from __future__ import annotations

import contextlib
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization

from edge.certs.ca import CertError, DevCA, client_context
from edge.certs.connect_cert import (
    CertificateProblem,
    check_connect_certificate,
    connect_tls_context,
    covers,
)
from edge.cli.main import main
from edge.config import EdgeConfig, TlsConfig

HOST = "connect.acme.example"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def leaf_pems(ca: trustme.CA, *names: str, **kwargs: datetime) -> tuple[bytes, bytes]:
    leaf = ca.issue_cert(*names, **kwargs)  # type: ignore[arg-type]
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return chain, leaf.private_key_pem.bytes()


def write_pair(directory: Path, chain: bytes, key: bytes) -> tuple[Path, Path]:
    cert_path, key_path = directory / "connect.pem", directory / "connect.key"
    cert_path.write_bytes(chain)
    key_path.write_bytes(key)
    return cert_path, key_path


def test_covers_exact_names_and_one_label_wildcards() -> None:
    assert covers(("connect.acme.example",), "Connect.Acme.Example.")
    assert covers(("*.acme.example",), HOST)
    assert not covers(("*.example",), HOST)  # a wildcard stands for one label only
    assert not covers(("*.acme.example",), "acme.example")
    assert not covers(("other.acme.example",), HOST)


def test_a_good_pair_for_the_connect_host_has_no_problem() -> None:
    chain, key = leaf_pems(trustme.CA(), HOST)
    assert check_connect_certificate(chain, key, HOST, now=NOW) is None
    wildcard_chain, wildcard_key = leaf_pems(trustme.CA(), "*.acme.example")
    assert check_connect_certificate(wildcard_chain, wildcard_key, HOST, now=NOW) is None


def test_each_problem_names_the_config_key_at_fault() -> None:
    ca = trustme.CA()
    chain, key = leaf_pems(ca, HOST)
    other_chain, other_key = leaf_pems(ca, HOST)
    elsewhere_chain, elsewhere_key = leaf_pems(ca, "api.acme.example")
    encrypted = serialization.load_pem_private_key(key, password=None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    cases = [
        ((b"not a certificate", key), "tls.cert", "not a PEM certificate chain"),
        ((chain, b"not a key"), "tls.key", "not a PEM private key"),
        ((chain, encrypted), "tls.key", "the private key is encrypted"),
        ((chain, other_key), "tls.key", "not the key of the first certificate in tls.cert"),
        (
            (elsewhere_chain, elsewhere_key),
            "tls.cert",
            f"does not cover connect_host {HOST} (it names api.acme.example)",
        ),
    ]
    for (cert_pem, key_pem), field, text in cases:
        problem = check_connect_certificate(cert_pem, key_pem, HOST, now=NOW)
        assert isinstance(problem, CertificateProblem), text
        assert problem.key == field, text
        assert text in problem.text
    assert check_connect_certificate(other_chain, other_key, HOST, now=NOW) is None


def test_an_expired_or_future_certificate_is_refused() -> None:
    ca = trustme.CA()
    start, end = NOW - timedelta(days=90), NOW - timedelta(days=1)
    chain, key = leaf_pems(ca, HOST, not_before=start, not_after=end)
    expired = check_connect_certificate(chain, key, HOST, now=NOW)
    assert expired is not None and expired.key == "tls.cert"
    assert "expired at" in expired.text and "renew it" in expired.text
    early = check_connect_certificate(chain, key, HOST, now=start - timedelta(days=1))
    assert early is not None and "not valid before" in early.text
    assert check_connect_certificate(chain, key, HOST, now=start + timedelta(days=1)) is None


def test_context_defaults_to_the_development_ca(tmp_path: Path) -> None:
    ca = DevCA.load_or_create(tmp_path)
    context = connect_tls_context(EdgeConfig(connect_host=HOST), ca)
    assert trio.run(handshake_peer, context, client_context(ca.ca_path), HOST) is not None


def test_context_serves_the_files_to_an_agent_that_trusts_their_ca(tmp_path: Path) -> None:
    authority = trustme.CA()
    cert, key = write_pair(tmp_path, *leaf_pems(authority, HOST))
    config = EdgeConfig(connect_host=HOST, tls=TlsConfig(cert=cert, key=key))
    context = connect_tls_context(config, DevCA.load_or_create(tmp_path / "ca"))
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    assert trio.run(handshake_peer, context, trusting, HOST) is not None
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    assert trio.run(handshake_peer, context, stranger, HOST) is None


def test_context_errors_start_with_the_key_and_its_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = write_pair(tmp_path, leaf_pems(ca, HOST)[0], leaf_pems(ca, HOST)[1])
    dev_ca = DevCA.load_or_create(tmp_path / "ca")
    config = EdgeConfig(connect_host=HOST, tls=TlsConfig(cert=cert, key=key))
    with pytest.raises(CertError, match=rf"^tls\.key \({key}\): not the key of the first"):
        connect_tls_context(config, dev_ca)
    missing = EdgeConfig(connect_host=HOST, tls=TlsConfig(cert=cert, key=tmp_path / "gone.key"))
    with pytest.raises(CertError, match=rf"^tls\.key: cannot read {tmp_path}/gone\.key: "):
        connect_tls_context(missing, dev_ca)


def test_edge_start_refuses_a_bad_pair_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`burrow-edge serve` prints one error naming the key and exits 1 before listening."""
    write_pair(tmp_path, *leaf_pems(trustme.CA(), "api.acme.example"))
    config = tmp_path / "edge.yml"
    config.write_text(
        'listen: {tls: "127.0.0.1:0", http: null}\nadmin: {enabled: false}\n'
        f"connect_host: {HOST}\ntls: {{cert: connect.pem, key: connect.key}}\n"
    )
    code = main(["serve", "--data-dir", str(tmp_path / "data"), "--config", str(config)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"burrow-edge: tls.cert ({tmp_path / 'connect.pem'}): ")
    assert f"does not cover connect_host {HOST}" in err
    assert "Traceback" not in err and "ready" not in err


async def handshake_peer(
    server: ssl.SSLContext, client: ssl.SSLContext, server_name: str
) -> bytes | None:
    """A real TLS handshake over loopback TCP; the DER certificate the client accepted, or
    None if the client refused the server's certificate."""
    accepted: list[bytes | None] = []
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def serve_one() -> None:
            stream = await listeners[0].accept()
            tls = trio.SSLStream(stream, server, server_side=True)
            with contextlib.suppress(trio.BrokenResourceError):
                await tls.do_handshake()
            await trio.aclose_forcefully(tls)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one)
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(tcp, client, server_hostname=server_name)
            try:
                await tls.do_handshake()
                accepted.append(tls.getpeercert(binary_form=True))
            except trio.BrokenResourceError:
                accepted.append(None)
            await trio.aclose_forcefully(tls)
        await listeners[0].aclose()
    return accepted[0]
