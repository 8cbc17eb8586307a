"""Issue 13 item 6: an ablation of every stage of the loop on the whole of SciFact, one row per `ragtune run`.

    python benchmarks/loop_ablation.py --work runs/ablation                      # every row, in order
    python benchmarks/loop_ablation.py --work runs/ablation --rows base,pca      # some rows (parents run first)
    python benchmarks/loop_ablation.py --work runs/ablation --table              # only print the table

Every row is configs/loop-scifact-cpu.yaml with a few overrides, run into `<work>/<row>`. A row's folder starts as a
copy of its parent's (the row it extends), so the stages they share (data, baselines, SFT, generation, filters, ...)
are reused by key and only what the row changes runs again. A row interrupted part way resumes where it stopped, so
the table can be filled over several sittings; rows not yet run print as "not run".

Columns: test NDCG@10 and Recall@100 of the row's final retriever, the paired t-test p against "train pairs only"
and against the row it extends (over the 300 test queries), and the row's wall time: the seconds of every stage its
result depends on (reused stages count with the seconds they took when they ran), so rows compare as whole
pipelines. Checkpoints are picked on the dev slice carved from train; test is read only by the final evaluation.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from _common import hardware_line, print_table

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/loop-scifact-cpu.yaml"
COMMON = ["rl=none", "rounds=1"]
BM25 = "{name: bm25, k: 10}"
DENSE = "{name: dense, k: 10}"
LOSSNET = "{name: lossnet, keep_fraction: 0.75, epochs: 2, batch_size: 16}"
MRL = ["retriever.use_mrl=true", "retriever.mrl_dims=[384,192,96,48]", "retriever.mrl_weights=[1,1,3,1]",
       "retriever.mrl_init=pca", "retriever.mrl_select_dim=96", "retriever.num_train_epochs=3"]
ROUND2 = ["rounds=2", "rl_after_last_round=false", "fresh_documents=true"]
"""Round 1 writes for other documents (seed + 1): with the same documents, seed and generator, round 2 without RL
regenerates round 1's queries word for word and only counts them twice (measured, BENCHMARKS.md)."""
COLBERT = ("retriever={kind: colbert, dim: 128, projection_init: pca, query_length: 32, document_length: 128, "
           "neg_nums: 1, loss: mnrl, per_device_train_batch_size: 16, max_steps: 150, learning_rate: 1.0e-4, "
           "warmup_ratio: 0.1, logging_steps: 5, eval_steps: 50, "
           "dev: {fraction: 0.1, max_queries: 40, candidates: 20}}")
"""configs/loop-scifact-colbert-cpu.yaml's retriever, measured there (BENCHMARKS.md)."""


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: list[str] = field(default_factory=list)
    parent: str | None = None
    evaluate: str = "round-0/evaluate"
    """The stage folder whose per_query.tsv scores the row."""


ROWS = [
    Row("base", "+ dense filter (the shipped recipe: train pairs + BM25- and dense-filtered pseudo queries)",
        ["train_only_baseline=true", f"filters=[{BM25},{DENSE}]"]),
    Row("train_only", "train pairs only", parent="base", evaluate="train_only/evaluate"),
    Row("unfiltered", "+ unfiltered pseudo queries", ["filters=[]"], parent="base"),
    Row("bm25", "+ BM25 filter", [f"filters=[{BM25}]"], parent="base"),
    Row("lossnet", "+ LossNet", [f"filters=[{BM25},{DENSE},{LOSSNET}]"], parent="base"),
    Row("round2", "round 2, no RL", [f"filters=[{BM25},{DENSE}]", *ROUND2], parent="base",
        evaluate="round-1/evaluate"),
    Row("curriculum", "+ curriculum (round 2, easy to hard)",
        [f"filters=[{BM25},{DENSE}]", *ROUND2, "retriever.curriculum=easy_to_hard"], parent="round2",
        evaluate="round-1/evaluate"),
    *(Row(f"round2_{m}", f"round 2 after {m.upper()}", [f"filters=[{BM25},{DENSE}]", *ROUND2, f"rl={m}"],
          parent="round2", evaluate="round-1/evaluate") for m in ("ppo", "dpo", "grpo")),
    Row("colbert", "ColBERT instead of the bi-encoder", [f"filters=[{BM25},{DENSE}]", COLBERT],
        parent="base"),
    Row("pca", "Matryoshka + `mrl_init: pca` (3 epochs)", [f"filters=[{BM25},{DENSE}]", *MRL], parent="base"),
]
BY_NAME = {r.name: r for r in ROWS}
EXTENDS = {"train_only": None, "unfiltered": "train_only", "bm25": "unfiltered", "base": "bm25", "lossnet": "base",
           "round2": "base", "curriculum": "round2", "round2_ppo": "round2", "round2_dpo": "round2",
           "round2_grpo": "round2", "colbert": "base", "pca": "base"}
