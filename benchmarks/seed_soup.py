"""A seed soup of the loop's Matryoshka/PCA bi-encoder (Wortsman et al. 2022, "Model soups").

    python benchmarks/loop_ablation.py --work runs/ablation --rows pca          # the default seed (42)
    python benchmarks/seed_soup.py --work runs/ablation --seeds 1,2             # 2 more seeds, the soup, the table

The ablation's `pca` row rerun with other `retriever.seed`s lands anywhere from 0.686 to 0.723 test NDCG@10
(BENCHMARKS.md). Its runs cannot be averaged as they are: each seed fits its PCA rotation on its own sample of the
training texts, so their last (Dense) layers start in different rotated spaces. Here each extra seed runs with
`retriever.mrl_pca_seed` set to the default run's seed (in `<work>/pca-soup-seed<k>`, copied from `<work>/pca`, so
only the retriever and what follows it run), which gives every ingredient the default run's rotation. The soup is
the uniform average of the ingredients' weights. The soup and every ingredient are scored on the dev slice the loop
selects on (50 train queries, at `mrl_select_dim`), and the soup goes through the loop's own test evaluation.
Test is read once per model; nothing is chosen on it. The table ends with what a user choosing on dev would ship:
the soup, or the best ingredient if it scores higher on dev.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from _common import hardware_line, print_table
from loop_ablation import BY_NAME, folder, mean_of, per_query, run_seeds


def ingredient(work: Path, seed: int | None) -> Path:
    return folder(work, BY_NAME["pca"]) if seed is None else work / f"pca-soup-seed{seed}"


def model_dir(run: Path) -> Path:
    return run / "round-0" / "retriever" / "model"


def rotation_agreement(a: Path, b: Path) -> float:
    """The smallest cosine between matching rows of two models' Dense layers: near 1 when they started from one
    rotation (training moves them little), far from it (sign flips, mixed axes) when they did not."""
    import numpy as np
    from safetensors.numpy import load_file

    wa, wb = (load_file(str(model_dir(r) / "3_Dense" / "model.safetensors"))["linear.weight"] for r in (a, b))
    cos = (wa * wb).sum(1) / np.linalg.norm(wa, axis=1) / np.linalg.norm(wb, axis=1)
    return float(cos.min())


def soup(models: list[Path], out: Path) -> None:
    """Uniform average of the models' weights, written as a sentence-transformers folder (atomically)."""
    from sentence_transformers import SentenceTransformer

    from ragtune.train.retriever.weight_interpolation import interpolate, snapshot

    base = SentenceTransformer(str(models[0]), device="cpu", local_files_only=True)
    mean = snapshot(base)
    for i, path in enumerate(models[1:], start=2):  # running mean: mean_i = mean_{i-1} + (m_i - mean_{i-1}) / i
        other = snapshot(SentenceTransformer(str(path), device="cpu", local_files_only=True))
        interpolate(base, mean, other, 1.0 / i)
        mean = snapshot(base)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    base.save(str(tmp))
    tmp.replace(out)


def dev_score(model_path: Path, dev, cfg) -> float:
    from sentence_transformers import SentenceTransformer

    from ragtune.evaluate.metrics import evaluate
    from ragtune.train.retriever.dense_eval import dev_run

    model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    return evaluate(dev.qrels, dev_run(model, dev, cfg), ["ndcg@10"]).metrics["ndcg@10"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--seeds", default="1,2", help="extra retriever seeds, trained with the default run's rotation")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if not (ingredient(args.work, None) / "report.json").is_file():
        sys.exit(f"{ingredient(args.work, None)}: run the ablation's pca row first "
                 f"(python benchmarks/loop_ablation.py --work {args.work} --rows pca)")
    from ragtune.config import load_config
    from ragtune.evaluate.significance import paired_ttest
    from ragtune.pipeline.retriever_stage import evaluate
    from ragtune.train.retriever.dev import build_devset
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig

    cfg = load_config(EmbeddingTrainConfig, model_dir(ingredient(args.work, None)) / "config.yaml", [])
    # every ingredient draws its rotation's texts with the default run's seed, hence starts from its rotation
    run_seeds(args.work, BY_NAME["pca"], seeds, [f"retriever.mrl_pca_seed={cfg.seed}"], tag="soup-seed")
    runs = [ingredient(args.work, s) for s in (None, *seeds)]
    names = ["default seed", *(f"seed {s}" for s in seeds)]
    dev = build_devset(cfg.dev)
    out = args.work / "pca-soup"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "model").is_dir():
        soup([model_dir(r) for r in runs], out / "model")
    test_dir = out / "evaluate"
    if not (test_dir / "per_query.tsv").is_file():
        evaluate(runs[0] / "data", out / "model", "bi_encoder", test_dir, "test", ["ndcg@10", "recall@100"], {})

    tests = {n: per_query(r / "round-0" / "evaluate" / "per_query.tsv") for n, r in zip(names, runs, strict=True)}
    tests["soup"] = per_query(test_dir / "per_query.tsv")
    devs = {n: dev_score(model_dir(r), dev, cfg) for n, r in zip(names, runs, strict=True)}
    devs["soup"] = dev_score(out / "model", dev, cfg)
    agree = {n: rotation_agreement(runs[0], r) for n, r in zip(names, runs, strict=True)}
    rows = [[n, f"{devs[n]:.4f}", f"{mean_of(tests[n]):.4f}", f"{agree[n]:.3f}" if n in agree else "",
             "" if n == "soup" else f"{paired_ttest(tests[n], tests['soup']):.2g}"] for n in [*names, "soup"]]
    print(hardware_line())
    print_table(["model", f"dev NDCG@10 ({len(dev.queries)} train queries, dim {cfg.mrl_select_dim})",
                 "test NDCG@10", "min Dense row cosine vs default", "p soup vs it (test)"], rows)
    best = max(names, key=lambda n: devs[n])
    shipped = "soup" if devs["soup"] >= devs[best] else best
    print(f"chosen on dev: {shipped} (test {mean_of(tests[shipped]):.4f})")
    (out / "soup.json").write_text(json.dumps({"dev": devs, "test": {n: mean_of(t) for n, t in tests.items()},
                                               "rotation_agreement": agree, "chosen_on_dev": shipped}, indent=2))


if __name__ == "__main__":
    main()
