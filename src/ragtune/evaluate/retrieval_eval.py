"""`ragtune eval`: retrieve (or read a run) on a BEIR split, score it, save everything."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ragtune.atomic import atomic_open, check_output, write_json
from ragtune.config import CommaList, ConfigError, ConfigModel, dump_config
from ragtune.data.beir import load_beir, load_qrels, load_queries
from ragtune.data.fingerprint import dataset_fingerprint, mismatch, read_fingerprint, write_fingerprint
from ragtune.data.trec import Run, read_run, write_run
from ragtune.evaluate.metrics import DEFAULT_METRICS, EvalResult, MetricName, evaluate, parse_metric
from ragtune.evaluate.multiple_testing import holm_adjusted
from ragtune.evaluate.significance import compare_per_query
from ragtune.retrieval.bm25 import BM25Config
from ragtune.retrieval.colbert import ColbertConfig
from ragtune.retrieval.dense import DenseConfig


class EvalConfig(ConfigModel):
    data: Path
    """A BEIR folder."""
    split: str = "test"
    retriever: Literal["bm25", "dense", "colbert", "run"] = "bm25"
    """`run` scores an existing TREC run file given as `run`."""
    run: Path | None = None
    metrics: Annotated[list[str], CommaList] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    k: int = Field(1000, ge=1)
    """Documents retrieved per query."""
    ignore_identical_ids: bool = False
    """BEIR's behaviour: drop a retrieved document whose id equals the query id."""
    bm25: BM25Config = Field(default_factory=BM25Config)
    dense: DenseConfig = Field(default_factory=DenseConfig)
    colbert: ColbertConfig = Field(default_factory=ColbertConfig)
    """retriever=colbert: `colbert.model` is a `ragtune train colbert` output folder."""
    rerank: str | None = None
    """A reranker (cross-encoder or LLM reranker folder) applied on top of the first-stage run."""
    rerank_top: int = Field(100, ge=1)
    """First-stage documents re-scored per query; the rest keep their order below them."""
    rerank_batch_size: int = Field(32, ge=1)
    rerank_max_length: int | None = Field(None, ge=8)
    """Tokens per (query, document) pair; default: the reranker's own limit."""
    rerank_fusion: float | Literal["dev"] | None = None
    """Fuse the reranker's ranks with the first stage's (weighted RRF; 1 = reranker only, 0 = first stage only).
    `dev` = the weight `ragtune train reranker` chose on its dev slice (ragtune_fusion.json in the reranker
    folder). None = the reranker's order."""
    out: Path | None = None
    """Folder for run.trec, per_query.tsv, metrics.json, config.yaml (default runs/eval/<data>-<split>-<retriever>)."""
    json_out: Path | None = None
    """Also write the summary JSON here."""
    show_progress: bool = True

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_metric(m)
        return v


def summary(cfg: EvalConfig, result: EvalResult, seconds: float) -> dict:
    name = cfg.retriever if cfg.retriever != "run" else f"run:{cfg.run}"
    if cfg.retriever == "dense":
        name = f"dense:{cfg.dense.model}"
    if cfg.retriever == "colbert":
        name = f"colbert:{cfg.colbert.model}"
    if cfg.rerank:
        name += f"+rerank{cfg.rerank_top}:{cfg.rerank}"
    return {"dataset": Path(cfg.data).name, "split": cfg.split, "retriever": name,
            "num_queries": result.num_queries, "metrics": result.metrics, "seconds": round(seconds, 2)}


def write_per_query(path: Path, result: EvalResult) -> None:
    metrics = list(result.per_query)
    with atomic_open(path) as f:
        f.write("query-id\t" + "\t".join(metrics) + "\n")
        for qid in next(iter(result.per_query.values())):
            f.write(qid + "\t" + "\t".join(f"{result.per_query[m][qid]:.6f}" for m in metrics) + "\n")


