"""CertStore: real certificates (trustme for files, the real DevCA for on-demand leaves).

What a context serves is observed the way a client observes it: a TLS handshake (over memory BIOs,
and once over loopback TCP with trio), reading the certificate the server presented.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.certs import cert_store
from edge.certs.ca import LEAF_VALIDITY, CertError, DevCA, IssuedCert, client_context
from edge.certs.cert_store import ALPN_PROTOCOLS, CertStore, watch_certificates
from edge.config import CertificateFiles, CertificatesConfig

TIMEOUT = 10.0  # seconds: a loopback handshake takes milliseconds; a hang fails fast
HANDSHAKE_ROUNDS = 10  # a TLS 1.2 or 1.3 handshake needs at most three flights each way


class CountingCA(DevCA):
    """The real development CA, remembering what it issued."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issued: list[tuple[str, ...]] = []

    def issue(self, hostnames: Sequence[str], *, now: datetime | None = None) -> IssuedCert:
        result = super().issue(hostnames, now=now)
        self.issued.append(result.hostnames)
        return result


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def dev_ca(tmp_path: Path) -> CountingCA:
    ca = CountingCA.load_or_create(tmp_path / "data")
    assert isinstance(ca, CountingCA)
    return ca


@pytest.fixture(scope="module")
def file_ca() -> trustme.CA:
    return trustme.CA()


# --- helpers -------------------------------------------------------------------------------------


def write_pair(
    directory: Path, stem: str, cert_pem: bytes, key_pem: bytes, *, atomic: bool = True
) -> CertificateFiles:
    """Write `stem.pem` and `stem.key`, by rename (as deploy tools do) or in place."""
    files = CertificateFiles(cert=directory / f"{stem}.pem", key=directory / f"{stem}.key")
    for path, data in ((files.cert, cert_pem), (files.key, key_pem)):
        if atomic:
            temporary = path.with_name(path.name + ".new")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        else:
            path.write_bytes(data)
    return files


def leaf_pems(ca: trustme.CA, *names: str) -> tuple[bytes, bytes, int]:
    """A new leaf for `names`: chain PEM, key PEM and serial."""
    leaf = ca.issue_cert(*names)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    serial = x509.load_pem_x509_certificate(chain).serial_number
    return chain, leaf.private_key_pem.bytes(), serial


def write_leaf(
    directory: Path, stem: str, ca: trustme.CA, *names: str
) -> tuple[CertificateFiles, int]:
    chain, key, serial = leaf_pems(ca, *names)
    return write_pair(directory, stem, chain, key), serial


def config(
    *files: CertificateFiles, development_ca: bool = False, cache_size: int = 1024
) -> CertificatesConfig:
    return CertificatesConfig(files=files, development_ca=development_ca, cache_size=cache_size)


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> ssl.SSLObject:
    """Complete one handshake over memory BIOs, SNI `host`; return the client's side.

    Raises what either side raises (a client that cannot verify the server, say).
    """
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname=host)
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    pending = [client_side, server_side]
    for _ in range(HANDSHAKE_ROUNDS):
        for side in list(pending):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                continue
            pending.remove(side)
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if not pending:
            return client_side
    raise AssertionError("the handshake did not finish")


def served_leaf(context: ssl.SSLContext | None, host: str) -> x509.Certificate:
    """The certificate `context` presents to a client asking for `host` (not verified)."""
    assert context is not None, f"no context for {host}"
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    der = handshake(context, client, host).getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def context_of(store: CertStore, host: str) -> ssl.SSLContext:
    context = store.context_for(host)
    assert context is not None, f"no context for {host}"
    return context


def served_serial(store: CertStore, host: str) -> int:
    return served_leaf(store.context_for(host), host).serial_number


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return client


def dns_names(leaf: x509.Certificate) -> list[str]:
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


# --- which file serves a host ----------------------------------------------------------------


