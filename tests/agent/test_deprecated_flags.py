"""ngrok's deprecated endpoint flags (agent/deprecated_flags.py): what each maps to, what is
refused, and, through a real edge and agent, the warning and the URL bound."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import _expand_bool_flags, _parser, endpoint_from_argv, run
from agent.deprecated_flags import apply_deprecated_flags
from agent.errors import UsageError
from tests.e2e.harness import SHARED_PORT_RANGE, Edge, make_agent, make_edge
from tests.e2e.upstreams import HttpUpstream


def _warnings(*argv: str) -> list[str]:
    args = _parser().parse_args(_expand_bool_flags(argv))
    return apply_deprecated_flags(args, args.command)


@pytest.mark.parametrize(
    ("argv", "url"),
    [
        (("http", "8080", "--domain", "shop.example.com"), "https://shop.example.com"),
        (("http", "8080", "--hostname", "shop.example.com"), "https://shop.example.com"),
        (("http", "8080", "--domain", "a.example.com", "--scheme", "http"), "http://a.example.com"),
        (("http", "8080", "--scheme", "http"), "http://"),
        (("tls", "443", "--domain", "db.example.com"), "tls://db.example.com"),
        (
            ("tcp", "22", "--remote-addr", "1.tcp.example.com:20022"),
            "tcp://1.tcp.example.com:20022",
        ),
    ],
)
def test_host_flags_map_to_url(argv: tuple[str, ...], url: str) -> None:
    assert endpoint_from_argv(argv).url == url


def test_each_deprecated_flag_used_gives_one_warning() -> None:
    assert _warnings("http", "8080", "--domain", "a.example.com") == [
        "--domain is deprecated; use --url https://a.example.com"
    ]
    assert _warnings("http", "8080", "--hostname", "a.example.com", "--scheme", "http") == [
        "--hostname is deprecated; use --url http://a.example.com",
        "--scheme is deprecated; use --url http://a.example.com",
    ]
    assert _warnings("tcp", "22", "--proxy-proto", "2") == [
        "--proxy-proto is deprecated; use --upstream-proxy-protocol 2"
    ]
    assert _warnings("http", "8080", "--url", "https://a.example.com") == []


def test_proxy_proto_and_policy_file_map_to_their_replacements(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text("on_http_request: []\n")
    endpoint = endpoint_from_argv(
        ["http", "8080", "--proxy-proto", "1", "--policy-file", str(policy)]
    )
    assert endpoint.upstream.proxy_protocol == 1
    assert endpoint.traffic_policy_file == str(policy)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("http", "8080", "--subdomain", "shop"), "--subdomain is a deprecated ngrok flag"),
        (("http", "8080", "--basic-auth", "u:p"), "use a Traffic Policy basic-auth action"),
        (("tcp", "22", "--region", "eu"), "Burrow has no regions"),
        (("http", "8080", "--scheme", "http,https"), "one endpoint per command"),
        (
            ("http", "8080", "--domain", "a.example.com", "--url", "https://b.example.com"),
            "--url and the deprecated --domain both give the URL",
        ),
        (
            ("http", "8080", "--domain", "a.example.com", "--hostname", "b.example.com"),
            "--domain and --hostname both give the host",
        ),
        (
            ("tcp", "22", "--proxy-proto", "2", "--upstream-proxy-protocol", "1"),
            "--upstream-proxy-protocol and the deprecated --proxy-proto are both given",
        ),
        (("tcp", "22", "--proxy-proto", "3"), "--proxy-proto 3: expected 1 or 2"),
    ],
)
def test_refusals_name_the_flag(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        endpoint_from_argv(argv)
    assert message in str(caught.value)


def test_flags_of_other_commands_are_still_unknown() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run(["tcp", "22", "--domain", "a.example.com"], {}, out, err) == 1
    assert "unrecognized arguments: --domain" in err.getvalue()


def test_deprecated_flags_are_hidden_from_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["http", "--help"], {}, io.StringIO(), io.StringIO()) == 0
    help_text = capsys.readouterr().out  # argparse prints help to sys.stdout
    assert "--url" in help_text
    for hidden in ("--domain", "--hostname", "--subdomain", "--scheme", "--basic-auth"):
        assert hidden not in help_text


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    running = make_edge(tmp_path_factory.mktemp("flags-edge"), port_range=SHARED_PORT_RANGE)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_domain_binds_the_url_and_warns(edge: Edge, tmp_path: Path) -> None:
    upstream = HttpUpstream()
    agent = make_agent(
        edge,
        edge.credential(),
        f"127.0.0.1:{upstream.port}",
        tmp_path,
        "--domain",
        "legacy.flags.internal",
        command="http",
    )
    try:
        agent.start()
        assert agent.url == "https://legacy.flags.internal"
        assert "--domain is deprecated; use --url https://legacy.flags.internal" in agent.log()
    finally:
        agent.kill()
        upstream.close()
