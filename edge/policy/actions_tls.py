"""The `terminate-tls` action: the edge ends a `tls://` endpoint's TLS with the policy's own
certificate (and optionally checks client certificates), then forwards plaintext.

Config (DOCS `traffic-policy/actions/terminate-tls/config.mdx`), read by `parse_terminate_tls`:

    server_certificate                  PEM chain (leaf first)        required on this edge*
    server_private_key                  PEM key of the leaf           required on this edge*
    min_version / max_version           "1.2" | "1.3" (default 1.2 / 1.3)
    mutual_tls_certificate_authorities  [PEM], the CAs client certificates must chain to
    mutual_tls_verification_strategy    "require-and-verify" (the default; the only one here)

Checked once, when the policy loads (ERR_NGROK_2204 naming the field, as every invalid value):
the certificate and key parse (`cryptography`), the key is the certificate's, the key is not
encrypted, each CA parses, versions are known and in order. The server `ssl.SSLContext` is
then built here, once per policy, and every connection the action runs on uses it. OpenSSL
loads a key pair only from files, so the PEMs go through two anonymous in-memory files
(`memfd_create`, closed as soon as they are loaded; never on a filesystem), or where there is
no memfd, `edge.certs.ca.server_context_from_pem`'s private scratch directory (in RAM when
`/dev/shm` is usable). That is this module's one piece of I/O; everything else is pure.

Refused by name, because Burrow cannot do what they ask (fail closed):

* *no certificate*: ngrok then serves its own certificate for the host. Burrow's edge
  certificates (`certificates.files`, the development CA) are chosen per connection by the
  front door and are not visible to a policy at load time, so a policy without
  `server_certificate` and `server_private_key` is refused rather than served with a
  certificate the user never saw;
* `${...}` in any field (ngrok evaluates CEL there per connection; Burrow builds the context
  once);
* CA ids (`ca_...`) in `mutual_tls_certificate_authorities`: there is no CA store to look
  them up in; give the PEM;
* TLS 1.0 and 1.1 (ngrok allows them; this edge's OpenSSL policy does not offer them);
* strategies `require-any` and `request`: Python's `ssl` verifies every certificate a client
  presents, so "accept any certificate" cannot be served; and a strategy with no CAs.

The action runs in `on_tcp_connect` (`run_terminate_tls`): it records the config on the phase
run, and the front door does the handshake once the phase let the connection through
(`edge.front_door.tls_termination`). So later rules of the same phase do not see `conn.tls.*`
from that handshake, nor `actions.ngrok.terminate_tls.*` (reading those is that connection's
coded runtime error, never a made-up value). A second terminate-tls running on the same
connection fails it (two certificates cannot both be served).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from edge.certs.ca import CertError, server_context_from_pem
from edge.policy.errors import Place, PolicyRuntimeError
from edge.policy.fields import ConfigReader

if TYPE_CHECKING:
    from edge.policy.document import Policy
    from edge.policy.phase import PhaseRun

__all__ = [
    "REDACTED",
    "TLS_VERSIONS",
    "TerminateTlsConfig",
    "holds_private_key",
    "parse_terminate_tls",
    "run_terminate_tls",
    "shown_config",
]

#: The versions ngrok accepts (1.0 and 1.1 are refused here by name, see the module doc).
TLS_VERSIONS: Final = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_OLD_VERSIONS: Final = frozenset({"1.0", "1.1"})
_STRATEGIES: Final = ("require-and-verify", "require-any", "request")
#: ngrok's "internal gateway error": a connection whose policy cannot be applied as written.
_ERR_NGROK_2300: Final = "ERR_NGROK_2300"
_PEM_BEGIN: Final = "-----BEGIN"


@dataclass(frozen=True, slots=True, eq=False)
class TerminateTlsConfig:
    """A validated terminate-tls action: the server context to handshake with, and what it
    was built from that may be shown (never the private key, which lives only in `context`).
    Equal only to itself: two contexts cannot be compared."""

    context: ssl.SSLContext = field(compare=False, repr=False)
    certificate: x509.Certificate = field(compare=False, repr=False)  # the leaf
    min_version: str
    max_version: str
    client_cas: int  # how many CA certificates client certificates are checked against
    verification: str | None  # "require-and-verify", or None without mutual TLS

    @property
    def subject(self) -> str:
        """The leaf's subject, RFC 4514, for logs and traces."""
        return self.certificate.subject.rfc4514_string()


def _pem(reader: ConfigReader, name: str) -> str:
    """A required PEM field, given literally."""
    text = reader.string(name)
    if text is None:
        raise reader.invalid(
            name,
            "is required on this Burrow edge: without server_certificate and "
            "server_private_key ngrok serves its own certificate for the host, and this "
            "edge has none it could serve for a policy; give both as PEM",
        )
    if "${" in text:
        raise reader.invalid(
            name, "CEL interpolation is not supported here by this Burrow edge; give the PEM"
        )
    return text


def _certificates(reader: ConfigReader, name: str, text: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        certificates = []
    if not certificates:
        raise reader.invalid(name, "is not a PEM certificate (-----BEGIN CERTIFICATE-----)")
    return certificates


_KeyTypes = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)


