"""Which outbound proxy (if any) the agent dials the edge through: parsing and choosing.

Theory of operation
-------------------
Clinics often reach the internet only through an HTTP or SOCKS5 proxy. The proxy comes from
ngrok's `agent.proxy_url` (reference §1.3) or, when that is not set, from the environment the
way curl reads it for an https:// URL (the session is TLS to the connect host):
`https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`, first non-empty one wins. `no_proxy` /
`NO_PROXY` then lists the hosts that are dialled directly, matched as curl matches them
(`bypasses_proxy`). The configured `proxy_url` is explicit and wins over the environment,
NO_PROXY included: it names the one way out of this machine.

Schemes: `http://` (HTTP CONNECT), `https://` (HTTP CONNECT inside TLS to the proxy),
`socks5://` and `socks5h://` (SOCKS5; both send the edge's host name for the proxy to
resolve, so the agent needs no DNS for it). Credentials come from the URL's user info,
percent-decoded. An environment value without a scheme is `http://` as curl reads it.

Pure: values in, values out; `ProxyURLError` says what is wrong (the caller adds where).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "NO_PROXY_VARIABLES",
    "ProxyURL",
    "ProxyURLError",
    "bypasses_proxy",
    "choose_proxy",
    "parse_proxy_url",
]

#: Default ports when the URL names none: as Go's net/http and x/net/proxy (ngrok's agent) use.
DEFAULT_PORTS = {"http": 80, "https": 443, "socks5": 1080}
#: RFC 1929 sends the user name and the password each behind a one-byte length.
MAX_SOCKS5_CREDENTIAL_BYTES = 255
#: curl's order for an https:// URL: the scheme's own variable (lower case first), then all_proxy.
ENVIRONMENT_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")
_SCHEMES = {"http": "http", "https": "https", "socks5": "socks5", "socks5h": "socks5"}


class ProxyURLError(ValueError):
    """A proxy URL Burrow cannot use; the message says what is wrong and how to write it."""


@dataclass(frozen=True)
class ProxyURL:
    """One outbound proxy. `source` names where it came from (`agent.proxy_url`, or the
    environment variable), for messages. Credentials are never printed."""

    scheme: str  # "http" | "https" | "socks5"
    host: str  # a name or an IP literal, without brackets
    port: int
    source: str = "agent.proxy_url"
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """`host:port` (`[::1]:1080` for IPv6), as messages show the proxy."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"{self.scheme}://{user}{self.address}"


def parse_proxy_url(text: str, *, source: str = "agent.proxy_url") -> ProxyURL:
    """`text` as a ProxyURL. Raises ProxyURLError (no key path in the message).

    An environment variable's value may omit the scheme (curl reads `proxy:3128` as
    `http://proxy:3128`); pass a `source` that is not `agent.proxy_url` to allow that."""
    original = text.strip()
    if "://" not in original and source != "agent.proxy_url":
        original = "http://" + original
    example = "write e.g. http://user:password@proxy.example:3128 or socks5://proxy.example:1080"
    try:
        parts = urlsplit(original)
        port = parts.port
    except ValueError as exc:
        raise ProxyURLError(f"is not a URL ({exc}); {example}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ProxyURLError(
            f"scheme {parts.scheme or '(none)'}:// is not supported; use http://, https:// or "
            f"socks5://; {example}"
        )
    host = parts.hostname
    if not host:
        raise ProxyURLError(f"names no proxy host; {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyURLError(f"must be just scheme://[user:password@]host[:port]; {example}")
    username = None if parts.username is None else unquote(parts.username)
    password = None
    if username is not None:
        password = unquote(parts.password or "")
    if scheme == "socks5" and username is not None:
        for what, value in (("user name", username), ("password", password or "")):
            size = len(value.encode())
            if not 1 <= size <= MAX_SOCKS5_CREDENTIAL_BYTES:
                raise ProxyURLError(
                    f"the SOCKS5 {what} must be 1 to {MAX_SOCKS5_CREDENTIAL_BYTES} bytes "
                    f"(RFC 1929), found {size}"
                )
    return ProxyURL(
        scheme=scheme,
        host=host,
        port=port if port is not None else DEFAULT_PORTS[scheme],
        source=source,
        username=username,
        password=password,
    )


def choose_proxy(
    configured: ProxyURL | None, environ: Mapping[str, str], host: str
) -> ProxyURL | None:
    """The proxy to dial `host` through: `configured` if set, else the environment's (unless
    NO_PROXY lists `host`), else None (dial directly). Raises ProxyURLError naming the
    variable when the environment's value cannot be used."""
    if configured is not None:
        return configured
    for name in ENVIRONMENT_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            break
    else:
        return None
    for no_proxy_name in NO_PROXY_VARIABLES:
        no_proxy = environ.get(no_proxy_name, "")
        if no_proxy:
            if bypasses_proxy(no_proxy, host):
                return None
            break
    try:
        return parse_proxy_url(value, source=name)
    except ProxyURLError as exc:
        raise ProxyURLError(f"{name} {exc}") from None


def bypasses_proxy(no_proxy: str, host: str) -> bool:
    """Whether NO_PROXY's value lists `host`, as curl (7.86 and later) matches it.

    Entries are separated by commas or white space. `*` alone matches every host. A name entry
    matches that name and every name under it (`example.com` and `.example.com` both match
    `example.com` and `a.example.com`), case-insensitively, ignoring one trailing dot on either
    side. For an IP host, an entry is an address (equal) or a CIDR block (`10.0.0.0/8`);
    IPv6 entries may be bracketed. Ports in entries are not understood, as in curl."""
    if no_proxy.strip() == "*":
        return True
    name = host.strip().removeprefix("[").removesuffix("]")
    address = _ip(name)
    name = name.lower().removesuffix(".")
    for entry in no_proxy.lower().replace(",", " ").split():
        if address is not None:
            if _ip_matches(address, entry.removeprefix("[").replace("]", "")):
                return True
            continue
        token = entry.removesuffix(".").removeprefix(".")
        if not token:
            continue
        if token == name or name.endswith("." + token):
            return True
    return False


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _ip_matches(address: ipaddress.IPv4Address | ipaddress.IPv6Address, token: str) -> bool:
    try:
        if "/" in token:
            return address in ipaddress.ip_network(token, strict=False)
        return address == ipaddress.ip_address(token)
    except ValueError:  # a name, or a malformed entry: it cannot list an IP host
        return False
