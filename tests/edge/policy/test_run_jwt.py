"""edge/policy/run_jwt.py: jwt-validation through the engine, with keys placed in the policy's
state as the fetcher would: a valid token is forwarded with its result variables; a missing,
tampered or expired token gets 401 with ngrok's/RFC 6750's WWW-Authenticate; no keys yet gets
503 (never forwarded); every configured token must be present."""

from __future__ import annotations

import json
from dataclasses import replace

from edge.policy.activation import RequestFacts
from edge.policy.engine import Close, Forward, Respond, run_http_request
from edge.policy.jwk import parse_jwks
from edge.policy.ratelimit import PolicyState
from edge.policy.run_jwt import ERR_NGROK_3406, ERR_NGROK_7186, INVALID_TOKEN, KEYS_RETRY_AFTER
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, forward, policy, request, respond
from tests.edge.policy.jwt_helpers import (
    AUDIENCE,
    ISSUER,
    b64url,
    claims,
    key_for,
    public_jwk,
    sign,
)

JWKS = "https://idp.example.com/.well-known/jwks.json"
OTHER = "https://idp2.example.com/jwks"

POLICY = f"""
on_http_request:
  - actions:
      - type: jwt-validation
        config:
          issuer: {{allow_list: [{{value: "{ISSUER}"}}]}}
          audience: {{allow_list: [{{value: "{AUDIENCE}"}}]}}
          http:
            tokens:
              - {{type: access_token, method: header, name: Authorization, prefix: "Bearer "}}
          jws:
            allowed_algorithms: [RS256, ES256]
            keys: {{sources: {{additional_jkus: ["{JWKS}", "{OTHER}"]}}}}
  - expressions: ["actions.ngrok.jwt_validation.tokens[0].payload.sub == 'user-1'"]
    actions:
      - type: add-headers
        config: {{headers: {{x-user: "${{actions.ngrok.jwt_validation.tokens[0].payload.sub}}"}}}}
"""


def state_with_keys(url: str = JWKS, *, until: float = NOW + 60) -> PolicyState:
    state = PolicyState()
    document = {"keys": [public_jwk(key_for("RS256"), "k1"), public_jwk(key_for("ES256"), "k2")]}
    state.jwks.put(url, parse_jwks(json.dumps(document).encode()), now=NOW, usable_until=until)
    return state


def on_request(text: str, req: RequestFacts, *, state: PolicyState) -> Forward | Respond | Close:
    # Not engine_helpers.on_request: its `state or PolicyState()` would replace a state that
    # holds keys but no rate-limit bucket (an empty PolicyState is falsy: its len() is 0).
    return run_http_request(policy(text), CONN, req, endpoint=ENDPOINT, now=NOW, state=state)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {token}"),)


def test_a_valid_token_is_forwarded_with_result_variables() -> None:
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    outcome = forward(on_request(POLICY, request(headers=bearer(token)), state=state_with_keys()))
    result = outcome.carried.results["jwt_validation"]
    assert result["error"] == {"code": "", "message": ""}
    [var] = result["tokens"]
    assert var["verified"] is True
    assert var["payload"]["sub"] == "user-1" and var["header"]["kid"] == "k1"
    assert var["signature"] == token.split(".")[2]
    assert (var["location"], var["location_property"]) == ("header", "Authorization")
    # A later rule reads the result variables (ngrok: custom validation through them).
    assert outcome.changes.headers.added == (("x-user", "user-1"),)


def test_keys_from_any_of_the_urls_verify() -> None:
    token = sign(key_for("ES256"), "ES256", claims(NOW), kid="k2")
    outcome = on_request(POLICY, request(headers=bearer(token)), state=state_with_keys(OTHER))
    assert forward(outcome).carried.results["jwt_validation"]["tokens"][0]["verified"]


def test_a_missing_token_gets_401_bearer_and_3406() -> None:
    answer = respond(on_request(POLICY, request(), state=state_with_keys()))
    assert answer.status == 401
    assert ("www-authenticate", "Bearer") in answer.headers
    assert answer.body.startswith(ERR_NGROK_3406.encode())
    assert answer.carried.results["jwt_validation"]["error"]["code"] == ERR_NGROK_3406


def test_a_header_without_the_prefix_or_twice_counts_as_missing() -> None:
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    basic = request(headers=(("Authorization", f"Basic {token}"),))
    assert respond(on_request(POLICY, basic, state=state_with_keys())).status == 401
    twice = request(headers=bearer(token) + bearer(token))
    assert respond(on_request(POLICY, twice, state=state_with_keys())).status == 401
    # The prefix is matched without regard to case, as auth schemes are.
    lower = request(headers=(("authorization", f"bearer {token}"),))
    assert forward(on_request(POLICY, lower, state=state_with_keys()))


