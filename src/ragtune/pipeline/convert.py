"""`ragtune data convert KIND [CONFIG.yaml] [key=value ...]`: the converter registry.

Each converter is a plain function `fn(cfg) -> ConvertResult` with its own config class:

| kind | config | writes |
|---|---|---|
| beir-sft | `BeirSFTConfig` | alpaca doc->query pairs + dataset_info.json |
| beir-embedding | `BeirEmbeddingConfig` | `{query, pos, neg}` + mined_negatives.jsonl |
| beir-reranker | `BeirRerankerConfig` | `{query, content, label}` and/or `{query, hits}` |
| squad-sft | `SquadSFTConfig` | grounded-answer alpaca records with refusals, `*.meta.jsonl`, dataset_info.json |
| webqa-sft | `WebQASFTConfig` | the same, from Baidu WebQA JSON |
| squad-beir | `QABeirConfig` | BEIR folder: passages, answerable questions, train/test by article (`ragtune run`) |
| st-triplets | `TripletsConfig` | sentence-transformers anchor/positive/negative columns -> `{query, pos, neg}` |
| mteb | `MtebConfig` | an MTEB retrieval task (corpus/, queries/, qrels/ folders) -> a BEIR folder |

Every output is written atomically and the resolved config lands beside it as `<kind>.config.yaml`.
The converters live where what they need lives: `data.convert_beir` (plain BEIR -> SFT pairs),
`retrieval.mining` (the two that mine negatives with a retriever) and `rag.answerer_data` (the answerer's
prompts and refusals); this table composes them, so it sits in the layer that composes stages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtune.atomic import check_output
from ragtune.config import ConfigModel, load_config
from ragtune.data.convert_beir import BeirSFTConfig, beir_to_sft
from ragtune.data.convert_external import MtebConfig, TripletsConfig, mteb_to_beir, triplets_to_embedding
from ragtune.data.convert_qa_beir import QABeirConfig, qa_to_beir
from ragtune.data.convert_result import ConvertResult
from ragtune.rag.answerer_data import SquadSFTConfig, WebQASFTConfig, squad_to_sft, webqa_to_sft
from ragtune.retrieval.mining import BeirEmbeddingConfig, BeirRerankerConfig, beir_to_embedding, beir_to_reranker

CONVERTERS: dict[str, tuple[type[ConfigModel], Callable[[Any], ConvertResult]]] = {
    "beir-sft": (BeirSFTConfig, beir_to_sft),
    "beir-embedding": (BeirEmbeddingConfig, beir_to_embedding),
    "beir-reranker": (BeirRerankerConfig, beir_to_reranker),
    "squad-sft": (SquadSFTConfig, squad_to_sft),
    "webqa-sft": (WebQASFTConfig, webqa_to_sft),
    "squad-beir": (QABeirConfig, qa_to_beir),
    "st-triplets": (TripletsConfig, triplets_to_embedding),
    "mteb": (MtebConfig, mteb_to_beir),
}


def converter(kind: str) -> tuple[type[ConfigModel], Callable[[Any], ConvertResult]]:
    """(config class, function) of KIND, or a ValueError listing the kinds. The function refuses an `out` that is
    an existing file before converting, not when the conversion writes its first file."""
    if kind not in CONVERTERS:
        raise ValueError(f'unknown conversion "{kind}"; choose one of: {", ".join(CONVERTERS)}')
    cls, fn = CONVERTERS[kind]

    def checked(cfg: Any) -> ConvertResult:
        if getattr(cfg, "out", None) is not None:
            check_output(cfg.out, "out", folder=True)
        return fn(cfg)

    return cls, checked


def run_convert(kind: str, config: str | Path | None = None, overrides: list[str] | None = None) -> ConvertResult:
    """Resolve KIND's config (YAML < key=value overrides) and run its converter."""
    cls, fn = converter(kind)
    return fn(load_config(cls, config, overrides))
