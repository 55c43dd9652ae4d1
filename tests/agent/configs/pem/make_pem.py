"""Regenerate the PEM fixtures the config tests read (run from the repo root):

    .venv/bin/python tests/agent/configs/pem/make_pem.py

A CA, a server certificate it signs for secure.example.com with its key, an unrelated key (for
"does not match"), and the server key encrypted with the password "burrow" (for "is encrypted").
Valid for a century, so the fixtures do not expire; small EC keys keep the inline copies short.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
START = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
END = datetime.datetime(2125, 1, 1, tzinfo=datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def main() -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Burrow test CA"))
        .issuer_name(_name("Burrow test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(END)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("secure.example.com"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(END)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("secure.example.com")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (HERE / "ca.pem").write_bytes(ca.public_bytes(pem))
    (HERE / "server.pem").write_bytes(server.public_bytes(pem))
    (HERE / "server.key").write_bytes(_key_pem(server_key))
    (HERE / "other.key").write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    (HERE / "encrypted.key").write_bytes(_key_pem(server_key, b"burrow"))


if __name__ == "__main__":
    main()