def test_a_tampered_token_gets_401_invalid_token() -> None:
    head, _, signature = sign(key_for("RS256"), "RS256", claims(NOW)).split(".")
    forged = b64url(json.dumps(claims(NOW, sub="admin")).encode())
    outcome = on_request(
        POLICY, request(headers=bearer(f"{head}.{forged}.{signature}")), state=state_with_keys()
    )
    answer = respond(outcome)
    assert answer.status == 401
    challenge = dict(answer.headers)["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert "signature is not valid" in challenge
    result = answer.carried.results["jwt_validation"]
    assert result["error"]["code"] == INVALID_TOKEN
    assert result["tokens"][0]["verified"] is False
    assert result["tokens"][0]["payload"]["sub"] == "admin"  # shown, but not verified


def test_an_expired_token_gets_401() -> None:
    token = sign(key_for("RS256"), "RS256", claims(NOW, exp=int(NOW) - 3600))
    answer = respond(on_request(POLICY, request(headers=bearer(token)), state=state_with_keys()))
    assert answer.status == 401 and "expired" in dict(answer.headers)["www-authenticate"]


def test_a_token_with_quotes_in_its_reason_cannot_break_the_header() -> None:
    header = b64url(json.dumps({"alg": 'RS"\r\n', "kid": "k1"}).encode())
    token = f"{header}.{b64url(b'{}')}.{b64url(b'sig')}"
    answer = respond(on_request(POLICY, request(headers=bearer(token)), state=state_with_keys()))
    challenge = dict(answer.headers)["www-authenticate"]
    assert challenge.count('"') == 4 and "\r" not in challenge and "\n" not in challenge


def test_without_keys_requests_get_503_and_are_never_forwarded() -> None:
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    answer = respond(on_request(POLICY, request(headers=bearer(token)), state=PolicyState()))
    assert answer.status == 503
    assert ("retry-after", str(KEYS_RETRY_AFTER)) in answer.headers
    assert answer.body.startswith(ERR_NGROK_7186.encode())
    # Keys that are too old count as none.
    stale = state_with_keys(until=NOW)
    assert respond(on_request(POLICY, request(headers=bearer(token)), state=stale)).status == 503


def test_a_missing_token_is_401_even_before_keys_arrive() -> None:
    assert respond(on_request(POLICY, request(), state=PolicyState())).status == 401


def test_every_configured_token_must_be_present_and_valid() -> None:
    first = '{type: access_token, method: header, name: Authorization, prefix: "Bearer "}\n'
    two = POLICY.replace(
        first, first + "              - {type: id_token, method: header, name: X-Id-Token}\n"
    )
    assert two != POLICY
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    only_one = request(headers=bearer(token))
    assert respond(on_request(two, only_one, state=state_with_keys())).status == 401
    both = request(headers=(*bearer(token), ("X-Id-Token", token)))
    outcome = forward(on_request(two, both, state=state_with_keys()))
    assert len(outcome.carried.results["jwt_validation"]["tokens"]) == 2
    bad_second = request(headers=(*bearer(token), ("X-Id-Token", token + "x")))
    assert respond(on_request(two, bad_second, state=state_with_keys())).status == 401


# --- tokens in the body (method: body) ---------------------------------------------------------
BODY_POLICY = POLICY.replace(
    '{type: access_token, method: header, name: Authorization, prefix: "Bearer "}',
    "{type: id_token, method: body, name: _id_token}",
)


def posted(body: bytes | None, content_type: str, method: str = "POST") -> RequestFacts:
    return replace(
        request(method=method, headers=(("Content-Type", content_type),)),
        body=body,
        content_length=None if body is None else len(body),
    )


def test_a_body_token_is_read_from_a_json_object_or_a_form() -> None:
    assert BODY_POLICY != POLICY
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    as_json = posted(json.dumps({"_ID_Token": token, "x": 1}).encode(), "application/json")
    result = forward(on_request(BODY_POLICY, as_json, state=state_with_keys()))
    [var] = result.carried.results["jwt_validation"]["tokens"]
    assert var["verified"] is True
    assert (var["location"], var["location_property"]) == ("body", "_id_token")
    form = posted(f"a=1&_id_token={token}".encode(), "application/x-www-form-urlencoded; a=b")
    assert forward(on_request(BODY_POLICY, form, state=state_with_keys()))
    put = replace(form, method="PUT")
    assert forward(on_request(BODY_POLICY, put, state=state_with_keys()))


def test_a_body_token_elsewhere_counts_as_missing() -> None:
    token = sign(key_for("RS256"), "RS256", claims(NOW))
    good = json.dumps({"_id_token": token}).encode()
    cases = [
        posted(good, "application/json", method="GET"),  # ngrok reads POST, PUT and PATCH
        posted(good, "text/plain"),  # neither JSON nor a form
        posted(b"{not json", "application/json"),
        posted(b"[1, 2]", "application/json"),  # not an object
        posted(json.dumps({"_id_token": 5}).encode(), "application/json"),  # not a string
        posted(
            f"_id_token={token}&_id_token={token}".encode(), "application/x-www-form-urlencoded"
        ),
        posted(b"\xff\xfe", "application/x-www-form-urlencoded"),  # not UTF-8
        posted(b"[" * 100_000 + b"]" * 100_000, "application/json"),  # deeper than json parses
    ]
    for case in cases:
        answer = respond(on_request(BODY_POLICY, case, state=state_with_keys()))
        assert answer.status == 401, case
        assert (
            answer.body
            == (
                f"{ERR_NGROK_3406}: Token could not be found in request (body field _id_token).\n"
            ).encode()
        )


def test_a_body_token_in_a_body_the_shell_did_not_read_is_a_coded_500() -> None:
    answer = respond(on_request(BODY_POLICY, posted(None, "application/json"), state=PolicyState()))
    assert (answer.status, answer.error_code) == (500, "ERR_NGROK_2300")
    assert "was not read" in str(answer.logs[-1].metadata["message"])
