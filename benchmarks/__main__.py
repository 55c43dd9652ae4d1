"""`python -m benchmarks` (`./dev bench`): a port-forwarding tunnel beside direct TCP and ssh -L.

Runs each selected measure `--runs` times, interleaving the tunnels inside every run (so a noisy
moment hits all columns alike) and starting a fresh tunnel for each (measure, run, tunnel). The
"burrow" column is the Burrow endpoint the measure is about: `burrow tcp` for the TCP measures,
`burrow http` (an https:// endpoint) for http and https_bulk, `burrow tls` for tls_bulk.
http_policy (opt-in: `--only http_policy`) has its own columns and table: the https:// endpoint
with no Traffic Policy, a 3-rule and a 10-rule one, and each one's ratio to no policy.
Prints a Markdown table of medians with min-max ranges and the tunnels' CPU%, and writes every raw
run with the machine info and parameters to benchmarks/results/<timestamp>.json.

Exit status: 0 when every selected tunnel ran every measure, 1 otherwise (a missing or broken
tunnel is reported, and the other columns still run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import failover, load, policy_table
from benchmarks.measure import ProcessGoneError, Summary, machine_info
from benchmarks.origin import TLS_HOST, Origin, OriginUnavailableError
from benchmarks.suite import MEASURES, POLICIES, Measure, Params, Record, Upstreams
from benchmarks.tunnels import (
    Burrow,
    BurrowHttps,
    BurrowTls,
    Direct,
    H11Server,
    SSHForward,
    TrioRelay,
    TrioRelayPair,
    Tunnel,
    TunnelUnavailableError,
)

EN_DASH = "\u2013"  # ranges print as "min<en dash>max", as in docs/performance tables
# Ratio columns of the table: (numerator, denominator) tunnel names.
RATIOS = [
    ("burrow", "ssh"),
    ("burrow", "direct"),
    ("burrow", "h11"),
    ("burrow", "relay"),
    ("burrow", "relay2"),
]
# A 1-minute load average above this before the run means something else is using the CPUs.
BUSY_LOADAVG = 0.5
RESULTS_DIR = Path(__file__).parent / "results"
TUNNEL_LABELS = {
    "direct": "direct",
    "ssh": "ssh -L",
    "h11": "trio+h11",
    "relay": "trio relay",
    "relay2": "2 trio relays",
    "burrow": "burrow",
}
# Columns of the table are TUNNEL_LABELS; a measure's Burrow endpoint kind fills the "burrow" one.
# "h11" (a bare trio + h11 server, no tunnel) runs only in measures with `bare_server` (http);
# "relay" (a bare trio TCP relay, one process) and "relay2" (two of them in a chain: two processes,
# as a tunnel has) only in those with `bare_relay` (the tcp:// ones).
MiB = 1024 * 1024
GiB = 1024 * MiB

# Full-size defaults (see the brief: 1 GiB transfers, 5,000 round trips, 1,000 idle streams,
# 10 s of wrk after a warm-up, as in reference/performance.md) and the --quick ones, small enough
# for a smoke test in a few seconds per tunnel.
DEFAULTS = {
    "nbytes": GiB,
    "rounds": 5000,
    "warmup": 200,
    "idle_streams": 1000,
    "http_seconds": 10,
    "http_warmup": 2,
}
QUICK = {
    "nbytes": 16 * MiB,
    "rounds": 200,
    "warmup": 20,
    "idle_streams": 100,
    "http_seconds": 1,
    "http_warmup": 1,
}


@dataclass(frozen=True, kw_only=True)
class Row:
    """One table row: which raw record feeds it, which field, and how to print it."""

    record: str
    field: str
    label: str
    unit: str
    show_cpu: bool = False
    higher_is_better: bool = False


def _rows(p: Params) -> list[Row]:
    rows = [
        Row(
            record="upload",
            field="mb_s",
            label="1 stream upload",
            unit="MB/s",
            show_cpu=True,
            higher_is_better=True,
        ),
        Row(
            record="download",
            field="mb_s",
            label="1 stream download",
            unit="MB/s",
            show_cpu=True,
            higher_is_better=True,
        ),
    ]
    rows += [
        Row(
            record=f"parallel{n}",
            field="mb_s",
            label=f"{n} streams upload (total)",
            unit="MB/s",
            show_cpu=True,
            higher_is_better=True,
        )
        for n in p.streams
    ]
    rows += [
        Row(record="latency", field="p50_ms", label="RTT p50", unit="ms"),
        Row(record="latency", field="p99_ms", label="RTT p99", unit="ms"),
        Row(record="latency", field="added_p50_ms", label="added p50 over direct", unit="ms"),
        Row(
            record="latency",
            field="cpu_us_per_op",
            label="tunnel CPU per round trip",
            unit="µs",
        ),
        Row(
            record="memory",
            field="edge_kib_per_stream",
            label="idle stream, edge",
            unit="KiB/stream",
        ),
        Row(
            record="memory",
            field="agent_kib_per_stream",
            label="idle stream, agent",
            unit="KiB/stream",
        ),
    ]
    wrk = f"wrk -t{p.http_threads} -c{p.http_connections}"
    rows += [
        Row(
            record="http",
            field="rps",
            label=f"HTTP 100 B GET, {wrk}",
            unit="req/s",
            show_cpu=True,
            higher_is_better=True,
        ),
        Row(record="http", field="p50_ms", label="HTTP latency p50", unit="ms"),
        Row(record="http", field="p99_ms", label="HTTP latency p99", unit="ms"),
        Row(record="http", field="cpu_us_per_op", label="HTTP tunnel CPU per request", unit="µs"),
        Row(
            record="http_tcp",
            field="rps",
            label=f"HTTP 100 B GET via tcp://, {wrk}",
            unit="req/s",
            show_cpu=True,
            higher_is_better=True,
        ),
        Row(record="http_tcp", field="p50_ms", label="HTTP via tcp:// latency p50", unit="ms"),
        Row(record="http_tcp", field="p99_ms", label="HTTP via tcp:// latency p99", unit="ms"),
        Row(
            record="http_tcp",
            field="cpu_us_per_op",
            label="HTTP via tcp:// tunnel CPU per request",
            unit="µs",
        ),
        Row(
            record="https_bulk",
            field="mb_s",
            label="HTTP download (burrow: https://)",
            unit="MB/s",
            show_cpu=True,
            higher_is_better=True,
        ),
        Row(
            record="tls_bulk",
            field="mb_s",
            label="TLS download (burrow: tls://)",
            unit="MB/s",
            show_cpu=True,
            higher_is_better=True,
        ),
    ]
    return rows


def parse_size(text: str) -> int:
    """'1G', '512M', '1GiB', '64k', '1000000' -> bytes (K/M/G are binary, as in 1 GiB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1G, 512M, 65536)")
    scale = {"": 1, "k": 1024, "m": MiB, "g": GiB, "t": 1024 * GiB}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def _csv(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(choices)}"
            )
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure a port-forwarding tunnel on loopback beside direct TCP and ssh -L.",
    )
    parser.add_argument("--runs", type=int, default=3, help="repeats of each measure (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    defaults = [name for name, spec in MEASURES.items() if spec.default]
    parser.add_argument(
        "--only",
        type=_csv([*MEASURES, failover.NAME]),  # failover: its own pools (benchmarks/failover.py)
        default=defaults,
        help=f"measures to run, comma-separated: {','.join(MEASURES)},{failover.NAME} "
        f"(default: all but {','.join(m for m in MEASURES if m not in defaults)},{failover.NAME})",
    )
    parser.add_argument(
        "--tunnels",
        type=_csv(list(TUNNEL_LABELS)),
        default=list(TUNNEL_LABELS),
        help="columns, comma-separated: direct,ssh,h11,relay,relay2,burrow (h11: a bare trio + "
        "h11 server, in the http measure only; relay: a bare trio TCP relay, relay2: two in a "
        "chain, in the tcp:// measures)",
    )
    parser.add_argument(
        "--bytes",
        type=parse_size,
        default=None,
        dest="nbytes",
        help="bytes per throughput run (default 1G; --quick 16M)",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="time-bound throughput runs instead of --bytes"
    )
    parser.add_argument(
        "--streams",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[8, 64],
        help="parallel stream counts (default 8,64)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed round trips (default 5000; --quick 200)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed round trips first (default 200; --quick 20)",
    )
    parser.add_argument("--message-size", type=int, default=64, help="ping-pong message bytes")
    parser.add_argument(
        "--idle-streams",
        type=int,
        default=None,
        help="connections held for the memory measure (default 1000; --quick 100)",
    )
    parser.add_argument(
        "--http-threads", type=int, default=2, help="wrk -t for the http measure (default 2)"
    )
    parser.add_argument(
        "--http-connections",
        type=int,
        default=16,
        help="wrk -c, keep-alive connections for the http measure (default 16)",
    )
    parser.add_argument(
        "--http-seconds",
        type=int,
        default=None,
        help="wrk -d of the timed http run, whole seconds (default 10; --quick 1)",
    )
    parser.add_argument(
        "--http-warmup",
        type=int,
        default=None,
        help="seconds of untimed wrk before it, 0 for none (default 2; --quick 1)",
    )
    parser.add_argument(
        "--ssh-cipher",
        default=None,
        help="ssh -c CIPHER, e.g. aes128-gcm@openssh.com (default: ssh's own)",
    )
    parser.add_argument(
        "--burrow-bin",
        type=Path,
        default=None,
        help="folder holding burrow-edge and burrow (default: this Python's bin, i.e. .venv/bin)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    sizes = QUICK if args.quick else DEFAULTS
    for key, value in sizes.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.http_seconds < 1 or args.http_warmup < 0:
        parser.error("--http-seconds must be at least 1 and --http-warmup at least 0")
    if not 1 <= args.http_threads <= args.http_connections:
        parser.error("wrk needs 1 <= --http-threads <= --http-connections")
    return args


def _columns(measure: Measure, tunnels: Sequence[str]) -> list[str]:
    """A measure's columns: the selected tunnels, or its policies if Burrow is selected."""
    if measure.policies:
        return list(measure.policies) if "burrow" in tunnels else []
    return [
        t
        for t in tunnels
        if (t != "h11" or measure.bare_server)
        and (t not in ("relay", "relay2") or measure.bare_relay)
    ]


def _variant(name: str, measure: Measure) -> str:
    """The tunnel class a column runs for a measure: burrow, burrow-https or burrow-tls."""
    if measure.policies:  # one policy failing to load must not stop the other columns
        return "burrow-https" if name == "none" else f"burrow-https-{name}"
    if name != "burrow" or measure.endpoint == "tcp":
        return name
    return f"burrow-{measure.endpoint}"


def _make_tunnel(
    name: str, measure: Measure, upstreams: Upstreams, args: argparse.Namespace
) -> Tunnel:
    port = measure.upstream_port(upstreams)
    probe = measure.probe(upstreams)
    variant = _variant(name, measure)
    if variant == "ssh":
        return SSHForward(port, cipher=args.ssh_cipher, probe=probe)
    if variant == "burrow":
        return Burrow(port, bin_dir=args.burrow_bin, probe=probe)
    if variant.startswith("burrow-https"):
        policy = POLICIES[name] if measure.policies else None
        return BurrowHttps(port, bin_dir=args.burrow_bin, probe=probe, policy_file=policy)
    if variant == "burrow-tls":
        return BurrowTls(port, TLS_HOST, bin_dir=args.burrow_bin, probe=probe)
    if variant == "h11":
        return H11Server(port, probe=probe)
    if variant == "relay":
        return TrioRelay(port, probe=probe)
    if variant == "relay2":
        return TrioRelayPair(port, probe=probe)
    return Direct(port, probe=probe)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _describe(row_name: str, record: Record) -> str:
    if "mb_s" in record:
        text = f"{record['mb_s']:,.0f} MB/s"
    elif "rps" in record:
        text = (
            f"{record['rps']:,.0f} req/s, p50 {record['p50_ms']:.3f} ms, "
            f"p99 {record['p99_ms']:.3f} ms"
        )
    elif "p50_ms" in record:
        text = f"p50 {record['p50_ms']:.3f} ms, p99 {record['p99_ms']:.3f} ms"
    else:
        text = ", ".join(
            f"{k.split('_')[0]} {v:.1f} KiB/stream"
            for k, v in record.items()
            if k.endswith("_kib_per_stream")
        )
    if record.get("cpu_pct") is not None:
        text += f", tunnel CPU {record['cpu_pct']:.0f}%"
    return f"{row_name}: {text}"


def _start_origin(
    args: argparse.Namespace, params: Params, unavailable: dict[str, str]
) -> Origin | None:
    """nginx, if a selected measure needs it; None (and a note in unavailable) if it can't run."""
    specs = [MEASURES[m] for m in args.only]
    if all(spec.upstream == "load" for spec in specs):
        return None
    try:
        return Origin(big_bytes=params.nbytes if any(spec.big_body for spec in specs) else 0)
    except OriginUnavailableError as exc:
        unavailable["nginx"] = str(exc)
        _log(f"nginx origin unavailable, skipping the HTTP measures:\n  {exc}")
        return None


def run_all(args: argparse.Namespace, params: Params) -> tuple[list[Record], dict[str, str]]:
    """Every (measure, run, tunnel); returns the raw records and what could not run."""
    records: list[Record] = []
    unavailable: dict[str, str] = {}
    server = load.UpstreamServer()
    web: Origin | None = None
    try:
        web = _start_origin(args, params, unavailable)
        upstreams = Upstreams(server=server, nginx=web)
        for measure in args.only:
            spec = MEASURES[measure]
            if spec.upstream != "load" and web is None:
                continue
            missing = [prog for prog in spec.programs if shutil.which(prog) is None]
            for prog in missing:
                unavailable[prog] = f"{prog} not found (apt-get install {prog}); skipped {measure}"
            if missing:
                continue
            for run in range(1, args.runs + 1):
                for name in _columns(spec, args.tunnels):
                    variant = _variant(name, spec)
                    if variant in unavailable:
                        continue
                    where = f"[{measure} {run}/{args.runs}] {name}"
                    try:
                        with _make_tunnel(name, spec, upstreams, args) as tunnel:
                            results = spec.run(tunnel, upstreams, params)
                    except TunnelUnavailableError as exc:
                        unavailable[variant] = str(exc)
                        _log(f"{where}: tunnel unavailable, skipping it from now on:\n  {exc}")
                        continue
                    except (OSError, load.LoadError, ProcessGoneError) as exc:
                        records.append(
                            {"tunnel": name, "measure": measure, "run": run, "error": repr(exc)}
                        )
                        _log(f"{where}: FAILED: {exc!r}")
                        continue
                    for row_name, record in results.items():
                        records.append(
                            {
                                "tunnel": name,
                                "measure": measure,
                                "row": row_name,
                                "run": run,
                                **record,
                            }
                        )
                        _log(f"{where} {_describe(row_name, record)}")
    finally:
        if web is not None:
            web.close()
        server.close()
    _add_latency_over_direct(records)
    _add_cpu_per_operation(records)
    policy_table.add_ratios(records)
    return records, unavailable


def _add_cpu_per_operation(records: list[Record]) -> None:
    """cpu_us_per_op = the tunnel's CPU microseconds per request (http rows) or per round trip
    (latency, warm-up included: it ran inside the accounted time). On a busy machine the rates
    swing with the other work, while what each request costs moves far less."""
    for record in records:
        total = record.get("cpu_s_total")
        if not total or not record.get("tunnel_pids"):
            continue
        if record.get("row") in ("http", "http_tcp") and record.get("requests"):
            record["cpu_us_per_op"] = round(1e6 * total / record["requests"], 1)
        elif record.get("row") == "latency" and record.get("rounds"):
            ops = record["rounds"] + record.get("warmup", 0)
            record["cpu_us_per_op"] = round(1e6 * total / ops, 1)


def _add_latency_over_direct(records: list[Record]) -> None:
    """added_p50_ms = tunnel p50 minus direct p50 of the same run (same moment of the machine)."""
    direct = {
        r["run"]: r["p50_ms"]
        for r in records
        if r.get("row") == "latency" and r["tunnel"] == "direct"
    }
    for record in records:
        if record.get("row") == "latency" and record["run"] in direct:
            record["added_p50_ms"] = round(record["p50_ms"] - direct[record["run"]], 4)


def summarize(
    records: list[Record], rows: list[Row], tunnels: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{row label: {tunnel: {value: Summary, cpu_pct: median, cpu_pct_by_role: medians}}}."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        cells: dict[str, dict[str, Any]] = {}
        for name in tunnels:
            runs = [
                r
                for r in records
                if r.get("row") == row.record
                and r["tunnel"] == name
                and r.get(row.field) is not None
            ]
            if not runs:
                continue
            cell: dict[str, Any] = {"value": Summary.of([r[row.field] for r in runs])}
            cpus = [r["cpu_pct"] for r in runs if r.get("cpu_pct") is not None]
            if cpus:
                cell["cpu_pct"] = statistics.median(cpus)
                roles = runs[0]["cpu_pct_by_role"]
                cell["cpu_pct_by_role"] = {
                    role: statistics.median(r["cpu_pct_by_role"][role] for r in runs)
                    for role in roles
                }
            cells[name] = cell
        if cells:
            table[row.label] = cells
    return table


def _number(value: float, unit: str) -> str:
    if unit in ("MB/s", "req/s"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}"
    return f"{value:.1f}"


def _cell(cell: dict[str, Any] | None, row: Row) -> str:
    if cell is None:
        return "—"
    summary: Summary = cell["value"]
    text = _number(summary.median, row.unit)
    if summary.n > 1:
        low, high = _number(summary.low, row.unit), _number(summary.high, row.unit)
        text += f" ({low}{EN_DASH}{high})"
    if row.show_cpu and "cpu_pct" in cell:
        text += f" @{cell['cpu_pct']:.0f}%"
    return text


def _ratio(cells: dict[str, dict[str, Any]], top: str, bottom: str) -> str:
    if top not in cells or bottom not in cells:
        return "—"
    low = cells[bottom]["value"].median
    if low <= 0:
        return "—"
    return f"{cells[top]['value'].median / low:.2f}"


def _markdown(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(b) for b in body)])


def render(
    table: dict[str, dict[str, dict[str, Any]]],
    rows: list[Row],
    tunnels: Sequence[str],
    records: list[Record],
    runs: int,
) -> str:
    # Ratio columns only when both of their tunnels were asked for.
    ratios = [(top, bottom) for top, bottom in RATIOS if top in tunnels and bottom in tunnels]
    header = [
        "measure",
        *(TUNNEL_LABELS[t] for t in tunnels),
        *(f"{top}/{bottom}" for top, bottom in ratios),
    ]
    body = []
    for row in rows:
        cells = table.get(row.label)
        if not cells:
            continue
        body.append(
            [
                f"{row.label} ({row.unit})",
                *(_cell(cells.get(t), row) for t in tunnels),
                *(
                    # the added latency of direct over itself is 0: no ratio to take
                    "—"
                    if row.field == "added_p50_ms" and bottom == "direct"
                    else _ratio(cells, top, bottom)
                    for top, bottom in ratios
                ),
            ]
        )
    stat = f"median (min{EN_DASH}max)" if runs > 1 else "single run"
    parts = [
        f"{stat} of {runs} run(s); @N% = tunnel processes' CPU (100% = one core)",
        "",
        _markdown(header, body),
    ]

    role_cols = [
        (t, role)
        for t in tunnels
        for role in ("edge", "agent")
        if t not in ("direct", "h11", "relay")
    ]
    role_body = []
    for row in rows:
        cells = table.get(row.label, {})
        if not row.show_cpu or not any("cpu_pct_by_role" in c for c in cells.values()):
            continue
        role_body.append(
            [
                row.label,
                *(
                    f"{cells[t]['cpu_pct_by_role'][role]:.0f}%"
                    if t in cells and role in cells[t].get("cpu_pct_by_role", {})
                    else "—"
                    for t, role in role_cols
                ),
            ]
        )
    if role_body:
        parts += [
            "",
            "CPU% by process role (median; ssh: edge = sshd children, agent = ssh)",
            "",
            _markdown(["measure", *(f"{TUNNEL_LABELS[t]} {r}" for t, r in role_cols)], role_body),
        ]
    # One-stream rows only: with many streams the client and server legitimately use many threads.
    for rows_of, what in (
        (("upload", "download"), "load generator peak CPU, one stream: client"),
        (("https_bulk", "tls_bulk"), "HTTP download peak CPU: Python client"),
        (("http", "http_tcp"), "HTTP requests peak CPU: wrk"),
    ):
        peaks = [
            r["generator_cpu_pct"]
            for r in records
            if r.get("row") in rows_of
            and "generator_cpu_pct" in r
            and r["wall_s"] >= 1  # shorter runs are a few 10 ms clock ticks: too coarse
        ]
        if not peaks:
            continue
        client = max(p["client"] for p in peaks)
        server = max(p["server"] for p in peaks)
        # wrk runs --http-threads threads: its limit is that many cores, not one.
        note = " (near one core: it may be the limit)" if max(client, server) > 95 else ""
        if rows_of == ("http", "http_tcp"):
            note = " (nginx near one core: it may be the limit)" if server > 95 else ""
        server_name = "server" if rows_of[0] == "upload" else "nginx origin"
        parts += ["", f"{what} {client:.0f}%, {server_name} {server:.0f}%{note}"]
    errors = {
        name: sum(
            sum(r["socket_errors"].values())
            for r in records
            if r.get("row") in ("http", "http_tcp") and r["tunnel"] == name
        )
        for name in tunnels
    }
    if any(errors.values()):
        counts = ", ".join(f"{TUNNEL_LABELS[t]} {n}" for t, n in errors.items() if n)
        parts += ["", f"wrk socket errors (connect/read/write/timeout, all runs): {counts}"]
    return "\n".join(parts)


def render_policy(records: list[Record], runs: int) -> str:
    """The http_policy table and its notes; empty if the measure did not run."""
    header, body = policy_table.table(records)
    if not body:
        return ""
    stat = f"median (min{EN_DASH}max)" if runs > 1 else "single run"
    parts = [
        "",
        "Traffic Policy cost: burrow https:// endpoint, no policy / 3 rules / 10 rules "
        f"(benchmarks/policies); {stat} of {runs} run(s); ratios are per run, to no policy",
        "",
        _markdown(header, body),
    ]
    cost = policy_table.cost_line(records)
    parts += [""] + ([cost] if cost else []) + policy_table.notes(records)
    return "\n".join(parts)


def _jsonable(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        label: {t: {**c, "value": c["value"].as_dict()} for t, c in cells.items()}
        for label, cells in table.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = Params(
        nbytes=args.nbytes,
        seconds=args.seconds,
        streams=tuple(args.streams),
        rounds=args.rounds,
        warmup=args.warmup,
        message_size=args.message_size,
        idle_streams=args.idle_streams,
        http_threads=args.http_threads,
        http_connections=args.http_connections,
        http_seconds=args.http_seconds,
        http_warmup=args.http_warmup,
    )
    # Each held stream costs a descriptor in the client, the server and each tunnel process.
    load.raise_fd_limit(4 * params.idle_streams + 1024)
    started = time.time()
    load_before = os.getloadavg()
    only = args.only
    args.only = [m for m in only if m != failover.NAME]
    records, unavailable = run_all(args, params)
    args.only = only
    if failover.NAME in only:
        records += failover.run_measure(args, _log, unavailable)
    load_after = os.getloadavg()
    rows = _rows(params)
    table = summarize(records, rows, args.tunnels)
    if table:  # empty when only http_policy ran: it has its own table
        print(render(table, rows, args.tunnels, records, args.runs))
    print(render_policy(records, args.runs))
    print(failover.render(records, args.runs))
    if load_before[0] > BUSY_LOADAVG:
        print(
            f"\nnote: load average was {load_before[0]:.2f} before the run "
            f"(on {os.cpu_count()} CPUs): other work on this machine skews every column"
        )
    failures = [r for r in records if "error" in r]
    for name, reason in unavailable.items():
        print(f"\n{TUNNEL_LABELS.get(name, name)}: not measured: {reason}")
    if failures:
        print(f"\n{len(failures)} run(s) failed; see 'error' in the JSON")

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(started))
    path = args.out / f"{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "duration_s": round(time.time() - started, 1),
                "command": [sys.executable, "-m", "benchmarks", *(argv or sys.argv[1:])],
                "machine": machine_info(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "parameters": {
                    **asdict(params),
                    "runs": args.runs,
                    "quick": args.quick,
                    "measures": args.only,
                    "tunnels": args.tunnels,
                    "ssh_cipher": args.ssh_cipher,
                    "burrow_bin": str(args.burrow_bin or Path(sys.executable).parent),
                    "chunk_bytes": load.CHUNK,
                },
                "unavailable": unavailable,
                "summary": _jsonable(table),
                "policy_summary": policy_table.summary(records),
                "failover_summary": failover.summary(records),
                "runs": records,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(f"\nraw runs: {path}")
    return 1 if unavailable or failures else 0


if __name__ == "__main__":
    sys.exit(main())
