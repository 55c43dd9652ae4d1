"""edge/policy/document.py: ngrok's policy documents (YAML, JSON, mappings) into dataclasses."""

from __future__ import annotations

import json
import re
from types import MappingProxyType

import pytest

from edge.policy.document import Action, Policy, PolicyLimits, Rule, load_policy
from edge.policy.errors import (
    ERR_NGROK_2200,
    ERR_NGROK_2236,
    ERR_NGROK_2264,
    ERR_NGROK_2265,
    PolicyError,
)
from tests.edge.policy.examples import BASIC_AUTH_YAML, URL_REWRITE_JSON


def test_yaml_document_from_ngrok_docs() -> None:
    policy = load_policy(BASIC_AUTH_YAML)
    assert policy.on_tcp_connect == ()
    assert policy.on_http_response == ()
    (rule,) = policy.on_http_request
    assert rule.name == ""
    assert rule.expressions == ()
    assert [action.type for action in rule.actions] == ["basic-auth", "custom-response"]
    assert rule.actions[0].config["credentials"] == ("user:password1", "admin:password2")
    assert rule.actions[1].config["headers"] == {"content-type": "text/plain"}


def test_json_document_from_ngrok_docs() -> None:
    policy = load_policy(URL_REWRITE_JSON)
    assert policy == Policy(
        on_http_request=(
            Rule(
                "",
                ("req.url.path == '/products'",),
                (
                    Action(
                        "url-rewrite",
                        MappingProxyType({"from": "/products", "to": "/products.php"}),
                    ),
                ),
            ),
        )
    )


def test_bytes_and_parsed_mappings_load_the_same() -> None:
    expected = load_policy(URL_REWRITE_JSON)
    assert load_policy(URL_REWRITE_JSON.encode()) == expected
    assert load_policy(json.loads(URL_REWRITE_JSON)) == expected  # the v3 config's inline form


def test_configs_are_deep_frozen() -> None:
    action = load_policy(BASIC_AUTH_YAML).on_http_request[0].actions[1]
    headers = action.config["headers"]
    assert isinstance(headers, MappingProxyType)
    with pytest.raises(TypeError):
        headers["x"] = "y"  # type: ignore[index]


@pytest.mark.parametrize("text", ["", "# just a comment\n", "{}"])
def test_empty_documents_are_the_empty_policy(text: str) -> None:
    assert load_policy(text) == Policy()


def test_a_rule_name_is_kept_and_null_phases_are_empty() -> None:
    policy = load_policy(
        "on_tcp_connect:\non_http_request:\n  - name: n\n    actions: [{type: deny}]\n"
    )
    assert policy.on_tcp_connect == ()
    assert policy.on_http_request[0].name == "n"
    assert policy.on_http_request[0].actions == (Action("deny", MappingProxyType({})),)


