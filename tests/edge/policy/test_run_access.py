"""edge/policy/run_access.py: restrict-ips, basic-auth and rate-limit, run through the engine
(their doc examples, enforce on and off, refusals and runtime failures), and the pure
`parse_basic_credentials`.
"""

from __future__ import annotations

import base64

import pytest

from edge.policy.activation import ConnFacts
from edge.policy.engine import Close, Forward, Respond, run_http_request, run_tcp_connect
from edge.policy.errors import ERR_NGROK_2253
from edge.policy.ratelimit import PolicyState
from edge.policy.run_access import parse_basic_credentials
from tests.edge.policy.engine_helpers import (
    CONN,
    ENDPOINT,
    NOW,
    forward,
    on_request,
    policy,
    request,
    respond,
)

# --- restrict-ips ----------------------------------------------------------------------------
RESTRICT = """
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: {enforce}
          allow: [203.0.113.0/24, "2001:db8::/32"]
          deny: [203.0.113.66/32]
"""


@pytest.mark.parametrize(
    ("ip", "allowed", "matched"),
    [
        ("203.0.113.9", True, "203.0.113.0/24"),
        ("203.0.113.66", False, "203.0.113.66/32"),
        ("198.51.100.1", False, ""),
        ("2001:db8::1", True, "2001:db8::/32"),
        ("::ffff:203.0.113.9", True, "203.0.113.0/24"),
    ],
)
def test_restrict_ips_allow_and_deny(ip: str, allowed: bool, matched: str) -> None:
    conn = ConnFacts(client_ip=ip, client_port=1, server_ip="192.0.2.1", server_port=443)
    result = on_request(RESTRICT.format(enforce="true"), conn=conn)
    if allowed:
        assert forward(result).carried.results["restrict_ips"]["matched_cidr"] == matched
    else:
        assert respond(result).status == 403
        assert respond(result).trace.rules[0].actions[0].result == "responded 403"


def test_restrict_ips_enforce_false_records_and_lets_through_doc_example() -> None:
    text = """
on_http_request:
  - actions:
      - type: restrict-ips
        config:
          enforce: false
          allow: [1.1.1.1/32]
      - type: log
        config:
          metadata:
            message: Restrict IPs action would be ${actions.ngrok.restrict_ips.action}
              for ${conn.client_ip}.
            matched_cidr: ${actions.ngrok.restrict_ips.matched_cidr}
            error_code: ${actions.ngrok.restrict_ips.error.code}
"""
    result = forward(on_request(text))
    (record,) = result.logs
    assert record.error_code is None
    assert record.metadata == {
        "message": "Restrict IPs action would be deny for 203.0.113.9.",
        "matched_cidr": "",
        "error_code": "",
    }
    assert result.carried.results["restrict_ips"]["action"] == "deny"


def test_restrict_ips_on_tcp_connect_closes() -> None:
    text = "on_tcp_connect: [{actions: [{type: restrict-ips, config: {deny: [203.0.113.0/24]}}]}]"
    result = run_tcp_connect(
        policy(text, "tcp"), CONN, endpoint=ENDPOINT, now=NOW, state=PolicyState()
    )
    assert isinstance(result, Close)
    assert result.reason == "restrict-ips"


def test_restrict_ips_templated_cidr_that_is_not_one_is_2253() -> None:
    text = """
on_http_request:
  - actions:
      - type: restrict-ips
        config: {allow: ["${req.headers['x-net'][0]}"]}
"""
    assert respond(on_request(text, request(headers=(("x-net", "nope"),)))).error_code == (
        ERR_NGROK_2253
    )
    allowed = on_request(text, request(headers=(("x-net", "203.0.113.0/24"),)))
    assert isinstance(allowed, Forward)


# --- basic-auth ------------------------------------------------------------------------------
BASIC = """
on_http_request:
  - actions:
      - type: basic-auth
        config:
          realm: sample-realm
          credentials:
            - user:password1
            - admin:password2
          enforce: {enforce}
      - type: custom-response
        config:
          status_code: 200
          headers:
            content-type: text/plain
          body: "${{actions.ngrok.basic_auth.credentials.username}}
            authorized=${{actions.ngrok.basic_auth.credentials.authorized}}"
"""


def basic(user_pass: str) -> tuple[tuple[str, str], ...]:
    return (("Authorization", "Basic " + base64.b64encode(user_pass.encode()).decode()),)


def test_basic_auth_good_credentials_doc_example() -> None:
    result = respond(
        on_request(BASIC.format(enforce="true"), request(headers=basic("admin:password2")))
    )
    assert (result.status, result.body) == (200, b"admin authorized=true")


@pytest.mark.parametrize(
    "headers",
    [
        (),  # missing
        basic("admin:password1"),  # another user's password
        basic("nobody:password1"),
        (("Authorization", "Basic not-base64!"),),  # malformed
        (("Authorization", "Basic " + base64.b64encode(b"no-colon").decode()),),
        (("Authorization", "Bearer abc"),),
        basic("user:password1") + basic("user:password1"),  # two Authorization headers
    ],
)
def test_basic_auth_refuses_bad_missing_and_malformed(headers: tuple[tuple[str, str], ...]) -> None:
    result = respond(on_request(BASIC.format(enforce="true"), request(headers=headers)))
    assert result.status == 401
    assert result.headers == (("www-authenticate", 'Basic realm="sample-realm", charset="UTF-8"'),)


