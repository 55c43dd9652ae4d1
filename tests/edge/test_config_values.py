"""The edge config's value parsers: durations, sizes, host:port and port ranges."""

from __future__ import annotations

import pytest

from edge.config_values import parse_duration, parse_hostport, parse_port_range, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1h2m3s4ms", 3723.004),
        ("1.5s", 1.5),
        ("0", 0.0),
        ("45", 45.0),
        (" 10s ", 10.0),
        (7, 7.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "s", "10 s", "10sec", "1m30", "-1s", "1e3s", "\u0661s", "ms", "1.s", "10S"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), "9" * 400])
def test_parse_duration_rejects_negative_and_infinite(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parsers_reject_booleans() -> None:
    with pytest.raises(TypeError):
        parse_duration(True)
    with pytest.raises(TypeError):
        parse_size(False)
    with pytest.raises(TypeError):
        parse_port_range(True)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64MiB", 64 * 1024**2),
        ("512 KiB", 512 * 1024),
        ("1GiB", 1024**3),
        ("1KB", 1000),
        ("2MB", 2_000_000),
        ("1GB", 1_000_000_000),
        ("1.5KiB", 1536),
        ("100B", 100),
        ("4096", 4096),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "64Mb", "64 mib", "-1", "1.5", "64  MiB", "1e3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "hostport"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("localhost:80", ("localhost", 80)),
        ("Connect.Burrow.Localhost:443", ("connect.burrow.localhost", 443)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::]:0", ("::", 0)),
        ("[2001:DB8::1]:65535", ("2001:db8::1", 65535)),
        ("0.0.0.0:443", ("0.0.0.0", 443)),
    ],
)
def test_parse_hostport(text: str, hostport: tuple[str, int]) -> None:
    assert parse_hostport(text) == hostport


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1",
        ":8443",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:\uff18\uff10",
        "::1:8443",
        "[::1]8443",
        "[::1",
        "[not-ipv6]:80",
        "bad_host:80",
        "[::1]:",
    ],
)
def test_parse_hostport_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hostport(text)


@pytest.mark.parametrize(
    ("text", "ports"),
    [
        ("20000-20999", range(20000, 21000)),
        ("1-65535", range(1, 65536)),
        ("8080", range(8080, 8081)),
        ("5 - 7", range(5, 8)),
        (9000, range(9000, 9001)),
    ],
)
def test_parse_port_range(text: str | int, ports: range) -> None:
    assert parse_port_range(text) == ports


@pytest.mark.parametrize("text", ["", "0-10", "1-65536", "20-10", "a-b", "10-", "-10", "1-2-3"])
def test_parse_port_range_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_port_range(text)
