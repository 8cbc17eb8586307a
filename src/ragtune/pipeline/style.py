"""Style adaptation: a handful of the target collection's own queries steer what the generator writes.

`target_examples: FILE` holds 2-16 example queries, one a line (no relevance labels). Each is paired with the document
BM25 ranks first for it in the target corpus, which gives (document, query) pairs in the target's style, used

- in the prompt (`style.prompt_shots`): as few-shot turns before the document, as Promptagator and InPars prompt;
- as a short extra SFT (`style.sft_steps`): a new LoRA on top of the generator, trained on those pairs, merged into
  `merged/` for generation.

The examples themselves never reach retriever training or evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ragtune.atomic import write_jsonl
from ragtune.config import ConfigModel
from ragtune.data.beir import load_corpus
from ragtune.data.errors import DataFormatError
from ragtune.data.jsonl import iter_lines

MIN_EXAMPLES, MAX_EXAMPLES = 2, 16
SHOTS = "shots.jsonl"


class StyleConfig(ConfigModel):
    prompt_shots: int = Field(0, ge=0, le=MAX_EXAMPLES)
    """Example pairs put in every generation prompt (0 = none)."""
    shot_doc_tokens: int = Field(96, ge=8)
    """Example documents are cut to this many tokens in the prompt."""
    sft_steps: int = Field(0, ge=0)
    """Steps of the extra style SFT on the example pairs (0 = none)."""
    sft_batch_size: int = Field(4, ge=1)
    sft_learning_rate: float = Field(1e-4, gt=0)
    sft_lora_rank: int = Field(8, ge=1)


def read_examples(path: Path) -> list[str]:
    """2-16 example queries, one a line (blank lines are skipped)."""
    out = [text.strip() for _, text in iter_lines(path)]
    if not MIN_EXAMPLES <= len(out) <= MAX_EXAMPLES:
        raise DataFormatError(path, None, f"{len(out)} example queries; target_examples takes "
                              f"{MIN_EXAMPLES}-{MAX_EXAMPLES}", hint="one example query of the target collection "
                              "a line")
    return out


def example_pairs(data: Path, examples: list[str]) -> list[dict[str, str]]:
    """Each example with the document BM25 ranks first for it in `data`'s corpus."""
    from ragtune.retrieval.bm25 import BM25Retriever

    corpus = load_corpus(data / "corpus.jsonl")
    bm25 = BM25Retriever()
    bm25.index(corpus.values())
    run = bm25.search({str(i): q for i, q in enumerate(examples)}, k=1)
    pairs = []
    for i, q in enumerate(examples):
        hits = run.get(str(i), {})
        if hits:
            doc = max(hits, key=lambda d: (hits[d], d))
            pairs.append({"doc_id": doc, "document": corpus[doc].content, "query": q})
    return pairs


def style(data: Path, examples_file: Path, out: Path, cfg: StyleConfig, model: str, adapter: Path | None,
          template: str, max_prompt_tokens: int | None = None) -> dict[str, Any]:
    """Write shots.jsonl (example pairs); with sft_steps, train the style adapter and merge it into `merged/`.
    `max_prompt_tokens` cuts each document as the generator's own SFT did (to what `generate` will show it)."""
    examples = read_examples(examples_file)
    pairs = example_pairs(data, examples)
    write_jsonl(out / SHOTS, pairs)
    result: dict[str, Any] = {"examples": len(examples), "pairs": len(pairs)}
    if cfg.sft_steps:
        from ragtune.config import build_config
        from ragtune.train.generator.rl import merge_policy
        from ragtune.train.generator.sft import train_generator
        from ragtune.train.generator.sft_config import GeneratorTrainConfig

        write_jsonl(out / "sft" / "style.jsonl", ({"instruction": p["document"], "output": p["query"]} for p in pairs))
        sft_cfg = build_config(GeneratorTrainConfig, {
            "model_name_or_path": model, "adapter_name_or_path": str(adapter) if adapter else None,
            "resume_lora_training": False,  # a new adapter on top of the generator's, which stays as it was
            "template": template, "dataset": [str(out / "sft" / "style.jsonl")], "formatting": "alpaca",
            "output_dir": str(out / "adapter"), "max_steps": cfg.sft_steps,
            "per_device_train_batch_size": cfg.sft_batch_size, "learning_rate": cfg.sft_learning_rate,
            "lora_rank": cfg.sft_lora_rank, "cutoff_len": 384, "max_prompt_tokens": max_prompt_tokens,
            "report_to": ["none"], "plot_loss": False, "logging_steps": 1}, "style")
        summary = train_generator(sft_cfg)
        merge_policy(model, adapter, out / "adapter", out / "merged")
        result |= {"sft_steps": cfg.sft_steps, "sft_loss": summary.get("train_loss")}
    return result