@pytest.mark.parametrize("exact_first", [True, False])
def test_an_exact_name_beats_a_wildcard_in_either_order(
    tmp_path: Path, file_ca: trustme.CA, exact_first: bool
) -> None:
    exact, exact_serial = write_leaf(tmp_path, "exact", file_ca, "api.example.com")
    wildcard, wildcard_serial = write_leaf(tmp_path, "wild", file_ca, "*.example.com")
    order = (exact, wildcard) if exact_first else (wildcard, exact)
    store = CertStore(config(*order), None)
    assert served_serial(store, "api.example.com") == exact_serial
    assert served_serial(store, "web.example.com") == wildcard_serial
    assert store.describe("api.example.com") == f"file {exact.cert}"
    assert store.describe("web.example.com") == f"file {wildcard.cert}"


@pytest.mark.parametrize(
    ("host", "covered"),
    [
        ("a.example.com", True),
        ("xn--bcher-kva.example.com", True),
        ("A.Example.COM.", True),  # case and a trailing dot do not matter
        ("example.com", False),  # the wildcard's label must not be empty
        ("a.b.example.com", False),  # nor more than one label
        (".example.com", False),
        ("*.example.com", False),  # an SNI is never a wildcard
        ("a.example.org", False),
        ("aexample.com", False),
    ],
)
def test_a_wildcard_covers_exactly_one_label(
    tmp_path: Path, file_ca: trustme.CA, host: str, covered: bool
) -> None:
    files, serial = write_leaf(tmp_path, "wild", file_ca, "*.example.com")
    store = CertStore(config(files), None)
    context = store.context_for(host)
    if covered:
        assert served_leaf(context, host).serial_number == serial
        assert store.describe(host) == f"file {files.cert}"
    else:
        assert context is None
        assert store.describe(host) == "none"


def test_the_later_file_overrides_an_earlier_one(tmp_path: Path, file_ca: trustme.CA) -> None:
    first, _ = write_leaf(tmp_path, "first", file_ca, "api.example.com", "*.example.com")
    second, second_serial = write_leaf(tmp_path, "second", file_ca, "api.example.com")
    third, third_serial = write_leaf(tmp_path, "third", file_ca, "*.example.com", "only.test")
    store = CertStore(config(first, second, third), None)
    assert served_serial(store, "api.example.com") == second_serial
    assert served_serial(store, "web.example.com") == third_serial
    assert served_serial(store, "only.test") == third_serial
    assert store.hosts_covered() == ["*.example.com", "api.example.com", "only.test"]


def test_a_file_serves_a_verifying_client_with_alpn(tmp_path: Path, file_ca: trustme.CA) -> None:
    files, serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files), None)
    client = trusting(file_ca)
    client.set_alpn_protocols(["h2", "http/1.1"])
    tls = handshake(context_of(store, "api.example.com"), client, "api.example.com")
    assert tls.selected_alpn_protocol() == "http/1.1"
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    assert x509.load_der_x509_certificate(der).serial_number == serial


async def test_a_real_trio_handshake_over_loopback(tmp_path: Path, file_ca: trustme.CA) -> None:
    files, _ = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files), None)
    context = store.context_for("api.example.com")
    assert context is not None
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def serve_one() -> None:
        stream = await listeners[0].accept()
        tls = trio.SSLStream(stream, context, server_side=True)
        await tls.do_handshake()
        await tls.send_all(f"{tls.selected_alpn_protocol()}".encode())
        await tls.aclose()

    client = trusting(file_ca)
    client.set_alpn_protocols(["http/1.1"])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one)
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(tcp, client, server_hostname="api.example.com")
            assert await tls.receive_some() == b"http/1.1"
            await tls.aclose()
        await listeners[0].aclose()


def test_a_client_without_http1_in_alpn_still_connects(tmp_path: Path, file_ca: trustme.CA) -> None:
    # The front door must treat "no protocol selected" as HTTP/1.1.
    files, _ = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files), None)
    client = trusting(file_ca)
    client.set_alpn_protocols(["h2"])
    tls = handshake(context_of(store, "api.example.com"), client, "api.example.com")
    assert tls.selected_alpn_protocol() is None


