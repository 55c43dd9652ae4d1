"""The failover measure (`./dev bench --only failover`): an https:// endpoint pool under load.

Theory of operation: a fresh `burrow-edge serve` (heartbeats every `HEARTBEAT_INTERVAL`, a
silent agent dropped after `HEARTBEAT_TOLERANCE` more) and `MEMBERS` agents, each running
`burrow http ORIGIN --url https://bench.burrow.localhost --pooling-enabled` to the same nginx
origin, form a pool (`PoolTunnel`). For each scenario a steady, bounded load (`SteadyLoad`:
`WORKERS` threads, each on its own keep-alive TLS connection, one GET of the origin's small
body every `PACE` seconds) runs for `BEFORE` seconds, then one member gets a signal:

- `kill`: SIGKILL, the agent's sockets close at once (the edge sees the session end);
- `pause`: SIGSTOP, nothing on the wire: only the edge's heartbeat notices;
- `drain`: SIGTERM, the agent's graceful drain (GOAWAY, finish in-flight, exit);

and the load goes on for `AFTER` seconds. Every request is recorded (start, end, answered 200
with the body or not). `summarize` reads from them: `lost`, the requests that failed; and
`recovery_ms`, the time from the signal to the end of the last request that failed or took
longer than `SLOW_REQUEST` (0 when none did): how long clients saw the failure.

The `rate` rows put wrk's keep-alive GETs (the http measure's `--http-*` settings) through a
pool of two members beside a pool of one member, each a fresh pool, in the same run; the ratio
is per run. Every scenario and rate column gets its own edge and agents (a killed member does
not come back), in the order of `SCENARIOS` then `RATE_COLUMNS` in each run.

Everything listens on 127.0.0.1; the load is bounded in rate and time, each request by
`REQUEST_TIMEOUT`. A failure to start is `TunnelUnavailableError`; a scenario whose baseline
(before the signal) already fails, or whose load answered nothing, raises `LoadError`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import httpload, load, origin
from benchmarks.measure import Summary, cpu_delta, cpu_snapshot, descendants
from benchmarks.tunnels import (
    START_TIMEOUT,
    Tunnel,
    TunnelUnavailableError,
    _how_it_ended,
    _LineReader,
    _stop,
    _tail,
    _wait_for_forward,
)

Record = dict[str, Any]

NAME = "failover"
# Pool members in the scenarios: the smallest pool that can fail over.
MEMBERS = 2
# The edge's heartbeat: short so a paused member leaves the pool within a few seconds (the
# defaults, 10 s + 15 s, would keep a scenario waiting half a minute).
HEARTBEAT_INTERVAL = 0.5
HEARTBEAT_TOLERANCE = 0.5
# The load: WORKERS keep-alive connections, one GET every PACE seconds each (400 req/s): steady
# and far below what one member serves, so a failure, not saturation, is what shows.
WORKERS = 4
PACE = 0.01
# Seconds of load before the signal (the baseline) and after it: long enough for a paused
# member's heartbeat to run out (at most 2 x interval + tolerance) and traffic to settle.
BEFORE = 1.0
AFTER = 3.0
# A request taking longer than this counts as disrupted (a healthy one takes milliseconds).
SLOW_REQUEST = 0.25
# Every request gets this long before it counts as failed.
REQUEST_TIMEOUT = 10.0
# The agent's graceful drain bound (`burrow`'s own default, 10 s, is longer than a scenario).
DRAIN_TIMEOUT = "5s"
# scenario name -> (signal, table label).
SCENARIOS: dict[str, tuple[signal.Signals, str]] = {
    "kill": (signal.SIGKILL, "SIGKILL one member (its sockets close)"),
    "pause": (signal.SIGSTOP, "SIGSTOP one member (silent: heartbeat)"),
    "drain": (signal.SIGTERM, "SIGTERM one member (graceful drain)"),
}
# Rate columns: name -> pool members.
RATE_COLUMNS = {"pool1": 1, "pool2": MEMBERS}
EN_DASH = "\u2013"


class PoolTunnel(Tunnel):
    """`burrow-edge serve` and `members` pooled `burrow http` agents on one https:// URL.

    Entering returns once every agent printed its Forwarding line and a GET through the pool
    is answered; `agents` are the agent processes (for the scenarios' signals). Leaving wakes
    any paused agent (SIGCONT) and stops every process.
    """

    name = "burrow-pool"
    HOST = "bench.burrow.localhost"
    READY = re.compile(r"burrow-edge ready: tls=127\.0\.0\.1:(\d+)")
    FORWARDING = re.compile(r"Forwarding https://([^:\s/]+):(\d+)\s*->")

    def __init__(
        self,
        upstream_port: int,
        members: int,
        bin_dir: Path | None = None,
        probe: Callable[[Tunnel], None] | None = None,
    ) -> None:
        super().__init__(upstream_port, probe or _probe)  # default: a GET of /small
        self.members = members
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.edge: subprocess.Popen[str] | None = None
        self.agents: list[subprocess.Popen[str]] = []

    def _binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise TunnelUnavailableError(
                f"{path} not found: the failover measure needs the project installed "
                "(.venv/bin/python -m pip install -e .)"
            )
        return str(path)

    def start(self) -> None:
        edge_bin, agent_bin = self._binary("burrow-edge"), self._binary("burrow")
        d = self.dir
        data_dir = d / "edge-data"
        (d / "edge.yml").write_text(
            'listen: {tls: "127.0.0.1:0", http: "127.0.0.1:0"}\n'
            "admin: {enabled: false}\n"
            f"heartbeat: {{interval: {HEARTBEAT_INTERVAL}s, tolerance: {HEARTBEAT_TOLERANCE}s}}\n"
        )
        edge_log = d / "edge.log"
        self.edge = subprocess.Popen(
            [edge_bin, "serve", "--data-dir", str(data_dir), "--config", str(d / "edge.yml")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log(edge_log.name),
            text=True,
        )
        assert self.edge.stdout is not None
        ready = _LineReader(self.edge.stdout, edge_log).wait_for(self.READY, START_TIMEOUT)
        if ready is None:
            raise TunnelUnavailableError(
                f"burrow-edge serve {_how_it_ended(self.edge)} without printing its ready "
                f"line{_tail(edge_log)}"
            )
        cred = subprocess.run(
            [edge_bin, "credential", "create", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if cred.returncode != 0 or not cred.stdout.strip():
            raise TunnelUnavailableError(
                f"burrow-edge credential create failed (status {cred.returncode}): "
                f"{(cred.stderr or cred.stdout).strip()[-2000:]}"
            )
        (d / "agent.yml").write_text(
            f"version: 3\nagent: {{drain_timeout: {DRAIN_TIMEOUT}, web_addr: false}}\n"
        )
        env = dict(
            os.environ,
            BURROW_CONNECT_URL=f"connect.burrow.localhost:{ready.group(1)}",
            BURROW_CONNECT_CAS=str(data_dir / "ca.pem"),
            BURROW_AUTHTOKEN=cred.stdout.strip().splitlines()[-1].strip(),
            HOME=str(d),
            XDG_CONFIG_HOME=str(d / "xdg"),
        )
        for index in range(self.members):
            log = d / f"agent{index}.log"
            agent = subprocess.Popen(
                [agent_bin, "http", f"127.0.0.1:{self.upstream_port}", "--url",
                 f"https://{self.HOST}", "--pooling-enabled", "--config", str(d / "agent.yml")],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log(log.name),
                text=True,
                env=env,
            )  # fmt: skip
            self.agents.append(agent)
            assert agent.stdout is not None
            forwarding = _LineReader(agent.stdout, log).wait_for(self.FORWARDING, START_TIMEOUT)
            if forwarding is None:
                raise TunnelUnavailableError(
                    f"pool member {index} (burrow http --pooling-enabled) "
                    f"{_how_it_ended(agent)} without a Forwarding line{_tail(log)}"
                    f"\n edge log:{_tail(edge_log)}"
                )
            self.server_name = forwarding.group(1)
            self.local_port = int(forwarding.group(2))
        self.ca_path = data_dir / "ca.pem"
        _wait_for_forward(self, None, "the pool", edge_log)

    def roles(self) -> dict[str, list[int]]:
        assert self.edge is not None
        return {
            "edge": [self.edge.pid, *descendants(self.edge.pid)],
            "agent": [a.pid for a in self.agents if a.poll() is None],
        }

    def stop(self) -> None:
        for agent in self.agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGCONT)  # a paused agent cannot act on SIGTERM
            _stop(agent)
        _stop(self.edge)

    def target(self) -> httpload.Target:
        assert self.server_name is not None and self.ca_path is not None
        context = ssl.create_default_context(cafile=str(self.ca_path))
        return httpload.Target(port=self.local_port, host=self.server_name, context=context)


# ------------------------------------------------------------------------------------ load


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One request of the load: monotonic start and end, and whether it was answered right."""

    started: float
    ended: float
    ok: bool
    error: str = ""


class _Connection:
    """A keep-alive HTTPS connection that reconnects after any failure."""

    def __init__(self, target: httpload.Target) -> None:
        self.target = target
        self.sock: Any = None
        self.request = (
            f"GET {origin.SMALL_PATH} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            "User-Agent: burrow-bench-failover\r\n\r\n"
        ).encode()

    def get(self) -> None:
        """One GET; LoadError/OSError unless answered 200 with the origin's small body."""
        if self.sock is None:
            self.sock = httpload.open_connection(self.target)
            self.sock.settimeout(REQUEST_TIMEOUT)
        try:
            self.sock.sendall(self.request)
            status, fields, rest = httpload._read_head_fields(self.sock)
            length = int(fields["content-length"])
            while len(rest) < length:
                chunk = self.sock.recv(length - len(rest))
                if not chunk:
                    raise load.LoadError("connection closed inside the body")
                rest += chunk
            if status != 200 or rest != origin.SMALL_BODY:
                raise load.LoadError(f"status {status}, body {rest[:80]!r}")
            if fields.get("connection", "").lower() == "close":
                self.close()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class SteadyLoad:
    """`WORKERS` threads, each sending one GET every `PACE` s (or at once if it fell behind)
    on its own keep-alive connection until stopped; every outcome is kept. Leaving the `with`
    block stops the threads and waits for their last requests (each bounded)."""

    target: httpload.Target
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        connection = _Connection(self.target)
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    connection.get()
                    self.outcomes.append(Outcome(started=started, ended=time.monotonic(), ok=True))
                except (OSError, load.LoadError, ValueError, KeyError) as exc:
                    self.outcomes.append(
                        Outcome(started=started, ended=time.monotonic(), ok=False, error=repr(exc))
                    )
                due = max(due + PACE, time.monotonic() - PACE)
                self._stop.wait(max(0.0, due - time.monotonic()))
        finally:
            connection.close()

    def __enter__(self) -> SteadyLoad:
        for _ in range(WORKERS):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)


