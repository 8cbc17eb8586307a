"""Issue 13: does the retriever learn more from more pseudo queries when a cross-encoder grades them?

    python benchmarks/margin_distill.py --loop runs/ablation --teacher runs/distill/teacher --work runs/distill
    python benchmarks/margin_distill.py ... --hybrid         # + MNRL on the train pairs, MarginMSE on pseudo queries
    python benchmarks/margin_distill.py ... --teacher-fusion --work runs/distill-fused \
        --rows hybrid+round0,hybrid+rounds0-1                # the cross-encoder fused with BM25 grades
    python benchmarks/margin_distill.py ... --teacher-fusion --work runs/distill-fused \
        --rows hybrid+round0,hybrid+rounds0-1 --seeds 1,2    # two more retriever seeds, contrastive twins too
    python benchmarks/margin_distill.py ... --table          # only print the table

With in-batch and BM25-mined negatives (the loop's contrastive recipe), a second round's pseudo queries did not
move the bi-encoder (loop_ablation.py, unlabeled_round2.py). This is GPL's answer to that: a cross-encoder scores
each query's candidates and the bi-encoder learns the teacher's margins (MarginMSE), so every query teaches through
graded scores rather than one positive and a few negatives.

- Queries: the `round2` ablation row's last retriever mix (`<loop>/round2/round-1/retriever/mix`): SciFact's train
  queries, round 0's kept pseudo queries (`pq0-*`) and round 1's (`pq1-*`). The subsets are train only, + round 0
  (the queries of the `base` row's retriever) and + rounds 0 and 1 (those of the `round2` row's).
- Teacher: `ragtune train reranker` on the train pairs (configs/scifact-reranker.yaml with its dev slice widened
  to the student's 50 queries, so no query the student selects on was taught to the teacher).
- Candidates: `ragtune train mine` over BM25's top 20 for every query, false negatives dropped by the teacher,
  4 negatives kept with the teacher's scores; the trainer draws one per example (the loop's `neg_nums: 1`).
- `teacher_scale`: a normalized student's cosines span [-1, 1], the teacher's logits far more; the scale is the
  ratio of the spreads of zero-shot MiniLM's margins and the teacher's over the rows (fitted without labels).
- Student: all-MiniLM-L6-v2 with the loop's retriever settings (read from `<loop>/base/config.yaml`), format
  distill, loss margin_mse; the checkpoint is chosen on 50 dev queries carved from train. Test is read only by
  the final evaluation.

`--hybrid` adds the rows that keep the loop's contrastive rows (MNRL, BM25 ranks 10-100) for the train pairs and
distil only the pseudo queries: `ragtune train embedding` trains files of two formats as two datasets, each with
its own loss.

`--seeds 1,2` trains the hybrid rows again with only the trainer's seed changed (`<work>/<row>-seed<k>`), and the
loop's contrastive retrievers on the same queries from their own saved configs and records
(`<work>/contrastive-<queries>-seed<k>`); the seed table's paired tests compare per-query scores averaged over
the seeds, so one seed's luck no longer decides a comparison.

Columns: test NDCG@10 and Recall@100, the paired t-test against the loop's contrastive retriever on the same
queries, and against the subset before it (the question: do more queries help once a teacher grades them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from _common import hardware_line, print_table, ragtune
from loop_ablation import mean_of, per_query
from seed_compare import pooled as seed_pooled

DATA = "../shared/data/beir/scifact"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SUBSETS = {"train": (), "train+round0": ("pq0-",), "train+rounds0-1": ("pq0-", "pq1-")}
HYBRID = {"hybrid+round0": ("pq0-",), "hybrid+rounds0-1": ("pq0-", "pq1-")}
"""The train pairs keep the loop's contrastive rows (MNRL, BM25 ranks 10-100); only pseudo queries are distilled."""
CONTRASTIVE = {"train": "base/train_only/evaluate", "train+round0": "base/round-0/evaluate",
               "train+rounds0-1": "round2/round-1/evaluate", "hybrid+round0": "base/round-0/evaluate",
               "hybrid+rounds0-1": "round2/round-1/evaluate"}
MINE = ["split=train", "neg_start=0", "neg_end=20", "neg_per_query=4", "rescore_max_length=160"]


