"""Which certificate the public TLS port serves for a host: static files first, then the dev CA.

Theory of operation.

Lookup. `CertStore.context_for(host)` answers, in this order:
  1. a file whose subjectAltName names `host` exactly;
  2. a file with a wildcard for it: `*.example.com` covers `a.example.com`, never `example.com`
     nor `a.b.example.com` (RFC 6125 §6.4.3: the `*` is one whole leftmost label);
  3. with `development_ca` on and a CA given, a leaf for exactly `host` from the development
     CA, issued on the first request and kept in an LRU cache of `cache_size` entries;
  4. otherwise None: the front door answers with an unrecognized_name alert.
Among files naming a host the same way (both exactly, or both by the same wildcard), the later in
the config wins, so a later entry overrides an earlier one. Files are indexed by name once per
(re)load, so steps 1-2 are two dict lookups; a cache hit in step 3 is one more plus a clock read.
Issuing is synchronous and never awaits, so one trio thread cannot issue twice for a host.

Renewal. An issued leaf is re-issued when less than a third of the lifetime it was issued with
remains (with 90-day leaves: after 60 days), on the first request after that point.

Reload. `reload()` re-reads every file (SIGHUP); `check_for_changes()` stat()s them (inode, size,
mtime, ctime) and re-reads only those whose stat changed (the front door calls it every
`reload_interval`, or runs `watch_certificates`). A file whose bytes did not change keeps its
context. A changed file that no longer loads (half-written, key and certificate replaced one at a
time) is reported and the certificate loaded before keeps being served: a working certificate is
never dropped for a broken file. Each file is stat()ed before it is read, so a write that lands
during the read changes the stat and is read again at the next check; and a file changed so
recently that another change could share its timestamp (`RACY_WINDOW`) is re-read, and compared
byte for byte, at the next check too. Handshakes already under way keep the context they started
with; new ones get the new one.

Construction loads every file and raises `CertError` naming each one that does not load: a bad
file at startup is a configuration error, not something to serve around.

Costs (measured on the 2-core dev machine, which ran other work): a hit is 0.3 µs for a file's
name, 0.5 µs for a wildcard, 1 µs for an issued leaf; issuing one (a miss) takes 1.5-2.5 ms of
CPU in the calling thread; a reload costs about 1.6 ms per changed file and 35 µs per unchanged
one; an idle `check_for_changes` about 7 µs per entry.

This module is an I/O shell: it reads files and logs. Everything runs in the caller's (trio)
thread, and nothing in it awaits except `watch_certificates`' sleep.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import trio
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from edge.certs.ca import CertError, DevCA, normalise_hostname, server_context_from_pem
from edge.config import CertificateFiles, CertificatesConfig

__all__ = [
    "ALPN_PROTOCOLS",
    "MIN_RENEW_DELAY",
    "RACY_WINDOW",
    "RENEW_REMAINING_FRACTION",
    "CertStore",
    "watch_certificates",
]

log = logging.getLogger(__name__)

# What every context offers in ALPN unless the store is built with another list: HTTP/1.1 only
# (the edge passes ("h2", "http/1.1") when http.http2 is on). A client offering only other
# protocols still connects, with no protocol selected (`selected_alpn_protocol()` is None),
# which the front door treats as HTTP/1.1.
ALPN_PROTOCOLS: tuple[str, ...] = ("http/1.1",)
# An issued leaf is re-issued when less than this share of its lifetime remains: 30 days of 90,
# room for clients whose clocks run fast and for an edge that is rarely asked for that host.
RENEW_REMAINING_FRACTION = 1 / 3
# However short an issued leaf's life (the CA itself about to expire, or expired), it is not
# re-issued sooner than this, so a dying CA cannot make every handshake sign a new leaf.
MIN_RENEW_DELAY = timedelta(minutes=1)
# A file whose stat() times are this close to the time it was read may change again within the
# same filesystem timestamp tick, which stat() alone would miss; such a file is re-read and
# compared at the next check. Longer than common timestamp granularities (ext4 and XFS: a few
# ms; ext3 and HFS+: 1 s; FAT: 2 s) plus the time a read takes.
RACY_WINDOW = timedelta(seconds=3)
_RACY_WINDOW_NS = RACY_WINDOW // timedelta(microseconds=1) * 1000

# (inode, size, mtime_ns, ctime_ns): ctime catches an in-place write that kept the mtime (cp -p).
_FileStat = tuple[int, int, int, int]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class _Read:
    """One look at a files entry: the stats taken first, then the bytes (or why not)."""

    stats: tuple[_FileStat | None, _FileStat | None]  # cert, key; None: stat() failed
    contents: tuple[bytes, bytes] | None = field(repr=False)  # None when a file did not read
    error: str | None  # why the files did not read
    racy: bool  # changed within RACY_WINDOW of being read: compare the bytes next time


@dataclass(frozen=True, kw_only=True)
class _Served:
    """A files entry that loaded: what it serves and the context serving it."""

    files: CertificateFiles
    names: tuple[str, ...]  # the DNS names of its subjectAltName, normalised, wildcards kept
    context: ssl.SSLContext
    serial: int
    not_after: datetime
    contents: tuple[bytes, bytes] = field(repr=False)  # the bytes it was built from


@dataclass(frozen=True, kw_only=True)
class _Issued:
    """A leaf from the development CA, cached per host."""

    context: ssl.SSLContext
    not_after: datetime
    renew_at: datetime


@dataclass(frozen=True)
class _Index:
    """The files' names, for lookups; rebuilt whole on reload and swapped in one assignment."""

    exact: dict[str, _Served]
    wildcard: dict[str, _Served]  # keyed by what the `*.` covers: "*.a.com" is under "a.com"

    @classmethod
    def build(cls, served: Sequence[_Served | None]) -> _Index:
        exact: dict[str, _Served] = {}
        wildcard: dict[str, _Served] = {}
        for entry in served:  # config order: a later file overwrites an earlier one
            if entry is None:
                continue
            for name in entry.names:
                if name.startswith("*."):
                    wildcard[name[2:]] = entry
                else:
                    exact[name] = entry
        return cls(exact, wildcard)

    def lookup(self, host: str) -> _Served | None:
        entry = self.exact.get(host)
        if entry is None:
            label, dot, parent = host.partition(".")
            if dot and label and label != "*":
                entry = self.wildcard.get(parent)
        return entry


