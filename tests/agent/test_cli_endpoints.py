"""agent/cli_endpoints.py: the endpoint `burrow http|tls|tcp UPSTREAM [flags]` asks for, and the
UsageError (naming the flag) for each combination it refuses. Called directly here; the same rules
through argv parsing are in test_cli.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli_endpoints import CLI_ENDPOINT_NAME, http_endpoint, tcp_endpoint, tls_endpoint
from agent.config import MAX_METADATA_LENGTH, EndpointSettings
from agent.errors import UsageError
from protocol.formats.urls import EndpointURL, UpstreamURL

PEM = Path(__file__).parent / "configs" / "pem"  # made by pem/make_pem.py


def test_tcp_endpoint_defaults() -> None:
    endpoint = tcp_endpoint("5432", url=None, name=CLI_ENDPOINT_NAME, pooling=False)
    assert endpoint.name == "command_line"
    assert endpoint.url == "tcp://"
    assert endpoint.endpoint_url.is_random
    assert str(endpoint.upstream.target) == "tcp://localhost:5432"
    assert endpoint.bindings == ("public",)


def test_tcp_endpoint_with_a_url_without_scheme() -> None:
    endpoint = tcp_endpoint("10.0.0.6:5432", url="db.example.com:15432", name="db", pooling=True)
    assert endpoint.url == "tcp://db.example.com:15432"
    assert endpoint.pooling_enabled is True


def test_tcp_endpoint_internal_needs_a_port() -> None:
    with pytest.raises(UsageError, match="needs a port"):
        tcp_endpoint("5432", url="tcp://db.internal", name="db", pooling=False)


def test_http_endpoint_urls() -> None:
    assert http_endpoint("80").url == "https://"  # a random https name
    assert http_endpoint("80", url="http://").url == "http://"
    assert http_endpoint("80", url="app.example.com").url == "https://app.example.com"
    assert http_endpoint("80", url="http://app.example.com:80").url == "http://app.example.com"
    internal = http_endpoint("80", url="api.clinic-a.internal")
    assert (internal.url, internal.binding) == ("https://api.clinic-a.internal", "internal")
    assert tls_endpoint("443").url == "tls://"
    assert tls_endpoint("443", url="secure.example.com").url == "tls://secure.example.com"


def test_terminated_tls_cannot_forward_to_a_tls_upstream() -> None:
    with pytest.raises(UsageError, match="sends it the decrypted bytes"):
        tls_endpoint(
            "tls://db.local:5433", crt=str(PEM / "server.pem"), key=str(PEM / "server.key")
        )


def test_the_endpoint_carries_every_value_given() -> None:
    endpoint = tcp_endpoint(
        "10.0.0.6:5432",
        url="tcp://db.example.com:15432",
        name="db",
        binding="public",
        pooling=True,
        description="the database",
        metadata='{"team": "db"}',
        proxy_protocol=2,
    )
    assert endpoint.name == "db"
    assert endpoint.endpoint_url == EndpointURL("tcp", "db.example.com", 15432)
    assert endpoint.bindings == ("public",)
    assert (endpoint.description, endpoint.metadata) == ("the database", '{"team": "db"}')
    assert endpoint.upstream.target == UpstreamURL("tcp", "10.0.0.6", 5432)
    assert endpoint.upstream.url == "tcp://10.0.0.6:5432"
    assert endpoint.upstream.proxy_protocol == 2
    assert endpoint.upstream.protocol is None
    # What only a config file can set is off for a command-line endpoint.
    assert endpoint.traffic_policy is None
    assert endpoint.traffic_policy_file is None
    assert endpoint.agent_tls_termination is None
    assert endpoint.inspect is False


@pytest.mark.parametrize(
    ("make", "url", "message"),
    [
        (
            http_endpoint,
            "tcp://",
            "`burrow http` serves https:// and http:// addresses; write "
            "https://HOST or http://HOST (or use `burrow tcp`)",
        ),
        (
            tls_endpoint,
            "https://x.example.com",
            "`burrow tls` serves tls:// addresses; write tls://HOST (or use `burrow http`)",
        ),
        (
            tcp_endpoint,
            "tls://x.example.com",
            "`burrow tcp` serves tcp:// addresses; write tcp://HOST:PORT (or use `burrow tls`)",
        ),
    ],
)
def test_each_command_serves_only_its_own_schemes(
    make: Callable[..., EndpointSettings], url: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        make("443", url=url)
    assert str(caught.value) == f"--url {url!r}: {message}"


def test_a_url_that_does_not_parse_names_the_flag() -> None:
    with pytest.raises(UsageError, match=r"^--url: "):
        http_endpoint("80", url="https://exa mple.com")


def test_the_binding_is_inferred_or_given() -> None:
    assert http_endpoint("80", url="app.example.com").bindings == ("public",)
    assert http_endpoint("80", url="api.svc.internal").bindings == ("internal",)
    with pytest.raises(UsageError, match=r"^--url: .*\.internal"):
        http_endpoint("80", url="app.example.com", binding="internal")


def test_a_bad_upstream_names_it() -> None:
    with pytest.raises(UsageError, match=r"^upstream 'localhost': .*has no port"):
        tcp_endpoint("localhost")


def test_upstream_protocol_is_http1_or_nothing() -> None:
    assert http_endpoint("80").upstream.protocol is None
    assert http_endpoint("80", upstream_protocol="http1").upstream.protocol == "http1"
    with pytest.raises(UsageError, match="HTTP/2 to the upstream is not supported yet"):
        http_endpoint("80", upstream_protocol="http2")
    with pytest.raises(UsageError) as caught:
        http_endpoint("80", upstream_protocol="spdy")
    assert str(caught.value) == "--upstream-protocol 'spdy': use http1"


def test_upstream_tls_verification() -> None:
    default = http_endpoint("https://localhost:8443")
    assert (default.upstream.tls_verify, default.upstream.tls_verify_cas) == (True, None)
    off = http_endpoint("https://localhost:8443", tls_verify=False)
    assert off.upstream.tls_verify is False
    cas = http_endpoint(
        "https://localhost:8443", tls_verify=True, tls_verify_cas=str(PEM / "ca.pem")
    )
    assert (cas.upstream.tls_verify, cas.upstream.tls_verify_cas) == (True, str(PEM / "ca.pem"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"tls_verify": True},
            "--upstream-tls-verify applies to an https:// upstream, and the "
            "upstream is http://localhost:8080; write it as https://HOST[:PORT] or drop the flag",
        ),
        ({"tls_verify": False}, "--upstream-tls-verify applies to an https:// upstream"),
        ({"tls_verify_cas": "ca.pem"}, "--upstream-tls-verify-cas applies to an https:// upstream"),
    ],
)
def test_upstream_tls_flags_need_an_https_upstream(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        http_endpoint("8080", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_upstream_tls_verify_cas_problems() -> None:
    with pytest.raises(UsageError, match="has no effect with --upstream-tls-verify=false"):
        http_endpoint("https://", tls_verify=False, tls_verify_cas=str(PEM / "ca.pem"))
    with pytest.raises(UsageError, match=r"^--upstream-tls-verify-cas nope\.pem: no such file$"):
        http_endpoint("https://", tls_verify_cas="nope.pem")
    with pytest.raises(UsageError, match=r"^--upstream-tls-verify-cas .*server\.key: .*no PEM"):
        http_endpoint("https://", tls_verify_cas=str(PEM / "server.key"))


def test_relative_files_are_resolved_from_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(PEM)
    endpoint = tls_endpoint("5432", crt="server.pem", key="server.key", mutual_tls_cas="ca.pem")
    termination = endpoint.agent_tls_termination
    assert termination is not None
    assert termination.server_certificate == str((PEM / "server.pem").resolve())
    assert termination.server_private_key == str((PEM / "server.key").resolve())
    assert termination.mutual_tls_certificate_authorities == (str((PEM / "ca.pem").resolve()),)


def test_tls_termination_without_client_certificates() -> None:
    endpoint = tls_endpoint("5432", crt=str(PEM / "server.pem"), key=str(PEM / "server.key"))
    termination = endpoint.agent_tls_termination
    assert termination is not None
    assert termination.mutual_tls_certificate_authorities == ()
    assert endpoint.upstream.target == UpstreamURL("tcp", "localhost", 5432)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crt": "server.pem"}, "--crt and --key go together: give both"),
        ({"key": "server.key"}, "--crt and --key go together: give both"),
        ({"mutual_tls_cas": "ca.pem"}, "--mutual-tls-cas needs --crt and --key"),
        ({"crt": "missing.pem", "key": "server.key"}, "--crt missing.pem: no such file"),
        ({"crt": "server.pem", "key": "missing.key"}, "--key missing.key: no such file"),
        ({"crt": "server.pem", "key": "other.key"}, "--key: does not match server_certificate"),
        ({"crt": "server.key", "key": "server.key"}, "--crt: holds no PEM certificate"),
        (
            {"crt": "server.pem", "key": "server.key", "mutual_tls_cas": "other.key"},
            "--mutual-tls-cas: holds no PEM certificate",
        ),
    ],
)
def test_bad_tls_termination_names_the_flag(
    kwargs: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(PEM)
    with pytest.raises(UsageError) as caught:
        tls_endpoint("5432", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_name_description_and_metadata_limits() -> None:
    with pytest.raises(UsageError, match=r"^--name must not be empty$"):
        tcp_endpoint("22", name="  ")
    fits = "m" * MAX_METADATA_LENGTH
    assert tcp_endpoint("22", metadata=fits, description=fits).metadata == fits
    for flag, kwargs in (
        ("--description", {"description": fits + "m"}),
        ("--metadata", {"metadata": fits + "m"}),
    ):
        with pytest.raises(UsageError) as caught:
            http_endpoint("80", **kwargs)  # type: ignore[arg-type]
        assert str(caught.value) == (
            f"{flag} is {MAX_METADATA_LENGTH + 1} characters long; "
            f"the limit is {MAX_METADATA_LENGTH}"
        )


def test_the_default_name_is_ngroks() -> None:
    assert CLI_ENDPOINT_NAME == "command_line"
    assert tls_endpoint("443").name == CLI_ENDPOINT_NAME
