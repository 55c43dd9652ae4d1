"""The development CA: real certificates, verified by the stdlib `ssl` module over loopback."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge.certs.ca import (
    CA_VALIDITY,
    LEAF_VALIDITY,
    CertError,
    DevCA,
    IssuedCert,
    client_context,
    normalise_hostname,
    server_context_from_pem,
)

TIMEOUT = 10.0  # seconds: a handshake on loopback takes milliseconds; a hang fails fast


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    return DevCA.load_or_create(tmp_path_factory.mktemp("data"))


def handshake(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str
) -> tuple[bytes, BaseException | None]:
    """Run one TLS handshake over loopback TCP and echo a line through it.

    Returns what the client read back and the server side's exception, if any. Raises the
    client side's exception (a verification failure, say).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    server_error: list[BaseException] = []

    def serve() -> None:
        try:
            connection, _ = listener.accept()
            connection.settimeout(TIMEOUT)
            with server.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(tls.recv(1024))
        except (OSError, ssl.SSLError) as exc:
            server_error.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw,
            client.wrap_socket(raw, server_hostname=server_hostname) as tls,
        ):
            tls.sendall(b"ping\n")
            echoed = tls.recv(1024)
    finally:
        thread.join(TIMEOUT)
        listener.close()
    assert not thread.is_alive()
    return echoed, server_error[0] if server_error else None


def leaf_of(issued: IssuedCert) -> x509.Certificate:
    return x509.load_pem_x509_certificate(issued.cert_pem)


def test_files_and_modes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ca = DevCA.load_or_create(data_dir)
    assert ca.ca_path == data_dir / "ca.pem"
    assert stat.S_IMODE((data_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "ca.pem").stat().st_mode) == 0o644
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / "ca.pem").read_bytes() == ca.ca_pem
    assert sorted(p.name for p in data_dir.iterdir()) == ["ca.key", "ca.pem"]


def test_reloading_gives_the_same_ca(tmp_path: Path) -> None:
    first = DevCA.load_or_create(tmp_path)
    second = DevCA.load_or_create(tmp_path, common_name="ignored on reload")
    assert second.ca_pem == first.ca_pem
    # The reloaded CA signs leaves the first one's certificate verifies.
    leaf = leaf_of(second.issue(["localhost"]))
    leaf.verify_directly_issued_by(first.certificate)


def test_ca_certificate_fields(tmp_path: Path) -> None:
    now = datetime(2025, 6, 1, tzinfo=UTC)
    ca = DevCA.load_or_create(tmp_path, common_name="Acme Dev CA", now=now)
    cert = ca.certificate
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "Acme Dev CA"
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert cert.not_valid_after_utc == now + CA_VALIDITY
    assert cert.not_valid_before_utc < now
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_leaf_fields(ca: DevCA) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    issued = ca.issue(
        ["Connect.Burrow.Localhost.", "localhost", "*.burrow.localhost", "127.0.0.1", "::1"],
        now=now,
    )
    leaf = leaf_of(issued)
    leaf.verify_directly_issued_by(ca.certificate)
    assert issued.hostnames == (
        "connect.burrow.localhost",
        "localhost",
        "*.burrow.localhost",
        "127.0.0.1",
        "::1",
    )
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "connect.burrow.localhost",
        "localhost",
        "*.burrow.localhost",
    ]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert issued.not_after == now + LEAF_VALIDITY == leaf.not_valid_after_utc
    assert issued.chain_pem == issued.cert_pem + ca.ca_pem
    assert b"PRIVATE KEY" in issued.key_pem
    assert "PRIVATE" not in repr(issued)


