"""edge/policy/sdk_options.py: ngrok's legacy per-endpoint SDK options as a Traffic Policy.

The option objects below are shaped as ngrok's SDKs send them: ngrok-rust's `HttpEndpoint`
(internals/proto.rs: every field present, null when unused; `Compression` and
`WebsocketTCPConverter` are `{}` when on) and ngrok-go's `proto.HTTPEndpoint` (protobuf messages
of internal/pb/middleware.proto under Go's encoding/json: snake_case fields, `add` a list of
"Name:value" strings).
"""

from __future__ import annotations

import base64

import pytest

from edge.policy.document import Action, Policy, load_policy
from edge.policy.sdk_options import (
    MalformedOption,
    SdkOptionError,
    UnsupportedCombination,
    UnsupportedOption,
    policy_from_bind_options,
)
from edge.policy.validate import validate
from tests.edge.policy.tls_helpers import make_ca, make_leaf

#: ngrok-rust's HttpEndpoint when nothing but a domain was asked for.
RUST_HTTP: dict[str, object] = {
    "Domain": "app.example.com",
    "Hostname": "",
    "Auth": "",
    "Subdomain": "",
    "HostHeaderRewrite": False,
    "LocalURLScheme": "http",
    "ProxyProto": 0,
    "Compression": None,
    "CircuitBreaker": None,
    "IPRestriction": None,
    "BasicAuth": None,
    "OAuth": None,
    "OIDC": None,
    "WebhookVerification": None,
    "MutualTLSCA": None,
    "RequestHeaders": None,
    "ResponseHeaders": None,
    "WebsocketTCPConverter": None,
    "UserAgentFilter": None,
    "TrafficPolicy": None,
}
RUST_TCP: dict[str, object] = {
    "Addr": "",
    "ProxyProto": 0,
    "IPRestriction": None,
    "TrafficPolicy": None,
}
RUST_TLS: dict[str, object] = {
    "Domain": "db.example.com",
    "Hostname": "",
    "Subdomain": "",
    "ProxyProto": 0,
    "MutualTLSAtAgent": False,
    "MutualTLSAtEdge": None,
    "TLSTermination": None,
    "IPRestriction": None,
    "TrafficPolicy": None,
}
DEFAULTS = {"http": RUST_HTTP, "https": RUST_HTTP, "tcp": RUST_TCP, "tls": RUST_TLS}
BASIC_AUTH = {"credentials": [{"username": "ngrok", "cleartext_password": "online1line"}]}


def mapped(proto: str, **options: object) -> Policy:
    """The policy for an SDK's defaults plus `options`; it must exist and validate."""
    policy = policy_from_bind_options(proto, {**DEFAULTS[proto], **options})
    assert policy is not None
    validate(policy, protocol=proto)
    return policy


def refusal(proto: str, **options: object) -> SdkOptionError:
    with pytest.raises(SdkOptionError) as caught:
        policy_from_bind_options(proto, {**DEFAULTS[proto], **options})
    return caught.value


def only_action(policy: Policy, phase: str) -> Action:
    rules = dict(policy.phases())[phase]
    assert len(rules) == 1 and len(rules[0].actions) == 1
    return rules[0].actions[0]


# --- nothing asked for ----------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["http", "https", "tcp", "tls"])
def test_an_sdk_bind_with_no_modules_has_no_policy(proto: str) -> None:
    assert policy_from_bind_options(proto, DEFAULTS[proto]) is None
    assert policy_from_bind_options(proto, {}) is None


@pytest.mark.parametrize(
    "options",
    [
        {"IPRestriction": {"allow_cidrs": [], "deny_cidrs": []}},
        {"BasicAuth": {"credentials": []}},
        {"RequestHeaders": {"add": [], "remove": [], "addParsed": {}}},
        {"UserAgentFilter": {"allow": None, "deny": []}},
        {"Auth": "", "HostHeaderRewrite": False, "CircuitBreaker": None, "Policy": None},
        {"Compression": None, "WebsocketTCPConverter": None},
    ],
)
def test_empty_and_null_options_are_ignored(options: dict[str, object]) -> None:
    assert policy_from_bind_options("https", {**RUST_HTTP, **options}) is None


def test_a_traffic_policy_alone_is_not_read_here() -> None:
    opts = {**RUST_HTTP, "TrafficPolicy": "on_http_request: [{actions: [{type: deny}]}]"}
    assert policy_from_bind_options("https", opts) is None


