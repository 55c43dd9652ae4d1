"""The agent's live status view, as text: a `ConsoleSnapshot` in, the screen's lines out.

Pure: no clock, no terminal, no I/O. `agent.console` builds a snapshot from the running agent
a few times a second and draws the lines with ANSI cursor control; tests call `render` and
compare text. The layout follows ngrok's console UI:

    burrow                                                          (Ctrl+C to quit)

    Session Status                online
    Version                       0.1.0
    Connect URL                   edge.example.org:443
    Latency                       12ms
    Web Interface                 http://127.0.0.1:4040
    Forwarding                    https://a1b2.edge.example.org -> http://localhost:8080

    Connections                   ttl     opn     rt1     rt5     in      out
                                  3       0       0.05    0.01    1.2KB   3.4KB

    HTTP Requests
    -------------

    10:00:01  GET    /api/users                          200 OK                 12ms

Every line is exactly `width` columns of visible text (cut with `~` when too long, padded with
spaces when short; control characters in it show as `?`) and there are at most `height` lines
(the request list gives way first).
Colour comes only from the `Style` given: `PLAIN` adds nothing, `ANSI` wraps a few roles
(status, HTTP status classes, headings) in SGR codes that take no columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ANSI",
    "PLAIN",
    "ConnectionCounts",
    "ConsoleSnapshot",
    "EndpointRow",
    "RequestRow",
    "Style",
    "render",
]

#: The label column's width, as ngrok's console has it.
LABEL_WIDTH = 30
#: Narrower screens than this still get a screen, but labels shrink to a third of it.
_NARROW = 2 * LABEL_WIDTH
#: Counter columns under `Connections`.
_COUNT_WIDTH = 8
#: How a cut line ends.
_CUT = "~"


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRow:
    name: str
    url: str  # the URL the edge gave it; "" while it is not bound
    upstream: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRow:
    time: str  # local wall clock, HH:MM:SS, when the request began
    method: str
    path: str
    status: int | None  # None while the response has not begun
    reason: str
    duration: float | None  # seconds; None while the response is not complete
    endpoint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionCounts:
    total: int  # connections the edge sent us since the start
    open: int  # being served now
    rate1: float  # new connections per second over the last minute
    rate5: float  # ... and over the last five minutes
    bytes_in: int  # relayed to the upstreams (counted when a connection ends)
    bytes_out: int  # relayed back to the edge


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleSnapshot:
    status: str  # connecting, online, reconnecting, stopping
    notice: str  # the agent's latest news (why it is reconnecting), or ""
    version: str
    connect_url: str
    latency: float | None  # the last heartbeat round trip, seconds; None before the first
    web_url: str | None  # the inspector's address; None when web_addr is false
    endpoints: tuple[EndpointRow, ...]
    counts: ConnectionCounts
    #: Newest first; None when no endpoint's requests are captured (no HTTP section).
    requests: tuple[RequestRow, ...] | None


@dataclass(frozen=True, slots=True)
class Style:
    """Role -> (before, after) strings, which take no columns on screen."""

    codes: Mapping[str, tuple[str, str]]

    def paint(self, role: str, text: str) -> str:
        before, after = self.codes.get(role, ("", ""))
        return f"{before}{text}{after}" if text and before else text


PLAIN = Style({})
_RESET = "\x1b[0m"
ANSI = Style(
    {
        "title": ("\x1b[1;36m", _RESET),
        "heading": ("\x1b[1m", _RESET),
        "online": ("\x1b[32m", _RESET),
        "pending": ("\x1b[33m", _RESET),
        "offline": ("\x1b[31m", _RESET),
        "2xx": ("\x1b[32m", _RESET),
        "3xx": ("\x1b[36m", _RESET),
        "4xx": ("\x1b[33m", _RESET),
        "5xx": ("\x1b[31m", _RESET),
        "dim": ("\x1b[2m", _RESET),
    }
)

_STATUS_ROLES = {"online": "online", "connecting": "pending", "reconnecting": "pending"}

#: A line under construction: (text, role) pieces, cut and padded as one.
_Piece = tuple[str, str]


def render(
    snapshot: ConsoleSnapshot, *, width: int, height: int, style: Style = PLAIN
) -> list[str]:
    """The screen for `snapshot`: at most `height` lines, each `width` columns wide."""
    width = max(width, 1)
    label = LABEL_WIDTH if width >= _NARROW else max(width // 3, 1)
    rows: list[list[_Piece]] = []
    hint = "(Ctrl+C to quit)"
    gap = max(width - len("burrow") - len(hint), 1)
    rows.append([("burrow", "title"), (" " * gap, ""), (hint, "dim")])
    rows.append([])
    status = snapshot.status + (f" ({snapshot.notice})" if snapshot.notice else "")
    rows.append(
        _field(label, "Session Status", status, _STATUS_ROLES.get(snapshot.status, "offline"))
    )
    rows.append(_field(label, "Version", snapshot.version))
    rows.append(_field(label, "Connect URL", snapshot.connect_url))
    latency = "-" if snapshot.latency is None else _duration(snapshot.latency)
    rows.append(_field(label, "Latency", latency))
    if snapshot.web_url is not None:
        rows.append(_field(label, "Web Interface", snapshot.web_url))
    if not snapshot.endpoints:
        rows.append(_field(label, "Forwarding", "(no endpoints)", "dim"))
    for endpoint in snapshot.endpoints:
        if endpoint.url:
            rows.append(_field(label, "Forwarding", f"{endpoint.url} -> {endpoint.upstream}"))
        else:
            text = f"{endpoint.name}: not bound yet -> {endpoint.upstream}"
            rows.append(_field(label, "Forwarding", text, "dim"))
    rows.append([])
    counts = snapshot.counts
    names = ("ttl", "opn", "rt1", "rt5", "in", "out")
    values = (
        str(counts.total),
        str(counts.open),
        f"{counts.rate1:.2f}",
        f"{counts.rate5:.2f}",
        _size(counts.bytes_in),
        _size(counts.bytes_out),
    )
    rows.append([(_cell("Connections", label - 1) + " ", "heading"), (_columns(names), "")])
    rows.append([(" " * label, ""), (_columns(values), "")])
    if snapshot.requests is not None:
        rows.append([])
        rows.append([("HTTP Requests", "heading")])
        rows.append([("-------------", "")])
        rows.append([])
        room = max(height - len(rows), 0)
        if not snapshot.requests:
            rows.append([("(no requests yet)", "dim")])
        for request in snapshot.requests[:room]:
            rows.append(_request(request, width))
    return [_line(pieces, width, style) for pieces in rows[: max(height, 0)]]


def _field(label: int, name: str, value: str, role: str = "") -> list[_Piece]:
    return [(_cell(name, label - 1) + " ", ""), (value, role)]


def _cell(text: str, width: int) -> str:
    """`text` in exactly `width` columns (cut, or padded with spaces)."""
    if len(text) > width:
        return text[: max(width - 1, 0)] + _CUT if width > 0 else ""
    return text.ljust(width)


def _columns(values: tuple[str, ...]) -> str:
    return "".join(value.ljust(_COUNT_WIDTH) for value in values).rstrip()


def _request(request: RequestRow, width: int) -> list[_Piece]:
    if request.status is None:
        status, role = "...", "dim"
    else:
        status, role = f"{request.status} {request.reason}".rstrip(), f"{request.status // 100}xx"
    duration = "" if request.duration is None else _duration(request.duration)
    # time, method and status/duration keep their columns; the path takes what is left.
    fixed = 10 + 7 + 19 + 9
    path = _cell(request.path, max(width - fixed, 12))
    return [
        (request.time.ljust(10), "dim"),
        (_cell(request.method, 6).ljust(7), ""),
        (path + " ", ""),
        (_cell(status, 18).ljust(19), role),
        (duration.rjust(8), ""),
    ]


def _line(pieces: list[_Piece], width: int, style: Style) -> str:
    """Cut `pieces` to `width` visible columns, pad to it, then paint each piece."""
    out: list[str] = []
    left = width
    for raw, role in pieces:
        if left <= 0:
            break
        # What the public or the upstream sent (a path, a reason phrase) must not steer the
        # terminal: control characters show as `?`.
        text = raw if raw.isprintable() else "".join(c if c.isprintable() else "?" for c in raw)
        shown = text if len(text) <= left else text[: left - 1] + _CUT
        out.append(style.paint(role, shown))
        left -= len(shown)
    return "".join(out) + " " * left


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}m"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{count}B" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1000
    return f"{count}B"  # not reached
