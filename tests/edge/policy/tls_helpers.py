"""Certificates for terminate-tls tests, made with `cryptography` on the spot: a CA, leaves it
signs (server or client), self-signed leaves, and a terminate-tls policy document around them.

Not a test module (no `test_` prefix): pytest collects nothing here.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "make_ca", "make_leaf", "terminate_tls_policy"]


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
        now + datetime.timedelta(days=1)
    )


def make_ca(common_name: str = "Burrow test CA") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return Issued(_validity(builder).sign(key, hashes.SHA256()), key)


def make_leaf(name: str, issuer: Issued | None = None, *, client: bool = False) -> Issued:
    """A leaf for `name` (a DNS SAN), signed by `issuer` (self-signed if None); `client`
    makes it a client certificate (clientAuth), else a server one (serverAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer.cert.subject if issuer is not None else _name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signer = issuer.key if issuer is not None else key
    return Issued(_validity(builder).sign(signer, hashes.SHA256()), key)


def terminate_tls_policy(server: Issued, *, client_ca: Issued | None = None) -> str:
    """An on_tcp_connect policy (JSON) whose one rule runs terminate-tls with `server`'s
    certificate and key, requiring client certificates from `client_ca` when given."""
    config: dict[str, object] = {
        "server_certificate": server.cert_pem,
        "server_private_key": server.key_pem,
    }
    if client_ca is not None:
        config["mutual_tls_certificate_authorities"] = [client_ca.cert_pem]
    action = {"type": "terminate-tls", "config": config}
    return json.dumps({"on_tcp_connect": [{"name": "edge tls", "actions": [action]}]})
