"""edge/policy/actions.py: the catalogue as data and each action's strict config schema."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from decimal import Decimal

import pytest

from edge.policy.actions import (
    CATALOGUE,
    AddHeadersConfig,
    BasicAuthConfig,
    CustomResponseConfig,
    DenyConfig,
    LogConfig,
    RateLimitConfig,
    RedirectConfig,
    RemoveHeadersConfig,
    RestrictIpsConfig,
    SetVarsConfig,
    UrlRewriteConfig,
    parse_duration,
)
from edge.policy.document import freeze
from edge.policy.errors import (
    ERR_NGROK_2200,
    ERR_NGROK_2203,
    ERR_NGROK_2204,
    ERR_NGROK_2215,
    ERR_NGROK_2217,
    ERR_NGROK_2218,
    ERR_NGROK_2219,
    ERR_NGROK_2221,
    ERR_NGROK_2223,
    ERR_NGROK_2224,
    ERR_NGROK_2231,
    ERR_NGROK_2252,
    ERR_NGROK_2257,
    ERR_NGROK_2258,
    ERR_NGROK_2261,
    Place,
    PolicyError,
)
from edge.policy.fields import ConfigReader
from edge.policy.interpolation import Template

TCP, REQUEST, RESPONSE = "on_tcp_connect", "on_http_request", "on_http_response"


def parse(kind: str, config: Mapping[str, object], phase: str = REQUEST) -> object:
    """Parse `config` for action `kind` as validation does (strict: unknown fields refused)."""
    place = Place(phase=phase, rule_index=0, action_index=0, action_type=kind)
    frozen = freeze(config)
    assert isinstance(frozen, Mapping)
    reader = ConfigReader(frozen, place)
    spec = CATALOGUE[kind]
    assert spec.parse is not None
    result = spec.parse(reader)
    reader.finish()
    return result


def refused(kind: str, config: Mapping[str, object], phase: str = REQUEST) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse(kind, config, phase)
    return caught.value


# --- the catalogue ---------------------------------------------------------------------------
def test_catalogue_phases_and_terminating_match_the_reference() -> None:
    assert CATALOGUE["restrict-ips"].phases == {TCP, REQUEST, RESPONSE}
    assert CATALOGUE["deny"].phases == {TCP, REQUEST}
    assert CATALOGUE["close-connection"].phases == {TCP, REQUEST}
    assert CATALOGUE["custom-response"].phases == {REQUEST, RESPONSE}
    assert CATALOGUE["compress-response"].phases == {RESPONSE}
    assert CATALOGUE["rate-limit"].phases == {REQUEST}
    assert CATALOGUE["set-vars"].phases == CATALOGUE["log"].phases == {TCP, REQUEST, RESPONSE}
    terminating = {kind for kind, spec in CATALOGUE.items() if spec.terminating}
    assert terminating == {"deny", "custom-response", "close-connection", "forward-internal"}
    auth = {kind for kind, spec in CATALOGUE.items() if spec.auth}
    assert auth == {"basic-auth", "jwt-validation", "oauth", "openid-connect", "saml"}


def test_every_action_of_the_reference_is_listed_and_unimplemented_ones_have_no_parser() -> None:
    implemented = {
        "restrict-ips", "deny", "close-connection", "custom-response", "add-headers",
        "remove-headers", "redirect", "url-rewrite", "set-vars", "log", "basic-auth", "rate-limit",
        "forward-internal", "terminate-tls", "jwt-validation", "circuit-breaker",
        "verify-webhook", "request-body-find-replace",
        "compress-response", "response-body-find-replace",
    }  # fmt: skip
    others = {
        "oauth", "openid-connect", "saml",
        "http-request",
        "sse-find-replace",
        "owasp-crs-request", "owasp-crs-response", "ai-gateway",
    }  # fmt: skip
    assert set(CATALOGUE) == implemented | others
    assert {kind for kind, spec in CATALOGUE.items() if spec.parse is not None} == implemented


# --- restrict-ips ----------------------------------------------------------------------------
def test_restrict_ips() -> None:
    config = parse(
        "restrict-ips", {"allow": ["10.0.0.0/8", "2001:db8::1/128"], "deny": ["10.1.0.0/16"]}
    )
    assert config == RestrictIpsConfig(
        True,
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::1/128")),
        (ipaddress.ip_network("10.1.0.0/16"),),
    )
    relaxed = parse("restrict-ips", {"enforce": False, "deny": ["10.0.0.5/8"]}, TCP)
    assert isinstance(relaxed, RestrictIpsConfig)
    assert relaxed.enforce is False
    assert relaxed.deny == (ipaddress.ip_network("10.0.0.0/8"),)  # host bits allowed, as Go


def test_restrict_ips_with_a_cel_cidr_keeps_a_template() -> None:
    config = parse("restrict-ips", {"allow": ["${vars.office}"]})
    assert isinstance(config, RestrictIpsConfig)
    assert isinstance(config.allow[0], Template)


@pytest.mark.parametrize("cidr", ["10.0.0.300/8", "10.0.0.1", "not a cidr", "10.0.0.0/33"])
def test_restrict_ips_bad_cidr_is_2217(cidr: str) -> None:
    error = refused("restrict-ips", {"allow": ["10.0.0.0/8", cidr]})
    assert error.code == ERR_NGROK_2217
    assert error.message.startswith(
        "on_http_request rule 0 action 0 (restrict-ips) config.allow[1]: "
    )
    assert repr(cidr) in error.message


def test_restrict_ips_needs_a_list_and_refuses_ip_policies() -> None:
    assert refused("restrict-ips", {}).code == ERR_NGROK_2204
    error = refused("restrict-ips", {"allow": ["10.0.0.0/8"], "ip_policies": ["ipp_1"]})
    assert error.code == ERR_NGROK_2204
    assert "not supported by this Burrow edge yet" in error.message
    error = refused("restrict-ips", {"allow": "10.0.0.0/8"})
    assert error.code == ERR_NGROK_2204
    assert "config.allow: " in error.message


# --- deny, close-connection ------------------------------------------------------------------
def test_deny() -> None:
    assert parse("deny", {}) == DenyConfig(403)
    assert parse("deny", {"status_code": 404}) == DenyConfig(404)
    assert parse("deny", {}, TCP) == DenyConfig(None)


def test_deny_refuses_a_status_code_on_tcp_and_bad_values() -> None:
    error = refused("deny", {"status_code": 404}, TCP)
    assert error.code == ERR_NGROK_2203
    assert "config.status_code: " in error.message
    assert "it takes no fields" in error.message
    assert refused("deny", {"status_code": 700}).code == ERR_NGROK_2215
    assert refused("deny", {"status_code": "404"}).code == ERR_NGROK_2204
    assert refused("deny", {"status_code": True}).code == ERR_NGROK_2204


def test_close_connection_takes_no_fields() -> None:
    parse("close-connection", {}, TCP)
    error = refused("close-connection", {"reason": "x"}, TCP)
    assert error.code == ERR_NGROK_2203
    assert "unknown field 'reason'" in error.message


# --- custom-response, headers ----------------------------------------------------------------
def test_custom_response() -> None:
    config = parse(
        "custom-response",
        {
            "status_code": 503,
            "body": "down for ${req.method}",
            "headers": {"Content-Type": "text/html"},
        },
    )
    assert isinstance(config, CustomResponseConfig)
    assert config.status_code == 503
    assert config.body is not None
    assert config.body.render({"req": {"method": "GET"}}) == "down for GET"
    assert [name for name, _ in config.headers] == ["content-type"]
    older = parse("custom-response", {"content": "hi"})
    assert isinstance(older, CustomResponseConfig)
    assert older.body is not None
    assert older.body.text == "hi"
    default = parse("custom-response", {})
    assert default == CustomResponseConfig(200, None, ())


def test_custom_response_refusals() -> None:
    assert refused("custom-response", {"body": "a", "content": "b"}).code == ERR_NGROK_2204
    error = refused("custom-response", {"bodyy": "x"})
    assert error.code == ERR_NGROK_2203
    assert "unknown field 'bodyy' (did you mean 'body'?)" in error.message
    headers = {f"x-{index}": "v" for index in range(11)}
    error = refused("custom-response", {"headers": headers})
    assert error.code == ERR_NGROK_2218
    assert "You provided 11 entries, but the limit is 10" in error.message
    assert refused("custom-response", {"body": "${nope}"}).code == ERR_NGROK_2224


def test_add_headers() -> None:
    config = parse(
        "add-headers", {"headers": {"X-Client-IP": "${conn.client_ip}", "x-static": "1"}}
    )
    assert isinstance(config, AddHeadersConfig)
    assert [name for name, _ in config.headers] == ["x-client-ip", "x-static"]


@pytest.mark.parametrize(
    ("headers", "code", "field"),
    [
        ({}, ERR_NGROK_2223, "config.headers"),
        ({"bad name": "v"}, ERR_NGROK_2204, "config.headers.bad name"),
        ({"x-a": "line\r\nbreak"}, ERR_NGROK_2204, "config.headers.x-a"),
        ({"x-a": 5}, ERR_NGROK_2204, "config.headers.x-a"),
        ({"User-Agent": "me"}, ERR_NGROK_2219, "config.headers.User-Agent"),
        (
            {"ngrok-skip-browser-warning": "1"},
            ERR_NGROK_2219,
            "config.headers.ngrok-skip-browser-warning",
        ),
        ({"X-A": "1", "x-a": "2"}, ERR_NGROK_2231, "config.headers.x-a"),
    ],
)
def test_add_headers_refusals(headers: dict[str, object], code: str, field: str) -> None:
    error = refused("add-headers", {"headers": headers})
    assert error.code == code
    assert f"(add-headers) {field}: " in error.message


def test_remove_headers() -> None:
    assert parse("remove-headers", {"headers": ["X-A", "x-b"]}, RESPONSE) == RemoveHeadersConfig(
        ("x-a", "x-b")
    )
    assert refused("remove-headers", {"headers": []}).code == ERR_NGROK_2223
    assert refused("remove-headers", {"headers": ["user-agent"]}).code == ERR_NGROK_2219
    assert refused("remove-headers", {"headers": ["a b"]}).code == ERR_NGROK_2204


# --- redirect, url-rewrite -------------------------------------------------------------------
def test_redirect_and_url_rewrite() -> None:
    config = parse("redirect", {"from": "^http://(.*)$", "to": "https://$1", "status_code": 301})
    assert isinstance(config, RedirectConfig)
    assert config.status_code == 301
    assert config.from_ is not None
    assert config.from_.text == "^http://(.*)$"
    assert parse("redirect", {"to": "https://example.com/"}) == RedirectConfig(
        None, parse_template("https://example.com/"), 302, ()
    )
    rewrite = parse("url-rewrite", {"from": "/products", "to": "/products.php"})
    assert isinstance(rewrite, UrlRewriteConfig)


def parse_template(text: str) -> Template:
    from edge.policy.interpolation import compile_template

    return compile_template(text)


@pytest.mark.parametrize("pattern", ["(unclosed", "(a)\\1", "(?=lookahead)"])
def test_bad_regex_is_2261(pattern: str) -> None:
    for kind in ("redirect", "url-rewrite"):
        error = refused(kind, {"from": pattern, "to": "/"})
        assert error.code == ERR_NGROK_2261
        assert f"({kind}) config.from: " in error.message
        assert "is not a valid regular expression" in error.message


def test_redirect_refusals() -> None:
    assert refused("redirect", {"from": "/a"}).code == ERR_NGROK_2204  # `to` is required
    assert refused("redirect", {"to": "/", "status_code": 200}).code == ERR_NGROK_2215
    assert refused("url-rewrite", {"to": "/", "status_code": 301}).code == ERR_NGROK_2203


# --- set-vars, log ---------------------------------------------------------------------------
def test_set_vars() -> None:
    config = parse(
        "set-vars", {"vars": [{"region": "eu"}, {"ip": "${conn.client_ip}"}, {"n": 3}]}, TCP
    )
    assert isinstance(config, SetVarsConfig)
    assert [name for name, _ in config.vars] == ["region", "ip", "n"]
    assert config.vars[2] == ("n", 3)


def test_set_vars_strings_inside_maps_and_lists_are_templates_too() -> None:
    # ngrok's set-vars CEL interpolation example: `sample_map: {pem: ${conn.tls.client.pem}}`.
    config = parse(
        "set-vars",
        {"vars": [{"m": {"ip": "${conn.client_ip}", "n": 1, "l": ["${conn.client_port}", 2]}}]},
    )
    assert isinstance(config, SetVarsConfig)
    [(name, value)] = config.vars
    assert name == "m" and isinstance(value, Mapping)
    assert isinstance(value["ip"], Template) and value["n"] == 1
    assert isinstance(value["l"][0], Template) and value["l"][1] == 2
    bad = refused("set-vars", {"vars": [{"m": {"deep": ["${nope("]}}]})
    assert bad.place.field == "config.vars[0].m.deep[0]"


@pytest.mark.parametrize("value", [None, [], "x", [{"a": 1, "b": 2}], [{}], ["a"]])
def test_set_vars_shape_is_2252(value: object) -> None:
    error = refused("set-vars", {"vars": value})
    assert error.code == ERR_NGROK_2252
    assert "vars must be a list of maps of exactly size 1" in error.message


def test_log() -> None:
    config = parse("log", {"metadata": {"who": "${conn.client_ip}", "n": 1}}, RESPONSE)
    assert isinstance(config, LogConfig)
    assert [key for key, _ in config.metadata] == ["who", "n"]
    assert refused("log", {}).code == ERR_NGROK_2223


# --- basic-auth ------------------------------------------------------------------------------
def test_basic_auth_keeps_only_password_digests() -> None:
    config = parse(
        "basic-auth", {"credentials": ["user:password1", "admin:pass:word2"], "realm": "r"}
    )
    assert isinstance(config, BasicAuthConfig)
    assert [c.username for c in config.credentials] == ["user", "admin"]
    # the first colon splits: admin's password is "pass:word2"
    assert config.credentials[1].password_sha256 == hashlib.sha256(b"pass:word2").digest()
    assert "password1" not in repr(config)
    assert config.realm == "r"
    assert config.enforce is True
    default = parse("basic-auth", {"credentials": ["u:12345678"], "enforce": False})
    assert isinstance(default, BasicAuthConfig)
    assert default.realm == "ngrok"
    assert default.enforce is False


@pytest.mark.parametrize(
    ("credential", "code"),
    [
        ("nocolon", ERR_NGROK_2257),
        (":password1", ERR_NGROK_2257),
        ("us\ter:password1", ERR_NGROK_2257),
        ("user:short", ERR_NGROK_2258),
        ("user:" + "p" * 129, ERR_NGROK_2258),
        ("user:pass\x00word", ERR_NGROK_2258),
    ],
)
def test_basic_auth_rfc_7617(credential: str, code: str) -> None:
    error = refused("basic-auth", {"credentials": ["ok:password1", credential]})
    assert error.code == code
    assert "(basic-auth) config.credentials[1]: " in error.message
    assert "RFC 7617" in error.message


def test_basic_auth_refusals() -> None:
    assert refused("basic-auth", {}).code == ERR_NGROK_2223
    too_many = [f"user{index}:password1" for index in range(11)]
    assert refused("basic-auth", {"credentials": too_many}).code == ERR_NGROK_2218
    duplicate = refused("basic-auth", {"credentials": ["u:password1", "u:password2"]})
    assert duplicate.code == ERR_NGROK_2231
    assert (
        refused("basic-auth", {"credentials": ["u:password1"], "realm": "é"}).code == ERR_NGROK_2204
    )
    long_realm = refused("basic-auth", {"credentials": ["u:password1"], "realm": "r" * 129})
    assert long_realm.code == ERR_NGROK_2221
    templated = refused("basic-auth", {"credentials": ["${vars.u}:password1"]})
    assert "not supported by this Burrow edge yet" in templated.message


# --- rate-limit ------------------------------------------------------------------------------
RATE_LIMIT = {
    "name": "Only allow 30 requests per minute",
    "algorithm": "sliding_window",
    "capacity": 30,
    "rate": "60s",
    "bucket_key": ["hasReqHeader('host') ? getReqHeader('host')[0] : 'unknown'"],
}


def test_rate_limit_from_ngrok_docs() -> None:
    config = parse("rate-limit", RATE_LIMIT)
    assert isinstance(config, RateLimitConfig)
    assert (config.name, config.capacity, config.rate_seconds, config.enforce) == (
        "Only allow 30 requests per minute", 30, 60, True,
    )  # fmt: skip
    key = config.bucket_key[0]
    assert key.value({"req": {"headers": {"host": ["example.com"]}}}) == "example.com"
    assert key.value({"req": {"headers": {}}}) == "unknown"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"algorithm": "token_bucket"}, ERR_NGROK_2204, "algorithm"),
        ({"capacity": 0}, ERR_NGROK_2215, "capacity"),
        ({"capacity": 2_000_000_001}, ERR_NGROK_2215, "capacity"),
        ({"capacity": None}, ERR_NGROK_2204, "capacity"),
        ({"rate": "59s"}, ERR_NGROK_2215, "rate"),
        ({"rate": "65s"}, ERR_NGROK_2215, "rate"),
        ({"rate": "25h"}, ERR_NGROK_2215, "rate"),
        ({"rate": "a minute"}, ERR_NGROK_2204, "rate"),
        ({"name": "n" * 1024}, ERR_NGROK_2221, "name"),
        ({"bucket_key": []}, ERR_NGROK_2223, "bucket_key"),
        ({"bucket_key": ["conn.client_ip"] * 11}, ERR_NGROK_2218, "bucket_key"),
        ({"bucket_key": ["conn.nope("]}, ERR_NGROK_2200, "bucket_key[0]"),
        ({"enforce": "yes"}, ERR_NGROK_2204, "enforce"),
        ({"burst": 5}, ERR_NGROK_2203, "burst"),
    ],
)
def test_rate_limit_refusals(change: dict[str, object], code: str, field: str) -> None:
    config = {**RATE_LIMIT, **change}
    config = {key: value for key, value in config.items() if value is not None}
    error = refused("rate-limit", config)
    assert error.code == code
    assert f"(rate-limit) config.{field}: " in error.message


def test_rate_limit_accepts_go_durations() -> None:
    for text, seconds in [("90s", 90), ("10m", 600), ("1m30s", 90), ("24h", 86400), ("1.5h", 5400)]:
        config = parse("rate-limit", {**RATE_LIMIT, "rate": text})
        assert isinstance(config, RateLimitConfig)
        assert config.rate_seconds == seconds


def test_parse_duration() -> None:
    assert parse_duration("1h2m3s") == Decimal(3723)
    assert parse_duration("1500ms") == Decimal("1.5")
    for bad in ["", "5", "1d", "s", "1h 2m"]:
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
