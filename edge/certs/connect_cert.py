"""The certificate agents see on the connect host (the white-labelled connect URL).

Theory of operation. Agents dial `connect_host:443` (`connect.acme.example`), send that name as
SNI and verify the edge's certificate against their `connect_cas`. The operator gives the
certificate and key as PEM files in the edge config (`tls.cert`, `tls.key`); without them the
development CA issues one for the connect host (plus `localhost` for ngrok's SDKs).

`check_connect_certificate` is the pure part: it takes the files' bytes and answers with the
first problem an agent would hit, with the config key that holds it, or None: the chain does not
parse (`tls.cert`), the key does not parse or is encrypted (`tls.key`), the key is not the leaf's
(`tls.key`), the leaf does not name the connect host in its subjectAltName, exactly or by a
wildcard (`tls.cert`: agents check the name they dialled), or the leaf is expired or not yet
valid at `now` (`tls.cert`). `connect_tls_context` is the shell: it reads the files, runs the
check and builds the server context; every failure is a `CertError` whose message starts with
the key and its file (`tls.cert (/etc/burrow/connect.pem): ...`). The files are read once, at
start: replacing them needs a restart (agents reconnect and resume their endpoints).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from edge.certs.ca import CertError, DevCA, normalise_hostname, server_context_from_pem
from edge.config import EdgeConfig

__all__ = ["CertificateProblem", "check_connect_certificate", "connect_tls_context", "covers"]

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def covers(names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate naming `names` (normalised DNS subjectAltNames) is valid for `host`:
    an exact name, or a wildcard whose `*` stands for exactly the leftmost label (RFC 6125
    §6.4.3), as agents check it."""
    host = host.lower().removesuffix(".")
    if host in names:
        return True
    _, dot, parent = host.partition(".")
    return bool(dot) and f"*.{parent}" in names


@dataclass(frozen=True, slots=True)
class CertificateProblem:
    """What is wrong (`text`, one line) with the file the config key `key` names."""

    key: str  # "tls.cert" or "tls.key"
    text: str


def check_connect_certificate(
    cert_pem: bytes, key_pem: bytes, connect_host: str, *, now: datetime
) -> CertificateProblem | None:
    """The first problem with serving `cert_pem`/`key_pem` to agents dialling `connect_host`,
    or None if an agent that trusts the issuer will accept it."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        return CertificateProblem(
            "tls.cert",
            f"not a PEM certificate chain ({exc}); give '-----BEGIN CERTIFICATE-----' blocks, "
            "the connect host's certificate first",
        )
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password"
        return CertificateProblem(
            "tls.key",
            "the private key is encrypted; the edge needs it unencrypted (openssl pkey -in KEY "
            "-out KEY.plain), readable only by the edge's user",
        )
    except (ValueError, UnsupportedAlgorithm) as exc:
        return CertificateProblem(
            "tls.key",
            f"not a PEM private key ({exc}); give a '-----BEGIN ... PRIVATE KEY-----' block",
        )
    try:
        leaf_key = leaf.public_key().public_bytes(*_SPKI)
    except (ValueError, UnsupportedAlgorithm) as exc:
        return CertificateProblem("tls.cert", f"the certificate's public key does not load: {exc}")
    if key.public_key().public_bytes(*_SPKI) != leaf_key:
        return CertificateProblem(
            "tls.key",
            "not the key of the first certificate in tls.cert; give the key the connect host's "
            "certificate was issued for, and put that certificate first in tls.cert",
        )
    names = _dns_names(leaf)
    if not covers(names, connect_host):
        return CertificateProblem(
            "tls.cert",
            f"the certificate does not cover connect_host {connect_host} (it names "
            f"{', '.join(names) or 'no DNS name'}); agents check it against the host of their "
            "connect_url: use a certificate for that host, or set connect_host to a name it covers",
        )
    if now < leaf.not_valid_before_utc:
        return CertificateProblem(
            "tls.cert",
            f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
            "check the edge's clock, or use a certificate that is valid now",
        )
    if now > leaf.not_valid_after_utc:
        return CertificateProblem(
            "tls.cert",
            f"the certificate expired at {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it",
        )
    return None


def _dns_names(leaf: x509.Certificate) -> tuple[str, ...]:
    """The leaf's DNS subjectAltNames that an agent could match, normalised."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    names: list[str] = []
    for raw in san.get_values_for_type(x509.DNSName):
        try:
            names.append(normalise_hostname(raw))
        except CertError:
            continue  # a name no agent could ask for
    return tuple(names)


def connect_tls_context(
    config: EdgeConfig, ca: DevCA, *, now: datetime | None = None
) -> ssl.SSLContext:
    """The server context for agent connections: the `tls.cert`/`tls.key` files when the config
    names them (checked with `check_connect_certificate` at `now`, default the current time),
    else a development-CA leaf for the connect host, `localhost` and the loopback addresses
    (ngrok's SDKs resolve names with the system resolver, which knows `localhost` but not
    `connect.burrow.localhost`). Raises `CertError` naming the config key and file at fault."""
    cert, key = config.tls.cert, config.tls.key
    if cert is None or key is None:
        return ca.server_context([config.connect_host, "localhost", "127.0.0.1", "::1"])
    contents: list[bytes] = []
    for path, name in ((cert, "tls.cert"), (key, "tls.key")):
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise CertError(
                f"{name}: cannot read {path}: {exc.strerror or exc}; check the path and that "
                "the edge's user may read it"
            ) from None
    cert_pem, key_pem = contents
    problem = check_connect_certificate(
        cert_pem, key_pem, config.connect_host, now=now or datetime.now(UTC)
    )
    if problem is not None:
        path = cert if problem.key == "tls.cert" else key
        raise CertError(f"{problem.key} ({path}): {problem.text}")
    try:
        return server_context_from_pem(cert_pem, key_pem)
    except CertError as exc:
        raise CertError(f"tls.cert with tls.key ({cert}, {key}): {exc}") from exc
