"""BEIR folder -> doc->query SFT pairs, and what every BEIR converter reads (`BeirSource`, `positives`).

The converters that mine hard negatives (embedding triples, reranker pairs and groups) need a retriever,
so they live in `ragtune.retrieval.mining`.
"""

from __future__ import annotations

from pathlib import Path

from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import BeirDataset, load_beir
from ragtune.data.convert_result import ConvertResult
from ragtune.data.dataset_info import register_dataset
from ragtune.data.formats import write_records
from ragtune.data.records import Alpaca


class BeirSource(ConfigModel):
    data: Path
    """BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""
    split: str = "train"
    out: Path
    """Output folder."""
    min_score: int = 1
    """Qrels score from which a document counts as relevant."""


class BeirSFTConfig(BeirSource):
    """Document -> query pairs for teaching an LLM to write queries (doc2query)."""

    name: str | None = None
    """dataset_info.json entry and file stem; default `<data folder>_<split>_doc2query`."""
    instruction_prefix: str = ""
    """Fixed text put before the document in `instruction`, e.g. "Write a question this passage answers:\\n"."""
    system: str | None = None


def positives(ds: BeirDataset, split: str, min_score: int) -> dict[str, dict[str, int]]:
    """qid -> {docid: score} of relevant documents, best first; queries without any are left out."""
    out: dict[str, dict[str, int]] = {}
    for qid, judged in ds.qrels[split].items():
        rel = {d: s for d, s in sorted(judged.items(), key=lambda kv: (-kv[1], kv[0])) if s >= min_score}
        if rel:
            out[qid] = rel
    return out


def beir_to_sft(cfg: BeirSFTConfig) -> ConvertResult:
    """One alpaca record per (relevant document, query): instruction = prefix + document, output = query."""
    ds = load_beir(cfg.data, [cfg.split])
    name = cfg.name or f"{Path(cfg.data).name}_{cfg.split}_doc2query"
    pos = positives(ds, cfg.split, cfg.min_score)
    records = [Alpaca(instruction=cfg.instruction_prefix + ds.corpus[d].content, output=ds.queries[q],
                      system=cfg.system) for q, docs in pos.items() for d in docs]
    out = Path(cfg.out)
    data_file = out / f"{name}.jsonl"
    n = write_records(data_file, records)
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    if cfg.system is not None:
        columns["system"] = "system"
    register_dataset(out, name, data_file.name, "alpaca", columns=columns)
    config = dump_config(cfg, out / "beir-sft.config.yaml")
    return ConvertResult({"queries": len(pos), "records": n, "documents": len({d for p in pos.values() for d in p})},
                         [data_file, out / "dataset_info.json", config])


