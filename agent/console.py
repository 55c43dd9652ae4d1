"""The agent's terminal: the live status view on a TTY, structured lines elsewhere.

Theory of operation
-------------------
`console_wanted` decides from ngrok's `console_ui` (`true`, `false`, `iftty`, the default):
`iftty` shows the view when stdout is a terminal and the log sink is not stdout (a program told
to log to stdout keeps stdout for its lines, as ngrok's agent does); `true` always shows it;
`false` never does.

With the view on, `Console.run` owns the terminal: it switches to the alternate screen, hides
the cursor and turns off echo (so typed keys do not smear the screen; Ctrl-C still signals),
then redraws `agent.console_view.render`'s lines at most `1 / REDRAW_INTERVAL` times a second
(only when they changed, or once a `REFRESH_INTERVAL` for the clock-like fields). On return,
cancellation (Ctrl-C ends the agent, which cancels it) or an error, it restores the screen,
the cursor and echo, and then prints the agent's last notice (`burrow: stopped`) on stderr.
Log lines never go to the view's terminal: `view_log_sink` keeps a log file, keeps stderr when
it is not that terminal, and otherwise drops them (`false`), as ngrok does.

Without the view: `reporter_for` gives the plain `Reporter` for the `term` format (the
`Forwarding` lines scripts parse), and for `logfmt` and `json` a `StructuredReporter` whose
`Forwarding` and notice lines are records in that format, so every line the agent writes
parses. Each finished HTTP request is one info line (`log_request`, fed by the capture
store), and each connection one more (agent.forward).
"""

from __future__ import annotations

import contextlib
import logging
import os
import termios
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import trio

from agent.console_view import (
    ANSI,
    ConnectionCounts,
    ConsoleSnapshot,
    EndpointRow,
    RequestRow,
    render,
)
from agent.inspector.capture import CaptureStore, Exchange
from agent.metrics import AgentMetrics
from agent.requests import AGENT_VERSION, upstream_display
from agent.session import Agent, Reporter
from protocol.formats.logs import formatter_for

__all__ = [
    "REDRAW_INTERVAL",
    "Console",
    "ConsoleReporter",
    "RateMeter",
    "StructuredReporter",
    "console_wanted",
    "log_request",
    "reporter_for",
    "request_row",
    "snapshot_of",
    "view_log_sink",
]

log = logging.getLogger(__name__)

#: At most four redraws a second: smooth enough for counters, cheap on a slow SSH link.
REDRAW_INTERVAL = 0.25
#: Redraw at least this often even when nothing changed (a terminal may have been cleared).
REFRESH_INTERVAL = 2.0
#: Requests listed (newest first); more than any terminal shows below the header.
RECENT_REQUESTS = 100
#: Rates are averaged over the last minute (rt1) and five minutes (rt5), as ngrok's are.
RATE_WINDOWS = (60.0, 300.0)
#: Samples of the connection total kept for the rates: one a second covers five minutes.
_RATE_SAMPLES = 301
#: The terminal size when it cannot be read (a forced view on a pipe).
_DEFAULT_SIZE = (80, 24)
#: Terminal control: alternate screen + hidden cursor, and back.
_ENTER = "\x1b[?1049h\x1b[?25l"
_LEAVE = "\x1b[?25h\x1b[?1049l"
_HOME = "\x1b[H"
_CLEAR_BELOW = "\x1b[J"


def console_wanted(setting: bool | str, *, stdout_tty: bool, sink: str) -> bool:
    """Whether to show the live view, for `console_ui` = True, False or "iftty"."""
    if setting == "iftty":
        return stdout_tty and sink != "stdout"
    return setting is True


def view_log_sink(sink: str, *, stderr_tty: bool) -> str:
    """Where log lines go while the view owns the terminal: a file stays, stderr stays when it
    is not a terminal (redirected), anything else is dropped (`false`)."""
    if sink == "stdout" or (sink == "stderr" and stderr_tty):
        return "false"
    return sink


