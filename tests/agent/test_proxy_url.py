"""agent.proxy_url: parsing proxy URLs, and choosing config vs environment vs NO_PROXY."""

from __future__ import annotations

import pytest

from agent.proxy_url import ProxyURL, ProxyURLError, bypasses_proxy, choose_proxy, parse_proxy_url

EDGE = "connect.acme.example"


def test_http_url_with_credentials_is_percent_decoded() -> None:
    proxy = parse_proxy_url("http://clinic%40a:p%3Ass@proxy.lan:3128")
    assert (proxy.scheme, proxy.host, proxy.port) == ("http", "proxy.lan", 3128)
    assert (proxy.username, proxy.password) == ("clinic@a", "p:ss")
    assert proxy.has_credentials
    assert proxy.address == "proxy.lan:3128"


def test_credentials_are_never_printed() -> None:
    proxy = parse_proxy_url("socks5://alice:hunter22@10.0.0.1:1080")
    assert "hunter22" not in repr(proxy)
    assert "hunter22" not in str(proxy)
    assert str(proxy) == "socks5://alice:***@10.0.0.1:1080"


@pytest.mark.parametrize(
    ("text", "scheme", "port"),
    [
        ("http://proxy.lan", "http", 80),
        ("https://proxy.lan", "https", 443),
        ("socks5://proxy.lan", "socks5", 1080),
        ("socks5h://proxy.lan", "socks5", 1080),
        ("HTTP://proxy.lan:8080/", "http", 8080),
    ],
)
def test_default_ports_and_schemes(text: str, scheme: str, port: int) -> None:
    proxy = parse_proxy_url(text)
    assert (proxy.scheme, proxy.port) == (scheme, port)


def test_ipv6_proxy_host() -> None:
    proxy = parse_proxy_url("http://[::1]:3128")
    assert proxy.host == "::1"
    assert proxy.address == "[::1]:3128"


def test_user_without_password_sends_an_empty_password() -> None:
    proxy = parse_proxy_url("http://alice@proxy.lan:3128")
    assert (proxy.username, proxy.password) == ("alice", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("socks4://proxy.lan:1080", "scheme socks4:// is not supported"),
        ("proxy.lan:3128", "is not supported"),  # the config needs a scheme
        ("http://", "names no proxy host"),
        ("http://proxy.lan:3128/some/path", "must be just scheme://"),
        ("http://proxy.lan:3128/?a=b", "must be just scheme://"),
        ("http://proxy.lan:99999", "is not a URL"),
        ("socks5://" + "u" * 256 + ":p@proxy.lan", "SOCKS5 user name must be 1 to 255 bytes"),
        ("socks5://alice:@proxy.lan", "SOCKS5 password must be 1 to 255 bytes"),
    ],
)
def test_unusable_urls_say_why(text: str, problem: str) -> None:
    with pytest.raises(ProxyURLError, match=problem):
        parse_proxy_url(text)


def test_configured_proxy_wins_over_the_environment_and_no_proxy() -> None:
    configured = parse_proxy_url("socks5://proxy.lan:1080")
    env = {"HTTPS_PROXY": "http://other:3128", "NO_PROXY": EDGE}
    assert choose_proxy(configured, env, EDGE) is configured


def test_no_proxy_anywhere_means_direct() -> None:
    assert choose_proxy(None, {"HTTP_PROXY": "http://only-for-http:3128"}, EDGE) is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HTTPS_PROXY": "http://upper:3128"}, "HTTPS_PROXY"),
        ({"https_proxy": "http://lower:3128", "HTTPS_PROXY": "http://upper:3128"}, "https_proxy"),
        ({"ALL_PROXY": "socks5://all:1080"}, "ALL_PROXY"),
        ({"all_proxy": "socks5://all:1080", "ALL_PROXY": "http://x:1"}, "all_proxy"),
        ({"HTTPS_PROXY": "http://https:3128", "ALL_PROXY": "socks5://all:1080"}, "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "", "ALL_PROXY": "socks5://all:1080"}, "ALL_PROXY"),
    ],
)
def test_environment_variables_in_curls_order(env: dict[str, str], variable: str) -> None:
    proxy = choose_proxy(None, env, EDGE)
    assert proxy is not None
    assert proxy.source == variable
    assert proxy == parse_proxy_url(env[variable], source=variable)


def test_environment_value_without_a_scheme_is_http() -> None:
    proxy = choose_proxy(None, {"HTTPS_PROXY": "proxy.lan:3128"}, EDGE)
    assert proxy == ProxyURL(scheme="http", host="proxy.lan", port=3128, source="HTTPS_PROXY")


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ProxyURLError, match=r"^ALL_PROXY scheme socks4:// is not supported"):
        choose_proxy(None, {"ALL_PROXY": "socks4://proxy.lan"}, EDGE)


def test_no_proxy_bypasses_the_environment_proxy() -> None:
    env = {"HTTPS_PROXY": "http://proxy.lan:3128", "NO_PROXY": "localhost,.acme.example"}
    assert choose_proxy(None, env, EDGE) is None
    assert choose_proxy(None, env, "connect.other.example") is not None


def test_lower_case_no_proxy_is_read_first() -> None:
    env = {"HTTPS_PROXY": "http://proxy.lan:3128", "no_proxy": "other", "NO_PROXY": EDGE}
    assert choose_proxy(None, env, EDGE) is not None


@pytest.mark.parametrize(
    ("no_proxy", "host", "bypass"),
    [
        ("*", EDGE, True),
        ("*, other", EDGE, False),  # `*` counts only alone, as in curl
        ("acme.example", EDGE, True),
        (".acme.example", EDGE, True),
        ("acme.example", "acme.example", True),
        (".acme.example", "acme.example", True),
        ("cme.example", EDGE, False),  # suffixes match on a dot boundary only
        ("ACME.Example.", "Connect.ACME.example.", True),
        ("other.example localhost\tacme.example", EDGE, True),  # white space separates too
        ("other.example,,", EDGE, False),
        ("acme.example:443", EDGE, False),  # ports are not understood
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.0.0.0/8", "11.1.2.3", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.30", False),
        ("[::1]", "::1", True),
        ("fd00::/8", "[fd12::1]", True),
        ("10.0.0.0/8", EDGE, False),
        ("", EDGE, False),
    ],
)
def test_no_proxy_matching_as_curl_does(no_proxy: str, host: str, bypass: bool) -> None:
    assert bypasses_proxy(no_proxy, host) is bypass
