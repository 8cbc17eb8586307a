"""Issue 13 item 6: an ablation of every stage of the loop on the whole of SciFact, one row per `ragtune run`.

    python benchmarks/loop_ablation.py --work runs/ablation                      # every row, in order
    python benchmarks/loop_ablation.py --work runs/ablation --rows base,pca      # some rows (parents run first)
    python benchmarks/loop_ablation.py --work runs/ablation --table              # only print the table
    python benchmarks/loop_ablation.py --work runs/ablation --rows base --retriever-seeds 1,2   # the noise floor

Every row is configs/loop-scifact-cpu.yaml with a few overrides, run into `<work>/<row>`. A row's folder starts as a
copy of its parent's (the row it extends), so the stages they share (data, baselines, SFT, generation, filters, ...)
are reused by key and only what the row changes runs again. A row interrupted part way resumes where it stopped, so
the table can be filled over several sittings; rows not yet run print as "not run".

`--retriever-seeds 1,2` runs each asked row again with only `retriever.seed` changed (in `<work>/<row>-seed<k>`,
copied from the row, so only the retriever and what follows it run; without the train-pairs-only baseline): how
far one retriever training moves test NDCG@10 by chance, the noise floor every difference in the table should be
read against.

Columns: test NDCG@10 and Recall@100 of the row's final retriever, the paired t-test p against "train pairs only",
against the row it extends and, for round-2 rows, against their own round 1 (over the 300 test queries), and the
row's wall time: the seconds of every stage its result depends on (reused stages count with the seconds they took
when they ran; `rl_eval` never counts), so rows compare as whole pipelines. Checkpoints are picked on the dev slice
carved from train; test is read only by the final evaluation. A second table shows what RL did to the generator of
each round-2 row (reward model, RL curve, loop reward on 100 held-out abstracts before and after, round-0 vs round-1
query metrics), and `<work>/ablation.png` plots each row's NDCG@10 against the recipe's spread over retriever seeds.
With `--retriever-seeds`, each round-2 row is also compared with its own round 1 and with the row it extends over
all the seeds (benchmarks/seed_compare.py): a round-2 row's single-seed p in the first table is never the claim.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from _common import hardware_line, print_table, ragtune
from ablation_rows import BY_NAME, COMMON, CONFIG, DISPLAY, EXTENDS, ROWS, Row  # noqa: F401 (scripts import them here)
from seed_compare import HEADER, cells, compare

COPY_IGNORE = shutil.ignore_patterns(".lock", "report.json", "report.md", "dev-size")
"""A copied folder holds its parent's evaluations until its own run ends by writing report.json; the benchmarks'
scores of the parent's model (`dev-size/`) stay behind."""


def scores_file(run_dir: Path, row: Row) -> Path | None:
    """The per-query scores of a row whose run has finished; None while it has not (or a copy still shows the
    parent's evaluation)."""
    p = run_dir / row.evaluate / "per_query.tsv"
    return p if p.is_file() and (run_dir / "report.json").is_file() else None


def folder(work: Path, row: Row) -> Path:
    # train_only is a stage of the base run, not a run of its own
    return work / ("base" if row.name == "train_only" else row.name)


def run(work: Path, row: Row, extra: list[str]) -> None:
    out = folder(work, row)
    if row.name == "train_only":
        return
    if row.parent and not out.exists() and folder(work, BY_NAME[row.parent]).exists():
        shutil.copytree(folder(work, BY_NAME[row.parent]), out, ignore=COPY_IGNORE)
    ragtune_run([*row.overrides, *extra], out)


def ragtune_run(overrides: list[str], out: Path) -> None:
    ragtune("run", CONFIG, *COMMON, *overrides, f"out={out}")


def run_seeds(work: Path, row: Row, seeds: list[int], extra: list[str], tag: str = "seed") -> None:
    """The row again with each `retriever.seed` in `seeds`, in `<work>/<row>-<tag><k>` (see `seed_folder`), without
    the train-pairs-only baseline, which would double each seed's time."""
    own = [o for o in row.overrides if o != "train_only_baseline=true"]
    for k in seeds:
        ragtune_run([*own, *extra, f"retriever.seed={k}"], seed_folder(work, row.name, row.parent, folder(work, row),
                                                                       f"{tag}{k}"))


