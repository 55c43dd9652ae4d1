"""Process and statistics helpers for the benchmarks: /proc readers, percentiles, medians.

CPU time comes from /proc/PID/stat (utime + stime, in clock ticks), memory from VmRSS in
/proc/PID/status. Both are Linux-only, like the rest of the benchmark harness.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ProcessGoneError(RuntimeError):
    """A tunnel process we were measuring exited."""


def _read_proc(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise ProcessGoneError(f"process {pid} is gone (reading /proc/{pid}/{name})") from exc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process (all its threads) has used so far."""
    stat = _read_proc(pid, "stat")
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of the process in KiB."""
    for line in _read_proc(pid, "status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ProcessGoneError(f"process {pid} has no VmRSS (a zombie?)")


def parent_pid(pid: int) -> int:
    stat = _read_proc(pid, "stat")
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def descendants(pid: int) -> list[int]:
    """Every live process below pid in the process tree (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = parent_pid(int(entry))
            except ProcessGoneError:
                continue
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        kids = sorted(child for child, parent in parents.items() if parent == current)
        found.extend(kids)
        frontier.extend(kids)
    return found


def cpu_snapshot(pids: Iterable[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {pid: round(after[pid] - before[pid], 4) for pid in before}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of values; the p-th smallest observation."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Median with the range of the runs it came from."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(
            median=statistics.median(values), low=min(values), high=max(values), n=len(values)
        )

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}


def _openssl_version() -> str:
    try:
        out = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or out.stderr.strip()
    except OSError:
        return "openssl not found"


def _version(cmd: list[str]) -> str:
    """The first line a program prints about its version (several print it on stderr)."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return f"{cmd[0]} not found"
    text = (out.stderr or out.stdout).strip()
    return text.splitlines()[0] if text else ""


def _ssh_version() -> str:
    return _version(["ssh", "-V"])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total_kib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_info() -> dict[str, object]:
    """What the numbers depend on: cores, affinity, CPU, kernel, Python, OpenSSL, the tools."""
    return {
        "nproc": os.cpu_count(),
        "sched_getaffinity": sorted(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_total_kib": _mem_total_kib(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version,
        "python_ssl": ssl.OPENSSL_VERSION,
        "openssl": _openssl_version(),
        "openssh": _ssh_version(),
        "wrk": _version(["wrk", "-v"]),
        "nginx": _version(["nginx", "-v"]) if shutil.which("nginx") else "nginx not found",
        "clk_tck": CLK_TCK,
    }
