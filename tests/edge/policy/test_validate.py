"""edge/policy/validate.py: what a policy means for an endpoint's protocol, compiled once."""

from __future__ import annotations

import pytest

from edge.policy.actions import DenyConfig
from edge.policy.document import load_policy
from edge.policy.errors import (
    ERR_NGROK_2200,
    ERR_NGROK_2201,
    ERR_NGROK_2202,
    ERR_NGROK_2203,
    ERR_NGROK_2206,
    ERR_NGROK_2207,
    ERR_NGROK_2217,
    ERR_NGROK_2229,
    ERR_NGROK_2230,
    ERR_NGROK_2239,
    PolicyError,
)
from edge.policy.validate import check, validate

GOOD = """\
on_tcp_connect:
  - name: office only
    expressions: ["!inCidrRange(conn.client_ip, '10.0.0.0/8')"]
    actions:
      - type: restrict-ips
        config: {allow: ["10.0.0.0/8"]}
on_http_request:
  - name: block
    expressions: ["req.url.path.startsWith('/admin')"]
    actions:
      - type: deny
        config: {status_code: 404}
  - actions:
      - type: add-headers
        config: {headers: {x-ip: "${conn.client_ip}"}}
      - type: basic-auth
        config: {credentials: ["user:password1"]}
on_http_response:
  - actions:
      - type: remove-headers
        config: {headers: [server]}
"""


def first_error(source: str, protocol: str = "https") -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        validate(load_policy(source), protocol=protocol)
    return caught.value


def test_a_valid_policy_compiles_every_expression_and_config() -> None:
    compiled = validate(load_policy(GOOD), protocol="https")
    block = compiled.on_http_request[0]
    assert block.name == "block"
    assert block.expressions[0].evaluate({"req": {"url": {"path": "/admin/x"}}}) is True
    assert block.actions[0].config == DenyConfig(404)
    assert [a.type for a in compiled.on_http_request[1].actions] == ["add-headers", "basic-auth"]
    assert check(load_policy(GOOD), protocol="http") == ()


def test_tcp_endpoints_take_only_on_tcp_connect() -> None:
    source = "on_tcp_connect:\n  - actions: [{type: deny}]\n"
    assert validate(load_policy(source), protocol="tcp").on_tcp_connect[0].actions[
        0
    ].config == DenyConfig(None)
    error = first_error(GOOD, "tls")
    assert error.code == ERR_NGROK_2230
    assert (
        error.message
        == "on_http_request: Invalid Traffic Policy phase on_http_request for protocol tls"
    )


def test_unknown_protocol_is_2229() -> None:
    assert first_error(GOOD, "udp").code == ERR_NGROK_2229


@pytest.mark.parametrize(
    ("source", "code", "where", "why"),
    [
        (
            "on_http_request:\n  - name: r\n    expressions: ['req.method =']\n"
            "    actions: [{type: deny}]\n",
            ERR_NGROK_2200,
            'on_http_request rule 0 ("r") expressions[0]',
            "Invalid policy expression 'req.method ='",
        ),
        (
            "on_http_request:\n"
            "  - actions: [{type: log, config: {metadata: {a: 1}}}, {type: frobnicate}]\n",
            ERR_NGROK_2201,
            "on_http_request rule 0 action 1 (frobnicate)",
            "Invalid policy action type 'frobnicate'",
        ),
        (
            "on_http_request:\n  - actions: [{type: oauth}]\n",
            ERR_NGROK_2201,
            "on_http_request rule 0 action 0 (oauth)",
            "oauth is not supported by this Burrow edge yet",
        ),
        (
            "on_http_response:\n  - actions: [{type: deny}]\n",
            ERR_NGROK_2202,
            "on_http_response rule 0 action 0 (deny)",
            "Action type deny is not supported for on_http_response traffic policy rule",
        ),
        (
            "on_http_request:\n  - actions: [{type: deny, config: {status: 404}}]\n",
            ERR_NGROK_2203,
            "on_http_request rule 0 action 0 (deny) config.status",
            "unknown field 'status'",
        ),
        (
            "on_http_request:\n  - name: empty\n    expressions: ['true']\n",
            ERR_NGROK_2206,
            'on_http_request rule 0 ("empty")',
            "A policy must define at least one action.",
        ),
        (
            "on_tcp_connect:\n  - actions: [{type: restrict-ips, config: {deny: [10.0.0.0/40]}}]\n",
            ERR_NGROK_2217,
            "on_tcp_connect rule 0 action 0 (restrict-ips) config.deny[0]",
            "Invalid CIDR(s): '10.0.0.0/40'",
        ),
    ],
)
def test_each_error_names_its_place(source: str, code: str, where: str, why: str) -> None:
    error = first_error(source)
    assert error.code == code
    assert error.message.startswith(f"{where}: ")
    assert why in error.message