def seed_folder(work: Path, name: str, parent: str | None, own: Path, suffix: str) -> Path:
    """`<work>/<name>-<suffix>`, first copied from the parent's run with that suffix if it exists (the seed's round-0
    retriever is shared, as between the rows), else from the row's folder `own` (its queries are reused)."""
    out, twin = work / f"{name}-{suffix}", work / f"{parent}-{suffix}"
    if not out.exists():
        shutil.copytree(twin if parent and twin.exists() else own, out, ignore=COPY_IGNORE)
    return out


def seed_table(work: Path, names: list[str], seeds: list[int]) -> None:
    """Each row's test NDCG@10 under the default retriever seed and each other seed: mean, standard deviation."""
    import statistics

    rows = []
    for name in names:
        row = BY_NAME[name]
        means = seed_means(work, row, seeds)
        if means is None:
            continue
        rows.append([row.label, *(f"{m:.4f}" for m in means), f"{statistics.mean(means):.4f}",
                     f"{statistics.stdev(means):.4f}"])
    if rows:
        print_table(["row", "default seed", *(f"seed {k}" for k in seeds), "mean", "sd"], rows)


def seed_runs(work: Path, row: Row, seeds: list[int], scores: str | None = None) -> list[dict[str, float]] | None:
    """The row's per-query test NDCG@10 under the default retriever seed and each of `seeds` (`scores`: another
    folder of each run than the row's own, e.g. its round 1's); None until all have run."""
    runs = (folder(work, row), *(work / f"{row.name}-seed{k}" for k in seeds))
    which = row if scores is None else dataclasses.replace(row, evaluate=scores)
    found = [scores_file(r, which) for r in runs]
    if not all(found):
        return None
    return [per_query(f) for f in found]


def seed_comparisons(work: Path, names: list[str], seeds: list[int]) -> None:
    """Each round-2 row against its own round 1 and against the row it extends, over all the seeds
    (seed_compare.py): a round-2 row's single-seed p in the first table is never the claim."""
    rows = []
    for name in names:
        row = BY_NAME[name]
        if not row.evaluate.startswith("round-1/"):
            continue
        mine = seed_runs(work, row, seeds)
        if mine is None:
            continue
        first = seed_runs(work, row, seeds, "round-0/evaluate")
        if first is not None:
            rows.append([f"{name} vs its round 1", *cells(compare(mine, first))])
        ext = EXTENDS.get(name)
        theirs = seed_runs(work, BY_NAME[ext], seeds) if ext else None
        if theirs is not None:
            rows.append([f"{name} vs {ext}", *cells(compare(mine, theirs))])
    if rows:
        print_table(["comparison", *HEADER], rows)


def seed_means(work: Path, row: Row, seeds: list[int]) -> list[float] | None:
    """The row's mean test NDCG@10 under the default retriever seed and each of `seeds`; None until all have run."""
    runs = seed_runs(work, row, seeds)
    return None if runs is None else [mean_of(r) for r in runs]