# --- basic auth -----------------------------------------------------------------------------
def test_basic_auth_becomes_a_basic_auth_action() -> None:
    policy = mapped("https", BasicAuth=BASIC_AUTH)
    action = only_action(policy, "on_http_request")
    assert action.type == "basic-auth"
    assert action.config["credentials"] == ("ngrok:online1line",)
    assert policy.on_tcp_connect == () and policy.on_http_response == ()
    assert policy.on_http_request[0].expressions == ()  # always applies


def test_several_credentials_keep_their_order() -> None:
    credentials = [
        {"username": "alice", "cleartext_password": "password-a"},
        {"username": "bob", "cleartext_password": "pass:with:colons"},
    ]
    action = only_action(mapped("http", BasicAuth={"credentials": credentials}), "on_http_request")
    assert action.config["credentials"] == ("alice:password-a", "bob:pass:with:colons")


def test_the_go_auth_string_becomes_a_credential() -> None:
    action = only_action(mapped("https", Auth="user:secret-password"), "on_http_request")
    assert action == Action("basic-auth", action.config)
    assert action.config["credentials"] == ("user:secret-password",)


def test_auth_and_basic_auth_share_one_action() -> None:
    # Two basic-auth actions would be refused (one auth action per endpoint, ERR_NGROK_2239).
    policy = mapped("https", Auth="old:old-password", BasicAuth=BASIC_AUTH)
    action = only_action(policy, "on_http_request")
    assert action.config["credentials"] == ("old:old-password", "ngrok:online1line")


def test_a_short_password_is_refused_with_ngroks_code_and_without_the_password() -> None:
    error = refusal(
        "https", BasicAuth={"credentials": [{"username": "u", "cleartext_password": "abc1"}]}
    )
    assert isinstance(error, MalformedOption)
    assert error.option == "BasicAuth" and error.code == "ERR_NGROK_2258"
    assert "Opts.BasicAuth" in error.message and "abc1" not in error.message


def test_a_credential_error_names_the_option_it_came_from() -> None:
    error = refusal("https", Auth="ngrok:short", BasicAuth=BASIC_AUTH)
    assert isinstance(error, MalformedOption) and error.option == "Auth"
    duplicate = refusal("https", Auth="ngrok:another-password", BasicAuth=BASIC_AUTH)
    assert duplicate.option == "BasicAuth" and duplicate.code == "ERR_NGROK_2231"


@pytest.mark.parametrize(
    ("credential", "problem"),
    [
        ({"cleartext_password": "online1line"}, "username must be a non-empty string"),
        ({"username": 7, "cleartext_password": "online1line"}, "username must be"),
        ({"username": "a:b", "cleartext_password": "online1line"}, "contains a colon"),
        ({"username": "ngrok"}, "cleartext_password must be a non-empty string"),
        ({"username": "ngrok", "password": "online1line"}, "unknown field 'password'"),
        ("ngrok:online1line", "must be an object, not a string"),
    ],
)
def test_malformed_credentials_are_refused(credential: object, problem: str) -> None:
    error = refusal("https", BasicAuth={"credentials": [credential]})
    assert isinstance(error, MalformedOption)
    assert problem in error.message and "BasicAuth.credentials[0]" in error.message
    assert "online1line" not in error.message


def test_a_hashed_password_is_refused_by_name() -> None:
    credential = {"username": "ngrok", "hashed_password": "JDJhJDEwJGFiYw=="}
    error = refusal("https", BasicAuth={"credentials": [credential]})
    assert isinstance(error, UnsupportedOption) and error.option == "BasicAuth"
    assert "hashed_password" in error.message


def test_an_auth_string_without_a_colon_is_refused() -> None:
    error = refusal("https", Auth="just-a-token")
    assert isinstance(error, MalformedOption) and error.option == "Auth"
    assert "user:password" in error.message


# --- IP restrictions ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("proto", "phase"),
    [
        ("tcp", "on_tcp_connect"),
        ("tls", "on_tcp_connect"),
        ("http", "on_http_request"),
        ("https", "on_http_request"),
    ],
)
def test_ip_restriction_becomes_restrict_ips(proto: str, phase: str) -> None:
    cidrs = {"allow_cidrs": ["10.0.0.0/8", "2001:db8::/32"], "deny_cidrs": ["127.0.0.0/8"]}
    policy = mapped(proto, IPRestriction=cidrs)
    action = only_action(policy, phase)
    assert action.type == "restrict-ips"
    assert action.config == {"allow": ("10.0.0.0/8", "2001:db8::/32"), "deny": ("127.0.0.0/8",)}