class RateMeter:
    """Connections per second over recent windows, from samples of a running total.

    Pure: `now` comes in (monotonic seconds). Keeps at most `_RATE_SAMPLES` samples, one per
    second at most, so memory is bounded however long the agent runs."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=_RATE_SAMPLES)

    def observe(self, now: float, total: int) -> None:
        if self._samples and now - self._samples[-1][0] < 1.0:
            return
        self._samples.append((now, total))

    def rate(self, now: float, total: int, window: float) -> float:
        """New connections a second over the last `window` seconds (or since the first
        sample, if that is more recent); 0.0 before a second has passed."""
        base = next(((t, n) for t, n in self._samples if now - t <= window), None)
        if base is None or now - base[0] < 1.0:
            return 0.0
        return (total - base[1]) / (now - base[0])


def request_row(exchange: Exchange) -> RequestRow:
    """An exchange as the view lists it: the request line's method and target, the response's
    status and reason (None until its head came), and its duration once it ended."""
    first = exchange.request.head.split(b"\r\n", 1)[0].decode("latin-1")
    method, _, rest = first.partition(" ")
    path = rest.rpartition(" ")[0] or rest
    status: int | None = None
    reason = ""
    if exchange.response is not None:
        line = exchange.response.head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1].isdigit():
            status = int(parts[1])
            reason = parts[2] if len(parts) == 3 else ""
    return RequestRow(
        time=time.strftime("%H:%M:%S", time.localtime(exchange.start)),
        method=method,
        path=path,
        status=status,
        reason=reason,
        duration=exchange.duration,
        endpoint=exchange.tunnel_name,
    )


def log_request(exchange: Exchange) -> None:
    """One info line for a finished request: `GET /path 200 OK 12ms from ADDR`, with its
    endpoint. Called by the capture store (`CaptureStore.on_complete`); never raises."""
    row = request_row(exchange)
    took = "" if row.duration is None else f" {row.duration * 1000:.0f}ms"
    log.info(
        "%s %s %s %s%s from %s",
        row.method,
        row.path,
        row.status if row.status is not None else "-",
        row.reason,
        took,
        exchange.remote_addr,
        extra={"endpoint": row.endpoint},
    )


def _sample_sum(metrics: AgentMetrics, name: str, **labels: str) -> int:
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return int(total)


def _status(agent: Agent) -> str:
    if agent.stopping:
        return "stopping"
    if agent.established:
        return "online"
    return "reconnecting" if agent.established_once else "connecting"


def snapshot_of(
    agent: Agent,
    *,
    metrics: AgentMetrics,
    captures: CaptureStore | None,
    rates: RateMeter,
    notice: str,
    now: float,
) -> ConsoleSnapshot:
    """What the view shows of `agent` now (`now`: monotonic seconds, for the rates)."""
    bound = {route.name: route.url for route in agent.bound_routes()}
    endpoints = tuple(
        EndpointRow(name=e.name, url=bound.get(e.name, ""), upstream=upstream_display(e))
        for e in agent.endpoints
    )
    total = _sample_sum(metrics, "burrow_agent_streams_opened_total")
    rates.observe(now, total)
    counts = ConnectionCounts(
        total=total,
        open=_sample_sum(metrics, "burrow_agent_streams_open"),
        rate1=rates.rate(now, total, RATE_WINDOWS[0]),
        rate5=rates.rate(now, total, RATE_WINDOWS[1]),
        bytes_in=_sample_sum(metrics, "burrow_agent_bytes_total", direction="in"),
        bytes_out=_sample_sum(metrics, "burrow_agent_bytes_total", direction="out"),
    )
    inspected = any(
        e.inspect and e.endpoint_url.scheme in ("http", "https") for e in agent.endpoints
    )
    requests = None
    if captures is not None and inspected:
        requests = tuple(request_row(x) for x in captures.newest(limit=RECENT_REQUESTS))
    status = _status(agent)
    web = agent.settings.web_addr
    return ConsoleSnapshot(
        status=status,
        notice="" if status == "online" else notice,
        version=AGENT_VERSION,
        connect_url=agent.settings.connect_url,
        latency=agent.last_rtt,
        web_url=None if web is None else f"http://{web[0]}:{web[1]}",
        endpoints=endpoints,
        counts=counts,
        requests=requests,
    )


class ConsoleReporter(Reporter):
    """The reporter while the view is up: `Forwarding` lines are the view's (and logged);
    notices are kept for the view's status line (and logged), and the last one is printed on
    `err` once the view has closed (`finish`); after that, notices print at once."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        super().__init__(out, err)
        self.last_notice = ""
        self._drawing = True

    def forwarding(self, url: str, upstream: str) -> None:
        log.info("Forwarding %s -> %s", url, upstream)

    def notice(self, text: str) -> None:
        if not self._drawing:
            super().notice(text)
            return
        log.info("%s", text)
        self.last_notice = text

    def finish(self) -> None:
        if self._drawing and self.last_notice:
            super().notice(self.last_notice)
        self._drawing = False


