"""Bind ACLs: ngrok's rule forms, parsed and matched (ngrok.md §6.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.tunnels.acl import ERR_NGROK_10007, Acl, AclError, AclRule, RuleKind, parse_acl

# (rules, host, allowed)
MATCH_CASES: list[tuple[list[str], str, bool]] = [
    # An empty ACL is unrestricted.
    ([], "anything.example.com", True),
    ([], "db.clinic-a.internal:5432", True),
    # Exact hosts.
    (["bind:foo.ngrok.app"], "foo.ngrok.app", True),
    (["bind:foo.ngrok.app"], "bar.ngrok.app", False),
    (["bind:foo.ngrok.app"], "x.foo.ngrok.app", False),
    (["bind:foo.ngrok.app"], "ngrok.app", False),
    (["bind:foo.ngrok.app"], "FOO.Ngrok.APP", True),
    (["bind:Foo.NGROK.app"], "foo.ngrok.app", True),
    (["bind:foo.ngrok.app"], "foo.ngrok.app:443", True),
    (["bind:foo.ngrok.app"], "foo.ngrok.app.", True),
    # Suffixes: any depth under the suffix, and the bare suffix itself; label boundary only.
    (["bind:*.example.com"], "a.example.com", True),
    (["bind:*.example.com"], "a.b.example.com", True),
    (["bind:*.example.com"], "example.com", True),
    (["bind:*.example.com"], "badexample.com", False),
    (["bind:*.example.com"], "example.com.evil.test", False),
    (["bind:*.example.com"], "xexample.com", False),
    (["bind:*.example.com"], "example.org", False),
    (["bind:*.example.com"], "A.EXAMPLE.COM:8443", True),
    # Internal hosts work the same way.
    (["bind:*.clinic-a.internal"], "api.clinic-a.internal", True),
    (["bind:*.clinic-a.internal"], "db.clinic-a.internal:5432", True),
    (["bind:*.clinic-a.internal"], "api.clinic-b.internal", False),
    (["bind:*.clinic-a.internal"], "clinic-a.internal", True),
    (["bind:api.clinic-a.internal"], "api.clinic-a.internal", True),
    # Everything.
    (["bind:*"], "whatever.test", True),
    (["*"], "whatever.test", True),
    (["bind:a.test", "bind:*"], "b.test", True),
    # Several rules: any one may allow.
    (["bind:a.test", "bind:*.b.test"], "a.test", True),
    (["bind:a.test", "bind:*.b.test"], "x.b.test", True),
    (["bind:a.test", "bind:*.b.test"], "c.test", False),
    # Label rules parse but never match a host; alone they allow nothing.
    (["bind:region=eu"], "eu.example.com", False),
    (["bind:*=example"], "example", False),
    (["bind:app=*"], "app", False),
    (["bind:app=*", "bind:*.ok.test"], "x.ok.test", True),
    # IPv6 literal with a port: the port is dropped, the address compared as a host.
    (["bind:a.test"], "[::1]:80", False),
    # Junk hosts are simply not allowed.
    (["bind:a.test"], "", False),
    (["bind:*.a.test"], ".a.test", True),  # the edge validates hosts before asking
]


@pytest.mark.parametrize(("rules", "host", "allowed"), MATCH_CASES)
def test_allows(rules: list[str], host: str, allowed: bool) -> None:
    assert parse_acl(rules).allows(host) is allowed


# (rule, what the message says)
BAD_RULES: list[tuple[str, str]] = [
    ("foo.example.com", "does not start with 'bind:'"),
    ("*.example.com", "does not start with 'bind:'"),
    ("BIND:foo.example.com", "does not start with 'bind:'"),
    (" bind:foo.example.com", "does not start with 'bind:'"),
    ("", "does not start with 'bind:'"),
    ("bind:", "is not a host name"),
    ("bind:foo.*.com", "is not a host name"),
    ("bind:*foo.com", "is not a host name"),
    ("bind:**.foo.com", "is not a host name"),
    ("bind:*.", "is not a host name"),
    ("bind:foo..com", "is not a host name"),
    ("bind:-foo.com", "is not a host name"),
    ("bind:foo .com", "is not a host name"),
    ("bind:foo.com/path", "is not a host name"),
    ("bind:https://foo.com", "is a URL"),
    ("bind:foo.com:443", "names a port"),
    ("bind:" + "a" * 250 + ".com", "is not a host name"),
    ("bind:=eu", "label rule"),
    ("bind:region=", "label rule"),
    ("bind:a=b=c", "label rule"),
    ("bind:re gion=eu", "label rule"),
]


@pytest.mark.parametrize(("rule", "says"), BAD_RULES)
def test_bad_rules_are_refused_with_the_code_and_the_rule(rule: str, says: str) -> None:
    with pytest.raises(AclError, match=says) as caught:
        parse_acl(["bind:ok.test", rule])
    assert caught.value.code == ERR_NGROK_10007
    assert caught.value.rule == rule
    assert "ACL rule 2" in str(caught.value)
    assert repr(rule) in str(caught.value)
    assert ERR_NGROK_10007 in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(AclError, match="list of rules, not one string"):
        parse_acl("bind:*")


def test_a_non_string_rule_is_refused() -> None:
    with pytest.raises(AclError, match="ACL rule 1 must be a string, not int"):
        parse_acl([7])  # type: ignore[list-item]


def test_parsed_rules() -> None:
    acl = parse_acl(["bind:A.test", "bind:*.B.test.", "bind:*", "*", "bind:k=v"])
    assert acl.rules == (
        AclRule(kind=RuleKind.EXACT, value="a.test", source="bind:A.test"),
        AclRule(kind=RuleKind.SUFFIX, value="b.test", source="bind:*.B.test."),
        AclRule(kind=RuleKind.ANY, value="", source="bind:*"),
        AclRule(kind=RuleKind.ANY, value="", source="*"),
        AclRule(kind=RuleKind.LABEL, value="k=v", source="bind:k=v"),
    )


def test_unrestricted() -> None:
    assert Acl().unrestricted
    assert parse_acl([]).unrestricted
    assert parse_acl(["bind:a.test", "*"]).unrestricted
    assert not parse_acl(["bind:a.test"]).unrestricted
    assert not parse_acl(["bind:k=v"]).unrestricted


def test_allows_never_raises_on_a_non_string() -> None:
    assert parse_acl(["bind:a.test"]).allows(None) is False  # type: ignore[arg-type]


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
# The last label starts with a letter: an all-digit one (`x.0`) is no host name by the one
# host-name rule (no top-level domain is all digits), so `bind:*.0` no longer parses.
_tld = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_host = st.tuples(st.lists(_label, max_size=3), _tld).map(
    lambda parts: ".".join([*parts[0], parts[1]])
)


@given(
    suffix=_host,
    host=_host,
    upper=st.booleans(),
    port=st.none() | st.integers(min_value=1, max_value=65535),
)
def test_a_suffix_rule_allows_only_the_suffix_and_names_under_it(
    suffix: str, host: str, upper: bool, port: int | None
) -> None:
    asked = (host.upper() if upper else host) + ("" if port is None else f":{port}")
    if parse_acl([f"bind:*.{suffix}"]).allows(asked):
        assert host == suffix or host.endswith("." + suffix)


@given(rules=st.lists(_host, max_size=3), host=st.text(max_size=40))
def test_allows_never_raises(rules: list[str], host: str) -> None:
    assert isinstance(parse_acl([f"bind:*.{rule}" for rule in rules]).allows(host), bool)


@given(suffix=_host, prefix=_host)
def test_a_suffix_rule_allows_every_name_under_it(suffix: str, prefix: str) -> None:
    acl = parse_acl([f"bind:*.{suffix}"])
    assert acl.allows(f"{prefix}.{suffix}")
    assert acl.allows(suffix.upper())
    assert not acl.allows(f"{prefix}{suffix}") or f"{prefix}{suffix}".endswith("." + suffix)


@given(rules=st.lists(st.text(max_size=30), max_size=5))
def test_parse_acl_only_raises_acl_error(rules: list[str]) -> None:
    try:
        acl = parse_acl(rules)
    except AclError as exc:
        assert exc.code == ERR_NGROK_10007
    else:
        assert isinstance(acl.allows("a.test"), bool)
