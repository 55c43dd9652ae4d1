"""The clinic example's certificates: three small CAs and the leaves they issue.

* Acme's connect CA issues the edge's certificate for its white-labelled connect host; the
  agents trust it through `connect_cas`.
* Clinic A's CA issues the certificate the clinic's agent presents for `db.acme.example`: TLS
  from the database client ends at the agent, inside the clinic, never at the edge.
* Acme's client CA issues Acme's client certificate; the agent requires one from this CA
  (`mutual_tls_certificate_authorities`) before any byte reaches the database.

Keys are ECDSA P-256, certificates valid for 30 days from an hour ago (a clock a little behind
still accepts them). Private keys are written with mode 0600. Errors from `cryptography` or the
file system propagate.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Long enough for a demo left running for weeks; regenerated on every run anyway.
VALIDITY = datetime.timedelta(days=30)
#: Accept clocks a little behind the one that issued the certificates.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClinicPki:
    """Every file the example uses, all under one directory."""

    connect_ca: Path
    connect: Issued  # the edge's certificate for its connect host
    clinic_ca: Path
    database: Issued  # the agent's server certificate for the public database name
    client_ca: Path
    client: Issued  # Acme's client certificate


class _Ca:
    def __init__(self, name: str, now: datetime.datetime) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.now = now
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip

    def _builder(
        self, subject: x509.Name, public: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - BACKDATE)
            .not_valid_after(self.now + VALIDITY)
        )

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, common_name: str, directory: Path, stem: str, *, server: bool) -> Issued:
        """A leaf for `common_name` (also its DNS name when `server`), written as STEM.pem
        (the leaf, then this CA) and STEM.key."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + self.cert.public_bytes(serialization.Encoding.PEM)
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        return Issued(cert_path, key_path)


def make_pki(directory: Path, *, connect_host: str, database_host: str) -> ClinicPki:
    """Create the three CAs and their leaves in `directory` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    connect_ca = _Ca("Acme connect CA", now)
    clinic_ca = _Ca("Clinic A CA", now)
    client_ca = _Ca("Acme client CA", now)
    return ClinicPki(
        connect_ca=connect_ca.write(directory / "acme-connect-ca.pem"),
        connect=connect_ca.issue(connect_host, directory, connect_host, server=True),
        clinic_ca=clinic_ca.write(directory / "clinic-a-ca.pem"),
        database=clinic_ca.issue(database_host, directory, database_host, server=True),
        client_ca=client_ca.write(directory / "acme-client-ca.pem"),
        client=client_ca.issue("acme-backend", directory, "acme-client", server=False),
    )
