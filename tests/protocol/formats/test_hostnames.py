"""Tests for protocol/formats/hostnames.py, the one host-name rule, and for its five users agreeing.

The table below is fed through the rule itself and through every place that takes a host name:
endpoint URL validation (and the edge's binder on top of it), the development CA, the front
door's SNI check, bind ACL rules and the edge config. Each row says what the rule makes of a
name; a column that legitimately differs (wildcards where wildcards are allowed, IP literals
where addresses are allowed, SNI's ban on a trailing dot) says so explicitly in that row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.certs.ca import CertError, DevCA, normalise_hostname
from edge.config import EdgeConfig
from edge.config_values import parse_host, parse_hostname
from edge.endpoints.registry import EndpointRegistry
from edge.front_door.clienthello import ClientHelloError, parse_client_hello
from edge.tunnels.acl import AclError, RuleKind, parse_acl
from edge.tunnels.binding import BindRefused, BindResolver
from protocol.formats import hostnames
from protocol.formats.hostnames import HostnameError
from protocol.formats.urls import URLError, infer_binding, parse_endpoint_url, validate_endpoint_url
from protocol.rpc.messages import Bind
from tests.edge.front_door.test_clienthello import sni_hello

REFUSED = None  # the column's user refuses the name

# Who takes a host name, and what each column means:
#   rule         hostnames.parse_hostname with no flags: a plain DNS host name
#   url          an endpoint URL https://NAME, parsed and validated (IPv6 in brackets)
#   bind         the edge's binder given that URL (the edge's own names are reserved)
#   ca           the development CA issuing a certificate for NAME
#   sni          a ClientHello whose server_name is NAME
#   acl          the ACL rule bind:NAME ("*" stands for the every-host rule bind:*)
#   domain       edge config `domain` / `connect_host` (host names only)
#   public_host  edge config `tcp.public_host` / `tcp.bind_host` (host names or addresses)
COLUMNS = ("rule", "url", "bind", "ca", "sni", "acl", "domain", "public_host")

LONG_LABEL = "a" * 63
NAME_253 = ".".join(["a" * 63] * 3) + "." + "b" * 61


def case(name: str, rule: str | None, **differs: str | None) -> tuple[str, dict[str, str | None]]:
    """A row: every column expects what `rule` does, except the ones named in `differs`; the
    binder expects what the url column does unless the row says otherwise."""
    unknown = set(differs) - set(COLUMNS)
    assert not unknown, unknown
    expected = {column: rule for column in COLUMNS}
    expected.update(differs)
    if "bind" not in differs:
        expected["bind"] = expected["url"]
    return name, expected


# An IP literal: refused as a host name, allowed by the users whose context takes addresses.
def _address(canonical: str) -> dict[str, str | None]:
    return {"url": canonical, "ca": canonical, "acl": canonical, "public_host": canonical}


TABLE: dict[str, tuple[str, dict[str, str | None]]] = {
    "valid": case("app.example.com", "app.example.com"),
    "single label": case("localhost", "localhost", bind=REFUSED),  # the edge's own name
    "internal": case("api.clinic.internal", "api.clinic.internal"),
    "uppercase": case("App.Example.COM", "app.example.com"),
    "digits and hyphens": case("1-2.3.example", "1-2.3.example"),
    # RFC 6066 §3: a server_name is written without the trailing dot.
    "trailing dot": case("app.example.com.", "app.example.com", sni=REFUSED),
    "two trailing dots": case("app.example.com..", REFUSED),
    # CA/B Forum ballot SC12: no certificate may name a host with '_', so nothing accepts one.
    "underscore": case("my_app.example.com", REFUSED),
    "leading underscore": case("_acme-challenge.example.com", REFUSED),
    "label of 63": case(f"{LONG_LABEL}.example", f"{LONG_LABEL}.example"),
    "label of 64": case(f"{LONG_LABEL}a.example", REFUSED),
    "name of 253": case(NAME_253, NAME_253),
    "name of 254": case(NAME_253 + "b", REFUSED),
    "empty label": case("app..example.com", REFUSED),
    "leading dot": case(".example.com", REFUSED),
    # https:// with no host asks for a random name, which the binder makes under its domain.
    "empty": case("", REFUSED, url="", bind="r0.burrow.localhost"),
    "leading hyphen": case("-app.example.com", REFUSED),
    "trailing hyphen": case("app-.example.com", REFUSED),
    "space": case("my app.example.com", REFUSED),
    "wildcard": case(
        "*.example.com", REFUSED, url="*.example.com", ca="*.example.com", acl="*.example.com"
    ),
    "uppercase wildcard": case(
        "*.Example.COM", REFUSED, url="*.example.com", ca="*.example.com", acl="*.example.com"
    ),
    # A wildcard straight under a top-level name is bindable; certificates are issued per SNI
    # host under it (x.localhost), never for the wildcard itself, which clients would refuse.
    "wildcard over one label": case("*.localhost", REFUSED, url="*.localhost", acl="*.localhost"),
    "wildcard alone": case("*", REFUSED, acl="*"),  # bind:* is the every-host rule
    "wildcard inside": case("a.*.example.com", REFUSED),
    "wildcard twice": case("*.*.example.com", REFUSED),
    "partial wildcard": case("*app.example.com", REFUSED),
    "punycode": case("xn--bcher-kva.example", "xn--bcher-kva.example"),
    "uppercase punycode": case("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    # A person types URLs, so an endpoint URL converts Unicode; everything else wants A-labels.
    "unicode": case("bücher.example", REFUSED, url="xn--bcher-kva.example"),
    "ipv4": case("127.0.0.1", REFUSED, **_address("127.0.0.1")),
    "ipv6": case("::1", REFUSED, **_address("::1")),
    "ipv6 not canonical": case("2001:DB8:0::1", REFUSED, **_address("2001:db8::1")),
    "ipv6 zone id": case("fe80::1%eth0", REFUSED),
    "short ipv4": case("127.1", REFUSED),
    "ipv4 with trailing dot": case("127.0.0.1.", REFUSED),
    "numeric tld": case("example.123", REFUSED),
    "port number": case("8080", REFUSED),
    "numeric labels, then a name": case("1.2.3.example", "1.2.3.example"),
}


def _url(name: str) -> str:
    host = f"[{name}]" if ":" in name else name
    url = parse_endpoint_url(f"https://{host}")
    validate_endpoint_url(url, binding=infer_binding(url))
    return url.host


def _bind(name: str) -> str:
    host = f"[{name}]" if ":" in name else name
    resolver = BindResolver(
        EdgeConfig(domain="burrow.localhost"), EndpointRegistry(), new_label=lambda: "r0"
    )
    return resolver.resolve(Bind(proto="https", opts={"URL": f"https://{host}"})).host


def _sni(name: str) -> str:
    hello = parse_client_hello(sni_hello(name.encode()))
    assert hello is not None and hello.sni is not None
    return hello.sni


def _acl(name: str) -> str:
    (rule,) = parse_acl([f"bind:{name}"]).rules
    return {RuleKind.EXACT: rule.value, RuleKind.SUFFIX: f"*.{rule.value}", RuleKind.ANY: "*"}[
        rule.kind
    ]


REFUSALS = (HostnameError, URLError, BindRefused, CertError, ClientHelloError, AclError, ValueError)


def _outcome(user: Callable[[str], str], name: str) -> str | None:
    try:
        return user(name)
    except REFUSALS:
        return REFUSED


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    yield DevCA.load_or_create(Path(tmp_path_factory.mktemp("ca")))


def _users(ca: DevCA) -> dict[str, Callable[[str], str]]:
    return {
        "rule": hostnames.parse_hostname,
        "url": _url,
        "bind": _bind,
        "ca": lambda name: ca.issue([name]).hostnames[0],
        "sni": _sni,
        "acl": _acl,
        "domain": parse_hostname,
        "public_host": parse_host,
    }


@pytest.mark.parametrize(("name", "expected"), TABLE.values(), ids=TABLE.keys())
def test_every_user_agrees_with_the_table(
    ca: DevCA, name: str, expected: dict[str, str | None]
) -> None:
    users = _users(ca)
    assert {column: _outcome(users[column], name) for column in COLUMNS} == expected


@pytest.mark.parametrize(("name", "expected"), TABLE.values(), ids=TABLE.keys())
def test_what_the_binder_accepts_the_dev_ca_can_issue_for(
    ca: DevCA, name: str, expected: dict[str, str | None]
) -> None:
    host = _outcome(_bind, name)
    if host is None:
        with pytest.raises(BindRefused):
            _bind(name)
        return
    # The edge issues per SNI host, so a wildcard endpoint needs leaves for names under it.
    served = "x" + host[1:] if host.startswith("*.") else host
    assert ca.issue([served]).hostnames == (served,)


# --- the rule's own messages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "flags", "says"),
    [
        ("my_app.example.com", {}, "'my_app' is not a valid host name part: it contains '_'"),
        ("my_app.example.com", {}, "CA/Browser Forum ballot SC12"),
        ("-x.example", {}, "'-x' is not a valid host name part: it starts with '-'"),
        ("x-.example", {}, "'x-' is not a valid host name part: it ends with '-'"),
        ("a..example", {}, "'' is not a valid host name part: it is empty"),
        (f"{LONG_LABEL}a.example", {}, "it is 64 characters long"),
        (NAME_253 + "b", {}, "it is longer than 253 characters (254)"),
        ("", {}, "it is empty"),
        ("a b.example", {}, "it contains ' '"),
        ("*.example.com", {}, "wildcards are not allowed here"),
        ("a.*.example.com", {"wildcard": True}, "'*' may only be the first part of a host"),
        ("*", {"wildcard": True}, "'*' may only be the first part of a host"),
        ("127.0.0.1", {}, "it is an IP address, and a host name is needed here"),
        ("fe80::1%eth0", {"ip": True}, "IPv6 zone ids"),
        ("127.1", {"ip": True}, "neither a host name nor an IPv4 address"),
        ("bücher.example", {}, "punycode (A-label) form, 'xn--bcher-kva.example'"),
        ("app.example.", {"trailing_dot": False}, "it ends in a dot"),
    ],
)
def test_errors_name_the_name_and_say_what_is_wrong(
    name: str, flags: dict[str, bool], says: str
) -> None:
    with pytest.raises(HostnameError) as caught:
        hostnames.parse_hostname(name, **flags)
    assert str(caught.value).startswith(f"{name!r} is not a valid host name: ")
    assert says in str(caught.value)
    assert caught.value.name == name
    assert isinstance(caught.value, ValueError)


def test_a_long_name_is_shortened_in_the_message() -> None:
    with pytest.raises(HostnameError) as caught:
        hostnames.parse_hostname("a" * 10_000)
    assert len(str(caught.value)) < 400
    assert caught.value.name == "a" * 10_000


@pytest.mark.parametrize(
    ("name", "flags", "result"),
    [
        ("bücher.example", {"idna": True}, "xn--bcher-kva.example"),
        ("BÜCHER.example.", {"idna": True}, "xn--bcher-kva.example"),
        ("my_db", {"underscore": True}, "my_db"),
        ("_svc._tcp.example", {"underscore": True}, "_svc._tcp.example"),
        ("::FFFF:1.2.3.4", {"ip": True}, "::ffff:102:304"),
        ("*.example.com.", {"wildcard": True}, "*.example.com"),
    ],
)
def test_flags_widen_the_rule(name: str, flags: dict[str, bool], result: str) -> None:
    assert hostnames.parse_hostname(name, **flags) == result


def test_underscore_flag_still_refuses_hyphens_at_the_ends() -> None:
    with pytest.raises(HostnameError, match="starts with '-'"):
        hostnames.parse_hostname("-my_db", underscore=True)


# --- the users agree on any name, not just the table's -----------------------------------------

# Letters of both cases, digits, the characters the rule cares about, and one non-ASCII letter;
# no '*' (wildcards differ by design), no ':' '/' '@' '?' '#' (URL syntax), no spaces (a URL's
# surrounding whitespace is trimmed).
_names = st.text(alphabet="abZ09-_.ü", max_size=12) | st.from_regex(
    r"[a-z0-9_-]{1,70}(\.[a-z0-9_-]{1,70}){0,4}\.?", fullmatch=True
)


@given(name=_names)
def test_users_agree_on_any_name(name: str) -> None:
    rule = _outcome(hostnames.parse_hostname, name)
    assert _outcome(parse_hostname, name) == rule
    if not name.endswith("."):
        assert _outcome(_sni, name) == rule
    addressed = _outcome(lambda text: hostnames.parse_hostname(text, ip=True), name)
    assert _outcome(parse_host, name) == addressed
    assert _outcome(normalise_hostname, name) == addressed
    assert _outcome(_acl, name) == addressed
    if name and name.isascii():
        assert _outcome(_url, name) == addressed
