"""The development certificate authority: a first run serves TLS with no setup.

Theory of operation. `DevCA.load_or_create(data_dir)` keeps one ECDSA P-256 CA in the edge's data
directory (`ca.pem`, world-readable, for clients and agents to trust by path; `ca.key`, mode
0600). `issue` signs a short-lived leaf for any set of served names (DNS names, wildcards such as
`*.burrow.localhost`, IP literals). `server_context` turns a leaf into a server `ssl.SSLContext`;
`client_context` builds the matching client side, which trusts only that CA.

Production edges use static PEM files instead (the config's `tls.cert` / `tls.key`, and
`certificates.files` for endpoint hosts); `edge/certs/cert_store.py` chooses, per host, between
those files and this CA. `server_context_from_pem` builds the server context for either.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.formats.hostnames import HostnameError, parse_hostname

__all__ = [
    "CA_CERT_FILENAME",
    "CA_KEY_FILENAME",
    "CertError",
    "DevCA",
    "IssuedCert",
    "client_context",
    "normalise_hostname",
    "server_context_from_pem",
]

CA_CERT_FILENAME = "ca.pem"
CA_KEY_FILENAME = "ca.key"

# Ten years: a development CA is trusted by hand in clients and agents, so it should outlive the
# installs that trust it; it never leaves the data directory.
CA_VALIDITY = timedelta(days=3650)
# Ninety days, as public CAs issue: short enough that a copied leaf key stops mattering soon.
LEAF_VALIDITY = timedelta(days=90)
# Certificates start this far in the past, so a client whose clock runs a little behind the
# edge's does not reject a certificate issued a moment ago as "not yet valid".
CLOCK_SKEW_ALLOWANCE = timedelta(hours=1)
# Where `server_context_from_pem` writes the PEMs OpenSSL loads, for the moment it loads them,
# when the directory is usable: Linux's RAM filesystem, so private keys never reach a disk and a
# context costs about 1.2 ms instead of 2.7 ms with an ext4 /tmp (measured on the dev machine).
RAM_SCRATCH_DIR = "/dev/shm"
# X.509's upper bound for a commonName (RFC 5280, ub-common-name).
_COMMON_NAME_MAX = 64


class CertError(Exception):
    """A certificate or key cannot be made or loaded; the message says which file and why."""


@dataclass(frozen=True, kw_only=True)
class IssuedCert:
    """A leaf certificate signed by the development CA, in PEM."""

    hostnames: tuple[str, ...]
    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # the private key: kept out of logs and tracebacks
    chain_pem: bytes  # the leaf then the CA, what a server sends
    not_after: datetime  # timezone-aware UTC


class DevCA:
    """A certificate authority whose key lives in the edge's data directory."""

    def __init__(
        self,
        *,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
        ca_path: Path,
    ) -> None:
        """Wrap a loaded CA. Prefer `DevCA.load_or_create`, which finds or makes one."""
        self._certificate = certificate
        self._private_key = private_key
        self._ca_path = ca_path
        self._ca_pem = certificate.public_bytes(serialization.Encoding.PEM)
        self._key_identifier = certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value

    @classmethod
    def load_or_create(
        cls,
        data_dir: Path,
        *,
        common_name: str = "Burrow Development CA",
        now: datetime | None = None,
    ) -> DevCA:
        """Load the CA from `data_dir`, or create it there on first use.

        Creates `data_dir` (mode 0700) if missing. `common_name` and `now` apply only when a CA is
        created. Raises `CertError` naming the file when an existing CA cannot be read, or when
        `ca.pem` exists without `ca.key`.
        """
        cert_path = data_dir / CA_CERT_FILENAME
        key_path = data_dir / CA_KEY_FILENAME
        if cert_path.exists():
            return cls._load(cert_path, key_path)
        # No certificate: a fresh directory, or a crash after writing the key but before the
        # certificate (the key is written first). Either way nobody can trust this CA yet, so
        # making a new one loses nothing.
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CertError(f"cannot create the data directory {data_dir}: {exc}") from exc
        certificate, private_key = _make_ca(common_name, now or datetime.now(UTC))
        key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomically(key_path, key_pem, mode=0o600)
        _write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(certificate=certificate, private_key=private_key, ca_path=cert_path)

    @classmethod
    def _load(cls, cert_path: Path, key_path: Path) -> DevCA:
        hint = f"delete {cert_path} and {key_path} to make a new CA (clients must then re-trust it)"
        try:
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise CertError(f"cannot read the CA certificate {cert_path}: {exc}; {hint}") from exc
        try:
            private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise CertError(
                f"{cert_path} exists but its key {key_path} does not; restore the key or {hint}"
            ) from exc
        except (OSError, ValueError, TypeError) as exc:
            raise CertError(f"cannot read the CA key {key_path}: {exc}; {hint}") from exc
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{key_path} is not an EC private key; {hint}")
        if private_key.public_key() != certificate.public_key():
            raise CertError(f"{key_path} is not the key of {cert_path}; {hint}")
        try:
            certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound as exc:
            raise CertError(f"{cert_path} has no subjectKeyIdentifier; {hint}") from exc
        return cls(certificate=certificate, private_key=private_key, ca_path=cert_path)

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate in PEM, for clients to trust."""
        return self._ca_pem

    @property
    def ca_path(self) -> Path:
        """Where the CA certificate is, for clients to trust by path."""
        return self._ca_path

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    def issue(self, hostnames: Sequence[str], *, now: datetime | None = None) -> IssuedCert:
        """Sign a new leaf (with a new key) valid for `hostnames` for `LEAF_VALIDITY`.

        Names are host names by the one rule of protocol/formats/hostnames.py (lower-cased, a
        trailing dot dropped, no '_'), wildcards whose `*` is the whole leftmost label, or
        IPv4/IPv6 literals. The leaf never outlives the CA. Raises
        `CertError` for an empty list, a name that is none of those, or a CA that has expired.
        """
        names = _normalise_hostnames(hostnames)
        now = now or datetime.now(UTC)
        not_before = now - CLOCK_SKEW_ALLOWANCE
        not_after = min(now + LEAF_VALIDITY, self._certificate.not_valid_after_utc)
        if not_after <= now:
            key_path = self._ca_path.with_name(CA_KEY_FILENAME)
            raise CertError(
                f"the development CA {self._ca_path} expired on "
                f"{not_after:%Y-%m-%d %H:%M} UTC; delete it and {key_path} to make a new one "
                "(clients must then re-trust it)"
            )
        key = ec.generate_private_key(ec.SECP256R1())
        subject_names = [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Burrow development certificate")
        ]
        if len(names[0]) <= _COMMON_NAME_MAX:
            subject_names.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject_names))
            .issuer_name(self._certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_san_entries(names)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    self._key_identifier
                ),
                critical=False,
            )
            .sign(self._private_key, hashes.SHA256())
        )
        cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        return IssuedCert(
            hostnames=names,
            cert_pem=cert_pem,
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            chain_pem=cert_pem + self._ca_pem,
            not_after=not_after,
        )

    def server_context(
        self,
        hostnames: Sequence[str],
        *,
        now: datetime | None = None,
        alpn: Sequence[str] = (),
    ) -> ssl.SSLContext:
        """A server context (TLS 1.2 or later) presenting a new leaf for `hostnames`.

        The leaf expires after `LEAF_VALIDITY`; a long-running server should build a new
        context before then. `alpn` is as for `server_context_from_pem`.
        """
        issued = self.issue(hostnames, now=now)
        return server_context_from_pem(issued.chain_pem, issued.key_pem, alpn=alpn)


def server_context_from_pem(
    chain_pem: bytes, key_pem: bytes, *, alpn: Sequence[str] = ()
) -> ssl.SSLContext:
    """A server context (TLS 1.2 or later) presenting the given chain and key.

    `alpn` lists the application protocols the server accepts, most preferred first; the
    handshake picks the first of the client's offers that is listed, or none (a client that
    offers only others still connects, and `selected_alpn_protocol()` returns None). Empty
    means no ALPN. Ciphers and options are `ssl.create_default_context(Purpose.CLIENT_AUTH)`'s.

    `ssl.SSLContext.load_cert_chain` reads only files, so the PEMs go through a private temporary
    directory (mode 0700, made by `tempfile`; in RAM when `/dev/shm` is usable, else in this
    process' temp dir) that is removed as soon as they are loaded. The alternative, caching
    leaves under the data directory, would keep private keys on disk and need expiry and
    invalidation logic; a P-256 leaf costs about a millisecond to make, so there is nothing
    worth caching. Raises `CertError` if OpenSSL rejects the pair.
    """
    if isinstance(alpn, str):
        raise TypeError(f"alpn must be a list of protocol names, not the string {alpn!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(list(alpn))
    with _scratch_directory() as directory:
        chain_path = Path(directory) / "chain.pem"
        key_path = Path(directory) / "key.pem"
        # Not fsynced: the files are deleted in a moment, and on ext4 the two fsyncs doubled
        # the cost of a context, paid on every certificate the edge issues on demand.
        _write_private(chain_path, chain_pem, mode=0o600, durable=False)
        _write_private(key_path, key_pem, mode=0o600, durable=False)
        try:
            context.load_cert_chain(chain_path, key_path)
        except ssl.SSLError as exc:
            raise CertError(f"the certificate chain and key do not load: {exc}") from exc
    return context


def _scratch_directory() -> tempfile.TemporaryDirectory[str]:
    """A new private temporary directory (mode 0700), in RAM if possible."""
    if os.access(RAM_SCRATCH_DIR, os.W_OK | os.X_OK):
        try:
            return tempfile.TemporaryDirectory(prefix="burrow-cert-", dir=RAM_SCRATCH_DIR)
        except OSError:
            pass  # full, say: the ordinary temp dir will do
    return tempfile.TemporaryDirectory(prefix="burrow-cert-")


def client_context(ca_path: Path) -> ssl.SSLContext:
    """A client context (TLS 1.2 or later) that trusts only the CA in `ca_path`.

    Verification and hostname checking are on, with OpenSSL's strict X.509 checks as Python 3.13
    enables by default, so a certificate that later Pythons would reject fails here too.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_path))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def _make_ca(
    common_name: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not 0 < len(common_name) <= _COMMON_NAME_MAX:
        raise CertError(f"the CA common name must be 1 to {_COMMON_NAME_MAX} characters")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Burrow"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + CA_VALIDITY)
        # pathlen 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def normalise_hostname(raw: str) -> str:
    """`raw` as a certificate names it: lower-cased, without a trailing dot, IPs canonical.

    Accepts what `DevCA.issue` accepts: host names by the one rule (protocol/formats/hostnames.py:
    ASCII, punycode for international names, no '_'), wildcards whose `*` is the whole leftmost
    label over at least two more labels, and IPv4/IPv6 literals. Raises `CertError` saying what
    is wrong otherwise.
    """
    return _normalise_hostname(raw)


def _normalise_hostnames(hostnames: Sequence[str]) -> tuple[str, ...]:
    if isinstance(hostnames, str):
        raise CertError(f"hostnames must be a list of names, not the string {hostnames!r}")
    names: list[str] = []
    for raw in hostnames:
        name = _normalise_hostname(raw)
        if name not in names:
            names.append(name)
    if not names:
        raise CertError("a certificate needs at least one hostname")
    return tuple(names)


def _normalise_hostname(raw: str) -> str:
    try:
        name = parse_hostname(raw, wildcard=True, ip=True)
    except HostnameError as exc:
        raise CertError(
            f"{exc}; a certificate names DNS names (punycode for international names), "
            "wildcards with a leading '*.', or IP addresses"
        ) from None
    # RFC 6125 §7.2 / CA/B Baseline Requirements: a wildcard directly under a top-level name
    # (`*.localhost`, `*.com`) is one no client accepts; the host-name rule allows it elsewhere.
    if name.startswith("*.") and name.count(".") < 2:
        raise CertError(
            f"wildcard {raw!r} must cover a name with at least two labels, like *.burrow.localhost"
        )
    return name


def _san_entries(names: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _write_private(path: Path, data: bytes, *, mode: int, durable: bool = True) -> None:
    """Create `path` (which must not exist) with exactly `mode`, whatever the umask.

    `durable` syncs the data to disk before returning; files deleted right after need not be.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(data)
        if durable:
            file.flush()
            os.fsync(fd)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` in one step, so a crash never leaves half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        _write_private(temporary, data, mode=mode)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CertError(f"cannot write {path}: {exc}") from exc
