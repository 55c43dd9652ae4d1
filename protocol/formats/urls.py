"""Endpoint URL and upstream URL rules that both the agent and the edge apply.

Theory of operation: an *endpoint URL* is the public (or internal) address an agent asks the edge
to serve, written in one of ngrok's forms (`reference/ngrok.md` §1.5): a domain only
(`app.example.com`, meaning https), an origin (`tcp://1.tcp.example.com:12345`), a scheme only
(`tcp://`, meaning "pick a random address") or nothing at all (a random https name).
`parse_endpoint_url` turns any of those into one canonical `EndpointURL`; the rules that depend on
the endpoint's binding (public http on 80, `.internal` hosts, ...) live in `validate_endpoint_url`,
because the binding comes from elsewhere (a config key, a CLI flag, a Bind message).

An *upstream URL* is where the agent forwards traffic (§1.6): a port only (`8080`), `host:port`,
an origin, and for http(s) endpoints a domain or a scheme only. What is allowed depends on the
endpoint's scheme, so `parse_upstream_url` takes it.

Hosts follow the one host-name rule (`protocol/formats/hostnames.py`), which the edge's
certificates, SNI check, bind ACLs and config apply too. An endpoint host may not contain '_'
(no certificate can name it); an upstream host, which only a resolver sees, may.

Everything here is a pure function of its arguments: no DNS, no sockets. Errors are `URLError`,
a `ValueError` that carries ngrok's `ERR_NGROK_*` code where ngrok has one.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from protocol.formats.hostnames import HostnameError, parse_hostname
from protocol.rpc import errcodes

__all__ = [
    "BINDINGS",
    "DEFAULT_PORTS",
    "ENDPOINT_SCHEMES",
    "ERR_INTERNAL_NEEDS_HOST",
    "ERR_INTERNAL_SUFFIX",
    "ERR_INVALID_BINDING",
    "ERR_PORT_NOT_NUMERIC",
    "ERR_PORT_RANGE",
    "ERR_SCHEME_PORT",
    "ERR_TOO_MANY_PARTS",
    "INTERNAL_MAX_LABELS",
    "EndpointURL",
    "URLError",
    "UpstreamURL",
    "infer_binding",
    "is_loopback_name",
    "parse_endpoint_url",
    "parse_upstream_url",
    "validate_endpoint_url",
]

# ngrok's error codes for the URL rules (each is the number on ngrok's error page for the rule).
# The four spelled out here belong in protocol/rpc/errcodes.py too, once it lists them.
ERR_INTERNAL_NEEDS_HOST = "ERR_NGROK_9028"  # internal binding without a host name
ERR_INTERNAL_SUFFIX = errcodes.ERR_NGROK_9029  # internal binding, host not ending in .internal
ERR_PORT_RANGE = errcodes.ERR_NGROK_9030  # port outside 1-65535
ERR_TOO_MANY_PARTS = errcodes.ERR_NGROK_9031  # internal host with more than 5 dot-separated parts
ERR_PORT_NOT_NUMERIC = "ERR_NGROK_9033"  # "had a non-numeric port component"
ERR_SCHEME_PORT = "ERR_NGROK_9035"  # public http not on 80 / https not on 443
ERR_INVALID_BINDING = "ERR_NGROK_15005"

ENDPOINT_SCHEMES = ("http", "https", "tcp", "tls")
BINDINGS = ("public", "internal", "kubernetes")

# ngrok counts every dot-separated part of an internal host, `.internal` included (ERR 9031:
# "Endpoints must have at most 5 parts").
INTERNAL_MAX_LABELS = 5

#: Ports a scheme implies when the URL gives none. tcp has no default: the edge picks one.
DEFAULT_PORTS = {"http": 80, "https": 443, "tls": 443}
_MAX_PORT = 65535
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also accepts '²' and friends
_ACCEPTED_ENDPOINT_FORMS = (
    "write a domain (app.example.com), an origin (https://app.example.com, "
    "tcp://host.example.com:12345), a scheme only (tcp://) for a random address, "
    "or nothing for a random https name"
)


class URLError(ValueError):
    """An endpoint or upstream URL that cannot be used; `code` is ngrok's ERR_NGROK_* if any."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} ({self.code})" if self.code else self.message


@dataclass(frozen=True)
class EndpointURL:
    """A parsed endpoint URL.

    `host` is lower-case, without a trailing dot or IPv6 brackets; `""` means the edge picks a
    random name (http/https/tls) or address (tcp). `port` is None when the URL gave none or gave
    the scheme's default (80 for http, 443 for https and tls), so equal addresses compare equal.
    """

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{format_host(self.host)}{port}"

    @property
    def is_random(self) -> bool:
        return self.host == ""

    @property
    def is_internal(self) -> bool:
        return self.host.endswith(".internal")

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")

    @property
    def effective_port(self) -> int | None:
        """The port the URL means: the given one, else the scheme's default (None for tcp)."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.scheme)


@dataclass(frozen=True)
class UpstreamURL:
    """Where the agent forwards an endpoint's traffic; always a concrete host and port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{format_host(self.host)}:{self.port}"


