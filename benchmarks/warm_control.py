"""Issue 13: is a warm-started round 2's gain its new queries', or a second pass over round 1's data?

    python benchmarks/warm_control.py --loop runs/ablation --seeds 42,1,2

The ablation's `round2_ance_warm` row starts round 2's retriever from round 1's (`retriever.init: previous_round`)
and mines its negatives with it (`mine_with: previous_round`), on the train pairs plus both rounds' kept pseudo
queries. The control here is the same training, from the same saved config (and so the same start, dev slice and
seed), on the same records with round 1's new pseudo queries (`pq1-*`) left out: the train pairs and round 0's
queries once more, with negatives re-mined by round 1's retriever. Each seed's control is `<work>/control-seed<k>`;
the table compares both with round 1 (the round-0 retriever) over SciFact's 300 test queries: per seed, and on the
per-query mean over the seeds (paired t-test), with the paired t-test over the seeds' means beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _common import hardware_line, print_table, ragtune
from loop_ablation import mean_of, per_query
from seed_compare import HEADER, cells, compare

DATA = "../shared/data/beir/scifact"
ROW = "round2_ance_warm"
NEW = "pq1-"
"""Round 1's pseudo queries' id prefix (round k's are pq<k>-...)."""


def row_folder(loop: Path, seed: int) -> Path:
    return loop / (ROW if seed == 42 else f"{ROW}-seed{seed}")


def without_new_queries(records: Path, out: Path) -> int:
    """The records whose query is not one of round 1's new pseudo queries (the mining audit names each row's)."""
    from ragtune.pipeline.retriever_teacher import split_labeled

    ids = [json.loads(line)["query_id"] for line in (records.parent / "mined_negatives.jsonl").open()]
    out.parent.mkdir(parents=True, exist_ok=True)
    return split_labeled(records, {q for q in ids if not q.startswith(NEW)}, out)


def control(loop: Path, work: Path, seed: int) -> Path:
    stage = row_folder(loop, seed) / "round-1" / "retriever"
    sub = work / f"control-seed{seed}"
    if not (sub / "model" / "train_summary.json").is_file():
        n = without_new_queries(stage / "records" / "embedding.jsonl", sub / "train.jsonl")
        print(f"seed {seed}: {n} records without round 1's new queries", flush=True)
        ragtune("train", "embedding", str(stage / "model" / "config.yaml"), f"train_data={sub / 'train.jsonl'}",
                f"output_dir={sub / 'model'}", "overwrite_output_dir=true")
    if not (sub / "eval" / "per_query.tsv").is_file():
        ragtune("eval", "--data", DATA, "--retriever", "dense", "--set", f"dense.model={sub / 'model'}",
                "--out", str(sub / "eval"))
    return sub


def table(loop: Path, work: Path, seeds: list[int]) -> None:
    arms: dict[str, list[dict[str, float]]] = {"round 1": [], "round 2, warm (round2_ance_warm)": [],
                                               "control: warm, without round 1's new queries": []}
    for seed in seeds:
        run = row_folder(loop, seed)
        for name, path in zip(arms, [run / "round-0/evaluate", run / "round-1/evaluate",
                                     work / f"control-seed{seed}" / "eval"], strict=True):
            arms[name].append(per_query(path / "per_query.tsv"))
    rows = [[name, *(f"{mean_of(r):.4f}" for r in runs), f"{statistics.mean(map(mean_of, runs)):.4f}"]
            for name, runs in arms.items()]
    print_table(["retriever", *(f"seed {s}" for s in seeds), "mean"], rows)
    names = list(arms)
    tests = [[f"{a} vs {b}", *cells(compare(arms[a], arms[b]))]
             for a, b in [(names[1], names[0]), (names[2], names[0]), (names[1], names[2])]]
    print_table(["comparison", *HEADER], tests)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loop", type=Path, default=Path("runs/ablation"), help="loop_ablation.py's --work")
    ap.add_argument("--work", type=Path, default=Path("runs/warm-control"))
    ap.add_argument("--seeds", default="42,1,2")
    ap.add_argument("--table", action="store_true", help="only print the table from existing runs")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(hardware_line())
    if not args.table:
        for seed in seeds:
            control(args.loop, args.work, seed)
    table(args.loop, args.work, seeds)


if __name__ == "__main__":
    main()