def mine(loop: Path, teacher: Path, out: Path, fused: bool = False) -> None:
    if (out / "embedding.jsonl").is_file():
        return
    if fused:
        from fused_teacher import mine_fused

        print(mine_fused(loop / "round2/round-1/retriever/mix", teacher, out), flush=True)
        return
    ragtune("train", "mine", f"data={loop / 'round2/round-1/retriever/mix'}", f"rescore={teacher}", *MINE,
            f"out={out}")


def is_kept(qid: str, prefixes: tuple[str, ...]) -> bool:
    """Train queries (no `pq<round>-` prefix) always; pseudo queries of the rounds named."""
    return not qid.startswith("pq") or qid.startswith(prefixes)


def split_rows(mined: Path, out: Path) -> dict[str, int]:
    """One record file per subset, cut from the mined rows by the audit's query ids (written in the same order)."""
    scored = contrasted(mined)
    counts = {"without negatives": len(ids_and_rows(mined)) - len(scored)}
    for name, prefixes in SUBSETS.items():
        kept = [row for q, row in scored if is_kept(q, prefixes)]
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "records.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
        counts[name] = len(kept)
    return counts


def ids_and_rows(folder: Path) -> list[tuple[str, str]]:
    """(query id, record line) of a mining output: the audit's ids, written in the records' order."""
    rows = (folder / "embedding.jsonl").read_text(encoding="utf-8").splitlines()
    qids = [json.loads(line)["query_id"] for line in (folder / "mined_negatives.jsonl").read_text().splitlines()]
    if len(qids) != len(rows):
        raise SystemExit(f"{folder}: {len(qids)} audit rows for {len(rows)} records")
    return list(zip(qids, rows, strict=True))


def contrasted(mined: Path) -> list[tuple[str, str]]:
    """(query id, record line) of the mined rows left with a negative: a query whose every candidate the teacher
    judged a likely false negative has nothing to contrast with."""
    return [(q, row) for q, row in ids_and_rows(mined) if json.loads(row).get("neg")]


def split_hybrid(loop_records: Path, mined: Path, work: Path) -> dict[str, int]:
    """For each HYBRID row: the loop's contrastive rows of the train queries, and the teacher-scored rows of the
    rounds' pseudo queries (those left with a negative to contrast)."""
    labeled = [row for q, row in ids_and_rows(loop_records) if not q.startswith("pq")]
    scored = contrasted(mined)
    counts = {"labeled (contrastive)": len(labeled)}
    for name, prefixes in HYBRID.items():
        pseudo = [row for q, row in scored if q.startswith(prefixes)]
        (work / name).mkdir(parents=True, exist_ok=True)
        (work / name / "labeled.jsonl").write_text("\n".join(labeled) + "\n", encoding="utf-8")
        (work / name / "pseudo.jsonl").write_text("\n".join(pseudo) + "\n", encoding="utf-8")
        counts[name] = len(pseudo)
    return counts


def fit_scale(records: Path, out: Path, sample: int = 512) -> float:
    """teacher_scale from zero-shot MiniLM's and the teacher's positive-minus-first-negative margins."""
    if out.is_file():
        return json.loads(out.read_text())["teacher_scale"]
    from ragtune.train.retriever.teacher_scale import fit_teacher_scale

    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()[:sample]]
    scale = fit_teacher_scale(rows, ENCODER, sample)
    out.write_text(json.dumps({"teacher_scale": scale, "rows": sum(bool(r.get("neg")) for r in rows)}, indent=1)
                   + "\n")
    return scale


def student_keys(loop: Path) -> list[str]:
    """The loop's retriever settings (the base row's), as `ragtune train embedding` overrides."""
    settings = yaml.safe_load((loop / "base" / "config.yaml").read_text())["retriever"]
    dev = {"data": DATA, "split": "train", "fraction": 0.1, "max_queries": 50} | settings.pop("dev", {})
    return [f"{k}={v}" for k, v in settings.items()] + [f"dev.{k}={v}" for k, v in dev.items()]


