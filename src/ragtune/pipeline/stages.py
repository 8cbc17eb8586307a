"""The loop's stages. Each takes its inputs as folders and writes only into `out`.

They glue library functions together; the algorithms live in the layers below
(generate/, filters/, train/, evaluate/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.atomic import write_jsonl
from ragtune.data.beir import load_beir, load_corpus, load_queries, write_beir
from ragtune.data.jsonl import iter_jsonl


def _resume_if_checkpointed(output_dir: Path) -> dict[str, Any]:
    """`resume_from_checkpoint: true` when a trainer left checkpoints in output_dir: a stage restarted after a
    kill (the run directory keeps its folder) continues from them instead of starting over."""
    from ragtune.train.harness import latest_checkpoint

    return {"resume_from_checkpoint": True} if latest_checkpoint(output_dir) else {}


def sft(data: Path, out: Path, model: str, template: str, overrides: dict[str, Any]) -> dict[str, Any]:
    from ragtune.config import build_config
    from ragtune.data.convert_beir import BeirSFTConfig, beir_to_sft
    from ragtune.train.generator.sft import train_generator
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    conv = beir_to_sft(BeirSFTConfig(data=data, split="train", out=out / "data", name="doc2query"))
    cfg = build_config(GeneratorTrainConfig, {"model_name_or_path": model, "template": template,
                                              "dataset": ["doc2query"], "dataset_dir": str(out / "data"),
                                              "output_dir": str(out / "adapter"), "report_to": ["none"],
                                              **_resume_if_checkpointed(out / "adapter"), **overrides}, "sft")
    summary = train_generator(cfg)
    return {"pairs": conv.counts.get("records", 0), **{k: v for k, v in summary.items()
                                                        if isinstance(v, (int, float, str))}}


def generate(data: Path, out: Path, model: str, adapter: Path | None, template: str, round_: int,
             overrides: dict[str, Any]) -> dict[str, Any]:
    from ragtune.config import build_config
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries

    cfg = build_config(GenerateConfig, {"corpus": str(data), "output_dir": str(out), "model_name_or_path": model,
                                        "adapter_name_or_path": str(adapter) if adapter else None,
                                        "template": template, "round": round_, **overrides}, "generate")
    summary = generate_queries(cfg)
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}


def filter_queries(queries: Path, data: Path, out: Path, filters: list) -> dict[str, Any]:
    from ragtune.filters.run import FilterConfig, run_filter

    report = run_filter(FilterConfig(queries=queries, corpus=data, out=out, filters=filters, show_progress=False))
    return {"candidates": report["candidates"], "kept": report["kept"], "kept_fraction": report["kept_fraction"],
            "yield": {s["name"]: [s["in"], s["out"]] for s in report["filters"]}}


def train_retriever(data: Path, pseudo: list[Path], out: Path, model: str, overrides: dict[str, Any],
                    mining: dict[str, Any]) -> dict[str, Any]:
    """Train pairs (if any) + kept pseudo queries -> {query, pos, neg} with BM25 negatives -> fine-tuned bi-encoder.

    Without train qrels (BEIR nq, arguana...) the pseudo queries are all there is, and there is no labeled dev
    slice to select a checkpoint on: the last one is kept, unless `dev` is given explicitly.
    """
    from ragtune.config import build_config
    from ragtune.data.beir import qrels_splits
    from ragtune.retrieval.mining import BeirEmbeddingConfig, beir_to_embedding
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding

    labeled = "train" in qrels_splits(data)
    ds = load_beir(data, splits=["train"] if labeled else [])
    queries = dict(ds.split_queries("train")) if labeled else {}
    qrels = {q: dict(d) for q, d in ds.qrels["train"].items()} if labeled else {}
    n_train, n_pseudo = len(qrels), 0
    for folder in pseudo:
        pq = load_queries(folder / "queries.jsonl")
        for qid, docs in load_beir_qrels(folder).items():
            queries[qid], qrels[qid] = pq[qid], docs
            n_pseudo += 1
    if not qrels:
        raise ValueError(f"{data}: no train qrels and no kept pseudo queries: nothing to train the retriever on "
                         "(loosen the filters or generate more queries)")
    mix = out / "mix"
    write_beir(mix, ds.corpus.values(), queries, {"train": qrels})
    conv = beir_to_embedding(build_config(BeirEmbeddingConfig, {"data": str(mix), "split": "train",
                                                                "out": str(out / "records"), **mining}, "mining"))
    # the dev slice is carved from the REAL train queries only (never pseudo, never test)
    dev = ({"data": str(data), "split": "train", "fraction": 0.1, "max_queries": 50} if labeled else {}) \
        | overrides.get("dev", {})
    cfg = build_config(EmbeddingTrainConfig, {"model_name_or_path": model, "output_dir": str(out / "model"),
                                              "train_data": [str(p) for p in conv.outputs if p.name ==
                                                             "embedding.jsonl"],
                                              **_resume_if_checkpointed(out / "model"), **overrides, "dev": dev},
                       "retriever")
    summary = train_embedding(cfg)
    return {"train_queries": n_train, "pseudo_queries": n_pseudo,
            **{k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}


def load_beir_qrels(folder: Path) -> dict[str, dict[str, int]]:
    from ragtune.data.beir import load_qrels

    return load_qrels(folder / "qrels" / "train.tsv")


def evaluate(data: Path, model: Path | str, out: Path, split: str, metrics: list[str],
             baselines: dict[str, Path]) -> dict[str, Any]:
    from ragtune.evaluate.multiple_testing import holm_adjusted
    from ragtune.evaluate.retrieval_eval import CompareConfig, EvalConfig, run_compare, run_eval
    from ragtune.retrieval.dense import DenseConfig

    info = run_eval(EvalConfig(data=data, split=split, retriever="dense", dense=DenseConfig(model=str(model)),
                               metrics=metrics, out=out, show_progress=False))
    result: dict[str, Any] = {"metrics": info["metrics"]}
    for name, run in baselines.items():
        cmp = run_compare(CompareConfig(run_a=run, run_b=out / "run.trec", data=data, split=split, metrics=metrics))
        result[f"vs_{name}"] = {m: {"delta": r["delta"], "p_value": r["p_value"]} for m, r in cmp["metrics"].items()}
    family = [row for key, rows in result.items() if key.startswith("vs_") for row in rows.values()]
    for row, p_holm in zip(family, holm_adjusted([row["p_value"] for row in family]), strict=True):
        row["p_holm"] = p_holm  # the report's table: every metric against every baseline is one family
    result["comparisons"] = sum(row["p_value"] == row["p_value"] for row in family)  # NaN (no variance) not counted
    return result


def difficulty(data: Path, queries: Path, model: Path | str, out: Path, depth: int = 100,
               temperature: float = 0.1) -> dict[str, Any]:
    """Score every generated pseudo query (kept or not) with the round's trained retriever."""
    from ragtune.evaluate.difficulty import score_difficulty
    from ragtune.filters.base import load_pseudo_queries
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    pseudo = load_pseudo_queries(queries)
    r = DenseRetriever(DenseConfig(model=str(model)))
    r.index(load_corpus(data / "corpus.jsonl").values())
    run = r.search({c.query_id: c.text for c in pseudo.candidates}, k=depth)
    diff = score_difficulty(run, {c.query_id: c.doc_id for c in pseudo.candidates}, depth=depth,
                            temperature=temperature)
    rows = [{**row, "difficulty": diff[row["query_id"]].as_dict()} if row["query_id"] in diff else row
            for row in pseudo.provenance]
    write_jsonl(out / "provenance.jsonl", rows)
    values = [d.difficulty for d in diff.values()]
    return {"queries": len(values), "mean_difficulty": sum(values) / max(1, len(values)),
            "rank1_fraction": sum(d.rank == 1 for d in diff.values()) / max(1, len(values))}


