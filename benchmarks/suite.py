"""The measures: what each one does through a running tunnel, and the raw record it returns.

Each measure takes a started tunnel, the upstream servers and the parameters and returns one raw
record per table row it feeds (throughput feeds upload and download, parallel one row per stream
count, http the requests/s row and the two latency rows). Every record carries the tunnel's CPU
seconds by role (from /proc, before and after) and the load generator's own CPU, so a figure can
always be read beside what it cost and whether the generator kept up.

`MEASURES` says, for each measure, which upstream its tunnels forward to (the load server of
`benchmarks.load`, or the nginx origin's plain or TLS port), which kind of Burrow endpoint stands
in the "burrow" column (`burrow tcp`, `burrow http`, `burrow tls`), which programs it runs, and
how a client reaches the upstream through a given tunnel (`target`). A measure with
`bare_server` (http) also runs the "h11" column: a bare trio + h11 server answering the small
body itself, the Python ceiling beside the tunnels; one with `bare_relay` (the tcp:// ones)
also runs the "relay" column, a bare trio TCP relay in one process. A measure with `policies`
(http_policy) has its own columns instead of direct/ssh/burrow: Burrow's https:// endpoint with
each Traffic Policy of `POLICIES` (benchmarks/policies/*.yml), or none.
"""

from __future__ import annotations

import resource
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import httpload, load, origin
from benchmarks.measure import cpu_delta, cpu_seconds, cpu_snapshot, percentile, rss_kib
from benchmarks.tunnels import Tunnel

Record = dict[str, Any]

# The Traffic Policies of the http_policy columns: column name -> policy file (None: no policy).
POLICY_DIR = Path(__file__).parent / "policies"
POLICIES: dict[str, Path | None] = {
    "none": None,
    "rules3": POLICY_DIR / "rules3.yml",
    "rules10": POLICY_DIR / "rules10.yml",
}
# Sent with every http_policy request: the policies' header checks read it.
POLICY_REQUEST_HEADERS = {"X-Bench-Client": "wrk"}
# The response header each policy adds (its value is the column name): proof it ran.
POLICY_MARK = "x-bench-policy"

# Seconds to let a tunnel settle after opening the idle streams, before reading RSS.
MEMORY_SETTLE = 0.5


@dataclass(frozen=True, kw_only=True)
class Params:
    nbytes: int
    seconds: float | None
    streams: tuple[int, ...]
    rounds: int
    warmup: int
    message_size: int
    idle_streams: int
    http_threads: int
    http_connections: int
    http_seconds: int
    http_warmup: int


@dataclass(frozen=True, kw_only=True)
class Upstreams:
    """The servers tunnels forward to: the load server, and nginx when an HTTP measure runs."""

    server: load.UpstreamServer
    nginx: origin.Origin | None = None

    def web(self) -> origin.Origin:
        assert self.nginx is not None, "an HTTP measure ran without the nginx origin"
        return self.nginx


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the load client
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    # Reaped children only: around one subprocess.run(wrk), the delta is that wrk's CPU.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _server_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def _accounted(
    tunnel: Tunnel,
    server_pids: list[int],
    work: Callable[[], Record],
    client_cpu: Callable[[], float] = _self_cpu,
) -> Record:
    """Run work(), adding the CPU seconds each tunnel role and the load generator spent."""
    roles = tunnel.roles()
    pids = [pid for group in roles.values() for pid in group]
    before = cpu_snapshot(pids)
    client_before, server_before = client_cpu(), _server_cpu(server_pids)
    wall_start = time.perf_counter()
    record = work()
    wall = time.perf_counter() - wall_start
    after = cpu_snapshot(pids)
    spent = cpu_delta(before, after)
    by_role = {role: round(sum(spent[p] for p in group), 4) for role, group in roles.items()}
    total = sum(by_role.values())
    record["wall_s"] = round(wall, 6)
    record["tunnel_pids"] = roles
    record["cpu_s"] = by_role
    record["cpu_s_total"] = round(total, 4)
    record["cpu_pct"] = round(100 * total / wall, 1) if pids else None
    record["cpu_pct_by_role"] = {role: round(100 * s / wall, 1) for role, s in by_role.items()}
    record["generator_cpu_pct"] = {
        "client": round(100 * (client_cpu() - client_before) / wall, 1),
        "server": round(100 * (_server_cpu(server_pids) - server_before) / wall, 1),
    }
    return record


