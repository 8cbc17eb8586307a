"""Issue 13: does a second round pay in unlabeled mode, where the pseudo queries are the retriever's only data?

    python benchmarks/unlabeled_round2.py --work runs/unlabeled-round2                    # every row, in order
    python benchmarks/unlabeled_round2.py --work runs/unlabeled-round2 --rows select_random
    python benchmarks/unlabeled_round2.py --work runs/unlabeled-round2 --table            # only print the table
    python benchmarks/unlabeled_round2.py --work runs/unlabeled-round2 --rows select,select_random --retriever-seeds 1

Every row is configs/loop-scifact-unlabeled-cpu.yaml (no labeled pair reaches the retriever; the generator learns
doc -> query from SciFact's train pairs) with a few overrides, run into `<work>/<row>`, copied from its parent's
folder so the stages they share are reused by key. `round1` is the config as shipped. The round-2 rows add a round
on 1,000 fresh abstracts (generation seed + 1) without RL; the round-1 retriever starts again from MiniLM and learns
from both rounds' kept queries:
- `round2`: round 1 writes as round 0 did (2 queries per abstract);
- `select`: round 1 writes 4 candidates per abstract and, after the BM25 and dense filters, a difficulty filter keeps
  at most 2 per abstract inside the loop reward's difficulty band (0.3-0.7) as judged by round 0's retriever: what a
  generator that RL had taught the band perfectly would write, without RL;
- `select_random`: the same candidates, as many kept per abstract as `select` keeps, at random (the control).

`--retriever-seeds 1` runs the asked rows again with `retriever.seed=1` in `<work>/<row>-seed1` (the same queries,
other retrievers, so another judge of the band) and adds a table of each round-2 row's per-query NDCG@10 averaged
over the seeds, against its own round 1 and the row it extends.

Columns: test NDCG@10 of the row's last retriever, the paired t-test against zero-shot MiniLM, against the row's own
round 1 (the same run's round-0 retriever) and against the row it is compared with; the queries the last round kept,
their mean difficulty under round 0's retriever and the share inside the band (rows with a difficulty filter); the
guard's decision (pipeline/guard.py); the minutes of the stages the result depends on. Checkpoints and the WiSE-FT
share are chosen on held-out pseudo queries; test is read only by the
final evaluation of each round.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from _common import hardware_line, print_table, ragtune
from loop_ablation import COPY_IGNORE, mean_of, parents_first, per_query, row_args, seed_folder
from seed_compare import pooled

CONFIG = "configs/loop-scifact-unlabeled-cpu.yaml"
ROUND2 = ["rounds=2", "rl=none", "rl_after_last_round=false", "fresh_documents=true"]
RECIPE = "{name: bm25, k: 10},{name: dense, k: 10}"
SELECT = ["candidates_per_document=4"]


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    overrides: tuple[str, ...]
    parent: str | None
    versus: str | None
    """The row this one is compared with."""

    @property
    def last_round(self) -> str:
        return "round-1" if "rounds=2" in self.overrides else "round-0"


ROWS = [
    Row("round1", "round 1 (the config as shipped)", (), None, None),
    Row("round2", "round 2, no RL: 2 more queries for each of 1,000 fresh abstracts", tuple(ROUND2), "round1",
        "round1"),
    Row("select", "round 2, no RL: 4 candidates per fresh abstract, keep <= 2 inside the band",
        (*ROUND2, *SELECT, f"filters=[{RECIPE},{{name: difficulty, per_document: 2}}]"), "round1", "round2"),
    Row("select_random", "round 2, no RL: 4 candidates per fresh abstract, as many kept per abstract at random",
        (*ROUND2, *SELECT, f"filters=[{RECIPE},{{name: difficulty, per_document: 2, select: random}}]"), "select",
        "select"),
]
BY_NAME = {r.name: r for r in ROWS}


def run(work: Path, row: Row, extra: list[str]) -> None:
    out = work / row.name
    source = work / row.parent if row.parent else None
    if source is not None and not out.exists() and source.exists():
        shutil.copytree(source, out, ignore=COPY_IGNORE)
    ragtune("run", CONFIG, *row.overrides, *extra, f"out={out}")


def run_seed(work: Path, row: Row, seed: int, extra: list[str]) -> None:
    """The row again with `retriever.seed`, in `<work>/<row>-seed<k>`: copied from its parent's run with the same
    seed where that exists (the seed's round-0 retriever is shared), else from the row (its queries are reused, the
    retrievers and what reads them run again)."""
    out = seed_folder(work, row.name, row.parent, work / row.name, f"seed{seed}")
    run(work, Row(out.name, row.label, (*row.overrides, f"retriever.seed={seed}"), None, None), extra)


def scores(work: Path, row: Row, round_name: str | None = None, seed: int | None = None) -> dict[str, float] | None:
    """Per-query test NDCG@10 of a finished row's retriever of `round_name` (default: its last round), under the
    default retriever seed or `seed`."""
    run_dir = work / (row.name if seed is None else f"{row.name}-seed{seed}")
    p = run_dir / (round_name or row.last_round) / "evaluate" / "per_query.tsv"
    return per_query(p) if p.is_file() and (run_dir / "report.json").is_file() else None


def minutes(run_dir: Path, last_round: str) -> float:
    """The stages the row's last retriever depends on; what only measures a round (difficulty, quality) and the
    train-pairs baseline do not count."""
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    upto = int(last_round.split("-")[1])
    total = 0.0
    for name, st in stages.items():
        head, _, tail = name.partition("/")
        in_round = head.startswith("round-") and int(head.split("-")[1]) <= upto
        if name in {"data", "baselines"} or (in_round and tail not in {"difficulty", "quality"}):
            total += st.get("seconds") or 0
    return total / 60


def kept_difficulty(filter_dir: Path, band: tuple[float, float]) -> str:
    """Mean difficulty of the kept queries that the difficulty filter judged, and the share of them inside `band`
    (blank where no difficulty filter ran)."""
    judged = []
    with (filter_dir / "provenance.jsonl").open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)["filters"]
            if r.get("kept") and r.get("difficulty") is not None:
                judged.append(r["difficulty"])
    if not judged:
        return ""
    inside = sum(band[0] <= d <= band[1] for d in judged) / len(judged)
    return f"{sum(judged) / len(judged):.2f}, {inside:.0%}"


def table(work: Path, names: list[str]) -> None:
    from ragtune.evaluate.significance import paired_ttest

    def vs(a: dict[str, float] | None, b: dict[str, float]) -> str:
        return "" if a is None else f"{mean_of(b) - mean_of(a):+.4f}, p = {paired_ttest(a, b):.2g}"

    rows = []
    for name in names:
        row = BY_NAME[name]
        s = scores(work, row)
        if s is None:
            rows.append([row.label, "not run"] + [""] * 7)
            continue
        report = json.loads((work / name / "report.json").read_text())
        last = report["rounds"][-1]
        zs = last["evaluate"]["vs_zero_shot"]["ndcg@10"]
        own = scores(work, row, "round-0") if row.last_round != "round-0" else None
        other = scores(work, BY_NAME[row.versus]) if row.versus else None
        guard = last.get("guard", {})
        kept = last["filter"].get("kept")
        band = kept_difficulty(work / name / row.last_round / "filter", tuple(last["quality"]["band"]))
        rows.append([row.label, f"{mean_of(s):.4f}", f"{zs['delta']:+.4f}, p = {zs['p_value']:.2g}", vs(own, s),
                     f"{vs(other, s)} (vs {row.versus})" if other else "", "" if kept is None else kept,
                     band,
                     f"{guard['delta']:+.4f} -> {guard['ships']}" if guard else "",
                     f"{minutes(work / name, row.last_round):.0f}"])
    print_table(["row", "NDCG@10", "vs zero-shot", "vs its round 1", "vs the row it extends",
                 "kept (last round)", "kept: difficulty, in band", "guard: delta -> ships", "wall min"], rows)


def seed_table(work: Path, seeds: list[int]) -> None:
    """Each round-2 row under every retriever seed, and its per-query NDCG@10 averaged over the seeds against its
    own round 1 (each seed's round-0 retriever) and against the row it extends, paired over the test queries."""
    from ragtune.evaluate.significance import paired_ttest

    def averaged(row: Row, round_name: str | None = None) -> tuple[list[float], dict[str, float]] | None:
        found = [scores(work, row, round_name, k) for k in (None, *seeds)]
        if not all(found):
            return None
        return [mean_of(f) for f in found], pooled(found)

    def vs(a: tuple | None, b: dict[str, float]) -> str:
        return "" if a is None else f"{mean_of(b) - mean_of(a[1]):+.4f}, p = {paired_ttest(a[1], b):.2g}"

    rows = []
    for row in ROWS:
        mine = averaged(row) if row.last_round == "round-1" else None
        if mine is None:
            continue
        other = averaged(BY_NAME[row.versus]) if row.versus else None
        rows.append([row.label, *(f"{m:.4f}" for m in mine[0]), f"{mean_of(mine[1]):.4f}",
                     vs(averaged(row, "round-0"), mine[1]), f"{vs(other, mine[1])} (vs {row.versus})" if other else ""])
    if rows:
        print_table(["row", "default seed", *(f"seed {k}" for k in seeds), "mean",
                     "vs its round 1, seed-averaged", "vs the row it extends, seed-averaged"], rows)


def main() -> None:
    args, wanted, seeds = row_args(__doc__, "runs/unlabeled-round2", [r.name for r in ROWS])
    print(hardware_line(), file=sys.stderr)
    if not args.table:
        for n in parents_first(wanted, {r.name: r.parent for r in ROWS}):
            if scores(args.work, BY_NAME[n]) is None or n in wanted:
                run(args.work, BY_NAME[n], args.extra)
        for n in wanted:
            for k in seeds:
                run_seed(args.work, BY_NAME[n], k, args.extra)
    table(args.work, [r.name for r in ROWS])
    if seeds:
        seed_table(args.work, seeds)


if __name__ == "__main__":
    main()
