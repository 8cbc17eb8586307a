"""`ragtune data convert KIND [CONFIG.yaml] [key=value ...]`: the converter registry.

Each converter is a plain function `fn(cfg) -> ConvertResult` with its own config class:

| kind | config | writes |
|---|---|---|
| beir-sft | `BeirSFTConfig` | alpaca doc->query pairs + dataset_info.json |
| beir-embedding | `BeirEmbeddingConfig` | `{query, pos, neg}` + mined_negatives.jsonl |
| beir-reranker | `BeirRerankerConfig` | `{query, content, label}` and/or `{query, hits}` |
| squad-sft | `SquadSFTConfig` | grounded-answer alpaca records with refusals, `*.meta.jsonl`, dataset_info.json |
| webqa-sft | `WebQASFTConfig` | the same, from Baidu WebQA JSON |

Every output is written atomically and the resolved config lands beside it as `<kind>.config.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.config import ConfigModel, load_config
from ragtune.data.errors import ProblemLog


@dataclass
class ConvertResult:
    counts: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    skipped: ProblemLog | None = None
    """Bad input items left out under `on_error: skip` (count and first examples)."""


def converters() -> dict[str, tuple[type[ConfigModel], Callable[[Any], ConvertResult]]]:
    from ragtune.data.convert_beir import (
        BeirEmbeddingConfig,
        BeirRerankerConfig,
        BeirSFTConfig,
        beir_to_embedding,
        beir_to_reranker,
        beir_to_sft,
    )
    from ragtune.data.convert_qa import SquadSFTConfig, WebQASFTConfig, squad_to_sft, webqa_to_sft

    return {
        "beir-sft": (BeirSFTConfig, beir_to_sft),
        "beir-embedding": (BeirEmbeddingConfig, beir_to_embedding),
        "beir-reranker": (BeirRerankerConfig, beir_to_reranker),
        "squad-sft": (SquadSFTConfig, squad_to_sft),
        "webqa-sft": (WebQASFTConfig, webqa_to_sft),
    }


CONVERT_KINDS = ("beir-sft", "beir-embedding", "beir-reranker", "squad-sft", "webqa-sft")


def run_convert(kind: str, config: str | Path | None = None, overrides: list[str] | None = None) -> ConvertResult:
    """Resolve KIND's config (YAML < key=value overrides) and run its converter."""
    table = converters()
    if kind not in table:
        raise ValueError(f'unknown conversion "{kind}"; choose one of: {", ".join(CONVERT_KINDS)}')
    cls, fn = table[kind]
    return fn(load_config(cls, config, overrides))