def preferences(data: Path, queries: Path, provenance: Path, out: Path, cfg) -> dict[str, Any]:
    from ragtune.generate.prompts import user_turn
    from ragtune.train.generator.preferences import build_pairs, write_pairs

    texts = load_queries(queries / "queries.jsonl")
    rows = [row for _, row in iter_jsonl(provenance)]
    corpus = load_corpus(data / "corpus.jsonl")
    prompts = {d: user_turn(corpus[d]) for d in {r["doc_id"] for r in rows}}  # what PPO/the RM will see
    pairs = build_pairs(rows, texts, prompts, cfg)
    return write_pairs(out, pairs, cfg)


def reward_model(prefs: Path, out: Path, model: str, sft_adapter: Path | None, overrides: dict[str, Any]) -> dict:
    from ragtune.config import build_config
    from ragtune.train.generator.reward import RewardTrainConfig, train_reward_model

    cfg = build_config(RewardTrainConfig, {"model_name_or_path": model, "train_file": str(prefs /
                                           "preferences_train.jsonl"),
                       "eval_file": str(prefs / "preferences_heldout.jsonl"), "output_dir": str(out), **overrides},
                       "reward")
    return train_reward_model(cfg)


def _round_docs(provenance: Path, n: int, seed: int) -> list[str]:
    import random

    docs = sorted({row["doc_id"] for _, row in iter_jsonl(provenance)})
    return random.Random(seed).sample(docs, min(n, len(docs)))


