"""Issue 13: what the loop's feedback half does, on the whole of SciFact, on CPU.

    python benchmarks/loop_feedback.py --work runs/loop-feedback                 # round 0, then PPO, DPO, GRPO
    python benchmarks/loop_feedback.py --work runs/loop-feedback --methods dpo   # one method
    python benchmarks/loop_feedback.py --work runs/loop-feedback --table         # only print the tables

Round 0 of configs/loop-scifact-rl-cpu.yaml (SFT, generation, BM25 + zero-shot filters, the retriever, difficulty,
generator quality, lexicographic preference pairs) runs once, in `<work>/ppo`. Each other method's run directory
starts as a copy of it, so every method improves the same SFT generator from the same cached stages, and the stage
manifest's CPU seconds say what each method cost. `rl_eval_docs` held-out abstracts (never generated for in the
round) are written for by the generator before and after the RL stage and scored by the loop reward; the table
reports the mean change, its paired p-value and the change per CPU minute of RL (for PPO, reward model included).

Defaults shrink the shipped config to fit 2 CPU cores (`--set` adds or overrides keys): one round, the
retriever trained for one epoch. The reward model's held-out accuracy comes with its Wilson 95% interval and the
binomial p-value against chance (0.5).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _common import hardware_line, print_table, ragtune

CONFIG = "configs/loop-scifact-rl-cpu.yaml"
DEFAULTS = ["rounds=1", "rl_after_last_round=true", "train_only_baseline=false", "rl_eval_docs=32",
            "retriever.num_train_epochs=1"]


def run(work: Path, method: str, extra: list[str]) -> None:
    out = work / method
    first = work / "ppo"
    if method != "ppo" and not out.exists() and first.exists():
        shutil.copytree(first, out, ignore=shutil.ignore_patterns("ppo", "reward_model", "rl_eval", ".lock"))
    ragtune("run", CONFIG, *DEFAULTS, *extra, f"rl={method}", f"out={out}")


def tables(work: Path, methods: list[str]) -> None:
    reports = {m: json.loads((work / m / "report.json").read_text()) for m in methods
               if (work / m / "report.json").is_file()}
    if not reports:
        print(f"no report.json under {work}/{{{','.join(methods)}}}")
        return
    r0 = next(iter(reports.values()))["rounds"][0]
    q, pr = r0["quality"], r0.get("preferences", {})
    print_table(["generated", "kept", "BM25 top-1", "BM25 top-10", "retriever top-1", "retriever top-10", "in band",
                 "copy rate", "words", "duplicates"],
                [[q["queries"], f"{q['kept_fraction']:.3f}", f"{q['bm25_top1']:.3f}", f"{q['bm25_top10']:.3f}",
                  f"{q['retriever_top1']:.3f}", f"{q['retriever_top10']:.3f}", f"{q['in_band']:.3f}",
                  f"{q['copy_rate']:.3f}", f"{q['mean_words']:.1f}", f"{q['duplicate_rate']:.3f}"]])
    print()
    if "ppo" in reports and "reward_model" in reports["ppo"]["rounds"][0]:
        rm = reports["ppo"]["rounds"][0]["reward_model"]
        rows = [["all", rm["heldout_pairs"], f"{rm['heldout_accuracy']:.3f}",
                 f"{rm['heldout_ci95'][0]:.3f}-{rm['heldout_ci95'][1]:.3f}", f"{rm['heldout_p_vs_chance']:.2g}"]]
        for c, g in (rm.get("heldout_by_criterion") or {}).items():
            ci = f"{g['ci95'][0]:.3f}-{g['ci95'][1]:.3f}"
            rows.append([f"decided by {c}", g["pairs"], f"{g['accuracy']:.3f}", ci, ""])
        print(f"Reward model (on the SFT adapter): {pr.get('train pairs')} train / {pr.get('heldout pairs')} "
              f"held-out pairs, trained on {rm.get('train_pairs_within_max_length')}")
        print()
        print_table(["held-out pairs", "n", "accuracy", "95% CI (Wilson)", "binomial p vs 0.5"], rows)
        print()
    rows = []
    for m, rep in reports.items():
        e = rep["rounds"][0].get("rl_eval")
        if not e:
            continue
        st = rep["stages"]
        cpu = sum((st.get(f"round-0/{s}", {}).get("cpu_seconds") or 0) for s in (m, "reward_model" if m == "ppo"
                                                                                else ""))
        rw = e["reward"]
        rows.append([m, e["documents"], f"{rw['before']:.3f}", f"{rw['after']:.3f}", f"{rw['delta']:+.3f}",
                     f"{rw['p_value']:.2g}", f"{e['kept']['before']:.3f} -> {e['kept']['after']:.3f}",
                     f"{e['band']['before']:.3f} -> {e['band']['after']:.3f}",
                     f"{e['copy']['before']:.3f} -> {e['copy']['after']:.3f}", f"{cpu / 60:.1f}",
                     f"{rw['delta'] / (cpu / 60):+.4f}" if cpu else "-"])
    print_table(["method", "held-out docs", "loop reward before", "after", "delta", "paired p", "kept",
                 "band score", "copy rate", "RL CPU min", "delta per CPU min"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/loop-feedback"))
    ap.add_argument("--methods", default="ppo,dpo,grpo")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="run-config override")
    ap.add_argument("--table", action="store_true", help="only print the tables from existing runs")
    args = ap.parse_args()
    methods = args.methods.split(",")
    print(hardware_line(), file=sys.stderr)
    if not args.table:
        for m in methods:
            run(args.work, m, args.extra)
    tables(args.work, methods)


if __name__ == "__main__":
    main()