def test_a_deny_only_restriction_has_no_allow_list() -> None:
    action = only_action(
        mapped("tcp", IPRestriction={"deny_cidrs": ["127.0.0.0/8"]}), "on_tcp_connect"
    )
    assert action.config == {"deny": ("127.0.0.0/8",)}


def test_a_bad_cidr_is_refused_with_ngroks_code() -> None:
    error = refusal("tcp", IPRestriction={"allow_cidrs": ["10.0.0.300/8"]})
    assert isinstance(error, MalformedOption) and error.option == "IPRestriction"
    assert error.code == "ERR_NGROK_2217" and "10.0.0.300/8" in error.message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("10.0.0.0/8", "must be an object, not a string"),
        ({"allow_cidrs": "10.0.0.0/8"}, "allow_cidrs must be a list of strings"),
        ({"deny_cidrs": [8]}, "deny_cidrs[0] must be a string"),
        ({"allow": ["10.0.0.0/8"]}, "unknown field 'allow'"),
    ],
)
def test_malformed_ip_restrictions_are_refused(value: object, problem: str) -> None:
    error = refusal("tls", IPRestriction=value)
    assert isinstance(error, MalformedOption) and error.option == "IPRestriction"
    assert problem in error.message


# --- headers --------------------------------------------------------------------------------
def test_request_headers_become_add_and_remove_headers_on_requests() -> None:
    # What both SDKs send for request_header("X-Env", "prod"), remove_request_header("referer")
    # and ngrok-go's host rewrite (a "host:<upstream>" entry).
    headers = {"add": ["x-env:prod", "host:localhost:8080"], "remove": ["referer"]}
    policy = mapped("https", RequestHeaders=headers)
    (rule,) = policy.on_http_request
    assert [action.type for action in rule.actions] == ["add-headers", "remove-headers"]
    assert rule.actions[0].config["headers"] == {"x-env": "prod", "host": "localhost:8080"}
    assert rule.actions[1].config["headers"] == ("referer",)
    assert policy.on_http_response == ()


def test_response_headers_go_to_the_response_phase() -> None:
    policy = mapped("http", ResponseHeaders={"add": ["X-Frame-Options: DENY"]})
    action = only_action(policy, "on_http_response")
    assert action.type == "add-headers" and action.config["headers"] == {"X-Frame-Options": "DENY"}
    assert policy.on_http_request == ()


def test_added_headers_may_come_as_a_map_or_as_add_parsed() -> None:
    as_map = mapped("https", RequestHeaders={"add": {"x-a": "1"}, "addParsed": {"x-b": "2"}})
    action = only_action(as_map, "on_http_request")
    assert action.config["headers"] == {"x-a": "1", "x-b": "2"}


def test_header_values_keep_their_interpolation() -> None:
    policy = mapped("https", RequestHeaders={"add": ["x-client:${conn.client_ip}"]})
    assert only_action(policy, "on_http_request").config["headers"] == {
        "x-client": "${conn.client_ip}"
    }


def test_more_headers_than_one_action_takes_become_several_actions() -> None:
    added = [f"x-{index}:{index}" for index in range(23)]
    (rule,) = mapped("https", RequestHeaders={"add": added}).on_http_request
    assert [len(action.config["headers"]) for action in rule.actions] == [10, 10, 3]  # type: ignore[arg-type]
    assert list(rule.actions[2].config["headers"]) == ["x-20", "x-21", "x-22"]  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("option", "code"), [("RequestHeaders", "ERR_NGROK_370"), ("ResponseHeaders", "ERR_NGROK_371")]
)
def test_an_added_header_without_a_colon_is_refused(option: str, code: str) -> None:
    error = refusal("https", **{option: {"add": ["x-env prod"]}})
    assert isinstance(error, MalformedOption) and error.option == option
    assert error.code == code and "key:value" in error.message and "add[0]" in error.message


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({"add": ["x-a:1", "X-A:2"]}, "added twice"),
        ({"add": ["x-a:1"], "remove": ["X-A"]}, "both added and removed"),
        ({"add": "x-a:1"}, "add must be a list of strings"),
        ({"remove": "x-a"}, "remove must be a list of strings"),
        ({"addParsed": {"x-a": 1}}, "addParsed.x-a must be a string"),
        ({"set": ["x-a:1"]}, "unknown field 'set'"),
    ],
)
def test_malformed_header_options_are_refused(headers: object, problem: str) -> None:
    error = refusal("https", RequestHeaders=headers)
    assert isinstance(error, MalformedOption) and error.option == "RequestHeaders"
    assert problem in error.message


