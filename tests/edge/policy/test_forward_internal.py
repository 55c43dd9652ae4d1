"""Tests for edge/policy/forward_internal.py: the action's config, the URLs it may name, what it
does when it runs (through the engine), and the chain check. Pure: no sockets, no clock."""

from __future__ import annotations

import pytest

from edge.policy.activation import ConnFacts, EndpointFacts
from edge.policy.document import load_policy
from edge.policy.engine import (
    Close,
    Continue,
    ForwardInternal,
    run_http_request,
    run_tcp_connect,
)
from edge.policy.errors import PolicyError
from edge.policy.forward_internal import (
    ERR_NGROK_3200,
    ERR_NGROK_3501,
    ForwardCheck,
    candidate_urls,
    chain_check,
    target_url,
)
from edge.policy.ratelimit import PolicyState
from edge.policy.validate import CompiledPolicy, validate
from tests.edge.policy.engine_helpers import CONN, ENDPOINT, NOW, policy, request, respond

TLS_ENDPOINT = EndpointFacts(
    url="tls://db.example.com", host="db.example.com", port=443, protocol="tls", id="ep_2"
)


def refused(text: str, protocol: str = "https") -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        validate(load_policy(text), protocol=protocol)
    return caught.value


def on_request(text: str, check: ForwardCheck | None = None) -> object:
    return run_http_request(
        policy(text), CONN, request(), endpoint=ENDPOINT, now=NOW, state=PolicyState(),
        forward_check=check,
    )  # fmt: skip


def on_connect(
    compiled: CompiledPolicy, check: ForwardCheck | None, conn: ConnFacts = CONN
) -> object:
    return run_tcp_connect(
        compiled, conn, endpoint=TLS_ENDPOINT, now=NOW, state=PolicyState(), forward_check=check
    )


FORWARD_API = """
on_http_request:
  - actions:
      - type: forward-internal
        config: {url: "https://api.clinic-a.internal:443"}
"""


# --- the URLs it may name ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "phase", "canonical"),
    [
        ("https://api.clinic-a.internal", "on_http_request", "https://api.clinic-a.internal"),
        ("https://api.clinic-a.internal:443", "on_http_request", "https://api.clinic-a.internal"),
        ("http://svc.internal:1234", "on_http_request", "http://svc.internal:1234"),
        ("api.clinic-a.internal", "on_http_request", "https://api.clinic-a.internal"),
        ("tls://db.clinic-a.internal:5432", "on_tcp_connect", "tls://db.clinic-a.internal:5432"),
        ("TCP://DB.Clinic-A.internal:5432", "on_tcp_connect", "tcp://db.clinic-a.internal:5432"),
    ],
)
def test_target_url_gives_the_registry_key(text: str, phase: str, canonical: str) -> None:
    assert target_url(text, phase) == canonical


