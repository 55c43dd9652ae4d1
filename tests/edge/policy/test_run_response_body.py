"""compress-response and response-body-find-replace in the pure engine: their config schema
(edge/policy/actions.py) and what the response phase records for the shell
(edge/policy/run_response_body.py)."""

from __future__ import annotations

import pytest

from edge.policy.actions import COMPRESSION_ALGORITHMS, CompressResponseConfig
from edge.policy.activation import ResponseFacts
from edge.policy.engine import Respond, ResponseChanges, run_http_response
from edge.policy.errors import PolicyError
from edge.policy.ratelimit import PolicyState
from edge.policy.run_response_body import CompressStep, FindReplaceStep
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, policy, request


def on_response(text: str, *, path: str = "/") -> ResponseChanges | Respond:
    return run_http_response(
        policy(text),
        CONN,
        request(path, headers=(("X-Request-Id", "r-42"),)),
        ResponseFacts(status=200, headers=(("Content-Type", "text/plain"),)),
        endpoint=ENDPOINT,
        now=NOW,
        state=PolicyState(),
    )


def refusal(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        policy(text)
    return caught.value


# --- compress-response -----------------------------------------------------------------------
def test_compress_response_defaults_to_every_algorithm_this_edge_writes() -> None:
    compiled = policy("on_http_response: [{actions: [{type: compress-response}]}]")
    config = compiled.on_http_response[0].actions[0].config
    assert config == CompressResponseConfig(COMPRESSION_ALGORITHMS)
    assert COMPRESSION_ALGORITHMS == ("gzip", "deflate", "br")


def test_compress_response_keeps_the_operators_order() -> None:
    text = (
        "on_http_response: "
        "[{actions: [{type: compress-response, config: {algorithms: [br, gzip]}}]}]"
    )
    outcome = on_response(text)
    assert isinstance(outcome, ResponseChanges)
    assert outcome.body == (CompressStep(("br", "gzip")),)
    assert outcome.trace.rules[0].actions[0].result == "continued"


@pytest.mark.parametrize(
    ("algorithms", "code", "words"),
    [
        ("[gzip, compress]", "ERR_NGROK_2214", "does not write Unix compress"),
        ("[zstd]", "ERR_NGROK_2214", "Invalid compression algorithm 'zstd'"),
        ("[gzip, gzip]", "ERR_NGROK_2231", "duplicate values: gzip"),
        ("[]", "ERR_NGROK_2223", "cannot be empty"),
        ("gzip", "ERR_NGROK_2204", "must be a list"),
    ],
)
def test_compress_response_refuses_what_it_cannot_do(
    algorithms: str, code: str, words: str
) -> None:
    text = (
        "on_http_response: [{actions: [{type: compress-response, "
        f"config: {{algorithms: {algorithms}}}}}]}}]"
    )
    error = refusal(text)
    assert error.code == code
    assert words in error.message
    assert "config.algorithms" in error.message


def test_compress_response_refuses_unknown_fields_and_the_request_phase() -> None:
    unknown = refusal(
        "on_http_response: [{actions: [{type: compress-response, config: {level: 9}}]}]"
    )
    assert unknown.code == "ERR_NGROK_2203" and "'level'" in unknown.message
    phase = refusal("on_http_request: [{actions: [{type: compress-response}]}]")
    assert phase.code == "ERR_NGROK_2202"


# --- response-body-find-replace --------------------------------------------------------------
FIND_REPLACE = """
on_http_response:
  - actions:
      - type: response-body-find-replace
        config:
          replacements:
            - from: "error_code: ([0-9]+)"
              to: "error_code: HIDDEN"
            - from: "${'secret-' + 'token'}"
              to: "[REDACTED by ${req.headers['x-request-id'][0]}]"
            - from: "debug"
"""


def test_find_replace_renders_and_compiles_its_patterns_for_the_response() -> None:
    outcome = on_response(FIND_REPLACE)
    assert isinstance(outcome, ResponseChanges)
    [step] = outcome.body
    assert isinstance(step, FindReplaceStep)
    patterns = [(pattern.pattern, to) for pattern, to in step.replacements]
    assert patterns == [
        ("error_code: ([0-9]+)", "error_code: HIDDEN"),
        ("secret-token", "[REDACTED by r-42]"),
        ("debug", ""),  # `to` omitted: the match is deleted
    ]


def test_body_steps_keep_the_order_the_actions_ran() -> None:
    text = """
on_http_response:
  - actions:
      - type: compress-response
      - type: response-body-find-replace
        config: {replacements: [{from: a, to: b}]}
  - expressions: ["req.url.path == '/never'"]
    actions:
      - type: compress-response
        config: {algorithms: [gzip]}
"""
    outcome = on_response(text)
    assert isinstance(outcome, ResponseChanges)
    assert [type(step) for step in outcome.body] == [CompressStep, FindReplaceStep]


def test_a_rendered_pattern_that_is_not_a_regex_fails_the_request_with_2253() -> None:
    text = """
on_http_response:
  - actions:
      - type: response-body-find-replace
        config: {replacements: [{from: "${'(' + 'unclosed'}", to: x}]}
"""
    outcome = on_response(text)
    assert isinstance(outcome, Respond)
    assert (outcome.status, outcome.error_code) == (500, "ERR_NGROK_2253")


@pytest.mark.parametrize(
    ("config", "code", "words"),
    [
        ("{replacements: [{from: '(bad', to: x}]}", "ERR_NGROK_2261", "not a valid regular"),
        ("{replacements: []}", "ERR_NGROK_2204", "at least one"),
        ("{replacements: [{to: x}]}", "ERR_NGROK_2204", "from"),
        ("{replacements: [{from: a, with: b}]}", "ERR_NGROK_2203", "'with'"),
        ("{replacements: [{from: a}], max_size: 10}", "ERR_NGROK_2203", "'max_size'"),
    ],
)
def test_find_replace_refuses_bad_config(config: str, code: str, words: str) -> None:
    error = refusal(
        f"on_http_response: [{{actions: [{{type: response-body-find-replace, config: {config}}}]}}]"
    )
    assert error.code == code and words in error.message


def test_find_replace_belongs_to_the_response_phase() -> None:
    error = refusal(
        "on_http_request: [{actions: [{type: response-body-find-replace, "
        "config: {replacements: [{from: a}]}}]}]"
    )
    assert error.code == "ERR_NGROK_2202"


def test_a_response_phase_without_body_actions_has_no_body_steps() -> None:
    outcome = on_response(
        "on_http_response: [{actions: [{type: add-headers, config: {headers: {x-a: b}}}]}]"
    )
    assert isinstance(outcome, ResponseChanges) and outcome.body == ()
