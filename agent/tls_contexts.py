"""The `ssl.SSLContext`s an endpoint needs, built from PEM once and checked piece by piece.

Two kinds:

* `termination_context`: the server side of `agent_tls_termination` (a tls:// endpoint whose TLS
  the agent terminates), with the endpoint's certificate and key and, when
  `mutual_tls_certificate_authorities` are given, client certificates required and verified
  against exactly those CAs, and, with `alpn_protocols`, ALPN negotiated from that list.
* `upstream_context`: the client side towards an `https://` upstream, verifying the upstream's
  certificate against the system store or the configured CA file, or not at all.

Each PEM input (an absolute path or inline PEM text, as the config file allows) is parsed with
`cryptography` before OpenSSL sees it, so a mistake is reported against the input that holds it
(`TLSMaterialError.field`): the config layer turns that into the key path, the command line into
the flag. Validation happens when the config is loaded (`burrow config check` reports it) and the
contexts are built again, once per endpoint, when the agent starts; never per connection.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from agent.errors import AgentError

__all__ = [
    "MAX_ALPN_NAME_BYTES",
    "MIN_TLS_VERSION",
    "UPSTREAM_ALPN",
    "TLSMaterialError",
    "alpn_problem",
    "read_pem",
    "termination_context",
    "upstream_context",
]

#: TLS 1.0 and 1.1 are deprecated (RFC 8996); the agent's link to the edge already needs 1.2.
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2
#: The agent pipes HTTP/1.1 bytes to an https upstream, so that is all it may negotiate: an
#: upstream that picked h2 would misread them.
UPSTREAM_ALPN = ("http/1.1",)
#: RFC 7301 3.1: a protocol name is 1 to 255 bytes on the wire (a one-byte length prefix).
MAX_ALPN_NAME_BYTES = 255
#: Where inline PEM starts; anything else is a file path.
_PEM_MARKER = "-----BEGIN"
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class TLSMaterialError(AgentError):
    """A certificate, key or CA input that cannot be used. `field` names the input
    (`server_certificate`, `server_private_key`, `mutual_tls_certificate_authorities` with
    `index`, or `tls_verify_cas`); the message says what is wrong with it."""

    def __init__(self, message: str, *, field: str, index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index = index


def read_pem(value: str, *, field: str, index: int | None = None) -> bytes:
    """The PEM bytes of `value`: the text itself if it is inline PEM, else the file it names."""
    if value.lstrip().startswith(_PEM_MARKER):
        return value.encode()
    try:
        return Path(value).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TLSMaterialError(f"cannot read {value}: {reason}", field=field, index=index) from None


def alpn_problem(name: object) -> str | None:
    """What is wrong with `name` as an ALPN protocol name (`alpn_protocols`), or None.

    RFC 7301 names are opaque bytes of 1-255; Python's ssl module sends them ASCII-encoded, and
    every registered name (IANA "TLS ALPN Protocol IDs": `postgresql`, `h2`, `http/1.1`, ...) is
    printable ASCII, so that is what is accepted."""
    if not isinstance(name, str):
        return f"must be a protocol name such as postgresql, found {type(name).__name__}"
    if not name:
        return "is empty; give a protocol name such as postgresql"
    if not all("!" <= char <= "~" for char in name):
        return f"{name!r} is not printable ASCII without spaces, as ALPN names are"
    if len(name) > MAX_ALPN_NAME_BYTES:
        return f"is {len(name)} bytes long; ALPN names are at most {MAX_ALPN_NAME_BYTES} (RFC 7301)"
    return None


def termination_context(
    certificate: str,
    private_key: str,
    client_cas: Sequence[str] = (),
    *,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2 or later) for an endpoint the agent terminates.

    `certificate` is the leaf first, then any intermediates; `private_key` an unencrypted key
    matching the leaf. With `client_cas`, a client must present a certificate that chains to
    one of them, or the handshake fails with an alert. `alpn` lists the application protocols
    the server selects from, most preferred first: the handshake picks the first of them the
    client offers. A client that offers ALPN but none of them, or offers no ALPN, still
    completes the handshake with no protocol selected (OpenSSL's answer through Python's ssl
    module, which cannot send RFC 7301's no_application_protocol alert); empty means the
    server ignores ALPN. Raises TLSMaterialError (`field` "alpn_protocols" for a bad name).
    """
    if isinstance(alpn, str):
        raise TypeError(f"alpn must be a list of protocol names, not the string {alpn!r}")
    for index, name in enumerate(alpn):
        problem = alpn_problem(name)
        if problem is None and name in alpn[:index]:
            problem = f"{name!r} is listed twice; list each protocol once"
        if problem is not None:
            raise TLSMaterialError(problem, field="alpn_protocols", index=index)
    cert_pem = read_pem(certificate, field="server_certificate")
    chain = _certificates(cert_pem, field="server_certificate")
    key_pem = read_pem(private_key, field="server_private_key")
    key = _private_key(key_pem)
    if chain[0].public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise TLSMaterialError(
            "does not match server_certificate (the certificate's public key is another "
            "key's); give the key the certificate was issued for",
            field="server_private_key",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_TLS_VERSION
    _load_cert_chain(context, cert_pem, key_pem)
    if client_cas:
        context.verify_mode = ssl.CERT_REQUIRED
        field = "mutual_tls_certificate_authorities"
        for index, ca in enumerate(client_cas):
            pem = read_pem(ca, field=field, index=index)
            _certificates(pem, field=field, index=index)
            _load_cas(context, pem, field=field, index=index)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def upstream_context(*, verify: bool = True, cas: str | None = None) -> ssl.SSLContext:
    """A TLS client context for an https:// upstream: verified against `cas` (a PEM path or
    inline PEM; only those CAs are trusted) or the system store, or not verified at all when
    `verify` is False. Offers ALPN http/1.1 only. Raises TLSMaterialError for a bad `cas`."""
    if cas is None:
        context = ssl.create_default_context()
    else:
        pem = read_pem(cas, field="tls_verify_cas")
        _certificates(pem, field="tls_verify_cas")
        try:
            # Given cadata, create_default_context trusts those CAs and not the system store.
            context = ssl.create_default_context(cadata=pem.decode("ascii", errors="replace"))
        except ssl.SSLError as exc:
            raise TLSMaterialError(
                f"OpenSSL refused the CA certificates: {exc.reason or exc}", field="tls_verify_cas"
            ) from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = MIN_TLS_VERSION
    context.set_alpn_protocols(list(UPSTREAM_ALPN))
    return context


def _certificates(pem: bytes, *, field: str, index: int | None = None) -> list[x509.Certificate]:
    if _PEM_MARKER.encode() + b" CERTIFICATE-----" not in pem:
        raise TLSMaterialError(
            "holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' line); give a PEM "
            "file, not DER or a key",
            field=field,
            index=index,
        )
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TLSMaterialError(
            f"holds a PEM certificate that cannot be parsed ({_first_sentence(exc)}); "
            "check that the file is complete",
            field=field,
            index=index,
        ) from None


def _private_key(pem: bytes) -> PrivateKeyTypes:
    field = "server_private_key"
    if b"PRIVATE KEY-----" not in pem:
        raise TLSMaterialError(
            "holds no PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)", field=field
        )
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise TLSMaterialError(
            "is encrypted; Burrow needs an unencrypted key (decrypt it with "
            "`openssl pkey -in KEY -out PLAIN_KEY`) and keep it readable only by the agent",
            field=field,
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TLSMaterialError(
            f"holds a private key that cannot be parsed ({_first_sentence(exc)})", field=field
        ) from None


def _load_cert_chain(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """`load_cert_chain` reads only files, and inline PEM is allowed; so both go to a private
    temporary directory (mode 0700, removed at once) for the duration of the call."""
    with tempfile.TemporaryDirectory(prefix="burrow-tls-") as directory:
        cert_path = Path(directory) / "certificate.pem"
        key_path = Path(directory) / "key.pem"
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise TLSMaterialError(
                f"OpenSSL refused the certificate and key: {exc.reason or exc}",
                field="server_private_key",
            ) from None


def _load_cas(context: ssl.SSLContext, pem: bytes, *, field: str, index: int) -> None:
    try:
        context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
    except ssl.SSLError as exc:
        raise TLSMaterialError(
            f"OpenSSL refused the CA certificates: {exc.reason or exc}", field=field, index=index
        ) from None


def _first_sentence(exc: Exception) -> str:
    return str(exc).split(". ")[0].rstrip(".")
