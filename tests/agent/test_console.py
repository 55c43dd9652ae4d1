"""agent.console: when the view shows, where logs go meanwhile, the reporters' lines, the rates,
the request rows and log lines, and the view's terminal handling (in memory, autojump clock)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from agent.cli_endpoints import http_endpoint, tcp_endpoint
from agent.config import AgentSettings
from agent.console import (
    REDRAW_INTERVAL,
    Console,
    ConsoleReporter,
    RateMeter,
    StructuredReporter,
    console_wanted,
    log_request,
    reporter_for,
    request_row,
    snapshot_of,
    view_log_sink,
)
from agent.inspector.capture import CaptureStore, ConnectionCapture, Exchange
from agent.metrics import AgentMetrics
from agent.session import Agent, Reporter
from tests.protocol.formats.test_logs import parse_logfmt


@pytest.mark.parametrize(
    ("setting", "tty", "sink", "wanted"),
    [
        ("iftty", True, "stderr", True),
        ("iftty", True, "/var/log/burrow.log", True),
        ("iftty", True, "stdout", False),  # told to log to stdout: stdout is the log's
        ("iftty", False, "stderr", False),
        (True, False, "stderr", True),  # forced
        (True, True, "stdout", True),
        (False, True, "stderr", False),
    ],
)
def test_console_wanted(setting: bool | str, tty: bool, sink: str, wanted: bool) -> None:
    assert console_wanted(setting, stdout_tty=tty, sink=sink) is wanted


def test_logs_never_reach_the_views_terminal() -> None:
    assert view_log_sink("/var/log/burrow.log", stderr_tty=True) == "/var/log/burrow.log"
    assert view_log_sink("stderr", stderr_tty=False) == "stderr"  # redirected: kept
    assert view_log_sink("stderr", stderr_tty=True) == "false"
    assert view_log_sink("stdout", stderr_tty=False) == "false"
    assert view_log_sink("false", stderr_tty=True) == "false"


def test_rates_over_their_windows() -> None:
    meter = RateMeter()
    assert meter.rate(0.0, 0, 60.0) == 0.0  # nothing seen yet
    for second in range(0, 301):
        meter.observe(float(second), second * 2)  # two new connections a second
    assert meter.rate(300.0, 600, 60.0) == pytest.approx(2.0)
    assert meter.rate(300.0, 600, 300.0) == pytest.approx(2.0)
    # a burst of 60 in the last second shows in rt1 more than in rt5
    assert meter.rate(300.0, 660, 60.0) == pytest.approx(3.0)
    assert meter.rate(300.0, 660, 300.0) == pytest.approx(2.2)


def test_rate_samples_are_bounded_and_thinned() -> None:
    meter = RateMeter()
    for tick in range(100_000):
        meter.observe(tick * 0.25, tick)
    assert len(meter._samples) <= 301
    assert meter.rate(99_999 * 0.25, 99_999, 60.0) == pytest.approx(4.0, rel=0.02)


def _exchange(request: bytes, response: bytes | None) -> Exchange:
    store = CaptureStore(10_000)
    capture = ConnectionCapture(
        store, tunnel_name="web", remote_addr="192.0.2.7:5555", clock=lambda: (0.0, 1.0)
    )
    capture.request_bytes(request)
    if response is not None:
        capture.response_bytes(response)
    return store.newest()[0]


def test_request_rows() -> None:
    done = _exchange(
        b"GET /api/users?page=2 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    )
    row = request_row(done)
    assert (row.method, row.path, row.status, row.reason, row.endpoint) == (
        "GET",
        "/api/users?page=2",
        404,
        "Not Found",
        "web",
    )
    assert row.duration == 0.0
    waiting = request_row(_exchange(b"POST /upload HTTP/1.1\r\nContent-Length: 3\r\n\r\n", None))
    assert (waiting.method, waiting.path, waiting.status, waiting.duration) == (
        "POST",
        "/upload",
        None,
        None,
    )


@pytest.fixture
def console_log() -> Iterator[io.StringIO]:
    from protocol.formats.logs import JsonFormatter

    logger = logging.getLogger("agent.console")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    old = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


def test_a_finished_request_is_one_info_line(console_log: io.StringIO) -> None:
    lines: list[Exchange] = []

    def completed(exchange: Exchange) -> None:
        lines.append(exchange)
        log_request(exchange)

    store = CaptureStore(10_000, on_complete=completed)
    capture = ConnectionCapture(
        store, tunnel_name="web", remote_addr="192.0.2.7:5555", clock=lambda: (0.0, 1.0)
    )
    capture.request_bytes(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
    assert lines == []  # not before their responses end
    capture.response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    capture.response_bytes(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    records = [json.loads(line) for line in console_log.getvalue().splitlines()]
    assert [(r["lvl"], r["msg"], r["endpoint"]) for r in records] == [
        ("info", "GET /a 200 OK 0ms from 192.0.2.7:5555", "web"),
        ("info", "GET /b 500 Oops 0ms from 192.0.2.7:5555", "web"),
    ]


def test_structured_reporters_write_one_parseable_line_each() -> None:
    out, err = io.StringIO(), io.StringIO()
    reporter = reporter_for("json", out, err)
    reporter.forwarding("https://a.example", "http://localhost:8080")
    reporter.notice("stopped")
    line = json.loads(out.getvalue())
    assert (line["lvl"], line["msg"]) == (
        "info",
        "Forwarding https://a.example -> http://localhost:8080",
    )
    assert json.loads(err.getvalue())["msg"] == "stopped"

    out, err = io.StringIO(), io.StringIO()
    reporter = reporter_for("logfmt", out, err)
    assert isinstance(reporter, StructuredReporter)
    reporter.forwarding("tcp://e.example:20001", "localhost:22")
    reporter.notice('the edge said "bye"')
    assert parse_logfmt(out.getvalue().rstrip("\n"))["msg"] == (
        "Forwarding tcp://e.example:20001 -> localhost:22"
    )
    assert parse_logfmt(err.getvalue().rstrip("\n"))["msg"] == 'the edge said "bye"'

    assert type(reporter_for("term", out, err)) is Reporter  # plain lines, as before


def test_the_console_reporter_holds_notices_until_the_view_closes(
    console_log: io.StringIO,
) -> None:
    out, err = io.StringIO(), io.StringIO()
    reporter = ConsoleReporter(out, err)
    reporter.forwarding("https://a.example", "http://localhost:8080")
    reporter.notice("session lost; reconnecting in 1.0s")
    reporter.notice("stopped")
    assert (out.getvalue(), err.getvalue()) == ("", "")  # the view owns the terminal
    assert reporter.last_notice == "stopped"
    messages = [json.loads(line)["msg"] for line in console_log.getvalue().splitlines()]
    assert messages == [
        "Forwarding https://a.example -> http://localhost:8080",
        "session lost; reconnecting in 1.0s",
        "stopped",
    ]
    reporter.finish()
    assert err.getvalue() == "burrow: stopped\n"
    reporter.notice("later")  # after the view: straight out
    assert err.getvalue() == "burrow: stopped\nburrow: later\n"


def _agent(*, web: bool = True) -> tuple[Agent, ConsoleReporter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    reporter = ConsoleReporter(out, err)
    settings = AgentSettings(
        connect_url="edge.example.org:443", web_addr=("127.0.0.1", 4040) if web else None
    )
    endpoints = (http_endpoint("8080", name="web"), tcp_endpoint("5432", name="db"))
    return Agent(settings, endpoints, reporter=reporter), reporter, out, err


def test_snapshot_of_an_agent_before_it_connects() -> None:
    agent, _, _, _ = _agent()
    metrics = AgentMetrics()
    metrics.stream_opened("web")
    metrics.stream_opened("db")
    metrics.stream_closed("db")
    metrics.relayed("db", inbound=10, outbound=20)
    snapshot = snapshot_of(
        agent,
        metrics=metrics,
        captures=CaptureStore(10_000),
        rates=RateMeter(),
        notice="cannot connect",
        now=5.0,
    )
    assert snapshot.status == "connecting"
    assert snapshot.notice == "cannot connect"
    assert snapshot.web_url == "http://127.0.0.1:4040"
    assert [(e.name, e.url, e.upstream) for e in snapshot.endpoints] == [
        ("web", "", "http://localhost:8080"),
        ("db", "", "localhost:5432"),
    ]
    counts = snapshot.counts
    assert (counts.total, counts.open, counts.bytes_in, counts.bytes_out) == (2, 1, 10, 20)
    assert snapshot.requests == ()  # an inspected http endpoint: the section shows, empty
    no_capture = snapshot_of(
        agent, metrics=metrics, captures=None, rates=RateMeter(), notice="", now=5.0
    )
    assert no_capture.requests is None


_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def test_the_view_draws_and_restores_the_terminal_when_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    agent, reporter, out, err = _agent()
    console = Console(
        agent, reporter, out, metrics=AgentMetrics(), captures=None, clock=trio.current_time
    )
    reporter.notice("stopped")
    with trio.fail_after(60):
        with trio.move_on_after(10 * REDRAW_INTERVAL):
            await console.run()
    text = out.getvalue()
    assert text.startswith("\x1b[?1049h\x1b[?25l")  # alternate screen, cursor hidden
    assert text.endswith("\x1b[?25h\x1b[?1049l")  # and back, even though it was cancelled
    screen = _CSI.sub("", text)
    assert "Session Status                connecting (stopped)" in screen
    assert "Connect URL                   edge.example.org:443" in screen
    # nothing changed, so it did not redraw every tick: one frame, plus the periodic refresh
    assert text.count("\x1b[H") <= 2
    assert err.getvalue() == "burrow: stopped\n"  # printed once the view had closed
