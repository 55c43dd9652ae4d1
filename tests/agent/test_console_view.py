"""The console view's pure renderer: snapshot in, fixed-width lines out."""

from __future__ import annotations

import re
from dataclasses import replace

from agent.console_view import (
    ANSI,
    PLAIN,
    ConnectionCounts,
    ConsoleSnapshot,
    EndpointRow,
    RequestRow,
    render,
)

_SGR = re.compile(r"\x1b\[[0-9;]*m")

BUSY = ConsoleSnapshot(
    status="online",
    notice="",
    version="0.1.0",
    connect_url="edge.example.org:443",
    latency=0.0123,
    web_url="http://127.0.0.1:4040",
    endpoints=(
        EndpointRow(
            name="web", url="https://a1b2.edge.example.org", upstream="http://localhost:8080"
        ),
        EndpointRow(name="db", url="", upstream="localhost:5432"),
    ),
    counts=ConnectionCounts(
        total=3, open=1, rate1=0.05, rate5=0.01, bytes_in=1234, bytes_out=3_456_789
    ),
    requests=(
        RequestRow(
            time="10:00:02",
            method="POST",
            path="/upload",
            status=None,
            reason="",
            duration=None,
            endpoint="web",
        ),
        RequestRow(
            time="10:00:01",
            method="GET",
            path="/api/users",
            status=200,
            reason="OK",
            duration=0.012,
            endpoint="web",
        ),
    ),
)

EMPTY = ConsoleSnapshot(
    status="connecting",
    notice="cannot connect to the edge at edge.example.org:443: refused",
    version="0.1.0",
    connect_url="edge.example.org:443",
    latency=None,
    web_url=None,
    endpoints=(),
    counts=ConnectionCounts(total=0, open=0, rate1=0.0, rate5=0.0, bytes_in=0, bytes_out=0),
    requests=(),
)


def _stripped(lines: list[str]) -> list[str]:
    return [line.rstrip() for line in lines]


def test_a_busy_agent_at_80_columns() -> None:
    lines = render(BUSY, width=80, height=24)
    assert _stripped(lines) == [
        "burrow                                                          (Ctrl+C to quit)",
        "",
        "Session Status                online",
        "Version                       0.1.0",
        "Connect URL                   edge.example.org:443",
        "Latency                       12ms",
        "Web Interface                 http://127.0.0.1:4040",
        "Forwarding                    https://a1b2.edge.example.org -> http://localhost~",
        "Forwarding                    db: not bound yet -> localhost:5432",
        "",
        "Connections                   ttl     opn     rt1     rt5     in      out",
        "                              3       1       0.05    0.01    1.2KB   3.5MB",
        "",
        "HTTP Requests",
        "-------------",
        "",
        "10:00:02  POST   /upload                             ...",
        "10:00:01  GET    /api/users                          200 OK                 12ms",
    ]


def test_every_line_is_exactly_the_width() -> None:
    for width in (20, 40, 80, 132):
        lines = render(BUSY, width=width, height=50)
        assert {len(line) for line in lines} == {width}, width


def test_narrow_screens_cut_with_a_tilde_and_shrink_the_labels() -> None:
    lines = _stripped(render(BUSY, width=40, height=50))
    assert lines[2] == "Session Sta~ online"
    assert lines[7] == "Forwarding   https://a1b2.edge.example.~"
    assert lines[6] == "Web Interfa~ http://127.0.0.1:4040"


def test_a_long_path_is_cut_and_the_status_keeps_its_column() -> None:
    long = replace(BUSY.requests[1], path="/" + "x" * 200)  # type: ignore[index]
    lines = render(replace(BUSY, requests=(long,)), width=80, height=50)
    row = lines[-1]
    assert row.startswith("10:00:01  GET    /xxxx")
    assert "x~ 200 OK" in row
    assert row.endswith("12ms") and len(row) == 80


def test_height_limits_the_request_list_first() -> None:
    many = tuple(
        replace(BUSY.requests[1], path=f"/r{index}")  # type: ignore[index]
        for index in range(50)
    )
    lines = _stripped(render(replace(BUSY, requests=many), width=80, height=20))
    assert len(lines) == 20
    assert lines[-4].startswith("10:00:01  GET    /r0 ")  # newest first, as given
    assert lines[-1].startswith("10:00:01  GET    /r3 ")
    assert lines[2] == "Session Status                online"  # the header stays whole


def test_empty_states() -> None:
    lines = _stripped(render(EMPTY, width=120, height=30))
    assert lines[2] == (
        "Session Status                connecting (cannot connect to the edge at "
        "edge.example.org:443: refused)"
    )
    assert lines[5] == "Latency                       -"
    assert not any(line.startswith("Web Interface") for line in lines)  # web_addr: false
    assert lines[6] == "Forwarding                    (no endpoints)"
    assert lines[9] == "                              0       0       0.00    0.00    0B      0B"
    assert lines[-1] == "(no requests yet)"


def test_no_http_section_when_nothing_is_captured() -> None:
    lines = _stripped(render(replace(BUSY, requests=None), width=80, height=30))
    assert "HTTP Requests" not in lines
    assert lines[-1].startswith("                              3       1")


def test_a_tiny_height_gives_that_many_lines() -> None:
    assert len(render(BUSY, width=80, height=3)) == 3
    assert render(BUSY, width=80, height=0) == []


def test_plain_style_has_no_escape_codes_and_ansi_adds_only_colour() -> None:
    plain = render(BUSY, width=80, height=24, style=PLAIN)
    assert not any("\x1b" in line for line in plain)
    coloured = render(BUSY, width=80, height=24, style=ANSI)
    assert "\x1b[32monline\x1b[0m" in coloured[2]
    assert "\x1b[32m200 OK" in coloured[-1]  # 2xx in green
    assert [_SGR.sub("", line) for line in coloured] == plain


def test_statuses_and_sizes() -> None:
    error = replace(BUSY.requests[1], status=502, reason="Bad Gateway", duration=2.5)  # type: ignore[index]
    snapshot = replace(
        BUSY,
        requests=(error,),
        counts=replace(BUSY.counts, bytes_in=999, bytes_out=12_000_000_000),
    )
    lines = render(snapshot, width=80, height=30, style=ANSI)
    assert "\x1b[31m502 Bad Gateway" in lines[-1]
    assert lines[-1].endswith("2.50s")
    plain = _stripped(render(snapshot, width=80, height=30))
    assert plain[11].split()[-2:] == ["999B", "12.0GB"]


def test_control_characters_cannot_steer_the_terminal() -> None:
    hostile = replace(
        BUSY.requests[1],  # type: ignore[index]
        path="/\x1b[2J\x07x",
        reason="OK\x1b]0;pwned\x07",
    )
    lines = render(replace(BUSY, requests=(hostile,)), width=80, height=50)
    assert not any("\x1b" in line or "\x07" in line for line in lines)
    assert "/?[2J?x" in lines[-1] and "200 OK?]0;pwned?" in lines[-1]