def test_a_protected_header_is_refused_with_ngroks_code() -> None:
    error = refusal("https", ResponseHeaders={"remove": ["user-agent"]})
    assert isinstance(error, MalformedOption) and error.option == "ResponseHeaders"
    assert error.code == "ERR_NGROK_2219"


# --- user agent filter ----------------------------------------------------------------------
def ua_denied(policy: Policy, user_agent: str) -> bool:
    """Whether the filter's deny rule runs for a request with this User-Agent."""
    compiled = validate(policy, protocol="https")
    (rule,) = compiled.on_http_request
    assert [action.type for action in rule.actions] == ["deny"]
    request = {"req": {"user_agent": user_agent}}
    return all(expression.evaluate(request) for expression in rule.expressions)


def test_user_agent_filter_follows_ngroks_documented_example() -> None:
    # DOCS cloud-edge/modules/user-agent-filter.md: block Google's bots except Google Images.
    policy = mapped(
        "https", UserAgentFilter={"allow": ["(?i)google-images"], "deny": ["(?i)google", "[Bb]ing"]}
    )
    action = only_action(policy, "on_http_request")
    assert action.type == "deny" and action.config == {"status_code": 403}
    assert ua_denied(policy, "Googlebot/2.1")
    assert ua_denied(policy, "bingbot/2.0")
    assert not ua_denied(policy, "Google-Images/1.0")
    assert not ua_denied(policy, "curl/8.5.0")
    assert ua_denied(policy, "")  # no User-Agent header: denied by default


def test_an_allow_rule_for_the_empty_string_admits_requests_without_a_user_agent() -> None:
    policy = mapped("https", UserAgentFilter={"allow": ["^$"], "deny": ["curl"]})
    assert not ua_denied(policy, "")
    assert ua_denied(policy, "curl/8.5.0")


def test_deny_only_and_allow_only_filters() -> None:
    deny_only = mapped("https", UserAgentFilter={"deny": ["python-requests"]})
    assert ua_denied(deny_only, "python-requests/2.31") and not ua_denied(deny_only, "curl/8")
    # "Requests are allowed if they match any allow rule or fail to match all deny rules."
    allow_only = mapped("https", UserAgentFilter={"allow": ["^Mozilla/"]})
    assert not ua_denied(allow_only, "curl/8") and not ua_denied(allow_only, "Mozilla/5.0")
    assert ua_denied(allow_only, "")


def test_regexes_with_quotes_and_backslashes_survive_the_expression() -> None:
    policy = mapped("https", UserAgentFilter={"deny": [r"^it's/\d+\.\d+$"]})
    assert ua_denied(policy, "it's/1.2")
    assert not ua_denied(policy, "it's/1x2") and not ua_denied(policy, "its/1.2")


@pytest.mark.parametrize(
    ("pattern", "field"),
    [("(unclosed", "deny[0]"), ("(?=lookahead)", "deny[0]"), (r"\p{Greek}", "deny[0]")],
)
def test_a_regex_either_dialect_rejects_is_refused(pattern: str, field: str) -> None:
    # (?=...) is Python-only (RE2 refuses it); \p{Greek} is RE2-only (Python's re refuses it).
    error = refusal("https", UserAgentFilter={"deny": [pattern]})
    assert isinstance(error, MalformedOption) and error.option == "UserAgentFilter"
    assert error.code == "ERR_NGROK_2090" and field in error.message


def test_a_regex_with_control_characters_is_refused() -> None:
    error = refusal("https", UserAgentFilter={"allow": ["a\nb"]})
    assert isinstance(error, MalformedOption) and "control characters" in error.message


# --- several options, and the shape of the result -------------------------------------------
def test_options_map_in_a_fixed_order_ip_then_user_agent_then_auth_then_headers() -> None:
    policy = mapped(
        "https",
        RequestHeaders={"add": ["x-a:1"]},
        BasicAuth=BASIC_AUTH,
        UserAgentFilter={"deny": ["bot"]},
        IPRestriction={"deny_cidrs": ["192.0.2.0/24"]},
        ResponseHeaders={"remove": ["server"]},
    )
    assert [rule.actions[0].type for rule in policy.on_http_request] == [
        "restrict-ips",
        "deny",
        "basic-auth",
        "add-headers",
    ]
    assert [rule.actions[0].type for rule in policy.on_http_response] == ["remove-headers"]


