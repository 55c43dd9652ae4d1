"""Certificates for the agent's TLS tests, from trustme: a CA the agent trusts and one it
does not, with server and client certificates issued by them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme


@dataclass(frozen=True)
class PemFiles:
    """A CA and a certificate it issued, written out as the agent reads them."""

    ca: trustme.CA
    cert: trustme.LeafCert
    ca_path: str
    cert_path: str  # the certificate chain
    key_path: str


def write_pems(directory: Path, ca: trustme.CA, cert: trustme.LeafCert) -> PemFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca_path = directory / "ca.pem"
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_path))
    return PemFiles(ca, cert, str(ca_path), str(cert_path), str(key_path))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="Burrow test CA")


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    return trustme.CA(organization_name="Someone else's CA")


@pytest.fixture
def localhost_pems(tmp_path: Path, ca: trustme.CA) -> PemFiles:
    """A server certificate for localhost and 127.0.0.1, from `ca`."""
    return write_pems(tmp_path / "localhost", ca, ca.issue_cert("localhost", "127.0.0.1"))
