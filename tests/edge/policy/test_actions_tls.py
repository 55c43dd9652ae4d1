"""edge/policy/actions_tls.py: terminate-tls's config checked at load (codes, refusals by name),
its server context built once, the phase run recording it, and the private key kept out of
anything shown."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping

import pytest
from cryptography.hazmat.primitives import serialization

from edge.policy.actions_tls import (
    REDACTED,
    TerminateTlsConfig,
    holds_private_key,
    shown_config,
)
from edge.policy.activation import EndpointFacts
from edge.policy.document import load_policy
from edge.policy.engine import Close, Continue, run_tcp_connect
from edge.policy.errors import (
    ERR_NGROK_2202,
    ERR_NGROK_2203,
    ERR_NGROK_2204,
    ERR_NGROK_2205,
    PolicyError,
)
from edge.policy.ratelimit import PolicyState
from edge.policy.validate import CompiledPolicy, validate
from tests.edge.policy.engine_helpers import CONN, NOW
from tests.edge.policy.tls_helpers import Issued, make_ca, make_leaf

SERVER = make_leaf("db.example.com")
TLS_ENDPOINT = EndpointFacts(
    url="tls://db.example.com", host="db.example.com", port=443, protocol="tls"
)
CLIENT_CA = make_ca()


def document(config: Mapping[str, object], *, expressions: tuple[str, ...] = ()) -> str:
    rule = {"name": "tls", "expressions": list(expressions), "actions": [
        {"type": "terminate-tls", "config": dict(config)}
    ]}  # fmt: skip
    return json.dumps({"on_tcp_connect": [rule]})


def base(server: Issued = SERVER, **extra: object) -> dict[str, object]:
    return {"server_certificate": server.cert_pem, "server_private_key": server.key_pem, **extra}


def compiled(config: Mapping[str, object], protocol: str = "tls") -> CompiledPolicy:
    return validate(load_policy(document(config)), protocol=protocol)


def config_of(policy: CompiledPolicy) -> TerminateTlsConfig:
    action = policy.on_tcp_connect[0].actions[0].config
    assert isinstance(action, TerminateTlsConfig)
    return action


def refused(config: Mapping[str, object], protocol: str = "tls") -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        compiled(config, protocol)
    return caught.value


# --- accepted --------------------------------------------------------------------------------
def test_a_certificate_and_key_build_a_server_context_with_ngroks_default_versions() -> None:
    config = config_of(compiled(base()))
    assert config.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert config.context.verify_mode == ssl.CERT_NONE  # no CAs: no client certificates
    assert (config.min_version, config.max_version) == ("1.2", "1.3")
    assert config.verification is None and config.client_cas == 0
    assert config.subject == "CN=db.example.com"
    assert config.certificate == SERVER.cert


def test_versions_and_client_cas_configure_the_context() -> None:
    config = config_of(
        compiled(
            base(
                min_version="1.3",
                max_version="1.3",
                mutual_tls_certificate_authorities=[CLIENT_CA.cert_pem],
                mutual_tls_verification_strategy="require-and-verify",
            )
        )
    )
    assert config.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert config.context.verify_mode == ssl.CERT_REQUIRED
    assert config.client_cas == 1 and config.verification == "require-and-verify"
    stored = config.context.get_ca_certs(binary_form=True)
    assert stored == [CLIENT_CA.cert.public_bytes(serialization.Encoding.DER)]


def test_ca_bundles_and_a_chain_are_read_whole() -> None:
    other = make_ca("second CA")
    intermediate = make_ca("intermediate")
    leaf = make_leaf("db.example.com", intermediate)
    chain = leaf.cert_pem + intermediate.cert_pem
    config = config_of(
        compiled(
            {
                "server_certificate": chain,
                "server_private_key": leaf.key_pem,
                "mutual_tls_certificate_authorities": [CLIENT_CA.cert_pem + other.cert_pem],
            }
        )
    )
    assert config.client_cas == 2
    assert config.certificate == leaf.cert  # the leaf is the first of the chain


def test_the_private_key_is_never_in_the_configs_repr() -> None:
    config = config_of(compiled(base()))
    assert "PRIVATE KEY" not in repr(config)
    secret_line = SERVER.key_pem.splitlines()[1]
    assert secret_line not in repr(config)


# --- refused at load ---------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["server_certificate", "server_private_key"])
def test_without_a_certificate_and_key_the_policy_is_refused(missing: str) -> None:
    config = base()
    del config[missing]
    error = refused(config)
    assert error.code == ERR_NGROK_2204
    assert error.place.field == f"config.{missing}"
    assert "ngrok serves its own certificate" in error.message


def test_a_key_that_is_not_the_certificates_is_refused_without_quoting_it() -> None:
    other = make_leaf("other.example.com")
    error = refused(base(server_private_key=other.key_pem))
    assert error.code == ERR_NGROK_2204
    assert error.place.field == "config.server_private_key"
    assert "does not match server_certificate" in error.message
    assert other.key_pem.splitlines()[1] not in error.message


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("server_certificate", "not a pem", "is not a PEM certificate"),
        ("server_private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
         "is not a PEM private key"),
        ("server_certificate", "${vars.cert}", "CEL interpolation is not supported"),
        ("min_version", "1.4", "must be one of 1.0, 1.1, 1.2 or 1.3"),
        ("min_version", "1.0", "TLS 1.0 is not offered by this Burrow edge"),
        ("max_version", "1.1", "TLS 1.1 is not offered by this Burrow edge"),
        ("mutual_tls_certificate_authorities", ["ca_2abc"], "certificate authority ids"),
        ("mutual_tls_certificate_authorities", ["-----BEGIN CERTIFICATE-----\nno\n"],
         "is not a PEM certificate"),
        ("mutual_tls_verification_strategy", "trust-me", "must be one of require-and-verify"),
        ("mutual_tls_verification_strategy", "require-any", "require-any is not supported"),
        ("mutual_tls_verification_strategy", "request", "request is not supported"),
    ],
)  # fmt: skip
def test_invalid_values_are_refused_with_2204_naming_the_field(
    field: str, value: object, problem: str
) -> None:
    config = base()
    config[field] = value
    if field == "mutual_tls_verification_strategy":
        config["mutual_tls_certificate_authorities"] = [CLIENT_CA.cert_pem]
    error = refused(config)
    assert error.code == ERR_NGROK_2204, error.message
    assert (error.place.field or "").startswith(f"config.{field}")
    assert problem in error.message


def test_an_encrypted_key_is_refused() -> None:
    encrypted = SERVER.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"password1"),
    ).decode()
    error = refused(base(server_private_key=encrypted))
    assert error.code == ERR_NGROK_2204 and "is encrypted" in error.message


def test_min_above_max_is_refused() -> None:
    error = refused(base(min_version="1.3", max_version="1.2"))
    assert error.code == ERR_NGROK_2204 and "below min_version 1.3" in error.message


def test_a_strategy_without_cas_is_refused() -> None:
    error = refused(base(mutual_tls_verification_strategy="require-and-verify"))
    assert error.code == ERR_NGROK_2204
    assert "needs mutual_tls_certificate_authorities" in error.message


def test_an_unknown_field_is_refused_with_2203() -> None:
    error = refused(base(server_certificates="x"))
    assert error.code == ERR_NGROK_2203 and "server_certificates" in error.message


@pytest.mark.parametrize("protocol", ["https", "tcp"])
def test_terminate_tls_is_refused_off_tls_endpoints_with_2205(protocol: str) -> None:
    error = refused(base(), protocol)
    assert error.code == ERR_NGROK_2205
    assert f"not supported for {protocol} endpoints" in error.message


def test_terminate_tls_is_an_on_tcp_connect_action_only() -> None:
    text = json.dumps(
        {"on_http_request": [{"actions": [{"type": "terminate-tls", "config": base()}]}]}
    )
    with pytest.raises(PolicyError) as caught:
        validate(load_policy(text), protocol="https")
    assert caught.value.code == ERR_NGROK_2202


# --- the run ---------------------------------------------------------------------------------
def test_the_phase_run_hands_the_config_to_the_front_door() -> None:
    policy = compiled(base())
    outcome = run_tcp_connect(policy, CONN, endpoint=TLS_ENDPOINT, now=NOW, state=PolicyState())
    assert isinstance(outcome, Continue)
    assert outcome.terminate_tls is config_of(policy)
    assert outcome.trace.rules[0].actions[0].result == "continued"


def test_a_rule_that_does_not_match_leaves_tls_passed_through() -> None:
    text = document(base(), expressions=("conn.client_ip == '198.51.100.1'",))
    policy = validate(load_policy(text), protocol="tls")
    outcome = run_tcp_connect(policy, CONN, endpoint=TLS_ENDPOINT, now=NOW, state=PolicyState())
    assert isinstance(outcome, Continue) and outcome.terminate_tls is None


def test_a_second_terminate_tls_on_one_connection_closes_it() -> None:
    action = {"type": "terminate-tls", "config": base()}
    text = json.dumps(
        {"on_tcp_connect": [{"actions": [action]}, {"name": "again", "actions": [action]}]}
    )
    policy = validate(load_policy(text), protocol="tls")
    outcome = run_tcp_connect(policy, CONN, endpoint=TLS_ENDPOINT, now=NOW, state=PolicyState())
    assert isinstance(outcome, Close)
    assert outcome.reason == "ERR_NGROK_2300"
    assert "a second terminate-tls" in str(outcome.logs[0].metadata["message"])


def test_result_variables_of_the_handshake_are_not_made_up() -> None:
    """The handshake happens after the phase: a later rule reading its results fails that
    connection with a coded error instead of seeing invented values."""
    text = json.dumps(
        {
            "on_tcp_connect": [
                {"actions": [{"type": "terminate-tls", "config": base()}]},
                {
                    "expressions": ["actions.ngrok.terminate_tls.version == '1.3'"],
                    "actions": [{"type": "close-connection"}],
                },
            ]
        }
    )
    policy = validate(load_policy(text), protocol="tls")
    outcome = run_tcp_connect(policy, CONN, endpoint=TLS_ENDPOINT, now=NOW, state=PolicyState())
    assert isinstance(outcome, Close) and outcome.reason == "ERR_NGROK_2254"


# --- what may be shown -------------------------------------------------------------------------
def test_shown_config_redacts_only_the_private_key() -> None:
    config = base(min_version="1.3")
    shown = shown_config("terminate-tls", config)
    assert shown["server_private_key"] == REDACTED
    assert shown["server_certificate"] == SERVER.cert_pem and shown["min_version"] == "1.3"
    assert config["server_private_key"] == SERVER.key_pem  # the original is untouched
    other = {"server_private_key": "not a tls action's"}
    assert shown_config("log", other) is other


def test_holds_private_key() -> None:
    assert holds_private_key(load_policy(document(base())))
    plain = json.dumps({"on_tcp_connect": [{"actions": [{"type": "close-connection"}]}]})
    assert not holds_private_key(load_policy(plain))