def test_leaf_never_outlives_the_ca(ca: DevCA) -> None:
    late = ca.certificate.not_valid_after_utc - timedelta(days=10)
    issued = ca.issue(["localhost"], now=late)
    assert issued.not_after == ca.certificate.not_valid_after_utc


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["bad_name"],
        ["-leading.hyphen"],
        ["*"],
        ["*.localhost"],
        ["foo.*.example"],
        ["a..b"],
        ["exämple.test"],
        ["a" * 64 + ".test"],
    ],
)
def test_issue_rejects_bad_names(ca: DevCA, names: list[str]) -> None:
    with pytest.raises(CertError):
        ca.issue(names)


def test_issue_rejects_a_bare_string(ca: DevCA) -> None:
    with pytest.raises(CertError, match="list of names"):
        ca.issue("localhost")


@pytest.mark.parametrize(
    "server_hostname",
    ["connect.burrow.localhost", "localhost", "anything.burrow.localhost", "127.0.0.1"],
)
def test_handshake_verifies(ca: DevCA, server_hostname: str) -> None:
    server = ca.server_context(
        ["connect.burrow.localhost", "localhost", "*.burrow.localhost", "127.0.0.1"]
    )
    echoed, server_error = handshake(server, client_context(ca.ca_path), server_hostname)
    assert echoed == b"ping\n"
    assert server_error is None


@pytest.mark.parametrize(
    "server_hostname", ["example.com", "burrow.localhost", "a.b.burrow.localhost", "127.0.0.2"]
)
def test_handshake_refuses_an_unrelated_name(ca: DevCA, server_hostname: str) -> None:
    # `burrow.localhost` and `a.b.burrow.localhost`: a wildcard covers exactly one label.
    server = ca.server_context(["connect.burrow.localhost", "*.burrow.localhost", "127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        handshake(server, client_context(ca.ca_path), server_hostname)


def test_handshake_refuses_another_ca(ca: DevCA, tmp_path: Path) -> None:
    stranger = DevCA.load_or_create(tmp_path)
    server = stranger.server_context(["localhost"])
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(server, client_context(ca.ca_path), "localhost")


def test_handshake_refuses_an_expired_leaf(ca: DevCA) -> None:
    long_ago = datetime.now(UTC) - LEAF_VALIDITY - timedelta(days=1)
    server = ca.server_context(["localhost"], now=long_ago)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        handshake(server, client_context(ca.ca_path), "localhost")


def test_server_context_settings(ca: DevCA) -> None:
    server = ca.server_context(["localhost"])
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    # TLS 1.2 is still accepted, for older clients.
    client = client_context(ca.ca_path)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    echoed, server_error = handshake(server, client, "localhost")
    assert (echoed, server_error) == (b"ping\n", None)


def test_client_context_settings(ca: DevCA) -> None:
    context = client_context(ca.ca_path)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("organizationName", "Burrow"),), (("commonName", "Burrow Development CA"),))
    ]


def test_server_context_from_pem_rejects_a_mismatched_key(ca: DevCA) -> None:
    one = ca.issue(["localhost"])
    other = ca.issue(["localhost"])
    with pytest.raises(CertError, match="do not load"):
        server_context_from_pem(one.chain_pem, other.key_pem)


@pytest.mark.parametrize("scratch", ["missing", "present"])
def test_server_context_from_pem_scratch_directory(
    ca: DevCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scratch: str
) -> None:
    # The PEMs go through RAM when it is there, the temp dir when not; nothing is left behind.
    ram = tmp_path / "ram"
    if scratch == "present":
        ram.mkdir()
    monkeypatch.setattr("edge.certs.ca.RAM_SCRATCH_DIR", str(ram))
    made_in: list[object] = []
    real = tempfile.TemporaryDirectory

    def recording(*args: Any, **kwargs: Any) -> tempfile.TemporaryDirectory[str]:
        made_in.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    issued = ca.issue(["localhost"])
    server = server_context_from_pem(issued.chain_pem, issued.key_pem)
    echoed, server_error = handshake(server, client_context(ca.ca_path), "localhost")
    assert (echoed, server_error) == (b"ping\n", None)
    if scratch == "present":
        assert made_in == [str(ram)]
        assert list(ram.iterdir()) == []
    else:
        assert made_in == [None]


