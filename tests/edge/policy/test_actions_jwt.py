"""edge/policy/actions_jwt.py: ngrok's documented jwt-validation config parses into its frozen
form; every malformed field is refused with ngrok's code (ERR_NGROK_71xx, 2203, 2204, 2218)
and a place naming it; fields this edge does not implement are refused by name."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from edge.policy.actions_jwt import MAX_JKUS, JwtValidationConfig, TokenSource
from edge.policy.document import load_policy
from edge.policy.errors import ERR_NGROK_2203, ERR_NGROK_2204, ERR_NGROK_2218, PolicyError
from edge.policy.validate import validate

# ngrok's basic example (DOCS traffic-policy/actions/jwt-validation/examples/basic-example),
# with the body token left out (see test_a_body_token_parses_and_makes_the_policy_read_bodies).
DOC_EXAMPLE = """
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer:
            allow_list:
              - value: https://example.com/issuer
          audience:
            allow_list:
              - value: urn:example:api
          http:
            tokens:
              - type: access_token
                method: header
                name: Authorization
                prefix: "Bearer "
          jws:
            allowed_algorithms: [RS256, ES256]
            keys:
              sources:
                additional_jkus: ["https://example.com/issuer/jku"]
"""


def base() -> dict[str, Any]:
    return {
        "issuer": {"allow_list": [{"value": "https://example.com/issuer"}]},
        "audience": {"allow_list": [{"value": "urn:example:api"}]},
        "http": {
            "tokens": [
                {
                    "type": "access_token",
                    "method": "header",
                    "name": "Authorization",
                    "prefix": "Bearer ",
                }
            ]
        },
        "jws": {
            "allowed_algorithms": ["RS256"],
            "keys": {"sources": {"additional_jkus": ["https://example.com/jwks"]}},
        },
    }


def compile_config(config: dict[str, Any]) -> JwtValidationConfig:
    document = {"on_http_request": [{"actions": [{"type": "jwt-validation", "config": config}]}]}
    compiled = validate(load_policy(json.dumps(document)), protocol="https")
    parsed = compiled.on_http_request[0].actions[0].config
    assert isinstance(parsed, JwtValidationConfig)
    return parsed


def refused(config: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        compile_config(config)
    return caught.value


def changed(path: str, value: object) -> dict[str, Any]:
    """`base()` with the value at the dotted `path` replaced (None removes the key)."""
    config = copy.deepcopy(base())
    node: Any = config
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is None:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return config


def test_the_doc_example_parses() -> None:
    compiled = validate(load_policy(DOC_EXAMPLE), protocol="https")
    config = compiled.on_http_request[0].actions[0].config
    assert config == JwtValidationConfig(
        issuers=("https://example.com/issuer",),
        audiences=("urn:example:api",),
        tokens=(TokenSource("access_token", "header", "Authorization", "Bearer "),),
        algorithms=("RS256", "ES256"),
        jkus=("https://example.com/issuer/jku",),
    )


def test_audience_is_optional_and_identification_kid_is_accepted() -> None:
    config = changed("audience", None)
    config["jws"]["keys"]["identification"] = [{"token_claims": ["kid"]}]
    parsed = compile_config(config)
    assert parsed.audiences == ()


def test_jwt_validation_is_an_auth_action_and_only_runs_on_http_request() -> None:
    second = (
        DOC_EXAMPLE + "      - type: basic-auth\n        config: {credentials: ['a:password1']}\n"
    )
    with pytest.raises(PolicyError) as caught:
        validate(load_policy(second), protocol="https")
    assert caught.value.code == "ERR_NGROK_2239"
    response = DOC_EXAMPLE.replace("on_http_request", "on_http_response")
    with pytest.raises(PolicyError) as caught:
        validate(load_policy(response), protocol="https")
    assert caught.value.code == "ERR_NGROK_2202"


@pytest.mark.parametrize(
    ("path", "value", "code", "field", "words"),
    [
        ("issuer", None, "ERR_NGROK_7172", "config.issuer.allow_list", "at least one issuer"),
        ("issuer.allow_list", [], "ERR_NGROK_7172", "config.issuer.allow_list", "at least one"),
        ("issuer.allow_list.0.value", "not a url", "ERR_NGROK_7173", "value", "not a valid URL"),
        ("issuer.allow_list.0.value", "", "ERR_NGROK_7173", "value", "non-empty"),
        ("audience.allow_list", [], "ERR_NGROK_7174", "audience.allow_list", "one audience"),
        ("audience.allow_list.0.value", 5, "ERR_NGROK_7175", "value", "audience is invalid"),
        ("http", None, "ERR_NGROK_7178", "config.http.tokens", "one token configuration"),
        ("http.tokens", [], "ERR_NGROK_7178", "config.http.tokens", "one token configuration"),
        ("http.tokens.0.type", "saml", "ERR_NGROK_7179", "tokens[0].type", "must be one of"),
        ("http.tokens.0.method", "query", "ERR_NGROK_7179", "tokens[0].method", "header or body"),
        ("http.tokens.0.name", "Bad Name", "ERR_NGROK_7180", "tokens[0].name", "is invalid"),
        ("http.tokens.0.name", None, "ERR_NGROK_7180", "tokens[0].name", "is invalid"),
        ("http.tokens.0.prefix", "Bearer\r\n", "ERR_NGROK_7181", "prefix", "prefix"),
        ("jws.allowed_algorithms", [], "ERR_NGROK_7176", "allowed_algorithms", "one allowed"),
        ("jws.allowed_algorithms", ["none"], "ERR_NGROK_7177", "[0]", "'none' algorithm"),
        ("jws.allowed_algorithms", ["HS256"], "ERR_NGROK_7177", "[0]", "no HMAC"),
        ("jws.allowed_algorithms", ["RS256", "RS256"], "ERR_NGROK_7190", "[1]", "unique"),
        ("jws.keys", None, "ERR_NGROK_7184", "config.jws.keys", "at least one source"),
        ("jws.keys.sources", None, "ERR_NGROK_7184", "additional_jkus", "at least one source"),
        ("jws.keys.sources.additional_jkus", [], "ERR_NGROK_7184", "jkus", "one source"),
        ("jws.keys.sources.additional_jkus", ["http://idp/jwks"], "ERR_NGROK_7185", "[0]", "https"),
        ("jws.keys.sources.additional_jkus", ["nope"], "ERR_NGROK_7185", "[0]", "not a valid URL"),
        ("jws.keys.sources.additional_jkus", ["https://a:99999/"], "ERR_NGROK_7185", "[0]", "port"),
        (
            "jws.keys.sources.additional_jkus",
            ["https://a/", "https://a/"],
            "ERR_NGROK_7192",
            "[1]",
            "unique",
        ),
        (
            "jws.keys.identification",
            [{"token_claims": ["sub"]}],
            "ERR_NGROK_7183",
            "token_claims",
            "kid",
        ),
        ("jws", None, ERR_NGROK_2204, "config.jws", "is required"),
    ],
)
def test_invalid_fields_get_ngroks_codes(
    path: str, value: object, code: str, field: str, words: str
) -> None:
    error = refused(changed(path, value))
    assert error.code == code, error.message
    assert error.place.field is not None and field in error.place.field, error.place
    assert words in error.message
    assert error.message.startswith("on_http_request rule 0 action 0 (jwt-validation) config.")


def test_duplicate_issuers_and_audiences() -> None:
    issuers = [{"value": "https://a.example"}, {"value": "https://a.example"}]
    assert refused(changed("issuer.allow_list", issuers)).code == "ERR_NGROK_7187"
    audiences = [{"value": "x"}, {"value": "x"}]
    assert refused(changed("audience.allow_list", audiences)).code == "ERR_NGROK_7188"


def test_a_body_token_parses_and_makes_the_policy_read_bodies() -> None:
    # Once refused by name (the edge had no body buffering for it); now read from the body.
    config = compile_config(changed("http.tokens.0.method", "body"))
    assert config.tokens[0].method == "body"
    assert config.reads_body
    assert not compile_config(base()).reads_body
    document = {
        "on_http_request": [
            {
                "actions": [
                    {"type": "jwt-validation", "config": changed("http.tokens.0.method", "body")}
                ]
            }
        ]
    }
    assert validate(load_policy(json.dumps(document)), protocol="https").reads_request_body
    header_only = {"on_http_request": [{"actions": [{"type": "jwt-validation", "config": base()}]}]}
    assert not validate(load_policy(json.dumps(header_only)), protocol="https").reads_request_body


@pytest.mark.parametrize(
    ("path", "key", "field"),
    [
        ("", "enforce", "config.enforce"),
        ("", "leeway", "config.leeway"),
        ("issuer", "deny_list", "config.issuer.deny_list"),
        ("http.tokens.0", "location", "config.http.tokens[0].location"),
        ("jws", "inline_keys", "config.jws.inline_keys"),
        ("jws.keys", "inline", "config.jws.keys.inline"),
        ("jws.keys.sources", "jwks", "config.jws.keys.sources.jwks"),
    ],
)
def test_unknown_fields_at_any_depth_are_refused_by_name(path: str, key: str, field: str) -> None:
    config = base()
    node: Any = config
    for part in filter(None, path.split(".")):
        node = node[int(part)] if part.isdigit() else node[part]
    node[key] = True
    error = refused(config)
    assert error.code == ERR_NGROK_2203
    assert error.place.field == field
    assert repr(key) in error.message


def test_wrong_shapes_are_2204() -> None:
    assert refused(changed("issuer", ["https://a"])).code == ERR_NGROK_2204
    assert refused(changed("http.tokens", "Authorization")).code == ERR_NGROK_2204
    assert refused(changed("jws.keys", [{"sources": {}}])).code == ERR_NGROK_2204


def test_too_many_jkus_is_2218() -> None:
    urls = [f"https://idp.example/{i}" for i in range(MAX_JKUS + 1)]
    assert refused(changed("jws.keys.sources.additional_jkus", urls)).code == ERR_NGROK_2218
