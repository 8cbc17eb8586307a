"""Score filter: keep pseudo queries whose score passes a threshold (or the top fraction).

Scorers: a cross-encoder's relevance score for (query, source document), or the
generator's mean token log-probability of the query given its prompt (InPars).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ragtune.config import ConfigModel
from ragtune.data.records import Doc
from ragtune.filters.base import Candidate, Verdict, register


class ScoreFilterConfig(ConfigModel):
    name: Literal["score"] = "score"
    scorer: Literal["cross_encoder", "generator_logprob"] = "cross_encoder"
    model: str
    """A cross-encoder folder (e.g. one `ragtune train reranker` wrote), or the generator's base model."""
    adapter: Path | None = None
    """generator_logprob: the LoRA adapter the queries were generated with."""
    template: str = "auto"
    instruction: str | None = None
    """generator_logprob: the generation instruction (default: ragtune generate's)."""
    max_doc_tokens: int = 384
    threshold: float | None = None
    keep_fraction: float | None = Field(None, gt=0, le=1)
    """Keep the best-scoring fraction (InPars keeps the top 10k of 100k); used when threshold is unset."""
    batch_size: int = Field(16, ge=1)
    device: str = "auto"

    @model_validator(mode="after")
    def _one_rule(self) -> ScoreFilterConfig:
        if (self.threshold is None) == (self.keep_fraction is None):
            raise ValueError("set exactly one of threshold or keep_fraction")
        return self


def cross_encoder_scores(cfg: ScoreFilterConfig, pairs: list[tuple[str, str]]) -> np.ndarray:
    from sentence_transformers import CrossEncoder

    from ragtune.hardware import pick_device
    from ragtune.models import resolve_model

    model = CrossEncoder(str(resolve_model(cfg.model)), device=pick_device(cfg.device), local_files_only=True)
    return np.asarray(model.predict(pairs, batch_size=cfg.batch_size, show_progress_bar=False), dtype=np.float64)


def generator_logprobs(cfg: ScoreFilterConfig, docs: list[str], queries: list[str]) -> np.ndarray:
    """Mean log-probability of each query's tokens after its rendered generation prompt (teacher forcing)."""
    import torch

    from ragtune.generate.prompts import DEFAULT_INSTRUCTION
    from ragtune.generate.query_generator import QueryGenerator
    from ragtune.hardware import auto_dtype, pick_device

    device = pick_device(cfg.device)
    gen = QueryGenerator.load(cfg.model, cfg.adapter, cfg.template, dtype=auto_dtype(device), device=device)
    tok, model = gen.tokenizer, gen.model
    eos = tok.eos_token or ""
    out = np.zeros(len(queries))
    order = sorted(range(len(queries)), key=lambda i: len(docs[i]))  # similar lengths share a batch
    for s in range(0, len(order), cfg.batch_size):
        idx = order[s:s + cfg.batch_size]
        prompts = [gen.prompt("", docs[i], cfg.instruction or DEFAULT_INSTRUCTION, None, [],
                              cfg.max_doc_tokens).text for i in idx]
        p_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        q_ids = [tok(queries[i] + eos, add_special_tokens=False)["input_ids"] for i in idx]
        seqs = [p + q for p, q in zip(p_ids, q_ids, strict=True)]
        width = max(map(len, seqs))
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in seqs], device=gen.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in seqs], device=gen.device)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        tok_logp = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for row, (i, q) in enumerate(zip(idx, q_ids, strict=True)):
            out[i] = float(tok_logp[row, width - 1 - len(q):].mean())  # the query's tokens, after the prompt
    return out


class ScoreFilter:
    name = "score"

    def __init__(self, cfg: ScoreFilterConfig, corpus: dict[str, Doc]):
        self.cfg, self.corpus = cfg, corpus

    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        docs = [self.corpus[c.doc_id].content for c in candidates]
        queries = [c.text for c in candidates]
        if self.cfg.scorer == "cross_encoder":
            return cross_encoder_scores(self.cfg, list(zip(queries, docs, strict=True)))
        return generator_logprobs(self.cfg, docs, queries)

    def __call__(self, candidates: list[Candidate]) -> list[Verdict]:
        if not candidates:
            return []
        s = self.scores(candidates)
        if self.cfg.threshold is not None:
            keep = s >= self.cfg.threshold
        else:
            keep = np.zeros(len(s), dtype=bool)
            keep[np.argsort(-s, kind="stable")[: int(round(self.cfg.keep_fraction * len(s)))]] = True
        key = "ce_score" if self.cfg.scorer == "cross_encoder" else "logprob"
        return [Verdict(bool(k), {key: round(float(v), 6)}) for k, v in zip(keep, s, strict=True)]


@register("score")
def build(cfg: ScoreFilterConfig, corpus: dict[str, Doc], **_) -> ScoreFilter:
    return ScoreFilter(cfg, corpus)
