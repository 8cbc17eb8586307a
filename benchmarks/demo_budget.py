"""The demo's time budget, measured: fit the cost model's coefficients on runs, check its predictions on another.

    ragtune demo budget.minutes=1000 out=runs/demo-fit        # the configured workload, with the calibration saved
    python benchmarks/demo_budget.py units runs/demo-fit      # optional: time the units again now (same machine
                                                              # and ISA variables as the run, idle) -> units.json
    python benchmarks/demo_budget.py fit runs/demo-fit [runs/demo-fit-avx2 ...]   # COEF for pipeline/budget.py
    ragtune demo out=runs/demo-check                          # the 12-minute budget
    python benchmarks/demo_budget.py check runs/demo-check    # expected vs actual seconds per stage

A coefficient is a stage's seconds over (its unit cost measured by the calibration x its workload in the config).
With several runs, each part's coefficient is the geometric mean over the runs that have it; it carries to another
machine as far as the stage's cost scales like its unit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from _common import hardware_line, print_table
from ragtune.config import load_config
from ragtune.pipeline import budget
from ragtune.pipeline.loop import RunConfig


def _units(run: Path) -> dict[str, float]:
    again = run / "units.json"
    if again.exists():
        return json.loads(again.read_text(encoding="utf-8"))
    plan_path = run / "budget.json"
    if not plan_path.exists():
        sys.exit(f"{plan_path}: missing; run the demo with budget.minutes set (e.g. budget.minutes=1000)")
    return json.loads(plan_path.read_text(encoding="utf-8"))["units"]


def _stages(run: Path) -> tuple[dict, dict[str, dict[str, float]]]:
    stages = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["stages"]
    cfg = load_config(RunConfig, run / "config.yaml")
    plan = json.loads((run / "budget.json").read_text(encoding="utf-8"))
    # the plan's own workloads name the parts as the run resolved them (e.g. bf16 or fp32 generation)
    return stages, plan.get("work") or budget.workloads(cfg, plan["sizes"])


def units(run: Path) -> None:
    measured, _ = budget.calibrate(load_config(RunConfig, run / "config.yaml"), run / "data")
    (run / "units.json").write_text(json.dumps(measured, indent=1), encoding="utf-8")
    print(hardware_line())
    print(json.dumps(measured))


def fit(runs: list[Path]) -> None:
    print(hardware_line())
    per_part: dict[str, list[float]] = {}
    for run in runs:
        u = _units(run)
        stages, work = _stages(run)
        unit_of = {"enc": u["encode_doc"], "sft": u["sft_step"]}
        rows = []
        for stage, parts in work.items():
            if len(parts) != 1 or stage not in stages:
                continue
            (part, amount), = parts.items()
            kind = budget.COEF[part][0]
            coef = stages[stage]["seconds"] / (unit_of[kind] * amount)
            per_part.setdefault(part, []).append(coef)
            rows.append([stage, part, f"{amount:g}", stages[stage]["seconds"], f"{coef:.4g}"])
        print(f"\n{run}: encoder {u['encode_doc']:.5f} s/doc, SFT step {u['sft_step']:.3f} s\n")
        print_table(["stage", "part", "workload", "seconds", "coefficient"], rows)
    print("\nCOEF = {")
    for part, (kind, _) in budget.COEF.items():
        if part in per_part:
            mean = math.exp(sum(map(math.log, per_part[part])) / len(per_part[part]))
            print(f'    "{part}": ("{kind}", {mean:.3g}),')
    print("}")


def check(run: Path) -> None:
    plan = json.loads((run / "budget.json").read_text(encoding="utf-8"))
    stages = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["stages"]
    rows, total_exp, total_act = [], 0.0, 0.0
    for stage, exp in plan["expected"].items():
        act = stages.get(stage, {}).get("seconds")
        if act is None:
            continue
        total_exp, total_act = total_exp + exp, total_act + act
        rows.append([stage, exp, act, f"{act / exp:.2f}" if exp >= 1 else ""])
    rows.append(["**total**", total_exp, total_act, f"{total_act / total_exp:.2f}"])
    print(hardware_line())
    changes = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in plan["changes"].items()) or "none"
    print(f"run on {plan['cpu']}: budget {plan['budget_minutes']:g} min, calibration {plan['calibration_seconds']} s, "
          f"scale {plan['scale']} ({changes}); configured workload expected "
          f"{plan['full_workload_seconds'] / 60:.1f} min\n")
    print_table(["stage", "expected s", "actual s", "actual / expected"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["units", "fit", "check"])
    ap.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args()
    if args.mode == "fit":
        fit(args.runs)
    else:
        for run in args.runs:
            (units if args.mode == "units" else check)(run)


if __name__ == "__main__":
    main()