def retrieve(cfg: EvalConfig) -> tuple[Run, dict]:
    """The run for cfg.split's queries, and the loaded qrels for the split."""
    if cfg.retriever == "run":
        if cfg.run is None:
            raise ValueError("retriever=run needs run=PATH (a TREC run file)")
        ds = load_beir(cfg.data, splits=[cfg.split])
        return read_run(cfg.run), ds.qrels[cfg.split]
    from ragtune.retrieval.factory import index_corpus

    ds = load_beir(cfg.data, splits=[cfg.split])
    retriever = index_corpus(cfg.retriever, ds.corpus.values(), cfg.bm25, cfg.dense,
                             show_progress=cfg.show_progress, colbert=cfg.colbert)
    return retriever.search(ds.split_queries(cfg.split), k=cfg.k), ds.qrels[cfg.split]


def rerank(cfg: EvalConfig, run: Run, weight: float | None = None) -> tuple[Run, Run | None]:
    """Re-score the top `rerank_top` documents of each query of the first-stage run with `cfg.rerank`.

    Returns (final run, reranker-only run): with a fusion `weight` (see `fusion_weight`) the final run is the
    fusion and the reranker's own order comes second (so one scoring pass reports both); without, (reranked, None).
    """
    from ragtune.retrieval.rerank import fuse_with_first_stage, load_reranker, rerank_run

    ds = load_beir(cfg.data, splits=[cfg.split])
    reranker = load_reranker(cfg.rerank, max_length=cfg.rerank_max_length)
    corpus = {d: doc.content for d, doc in ds.corpus.items()}
    reranked = rerank_run(reranker, run, ds.split_queries(cfg.split), corpus, top=cfg.rerank_top,
                          batch_size=cfg.rerank_batch_size, show_progress=cfg.show_progress)
    if weight is None:
        return reranked, None
    return fuse_with_first_stage(run, reranked, weight, top=cfg.rerank_top), reranked


def fusion_weight(cfg: EvalConfig) -> float:
    if cfg.rerank_fusion != "dev":
        return float(cfg.rerank_fusion)
    from ragtune.retrieval.rerank import read_dev_fusion

    return read_dev_fusion(str(cfg.rerank), "rerank_fusion", "or give a number in [0, 1]")["weight"]


def run_fingerprint(cfg: EvalConfig) -> dict[str, str] | None:
    """What the run was made on. A scored external run (retriever=run) carries its own fingerprint, if any:
    ragtune cannot know what corpus another tool retrieved from."""
    if cfg.retriever == "run":
        return read_fingerprint(cfg.run) if cfg.run else None
    return data_fingerprint(cfg.data, cfg.split)


def data_fingerprint(folder: Path, split: str) -> dict[str, str]:
    """The fingerprint of a BEIR folder's corpus and `split` (its judged queries), without loading the corpus."""
    judged = load_qrels(Path(folder) / "qrels" / f"{split}.tsv")
    queries = load_queries(Path(folder) / "queries.jsonl")
    return dataset_fingerprint(folder, split, {q: queries[q] for q in judged if q in queries})


def run_eval(cfg: EvalConfig) -> dict:
    """Evaluate and write run.trec, per_query.tsv, metrics.json, config.yaml; returns the summary."""
    start = time.perf_counter()
    out = cfg.out or Path("runs") / "eval" / f"{Path(cfg.data).name}-{cfg.split}-{cfg.retriever}" \
        f"{'-rerank' if cfg.rerank else ''}"
    # checked before retrieval: a bad output path or a missing dev weight fails now, not after the work
    check_output(out, "--out", folder=True)
    if cfg.json_out:
        check_output(cfg.json_out, "--json", folder=False)
    weight = fusion_weight(cfg) if cfg.rerank and cfg.rerank_fusion is not None else None
    run, qrels = retrieve(cfg)
    reranker_only = None
    if cfg.rerank:
        run, reranker_only = rerank(cfg, run, weight)
    result = evaluate(qrels, run, cfg.metrics, ignore_identical_ids=cfg.ignore_identical_ids)
    info = summary(cfg, result, time.perf_counter() - start)
    if weight is not None:
        info["retriever"] += f"+fusion:{weight:g}"
    if reranker_only is not None:  # the fused run is run.trec; the reranker's own order is kept beside it
        write_run(out / "run.reranker-only.trec", reranker_only, tag="ragtune-reranker-only")
        info["reranker_only"] = evaluate(qrels, reranker_only, cfg.metrics,
                                         ignore_identical_ids=cfg.ignore_identical_ids).metrics
    write_run(out / "run.trec", run, tag=f"ragtune-{cfg.retriever}")
    fp = run_fingerprint(cfg)
    if fp is not None:
        write_fingerprint(out / "run.trec", fp)
        if reranker_only is not None:
            write_fingerprint(out / "run.reranker-only.trec", fp)
    write_per_query(out / "per_query.tsv", result)
    write_json(out / "metrics.json", info)
    dump_config(cfg, out / "config.yaml")
    if cfg.json_out:
        write_json(cfg.json_out, info)
        dump_config(cfg, cfg.json_out.with_name(cfg.json_out.stem + ".config.yaml"))
    info["out"] = str(out)
    return info