def test_the_result_is_what_the_equivalent_user_document_loads_to() -> None:
    policy = mapped("https", IPRestriction={"deny_cidrs": ["192.0.2.0/24"]}, BasicAuth=BASIC_AUTH)
    document = """
on_http_request:
  - name: SDK option IPRestriction
    actions:
      - type: restrict-ips
        config: {deny: [192.0.2.0/24]}
  - name: SDK option BasicAuth
    actions:
      - type: basic-auth
        config: {credentials: ["ngrok:online1line"]}
"""
    assert policy == load_policy(document)


def test_option_keys_match_case_insensitively_as_gos_decoder_does() -> None:
    opts = {
        "basicauth": {"Credentials": [{"USERNAME": "ngrok", "Cleartext_Password": "online1line"}]}
    }
    policy = policy_from_bind_options("https", opts)
    assert policy is not None
    assert only_action(policy, "on_http_request").config["credentials"] == ("ngrok:online1line",)


def test_keys_differing_only_in_case_are_refused() -> None:
    error = refusal("https", BasicAuth=BASIC_AUTH, basicAuth=BASIC_AUTH)
    assert isinstance(error, MalformedOption) and "'BasicAuth' and 'basicAuth'" in error.message


# --- refused options ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("proto", "name", "value"),
    [
        ("https", "OAuth", {"provider": "google", "allow_emails": ["a@example.com"]}),
        ("https", "OIDC", {"issuer_url": "https://id.example.com", "client_id": "c"}),
        ("https", "MutualTLSCA", {"mutual_tls_ca": "LS0tLS1CRUdJTg=="}),
        ("http", "WebsocketTCPConverter", {}),
        ("https", "HostHeaderRewrite", True),
        ("https", "Policy", {"inbound": [{"name": "x", "actions": [{"type": "deny"}]}]}),
        ("tcp", "Policy", {"inbound": [{"name": "x", "actions": [{"type": "deny"}]}]}),
        ("tls", "MutualTLSAtEdge", {"mutual_tls_ca": "LS0tLS1CRUdJTg=="}),
        ("tls", "Policy", {"outbound": [{"name": "x", "actions": [{"type": "deny"}]}]}),
    ],
)
def test_each_unmapped_option_is_refused_by_name(proto: str, name: str, value: object) -> None:
    error = refusal(proto, **{name: value})
    assert isinstance(error, UnsupportedOption) and error.option == name
    assert f"Opts.{name}" in error.message and "not bound" in error.message
    # Refused even beside options that do map: one unenforced option refuses the Bind.
    beside = refusal(proto, **{name: value, "IPRestriction": {"deny_cidrs": ["192.0.2.0/24"]}})
    assert isinstance(beside, UnsupportedOption) and beside.option == name


def test_a_refused_options_message_names_its_policy_equivalent() -> None:
    # (Was Compression, now mapped: see the Compression tests below.) OAuth's equivalent is
    # named, and the message says this edge does not serve that action either.
    error = refusal("https", OAuth={"provider": "google"})
    assert isinstance(error, UnsupportedOption) and error.option == "OAuth"
    assert "Its Traffic Policy equivalent, oauth, is not served by this edge yet" in error.message


@pytest.mark.parametrize(
    ("proto", "name", "value"),
    [
        ("tcp", "Compression", {}),
        ("tls", "CircuitBreaker", {"error_threshold": 0.5}),
        ("tcp", "WebhookVerification", {"provider": "github", "secret": "s3cret"}),
    ],
)
def test_options_mapped_for_http_are_refused_by_name_on_tcp_and_tls(
    proto: str, name: str, value: object
) -> None:
    error = refusal(proto, **{name: value})
    assert isinstance(error, UnsupportedOption) and error.option == name
    assert f"Opts.{name}" in error.message and f"on {proto} endpoints" in error.message


@pytest.mark.parametrize(
    ("proto", "name"),
    [("tcp", "BasicAuth"), ("tls", "RequestHeaders"), ("tcp", "UserAgentFilter")],
)
def test_http_options_on_other_protocols_are_refused(proto: str, name: str) -> None:
    value = {"credentials": BASIC_AUTH["credentials"], "add": ["x:1"], "deny": ["bot"]}
    error = refusal(proto, **{name: value})
    assert isinstance(error, UnsupportedOption) and error.option == name
    assert f"on {proto} endpoints" in error.message