def _check_key(reader: ConfigReader, text: str, leaf: x509.Certificate) -> None:
    """The key parses, is not encrypted, and is the leaf's. Messages never quote the key."""
    name = "server_private_key"
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise reader.invalid(
            name, "is encrypted; give the key unencrypted (it is kept in memory only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise reader.invalid(name, "is not a PEM private key this edge can read") from None
    if not isinstance(key, _KeyTypes):
        raise reader.invalid(name, "is not a key that can sign a TLS handshake")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != leaf.public_key().public_bytes(
        encoding, public
    ):
        raise reader.invalid(
            name,
            "does not match server_certificate (the key must be the first certificate's)",
        )


def _version(reader: ConfigReader, name: str, default: str) -> str:
    text = reader.string(name)
    if text is None:
        return default
    if text in _OLD_VERSIONS:
        raise reader.invalid(name, f"TLS {text} is not offered by this Burrow edge; use 1.2 or 1.3")
    if text not in TLS_VERSIONS:
        raise reader.invalid(name, f"must be one of 1.0, 1.1, 1.2 or 1.3, was {text!r}")
    return text


def _client_cas(reader: ConfigReader) -> list[x509.Certificate]:
    name = "mutual_tls_certificate_authorities"
    result: list[x509.Certificate] = []
    for index, text in enumerate(reader.strings(name)):
        place = f"{name}[{index}]"
        if "${" in text:
            raise reader.invalid(
                place, "CEL interpolation is not supported here by this Burrow edge; give the PEM"
            )
        if not text.lstrip().startswith(_PEM_BEGIN):
            raise reader.invalid(
                place,
                "certificate authority ids are not supported by this Burrow edge (it has no CA "
                "store to look them up in); give the CA certificate as PEM",
            )
        result.extend(_certificates(reader, place, text))
    return result


def _server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.2+ server context presenting `chain_pem` with `key_pem`, loaded from memory
    (module doc). Raises `CertError` if OpenSSL refuses the pair."""
    if not hasattr(os, "memfd_create"):
        return server_context_from_pem(chain_pem, key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    descriptors: list[int] = []
    try:
        for data in (chain_pem, key_pem):
            descriptor = os.memfd_create("burrow-terminate-tls", os.MFD_CLOEXEC)
            descriptors.append(descriptor)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        chain_path, key_path = (f"/proc/self/fd/{fd}" for fd in descriptors)
        context.load_cert_chain(chain_path, key_path)
    except ssl.SSLError as exc:
        raise CertError(f"the certificate chain and key do not load: {exc}") from exc
    except OSError:  # no memfd after all, or no /proc: the scratch directory will do
        return server_context_from_pem(chain_pem, key_pem)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)
    return context


def parse_terminate_tls(reader: ConfigReader) -> TerminateTlsConfig:
    """Read and check one terminate-tls config, and build its server context (module doc)."""
    chain_text = _pem(reader, "server_certificate")
    key_text = _pem(reader, "server_private_key")
    chain = _certificates(reader, "server_certificate", chain_text)
    _check_key(reader, key_text, chain[0])
    low = _version(reader, "min_version", "1.2")
    high = _version(reader, "max_version", "1.3")
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise reader.invalid("max_version", f"{high} is below min_version {low}")
    cas = _client_cas(reader)
    strategy = reader.string("mutual_tls_verification_strategy")
    if strategy is not None:
        if strategy not in _STRATEGIES:
            raise reader.invalid(
                "mutual_tls_verification_strategy",
                f"must be one of {', '.join(_STRATEGIES)}, was {strategy!r}",
            )
        if strategy != "require-and-verify":
            raise reader.invalid(
                "mutual_tls_verification_strategy",
                f"{strategy} is not supported by this Burrow edge: it verifies every client "
                "certificate against the CAs (require-and-verify)",
            )
        if not cas:
            raise reader.invalid(
                "mutual_tls_verification_strategy",
                "needs mutual_tls_certificate_authorities (the CAs to verify clients against)",
            )
    pem = serialization.Encoding.PEM
    try:
        context = _server_context(
            b"".join(cert.public_bytes(pem) for cert in chain), key_text.encode()
        )
    except CertError:
        raise reader.invalid(
            "server_private_key", "OpenSSL refused the certificate and key pair"
        ) from None
    context.minimum_version = TLS_VERSIONS[low]
    context.maximum_version = TLS_VERSIONS[high]
    if cas:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata="".join(ca.public_bytes(pem).decode() for ca in cas))
    return TerminateTlsConfig(
        context=context,
        certificate=chain[0],
        min_version=low,
        max_version=high,
        client_cas=len(cas),
        verification="require-and-verify" if cas else None,
    )


def run_terminate_tls(run: PhaseRun, config: TerminateTlsConfig, place: Place) -> None:
    """Record that the edge terminates this connection's TLS with `config` (the front door
    does the handshake after the phase). A second one on the same connection fails it."""
    if run.terminate_tls is not None:
        raise PolicyRuntimeError(
            _ERR_NGROK_2300,
            "a second terminate-tls ran on this connection; only one certificate can be served "
            "(make the rules' expressions exclusive)",
            place,
        )
    run.terminate_tls = config


#: What the admin API and `policy_json` show instead of a terminate-tls private key.
REDACTED: Final = "[redacted: kept in the edge's memory only]"


def shown_config(action_type: str, config: Mapping[str, object]) -> Mapping[str, object]:
    """An action's config as it may be shown (admin API, logs): a terminate-tls private key
    replaced by `REDACTED`; every other config unchanged."""
    if action_type != "terminate-tls" or config.get("server_private_key") is None:
        return config
    return {**config, "server_private_key": REDACTED}


def holds_private_key(policy: Policy) -> bool:
    """Whether `policy` carries a terminate-tls private key (then its text must not be shown
    as written: show it through `shown_config` instead)."""
    return any(
        action.type == "terminate-tls" and action.config.get("server_private_key") is not None
        for _, rules in policy.phases()
        for rule in rules
        for action in rule.actions
    )