def test_context_settings(tmp_path: Path, file_ca: trustme.CA, dev_ca: CountingCA) -> None:
    files, _ = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files, development_ca=True), dev_ca)
    defaults = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for host in ("api.example.com", "issued.burrow.localhost"):
        context = store.context_for(host)
        assert context is not None
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.options == defaults.options
        assert [c["name"] for c in context.get_ciphers()] == [
            c["name"] for c in defaults.get_ciphers()
        ]
        # TLS 1.2 clients are served, with ALPN.
        client = trusting(file_ca)
        client.load_verify_locations(cadata=dev_ca.ca_pem.decode())
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        client.set_alpn_protocols(list(ALPN_PROTOCOLS))
        tls = handshake(context, client, host)
        assert tls.version() == "TLSv1.2"
        assert tls.selected_alpn_protocol() == "http/1.1"


# --- the development CA ------------------------------------------------------------------------


def test_an_uncovered_host_gets_a_leaf_from_the_development_ca(
    tmp_path: Path, file_ca: trustme.CA, dev_ca: CountingCA
) -> None:
    files, serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files, development_ca=True), dev_ca)
    host = "app.burrow.localhost"
    assert store.describe(host) == "development CA"
    context = store.context_for(host)
    assert context is not None
    client = client_context(dev_ca.ca_path)
    client.set_alpn_protocols(["h2", "http/1.1"])
    tls = handshake(context, client, host)  # verifies the chain and the host name
    assert tls.selected_alpn_protocol() == "http/1.1"
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    leaf = x509.load_der_x509_certificate(der)
    assert dns_names(leaf) == [host]
    leaf.verify_directly_issued_by(dev_ca.certificate)
    # The next handshake is a cache hit; a covered host never reaches the CA.
    assert store.context_for(host) is context
    assert store.context_for("APP.burrow.localhost.") is context
    assert served_serial(store, "api.example.com") == serial
    assert dev_ca.issued == [(host,)]
    # The leaf names exactly that host, so a client asking for another name refuses it.
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        handshake(context, client_context(dev_ca.ca_path), "other.burrow.localhost")


def test_the_cache_keeps_the_most_recently_used(dev_ca: CountingCA) -> None:
    store = CertStore(config(development_ca=True, cache_size=2), dev_ca)
    a = store.context_for("a.test")
    b = store.context_for("b.test")
    assert store.context_for("a.test") is a  # a is now the most recent
    c = store.context_for("c.test")  # evicts b, the least recently used
    assert len(dev_ca.issued) == 3
    assert store.context_for("a.test") is a
    assert store.context_for("c.test") is c
    assert len(dev_ca.issued) == 3
    b_again = store.context_for("b.test")  # re-issued, evicting a
    assert b_again is not b
    assert len(dev_ca.issued) == 4
    a_again = store.context_for("a.test")
    assert a_again is not a
    assert dev_ca.issued == [("a.test",), ("b.test",), ("c.test",), ("b.test",), ("a.test",)]


def test_the_oldest_of_three_hosts_is_reissued_with_a_cache_of_two(dev_ca: CountingCA) -> None:
    store = CertStore(config(development_ca=True, cache_size=2), dev_ca)
    for host in ("one.test", "two.test", "three.test", "one.test"):
        assert store.context_for(host) is not None
    assert dev_ca.issued == [("one.test",), ("two.test",), ("three.test",), ("one.test",)]
    assert store.context_for("three.test") is not None  # still cached
    assert len(dev_ca.issued) == 4


def test_an_issued_leaf_is_renewed_when_a_third_of_its_life_remains(dev_ca: CountingCA) -> None:
    clock = FakeClock()
    start = clock.now
    store = CertStore(config(development_ca=True), dev_ca, clock=clock)
    first = store.context_for("app.test")
    assert served_leaf(first, "app.test").not_valid_after_utc == start + LEAF_VALIDITY
    clock.now = start + LEAF_VALIDITY * 2 / 3 - timedelta(minutes=1)
    assert store.context_for("app.test") is first
    clock.now = start + LEAF_VALIDITY * 2 / 3 + timedelta(minutes=1)
    renewed = store.context_for("app.test")
    assert renewed is not first
    assert served_leaf(renewed, "app.test").not_valid_after_utc == clock.now + LEAF_VALIDITY
    assert store.context_for("app.test") is renewed
    assert len(dev_ca.issued) == 2