def test_unknown_options_are_refused_by_their_name() -> None:
    # ngrok-rust before 0.12 sent its modules as protobuf bytes in MiddlewareBytes.
    error = refusal("https", ProtoMiddleware=True, MiddlewareBytes="IgA=")
    assert isinstance(error, UnsupportedOption) and error.option == "MiddlewareBytes"
    assert "not an option this Burrow edge knows" in error.message


def test_a_traffic_policy_beside_legacy_options_is_refused_naming_both() -> None:
    error = refusal(
        "https",
        TrafficPolicy='{"on_http_request": [{"actions": [{"type": "deny"}]}]}',
        BasicAuth=BASIC_AUTH,
        IPRestriction={"deny_cidrs": ["192.0.2.0/24"]},
    )
    assert isinstance(error, UnsupportedCombination)
    assert error.legacy == ("IPRestriction", "BasicAuth")
    assert "Opts.TrafficPolicy" in error.message and "Opts.BasicAuth" in error.message
    assert "online1line" not in error.message


# --- malformed top level --------------------------------------------------------------------
def test_opts_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(MalformedOption, match=r"^Opts: must be an object, not a list"):
        policy_from_bind_options("https", ["BasicAuth"])


def test_an_unknown_protocol_is_refused() -> None:
    with pytest.raises(MalformedOption, match="'ssh' is not one of"):
        policy_from_bind_options("ssh", {"IPRestriction": {"deny_cidrs": ["192.0.2.0/24"]}})


def test_the_protocol_is_read_case_insensitively() -> None:
    policy = policy_from_bind_options("TCP", {"IPRestriction": {"deny_cidrs": ["192.0.2.0/24"]}})
    assert policy is not None and only_action(policy, "on_tcp_connect").type == "restrict-ips"


# --- TLSTermination (the SDK's termination(cert, key)) -------------------------------------
def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_tls_termination_becomes_a_terminate_tls_rule_with_the_agents_pems() -> None:
    server = make_leaf("db.example.com")
    policy = mapped(
        "tls", TLSTermination={"cert": _b64(server.cert_pem), "key": _b64(server.key_pem)}
    )
    action = only_action(policy, "on_tcp_connect")
    assert action.type == "terminate-tls"
    assert dict(action.config) == {
        "server_certificate": server.cert_pem,
        "server_private_key": server.key_pem,
    }
    (rule,) = dict(policy.phases())["on_tcp_connect"]
    assert rule.name == "SDK option TLSTermination"


def test_tls_termination_runs_after_the_ip_check() -> None:
    server = make_leaf("db.example.com")
    policy = mapped(
        "tls",
        IPRestriction={"allow_cidrs": ["127.0.0.0/8"]},
        TLSTermination={"cert": _b64(server.cert_pem), "key": _b64(server.key_pem)},
    )
    rules = dict(policy.phases())["on_tcp_connect"]
    assert [rule.actions[0].type for rule in rules] == ["restrict-ips", "terminate-tls"]


@pytest.mark.parametrize("form", ["pem", "bytes"])
def test_tls_termination_takes_plain_pem_and_byte_lists_too(form: str) -> None:
    server = make_leaf("db.example.com")

    def sent(text: str) -> object:
        return text if form == "pem" else list(text.encode())

    value = {"cert": sent(server.cert_pem), "key": sent(server.key_pem)}
    policy = mapped("tls", TLSTermination=value)
    assert only_action(policy, "on_tcp_connect").config["server_certificate"] == server.cert_pem


def test_a_sealed_key_is_refused_by_name() -> None:
    server = make_leaf("db.example.com")
    error = refusal("tls", TLSTermination={"cert": _b64(server.cert_pem), "sealed_key": "AAAA"})
    assert isinstance(error, UnsupportedOption) and error.option == "TLSTermination"
    assert "sealed_key" in error.message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"cert": _b64("-----BEGIN CERTIFICATE-----\n")}, "key is missing"),
        ({"cert": "!!not base64!!", "key": "LS0t"}, "neither PEM nor base64"),
        ({"cert": _b64("hello"), "key": "LS0t"}, "cert is not a PEM (no -----BEGIN line)"),
        ({"cert": 7, "key": "LS0t"}, "must be the PEM as bytes"),
    ],
)
def test_malformed_tls_termination_is_refused(value: object, problem: str) -> None:
    error = refusal("tls", TLSTermination=value)
    assert isinstance(error, MalformedOption) and error.option == "TLSTermination"
    assert problem in error.message