def mean_of(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def per_query(path: Path, metric: str = "ndcg@10") -> dict[str, float]:
    with path.open(encoding="utf-8", newline="") as f:
        return {r["query-id"]: float(r[metric]) for r in csv.DictReader(f, delimiter="\t")}


def wall_seconds(run_dir: Path, row: Row) -> float:
    """Seconds of the stages the row's result depends on: everything up to its evaluation, none of what follows."""
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    last_round = row.evaluate.split("/")[0]
    rounds = {f"round-{i}" for i in range(int(last_round.split("-")[1]) + 1)} if last_round.startswith("round-") \
        else set()
    after_eval = {"difficulty", "quality", "preferences", "reward_model", "ppo", "dpo", "grpo"}
    total = 0.0
    for name, st in stages.items():
        head, _, tail = name.partition("/")
        if row.name == "train_only":
            keep = name in {"data", "baselines"} or head == "train_only"
        else:
            keep = name in {"data", "baselines"} or (head in rounds and not (head == last_round
                                                                              and tail in after_eval))
        keep = keep and tail != "rl_eval"  # a measurement of the RL stage, no later stage's input
        total += (st.get("seconds") or 0) if keep else 0
    return total


def table(work: Path, names: list[str]) -> None:
    from ragtune.evaluate.significance import paired_ttest

    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name in dict.fromkeys([*names, *(EXTENDS[n] for n in names if EXTENDS[n])]):  # a row's p needs its parent
        row = BY_NAME[name]
        p = scores_file(folder(work, row), row)
        if p is not None:
            scores[name] = {m: per_query(p, m) for m in ("ndcg@10", "recall@100")}
    ref = scores.get("train_only")
    rows = []
    for name in names:
        row = BY_NAME[name]
        if name not in scores:
            rows.append([row.label, "not run", "", "", "", ""])
            continue
        s = scores[name]
        mean = {m: mean_of(v) for m, v in s.items()}
        vs_ref = f"{paired_ttest(ref['ndcg@10'], s['ndcg@10']):.2g}" if ref and name != "train_only" else ""
        ext = EXTENDS[name]
        vs_ext = f"{paired_ttest(scores[ext]['ndcg@10'], s['ndcg@10']):.2g}" if ext in scores else ""
        minutes = wall_seconds(folder(work, row), row) / 60
        rows.append([row.label, f"{mean['ndcg@10']:.4f}", f"{mean['recall@100']:.4f}", vs_ref,
                     f"{vs_ext} (vs {BY_NAME[ext].name})" if vs_ext else "", vs_round1(work, row, s["ndcg@10"]),
                     f"{minutes:.0f}"])
    print_table(["row", "NDCG@10", "R@100", "p vs train pairs only", "p vs the row it extends",
                 "vs its round 1 (delta, p)", "wall min"], rows)


def plot(work: Path, names: list[str], seeds: list[int], path: Path) -> None:
    """Each finished row's test NDCG@10 against the shipped recipe's spread over retriever seeds (mean, +-1 and +-2
    sd): whether a row moved further than retraining the same recipe with another seed moves it."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = [(BY_NAME[n], scores_file(folder(work, BY_NAME[n]), BY_NAME[n])) for n in names]
    found = [(row, mean_of(per_query(f))) for row, f in found if f is not None]
    if not found:
        return
    fig, ax = plt.subplots(figsize=(11, 0.4 * len(found) + 1.4))
    ax.plot([m for _, m in found], range(len(found)), "o", color="C0")
    means = seed_means(work, BY_NAME["base"], seeds)
    if means is not None and len(means) > 2:
        m, sd = statistics.mean(means), statistics.stdev(means)
        ax.axvspan(m - 2 * sd, m + 2 * sd, color="C1", alpha=0.12)
        ax.axvspan(m - sd, m + sd, color="C1", alpha=0.25)
        ax.axvline(m, color="C1")
        ax.set_title(f"shaded: the shipped recipe over {len(means)} retriever seeds, mean {m:.4f}, "
                     f"+-1 and +-2 sd (sd {sd:.4f})", fontsize=9)
    ax.set_yticks(range(len(found)), [row.label if len(row.label) < 75 else row.label[:72] + "..."
                                      for row, _ in found], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("SciFact test NDCG@10")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}", file=sys.stderr)


def vs_round1(work: Path, row: Row, scores: dict[str, float]) -> str:
    """A round-2 row against its own round 1 (the same run's round-0 retriever): the issue's round 2 vs round 1."""
    from ragtune.evaluate.significance import paired_ttest

    first = folder(work, row) / "round-0" / "evaluate" / "per_query.tsv"
    if not row.evaluate.startswith("round-1/") or not first.is_file():
        return ""
    r1 = per_query(first)
    delta = mean_of(scores) - mean_of(r1)
    return f"{delta:+.4f}, p = {paired_ttest(r1, scores):.2g}"


def _f(x: float | None, spec: str = ".3f") -> str:
    return "" if x is None else format(x, spec)


def diagnostics(work: Path, names: list[str]) -> None:
    """Where a round-2 row's signal goes: the RL stage's own figures (for GRPO the share of sample groups with one
    reward for every sample, which teach nothing) and what the generator wrote in round 0 (before RL) and round 1
    (after), from each run's report.json."""
    from ragtune.pipeline.report import flat_group_share, quarter_means

    rows = []
    for name in names:
        row = BY_NAME[name]
        report = folder(work, row) / "report.json"
        if not row.evaluate.startswith("round-1/") or not report.is_file():
            continue
        rounds = json.loads(report.read_text())["rounds"]
        if len(rounds) < 2:
            continue
        r0, r1 = rounds[0], rounds[1]
        rm = r0.get("reward_model", {})
        acc, ci = rm.get("heldout_accuracy"), rm.get("heldout_ci95")
        rm_txt = f"{_f(acc)} [{_f(ci[0], '.2f')}, {_f(ci[1], '.2f')}] n={rm.get('heldout_pairs')}" if ci else _f(acc)
        rl = r0.get("ppo") or r0.get("grpo") or r0.get("dpo") or {}
        if "loss_first" in rl:
            curve = f"loss {_f(rl['loss_first'])} -> {_f(rl['loss_last'])}"
        elif "reward_first" in rl:
            curve = f"reward {_f(rl['reward_first'])} -> {_f(rl['reward_last'])}"
            q = quarter_means(rl.get("curve") or [])
            curve += f" (quarter means {q[0]:.3f} -> {q[1]:.3f})" if q else ""
            flat = flat_group_share(rl.get("curve") or [])
            curve += f", {100 * flat:.0f}% of groups flat" if flat is not None else ""
        else:
            curve = ""
        q0, q1 = r0.get("quality", {}), r1.get("quality", {})

        def moved(key: str, q0: dict = q0, q1: dict = q1) -> str:
            return f"{_f(q0.get(key), '.2f')} -> {_f(q1.get(key), '.2f')}"

        ev = r0.get("rl_eval", {}).get("reward")
        held = f"{_f(ev['before'])} -> {_f(ev['after'])} (p = {ev['p_value']:.2g})" if ev else ""
        kept = f"{_f(r0['filter'].get('kept_fraction'), '.2f')} -> {_f(r1['filter'].get('kept_fraction'), '.2f')}"
        rows.append([row.name, rm_txt, curve, held, kept, moved("bm25_top10"), moved("retriever_top1"),
                     moved("in_band"), moved("copy_rate"), moved("mean_words")])
    if rows:
        print_table(["row", "reward model held-out acc", "RL curve", "loop reward on held-out docs, before -> after",
                     "kept (round 0 -> 1)", "BM25 top-10",
                     "retriever top-1", "in band", "copy rate", "words"], rows)


def parents_first(wanted: list[str], parent: dict[str, str | None]) -> list[str]:
    """The rows to run for `wanted`, each after the row its folder is copied from, each once."""
    todo: list[str] = []
    for n in wanted:
        chain = [n]
        while parent[chain[-1]]:
            chain.append(parent[chain[-1]])
        todo += [c for c in reversed(chain) if c not in todo]
    return todo


def row_args(doc: str, work: str, names: list[str]) -> tuple[argparse.Namespace, list[str], list[int]]:
    """The command line an ablation script over named rows takes: (args, the rows asked for, the retriever seeds)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path(work))
    ap.add_argument("--rows", default=",".join(names))
    ap.add_argument("--set", dest="extra", action="append", default=[], help="run-config override for every row")
    ap.add_argument("--table", action="store_true", help="only print the table from existing runs")
    ap.add_argument("--retriever-seeds", default="", help="comma list: run the rows again with these retriever seeds")
    args = ap.parse_args()
    wanted = args.rows.split(",")
    if unknown := [n for n in wanted if n not in names]:
        ap.error(f"unknown rows {unknown}; rows: {', '.join(names)}")
    return args, wanted, [int(k) for k in args.retriever_seeds.split(",") if k]


def main() -> None:
    args, wanted, seeds = row_args(__doc__, "runs/ablation", [r.name for r in ROWS])
    print(hardware_line(), file=sys.stderr)
    if not args.table:
        for n in parents_first(wanted, {r.name: r.parent for r in ROWS}):
            run(args.work, BY_NAME[n], args.extra)
        for n in wanted:
            if seeds and n != "train_only":
                run_seeds(args.work, BY_NAME[n], seeds, args.extra)
    table(args.work, [n for n in DISPLAY if n in wanted or n == "train_only"])
    diagnostics(args.work, [n for n in DISPLAY if n in wanted])
    if seeds:
        seed_table(args.work, [n for n in DISPLAY if n in wanted and n != "train_only"], seeds)
        seed_comparisons(args.work, [n for n in DISPLAY if n in wanted], seeds)
    plot(args.work, [n for n in DISPLAY if n in wanted or n == "train_only"], seeds, args.work / "ablation.png")


if __name__ == "__main__":
    main()