def ppo(data: Path, provenance: Path, rm: Path, out: Path, model: str, sft_adapter: Path | None, ppo_cfg,
        n_prompts: int, seed: int) -> dict[str, Any]:
    """PPO against the round's reward model, on prompts for this round's documents."""
    from ragtune.train.generator.ppo import PPOStageConfig, run_ppo_stage
    from ragtune.train.generator.rl import PromptSource

    cfg = PPOStageConfig(model_name_or_path=model, adapter_name_or_path=sft_adapter, reward_model=rm,
                         output_dir=out, ppo=ppo_cfg, **_resume_if_checkpointed(out),
                         prompts=PromptSource(corpus=data, doc_ids=_round_docs(provenance, n_prompts, seed)))
    return run_ppo_stage(cfg)


def dpo(prefs: Path, out: Path, model: str, sft_adapter: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    from ragtune.config import build_config
    from ragtune.train.generator.dpo import DPOTrainConfig, train_dpo
    from ragtune.train.generator.rl import merge_policy

    cfg = build_config(DPOTrainConfig, {"model_name_or_path": model, "adapter_name_or_path": sft_adapter,
                                        "train_file": str(prefs / "preferences_train.jsonl"),
                                        "output_dir": str(out / "train"), **_resume_if_checkpointed(out / "train"),
                                        **overrides}, "dpo", "dpo")
    summary = train_dpo(cfg)
    merge_policy(model, sft_adapter, out / "train" / "adapter", out / "merged")
    losses = [h["loss"] for h in summary["log"] if "loss" in h]
    return {"pairs": summary["pairs"], "steps": summary["steps"], "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None}


def grpo(data: Path, provenance: Path, retriever_model: Path, out: Path, model: str, sft_adapter: Path | None,
         overrides: dict[str, Any], n_prompts: int, band: tuple[float, float] | None, seed: int) -> dict[str, Any]:
    """GRPO with an online reward: the reciprocal rank of the source doc under the round's retriever."""
    from ragtune.config import build_config
    from ragtune.train.generator.grpo import GRPOStageConfig, run_grpo_stage

    cfg = build_config(GRPOStageConfig, {"model_name_or_path": model, "adapter_name_or_path": sft_adapter,
                                         "output_dir": str(out), "retriever": "dense",
                                         "dense_model": str(retriever_model), "band": band,
                                         "prompts": {"corpus": str(data),
                                                     "doc_ids": _round_docs(provenance, n_prompts, seed)},
                                         **_resume_if_checkpointed(out), **overrides}, "grpo", "grpo")
    return run_grpo_stage(cfg)
