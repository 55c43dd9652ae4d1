"""The http_policy table: Burrow's https:// endpoint with no policy, 3 rules and 10 rules.

Theory of operation: the http_policy measure (benchmarks/suite.py) records one raw record per
(run, policy column), as every measure does per (run, tunnel). `add_ratios` divides each figure
by the no-policy figure of the same run (the same moment of a noisy machine), so a ratio never
mixes runs; the table shows the median (min-max) of the columns' figures and of those per-run
ratios, and `cost_line` states the 10-rule policy's request-rate cost against the issue's target.
Pure: takes the raw records, returns rows of text; the caller prints them.
"""

from __future__ import annotations

from typing import Any

from benchmarks.measure import Summary

Record = dict[str, Any]

ROW = "http_policy"
BASELINE = "none"
COLUMNS = {"none": "no policy", "rules3": "3 rules", "rules10": "10 rules"}
# (field, label, unit): the figures of each column, and what the ratios divide.
FIELDS = (
    ("rps", "HTTP 100 B GET, https://", "req/s"),
    ("p50_ms", "HTTP latency p50", "ms"),
    ("p99_ms", "HTTP latency p99", "ms"),
)
# The target (Traffic Policy, Benchmarks): 10 rules cost at most 15% of the request rate.
TARGET_COST = 0.15
EN_DASH = "\u2013"


def add_ratios(records: list[Record]) -> None:
    """Give each http_policy record `<field>_vs_none`: its figure over the same run's no-policy."""
    baseline = {r["run"]: r for r in records if r.get("row") == ROW and r["tunnel"] == BASELINE}
    for record in records:
        base = baseline.get(record["run"]) if record.get("row") == ROW else None
        if base is None:
            continue
        for field, _label, _unit in FIELDS:
            if base.get(field):
                record[f"{field}_vs_none"] = round(record[field] / base[field], 4)


def _runs(records: list[Record], column: str) -> list[Record]:
    return [r for r in records if r.get("row") == ROW and r["tunnel"] == column]


def _number(value: float, unit: str) -> str:
    if unit == "req/s":
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}"
    return f"{value:.2f}"


def _summary_text(values: list[float], unit: str) -> str:
    if not values:
        return "—"
    summary = Summary.of(values)
    text = _number(summary.median, unit)
    if summary.n > 1:
        text += f" ({_number(summary.low, unit)}{EN_DASH}{_number(summary.high, unit)})"
    return text


def columns_present(records: list[Record]) -> list[str]:
    return [c for c in COLUMNS if _runs(records, c)]


def table(records: list[Record]) -> tuple[list[str], list[list[str]]]:
    """The header and body of the http_policy table (empty body: the measure did not run)."""
    present = columns_present(records)
    compared = [c for c in present if c != BASELINE] if BASELINE in present else []
    header = [
        "measure",
        *(COLUMNS[c] for c in present),
        *(f"{COLUMNS[c]}/{COLUMNS[BASELINE]}" for c in compared),
    ]
    body: list[list[str]] = []
    if not present:
        return header, body
    for field, label, unit in FIELDS:
        cells = []
        for column in present:
            runs = _runs(records, column)
            text = _summary_text([r[field] for r in runs], unit)
            cpus = [r["cpu_pct"] for r in runs if r.get("cpu_pct") is not None]
            if field == "rps" and cpus:
                text += f" @{Summary.of(cpus).median:.0f}%"
            cells.append(text)
        ratios = [
            _summary_text(
                [r[f"{field}_vs_none"] for r in _runs(records, c) if f"{field}_vs_none" in r],
                "ratio",
            )
            for c in compared
        ]
        body.append([f"{label} ({unit})", *cells, *ratios])
    return header, body


def cost_line(records: list[Record]) -> str | None:
    """The 10-rule policy's request-rate cost (1 - the median per-run ratio) against the target."""
    ratios = [r["rps_vs_none"] for r in _runs(records, "rules10") if "rps_vs_none" in r]
    if not ratios:
        return None
    cost = 1 - Summary.of(ratios).median
    verdict = "within" if cost <= TARGET_COST else "OVER"
    return (
        f"10-rule policy costs {100 * cost:.1f}% of the no-policy request rate "
        f"(median of per-run ratios; target at most {100 * TARGET_COST:.0f}%: {verdict})"
    )


def notes(records: list[Record]) -> list[str]:
    """wrk's peak CPU, and any socket errors, under the table."""
    runs = [r for r in records if r.get("row") == ROW]
    lines = []
    peaks = [r["generator_cpu_pct"] for r in runs if "generator_cpu_pct" in r and r["wall_s"] >= 1]
    if peaks:
        client = max(p["client"] for p in peaks)
        server = max(p["server"] for p in peaks)
        note = " (nginx near one core: it may be the limit)" if server > 95 else ""
        lines.append(f"HTTP requests peak CPU: wrk {client:.0f}%, nginx origin {server:.0f}%{note}")
    errors = {c: sum(sum(r["socket_errors"].values()) for r in _runs(records, c)) for c in COLUMNS}
    if any(errors.values()):
        counts = ", ".join(f"{COLUMNS[c]} {n}" for c, n in errors.items() if n)
        lines.append(f"wrk socket errors (connect/read/write/timeout, all runs): {counts}")
    return lines


def summary(records: list[Record]) -> dict[str, Any]:
    """The table's figures for the JSON: {column: {field: Summary dict, field_vs_none: ...}}."""
    result: dict[str, Any] = {}
    for column in columns_present(records):
        runs = _runs(records, column)
        cell: dict[str, Any] = {}
        for field, _label, _unit in FIELDS:
            cell[field] = Summary.of([r[field] for r in runs]).as_dict()
            ratios = [r[f"{field}_vs_none"] for r in runs if f"{field}_vs_none" in r]
            if ratios:
                cell[f"{field}_vs_none"] = Summary.of(ratios).as_dict()
        result[column] = cell
    return result