def train_and_evaluate(work: Path, name: str, scale: float, keys: list[str], seed: int | None = None) -> None:
    """The row `name` from its record files in `<work>/<name>`; with `seed`, retrained with only the trainer's
    seed changed, in `<work>/<name>-seed<seed>`."""
    rows, sub = work / name, work / (name if seed is None else f"{name}-seed{seed}")
    # a hybrid row's two files differ in format: the trainer gives each its own dataset and loss (mnrl, margin_mse)
    data = f"train_data={rows / 'labeled.jsonl'},{rows / 'pseudo.jsonl'}" if name in HYBRID else \
        f"train_data={rows / 'records.jsonl'}"
    if not (sub / "model" / "train_summary.json").is_file():
        ragtune("train", "embedding", f"model_name_or_path={ENCODER}", data, f"output_dir={sub / 'model'}",
                "loss=margin_mse", f"teacher_scale={scale:.6g}", "overwrite_output_dir=true", *keys,
                *([] if seed is None else [f"seed={seed}"]))
    evaluate(sub)


def evaluate(sub: Path) -> None:
    if not (sub / "eval" / "per_query.tsv").is_file():
        ragtune("eval", "--data", DATA, "--retriever", "dense", "--set", f"dense.model={sub / 'model'}",
                "--out", str(sub / "eval"))


def contrastive_seed(loop: Path, work: Path, name: str, seed: int) -> Path:
    """The loop's contrastive retriever on the same queries as row `name`, retrained from the loop's own saved
    config and records with only `seed` changed, in `<work>/contrastive-<queries>-seed<seed>`."""
    stage = loop / Path(CONTRASTIVE[name]).parent / "retriever"
    sub = work / f"contrastive-{name.partition('+')[2]}-seed{seed}"
    if not (sub / "model" / "train_summary.json").is_file():
        ragtune("train", "embedding", str(stage / "model" / "config.yaml"),
                f"train_data={stage / 'records' / 'embedding.jsonl'}", f"output_dir={sub / 'model'}",
                "overwrite_output_dir=true", f"seed={seed}")
    evaluate(sub)
    return sub


def table(loop: Path, work: Path) -> None:
    from ragtune.evaluate.significance import paired_ttest

    def vs(a: dict[str, float] | None, b: dict[str, float]) -> str:
        return "" if a is None else f"{mean_of(b) - mean_of(a):+.4f}, p = {paired_ttest(a, b):.2g}"

    print(hardware_line())
    scale = json.loads((work / "scale.json").read_text())
    print(f"teacher_scale {scale['teacher_scale']:.4f} (fitted on {scale['rows']} rows)")
    zero_shot = per_query(loop / "base" / "baselines" / "zero_shot" / "per_query.tsv")
    print(f"zero-shot MiniLM: NDCG@10 {mean_of(zero_shot):.4f}")
    rows, before = [], None
    for name in [*SUBSETS, *HYBRID]:
        if name == next(iter(HYBRID)):
            before = None
        sub = work / name
        path = sub / "eval" / "per_query.tsv"
        contrastive = per_query(loop / CONTRASTIVE[name] / "per_query.tsv")
        if not path.is_file():
            rows.append([name, "not run", "", "", "", "", "", f"{mean_of(contrastive):.4f}", ""])
            continue
        s = per_query(path)
        recall = mean_of(per_query(path, "recall@100"))
        summary = json.loads((sub / "model" / "train_summary.json").read_text())
        step = str(summary["best_checkpoint"]).rpartition("checkpoint-")[2]
        rows.append([name, summary["examples"], f"{summary['best_metric']:.4f} ({step}/{summary['global_step']})",
                     f"{mean_of(s):.4f}", f"{recall:.4f}", vs(zero_shot, s), vs(contrastive, s),
                     f"{mean_of(contrastive):.4f}", vs(before, s)])
        before = s
    print_table(["queries", "examples", "dev NDCG@10 (step kept)", "test NDCG@10 (MarginMSE)", "R@100",
                 "vs zero-shot", "vs contrastive, same queries", "contrastive NDCG@10", "vs the subset before"], rows)


def seed_runs(loop: Path, work: Path, name: str, seeds: list[int]) -> dict[str, list[Path]]:
    """Row `name`'s and its contrastive twin's per-query files: the default seed's, then each of `seeds`."""
    twin = f"contrastive-{name.partition('+')[2]}"
    return {name: [work / name / "eval", *(work / f"{name}-seed{k}" / "eval" for k in seeds)],
            twin: [loop / CONTRASTIVE[name], *(work / f"{twin}-seed{k}" / "eval" for k in seeds)]}


