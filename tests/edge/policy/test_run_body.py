"""edge/policy/run_body.py: verify-webhook and request-body-find-replace through the engine
(result variables, enforce on and off, 403 with ERR_NGROK_3204, replacements in order with
groups, bodies left alone), and their config validation (fields refused by name)."""

from __future__ import annotations

import hmac
from dataclasses import replace

import pytest

from edge.policy.activation import RequestFacts
from edge.policy.errors import ERR_NGROK_2201, ERR_NGROK_2203, ERR_NGROK_2204, PolicyError
from edge.policy.run_body import ERR_NGROK_3204
from tests.edge.policy.engine_helpers import NOW, forward, on_request, policy, request, respond

SECRET = "s3cret-for-tests"

VERIFY = """
on_http_request:
  - actions:
      - type: verify-webhook
        config:
          provider: github
          secret: "{secret}"
          enforce: {enforce}
      - type: add-headers
        config:
          headers:
            x-verified: "${{actions.ngrok.verify_webhook.verified}}"
"""


def signed(body: bytes, secret: str = SECRET) -> tuple[tuple[str, str], ...]:
    mac = hmac.new(secret.encode(), body, "sha256").hexdigest()
    return (("X-Hub-Signature-256", f"sha256={mac}"),)


def with_body(body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> RequestFacts:
    return replace(request("/hook", method="POST", headers=headers), body=body)


def test_verify_webhook_accepts_a_good_signature_and_records_it() -> None:
    body = b'{"zen":"Keep it logically awesome."}'
    req = with_body(body, signed(body))
    result = forward(on_request(VERIFY.format(secret=SECRET, enforce="true"), req))
    assert result.carried.results["verify_webhook"] == {
        "verified": True,
        "error": {"code": "", "message": ""},
    }
    assert ("x-verified", "true") in result.changes.headers.added
    assert result.changes.body is None  # verification never changes the body


def test_verify_webhook_refuses_a_tampered_body_with_403() -> None:
    body = b'{"zen":"x"}'
    req = with_body(body + b" ", signed(body))
    result = respond(on_request(VERIFY.format(secret=SECRET, enforce="true"), req))
    assert result.status == 403
    assert ("ngrok-error-code", ERR_NGROK_3204) in result.headers
    assert result.body.startswith(ERR_NGROK_3204.encode())
    assert result.carried.results["verify_webhook"]["verified"] is False
    assert result.carried.results["verify_webhook"]["error"]["code"] == ERR_NGROK_3204


def test_verify_webhook_enforce_false_records_and_forwards() -> None:
    req = with_body(b"{}", ())
    result = forward(on_request(VERIFY.format(secret=SECRET, enforce="false"), req))
    record = result.carried.results["verify_webhook"]
    assert record["verified"] is False
    assert "X-Hub-Signature-256" in record["error"]["message"]
    assert ("x-verified", "false") in result.changes.headers.added


def test_verify_webhook_secret_is_interpolated() -> None:
    text = """
on_http_request:
  - actions:
      - type: set-vars
        config:
          vars:
            - key: s3cret-for-tests
      - type: verify-webhook
        config:
          provider: github
          secret: "${vars.key}"
"""
    body = b"payload"
    assert forward(on_request(text, with_body(body, signed(body)))).changes
    assert respond(on_request(text, with_body(body, signed(body, "no")))).status == 403


def test_verify_webhook_stale_timestamp_uses_now() -> None:
    text = """
on_http_request:
  - actions:
      - type: verify-webhook
        config: {provider: slack, secret: abc}
"""
    stamp = int(NOW) - 400
    base = b"v0:" + str(stamp).encode() + b":" + b"body"
    headers = (
        ("X-Slack-Request-Timestamp", str(stamp)),
        ("X-Slack-Signature", "v0=" + hmac.new(b"abc", base, "sha256").hexdigest()),
    )
    assert respond(on_request(text, with_body(b"body", headers))).status == 403
    assert forward(on_request(text, with_body(b"body", headers), now=stamp + 10))


@pytest.mark.parametrize(
    ("config", "code", "field"),
    [
        ("{provider: bitbucket, secret: x}", ERR_NGROK_2204, "provider"),
        ("{provider: github}", ERR_NGROK_2204, "secret"),
        ("{provider: github, secret: ''}", ERR_NGROK_2204, "secret"),
        ("{provider: github, secret: x, tolerance: 5}", ERR_NGROK_2203, "tolerance"),
    ],
)
def test_verify_webhook_config_refused_by_name(config: str, code: str, field: str) -> None:
    text = f"on_http_request: [{{actions: [{{type: verify-webhook, config: {config}}}]}}]"
    with pytest.raises(PolicyError) as raised:
        policy(text)
    assert raised.value.code == code
    assert field in str(raised.value)


def test_verify_webhook_not_allowed_in_response_phase() -> None:
    config = "{provider: github, secret: x}"
    text = f"on_http_response: [{{actions: [{{type: verify-webhook, config: {config}}}]}}]"
    with pytest.raises(PolicyError):
        policy(text)


# --- request-body-find-replace ---------------------------------------------------------------
REPLACE = """
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: "api_key=([a-zA-Z0-9]+)"
              to: "api_key=REDACTED"
            - from: "(alice|bob)"
              to: "user:$1"
            - from: "REDACTED"
"""


def test_find_replace_applies_rules_in_order_with_groups() -> None:
    req = with_body(b"api_key=abc123&name=alice&x=bob", ())
    result = forward(on_request(REPLACE, req))
    assert result.changes.body == b"api_key=&name=user:alice&x=user:bob"


def test_find_replace_leaves_unmatched_binary_and_encoded_bodies_alone() -> None:
    assert forward(on_request(REPLACE, with_body(b"nothing here", ()))).changes.body is None
    binary = b"\xff\xfeapi_key=abc"
    assert forward(on_request(REPLACE, with_body(binary, ()))).changes.body is None
    gz = with_body(b"api_key=abc", (("Content-Encoding", "gzip"),))
    assert forward(on_request(REPLACE, gz)).changes.body is None


def test_find_replace_content_length_seen_by_later_rules() -> None:
    text = (
        REPLACE
        + """
  - expressions: ["req.content_length == 35"]
    actions:
      - type: add-headers
        config: {headers: {x-len: "${string(req.content_length)}"}}
"""
    )
    req = with_body(b"api_key=abc123&name=alice&x=bob", ())
    result = forward(on_request(text, req))
    assert result.changes.body is not None and len(result.changes.body) == 35
    assert ("x-len", "35") in result.changes.headers.added


def test_find_replace_templated_pattern_is_interpolated() -> None:
    text = """
on_http_request:
  - actions:
      - type: request-body-find-replace
        config:
          replacements:
            - from: "${req.url.query_params['word'][0]}"
              to: "***"
"""
    req = replace(request("/", query="word=secret", method="POST"), body=b"a secret b secret")
    assert forward(on_request(text, req)).changes.body == b"a *** b ***"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ("{}", "replacements"),
        ("{replacements: []}", "replacements"),
        ("{replacements: [{to: x}]}", "replacements[0].from"),
        ("{replacements: [{from: x, to: 3}]}", "replacements[0].to"),
        ("{replacements: [{from: x, with: y}]}", "replacements[0].with"),
        ("{replacements: [{from: '(', to: y}]}", "replacements[0].from"),
    ],
)
def test_find_replace_config_refused_by_name(config: str, field: str) -> None:
    action = f"{{type: request-body-find-replace, config: {config}}}"
    text = f"on_http_request: [{{actions: [{action}]}}]"
    with pytest.raises(PolicyError) as raised:
        policy(text)
    assert raised.value.code != ERR_NGROK_2201
    assert field in str(raised.value)


def test_only_policies_with_body_actions_read_the_body() -> None:
    assert policy(REPLACE).reads_request_body
    assert policy(VERIFY.format(secret="x", enforce="true")).reads_request_body
    plain = "on_http_request: [{actions: [{type: deny}]}]"
    assert not policy(plain).reads_request_body


def test_a_body_the_shell_did_not_read_is_a_coded_500_not_an_empty_body() -> None:
    for text in (REPLACE, VERIFY.format(secret=SECRET, enforce="false")):
        result = respond(on_request(text, request("/hook", method="POST")))
        assert (result.status, result.error_code) == (500, "ERR_NGROK_2300")
        assert "was not read" in str(result.logs[-1].metadata["message"])