def test_issuing_from_an_expired_ca_is_a_clear_error(ca: DevCA) -> None:
    after = ca.certificate.not_valid_after_utc + timedelta(seconds=1)
    with pytest.raises(CertError, match=r"the development CA .*ca\.pem expired on .*; delete it"):
        ca.issue(["localhost"], now=after)


@pytest.mark.parametrize(
    ("alpn", "offered", "selected"),
    [
        (["http/1.1"], ["h2", "http/1.1"], "http/1.1"),
        (["h2", "http/1.1"], ["http/1.1", "h2"], "h2"),
        (["http/1.1"], ["h2"], None),  # no overlap: the handshake goes on without a protocol
        ([], ["h2", "http/1.1"], None),
    ],
)
def test_server_context_from_pem_alpn(
    ca: DevCA, alpn: list[str], offered: list[str], selected: str | None
) -> None:
    issued = ca.issue(["localhost"])
    server = server_context_from_pem(issued.chain_pem, issued.key_pem, alpn=alpn)
    client = client_context(ca.ca_path)
    client.set_alpn_protocols(offered)
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    pending = [client_side, server_side]
    for _ in range(10):
        for side in list(pending):
            try:
                side.do_handshake()
                pending.remove(side)
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    assert pending == []
    assert client_side.selected_alpn_protocol() == selected
    assert server_side.selected_alpn_protocol() == selected


def test_server_context_alpn_refuses_a_bare_string(ca: DevCA) -> None:
    with pytest.raises(TypeError, match="list of protocol names"):
        ca.server_context(["localhost"], alpn="http/1.1")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("API.Example.COM.", "api.example.com"),
        ("*.Example.com", "*.example.com"),
        ("0:0::1", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_normalise_hostname(raw: str, normal: str) -> None:
    assert normalise_hostname(raw) == normal


@pytest.mark.parametrize("raw", ["bad_name.test", "*.localhost", "a.*.test", ""])
def test_normalise_hostname_refuses(raw: str) -> None:
    with pytest.raises(CertError):
        normalise_hostname(raw)


def test_key_without_certificate_is_replaced(tmp_path: Path) -> None:
    # A crash after writing the key and before the certificate: nobody trusts that CA yet.
    (tmp_path / "ca.key").write_bytes(b"half-made")
    ca = DevCA.load_or_create(tmp_path)
    assert DevCA.load_or_create(tmp_path).ca_pem == ca.ca_pem


def test_certificate_without_key_is_a_clear_error(tmp_path: Path) -> None:
    DevCA.load_or_create(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(CertError, match=r"ca\.key does not; restore the key or delete"):
        DevCA.load_or_create(tmp_path)


def test_mismatched_key_is_a_clear_error(tmp_path: Path) -> None:
    DevCA.load_or_create(tmp_path / "one")
    DevCA.load_or_create(tmp_path / "two")
    shutil.copy(tmp_path / "two" / "ca.key", tmp_path / "one" / "ca.key")
    with pytest.raises(CertError, match="is not the key of"):
        DevCA.load_or_create(tmp_path / "one")


def test_corrupt_certificate_is_a_clear_error(tmp_path: Path) -> None:
    DevCA.load_or_create(tmp_path)
    (tmp_path / "ca.pem").write_text("garbage")
    with pytest.raises(CertError, match="cannot read the CA certificate") as caught:
        DevCA.load_or_create(tmp_path)
    assert "delete" in str(caught.value)


# `./dev test` installs openssl (Debian) before the suite runs.
def test_openssl_verifies_the_leaf(ca: DevCA, tmp_path: Path) -> None:
    issued = ca.issue(["connect.burrow.localhost", "*.burrow.localhost"])
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(issued.cert_pem)
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "x.burrow.localhost",
            "-CAfile",
            str(ca.ca_path),
            str(leaf),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("OK")