def test_a_dying_ca_does_not_sign_a_leaf_per_handshake(
    dev_ca: CountingCA, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    ca_expiry = dev_ca.certificate.not_valid_after_utc
    clock.now = ca_expiry - timedelta(seconds=30)  # leaves now live 30 seconds
    store = CertStore(config(development_ca=True), dev_ca, clock=clock)
    first = store.context_for("app.test")
    assert served_leaf(first, "app.test").not_valid_after_utc == ca_expiry
    clock.now += timedelta(seconds=29)  # past two thirds of its life, but renewed at most
    assert store.context_for("app.test") is first  # once a minute
    assert len(dev_ca.issued) == 1
    # Expired: the old leaf stays (clients will say why they refuse it); new hosts get none,
    # and the operator is told once.
    clock.now = ca_expiry + timedelta(minutes=2)
    assert store.context_for("app.test") is first
    assert store.context_for("new.test") is None
    assert store.context_for("new.test") is None
    assert len(dev_ca.issued) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert f"the development CA {dev_ca.ca_path} expired on" in errors[0]


def test_no_development_ca_means_none(dev_ca: CountingCA) -> None:
    off = CertStore(config(development_ca=False), dev_ca)
    assert off.context_for("app.test") is None
    assert off.describe("app.test") == "none"
    no_ca = CertStore(config(development_ca=True), None)
    assert no_ca.context_for("app.test") is None
    assert no_ca.describe("app.test") == "none"
    assert dev_ca.issued == []


@pytest.mark.parametrize("host", ["under_score.test", "*.test", "", "a..test", "exämple.test"])
def test_a_name_no_certificate_can_carry_gets_none(dev_ca: CountingCA, host: str) -> None:
    store = CertStore(config(development_ca=True), dev_ca)
    assert store.context_for(host) is None
    assert store.describe(host) == "none"
    assert dev_ca.issued == []


# --- bad files at load ------------------------------------------------------------------------


def no_san_pems() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.example.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def bad_files(
    kind: str, directory: Path, ca: trustme.CA, dev_ca: DevCA
) -> tuple[CertificateFiles, Path, str]:
    """Files of one broken kind, the path the error must name, and a phrase it must contain."""
    chain, key, _ = leaf_pems(ca, "api.example.com")
    if kind == "garbage certificate":
        files = write_pair(directory, "bad", b"not a certificate\n", key)
        return files, files.cert, "not a PEM certificate chain"
    if kind == "garbage key":
        files = write_pair(directory, "bad", chain, b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
        return files, files.key, "not a PEM private key"
    if kind == "key of another certificate":
        _, other_key, _ = leaf_pems(ca, "api.example.com")
        files = write_pair(directory, "bad", chain, other_key)
        return files, files.key, "is not the key of the first certificate"
    if kind == "no subjectAltName":
        files = write_pair(directory, "bad", *no_san_pems())
        return files, files.cert, "no DNS name in its subjectAltName"
    if kind == "only an IP subjectAltName":
        issued = dev_ca.issue(["127.0.0.1"])
        files = write_pair(directory, "bad", issued.chain_pem, issued.key_pem)
        return files, files.cert, "no DNS name in its subjectAltName"
    if kind == "encrypted key":
        leaf = ca.issue_cert("api.example.com")
        private = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
        encrypted = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        files = write_pair(directory, "bad", leaf.cert_chain_pems[0].bytes(), encrypted)
        return files, files.key, "the private key is encrypted"
    if kind == "missing key":
        files = write_pair(directory, "bad", chain, key)
        files.key.unlink()
        return files, files.key, "cannot read the private key: No such file"
    raise AssertionError(kind)


BAD_KINDS = [
    "garbage certificate",
    "garbage key",
    "key of another certificate",
    "no subjectAltName",
    "only an IP subjectAltName",
    "encrypted key",
    "missing key",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_file_at_load_names_the_file(
    tmp_path: Path, file_ca: trustme.CA, dev_ca: DevCA, kind: str
) -> None:
    good, _ = write_leaf(tmp_path, "good", file_ca, "good.example.com")
    files, culprit, phrase = bad_files(kind, tmp_path, file_ca, dev_ca)
    with pytest.raises(CertError) as caught:
        CertStore(config(good, files), None)
    message = str(caught.value)
    assert message.startswith(f"certificates.files[1]: {culprit}")
    assert phrase in message
    assert str(good.cert) not in message


def test_every_bad_file_at_load_is_named(tmp_path: Path, file_ca: trustme.CA) -> None:
    one = write_pair(tmp_path, "one", b"garbage", b"garbage")
    two = write_pair(tmp_path, "two", *no_san_pems())
    with pytest.raises(CertError) as caught:
        CertStore(config(one, two), None)
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "certificates.files[0]",
        "certificates.files[1]",
    ]
    assert str(one.cert) in lines[0]
    assert str(two.cert) in lines[1]


def test_a_san_name_no_client_could_match_is_skipped(tmp_path: Path) -> None:
    # A DNS name with an underscore is not a host name; the file still serves its other names.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-signed")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("bad_name.example.com"), x509.DNSName("API.example.com")]
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    files = write_pair(tmp_path, "mixed", cert.public_bytes(serialization.Encoding.PEM), key_pem)
    store = CertStore(config(files), None)
    assert store.hosts_covered() == ["api.example.com"]
    assert served_serial(store, "api.example.com") == cert.serial_number


# --- reloading -------------------------------------------------------------------------------


def test_reload_serves_a_replaced_file(tmp_path: Path, file_ca: trustme.CA) -> None:
    files, old_serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    other, other_serial = write_leaf(tmp_path, "other", file_ca, "other.example.com")
    store = CertStore(config(files, other), None)
    other_context = store.context_for("other.example.com")
    _, new_serial = write_leaf(tmp_path, "api", file_ca, "api.example.com", "new.example.com")
    assert served_serial(store, "api.example.com") == old_serial  # nothing reloads by itself
    assert store.reload() == []
    assert served_serial(store, "api.example.com") == new_serial
    assert served_serial(store, "new.example.com") == new_serial
    assert store.hosts_covered() == ["api.example.com", "new.example.com", "other.example.com"]
    # An unchanged file keeps its context.
    assert store.context_for("other.example.com") is other_context
    assert served_serial(store, "other.example.com") == other_serial


def test_a_broken_replacement_keeps_the_old_certificate(
    tmp_path: Path, file_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    files, old_serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files), None)
    old_context = store.context_for("api.example.com")
    new_chain, new_key, new_serial = leaf_pems(file_ca, "api.example.com")
    # A deploy that replaces the certificate first and the key a moment later.
    files.cert.write_bytes(new_chain)
    errors = store.reload()
    assert len(errors) == 1
    assert errors[0].startswith(f"certificates.files[0]: {files.key} is not the key of")
    assert f"still serving the certificate loaded before (serial {old_serial:x}" in errors[0]
    assert errors[0] in caplog.text
    assert store.context_for("api.example.com") is old_context
    # Half a file.
    files.cert.write_bytes(new_chain[: len(new_chain) // 2])
    files.key.write_bytes(new_key)
    (error,) = store.reload()
    assert error.startswith(f"certificates.files[0]: {files.cert}: not a PEM certificate chain")
    assert served_serial(store, "api.example.com") == old_serial
    # Gone.
    files.cert.unlink()
    (error,) = store.reload()
    assert f"{files.cert}: cannot read the certificate chain" in error
    assert served_serial(store, "api.example.com") == old_serial
    # Complete: served without a reload call, by the next check.
    files.cert.write_bytes(new_chain)
    assert store.check_for_changes()
    assert served_serial(store, "api.example.com") == new_serial


def test_check_for_changes_is_false_when_nothing_changed(
    tmp_path: Path, file_ca: trustme.CA
) -> None:
    files, serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files), None)
    context = store.context_for("api.example.com")
    assert not store.check_for_changes()
    assert not store.check_for_changes()
    # A touch changes the stat but not the bytes: nothing to reload.
    later = files.cert.stat().st_mtime_ns + 10**9
    os.utime(files.cert, ns=(later, later))
    assert not store.check_for_changes()
    assert store.context_for("api.example.com") is context
    _, new_serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    assert store.check_for_changes()
    assert served_serial(store, "api.example.com") == new_serial
    assert serial != new_serial
    assert not store.check_for_changes()


def same_size_pairs(ca: trustme.CA) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes, int]]:
    """Two leaves for api.example.com whose chain files, and key files, are the same size."""
    old_chain, old_key, _ = leaf_pems(ca, "api.example.com")
    new_chain, new_key, new_serial = leaf_pems(ca, "api.example.com")
    # PEM ignores text after the last block, so newlines make the files the same size.
    size = max(len(old_chain), len(new_chain)), max(len(old_key), len(new_key))
    old_chain, new_chain = (pem.ljust(size[0], b"\n") for pem in (old_chain, new_chain))
    old_key, new_key = (pem.ljust(size[1], b"\n") for pem in (old_key, new_key))
    return (old_chain, old_key), (new_chain, new_key, new_serial)