@pytest.mark.parametrize(
    ("text", "phase", "why"),
    [
        ("https://api.example.com", "on_http_request", ".internal"),
        ("tls://db.clinic-a.internal:5432", "on_http_request", "same protocol"),
        ("https://api.clinic-a.internal", "on_tcp_connect", "same protocol"),
        ("tcp://db.clinic-a.internal", "on_tcp_connect", "needs a port"),
        ("https://*.clinic-a.internal", "on_http_request", "wildcard"),
        ("https://", "on_http_request", "needs a host"),
        ("https://api.clinic-a.internal/path", "on_http_request", "path"),
        ("https://a.b.c.d.e.internal", "on_http_request", "at most 5"),
    ],
)
def test_target_url_refuses_what_forward_internal_cannot_reach(
    text: str, phase: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        target_url(text, phase)


# --- the config -------------------------------------------------------------------------------
def test_a_static_url_is_checked_at_load_with_the_field_named() -> None:
    error = refused(FORWARD_API.replace("https://api.clinic-a.internal:443", "https://x.com"))
    assert error.code == "ERR_NGROK_2204"
    assert "config.url" in str(error.place) and ".internal" in error.message


def test_an_http_phase_cannot_forward_to_a_tls_endpoint() -> None:
    text = FORWARD_API.replace("https://api.clinic-a.internal:443", "tls://db.x.internal:5432")
    assert "same protocol" in refused(text).message


def test_on_error_must_be_halt_or_continue_and_url_is_required() -> None:
    bad = FORWARD_API.replace('"}', '", on_error: retry}')
    assert "on_error" in str(refused(bad).place)
    missing = "on_http_request:\n  - actions: [{type: forward-internal, config: {}}]\n"
    assert "config.url" in str(refused(missing).place)


def test_the_legacy_binding_field_is_accepted_only_as_internal() -> None:
    ok = FORWARD_API.replace('"}', '", binding: internal}')
    validate(load_policy(ok), protocol="https")
    bad = FORWARD_API.replace('"}', '", binding: public}')
    assert "binding" in str(refused(bad).place)


def test_unknown_fields_are_refused() -> None:
    bad = FORWARD_API.replace('"}', '", endpoint_selectors: [x]}')
    assert refused(bad).code == "ERR_NGROK_2203"


def test_halt_ends_the_rule_so_an_action_after_it_is_2207_but_continue_does_not() -> None:
    after = """
on_http_request:
  - actions:
      - type: forward-internal
        config: {url: "https://a.internal"%s}
      - type: custom-response
        config: {status_code: 503}
"""
    assert refused(after % "").code == "ERR_NGROK_2207"
    validate(load_policy(after % ", on_error: continue"), protocol="https")


def test_it_is_not_allowed_in_the_response_phase() -> None:
    text = "on_http_response:\n  - actions: [{type: forward-internal, config: {url: a.internal}}]\n"
    assert refused(text).code == "ERR_NGROK_2202"


# --- running it -------------------------------------------------------------------------------
def test_a_forward_ends_the_request_phase_with_the_changes_made_before_it() -> None:
    text = """
on_http_request:
  - expressions: ["true"]
    actions:
      - type: add-headers
        config: {headers: {x-from: public}}
      - type: forward-internal
        config: {url: "https://c${conn.client_port}.internal"}
  - actions:
      - type: custom-response
        config: {status_code: 500}
"""
    asked: list[str] = []

    def check(url: str) -> tuple[str, str] | None:
        asked.append(url)
        return None

    outcome = run_http_request(
        policy(text), CONN, request("/clinic-a"), endpoint=ENDPOINT, now=NOW,
        state=PolicyState(), forward_check=check,
    )  # fmt: skip
    assert isinstance(outcome, ForwardInternal)
    assert outcome.url == "https://c50123.internal" and outcome.error is None
    assert asked == ["https://c50123.internal"]
    assert outcome.changes.headers.added == (("x-from", "public"),)
    assert outcome.trace.rules[0].actions[1].result == "forwarded to https://c50123.internal"
    assert len(outcome.trace.rules) == 1  # the second rule never ran


def test_without_a_check_the_forward_is_named_unchecked() -> None:
    outcome = on_request(FORWARD_API)
    assert isinstance(outcome, ForwardInternal)
    assert (outcome.url, outcome.error) == ("https://api.clinic-a.internal", None)


def test_halt_fails_the_request_with_the_checks_code() -> None:
    outcome = on_request(FORWARD_API, lambda url: (ERR_NGROK_3200, f"{url} is offline"))
    assert isinstance(outcome, ForwardInternal)
    assert outcome.error == (ERR_NGROK_3200, "https://api.clinic-a.internal is offline")
    assert outcome.trace.rules[0].actions[0].result.startswith("failed ERR_NGROK_3200")


def test_continue_sets_the_result_variables_and_runs_the_next_rules() -> None:
    text = """
on_http_request:
  - actions:
      - type: forward-internal
        config: {url: "https://api.clinic-a.internal", on_error: continue}
  - expressions: ["actions.ngrok.forward_internal.error.code == 'ERR_NGROK_3200'"]
    actions:
      - type: custom-response
        config:
          status_code: 503
          body: >-
            ${actions.ngrok.forward_internal.url}: ${actions.ngrok.forward_internal.error.message}
"""
    answer = respond(on_request(text, lambda url: (ERR_NGROK_3200, "it is offline")))
    assert answer.status == 503
    assert answer.body == b"https://api.clinic-a.internal: it is offline"


def test_continue_falls_through_to_a_second_target() -> None:
    text = """
on_http_request:
  - actions:
      - type: forward-internal
        config: {url: "https://one.internal", on_error: continue}
      - type: forward-internal
        config: {url: "https://two.internal"}
"""
    outcome = on_request(text, lambda url: None if "two" in url else (ERR_NGROK_3200, "offline"))
    assert isinstance(outcome, ForwardInternal)
    assert (outcome.url, outcome.error) == ("https://two.internal", None)


def test_a_url_rendered_into_no_internal_endpoint_fails_with_2204() -> None:
    text = FORWARD_API.replace("https://api.clinic-a.internal:443", "https://${req.host}")
    outcome = on_request(text, lambda url: None)
    assert isinstance(outcome, ForwardInternal)
    assert outcome.error is not None and outcome.error[0] == "ERR_NGROK_2204"
    assert ".internal" in outcome.error[1]


def test_on_tcp_connect_hands_the_connection_on_or_closes_or_continues() -> None:
    text = """
on_tcp_connect:
  - actions:
      - type: forward-internal
        config: {url: "tls://db.clinic-a.internal:5432"%s}
"""
    halt = validate(load_policy(text % ""), protocol="tls")
    handed = on_connect(halt, lambda url: None)
    assert isinstance(handed, ForwardInternal)
    assert (handed.url, handed.error) == ("tls://db.clinic-a.internal:5432", None)
    failed = on_connect(halt, lambda url: (ERR_NGROK_3501, "too long"))
    assert isinstance(failed, ForwardInternal) and failed.error == (ERR_NGROK_3501, "too long")
    going_on = validate(load_policy(text % ", on_error: continue"), protocol="tls")
    assert isinstance(on_connect(going_on, lambda url: (ERR_NGROK_3200, "offline")), Continue)


def test_a_tcp_policy_may_refuse_before_it_forwards() -> None:
    text = """
on_tcp_connect:
  - actions:
      - type: restrict-ips
        config: {allow: [10.0.0.0/8]}
      - type: forward-internal
        config: {url: "tls://db.clinic-a.internal:5432"}
"""
    compiled = validate(load_policy(text), protocol="tls")
    assert isinstance(on_connect(compiled, lambda url: None), Close)  # CONN is 203.0.113.9


# --- the chain check --------------------------------------------------------------------------
def test_chain_check_refuses_loops_long_chains_and_offline_targets() -> None:
    online = {"https://a.internal", "https://b.internal"}
    check = chain_check(
        ("https://public.example.com", "https://a.internal"),
        max_hops=2,
        online=online.__contains__,
    )
    assert check("https://b.internal") is None
    loop = check("https://a.internal")
    assert loop is not None and loop[0] == ERR_NGROK_3501 and "loop" in loop[1]
    offline = check("https://c.internal")
    assert offline == (ERR_NGROK_3200, "The internal endpoint https://c.internal is offline.")
    longer = chain_check(
        ("https://public.example.com", "https://a.internal", "https://b.internal"),
        max_hops=2,
        online=lambda url: True,
    )
    too_long = longer("https://c.internal")
    assert too_long is not None and too_long[0] == ERR_NGROK_3501
    assert "2 endpoints" in too_long[1] and "forward_internal_max_hops" in too_long[1]


def test_candidate_urls_try_the_exact_url_then_each_wildcard_above_it() -> None:
    assert list(candidate_urls("https://api.eu.clinic-a.internal")) == [
        "https://api.eu.clinic-a.internal",
        "https://*.eu.clinic-a.internal",
        "https://*.clinic-a.internal",
    ]
    assert list(candidate_urls("tls://db.clinic-a.internal:5432")) == [
        "tls://db.clinic-a.internal:5432",
        "tls://*.clinic-a.internal:5432",
    ]