def test_a_key_that_is_not_the_certificates_is_refused_with_2204_and_never_quoted() -> None:
    server, other = make_leaf("db.example.com"), make_leaf("other.example.com")
    error = refusal(
        "tls", TLSTermination={"cert": _b64(server.cert_pem), "key": _b64(other.key_pem)}
    )
    assert isinstance(error, MalformedOption) and error.code == "ERR_NGROK_2204"
    assert error.message.startswith("Opts.TLSTermination: terminate-tls config.server_private_key")
    assert "does not match server_certificate" in error.message
    assert other.key_pem.splitlines()[1] not in error.message
    assert _b64(other.key_pem) not in error.message


def test_tls_termination_on_an_https_endpoint_is_refused_by_name() -> None:
    error = refusal("https", TLSTermination={"cert": "LS0t", "key": "LS0t"})
    assert isinstance(error, UnsupportedOption) and error.option == "TLSTermination"
    assert "on https endpoints" in error.message


def test_mutual_tls_ca_on_https_names_terminate_tls_as_served() -> None:
    error = refusal("https", MutualTLSCA={"mutual_tls_ca": "LS0tLS1CRUdJTg=="})
    assert isinstance(error, UnsupportedOption)
    assert "terminate-tls, is: send a Traffic Policy with that action instead" in error.message


def test_mutual_tls_at_the_edge_without_termination_is_refused_saying_why() -> None:
    error = refusal("tls", MutualTLSAtEdge={"mutual_tls_ca": "LS0tLS1CRUdJTg=="})
    assert isinstance(error, UnsupportedOption) and error.option == "MutualTLSAtEdge"
    assert "without termination(cert, key)" in error.message


def test_mutual_tls_at_the_edge_joins_the_termination_rule() -> None:
    server, client_ca = make_leaf("db.example.com"), make_ca()
    policy = mapped(
        "tls",
        TLSTermination={"cert": _b64(server.cert_pem), "key": _b64(server.key_pem)},
        MutualTLSAtEdge={"mutual_tls_ca": _b64(client_ca.cert_pem)},
    )
    action = only_action(policy, "on_tcp_connect")  # one rule, one handshake
    assert action.type == "terminate-tls"
    cas = action.config["mutual_tls_certificate_authorities"]
    assert isinstance(cas, tuple | list) and list(cas) == [client_ca.cert_pem]


def test_a_malformed_mutual_tls_ca_is_refused_naming_the_option() -> None:
    server = make_leaf("db.example.com")
    error = refusal(
        "tls",
        TLSTermination={"cert": _b64(server.cert_pem), "key": _b64(server.key_pem)},
        MutualTLSAtEdge={"mutual_tls_ca": _b64("not a certificate")},
    )
    assert isinstance(error, MalformedOption) and error.option == "MutualTLSAtEdge"
    assert "mutual_tls_ca is not a PEM" in error.message


# --- WebhookVerification, CircuitBreaker, Compression ----------------------------------------
def test_webhook_verification_becomes_verify_webhook_on_requests() -> None:
    policy = mapped("https", WebhookVerification={"provider": "github", "secret": "s3cret"})
    action = only_action(policy, "on_http_request")
    assert action.type == "verify-webhook"
    assert dict(action.config) == {"provider": "github", "secret": "s3cret"}
    assert policy.on_http_request[0].expressions == ()  # every request is checked
    assert policy.on_http_response == () and policy.on_tcp_connect == ()


def test_a_webhook_secret_is_taken_literally_not_as_an_expression() -> None:
    """The action's secret is a `${...}` template; the SDK's is plain text: a secret holding
    `${` must be used as those characters, not evaluated (nor refused as bad CEL)."""
    policy = mapped("https", WebhookVerification={"provider": "github", "secret": "a${b}c"})
    (rule,) = validate(policy, protocol="https").on_http_request
    secret = rule.actions[0].config.secret  # type: ignore[union-attr]
    assert secret.render({}) == "a${b}c"


def test_webhook_verification_from_the_rust_sdk_with_an_empty_sealed_secret_maps() -> None:
    value = {"provider": "stripe", "secret": "whsec_abc", "sealed_secret": ""}
    action = only_action(mapped("http", WebhookVerification=value), "on_http_request")
    assert action.config["provider"] == "stripe"


