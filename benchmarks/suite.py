"""The measures: what each one does through a running tunnel, and the raw record it returns.

Each measure takes a started tunnel and the parameters and returns one raw record per table row
it feeds (throughput feeds upload and download, parallel one row per stream count). Every record
carries the tunnel's CPU seconds by role (from /proc, before and after) and the load generator's
own CPU, so a figure can always be read beside what it cost and whether the generator kept up.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import load
from benchmarks.measure import cpu_delta, cpu_seconds, cpu_snapshot, percentile, rss_kib
from benchmarks.tunnels import Tunnel

Record = dict[str, Any]

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


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of the load client
    return usage.ru_utime + usage.ru_stime


def _accounted(tunnel: Tunnel, server_pid: int, work: Callable[[], Record]) -> Record:
    """Run work(), adding the CPU seconds each tunnel role and the load generator spent."""
    roles = tunnel.roles()
    pids = [pid for group in roles.values() for pid in group]
    before = cpu_snapshot(pids)
    client_before, server_before = _self_cpu(), cpu_seconds(server_pid)
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
        "client": round(100 * (_self_cpu() - client_before) / wall, 1),
        "server": round(100 * (cpu_seconds(server_pid) - server_before) / wall, 1),
    }
    return record


def _transfer(result: load.Transfer) -> Record:
    return {
        "bytes": result.nbytes,
        "seconds": round(result.seconds, 6),
        "mb_s": round(result.mb_per_s, 2),
    }


def throughput(tunnel: Tunnel, server_pid: int, p: Params) -> dict[str, Record]:
    """One stream each way: client to server (upload), then server to client (download)."""
    up = _accounted(
        tunnel, server_pid, lambda: _transfer(load.upload(tunnel.local_port, p.nbytes, p.seconds))
    )
    down = _accounted(
        tunnel, server_pid, lambda: _transfer(load.download(tunnel.local_port, p.nbytes, p.seconds))
    )
    return {"upload": up, "download": down}


def parallel(tunnel: Tunnel, server_pid: int, p: Params) -> dict[str, Record]:
    """N uploads at once (like iperf3 -P N), each moving nbytes / N; total MB/s."""
    records: dict[str, Record] = {}
    for n in p.streams:

        def work(n: int = n) -> Record:
            record = _transfer(load.parallel_upload(tunnel.local_port, n, p.nbytes, p.seconds))
            record["streams"] = n
            return record

        records[f"parallel{n}"] = _accounted(tunnel, server_pid, work)
    return records


def latency(tunnel: Tunnel, server_pid: int, p: Params) -> dict[str, Record]:
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

    return {"latency": _accounted(tunnel, server_pid, work)}


def memory(tunnel: Tunnel, server_pid: int, p: Params) -> dict[str, Record]:
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


MEASURES: dict[str, Callable[[Tunnel, int, Params], dict[str, Record]]] = {
    "throughput": throughput,
    "parallel": parallel,
    "latency": latency,
    "memory": memory,
}