class StructuredReporter(Reporter):
    """`Forwarding` and notice lines as records in `fmt` (logfmt or json): one parseable line
    each, on the same streams as the plain reporter (stdout and stderr)."""

    def __init__(self, out: TextIO, err: TextIO, fmt: str) -> None:
        super().__init__(out, err)
        self._formatter = formatter_for(fmt, tty=False)

    def _write(self, stream: TextIO, text: str) -> None:
        record = logging.LogRecord(__name__, logging.INFO, __file__, 0, "%s", (text,), None)
        print(self._formatter.format(record), file=stream, flush=True)

    def forwarding(self, url: str, upstream: str) -> None:
        self._write(self._out, f"Forwarding {url} -> {upstream}")

    def notice(self, text: str) -> None:
        self._write(self._err, text)


def reporter_for(fmt: str, out: TextIO, err: TextIO) -> Reporter:
    """The plain reporter for `term`, a `StructuredReporter` for `logfmt` and `json`."""
    return Reporter(out, err) if fmt == "term" else StructuredReporter(out, err, fmt)


def _terminal_size(out: TextIO) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(out.fileno())
    except (AttributeError, ValueError, OSError):
        return _DEFAULT_SIZE
    return size.columns or _DEFAULT_SIZE[0], size.lines or _DEFAULT_SIZE[1]


class Console:
    """The live view of `agent` on `out` (see the module docstring).

    `stdin_fd`: the terminal whose echo is turned off while drawing (None: leave it).
    `clock`: monotonic seconds, for the rates."""

    def __init__(
        self,
        agent: Agent,
        reporter: ConsoleReporter,
        out: TextIO,
        *,
        metrics: AgentMetrics,
        captures: CaptureStore | None,
        stdin_fd: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agent = agent
        self._reporter = reporter
        self._out = out
        self._metrics = metrics
        self._captures = captures
        self._stdin_fd = stdin_fd
        self._clock = clock
        self._rates = RateMeter()

    def frame(self) -> list[str]:
        """The lines to draw now."""
        width, height = _terminal_size(self._out)
        snapshot = snapshot_of(
            self._agent,
            metrics=self._metrics,
            captures=self._captures,
            rates=self._rates,
            notice=self._reporter.last_notice,
            now=self._clock(),
        )
        return render(snapshot, width=width, height=height, style=ANSI)

    async def run(self) -> None:
        """Draw until cancelled; always restores the terminal, then prints the last notice.
        A terminal that goes away (EIO, EPIPE) ends the view quietly."""
        saved = _echo_off(self._stdin_fd)
        try:
            self._out.write(_ENTER)
            self._out.flush()
            shown: list[str] = []
            drawn_at = -REFRESH_INTERVAL
            while True:
                lines = self.frame()
                now = self._clock()
                if lines != shown or now - drawn_at >= REFRESH_INTERVAL:
                    self._out.write(_HOME + "\r\n".join(lines) + _CLEAR_BELOW)
                    self._out.flush()
                    shown, drawn_at = lines, now
                await trio.sleep(REDRAW_INTERVAL)
        except OSError as exc:
            log.debug("console view ended: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                self._out.write(_LEAVE)
                self._out.flush()
            _restore(self._stdin_fd, saved)
            with contextlib.suppress(OSError):  # the terminal may be gone (hung up)
                self._reporter.finish()


def _echo_off(fd: int | None) -> list[Any] | None:
    """Turn off echo on terminal `fd`; the old settings, or None if it is not a terminal."""
    if fd is None:
        return None
    try:
        saved: list[Any] = termios.tcgetattr(fd)
        changed: list[Any] = termios.tcgetattr(fd)
        changed[3] &= ~termios.ECHO
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except (termios.error, OSError, ValueError):
        return None
    return saved


def _restore(fd: int | None, saved: list[Any] | None) -> None:
    if fd is None or saved is None:
        return
    with contextlib.suppress(termios.error, OSError, ValueError):
        termios.tcsetattr(fd, termios.TCSANOW, saved)