@pytest.mark.parametrize(
    ("source", "where", "why"),
    [
        (
            "on_http_requests: []",
            "policy",
            "unknown key 'on_http_requests' (did you mean 'on_http_request'?)",
        ),
        (
            "on_event_stream_message: []",
            "on_event_stream_message",
            "not supported by this Burrow edge yet",
        ),
        ("- 1", "policy", "a policy must be a mapping of phases, not a list"),
        ("on_http_request: {}", "on_http_request", "must be a list of rules, not a mapping"),
        (
            "on_http_request: [1]",
            "on_http_request rule 0",
            "a rule must be a mapping, not a number",
        ),
        (
            "on_http_request:\n  - name: r\n    expression: [x]\n",
            'on_http_request rule 0 ("r")',
            "unknown key 'expression' (did you mean 'expressions'?)",
        ),
        (
            "on_http_request: [{name: 5}]",
            "on_http_request rule 0 name",
            "must be a string, not a number",
        ),
        (
            "on_http_request: [{expressions: 'true'}]",
            "on_http_request rule 0 expressions",
            "must be a list of strings",
        ),
        (
            "on_http_request: [{expressions: [true]}]",
            "on_http_request rule 0 expressions[0]",
            "must be a string, not a boolean",
        ),
        (
            "on_http_request: [{actions: {type: deny}}]",
            "on_http_request rule 0 actions",
            "must be a list of actions",
        ),
        (
            "on_http_request: [{actions: [{config: {}}]}]",
            "on_http_request rule 0 action 0 (?) type",
            "every action needs a `type` string",
        ),
        (
            "on_http_request: [{actions: [{type: deny, cfg: {}}]}]",
            "on_http_request rule 0 action 0 (deny)",
            "unknown key 'cfg'",
        ),
        (
            "on_http_request: [{actions: [{type: deny, config: [1]}]}]",
            "on_http_request rule 0 action 0 (deny) config",
            "must be a mapping, not a list",
        ),
        ("on_http_request: [", "policy", "not able to be parsed"),
        ('{"on_http_request": [}', "policy", "invalid JSON"),
        (
            '{"on_http_request": [], "on_http_request": []}',
            "policy",
            "duplicate key 'on_http_request'",
        ),
        ("on_http_request: []\non_http_request: []\n", "policy", "duplicate"),
        (b"\xff\xfe", "policy", "not UTF-8"),
    ],
)
def test_malformed_documents_are_2236_naming_the_place(
    source: str | bytes, where: str, why: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(source)
    assert caught.value.code == ERR_NGROK_2236
    # YAML sources also name the line, after the place: drop it to compare the place itself.
    assert re.sub(r" \(line \d+\)", "", caught.value.message).startswith(f"{where}: ")
    assert why in caught.value.message


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy("on_http_request:\n  - name: r\n    expression: [x]\n")
    assert caught.value.message.startswith('on_http_request rule 0 ("r") (line 3): unknown key')
    assert caught.value.place.line == 3


def test_document_size_limit() -> None:
    limits = PolicyLimits(max_document_bytes=64)
    text = "on_http_request:\n" + "  - actions: [{type: deny}]\n" * 3
    with pytest.raises(PolicyError, match=r"over the limit of 64 bytes") as caught:
        load_policy(text, limits=limits)
    assert caught.value.code == ERR_NGROK_2236


def test_rules_per_phase_limit_is_2264() -> None:
    rules = [{"actions": [{"type": "deny"}]}] * 3
    load_policy({"on_http_request": rules}, limits=PolicyLimits(max_rules_per_phase=3))
    with pytest.raises(PolicyError) as caught:
        load_policy({"on_http_request": rules}, limits=PolicyLimits(max_rules_per_phase=2))
    assert caught.value.code == ERR_NGROK_2264
    assert caught.value.message.startswith("on_http_request: ")
    assert "rule per policy limit of 2" in caught.value.message


def test_actions_and_expressions_per_rule_limits_are_2265() -> None:
    limits = PolicyLimits(max_actions_per_rule=1, max_expressions_per_rule=1)
    with pytest.raises(PolicyError) as caught:
        load_policy({"on_tcp_connect": [{"actions": [{"type": "deny"}] * 2}]}, limits=limits)
    assert caught.value.code == ERR_NGROK_2265
    assert "actions per rule limit of 1 during on_tcp_connect at index 0" in caught.value.message
    with pytest.raises(PolicyError) as caught:
        load_policy({"on_tcp_connect": [{"expressions": ["true", "true"]}]}, limits=limits)
    assert caught.value.code == ERR_NGROK_2265
    assert "expressions per rule limit of 1" in caught.value.message


def test_expression_length_limit_is_2200() -> None:
    limits = PolicyLimits(max_expression_length=10)
    with pytest.raises(PolicyError) as caught:
        load_policy({"on_tcp_connect": [{"expressions": ["true || true || true"]}]}, limits=limits)
    assert caught.value.code == ERR_NGROK_2200
    assert caught.value.message.startswith("on_tcp_connect rule 0 expressions[0]: ")


def test_deep_json_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy('{"on_http_request": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert caught.value.code == ERR_NGROK_2236


@pytest.mark.parametrize("value", [0, -1, True, "5"])
def test_limits_must_be_positive_integers(value: object) -> None:
    with pytest.raises(ValueError, match="max_rules_per_phase"):
        PolicyLimits(max_rules_per_phase=value)  # type: ignore[arg-type]