def test_a_rule_after_an_unconditional_terminating_rule_is_unreachable() -> None:
    source = """\
on_http_request:
  - name: maintenance
    actions: [{type: custom-response, config: {status_code: 503}}]
  - name: later
    actions: [{type: add-headers, config: {headers: {x-a: "1"}}}]
"""
    error = first_error(source)
    assert error.code == ERR_NGROK_2207
    assert error.message.startswith('on_http_request rule 1 ("later") action 0 (add-headers): ')
    assert "unreachable due to a prior terminating action" in error.message
    assert 'on_http_request rule 0 ("maintenance")' in error.message


def test_a_conditional_terminating_rule_leaves_later_rules_reachable() -> None:
    source = """\
on_http_request:
  - expressions: ["req.method == 'DELETE'"]
    actions: [{type: deny}]
  - actions: [{type: deny}]
"""
    assert len(validate(load_policy(source), protocol="http").on_http_request) == 2


def test_an_action_after_a_terminating_one_in_its_rule_is_unreachable() -> None:
    source = """\
on_tcp_connect:
  - expressions: ["conn.client_port > 0"]
    actions: [{type: close-connection}, {type: log, config: {metadata: {a: b}}}]
"""
    error = first_error(source, "tcp")
    assert error.code == ERR_NGROK_2207
    assert error.message.startswith("on_tcp_connect rule 0 action 1 (log): ")


def test_a_second_auth_action_is_2239() -> None:
    source = """\
on_http_request:
  - actions: [{type: basic-auth, config: {credentials: ["a:password1"]}}]
  - expressions: ["req.method == 'POST'"]
    actions: [{type: oauth, config: {provider: google}}]
"""
    error = first_error(source)
    assert error.code == ERR_NGROK_2239
    assert error.message.startswith("on_http_request rule 1 action 0 (oauth): ")
    assert "Only one auth action allowed per endpoint" in error.message


def test_validate_stops_at_the_first_error_and_check_collects_all() -> None:
    source = """\
on_http_request:
  - actions: [{type: frob}]
  - expressions: ["nope"]
    actions: [{type: deny, config: {status_code: 1}}]
on_http_response:
  - actions: [{type: rate-limit}]
"""
    policy = load_policy(source)
    with pytest.raises(PolicyError) as caught:
        validate(policy, protocol="https")
    assert caught.value.code == ERR_NGROK_2201
    codes = [error.code for error in check(policy, protocol="https")]
    assert codes == ["ERR_NGROK_2201", "ERR_NGROK_2200", "ERR_NGROK_2215", "ERR_NGROK_2202"]


@pytest.mark.parametrize(
    ("response_phase", "reads"),
    [
        ("[]", False),
        ("[{actions: [{type: remove-headers, config: {headers: [server]}}]}]", False),
        (
            "[{expressions: ['res.status_code == 200'], actions: [{type: add-headers,"
            " config: {headers: {x-a: '${req.method}-1'}}}]}]",
            False,
        ),
        (
            "[{actions: [{type: add-headers,"
            " config: {headers: {x-a: '${actions.ngrok.add_headers.headers_added}'}}}]}]",
            True,
        ),
        (
            "[{expressions: ['has(actions.ngrok.url_rewrite)'],"
            " actions: [{type: remove-headers, config: {headers: [server]}}]}]",
            True,
        ),
        ("[{actions: [{type: log, config: {metadata: {a: b}}}]}]", True),
        ("[{actions: [{type: custom-response, config: {status_code: 200}}]}]", True),
    ],
)
def test_the_response_phase_reads_the_result_variables_unless_it_cannot(
    response_phase: str, reads: bool
) -> None:
    text = f"on_http_request: []\non_http_response: {response_phase}\n"
    assert validate(load_policy(text), protocol="https").response_reads_results is reads
