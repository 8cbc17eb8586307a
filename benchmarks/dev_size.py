"""Issue 13: can a dev slice carved from train choose among retriever seeds (and a soup), and how large must it be?

    python benchmarks/dev_size.py --work runs/ablation                 # train the pca row with a 150-query dev slice
                                                                       # (seeds 42,1,2,3,4), score every model, tables
    python benchmarks/dev_size.py --work runs/ablation --no-train      # only score what exists and print

At 50 dev queries the loop's dev slice chose the worst of three models twice (BENCHMARKS.md, "seed soup"). Two
measurements of whether more dev queries would fix that:

1. **Real runs.** The ablation's `pca` row retrained with `retriever.dev={fraction: 0.2, max_queries: 150}` (in
   `<work>/pca-dev150-seed<k>`): 150 train queries held out instead of 50 (the 50 are the first 50 of the same
   seeded shuffle, so each dev slice contains the smaller one). Every model is scored on the dev queries it was
   trained without, two ways: the loop's own selection signal (a BM25 sub-corpus, at `mrl_select_dim`) and the way
   test is scored (the whole corpus, full dimension, `run_eval` on the train split, kept to the dev queries).
2. **A simulation of slice size** over the models that share the 50-query slice (retriever seeds, two seeds on a
   shared rotation, their soup): the 300 test queries are split at random into halves; n queries of one half choose the
   model with the best mean, which is then scored on the other half. Repeated 2,000 times for each n, it estimates
   how often n queries pick the best model and what choosing gains over picking at random. The test queries only
   stand in for a dev slice of the same distribution here: no model is chosen on test for shipping.

The trainer also chooses a checkpoint on its dev slice (every `eval_steps`). Each run's last checkpoint is scored on
test as well, to measure that choice against none (the policy "take the last checkpoint", compared as a recipe over
runs, not used to pick any one run's model); `<work>/dev-size.png` plots every run's dev curve.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from _common import hardware_line, print_table
from loop_ablation import BY_NAME, per_query, run_seeds
from seed_soup import model_dir

DEV150 = "retriever.dev={fraction: 0.2, max_queries: 150}"
SIZES = (10, 25, 50, 100, 150)


def runs_of(work: Path) -> dict[str, Path]:
    """name -> run folder of every finished pca-row training (the soup is not a run: it has no checkpoints)."""
    runs = {"pca seed 42": work / "pca", **{f"pca seed {k}": work / f"pca-seed{k}" for k in (1, 2, 3, 4)},
            **{f"shared rotation seed {k}": work / f"pca-soup-seed{k}" for k in (1, 2)},
            **{f"dev150 seed {r.name.rsplit('seed', 1)[1]}": r for r in sorted(work.glob("pca-dev150-seed*"))}}
    # a seed run's folder starts as a copy of its parent's, evaluations included, until its report.json is written
    return {name: run for name, run in runs.items() if (run / "report.json").is_file()}


def candidates(work: Path) -> dict[str, tuple[Path, Path, Path]]:
    """name -> (model folder, test per_query.tsv, folder for this script's scores) for each finished pca model."""
    found = {name: (model_dir(run), run / "round-0" / "evaluate" / "per_query.tsv", run / "dev-size")
             for name, run in runs_of(work).items()}
    soup = work / "pca-soup"
    found["soup (42 + shared 1, 2)"] = (soup / "model", soup / "evaluate" / "per_query.tsv", soup / "dev-size")
    return {n: v for n, v in found.items() if v[1].is_file() and v[0].is_dir()}


def scored_by(out: Path, model: Path) -> bool:
    """Whether `out` holds scores of exactly these weights. A seed run's folder starts as a copy of its parent's, so
    a score found there may be the parent's (the nineteenth session's first scoring of seeds 5-9 read three parent
    scores that way): each score folder records the SHA-256 of the weights it scored."""
    stamp = out / "weights.sha256"
    with open(model / "model.safetensors", "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if (out / "per_query.tsv").is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return True
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    stamp.write_text(digest + "\n")
    return False


def full_corpus_dev(model: Path, data: Path, out: Path) -> dict[str, float]:
    """Per-query NDCG@10 of every train query, the whole corpus searched at full dimension (as test is scored)."""
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval
    from ragtune.retrieval.dense import DenseConfig

    if not scored_by(out, model):
        run_eval(EvalConfig(data=data, split="train", metrics=["ndcg@10"], out=out, retriever="dense",
                            dense=DenseConfig(model=str(model)), show_progress=True))
    return per_query(out / "per_query.tsv")


def loop_signal(name: str, run: Path | None, curves: dict[str, dict]) -> float:
    """The dev NDCG@10 the trainer chose on (sub-corpus, `mrl_select_dim`): its log at the chosen checkpoint, or,
    for the soup, what seed_soup.py scored."""
    if name in curves:
        c = curves[name]
        return c["curve"][c["chosen"]]
    soup = json.loads((run / "soup.json").read_text()) if run and (run / "soup.json").is_file() else {}
    return soup.get("dev", {}).get("soup", float("nan"))


def mean_over(scores: dict[str, float], qids) -> float:
    return statistics.fmean(scores[q] for q in qids)


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def simulate(tests: dict[str, dict[str, float]], sizes=SIZES, draws: int = 2000, seed: int = 0) -> list[list]:
    """For each slice size n: P(n queries of one test half pick the other half's best model), and the other half's
    mean NDCG@10 of the pick, of a random pick and of that half's best, with the pick's gain over random."""
    names = list(tests)
    qids = sorted(set.intersection(*(set(t) for t in tests.values())))
    rng = random.Random(seed)
    rows = []
    for n in sizes:
        hits, worst, picked, at_random, best, gains = 0, 0, [], [], [], []
        for _ in range(draws):
            order = qids[:]
            rng.shuffle(order)
            half = len(order) // 2
            choose, judge = order[:n], order[half:]
            on_judge = {m: mean_over(tests[m], judge) for m in names}
            pick = max(names, key=lambda m: mean_over(tests[m], choose))
            hits += pick == max(names, key=on_judge.get)
            worst += pick == min(names, key=on_judge.get)
            rand = statistics.fmean(on_judge.values())
            picked.append(on_judge[pick])
            at_random.append(rand)
            best.append(max(on_judge.values()))
            gains.append(on_judge[pick] - rand)
        gains.sort()
        lo, hi = gains[int(0.025 * draws)], gains[int(0.975 * draws) - 1]
        rows.append([n, f"{hits / draws:.2f}", f"{worst / draws:.2f}", f"{statistics.fmean(picked):.4f}",
                     f"{statistics.fmean(at_random):.4f}", f"{statistics.fmean(best):.4f}",
                     f"{statistics.fmean(gains):+.4f} [{lo:+.4f}, {hi:+.4f}]"])
    return rows


def checkpoints(run: Path, data: Path) -> dict:
    """The run's dev curve (the loop signal at every evaluation), the checkpoint the trainer chose on it, and the test
    NDCG@10 per query of that checkpoint and of the last one (the policy "no selection")."""
    from ragtune.pipeline.retriever_stage import evaluate

    model = model_dir(run)
    steps = sorted(int(p.name.split("-")[1]) for p in model.glob("checkpoint-*"))
    state = json.loads((model / f"checkpoint-{steps[-1]}" / "trainer_state.json").read_text())
    curve = {h["step"]: h["eval_dev_ndcg@10"] for h in state["log_history"] if "eval_dev_ndcg@10" in h}
    chosen = int(Path(state["best_model_checkpoint"]).name.split("-")[1])
    test = per_query(run / "round-0" / "evaluate" / "per_query.tsv")
    last_dir = run / "dev-size" / "last-test"
    if steps[-1] == chosen:
        last = test
    else:
        if not scored_by(last_dir, model / f"checkpoint-{steps[-1]}"):
            evaluate(data, model / f"checkpoint-{steps[-1]}", "bi_encoder", last_dir, "test", ["ndcg@10"], {})
        last = per_query(last_dir / "per_query.tsv")
    return {"curve": curve, "chosen": chosen, "last": steps[-1], "test_chosen": test, "test_last": last}


def plot_curves(found: dict[str, dict], path: Path) -> None:
    """Each run's dev curve (the loop signal), its chosen checkpoint circled, one panel per dev slice size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, (title, fam) in zip(axes, (("50 dev queries", False), ("150 dev queries", True)), strict=True):
        for i, (name, c) in enumerate((n, c) for n, c in found.items() if ("dev150" in n) == fam):
            steps = sorted(c["curve"])
            test = statistics.fmean(c["test_chosen"].values())
            ax.plot(steps, [c["curve"][k] for k in steps], "-", color=f"C{i}", label=f"{name} (test {test:.3f})")
            ax.plot([c["chosen"]], [c["curve"][c["chosen"]]], "o", color=f"C{i}", markersize=9, fillstyle="none")
        ax.set_title(f"{title}: dev NDCG@10 during training, chosen checkpoint circled", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("dev NDCG@10 (sub-corpus, dim 96)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}", file=sys.stderr)


def checkpoint_table(found: dict[str, dict], confirm: Sequence[str] = ()) -> None:
    """Every run's chosen against its last checkpoint; `confirm`: retriever seeds whose 150-query runs are summed
    up on their own too (seeds run after the policy was first noticed, so they test it on runs that did not
    suggest it)."""
    from scipy.stats import ttest_rel

    rows = []
    for name, c in found.items():
        chosen, last = statistics.fmean(c["test_chosen"].values()), statistics.fmean(c["test_last"].values())
        at_last = c["curve"].get(c["last"], float("nan"))
        rows.append([name, c["chosen"], c["last"], f"{c['curve'][c['chosen']]:.4f}", f"{at_last:.4f}",
                     f"{chosen:.4f}", f"{last:.4f}", f"{chosen - last:+.4f}"])
    print_table(["run", "chosen step", "last step", "dev at chosen", "dev at last", "test, chosen",
                 "test, last", "chosen - last"], rows)
    groups = [("50", lambda n: "dev150" not in n), ("150", lambda n: "dev150" in n)]
    if confirm:
        groups.append((f"150 (fresh seeds {','.join(confirm)} only)",
                       lambda n: "dev150" in n and n.rsplit(" ", 1)[1] in confirm))
    for title, member in groups:
        runs = [c for n, c in found.items() if member(n)]
        if len(runs) < 2:
            continue
        chosen = [statistics.fmean(c["test_chosen"].values()) for c in runs]
        last = [statistics.fmean(c["test_last"].values()) for c in runs]
        print(f"{title} dev queries, {len(runs)} runs: test NDCG@10 of the chosen checkpoints, mean "
              f"{statistics.fmean(chosen):.4f} (sd {statistics.stdev(chosen):.4f}); of the last ones "
              f"{statistics.fmean(last):.4f} (sd {statistics.stdev(last):.4f}); paired t over runs p = "
              f"{ttest_rel(chosen, last).pvalue:.2g}")


def by_seed(scores: dict[str, dict]) -> None:
    """The same retriever seed with 50 and with 150 dev queries (100 fewer training queries): test NDCG@10."""
    from scipy.stats import ttest_rel

    pairs = [(n.rsplit(" ", 1)[1], n, f"dev150 seed {n.rsplit(' ', 1)[1]}") for n in scores if n.startswith("pca seed")]
    pairs = [(k, a, b) for k, a, b in pairs if b in scores]
    if not pairs:
        return
    rows = [[k, *(f"{statistics.fmean(scores[x]['test'].values()):.4f}" for x in (a, b))] for k, a, b in pairs]
    print_table(["retriever seed", "test NDCG@10, 50 dev queries", "150 dev queries"], rows)
    if len(pairs) >= 2:
        a = [statistics.fmean(scores[x]["test"].values()) for _, x, _ in pairs]
        b = [statistics.fmean(scores[x]["test"].values()) for _, _, x in pairs]
        print(f"paired over the {len(pairs)} seeds: {statistics.fmean(b) - statistics.fmean(a):+.4f}, "
              f"p = {ttest_rel(a, b).pvalue:.2g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--seeds", default="42,1,2,3,4", help="retriever seeds of the 150-query-dev runs")
    ap.add_argument("--no-train", action="store_true", help="only score the models that exist")
    ap.add_argument("--confirm", default="", help="retriever seeds (of --seeds) whose chosen-vs-last checkpoint "
                    "comparison is also reported on its own, e.g. 5,6,7,8,9")
    args = ap.parse_args()
    if not (args.work / "pca" / "report.json").is_file():
        sys.exit(f"{args.work / 'pca'}: run the ablation's pca row first "
                 f"(python benchmarks/loop_ablation.py --work {args.work} --rows pca)")
    print(hardware_line())
    if not args.no_train:
        run_seeds(args.work, BY_NAME["pca"], [int(s) for s in args.seeds.split(",") if s], [DEV150],
                  tag="dev150-seed")
    from ragtune.config import load_config
    from ragtune.train.retriever.dev import build_devset
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig

    found = candidates(args.work)
    data = args.work / "pca" / "data"
    curves = {name: checkpoints(run, data) for name, run in runs_of(args.work).items()}
    devsets: dict[tuple, object] = {}
    table, scores = [], {}
    for name, (model, test_file, scratch) in found.items():
        # the soup has no training config of its own: its ingredients share the default run's dev slice
        cfg_file = model / "config.yaml" if (model / "config.yaml").is_file() else model_dir(args.work / "pca") / \
            "config.yaml"
        cfg = load_config(EmbeddingTrainConfig, cfg_file, [])
        key = (cfg.dev.fraction, cfg.dev.max_queries)
        if key not in devsets:
            devsets[key] = build_devset(cfg.dev)
        dev = devsets[key]
        full = full_corpus_dev(model, data, scratch / "dev-full")
        scores[name] = {"sub": loop_signal(name, scratch.parent, curves), "full": {q: full[q] for q in dev.queries},
                        "test": per_query(test_file)}
        table.append([name, len(dev.queries), f"{scores[name]['sub']:.4f}",
                      *(f"{statistics.fmean(scores[name][s].values()):.4f}" for s in ("full", "test"))])
    print_table(["model", "dev queries", "dev NDCG@10, loop signal (sub-corpus, dim 96)",
                 "dev NDCG@10, whole corpus, dim 384", "test NDCG@10"], table)
    small = min(devsets, key=lambda k: len(devsets[k].queries)) if devsets else None
    for family, names in (("50", [n for n in scores if "dev150" not in n]),
                          ("150", [n for n in scores if "dev150" in n])):
        if len(names) < 3:
            continue
        test_means = [statistics.fmean(scores[n]["test"].values()) for n in names]
        signals = {"loop signal": [scores[n]["sub"] for n in names],
                   "whole corpus": [statistics.fmean(scores[n]["full"].values()) for n in names]}
        if family == "150" and small is not None:  # the same models judged by only the 50-query slice inside
            signals["whole corpus, its first 50"] = [mean_over(scores[n]["full"], devsets[small].queries)
                                                     for n in names]
        for signal, dev_means in signals.items():
            pick = names[max(range(len(names)), key=dev_means.__getitem__)]
            print(f"{family}-query dev slice, {signal}: Spearman dev/test over {len(names)} models "
                  f"{spearman(dev_means, test_means):+.2f}; dev picks {pick} (test "
                  f"{statistics.fmean(scores[pick]['test'].values()):.4f}; of these models best "
                  f"{max(test_means):.4f}, worst {min(test_means):.4f})")
    print("\nThe checkpoint each run's dev slice chose, against its last checkpoint (no selection):")
    checkpoint_table(curves, [c for c in args.confirm.split(",") if c])
    plot_curves(curves, args.work / "dev-size.png")
    by_seed(scores)
    fifty = {n: s["test"] for n, s in scores.items() if "dev150" not in n}
    if len(fifty) >= 2:
        print(f"\nSimulated slice sizes over the {len(fifty)} models of the 50-query family "
              "(n test queries of one half choose, the other half judges; 2,000 draws):")
        print_table(["n", "P(picks the best)", "P(picks the worst)", "NDCG@10 of the pick", "of a random pick",
                     "of the best", "pick - random [95%]"], simulate(fifty))


if __name__ == "__main__":
    main()