def pooled(folders: list[Path]) -> dict[str, float]:
    """Each query's NDCG@10 averaged over the seeds' runs: the recipe's score with the seed's noise averaged out."""
    return seed_pooled([per_query(f / "per_query.tsv") for f in folders])


def seed_table(loop: Path, work: Path, seeds: list[int]) -> None:
    """The hybrid rows and the contrastive retrievers on the same queries under each retriever seed, and the paired
    tests on per-query scores averaged over the seeds."""
    import statistics

    from ragtune.evaluate.significance import paired_ttest

    rows, recipes = [], {}
    for name in HYBRID:
        for label, folders in seed_runs(loop, work, name, seeds).items():
            if not all((f / "per_query.tsv").is_file() for f in folders):
                continue
            means = [mean_of(per_query(f / "per_query.tsv")) for f in folders]
            recipes[label] = pooled(folders)
            rows.append([label, *(f"{m:.4f}" for m in means), f"{statistics.mean(means):.4f}",
                         f"{statistics.stdev(means):.4f}"])
    if not rows:
        return
    print_table(["row", "default seed", *(f"seed {k}" for k in seeds), "mean", "sd"], rows)
    tests = [("contrastive-round0", "hybrid+round0"), ("contrastive-rounds0-1", "hybrid+rounds0-1"),
             ("hybrid+round0", "hybrid+rounds0-1"), ("contrastive-round0", "contrastive-rounds0-1"),
             ("contrastive-round0", "hybrid+rounds0-1")]  # the last: against stopping after a contrastive round 1
    found = [(a, b) for a, b in tests if a in recipes and b in recipes]
    if found:
        print_table(["over the seeds' mean per query", "difference", "paired p"],
                    [[f"{b} vs {a}", f"{mean_of(recipes[b]) - mean_of(recipes[a]):+.4f}",
                      f"{paired_ttest(recipes[a], recipes[b]):.2g}"] for a, b in found])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop", type=Path, default=Path("runs/ablation"), help="loop_ablation.py's --work")
    ap.add_argument("--teacher", type=Path, default=Path("runs/distill/teacher"))
    ap.add_argument("--work", type=Path, default=Path("runs/distill"))
    ap.add_argument("--hybrid", action="store_true", help="also the rows that keep MNRL on the train pairs and "
                    "distil only the pseudo queries")
    ap.add_argument("--teacher-fusion", action="store_true", help="grade with the cross-encoder fused with BM25 at "
                    "its dev-chosen weight (fused_teacher.py) instead of the cross-encoder alone")
    ap.add_argument("--rows", default=",".join(SUBSETS), help=f"rows to train, of {', '.join([*SUBSETS, *HYBRID])}")
    ap.add_argument("--seeds", default="", help="comma list: train the rows asked for and their contrastive "
                    "twins again with these retriever seeds, and pool the seeds in the paired tests")
    ap.add_argument("--table", action="store_true", help="only print the table")
    args = ap.parse_args()
    seeds = [int(k) for k in args.seeds.split(",") if k]
    loop, work = args.loop.resolve(), args.work.resolve()
    rows = args.rows.split(",") + (list(HYBRID) if args.hybrid else [])
    unknown = set(rows) - {*SUBSETS, *HYBRID}
    if unknown:
        ap.error(f"unknown rows {', '.join(sorted(unknown))}")
    if seeds and set(rows) - set(HYBRID):
        ap.error("--seeds retrains the hybrid rows and their contrastive twins: pass --rows "
                 + ",".join(HYBRID))
    if not args.table:
        mine(loop, args.teacher.resolve(), work / "mined", args.teacher_fusion)
        print(split_rows(work / "mined", work))
        print(split_hybrid(loop / "round2/round-1/retriever/records", work / "mined", work))
        scale = fit_scale(work / "train+rounds0-1" / "records.jsonl", work / "scale.json")
        keys = student_keys(loop)
        for name in [*SUBSETS, *HYBRID]:
            if name in rows:
                train_and_evaluate(work, name, scale, keys)
        for k in seeds:
            for name in rows:
                train_and_evaluate(work, name, scale, keys, k)
                contrastive_seed(loop, work, name, k)
    table(loop, work)
    if seeds:
        seed_table(loop, work, seeds)


if __name__ == "__main__":
    main()