"""The row each row is compared with ("the row it extends"); differs from the folder it is copied from."""
DISPLAY = ["train_only", "unfiltered", "bm25", "base", "lossnet", "round2", "curriculum", "round2_ppo", "round2_dpo",
           "round2_grpo", "colbert", "pca"]


def folder(work: Path, row: Row) -> Path:
    # train_only is a stage of the base run, not a run of its own
    return work / ("base" if row.name == "train_only" else row.name)


def run(work: Path, row: Row, extra: list[str]) -> None:
    out = folder(work, row)
    if row.name == "train_only":
        return
    if row.parent and not out.exists() and folder(work, BY_NAME[row.parent]).exists():
        shutil.copytree(folder(work, BY_NAME[row.parent]), out, ignore=shutil.ignore_patterns(".lock"))
    cmd = [str(Path(sys.executable).parent / "ragtune"), "run", CONFIG, *COMMON, *row.overrides, *extra, f"out={out}"]
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=REPO)


def per_query(path: Path, metric: str = "ndcg@10") -> dict[str, float]:
    with path.open(encoding="utf-8", newline="") as f:
        return {r["query-id"]: float(r[metric]) for r in csv.DictReader(f, delimiter="\t")}


def wall_seconds(run_dir: Path, row: Row) -> float:
    """Seconds of the stages the row's result depends on: everything up to its evaluation, none of what follows."""
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    last_round = row.evaluate.split("/")[0]
    rounds = {f"round-{i}" for i in range(int(last_round.split("-")[1]) + 1)} if last_round.startswith("round-") \
        else set()
    after_eval = {"difficulty", "quality", "preferences", "reward_model", "ppo", "dpo", "grpo", "rl_eval"}
    total = 0.0
    for name, st in stages.items():
        head, _, tail = name.partition("/")
        if row.name == "train_only":
            keep = name in {"data", "baselines"} or head == "train_only"
        else:
            keep = name in {"data", "baselines"} or (head in rounds and not (head == last_round
                                                                              and tail in after_eval))
        total += (st.get("seconds") or 0) if keep else 0
    return total


def table(work: Path, names: list[str]) -> None:
    from ragtune.evaluate.significance import paired_ttest

    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        row = BY_NAME[name]
        p = folder(work, row) / row.evaluate / "per_query.tsv"
        if p.is_file():
            scores[name] = {m: per_query(p, m) for m in ("ndcg@10", "recall@100")}
    ref = scores.get("train_only")
    rows = []
    for name in names:
        row = BY_NAME[name]
        if name not in scores:
            rows.append([row.label, "not run", "", "", "", ""])
            continue
        s = scores[name]
        mean = {m: sum(v.values()) / len(v) for m, v in s.items()}
        vs_ref = f"{paired_ttest(ref['ndcg@10'], s['ndcg@10']):.2g}" if ref and name != "train_only" else ""
        ext = EXTENDS[name]
        vs_ext = f"{paired_ttest(scores[ext]['ndcg@10'], s['ndcg@10']):.2g}" if ext in scores else ""
        minutes = wall_seconds(folder(work, row), row) / 60
        rows.append([row.label, f"{mean['ndcg@10']:.4f}", f"{mean['recall@100']:.4f}", vs_ref,
                     f"{vs_ext} (vs {BY_NAME[ext].name})" if vs_ext else "", f"{minutes:.0f}"])
    print_table(["row", "NDCG@10", "R@100", "p vs train pairs only", "p vs the row it extends", "wall min"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--rows", default=",".join(r.name for r in ROWS))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="run-config override for every row")
    ap.add_argument("--table", action="store_true", help="only print the table from existing runs")
    args = ap.parse_args()
    wanted = args.rows.split(",")
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown rows {unknown}; rows: {', '.join(BY_NAME)}")
    print(hardware_line(), file=sys.stderr)
    if not args.table:
        todo: list[str] = []
        for n in wanted:  # parents first, each once
            chain = [n]
            while BY_NAME[chain[-1]].parent:
                chain.append(BY_NAME[chain[-1]].parent)
            todo += [c for c in reversed(chain) if c not in todo]
        for n in todo:
            run(args.work, BY_NAME[n], args.extra)
    table(args.work, [n for n in DISPLAY if n in wanted or n == "train_only"])


if __name__ == "__main__":
    main()