def _transfer(result: load.Transfer) -> Record:
    return {
        "bytes": result.nbytes,
        "seconds": round(result.seconds, 6),
        "mb_s": round(result.mb_per_s, 2),
    }


def throughput(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """One stream each way: client to server (upload), then server to client (download)."""
    server_pids = [up.server.pid]
    upload = _accounted(
        tunnel, server_pids, lambda: _transfer(load.upload(tunnel.local_port, p.nbytes, p.seconds))
    )
    download = _accounted(
        tunnel,
        server_pids,
        lambda: _transfer(load.download(tunnel.local_port, p.nbytes, p.seconds)),
    )
    return {"upload": upload, "download": download}


def parallel(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """N uploads at once (like iperf3 -P N), each moving nbytes / N; total MB/s."""
    records: dict[str, Record] = {}
    for n in p.streams:

        def work(n: int = n) -> Record:
            record = _transfer(load.parallel_upload(tunnel.local_port, n, p.nbytes, p.seconds))
            record["streams"] = n
            return record

        records[f"parallel{n}"] = _accounted(tunnel, [up.server.pid], work)
    return records


def latency(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """One connection, message_size-byte ping-pong; p50/p99 of the timed round trips in ms."""

    def work() -> Record:
        times = load.ping_pong(tunnel.local_port, p.rounds, p.warmup, p.message_size)
        return {
            "rounds": len(times),
            "warmup": p.warmup,
            "message_size": p.message_size,
            "p50_ms": round(percentile(times, 50), 4),
            "p99_ms": round(percentile(times, 99), 4),
            "mean_ms": round(statistics.fmean(times), 4),
            "min_ms": round(min(times), 4),
            "max_ms": round(max(times), 4),
        }

    return {"latency": _accounted(tunnel, [up.server.pid], work)}


def memory(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """RSS of each tunnel role before and after idle_streams held connections; KiB per stream."""
    roles = tunnel.roles()
    if not roles:
        return {}  # direct: no tunnel process to weigh

    def rss() -> dict[str, dict[int, int]]:
        return {role: {pid: rss_kib(pid) for pid in pids} for role, pids in roles.items()}

    before = rss()
    start = time.perf_counter()
    with load.hold_open(tunnel.local_port, p.idle_streams) as socks:
        open_s = time.perf_counter() - start
        time.sleep(MEMORY_SETTLE)
        after = rss()
        held = len(socks)
        try:  # does the tunnel still take a new stream with all of them open?
            load.probe(tunnel.local_port)
            one_more: bool | str = True
        except (OSError, load.LoadError) as exc:
            one_more = repr(exc)
    record: Record = {
        "streams": held,
        "open_s": round(open_s, 3),
        "one_more_stream": one_more,
        "rss_kib_before": before,
        "rss_kib_after": after,
    }
    for role in roles:
        grown = sum(after[role].values()) - sum(before[role].values())
        record[f"{role}_kib_per_stream"] = round(grown / held, 3)
    return {"memory": record}


def plain_or_https(tunnel: Tunnel, up: Upstreams) -> httpload.Target:
    """Plain HTTP to the tunnel's port, or HTTPS when the tunnel is an https:// endpoint."""
    if tunnel.server_name is None:
        return httpload.Target(port=tunnel.local_port)
    context = ssl.create_default_context(cafile=str(tunnel.ca_path))
    return httpload.Target(port=tunnel.local_port, host=tunnel.server_name, context=context)


def tls_to_origin(tunnel: Tunnel, up: Upstreams) -> httpload.Target:
    """TLS to the origin's own certificate (SNI origin.TLS_HOST), whatever carries the bytes."""
    context = ssl.create_default_context(cafile=str(up.web().ca_path))
    return httpload.Target(port=tunnel.local_port, host=origin.TLS_HOST, context=context)


def _wrk(
    tunnel: Tunnel,
    up: Upstreams,
    p: Params,
    headers: dict[str, str] | None = None,
    count_statuses: bool = False,
) -> Record:
    """A warm-up, then the timed wrk run, accounted; the raw record of the http rows."""
    target = plain_or_https(tunnel, up)
    settings = {
        "threads": p.http_threads,
        "connections": p.http_connections,
    }

    def run(seconds: int) -> httpload.WrkResult:
        return httpload.run_wrk(
            target,
            origin.SMALL_PATH,
            seconds=seconds,
            headers=headers,
            count_statuses=count_statuses,
            **settings,
        )

    if p.http_warmup > 0:  # untimed: connections, TLS sessions and the tunnel's streams warm up
        run(p.http_warmup)

    def work() -> Record:
        result = run(p.http_seconds)
        return {
            "url": target.url(origin.SMALL_PATH),
            **settings,
            "seconds": round(result.seconds, 3),
            "warmup_s": p.http_warmup,
            "requests": result.requests,
            "rps": round(result.rps, 1),
            "p50_ms": round(result.latency_ms["50"], 4),
            "p99_ms": round(result.latency_ms["99"], 4),
            "latency_ms": result.latency_ms,
            "socket_errors": result.socket_errors,
            **({"non_200": result.non_200} if count_statuses else {}),
        }

    return _accounted(tunnel, up.web().pids(), work, client_cpu=_children_cpu)


def http(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """wrk keep-alive GETs of the origin's 100-byte body: requests/s and latency p50/p99."""
    return {"http": _wrk(tunnel, up, p)}


def http_tcp(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """The http measure's wrk load through a tcp:// endpoint (plain HTTP through Burrow)."""
    return {"http_tcp": _wrk(tunnel, up, p)}


def http_policy(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """The http measure through an https:// endpoint running one of `POLICIES` (or none).

    Every request carries POLICY_REQUEST_HEADERS. One GET first checks the policy is in force
    (200, the origin's body, and the policy's POLICY_MARK response header, or none without a
    policy); then wrk counts every answer that is not 200 and the run fails if there is one.
    """
    target = plain_or_https(tunnel, up)
    policy = tunnel.policy_name
    answer = httpload.get(target, origin.SMALL_PATH, POLICY_REQUEST_HEADERS)
    mark = answer.headers.get(POLICY_MARK)
    if answer.status != 200 or answer.body != origin.SMALL_BODY or mark != policy:
        raise load.LoadError(
            f"GET {target.url(origin.SMALL_PATH)} under policy {policy or 'none'}: status "
            f"{answer.status}, {POLICY_MARK}: {mark!r}, body {answer.body[:100]!r}"
        )
    record = _wrk(tunnel, up, p, headers=POLICY_REQUEST_HEADERS, count_statuses=True)
    record["policy"] = policy or "none"
    return {"http_policy": record}


def _bulk(tunnel: Tunnel, up: Upstreams, target: httpload.Target) -> Record:
    if up.web().big_bytes <= 0:
        raise load.LoadError("the origin has no large body to serve (its big_bytes is 0)")
    up.web().warm_cache()  # untimed: every column downloads from the page cache

    def work() -> Record:
        record = _transfer(httpload.download(target, origin.BIG_PATH, up.web().big_bytes))
        record["url"] = target.url(origin.BIG_PATH)
        return record

    return _accounted(tunnel, up.web().pids(), work)


def https_bulk(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """One GET of a --bytes body: HTTPS through the https:// endpoint, plain HTTP otherwise."""
    return {"https_bulk": _bulk(tunnel, up, plain_or_https(tunnel, up))}


def tls_bulk(tunnel: Tunnel, up: Upstreams, p: Params) -> dict[str, Record]:
    """One GET of a --bytes body over TLS to the origin's TLS port, end to end."""
    return {"tls_bulk": _bulk(tunnel, up, tls_to_origin(tunnel, up))}


@dataclass(frozen=True, kw_only=True)
class Measure:
    """A measure, what its tunnels forward to, and which Burrow endpoint kind it measures."""

    run: Callable[[Tunnel, Upstreams, Params], dict[str, Record]]
    # "load": benchmarks.load's server; "http"/"tls": the nginx origin's plain/TLS port.
    upstream: str = "load"
    # The Burrow endpoint in the "burrow" column: "tcp", "https" (burrow http) or "tls".
    endpoint: str = "tcp"
    # Programs the measure runs besides the tunnels (checked on PATH before it starts).
    programs: tuple[str, ...] = ()
    # How a client reaches the upstream through a tunnel; None: benchmarks.load's protocol.
    target: Callable[[Tunnel, Upstreams], httpload.Target] | None = None
    # Downloads the origin's --bytes body (which is then written to disk before the run).
    big_body: bool = False
    # Columns are Burrow's https:// endpoint under each of these POLICIES, not the tunnels.
    policies: tuple[str, ...] = ()
    # Part of a plain `./dev bench` (no --only).
    default: bool = True
    # Also runs the bare trio + h11 server column ("h11": `tunnels.H11Server`), which answers
    # the origin's small body itself: only for measures that GET it.
    bare_server: bool = False
    # Also runs the bare trio TCP relay column ("relay": `tunnels.TrioRelay`, one process, no TLS
    # or mux): the Python ceiling for the tcp:// measures.
    bare_relay: bool = False

    def upstream_port(self, up: Upstreams) -> int:
        if self.upstream == "load":
            return up.server.port
        return up.web().http_port if self.upstream == "http" else up.web().tls_port

    def probe(self, up: Upstreams) -> Callable[[Tunnel], None] | None:
        """The tunnel's readiness check: one small GET through it (None: the load server's)."""
        target = self.target
        if target is None:
            return None
        return lambda tunnel: httpload.probe(
            target(tunnel, up), origin.SMALL_PATH, origin.SMALL_BODY
        )


MEASURES: dict[str, Measure] = {
    "throughput": Measure(run=throughput, bare_relay=True),
    "parallel": Measure(run=parallel, bare_relay=True),
    "latency": Measure(run=latency, bare_relay=True),
    "memory": Measure(run=memory),
    "http": Measure(
        run=http,
        upstream="http",
        endpoint="https",
        programs=("wrk",),
        target=plain_or_https,
        bare_server=True,
    ),
    # The same wrk load with a tcp:// endpoint in the burrow column: the tunnel's own request
    # cost, without the edge's TLS and HTTP work.
    "http_tcp": Measure(
        run=http_tcp,
        upstream="http",
        endpoint="tcp",
        programs=("wrk",),
        target=plain_or_https,
        bare_relay=True,
    ),
    "https_bulk": Measure(
        run=https_bulk, upstream="http", endpoint="https", target=plain_or_https, big_body=True
    ),
    "tls_bulk": Measure(
        run=tls_bulk, upstream="tls", endpoint="tls", target=tls_to_origin, big_body=True
    ),
    # Opt-in (--only http_policy): its 3 columns x --runs wrk runs would add about as much time
    # to a plain `./dev bench` as the http measure itself takes.
    "http_policy": Measure(
        run=http_policy,
        upstream="http",
        endpoint="https",
        programs=("wrk",),
        target=plain_or_https,
        policies=tuple(POLICIES),
        default=False,
    ),
}