class CompareConfig(ConfigModel):
    run_a: Path
    run_b: Path
    data: Path
    split: str = "test"
    metrics: Annotated[list[MetricName], CommaList] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    ignore_identical_ids: bool = False
    json_out: Path | None = None


def check_same_footing(cfg: CompareConfig) -> list[str]:
    """Refuse runs made on different corpora, query sets or splits (from the fingerprints `ragtune eval` writes
    beside its runs, and the data given here); returns warnings for runs that carry no fingerprint."""
    runs = {"run_a": cfg.run_a, "run_b": cfg.run_b}
    fps = {name: read_fingerprint(path) for name, path in runs.items()}
    folder = Path(cfg.data)
    if folder.is_dir() and (folder / "corpus.jsonl").is_file():
        fps["data"] = data_fingerprint(folder, cfg.split)
    known = {name: fp for name, fp in fps.items() if fp is not None}
    labels = {"run_a": str(cfg.run_a), "run_b": str(cfg.run_b), "data": f"{cfg.data} (split {cfg.split})"}
    names = list(known)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            differ = mismatch(known[first], known[second])
            if differ:
                raise ConfigError(
                    f"{labels[first]} and {labels[second]} were made on different {' and '.join(differ)} "
                    f"({', '.join(f'{k}: {known[first].get(k)} vs {known[second].get(k)}' for k in differ)}); a "
                    "paired comparison needs both runs retrieved for the same queries over the same corpus: "
                    "rerun `ragtune eval` for both on one BEIR folder and split")
    return [f"{labels[name]}: no fingerprint beside the run (not written by `ragtune eval`), so ragtune cannot "
            "check it was made on the same corpus and queries" for name in runs if fps[name] is None]


def run_compare(cfg: CompareConfig) -> dict:
    """Per-metric means of two runs on the same judged queries, with paired t-test p-values."""
    warnings = check_same_footing(cfg)
    folder = Path(cfg.data)
    qrels = load_qrels(folder / "qrels" / f"{cfg.split}.tsv") if folder.is_dir() else load_qrels(folder)
    a = evaluate(qrels, read_run(cfg.run_a), cfg.metrics, cfg.ignore_identical_ids)
    b = evaluate(qrels, read_run(cfg.run_b), cfg.metrics, cfg.ignore_identical_ids)
    per_metric = compare_per_query(a.per_query, b.per_query)
    for row, p_holm in zip(per_metric.values(), holm_adjusted([r["p_value"] for r in per_metric.values()]),
                           strict=True):
        row["p_holm"] = p_holm  # one comparison per metric: the table is a family of len(metrics) tests
    out = {"run_a": str(cfg.run_a), "run_b": str(cfg.run_b), "split": cfg.split, "metrics": per_metric,
           "comparisons": sum(r["p_value"] == r["p_value"] for r in per_metric.values()),  # NaN: no variance
           "warnings": warnings}
    if cfg.json_out:
        write_json(cfg.json_out, out)
    return out
