"""Issue 13: does the unlabeled SciFact loop beat zero-shot MiniLM, with and without WiSE-FT, over retriever seeds?

    python benchmarks/unlabeled_seeds.py --work runs/unlabeled              # both variants, 3 retriever seeds
    python benchmarks/unlabeled_seeds.py --work runs/unlabeled --table      # only print the table

`<work>/plain` is configs/loop-scifact-unlabeled-cpu.yaml with `retriever.wise_ft=null`; `<work>/wise` starts as a
copy of it and runs with the config's own WiSE-FT grid, so only the retriever and what follows it run again (the
generator, its queries and the guard's queries are shared). `<work>/<variant>-seed<k>` are copies run again with
`retriever.seed=k`: the same pseudo queries, another retriever training. Test is read only by the final
evaluation; the WiSE-FT share is chosen on the held-out pseudo queries, and the guard decides on another
generator's queries (pipeline/guard.py).

Columns: the share of the trained weights WiSE-FT kept, test NDCG@10 of the round-0 retriever, its delta against
zero-shot MiniLM with the paired t-test p (two-sided, 300 test queries; Holm over the report's 8 comparisons in
brackets), the guard's decision, and for WiSE-FT the delta and p against the plain retriever of the same seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

from _common import hardware_line, print_table, ragtune
from loop_ablation import COPY_IGNORE, mean_of, per_query

CONFIG = "configs/loop-scifact-unlabeled-cpu.yaml"
VARIANTS = {"plain": ["retriever.wise_ft=null"], "wise": []}
SCORES = "round-0/evaluate/per_query.tsv"


def folder(work: Path, variant: str, seed: int | None) -> Path:
    return work / (variant if seed is None else f"{variant}-seed{seed}")


def run(work: Path, variant: str, seed: int | None, extra: list[str]) -> None:
    out = folder(work, variant, seed)
    source = work / "plain" if seed is None else folder(work, variant, None)
    if out != source and not out.exists() and source.exists():
        shutil.copytree(source, out, ignore=COPY_IGNORE)
    overrides = [*VARIANTS[variant], *([] if seed is None else [f"retriever.seed={seed}"]), *extra]
    ragtune("run", CONFIG, *overrides, f"out={out}")


def finished(run_dir: Path) -> dict | None:
    report = run_dir / "report.json"
    return json.loads(report.read_text()) if report.is_file() and (run_dir / SCORES).is_file() else None


def table(work: Path, seeds: list[int | None]) -> None:
    from ragtune.evaluate.significance import paired_ttest

    rows, deltas = [], {v: [] for v in VARIANTS}
    for seed in seeds:
        for variant in VARIANTS:
            report = finished(folder(work, variant, seed))
            if report is None:
                continue
            r0 = report["rounds"][0]
            vs = r0["evaluate"]["vs_zero_shot"]["ndcg@10"]
            deltas[variant].append(vs["delta"])
            guard = r0.get("guard", {})
            decision = f"{guard['delta']:+.4f}, p = {guard['p_one_sided']:.2g} -> {guard['ships']}" if guard else ""
            share = r0["retriever"].get("wise_ft")
            against = ""
            plain = finished(folder(work, "plain", seed))
            if variant != "plain" and plain is not None:
                a = per_query(folder(work, "plain", seed) / SCORES)
                b = per_query(folder(work, variant, seed) / SCORES)
                against = f"{mean_of(b) - mean_of(a):+.4f}, p = {paired_ttest(a, b):.2g}"
            rows.append([variant, "default" if seed is None else seed, "" if share is None else share,
                         f"{r0['evaluate']['metrics']['ndcg@10']:.4f}",
                         f"{vs['delta']:+.4f}, p = {vs['p_value']:.3g} ({vs['p_holm']:.2g})", decision, against])
    if not rows:
        print("no finished runs under", work)
        return
    print_table(["variant", "retriever seed", "WiSE-FT share kept", "NDCG@10", "vs zero-shot: delta, p (Holm)",
                 "guard: delta, one-sided p -> ships", "vs plain, same seed"], rows)
    for variant, d in deltas.items():
        if len(d) > 1:
            print(f"\n{variant}: mean delta vs zero-shot {statistics.mean(d):+.4f} (sd {statistics.stdev(d):.4f}, "
                  f"{len(d)} seeds)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/unlabeled"))
    ap.add_argument("--retriever-seeds", default="2,3", help="comma list of seeds besides the default one")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="run-config override for every run")
    ap.add_argument("--table", action="store_true", help="only print the table from existing runs")
    args = ap.parse_args()
    seeds: list[int | None] = [None, *(int(k) for k in args.retriever_seeds.split(",") if k)]
    print(hardware_line(), file=sys.stderr)
    if not args.table:
        for seed in seeds:
            for variant in VARIANTS:
                run(args.work, variant, seed, args.extra)
    table(args.work, seeds)


if __name__ == "__main__":
    main()
