"""Auth and Bind decisions: every refusal, with its exact code and message, and the acceptances."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from edge.policy.actions_tls import REDACTED
from edge.store import Credential
from edge.tunnels.decisions import (
    ACCEPTED,
    ENFORCED_PHASES,
    LOGIN_FAILURES,
    AuthAccepted,
    BindPolicy,
    LoginThrottled,
    Refused,
    check_acl,
    check_endpoint_cap,
    check_not_bound,
    check_options,
    decide_auth,
    decide_policy,
    endpoint_cap,
    port_in_use,
    store_failed,
)
from protocol.rpc import errcodes
from protocol.rpc.messages import Bind, BindExtra
from tests.edge.policy.tls_helpers import make_leaf, terminate_tls_policy


def _credential(
    *, acl: tuple[str, ...] = (), max_sessions: int | None = None, max_endpoints: int | None = None
) -> Credential:
    return Credential(
        id="cr_test",
        account_id="acct_test",
        created_at=datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC),
        description="",
        metadata="",
        acl=acl,
        active=True,
        max_sessions=max_sessions,
        max_endpoints=max_endpoints,
    )


# ---------------------------------------------------------------------------------------- auth


def test_no_authtoken_is_4018() -> None:
    decision = decide_auth(
        token="", credential=None, revoked_id=None, resuming=False, live_sessions=0
    )
    assert decision == Refused(
        message="Usage of Burrow requires an authtoken. Pass --authtoken or set BURROW_AUTHTOKEN.",
        code=errcodes.ERR_NGROK_4018,
    )


def test_a_revoked_authtoken_is_300_and_names_the_credential() -> None:
    decision = decide_auth(
        token="cr_x_secret", credential=None, revoked_id="cr_x", resuming=False, live_sessions=0
    )
    assert decision == Refused(
        message="The authtoken credential cr_x has been revoked. "
        "Ask the edge's operator for a new one.",
        code=errcodes.ERR_NGROK_300,
    )


def test_an_unknown_authtoken_is_107() -> None:
    decision = decide_auth(
        token="nonsense", credential=None, revoked_id=None, resuming=False, live_sessions=0
    )
    assert decision == Refused(
        message="The authtoken you specified is invalid. "
        "Ask the edge's operator for a new one (burrow-edge credential create).",
        code=errcodes.ERR_NGROK_107,
    )


THROTTLED = LoginThrottled(
    address="203.0.113.9", retry_after=41.2, failures_per_window=10, window=60.0
)


@pytest.mark.parametrize(
    ("token", "revoked_id"), [("", None), ("nonsense", None), ("cr_x_secret", "cr_x")]
)
def test_a_throttled_address_failing_again_is_5001_with_when_to_retry(
    token: str, revoked_id: str | None
) -> None:
    decision = decide_auth(
        token=token,
        credential=None,
        revoked_id=revoked_id,
        resuming=False,
        live_sessions=0,
        throttled=THROTTLED,
    )
    assert decision == Refused(
        message="Too many failed logins from 203.0.113.9: it is rate limited to 10 failed agent "
        "logins per 60s. Try again in 42s with a valid authtoken (a valid one is accepted at "
        "any time).",
        code=errcodes.ERR_NGROK_5001,
    )
    assert decision.code in LOGIN_FAILURES


def test_a_valid_authtoken_from_a_throttled_address_is_accepted() -> None:
    credential = _credential()
    decision = decide_auth(
        token="t",
        credential=credential,
        revoked_id=None,
        resuming=False,
        live_sessions=0,
        throttled=THROTTLED,
    )
    assert decision == AuthAccepted(credential=credential, resuming=False)


def test_only_credential_failures_are_login_failures() -> None:
    assert {errcodes.ERR_NGROK_4018, errcodes.ERR_NGROK_107, errcodes.ERR_NGROK_300} < (
        LOGIN_FAILURES
    )
    assert errcodes.ERR_NGROK_108 not in LOGIN_FAILURES  # a valid token over its quota


def test_the_session_limit_is_108() -> None:
    credential = _credential(max_sessions=2)
    decision = decide_auth(
        token="t", credential=credential, revoked_id=None, resuming=False, live_sessions=2
    )
    assert decision == Refused(
        message="This authtoken is limited to 2 simultaneous agent sessions and 2 are running. "
        "Stop one of them, or ask the edge's operator to raise the credential's max_sessions.",
        code=errcodes.ERR_NGROK_108,
    )


def test_below_the_session_limit_is_accepted() -> None:
    credential = _credential(max_sessions=2)
    decision = decide_auth(
        token="t", credential=credential, revoked_id=None, resuming=False, live_sessions=1
    )
    assert decision == AuthAccepted(credential=credential, resuming=False)


def test_a_resuming_agent_is_not_counted_against_the_session_limit() -> None:
    credential = _credential(max_sessions=1)
    decision = decide_auth(
        token="t", credential=credential, revoked_id=None, resuming=True, live_sessions=1
    )
    assert decision == AuthAccepted(credential=credential, resuming=True)


def test_no_session_limit_accepts_any_count() -> None:
    credential = _credential()
    decision = decide_auth(
        token="t", credential=credential, revoked_id=None, resuming=False, live_sessions=10_000
    )
    assert decision == AuthAccepted(credential=credential, resuming=False)


def test_refusals_go_on_the_wire_with_their_code_line() -> None:
    refused = Refused(message="No.", code=errcodes.ERR_NGROK_107)
    assert refused.wire() == "No.\r\n\r\nERR_NGROK_107\r\n"
    assert Refused(message="No code.").wire() == "No code."


# ---------------------------------------------------------------------------------------- bind


@pytest.mark.parametrize(
    ("session_limit", "credential_limit", "cap"), [(100, None, 100), (100, 3, 3), (2, 5, 2)]
)
def test_the_endpoint_cap_is_the_lower_limit(
    session_limit: int, credential_limit: int | None, cap: int
) -> None:
    assert endpoint_cap(session_limit, credential_limit) == cap
    assert (
        check_endpoint_cap(
            bound=cap - 1, session_limit=session_limit, credential_limit=credential_limit
        )
        is ACCEPTED
    )
    assert check_endpoint_cap(
        bound=cap, session_limit=session_limit, credential_limit=credential_limit
    ) == Refused(
        message=f"Your session may serve at most {cap} endpoints.", code=errcodes.ERR_NGROK_324
    )


def test_unenforced_options_are_refused_by_name_without_a_code() -> None:
    bind = Bind(proto="https", opts={"URL": "https://app.example.com", "OAuth": {"p": "g"}})
    decision = check_options(bind, agent_writes_proxy_headers=False)
    assert decision == Refused(
        message="This Burrow edge does not enforce Opts.OAuth (OAuth) yet, so it did "
        "not bind https://app.example.com: serving it without them would leave it open. "
        "Remove the option to serve the endpoint without it.",
        code=None,
    )


def test_unenforced_options_without_a_url_name_the_protocol() -> None:
    bind = Bind(proto="tcp", extra=BindExtra(ip_policy_ref="ipp_1"))
    decision = check_options(bind, agent_writes_proxy_headers=False)
    assert isinstance(decision, Refused)
    assert "so it did not bind this tcp endpoint:" in decision.message
    assert "Extra.IPPolicyRef (an IP policy)" in decision.message


def test_proxy_proto_is_accepted_only_from_an_agent_that_writes_it() -> None:
    bind = Bind(proto="tcp", opts={"ProxyProto": 2})
    assert check_options(bind, agent_writes_proxy_headers=True) is ACCEPTED
    assert isinstance(check_options(bind, agent_writes_proxy_headers=False), Refused)


def test_plain_options_are_accepted() -> None:
    bind = Bind(proto="https", opts={"URL": "https://a.example.com", "BasicAuth": None})
    assert check_options(bind, agent_writes_proxy_headers=False) is ACCEPTED


def test_a_host_outside_the_acl_is_308() -> None:
    acl = ("bind:*.acme.com", "bind:api.example.com")
    decision = check_acl(acl, url="https://evil.example.org", host="evil.example.org")
    assert decision == Refused(
        message="Your authtoken may not bind 'https://evil.example.org': its ACL allows only "
        "bind:*.acme.com, bind:api.example.com. Use a credential whose ACL includes "
        "bind:evil.example.org.",
        code=errcodes.ERR_NGROK_308,
    )


@pytest.mark.parametrize(
    ("acl", "host"),
    [((), "anything.example.org"), (("bind:*.acme.com",), "app.acme.com"), (("*",), "x.y")],
)
def test_a_host_the_acl_allows_is_accepted(acl: tuple[str, ...], host: str) -> None:
    assert check_acl(acl, url=f"https://{host}", host=host) is ACCEPTED


def test_an_online_url_is_334() -> None:
    url = "https://app.example.com"
    assert check_not_bound(url, online=False) is ACCEPTED
    assert check_not_bound(url, online=True) == Refused(
        message="The tunnel 'https://app.example.com' is already bound to another tunnel session. "
        "Either stop the existing endpoint first, or start both endpoints with "
        "`--pooling-enabled` (`pooling_enabled: true` in the config file) to load balance "
        "between them.",
        code=errcodes.ERR_NGROK_334,
    )


def test_a_url_whose_endpoints_all_pool_may_be_bound_again() -> None:
    url = "https://app.example.com"
    assert check_not_bound(url, online=True, pooling_enabled=True, pool_open=True) is ACCEPTED


def test_a_pooled_bind_onto_an_endpoint_without_pooling_is_334_naming_the_fix() -> None:
    refused = check_not_bound(
        "https://app.example.com", online=True, pooling_enabled=True, pool_open=False
    )
    assert isinstance(refused, Refused)
    assert refused.code == errcodes.ERR_NGROK_334
    assert "the endpoint already online does not" in refused.message
    assert "--pooling-enabled" in refused.message
    unpooled = check_not_bound(
        "https://app.example.com", online=True, pooling_enabled=False, pool_open=True
    )
    assert isinstance(unpooled, Refused) and unpooled.code == errcodes.ERR_NGROK_334


def test_a_port_taken_on_the_host_is_334_so_agents_retry() -> None:
    assert port_in_use(20001, "Address already in use") == Refused(
        message="tcp port 20001 is in use on the edge's host (Address already in use); ask for "
        "another port, or free this one.",
        code=errcodes.ERR_NGROK_334,
    )


def test_an_acl_rule_that_no_longer_parses_refuses_the_bind_with_308() -> None:
    """A credential stored before the host-name rule refused underscores keeps working for
    everything else: its Bind is refused with a message, not a failed session."""
    refused = check_acl(
        ["bind:my_app.example.com"], url="https://a.example.com", host="a.example.com"
    )
    assert isinstance(refused, Refused)
    assert refused.code == errcodes.ERR_NGROK_308
    assert "no longer accepts" in refused.message
    assert "my_app" in refused.message


def test_a_store_failure_is_an_internal_error_that_blames_the_edge() -> None:
    refused = store_failed()
    assert refused.code == errcodes.ERR_NGROK_10000
    assert refused.code not in LOGIN_FAILURES  # the edge's fault: not throttled, not audited
    assert errcodes.parse_wire_error(refused.wire()) == errcodes.WireError(
        "The edge could not check your authtoken: its credential store failed. This is not a "
        "problem with your authtoken; ask the edge's operator to check the edge's log, and try "
        "again later.",
        errcodes.ERR_NGROK_10000,
    )


# ------------------------------------------------------------------------------ traffic policy

ALL_PHASES = frozenset({"on_tcp_connect", "on_http_request", "on_http_response"})
RESTRICT_TCP = """
on_tcp_connect:
  - name: office only
    actions:
      - type: restrict-ips
        config: {allow: [127.0.0.2/32]}