class CertStore:
    """The server `ssl.SSLContext` for each host the public TLS port terminates."""

    def __init__(
        self,
        config: CertificatesConfig,
        ca: DevCA | None,
        *,
        alpn: Sequence[str] = ALPN_PROTOCOLS,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Load every file in `config.files`.

        `ca` issues leaves for hosts no file covers when `config.development_ca` is on; None
        turns that off too. `alpn` is what every context offers, most preferred first. `clock`
        gives the time certificates are issued, renewed and checked for expiry at
        (timezone-aware UTC). Raises `CertError` listing every entry that does not load
        (unreadable, not PEM, key not the certificate's, no DNS subjectAltName).
        """
        if isinstance(alpn, str):
            raise TypeError(f"alpn must be a list of protocol names, not the string {alpn!r}")
        self._alpn = tuple(alpn)
        self._files = config.files
        self._ca = ca if config.development_ca else None
        self._cache_size = config.cache_size
        self._clock = clock
        self._issued: OrderedDict[str, _Issued] = OrderedDict()
        self._last_issue_error: str | None = None  # logged once until issuing works again
        self._reads = [_read(files) for files in self._files]
        self._served: list[_Served | None] = [None] * len(self._files)
        self._index = _Index({}, {})
        errors = self._apply(range(len(self._files)))
        if errors:
            raise CertError("\n".join(errors))

    def context_for(self, host: str) -> ssl.SSLContext | None:
        """The context to terminate TLS for `host` with, or None if there is none.

        `host` is the SNI name; case and a trailing dot do not matter. Synchronous: a file's
        context or a cached leaf is a few dict lookups; issuing a leaf (the first request for a
        host, or a renewal) costs about 2 ms of CPU. A name no certificate can carry (an
        underscore, a `*`) gets None.
        """
        host = host.lower().removesuffix(".")
        served = self._index.lookup(host)
        if served is not None:
            return served.context
        if self._ca is None:
            return None
        now = self._clock()
        issued = self._issued.get(host)
        if issued is not None and now < issued.renew_at:
            self._issued.move_to_end(host)
            return issued.context
        renewed = self._issue(self._ca, host, now)
        if renewed is None:
            if issued is None:
                return None
            # Keep serving the old leaf, and try again only after a pause.
            renewed = replace(issued, renew_at=now + MIN_RENEW_DELAY)
        self._issued[host] = renewed
        self._issued.move_to_end(host)
        while len(self._issued) > self._cache_size:
            self._issued.popitem(last=False)
        return renewed.context

    def describe(self, host: str) -> str:
        """Where the certificate for `host` comes from, for logs.

        `file <cert path>`, `development CA`, or `none`. Issues nothing.
        """
        host = host.lower().removesuffix(".")
        served = self._index.lookup(host)
        if served is not None:
            return f"file {served.files.cert}"
        if self._ca is not None and "*" not in host:
            try:
                normalise_hostname(host)
            except CertError:
                return "none"
            return "development CA"
        return "none"

    def hosts_covered(self) -> list[str]:
        """Every name the files serve (wildcards as `*.example.com`), sorted."""
        return sorted(
            {name for served in self._served if served is not None for name in served.names}
        )

    def reload(self) -> list[str]:
        """Re-read every file; return (and log) one line per file that no longer loads.

        A file that does not load keeps serving what it served before. Files whose bytes are
        unchanged keep their contexts.
        """
        self._reads = [_read(files) for files in self._files]
        errors = self._apply(range(len(self._files)))
        for line in errors:
            log.error("%s", line)
        return errors

    def check_for_changes(self) -> bool:
        """Reload the files that changed on disk; True if any did (loaded or not).

        Costs two stat() calls per entry when nothing changed. Errors are logged as by `reload`.
        """
        changed: list[int] = []
        for index, files in enumerate(self._files):
            before = self._reads[index]
            if not before.racy and (_stat(files.cert), _stat(files.key)) == before.stats:
                continue
            after = _read(files)
            self._reads[index] = after
            if (after.contents, after.error) != (before.contents, before.error):
                changed.append(index)
        for line in self._apply(changed):
            log.error("%s", line)
        return bool(changed)

    def _apply(self, indices: Sequence[int]) -> list[str]:
        """Load the entries at `indices` from their latest reads; swap in a new index."""
        errors: list[str] = []
        served = list(self._served)
        replaced = False
        now = self._clock()
        for index in indices:
            files, read, before = self._files[index], self._reads[index], served[index]
            if before is not None and read.contents == before.contents:
                continue  # unchanged, or put back as it was: keep the context
            try:
                loaded = _load(files, read, self._alpn)
            except CertError as exc:
                line = f"certificates.files[{index}]: {exc}"
                if before is not None:
                    line += (
                        f"; still serving the certificate loaded before (serial "
                        f"{before.serial:x}, valid until {before.not_after:%Y-%m-%d %H:%M} UTC)"
                    )
                errors.append(line)
                continue
            served[index] = loaded
            replaced = True
            if before is not None:
                log.info(
                    "certificates.files[%d]: reloaded %s: serial %x for %s, valid until %s",
                    index,
                    files.cert,
                    loaded.serial,
                    ", ".join(loaded.names),
                    f"{loaded.not_after:%Y-%m-%d %H:%M} UTC",
                )
            if loaded.not_after <= now:
                log.warning(
                    "certificates.files[%d]: %s expired on %s; clients will refuse it: replace "
                    "the file (changes are loaded without a restart)",
                    index,
                    files.cert,
                    f"{loaded.not_after:%Y-%m-%d %H:%M} UTC",
                )
        if replaced:
            self._served = served
            self._index = _Index.build(served)
        return errors

    def _issue(self, ca: DevCA, host: str, now: datetime) -> _Issued | None:
        if "*" in host:
            return None  # an SNI is never a wildcard; do not mint one for a client that says so
        try:
            normalise_hostname(host)
        except CertError as exc:  # what a client sent: not worth more than a debug line
            log.debug("no development certificate for %r: %s", host, exc)
            return None
        try:
            issued = ca.issue([host], now=now)
            context = server_context_from_pem(issued.chain_pem, issued.key_pem, alpn=self._alpn)
        except (CertError, OSError) as exc:  # the CA's trouble (expired), or no scratch space
            self._report_issue_failure(str(exc))
            return None
        self._last_issue_error = None
        lifetime = issued.not_after - now
        renew_at = max(
            now + lifetime * (1 - RENEW_REMAINING_FRACTION),
            now + MIN_RENEW_DELAY,
        )
        log.debug("issued a development certificate for %s, valid until %s", host, issued.not_after)
        return _Issued(context=context, not_after=issued.not_after, renew_at=renew_at)

    def _report_issue_failure(self, message: str) -> None:
        if message != self._last_issue_error:  # once, not once per handshake
            log.error("cannot issue development certificates: %s", message)
        self._last_issue_error = message


async def watch_certificates(store: CertStore, interval: float) -> NoReturn:
    """Check the store's files for changes every `interval` seconds, until cancelled.

    Changed files are reloaded (`CertStore.check_for_changes`); what loaded and what did not is
    logged there. The first check is one interval after the call.
    """
    if not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    while True:
        await trio.sleep(interval)
        store.check_for_changes()


def _stat(path: os.PathLike[str] | str) -> _FileStat | None:
    try:
        result = os.stat(path)
    except OSError:
        return None
    return (result.st_ino, result.st_size, result.st_mtime_ns, result.st_ctime_ns)


def _read(files: CertificateFiles) -> _Read:
    """Stat both files, then read them: a write after the stat shows at the next stat."""
    stats = (_stat(files.cert), _stat(files.key))
    now_ns = time.time_ns()  # the filesystem's clock, not the injected one
    racy = any(stat is not None and now_ns - max(stat[2:]) < _RACY_WINDOW_NS for stat in stats)
    contents: list[bytes] = []
    for path, what in ((files.cert, "certificate chain"), (files.key, "private key")):
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            error = (
                f"{path}: cannot read the {what}: {exc.strerror or exc}; check the path and "
                "that the edge's user may read it"
            )
            return _Read(stats=stats, contents=None, error=error, racy=racy)
    return _Read(stats=stats, contents=(contents[0], contents[1]), error=None, racy=racy)


def _load(files: CertificateFiles, read: _Read, alpn: Sequence[str]) -> _Served:
    """Check a files entry's bytes and build its context; raises `CertError` naming the file."""
    if read.contents is None:
        raise CertError(read.error)
    cert_pem, key_pem = read.contents
    cert_path, key_path = files.cert, files.key
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertError(
            f"{cert_path}: not a PEM certificate chain ({exc}); expected '-----BEGIN "
            "CERTIFICATE-----' blocks, the server's certificate first"
        ) from exc
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as exc:  # cryptography's way of saying "encrypted, and no password"
        raise CertError(
            f"{key_path}: the private key is encrypted; the edge needs it unencrypted "
            "(openssl pkey -in KEY -out KEY.plain), readable only by the edge's user"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError(
            f"{key_path}: not a PEM private key ({exc}); expected a '-----BEGIN ... PRIVATE "
            "KEY-----' block"
        ) from exc
    try:
        matches = key.public_key() == leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError(f"{cert_path}: the certificate's public key does not load: {exc}") from exc
    if not matches:
        raise CertError(
            f"{key_path} is not the key of the first certificate in {cert_path}; pair each "
            "certificate with its own key, and put the server's certificate first in the chain"
        )
    names = _dns_names(cert_path, leaf)
    try:
        context = server_context_from_pem(cert_pem, key_pem, alpn=alpn)
    except (CertError, OSError) as exc:  # OSError: the scratch directory, not the files
        raise CertError(f"{cert_path} with {key_path}: {exc}") from exc
    return _Served(
        files=files,
        names=names,
        context=context,
        serial=leaf.serial_number,
        not_after=leaf.not_valid_after_utc,
        contents=read.contents,
    )


def _dns_names(cert_path: os.PathLike[str], leaf: x509.Certificate) -> tuple[str, ...]:
    """The DNS names in `leaf`'s subjectAltName that a client could match, normalised."""
    no_names = (
        f"{cert_path}: the certificate has no DNS name in its subjectAltName, so it serves no "
        "host (clients ignore the commonName); use a certificate issued for the endpoint hosts"
    )
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise CertError(no_names) from exc
    except ValueError as exc:
        raise CertError(f"{cert_path}: the certificate's extensions do not parse: {exc}") from exc
    names: list[str] = []
    for raw in san.get_values_for_type(x509.DNSName):
        try:
            name = normalise_hostname(raw)
        except CertError as exc:
            log.warning("%s: subjectAltName %r is not served: %s", cert_path, raw, exc)
            continue
        if name not in names:
            names.append(name)
    if not names:
        raise CertError(no_names)
    return tuple(names)