def test_a_sealed_webhook_secret_is_refused_by_name() -> None:
    value = {"provider": "github", "secret": "", "sealed_secret": "c2VhbGVk"}
    error = refusal("https", WebhookVerification=value)
    assert isinstance(error, UnsupportedOption) and error.option == "WebhookVerification"
    assert "sealed_secret" in error.message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"provider": "github"}, "secret must be a non-empty string"),
        ({"secret": "s3cret"}, "provider must be a non-empty string"),
        ({"provider": "github", "secret": 5}, "secret must be a non-empty string"),
        ({"provider": "github", "secret": "x", "tolerance": 5}, "unknown field 'tolerance'"),
    ],
)
def test_malformed_webhook_verification_is_refused(value: object, problem: str) -> None:
    error = refusal("https", WebhookVerification=value)
    assert isinstance(error, MalformedOption) and error.option == "WebhookVerification"
    assert problem in error.message


def test_an_unknown_webhook_provider_is_refused_naming_the_option_and_not_the_secret() -> None:
    error = refusal("https", WebhookVerification={"provider": "nope", "secret": "s3cret-value"})
    assert isinstance(error, MalformedOption) and error.option == "WebhookVerification"
    assert error.code == "ERR_NGROK_2204"
    assert "'nope' is not a provider" in error.message and "github" in error.message
    assert "s3cret-value" not in error.message


def test_circuit_breaker_becomes_circuit_breaker_with_the_threshold() -> None:
    policy = mapped("https", CircuitBreaker={"error_threshold": 0.25})
    action = only_action(policy, "on_http_request")
    assert action.type == "circuit-breaker"
    assert dict(action.config) == {"error_threshold": 0.25}
    (rule,) = validate(policy, protocol="https").on_http_request
    config = rule.actions[0].config
    # The SDK sends only the threshold: the rest are the action's documented defaults.
    assert (config.error_threshold, config.volume_threshold) == (0.25, 10)  # type: ignore[union-attr]
    assert (config.window_seconds, config.tripped_seconds) == (10.0, 10.0)  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [{}, {"error_threshold": 0}, {"error_threshold": 0.0}])
def test_a_circuit_breaker_with_threshold_zero_is_refused_not_ignored(value: object) -> None:
    """Go's encoding/json sends a threshold of 0 as `{}`: asked for, but a breaker that would
    trip without errors; refused, never dropped."""
    error = refusal("https", CircuitBreaker=value)
    assert isinstance(error, MalformedOption) and error.option == "CircuitBreaker"
    assert "error_threshold is 0 or missing" in error.message


@pytest.mark.parametrize(
    ("value", "problem", "code"),
    [
        ({"error_threshold": 1.5}, "between 0.0 and 1.0", "ERR_NGROK_2215"),
        ({"error_threshold": "half"}, "must be a number", None),
        ({"error_threshold": 0.5, "volume": 3}, "unknown field 'volume'", None),
    ],
)
def test_malformed_circuit_breakers_are_refused(
    value: object, problem: str, code: str | None
) -> None:
    error = refusal("https", CircuitBreaker=value)
    assert isinstance(error, MalformedOption) and error.option == "CircuitBreaker"
    assert problem in error.message and error.code == code


def test_compression_sent_as_an_empty_object_becomes_compress_response() -> None:
    policy = mapped("https", Compression={})
    action = only_action(policy, "on_http_response")
    assert action.type == "compress-response" and dict(action.config) == {}
    (rule,) = validate(policy, protocol="https").on_http_response
    assert rule.actions[0].config.algorithms == ("gzip", "deflate", "br")  # type: ignore[union-attr]
    assert policy.on_http_request == ()


def test_compression_with_a_field_is_refused() -> None:
    error = refusal("https", Compression={"level": 9})
    assert isinstance(error, MalformedOption) and error.option == "Compression"
    assert "unknown field 'level' (it takes no fields)" in error.message


def test_the_new_options_take_their_place_in_the_fixed_order() -> None:
    policy = mapped(
        "https",
        Compression={},
        RequestHeaders={"add": ["x-a:1"]},
        CircuitBreaker={"error_threshold": 0.5},
        WebhookVerification={"provider": "github", "secret": "s3cret"},
        BasicAuth=BASIC_AUTH,
        IPRestriction={"deny_cidrs": ["192.0.2.0/24"]},
        ResponseHeaders={"remove": ["server"]},
    )
    assert [rule.actions[0].type for rule in policy.on_http_request] == [
        "restrict-ips",
        "basic-auth",
        "verify-webhook",
        "circuit-breaker",
        "add-headers",
    ]
    assert [rule.actions[0].type for rule in policy.on_http_response] == [
        "remove-headers",
        "compress-response",
    ]