def test_an_in_place_rewrite_keeping_size_and_mtime_is_noticed(
    tmp_path: Path, file_ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As `cp -p new.pem cert.pem` does: same inode, same size, the source's mtime. Only the
    # ctime tells; the racy-file check is switched off so that it cannot be what notices.
    monkeypatch.setattr(cert_store, "_RACY_WINDOW_NS", 0)
    (old_chain, old_key), (new_chain, new_key, new_serial) = same_size_pairs(file_ca)
    files = write_pair(tmp_path, "api", old_chain, old_key)
    store = CertStore(config(files), None)
    stats = [os.stat(path) for path in (files.cert, files.key)]
    write_pair(tmp_path, "api", new_chain, new_key, atomic=False)
    for path, before in zip((files.cert, files.key), stats, strict=True):
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = os.stat(path)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
            before.st_ino,
            before.st_size,
            before.st_mtime_ns,
        )
    assert store.check_for_changes()
    assert served_serial(store, "api.example.com") == new_serial


def test_a_rewrite_within_one_timestamp_tick_is_noticed(
    tmp_path: Path, file_ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A filesystem whose timestamps did not move between two writes (both landed in one tick
    # of its clock): stat() cannot tell them apart, so a file read so soon after it changed
    # must be compared byte for byte at the next check.
    tick = time.time_ns()
    real_stat = cert_store._stat

    def frozen_stat(path: os.PathLike[str] | str) -> tuple[int, int, int, int] | None:
        result = real_stat(path)
        return None if result is None else (result[0], result[1], tick, tick)

    monkeypatch.setattr(cert_store, "_stat", frozen_stat)
    (old_chain, old_key), (new_chain, new_key, new_serial) = same_size_pairs(file_ca)
    files = write_pair(tmp_path, "api", old_chain, old_key)
    store = CertStore(config(files), None)
    assert not store.check_for_changes()  # read again, and found the same
    write_pair(tmp_path, "api", new_chain, new_key, atomic=False)
    assert store.check_for_changes()
    assert served_serial(store, "api.example.com") == new_serial


async def test_watch_certificates_picks_up_a_change(
    tmp_path: Path, file_ca: trustme.CA, autojump_clock: trio.testing.MockClock
) -> None:
    files, old_serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
    store = CertStore(config(files), None)
    interval = 5.0
    with trio.fail_after(10 * interval):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_certificates, store, interval)
            await trio.sleep(interval / 2)
            _, new_serial = write_leaf(tmp_path, "api", file_ca, "api.example.com")
            await trio.sleep(interval / 4)  # before the first check
            assert served_serial(store, "api.example.com") == old_serial
            await trio.sleep(interval / 2)  # after it
            assert served_serial(store, "api.example.com") == new_serial
            nursery.cancel_scope.cancel()


async def test_watch_certificates_refuses_a_zero_interval() -> None:
    store = CertStore(config(), None)
    with pytest.raises(ValueError, match="positive"):
        await watch_certificates(store, 0)
