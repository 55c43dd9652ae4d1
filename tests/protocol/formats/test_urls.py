"""Tests for protocol/formats/urls.py: endpoint URL forms and rules, upstream forms, loopback
names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.formats.urls import (
    ENDPOINT_SCHEMES,
    EndpointURL,
    UpstreamURL,
    URLError,
    infer_binding,
    is_loopback_name,
    parse_endpoint_url,
    parse_upstream_url,
    validate_endpoint_url,
)

# --- parse_endpoint_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ngrok.md §1.5 defaulting table
        ("https://example.ngrok.app", EndpointURL("https", "example.ngrok.app", None)),
        ("http://example.ngrok.app", EndpointURL("http", "example.ngrok.app", None)),
        ("example.ngrok.app", EndpointURL("https", "example.ngrok.app", None)),
        ("https://example.internal:1234", EndpointURL("https", "example.internal", 1234)),
        ("foo.internal", EndpointURL("https", "foo.internal", None)),
        ("", EndpointURL("https", "", None)),
        # origins; the scheme's default port is the same address as no port
        ("https://x.ngrok.app:443", EndpointURL("https", "x.ngrok.app", None)),
        ("http://x.example.com:80", EndpointURL("http", "x.example.com", None)),
        ("tls://x.ngrok.app", EndpointURL("tls", "x.ngrok.app", None)),
        ("tls://x.ngrok.app:443", EndpointURL("tls", "x.ngrok.app", None)),
        ("tcp://1.tcp.ngrok.io:12345", EndpointURL("tcp", "1.tcp.ngrok.io", 12345)),
        ("tcp://1.tcp.ngrok.io:443", EndpointURL("tcp", "1.tcp.ngrok.io", 443)),
        # scheme only: a random address of that protocol
        ("https://", EndpointURL("https", "", None)),
        ("http://", EndpointURL("http", "", None)),
        ("tcp://", EndpointURL("tcp", "", None)),
        ("tls://", EndpointURL("tls", "", None)),
        # case, whitespace, trailing dot, trailing slash
        ("  HTTPS://API.Example.COM.  ", EndpointURL("https", "api.example.com", None)),
        ("https://x.example.com/", EndpointURL("https", "x.example.com", None)),
        # IP literals
        ("tcp://[::1]:9000", EndpointURL("tcp", "::1", 9000)),
        ("https://[2001:DB8:0::1]", EndpointURL("https", "2001:db8::1", None)),
        ("tcp://10.0.0.1:22", EndpointURL("tcp", "10.0.0.1", 22)),
        # wildcards, internationalised names (underscores: refused, see the rejects below)
        ("https://*.example.com", EndpointURL("https", "*.example.com", None)),
        ("bücher.example", EndpointURL("https", "xn--bcher-kva.example", None)),
    ],
)
def test_parse_endpoint_url(text: str, expected: EndpointURL) -> None:
    assert parse_endpoint_url(text) == expected


def test_default_scheme_applies_to_domain_only_and_empty() -> None:
    assert parse_endpoint_url("1.tcp.example.com:20000", default_scheme="tcp") == EndpointURL(
        "tcp", "1.tcp.example.com", 20000
    )
    assert parse_endpoint_url("", default_scheme="tls") == EndpointURL("tls", "", None)
    assert parse_endpoint_url("https://x.example.com", default_scheme="tcp").scheme == "https"
    with pytest.raises(URLError, match="unknown default scheme"):
        parse_endpoint_url("x", default_scheme="ftp")


@pytest.mark.parametrize(
    ("url", "text"),
    [
        (EndpointURL("https", "", None), "https://"),
        (EndpointURL("https", "x.example.com", None), "https://x.example.com"),
        (EndpointURL("https", "x.internal", 8443), "https://x.internal:8443"),
        (EndpointURL("tcp", "::1", 22), "tcp://[::1]:22"),
    ],
)
def test_str_is_canonical(url: EndpointURL, text: str) -> None:
    assert str(url) == text
    assert parse_endpoint_url(text) == url


def test_properties() -> None:
    url = parse_endpoint_url("https://*.svc.internal")
    assert url.is_internal and url.is_wildcard and not url.is_random
    assert parse_endpoint_url("tcp://").is_random
    assert not parse_endpoint_url("internal.example.com").is_internal
    assert parse_endpoint_url("https://x.example.com").effective_port == 443
    assert parse_endpoint_url("http://x.example.com").effective_port == 80
    assert parse_endpoint_url("tls://x.example.com").effective_port == 443
    assert parse_endpoint_url("tcp://").effective_port is None
    assert parse_endpoint_url("https://x.internal:9000").effective_port == 9000


@pytest.mark.parametrize(
    ("text", "message", "code"),
    [
        ("ftp://x.example.com", "unknown scheme 'ftp'; use one of http://, https://, tcp://", None),
        ("ws://x.example.com", "unknown scheme 'ws'", None),
        ("https://x.example.com:0", "port 0 is outside the range 1-65535", "ERR_NGROK_9030"),
        ("tcp://x.example.com:65536", "port 65536 is outside", "ERR_NGROK_9030"),
        ("tcp://x:" + "9" * 5000, "is outside the range 1-65535", "ERR_NGROK_9030"),
        ("https://x.example.com:abc", "port 'abc' is not a number", "ERR_NGROK_9033"),
        ("https://x.example.com:", "port '' is not a number", "ERR_NGROK_9033"),
        ("https://x.example.com:٣", "is not a number", "ERR_NGROK_9033"),
        ("https://x.example.com/path", "has a path, query or fragment ('/path')", None),
        ("https://x.example.com?q=1", "has a path, query or fragment", None),
        ("https://user@x.example.com", "contains user info", None),
        ("https://:443", "has a port but no host", None),
        ("::1", "write IPv6 addresses in brackets", None),
        ("https://[::1", "without a closing ']'", None),
        ("https://[not-v6]:80", "is not an IPv6 address", None),
        ("https://[::1]x", "expected ':port' after ']'", None),
        ("https://[fe80::1%eth0]", "zone ids", None),
        ("https://*", "'*' may only be the first part of a host", None),
        ("https://a.*.example.com", "'*' may only be the first part", None),
        ("https://-x.example.com", "'-x' is not a valid host name part", None),
        ("https://x..example.com", "'' is not a valid host name part", None),
        ("https://exa mple.com", "is not a valid host name part", None),
        ("https://" + "a" * 64 + ".com", "at most 63 characters", None),
        ("https://" + "a." * 127 + "com", "longer than 253 characters", None),
        ("8080", "neither a host name nor an IPv4 address", None),
        ("1.2.3", "neither a host name nor an IPv4 address", None),
        # No certificate can name a host with '_' (CA/B Forum ballot SC12): refused at bind
        # time rather than bound and then failing every TLS handshake. Was accepted before.
        (
            "https://my_svc.internal",
            "'my_svc' is not a valid host name part: it contains '_'",
            None,
        ),
        ("my_app.example.com", "no certificate may name", None),
    ],
)
def test_parse_endpoint_url_rejects(text: str, message: str, code: str | None) -> None:
    with pytest.raises(URLError) as caught:
        parse_endpoint_url(text)
    assert message in str(caught.value)
    assert caught.value.code == code
    if code:
        assert str(caught.value).endswith(f"({code})")


# --- validate_endpoint_url ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "binding"),
    [
        ("https://", "public"),
        ("http://", "public"),
        ("tcp://", "public"),
        ("tls://", "public"),
        ("https://x.example.com:443", "public"),
        ("http://x.example.com:80", "public"),
        ("tls://x.example.com", "public"),
        ("tcp://1.tcp.example.com:12345", "public"),
        ("https://*.example.com", "public"),
        ("https://api.internal", "internal"),
        ("https://api.internal:8443", "internal"),
        ("http://api.internal:1", "internal"),
        ("tcp://db.internal:5432", "internal"),
        ("tls://db.clinic-a.internal:65535", "internal"),
        ("https://a.b.c.d.internal", "internal"),
        ("https://*.clinic-a.internal", "internal"),
        ("https://web.default", "kubernetes"),
        ("tcp://db.default:5432", "kubernetes"),
    ],
)
def test_validate_endpoint_url_accepts(text: str, binding: str) -> None:
    validate_endpoint_url(parse_endpoint_url(text), binding=binding)


@pytest.mark.parametrize(
    ("text", "binding", "message", "code"),
    [
        ("https://x.example.com", "private", "unknown binding 'private'", "ERR_NGROK_15005"),
        ("https://x.example.com:8443", "public", "must use port 443", "ERR_NGROK_9035"),
        ("http://x.example.com:8080", "public", "must use port 80", "ERR_NGROK_9035"),
        ("tls://x.example.com:8443", "public", "must use port 443", "ERR_NGROK_9035"),
        ("https://x.internal", "public", "only an internal binding may use", None),
        ("tcp://*.example.com:1234", "public", "cannot have a wildcard host", None),
        ("https://api.example.com", "internal", "must end in .internal", "ERR_NGROK_9029"),
        ("https://", "internal", "needs a host name ending in .internal", "ERR_NGROK_9028"),
        ("tcp://", "internal", "needs a host name ending in .internal", "ERR_NGROK_9028"),
        ("https://a.b.c.d.e.internal", "internal", "has 6 parts", "ERR_NGROK_9031"),
        ("tcp://db.internal", "internal", "needs a port", None),
        ("https://", "kubernetes", "needs a host (service.namespace)", None),
        ("https://x.internal", "kubernetes", "use bindings: [internal]", None),
    ],
)
def test_validate_endpoint_url_rejects(
    text: str, binding: str, message: str, code: str | None
) -> None:
    with pytest.raises(URLError) as caught:
        validate_endpoint_url(parse_endpoint_url(text), binding=binding)
    assert message in str(caught.value)
    assert caught.value.code == code


def test_infer_binding() -> None:
    assert infer_binding(parse_endpoint_url("foo.internal")) == "internal"
    assert infer_binding(parse_endpoint_url("tcp://db.x.internal:5432")) == "internal"
    assert infer_binding(parse_endpoint_url("foo.example.com")) == "public"
    assert infer_binding(parse_endpoint_url("")) == "public"


# --- parse_upstream_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "expected"),
    [
        ("8080", "https", UpstreamURL("http", "localhost", 8080)),
        ("8080", "http", UpstreamURL("http", "localhost", 8080)),
        ("5432", "tcp", UpstreamURL("tcp", "localhost", 5432)),
        ("443", "tls", UpstreamURL("tcp", "localhost", 443)),
        (":8080", "https", UpstreamURL("http", "localhost", 8080)),
        (":22", "tcp", UpstreamURL("tcp", "localhost", 22)),
        ("10.0.0.5:8080", "https", UpstreamURL("http", "10.0.0.5", 8080)),
        ("db.local:5432", "tcp", UpstreamURL("tcp", "db.local", 5432)),
        ("https://example.org", "https", UpstreamURL("https", "example.org", 443)),
        ("http://example.org", "https", UpstreamURL("http", "example.org", 80)),
        ("http://example.org:80", "http", UpstreamURL("http", "example.org", 80)),
        ("HTTPS://Example.ORG:8443/", "https", UpstreamURL("https", "example.org", 8443)),
        ("tcp://127.0.0.1:80", "tcp", UpstreamURL("tcp", "127.0.0.1", 80)),
        ("tls://db.local:5433", "tls", UpstreamURL("tls", "db.local", 5433)),
        ("example.org", "https", UpstreamURL("http", "example.org", 80)),
        ("https://", "https", UpstreamURL("https", "localhost", 443)),
        ("http://", "http", UpstreamURL("http", "localhost", 80)),
        ("[::1]:80", "https", UpstreamURL("http", "::1", 80)),
        ("[::1]:5432", "tcp", UpstreamURL("tcp", "::1", 5432)),
        ("app.localhost:3000", "https", UpstreamURL("http", "app.localhost", 3000)),
        # Upstream hosts only reach a resolver, never a certificate: '_' stays allowed there.
        ("my_db:5432", "tcp", UpstreamURL("tcp", "my_db", 5432)),
        ("http://web_1.local:8080", "https", UpstreamURL("http", "web_1.local", 8080)),
    ],
)
def test_parse_upstream_url(text: str, scheme: str, expected: UpstreamURL) -> None:
    assert parse_upstream_url(text, endpoint_scheme=scheme) == expected


def test_upstream_str_is_canonical() -> None:
    assert str(UpstreamURL("http", "localhost", 8080)) == "http://localhost:8080"
    assert str(UpstreamURL("tcp", "::1", 22)) == "tcp://[::1]:22"
    for text in ["http://localhost:8080", "tcp://[::1]:22", "https://example.org:443"]:
        scheme = "tcp" if text.startswith("tcp") else "https"
        assert str(parse_upstream_url(text, endpoint_scheme=scheme)) == text


@pytest.mark.parametrize(
    ("text", "scheme", "message"),
    [
        ("", "https", "upstream URL is empty; give a port (8080), host:port"),
        ("   ", "tcp", "upstream URL is empty; give a port (5432)"),
        ("example.org", "tcp", "has no port; tcp endpoints need host and port"),
        ("tls://db.local", "tls", "has no port; tls endpoints need host and port"),
        ("tcp://", "tcp", "has no host"),
        ("tcp://:5432", "tcp", "has no host"),
        ("https://", "tls", "scheme 'https', which a tls endpoint cannot forward to"),
        ("http://x:80", "tcp", "use tcp:// or tls://"),
        ("tcp://x:80", "https", "use http:// or https://"),
        ("ftp://x:21", "https", "scheme 'ftp'"),
        ("file:///srv/www", "https", "Burrow does not serve files (file://)"),
        ("http://x:80/api", "https", "has a path, query or fragment"),
        ("http://u:p@x:80", "https", "contains user info"),
        ("0", "https", "outside the range 1-65535"),
        ("70000", "tcp", "outside the range 1-65535"),
        ("x:http", "https", "is not a number"),
        ("::1:80", "https", "write IPv6 addresses in brackets"),
        ("*.example.org:80", "https", "'*' may only be the first part"),
        ("8080", "udp", "unknown endpoint scheme 'udp'"),
    ],
)
def test_parse_upstream_url_rejects(text: str, scheme: str, message: str) -> None:
    with pytest.raises(URLError) as caught:
        parse_upstream_url(text, endpoint_scheme=scheme)
    assert message in str(caught.value)


# --- is_loopback_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("localhost.", True),
        ("connect.burrow.localhost", True),
        ("Connect.Burrow.LocalHost.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost.example.com", False),
        ("mylocalhost", False),
        ("notlocalhost", False),
        ("example.com", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("0.0.0.0", False),
        ("", False),
    ],
)
def test_is_loopback_name(host: str, expected: bool) -> None:
    assert is_loopback_name(host) is expected


# --- properties ---------------------------------------------------------------------------------

# URL-shaped text: pieces that make the parser take every branch, joined at random.
_URLISH = st.lists(
    st.sampled_from(
        [*"abcxyz019-_.:/[]*@?#%ü \t", "://", "https", "tcp", "::", "[::1]", ".internal"]
    ),
    max_size=20,
).map("".join)
_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(st.one_of(st.text(max_size=60), _URLISH))
def test_parse_endpoint_url_raises_only_urlerror(text: str) -> None:
    try:
        url = parse_endpoint_url(text)
    except URLError:
        return
    assert url.scheme in ENDPOINT_SCHEMES
    assert parse_endpoint_url(str(url)) == url  # the canonical form is a fixed point


@given(st.one_of(st.text(max_size=60), _URLISH), st.sampled_from(ENDPOINT_SCHEMES))
def test_parse_upstream_url_raises_only_urlerror(text: str, scheme: str) -> None:
    try:
        upstream = parse_upstream_url(text, endpoint_scheme=scheme)
    except URLError:
        return
    assert 1 <= upstream.port <= 65535
    assert parse_upstream_url(str(upstream), endpoint_scheme=scheme) == upstream


@given(
    st.sampled_from(ENDPOINT_SCHEMES),
    st.lists(_LABEL, min_size=1, max_size=4),
    st.sampled_from(["com", "internal", "localhost"]),
    st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    st.sampled_from(["public", "internal", "kubernetes"]),
)
def test_well_formed_urls_round_trip_and_validate_cleanly(
    scheme: str, labels: list[str], tld: str, port: int | None, binding: str
) -> None:
    host = ".".join([*labels, tld])
    text = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    url = parse_endpoint_url(text)
    assert url.host == host
    assert parse_endpoint_url(str(url)) == url
    try:
        validate_endpoint_url(url, binding=binding)
    except URLError as exc:
        assert str(exc)