def summarize(outcomes: list[Outcome], signalled: float) -> Record:
    """The scenario's figures from its requests and the moment of the signal (pure).

    lost: requests that failed; lost_before: of those, the ones that ended before the signal
    (a healthy pool has none); recovery_ms: signal to the end of the last request that failed
    or took longer than SLOW_REQUEST and ended after the signal, 0 if none; slowest_ms: the
    longest request that ended after the signal.
    """
    after = [o for o in outcomes if o.ended >= signalled]
    disrupted = [o for o in after if not o.ok or o.ended - o.started > SLOW_REQUEST]
    last = max((o.ended for o in disrupted), default=signalled)
    return {
        "requests": len(outcomes),
        "lost": sum(not o.ok for o in outcomes),
        "lost_before": sum(not o.ok for o in outcomes if o.ended < signalled),
        "slow": sum(o.ok for o in disrupted),
        "recovery_ms": round((last - signalled) * 1000, 1),
        "slowest_ms": round(max((o.ended - o.started for o in after), default=0.0) * 1000, 1),
        "errors": sorted({o.error for o in outcomes if not o.ok})[:5],
    }


def scenario(pool: PoolTunnel, how: str) -> Record:
    """Load, `SCENARIOS[how]`'s signal to the first member, more load; its `summarize` record."""
    sig, _label = SCENARIOS[how]
    victim = pool.agents[0]
    with SteadyLoad(pool.target()) as steady:
        time.sleep(BEFORE)
        signalled = time.monotonic()
        victim.send_signal(sig)
        time.sleep(AFTER)
    record = summarize(steady.outcomes, signalled)
    if how == "drain":
        try:
            record["drained_exit"] = victim.wait(REQUEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            record["drained_exit"] = None
    if record["lost_before"] or not record["requests"]:
        raise load.LoadError(f"{how}: the pool was not healthy before the signal: {record}")
    record.update(
        scenario=how,
        signal=sig.name,
        workers=WORKERS,
        pace_s=PACE,
        before_s=BEFORE,
        after_s=AFTER,
        heartbeat_s=[HEARTBEAT_INTERVAL, HEARTBEAT_TOLERANCE],
    )
    return record


def rate(pool: PoolTunnel, threads: int, connections: int, seconds: int, warmup: int) -> Record:
    """wrk's keep-alive GETs through the pool (after an untimed warm-up): req/s, p50, p99,
    and the tunnel processes' CPU%."""
    target = pool.target()
    if warmup > 0:
        httpload.run_wrk(
            target, origin.SMALL_PATH, threads=threads, connections=connections, seconds=warmup
        )
    pids = pool.pids()
    before = cpu_snapshot(pids)
    result = httpload.run_wrk(
        target, origin.SMALL_PATH, threads=threads, connections=connections, seconds=seconds
    )
    spent = sum(cpu_delta(before, cpu_snapshot(pids)).values())
    return {
        "members": pool.members,
        "threads": threads,
        "connections": connections,
        "seconds": round(result.seconds, 3),
        "requests": result.requests,
        "rps": round(result.rps, 1),
        "p50_ms": round(result.latency_ms["50"], 4),
        "p99_ms": round(result.latency_ms["99"], 4),
        "cpu_pct": round(100 * spent / result.seconds, 1),
        "socket_errors": result.socket_errors,
    }


# --------------------------------------------------------------------------------- the run


def run_measure(args: Any, log: Callable[[str], None], unavailable: dict[str, str]) -> list[Record]:
    """The failover measure as `python -m benchmarks --only failover` runs it: its own nginx
    origin, then `run_all`. Needs `burrow` among `--tunnels` and wrk; what is missing goes in
    `unavailable` (the measure is then skipped)."""
    if "burrow" not in args.tunnels:
        log(f"{NAME}: measures Burrow's pools only; skipped (--tunnels has no burrow)")
        return []
    if shutil.which(httpload.WRK) is None:
        unavailable[httpload.WRK] = f"wrk not found (apt-get install wrk); skipped {NAME}"
        return []
    try:
        web = origin.Origin(big_bytes=0)
    except origin.OriginUnavailableError as exc:
        unavailable["nginx"] = str(exc)
        log(f"nginx origin unavailable, skipping {NAME}:\n  {exc}")
        return []
    try:
        return run_all(args, web, log, unavailable)
    finally:
        web.close()


def run_all(
    args: Any, web: origin.Origin, log: Callable[[str], None], unavailable: dict[str, str]
) -> list[Record]:
    """Every run of every scenario and rate column, each on a fresh pool; the raw records.

    A pool that cannot start marks the measure unavailable (and stops it); a scenario or rate
    column that fails is an `error` record, and the others still run.
    """
    records: list[Record] = []
    columns = [*(("scenario", how) for how in SCENARIOS), *(("rate", c) for c in RATE_COLUMNS)]
    for run in range(1, args.runs + 1):
        for kind, name in columns:
            where = f"[{NAME} {run}/{args.runs}] {name}"
            members = RATE_COLUMNS.get(name, MEMBERS)
            try:
                with PoolTunnel(web.http_port, members, bin_dir=args.burrow_bin) as pool:
                    if kind == "scenario":
                        record = scenario(pool, name)
                    else:
                        record = rate(
                            pool,
                            args.http_threads,
                            args.http_connections,
                            args.http_seconds,
                            args.http_warmup,
                        )
            except TunnelUnavailableError as exc:
                unavailable[PoolTunnel.name] = str(exc)
                log(f"{where}: the pool could not start, skipping {NAME}:\n  {exc}")
                return records
            except (OSError, load.LoadError) as exc:
                records.append({"tunnel": name, "measure": NAME, "run": run, "error": repr(exc)})
                log(f"{where}: FAILED: {exc!r}")
                continue
            records.append({"tunnel": name, "measure": NAME, "row": NAME, "run": run, **record})
            log(f"{where} {_describe(record)}")
    return records


def _probe(tunnel: Tunnel) -> None:
    """One GET through the pool, answered 200 with the origin's small body."""
    assert isinstance(tunnel, PoolTunnel)
    httpload.probe(tunnel.target(), origin.SMALL_PATH, origin.SMALL_BODY)


def _describe(record: Record) -> str:
    if "rps" in record:
        return (
            f"{record['members']} member(s): {record['rps']:,.0f} req/s, "
            f"p99 {record['p99_ms']:.3f} ms, tunnel CPU {record['cpu_pct']:.0f}%"
        )
    return (
        f"{record['requests']} requests, {record['lost']} lost, recovery "
        f"{record['recovery_ms']:.0f} ms, slowest {record['slowest_ms']:.0f} ms"
    )


# ------------------------------------------------------------------------------- the table


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "—"
    summary = Summary.of(values)
    text = format(summary.median, fmt)
    if summary.n > 1:
        text += f" ({format(summary.low, fmt)}{EN_DASH}{format(summary.high, fmt)})"
    return text


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


def render(records: list[Record], runs: int) -> str:
    """The failover tables (scenarios, then the rate of two members beside one); empty if the
    measure did not run. Pure."""
    mine = [r for r in records if r.get("row") == NAME]
    if not mine:
        return ""
    stat = f"median ({'min' + EN_DASH + 'max'})" if runs > 1 else "single run"
    parts = [
        "",
        f"Failover: an https:// pool of {MEMBERS} `burrow http --pooling-enabled` agents, one "
        f"signalled after {BEFORE:g} s of {WORKERS} keep-alive clients x {1 / PACE:.0f} GET/s, "
        f"then {AFTER:g} s more; edge heartbeat {HEARTBEAT_INTERVAL:g} s + "
        f"{HEARTBEAT_TOLERANCE:g} s; {stat} of {runs} run(s)",
        "",
    ]
    body = []
    for how, (_sig, label) in SCENARIOS.items():
        rows = [r for r in mine if r.get("scenario") == how]
        if rows:
            body.append(
                [
                    label,
                    _cell([r["requests"] for r in rows], ".0f"),
                    _cell([r["lost"] for r in rows], ".0f"),
                    _cell([r["recovery_ms"] for r in rows], ".0f"),
                    _cell([r["slowest_ms"] for r in rows], ".0f"),
                ]
            )
    if body:
        header = ["scenario", "requests", "lost", "recovery (ms)", "slowest request (ms)"]
        parts += [_markdown(header, body), ""]
        parts.append(
            f"recovery: from the signal to the end of the last request that failed or took over "
            f"{SLOW_REQUEST * 1000:.0f} ms (0: none did)"
        )
    rates = {c: [r for r in mine if r["tunnel"] == c and "rps" in r] for c in RATE_COLUMNS}
    if any(rates.values()):
        per_run = {r["run"]: r["rps"] for r in rates["pool1"]}
        ratios = [r["rps"] / per_run[r["run"]] for r in rates["pool2"] if per_run.get(r["run"])]
        sample = next(r for rows in rates.values() for r in rows)
        header = ["rate", "1 member", f"{MEMBERS} members", f"{MEMBERS}/1 (per run)"]
        wrk = f"wrk -t{sample['threads']} -c{sample['connections']}"
        body = [
            [
                f"HTTP 100 B GET through the pool, {wrk} (req/s)",
                _cell([r["rps"] for r in rates["pool1"]], ",.0f"),
                _cell([r["rps"] for r in rates["pool2"]], ",.0f"),
                _cell(ratios, ".2f"),
            ],
            [
                "HTTP latency p99 (ms)",
                _cell([r["p99_ms"] for r in rates["pool1"]], ".3f"),
                _cell([r["p99_ms"] for r in rates["pool2"]], ".3f"),
                "—",
            ],
            [
                "tunnel CPU (edge + agents, %)",
                _cell([r["cpu_pct"] for r in rates["pool1"]], ".0f"),
                _cell([r["cpu_pct"] for r in rates["pool2"]], ".0f"),
                "—",
            ],
        ]
        parts += ["", _markdown(header, body)]
    return "\n".join(parts)


def summary(records: list[Record]) -> dict[str, Any]:
    """Medians of each scenario's and rate column's figures, for the JSON."""
    mine = [r for r in records if r.get("row") == NAME]
    out: dict[str, Any] = {}
    for how in SCENARIOS:
        rows = [r for r in mine if r.get("scenario") == how]
        if rows:
            out[how] = {
                key: Summary.of([r[key] for r in rows]).as_dict()
                for key in ("requests", "lost", "recovery_ms", "slowest_ms")
            }
    for column in RATE_COLUMNS:
        rows = [r for r in mine if r["tunnel"] == column and "rps" in r]
        if rows:
            out[column] = {"rps": Summary.of([r["rps"] for r in rows]).as_dict()}
    return out
