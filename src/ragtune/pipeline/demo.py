"""`ragtune demo`: the embedded default job.

Until the closed loop lands, the demo is the measuring instrument itself: BM25 and
zero-shot MiniLM on the SciFact test split, with a paired t-test between them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ragtune.config import ConfigModel, dump_config
from ragtune.evaluate.metrics import DEFAULT_METRICS
from ragtune.evaluate.retrieval_eval import CompareConfig, EvalConfig, run_compare, run_eval
from ragtune.io import write_json
from ragtune.retrieval.bm25 import BM25Config
from ragtune.retrieval.dense import DenseConfig
from ragtune.shared import shared_data


class DemoConfig(ConfigModel):
    data: Path | None = None
    """BEIR folder; default: $RAGTUNE_SHARED/data/beir/scifact (else ../shared/data/beir/scifact)."""
    split: str = "test"
    retrievers: list[str] = Field(default_factory=lambda: ["bm25", "dense"])
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    bm25: BM25Config = Field(default_factory=BM25Config)
    dense: DenseConfig = Field(default_factory=DenseConfig)
    out: Path = Path("runs/demo")


def run_demo(cfg: DemoConfig) -> dict:
    data = cfg.data or shared_data("beir", "scifact")
    if not Path(data).is_dir():
        raise FileNotFoundError(f"demo data not found at {data}: put the shared data beside the repository "
                                f"(../shared) or set RAGTUNE_SHARED, or pass data=PATH")
    rows = []
    for name in cfg.retrievers:
        ecfg = EvalConfig(data=data, split=cfg.split, retriever=name, metrics=cfg.metrics, bm25=cfg.bm25,
                          dense=cfg.dense, out=cfg.out / name)
        rows.append(run_eval(ecfg))
    comparisons = {}
    base = cfg.retrievers[0]
    for name in cfg.retrievers[1:]:
        comparisons[f"{name} vs {base}"] = run_compare(CompareConfig(
            run_a=cfg.out / base / "run.trec", run_b=cfg.out / name / "run.trec", data=data, split=cfg.split,
            metrics=cfg.metrics))["metrics"]
    report = {"rows": rows, "comparisons": comparisons}
    write_json(cfg.out / "report.json", report)
    dump_config(cfg, cfg.out / "config.yaml")
    return report