def test_basic_auth_scheme_is_case_insensitive_and_password_may_hold_colons() -> None:
    text = """
on_http_request:
  - actions:
      - type: basic-auth
        config: {credentials: ["ops:pa:ss:word"]}
"""
    token = base64.b64encode(b"ops:pa:ss:word").decode()
    assert isinstance(
        on_request(text, request(headers=(("authorization", f"bAsIc {token}"),))), Forward
    )


def test_basic_auth_enforce_false_records_and_lets_through() -> None:
    result = respond(
        on_request(BASIC.format(enforce="false"), request(headers=basic("user:wrongpass")))
    )
    assert (result.status, result.body) == (200, b"user authorized=false")
    assert result.carried.results["basic_auth"] == {
        "credentials": {"presented": True, "username": "user", "authorized": False}
    }


# --- rate-limit ------------------------------------------------------------------------------
RATE = """
on_http_request:
  - actions:
      - type: rate-limit
        config:
          name: Only allow 3 requests per minute
          algorithm: sliding_window
          capacity: 3
          rate: 60s
          enforce: {enforce}
          bucket_key:
            - 'hasReqHeader(''x-api-key'') ? getReqHeader(''x-api-key'')[0] : ''unknown'''
"""


def test_rate_limit_window_with_an_injected_clock() -> None:
    compiled = policy(RATE.format(enforce="true"))
    state = PolicyState()
    start = 1_714_564_800.0  # a multiple of 60: the start of a window

    def at(now: float, key: str = "k1") -> Forward | Respond | Close:
        req = request(headers=(("x-api-key", key),))
        return run_http_request(compiled, CONN, req, endpoint=ENDPOINT, now=now, state=state)

    for second in (0, 1, 2):
        assert isinstance(at(start + second), Forward)
    limited = respond(at(start + 3))
    assert limited.status == 429
    # In the next window the 3 weigh 3 * (1 - f); at f = 1/3 (second 80) they weigh 2.
    assert limited.headers == (("retry-after", "77"),)
    assert limited.carried.results["rate_limit"] == {
        "bucket_key": "k1",
        "limited": True,
        "error": {"code": "", "message": ""},
    }
    assert isinstance(at(start + 3, key="k2"), Forward)  # another bucket
    # Halfway through the next window the previous 3 count as 1.5: one more fits.
    assert isinstance(at(start + 90), Forward)
    assert respond(at(start + 91)).status == 429
    # Once a whole window has passed with nothing counted, all 3 fit again, and only 3.
    for offset in (300, 301, 302):
        assert isinstance(at(start + offset), Forward)
    assert respond(at(start + 303)).status == 429


def test_rate_limit_enforce_false_only_records() -> None:
    compiled = policy(RATE.format(enforce="false"))
    state = PolicyState()
    outcomes = [
        run_http_request(compiled, CONN, request(), endpoint=ENDPOINT, now=NOW, state=state)
        for _ in range(5)
    ]
    assert all(isinstance(outcome, Forward) for outcome in outcomes)
    last = forward(outcomes[-1])
    assert last.carried.results["rate_limit"]["limited"] is True
    assert last.carried.results["rate_limit"]["bucket_key"] == "unknown"


def test_rate_limit_bucket_key_that_fails_is_2253() -> None:
    text = RATE.format(enforce="true").replace(
        "'hasReqHeader(''x-api-key'') ? getReqHeader(''x-api-key'')[0] : ''unknown'''",
        "req.headers['x-api-key'][0]",
    )
    assert respond(on_request(text)).error_code == ERR_NGROK_2253


# --- parse_basic_credentials (pure) ----------------------------------------------------------
def authorization(value: str) -> tuple[tuple[str, str], ...]:
    return (("Host", "api.example.com"), ("Authorization", value), ("Accept", "*/*"))


def encoded(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"user:password1", ("user", "password1")),
        (b"ops:pa:ss:word", ("ops", "pa:ss:word")),  # the first colon splits (RFC 7617)
        (b":", ("", "")),  # empty name and password are still credentials
        ("jürgen:pässwörd".encode(), ("jürgen", "pässwörd")),  # UTF-8
    ],
)
def test_parse_basic_credentials_decodes_name_and_password(
    raw: bytes, expected: tuple[str, str]
) -> None:
    assert parse_basic_credentials(authorization("Basic " + encoded(raw))) == expected


@pytest.mark.parametrize("value", ["basic {}", "BASIC {}", "  Basic   {}  "])
def test_parse_basic_credentials_scheme_case_and_whitespace(value: str) -> None:
    headers = (("aUtHoRiZaTiOn", value.format(encoded(b"a:b"))),)
    assert parse_basic_credentials(headers) == ("a", "b")


@pytest.mark.parametrize(
    "headers",
    [
        (),  # no Authorization at all
        (("Host", "api.example.com"),),
        authorization("Bearer " + encoded(b"a:b")),  # another scheme
        authorization("Basic"),  # no token
        authorization("Basic not-base64!"),
        authorization("Basic " + encoded(b"a:b")[:-1]),  # bad padding
        authorization("Basic " + encoded(b"no-colon")),
        authorization("Basic " + encoded(b"\xff\xfe:x")),  # not UTF-8
        authorization("Basic " + encoded(b"a:b")) + authorization("Basic " + encoded(b"a:b")),
    ],
)
def test_parse_basic_credentials_refuses_missing_malformed_and_repeated(
    headers: tuple[tuple[str, str], ...],
) -> None:
    assert parse_basic_credentials(headers) is None
