"""Yield report of a filter stack: counts in/out per filter, kept fraction, dropped examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.atomic import write_json, write_text


def build_report(stages: list[dict[str, Any]], total: int, failed_at_generation: int) -> dict[str, Any]:
    kept = stages[-1]["out"] if stages else total
    return {"candidates": total, "failed_at_generation": failed_at_generation, "kept": kept,
            "kept_fraction": kept / total if total else 0.0, "filters": stages}


def to_markdown(report: dict[str, Any]) -> str:
    lines = ["# Filter report", "",
             f"{report['candidates']} candidate queries ({report['failed_at_generation']} more failed at generation); "
             f"kept {report['kept']} ({report['kept_fraction']:.1%}).", "",
             "| # | filter | settings | in | out | dropped | kept of in |", "|---|---|---|---|---|---|---|"]
    for i, s in enumerate(report["filters"], 1):
        frac = s["out"] / s["in"] if s["in"] else 0.0
        lines.append(f"| {i} | {s['name']} | {s['settings']} | {s['in']} | {s['out']} | {s['in'] - s['out']} "
                     f"| {frac:.1%} |")
    for s in report["filters"]:
        if s["dropped_examples"]:
            lines += ["", f"## Dropped by {s['name']}", ""]
            lines += [f"- `{e['query_id']}` ({e['values']}): {e['text']}" for e in s["dropped_examples"]]
    return "\n".join(lines) + "\n"


def write_report(folder: Path, report: dict[str, Any]) -> None:
    write_json(folder / "filter_report.json", report)
    write_text(folder / "filter_report.md", to_markdown(report))