def parse_endpoint_url(text: str, *, default_scheme: str = "https") -> EndpointURL:
    """Parse any of ngrok's endpoint URL forms into an `EndpointURL`; raise `URLError` if bad.

    `default_scheme` is the scheme for a domain-only or empty URL: https, as ngrok does, unless
    the caller knows better (`burrow tcp --url host:port` passes "tcp").
    """
    if default_scheme not in ENDPOINT_SCHEMES:
        raise URLError(f"unknown default scheme {default_scheme!r}")
    text = text.strip()
    scheme = default_scheme
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ENDPOINT_SCHEMES:
            raise URLError(
                f"endpoint URL {text!r} has unknown scheme {scheme!r}; use one of "
                "http://, https://, tcp:// or tls://"
            )
    authority, tail = _split_authority(rest)
    if tail not in ("", "/"):
        raise URLError(
            f"endpoint URL {text!r} has a path, query or fragment ({tail!r}); endpoint URLs "
            f"name only a scheme, host and port: {_ACCEPTED_ENDPOINT_FORMS}"
        )
    if "@" in authority:
        raise URLError(f"endpoint URL {text!r} contains user info ('@'); remove it")
    if authority == "":
        return EndpointURL(scheme, "", None)
    host, port = _split_host_port(authority, text)
    if host == "":
        raise URLError(f"endpoint URL {text!r} has a port but no host; {_ACCEPTED_ENDPOINT_FORMS}")
    host = _normalize_host(host, text, endpoint=True)
    if port is not None and port == DEFAULT_PORTS.get(scheme):
        port = None
    return EndpointURL(scheme, host, port)


def validate_endpoint_url(url: EndpointURL, *, binding: str) -> None:
    """Apply ngrok's per-scheme and per-binding rules (§1.5); raise `URLError` if one fails."""
    if binding not in BINDINGS:
        raise URLError(
            f"unknown binding {binding!r}; use one of public, internal or kubernetes",
            code=ERR_INVALID_BINDING,
        )
    if binding == "internal":
        _validate_internal(url)
    elif binding == "kubernetes":
        if url.is_random:
            raise URLError(
                f"kubernetes endpoint {url} needs a host (service.namespace); "
                "random names are only for public endpoints"
            )
        if url.is_internal:
            raise URLError(f"{url} ends in .internal; use bindings: [internal] for it")
    else:
        _validate_public(url)


def infer_binding(url: EndpointURL) -> str:
    """The binding ngrok infers when none is given: internal for `.internal` hosts, else public."""
    return "internal" if url.is_internal else "public"


def parse_upstream_url(text: str, *, endpoint_scheme: str) -> UpstreamURL:
    """Parse an upstream address (§1.6) for an endpoint of `endpoint_scheme`; raise `URLError`.

    Accepted: `8080` (localhost), `host:port`, `[::1]:80`, an origin (`https://host` implies
    443, `http://host` 80), and for http(s) endpoints also a domain (`example.org`, http on 80)
    or a scheme only (`https://`, localhost). tcp and tls endpoints need a host and a port.
    """
    if endpoint_scheme not in ENDPOINT_SCHEMES:
        raise URLError(f"unknown endpoint scheme {endpoint_scheme!r}")
    is_http = endpoint_scheme in ("http", "https")
    allowed = ("http", "https") if is_http else ("tcp", "tls")
    forms = (
        "give a port (8080), host:port, [::1]:8080, a domain (example.org) or a URL "
        "(http://host:port, https://host)"
        if is_http
        else "give a port (5432), host:port, [::1]:5432 or a URL (tcp://host:port, tls://host:port)"
    )
    text = text.strip()
    if text == "":
        raise URLError(f"upstream URL is empty; {forms}")
    if _DIGITS.fullmatch(text):
        return UpstreamURL("http" if is_http else "tcp", "localhost", _parse_port(text, text))
    scheme = allowed[0]
    rest = text
    explicit_scheme = "://" in text
    if explicit_scheme:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme == "file":
            raise URLError(f"upstream {text!r}: Burrow does not serve files (file://); {forms}")
        if scheme not in allowed:
            raise URLError(
                f"upstream {text!r} has scheme {scheme!r}, which a {endpoint_scheme} endpoint "
                f"cannot forward to; use {' or '.join(s + '://' for s in allowed)}; {forms}"
            )
    authority, tail = _split_authority(rest)
    if tail not in ("", "/"):
        raise URLError(f"upstream {text!r} has a path, query or fragment ({tail!r}); {forms}")
    if "@" in authority:
        raise URLError(f"upstream {text!r} contains user info ('@'); remove it")
    host, port = _split_host_port(authority, text) if authority else ("", None)
    if host == "":
        # `:8080` means localhost like `8080` does; `https://` (http endpoints only) too.
        if (port is None or explicit_scheme) and not (is_http and explicit_scheme):
            raise URLError(f"upstream {text!r} has no host; {forms}")
        host = "localhost"
    else:
        host = _normalize_host(host, text, endpoint=False)
    if port is None:
        if not is_http:
            raise URLError(
                f"upstream {text!r} has no port; {endpoint_scheme} endpoints need host and port"
            )
        port = DEFAULT_PORTS[scheme]
    return UpstreamURL(scheme, host, port)