"""
DENY_HTTP = '{"on_http_request": [{"actions": [{"type": "deny"}]}]}'


def _policy_bind(proto: str, **opts: object) -> Bind:
    return Bind(proto=proto, opts={"URL": "", **opts})


def test_no_policy_is_none() -> None:
    assert decide_policy(_policy_bind("tcp"), "tcp") is None
    assert (
        decide_policy(_policy_bind("https", TrafficPolicy="", IPRestriction=None), "https") is None
    )


@pytest.mark.parametrize("proto", ["tcp", "tls", "https"])
def test_a_valid_policy_is_attached_compiled_with_its_text(proto: str) -> None:
    decision = decide_policy(_policy_bind(proto, TrafficPolicy=RESTRICT_TCP), proto)
    assert isinstance(decision, BindPolicy)
    assert decision.text == RESTRICT_TCP
    assert decision.compiled.protocol == proto
    (rule,) = decision.compiled.on_tcp_connect
    assert rule.name == "office only"
    assert [action.type for action in rule.actions] == ["restrict-ips"]


@pytest.mark.parametrize(
    ("proto", "text", "code", "words"),
    [
        ("tcp", "on_tcp_connect: [", "ERR_NGROK_2236", "Opts.TrafficPolicy: "),
        ("tcp", "on_tcp_connect: [{actions: [{type: nope}]}]", "ERR_NGROK_2201", "nope"),
        (
            "tcp",
            "on_tcp_connect: [{actions: [{type: restrict-ips, config: {allow: [300.0.0.0/8]}}]}]",
            "ERR_NGROK_2217",
            "300.0.0.0/8",
        ),
        ("tcp", DENY_HTTP, "ERR_NGROK_2230", "on_http_request"),
        (
            "https",
            "on_tcp_connect: [{expressions: ['conn.client_ip =='], actions: [{type: deny}]}]",
            "ERR_NGROK_2200",
            "rule 0",
        ),
    ],
)
def test_an_invalid_policy_is_refused_with_its_code(
    proto: str, text: str, code: str, words: str
) -> None:
    decision = decide_policy(_policy_bind(proto, TrafficPolicy=text), proto)
    assert isinstance(decision, Refused), decision
    assert decision.code == code
    assert words in decision.message
    assert decision.wire().endswith(f"\r\n\r\n{code}\r\n")


def test_a_policy_that_is_not_a_string_is_refused() -> None:
    decision = decide_policy(_policy_bind("tcp", TrafficPolicy={"on_tcp_connect": []}), "tcp")
    assert decision == Refused(
        message="Opts.TrafficPolicy must be the policy document as a string (YAML or JSON), "
        "not a mapping.",
        code="ERR_NGROK_2236",
    )


def test_http_phases_follow_the_enforced_phases() -> None:
    """Fail closed: a phase this edge does not run refuses the Bind, naming the phase; once it
    runs, the same policy is attached."""
    bind = _policy_bind("https", TrafficPolicy=DENY_HTTP)
    http_phases = ENFORCED_PHASES["https"] >= {"on_http_request", "on_http_response"}
    decision = decide_policy(bind, "https")
    if http_phases:
        assert isinstance(decision, BindPolicy)
    else:
        assert isinstance(decision, Refused)
        assert decision.code is None
        assert "does not run on_http_request rules for https endpoints" in decision.message
    only_tcp = {"https": frozenset({"on_tcp_connect"})}
    refused = decide_policy(bind, "https", enforced=only_tcp)
    assert isinstance(refused, Refused)
    assert "on_http_request" in refused.message
    assert isinstance(decide_policy(bind, "https", enforced={"https": ALL_PHASES}), BindPolicy)


def test_on_tcp_connect_is_refused_for_http_endpoints() -> None:
    """The plain-HTTP port learns the endpoint per request, so it cannot run on_tcp_connect."""
    assert "on_tcp_connect" not in ENFORCED_PHASES["http"]
    decision = decide_policy(_policy_bind("http", TrafficPolicy=RESTRICT_TCP), "http")
    assert isinstance(decision, Refused)
    assert "does not run on_tcp_connect rules for http endpoints" in decision.message


def test_legacy_options_become_the_policy() -> None:
    bind = _policy_bind("tcp", IPRestriction={"allow_cidrs": ["127.0.0.2/32"], "deny_cidrs": None})
    decision = decide_policy(bind, "tcp")
    assert isinstance(decision, BindPolicy)
    (rule,) = decision.compiled.on_tcp_connect
    (action,) = rule.actions
    assert action.type == "restrict-ips"
    assert '"restrict-ips"' in decision.text and "127.0.0.2/32" in decision.text


def test_legacy_http_options_map_to_http_phases() -> None:
    bind = _policy_bind(
        "https", BasicAuth={"credentials": [{"username": "u", "cleartext_password": "secret-pw"}]}
    )
    decision = decide_policy(bind, "https", enforced={"https": ALL_PHASES})
    assert isinstance(decision, BindPolicy)
    assert [a.type for r in decision.compiled.on_http_request for a in r.actions] == ["basic-auth"]
    refused = decide_policy(bind, "https", enforced={"https": frozenset({"on_tcp_connect"})})
    assert isinstance(refused, Refused)
    assert "on_http_request" in refused.message


def test_unmapped_legacy_options_are_refused_by_name() -> None:
    decision = decide_policy(_policy_bind("https", OAuth={"provider": "google"}), "https")
    assert isinstance(decision, Refused)
    assert decision.message.startswith("Opts.OAuth (OAuth) is not supported")
    on_tcp = decide_policy(
        _policy_bind("tcp", BasicAuth={"credentials": [{"username": "u"}]}), "tcp"
    )
    assert isinstance(on_tcp, Refused)
    assert "Opts.BasicAuth" in on_tcp.message and "on tcp endpoints" in on_tcp.message


def test_a_malformed_legacy_option_is_refused_with_its_code() -> None:
    bind = _policy_bind("tcp", IPRestriction={"allow_cidrs": ["not-a-cidr"]})
    decision = decide_policy(bind, "tcp")
    assert isinstance(decision, Refused)
    assert decision.code == "ERR_NGROK_2217"
    assert "Opts.IPRestriction" in decision.message


def test_a_policy_and_legacy_options_together_are_refused() -> None:
    bind = _policy_bind(
        "tcp", TrafficPolicy=RESTRICT_TCP, IPRestriction={"allow_cidrs": ["10.0.0.0/8"]}
    )
    decision = decide_policy(bind, "tcp")
    assert isinstance(decision, Refused)
    assert "Opts.TrafficPolicy and Opts.IPRestriction were both given" in decision.message


# --- terminate-tls: the private key is never in the text the admin API shows ----------------
def test_an_sdk_tls_termination_becomes_a_policy_whose_text_hides_the_key() -> None:
    server = make_leaf("db.example.com")
    termination = {
        "cert": base64.b64encode(server.cert_pem.encode()).decode(),
        "key": base64.b64encode(server.key_pem.encode()).decode(),
    }
    decision = decide_policy(_policy_bind("tls", TLSTermination=termination), "tls")
    assert isinstance(decision, BindPolicy)
    (rule,) = decision.compiled.on_tcp_connect
    assert [action.type for action in rule.actions] == ["terminate-tls"]
    shown = json.loads(decision.text)
    config = shown["on_tcp_connect"][0]["actions"][0]["config"]
    assert config["server_private_key"] == REDACTED
    assert config["server_certificate"] == server.cert_pem
    assert server.key_pem.splitlines()[1] not in decision.text


def test_a_traffic_policy_with_a_private_key_is_shown_redacted() -> None:
    server = make_leaf("db.example.com")
    text = terminate_tls_policy(server)
    decision = decide_policy(_policy_bind("tls", TrafficPolicy=text), "tls")
    assert isinstance(decision, BindPolicy)
    assert server.key_pem.splitlines()[1] not in decision.text
    assert REDACTED in decision.text
    assert server.cert_pem.splitlines()[1] in decision.text.replace("\\n", "\n")


def test_terminate_tls_on_an_https_endpoint_is_refused_with_2205() -> None:
    text = terminate_tls_policy(make_leaf("app.example.com"))
    decision = decide_policy(_policy_bind("https", TrafficPolicy=text), "https")
    assert isinstance(decision, Refused) and decision.code == "ERR_NGROK_2205"
    assert "terminate-tls" in decision.message


def test_an_internal_http_endpoint_may_not_have_on_tcp_connect_rules() -> None:
    bind = _policy_bind("https", TrafficPolicy=RESTRICT_TCP)
    decision = decide_policy(bind, "https", binding="internal")
    assert isinstance(decision, Refused)
    assert decision.code == "ERR_NGROK_2262"
    assert "forward-internal" in decision.message
    # A public https endpoint, and an internal tls one, keep their on_tcp_connect rules.
    assert isinstance(decide_policy(bind, "https"), BindPolicy)
    tls = _policy_bind("tls", TrafficPolicy=RESTRICT_TCP)
    assert isinstance(decide_policy(tls, "tls", binding="internal"), BindPolicy)