def is_loopback_name(host: str) -> bool:
    """True for `localhost`, any `*.localhost` name (RFC 6761) and loopback IP literals.

    Case-insensitive; a trailing dot and IPv6 brackets are allowed. The agent resolves these
    itself, to 127.0.0.1, rather than asking the system resolver.
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name.endswith("."):
        name = name[:-1]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _validate_internal(url: EndpointURL) -> None:
    if url.is_random:
        raise URLError(
            f"internal endpoint {url} needs a host name ending in .internal (for example "
            f"{url.scheme}://api.example.internal); random names are only for public endpoints",
            code=ERR_INTERNAL_NEEDS_HOST,
        )
    if not url.is_internal:
        raise URLError(
            f"endpoint {url} has an internal binding, so its host must end in .internal; "
            "rename the host or use the public binding",
            code=ERR_INTERNAL_SUFFIX,
        )
    parts = url.host.count(".") + 1
    if parts > INTERNAL_MAX_LABELS:
        raise URLError(
            f"internal endpoint {url} has {parts} parts; internal hosts may have at most "
            f"{INTERNAL_MAX_LABELS} (.internal included)",
            code=ERR_TOO_MANY_PARTS,
        )
    if url.scheme == "tcp" and url.port is None:
        raise URLError(f"internal tcp endpoint {url} needs a port, for example {url}:5432")


def _validate_public(url: EndpointURL) -> None:
    if url.is_internal:
        raise URLError(
            f"endpoint {url} ends in .internal, which only an internal binding may use; "
            "use bindings: [internal] (or leave bindings out to infer it)"
        )
    # http, https and tls share their edge ports with every other endpoint of that scheme;
    # parse_endpoint_url has already turned the default port into None.
    if url.scheme in DEFAULT_PORTS and url.port is not None:
        wanted = DEFAULT_PORTS[url.scheme]
        raise URLError(
            f"public {url.scheme} endpoint {url} must use port {wanted}; remove ':{url.port}' "
            "or make it an internal endpoint, which may use any port",
            code=ERR_SCHEME_PORT,
        )
    if url.scheme == "tcp" and url.is_wildcard:
        raise URLError(f"tcp endpoint {url} cannot have a wildcard host; tcp routes by port")


def _split_authority(rest: str) -> tuple[str, str]:
    """Split `host:port/path?q#f` into the authority and whatever follows it."""
    match = re.search(r"[/?#]", rest)
    if match is None:
        return rest, ""
    return rest[: match.start()], rest[match.start() :]


def _split_host_port(authority: str, text: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise URLError(f"{text!r}: '[' without a closing ']' around an IPv6 address")
        host, after = authority[1:end], authority[end + 1 :]
        if "%" in host:
            raise URLError(f"{text!r}: IPv6 zone ids ('%...') are not supported")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise URLError(f"{text!r}: {host!r} in brackets is not an IPv6 address") from None
        if after == "":
            return host, None
        if not after.startswith(":"):
            raise URLError(f"{text!r}: expected ':port' after ']', found {after!r}")
        return host, _parse_port(after[1:], text)
    if authority.count(":") > 1:
        raise URLError(f"{text!r}: write IPv6 addresses in brackets, for example [::1]:8080")
    if ":" not in authority:
        return authority, None
    host, port_text = authority.split(":")
    return host, _parse_port(port_text, text)


def _parse_port(port_text: str, text: str) -> int:
    if not _DIGITS.fullmatch(port_text):
        raise URLError(f"{text!r}: port {port_text!r} is not a number", code=ERR_PORT_NOT_NUMERIC)
    # Compare as text first so a 5,000-digit "port" cannot reach int()'s digit limit.
    port = int(port_text) if len(port_text) <= len(str(_MAX_PORT)) else _MAX_PORT + 1
    if not 1 <= port <= _MAX_PORT:
        raise URLError(
            f"{text!r}: port {port_text} is outside the range 1-65535", code=ERR_PORT_RANGE
        )
    return port


def _normalize_host(host: str, text: str, *, endpoint: bool) -> str:
    """`host` by the one host-name rule (protocol/formats/hostnames.py), or `URLError`.

    Both kinds of URL take IP literals and Unicode names (converted to punycode) and drop one
    trailing dot. Endpoint hosts may be wildcards and may not contain '_': a certificate can
    name no such host, so it would be bound and then fail every TLS handshake. Upstream hosts
    go to a resolver, never into a certificate, and real ones use '_' (container names).
    """
    if ":" in host:  # an IPv6 literal already checked by _split_host_port
        return str(ipaddress.IPv6Address(host))
    try:
        return parse_hostname(host, wildcard=endpoint, ip=True, idna=True, underscore=not endpoint)
    except HostnameError as exc:
        raise URLError(f"{text!r}: {exc}") from None


def format_host(host: str) -> str:
    """A host as it appears in a URL or `host:port`: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host else host


def format_host_port(host: str, port: int) -> str:
    """`host:port`, with IPv6 literals in brackets."""
    return f"{format_host(host)}:{port}"
