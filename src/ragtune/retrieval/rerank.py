"""Rerankers: score (query, document) pairs, rank documents, re-rank the top of a Run.

    reranker = load_reranker("runs/scifact/reranker")        # a cross-encoder or an LLM reranker folder
    reranker.compute_score([("what is a comet", "A comet orbits the sun ...")])   # -> [3.1]
    reranker.rank("what is a comet", docs, top_k=3)          # -> [{"corpus_id": i, "score": s, "text": t}]
    rerank_run(reranker, run, queries, corpus, top=100)      # Run with the top 100 re-scored

Two kinds, one interface:
- cross-encoder: a sentence-transformers `CrossEncoder` (BERT-like, one logit per pair);
- LLM reranker: a causal decoder with a scalar head on its last token (`AutoModelForSequenceClassification`,
  e.g. Qwen2ForSequenceClassification); the input is `query_format.format(query) + seq +
  document_format.format(document) + special_token`, the document truncated so the special token is
  always last. Its settings are stored in `ragtune_llm_reranker.json` beside the weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.config import ConfigError, ConfigModel
from ragtune.data.trec import Run

LLM_CONFIG = "ragtune_llm_reranker.json"
MLP_HEAD = "score_head.safetensors"
Pairs = Sequence[tuple[str, str]] | tuple[str, str]


def mlp_head(model):
    """Replace the sequence-classification model's scalar head by Linear(h, h) -> GELU -> Linear(h, 1)."""
    import torch

    hidden = model.config.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
    head.to(next(model.parameters()).dtype)
    model.score = head
    return head


def finish_scores(pairs: Pairs, scores: list[float], normalize: bool) -> float | list[float]:
    """sigmoid(score) when `normalize`; one float for one (query, document) pair, as RAG-Retrieval returns."""
    import math

    if normalize:
        scores = [1.0 / (1.0 + math.exp(-s)) for s in scores]
    return scores[0] if _one_pair(pairs) else scores


def _one_pair(pairs: Pairs) -> bool:
    return len(pairs) == 2 and all(isinstance(p, str) for p in pairs)


class LLMFormat(ConfigModel):
    """How an LLM reranker turns a (query, document) pair into one token sequence."""

    query_format: str = "query: {}"
    document_format: str = "document: {}"
    seq: str = "\n"
    """Text between the formatted query and the formatted document."""
    special_token: str | None = None
    """Text ending every input, whose last token's hidden state the score head reads; default: the tokenizer's eos
    token. Several tokens are fine ("\nrelevance"): it is tokenized as the tokens it is, never added to the
    vocabulary."""
    max_length: int = Field(512, ge=8)
    score_head: Literal["linear", "mlp"] = "linear"
    """linear: the model's own scalar head; mlp: Linear(hidden, hidden) -> GELU -> Linear(hidden, 1) (RAG-Retrieval's
    MLP scalar mapping), saved beside the weights as score_head.safetensors."""


class LLMReranker:
    """A causal LM with a scalar scoring head over the last token."""

    kind = "llm"

    def __init__(self, model, tokenizer, fmt: LLMFormat):
        self.model, self.tokenizer, self.fmt = model, tokenizer, fmt
        token = fmt.special_token or tokenizer.eos_token
        if token is None:
            raise ValueError("the tokenizer has no eos token; set special_token to the text that ends each input")
        self.special_ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if not self.special_ids:
            raise ValueError(f"special_token {token!r} tokenizes to nothing; give a non-empty text")
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == self.special_ids[-1]:
            raise ValueError("the pad token must exist and differ from special_token's last token: the score head "
                             "reads the last non-pad token")
        model.config.pad_token_id = tokenizer.pad_token_id

    @property
    def device(self):
        return next(self.model.parameters()).device

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Token ids of each formatted pair (document cut to fit, special token last), right-padded."""
        import torch

        rows = []
        for query, doc in pairs:
            q = self.tokenizer(self.fmt.query_format.format(query), add_special_tokens=False)["input_ids"]
            q = q[: self.fmt.max_length // 2]
            d = self.tokenizer(self.fmt.seq + self.fmt.document_format.format(doc),
                               add_special_tokens=False)["input_ids"]
            d = d[: max(0, self.fmt.max_length - len(q) - len(self.special_ids))]
            rows.append(q + d + self.special_ids)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention[i, : len(r)] = 1
        return {"input_ids": input_ids, "attention_mask": attention}

    def forward_scores(self, features: dict[str, Any]):
        """Scores (B,) with gradients, for training."""
        return self.model(**features).logits.view(-1)

    def compute_score(self, pairs: Pairs, batch_size: int = 16, show_progress: bool = False,
                      normalize: bool = False) -> list[float] | float:
        """Scores of (query, document) pairs (one float for one pair); `normalize`: sigmoid, in [0, 1]."""
        import torch
        from tqdm.auto import tqdm

        items = [pairs] if _one_pair(pairs) else list(pairs)
        self.model.eval()
        out: list[float] = []
        with torch.inference_mode():
            for start in tqdm(range(0, len(items), batch_size), disable=not show_progress, desc="rerank"):
                feats = {k: v.to(self.device) for k, v in self.encode_pairs(items[start:start + batch_size]).items()}
                out += self.forward_scores(feats).float().cpu().tolist()
        return finish_scores(pairs, out, normalize)

    def save(self, path: str | Path) -> None:
        from ragtune.atomic import write_json

        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        if self.fmt.score_head == "mlp":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.model.score.state_dict().items()}, str(path / MLP_HEAD))
        write_json(path / LLM_CONFIG, self.fmt.model_dump())

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> LLMReranker:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = Path(path)
        fmt = LLMFormat(**json.loads((path / LLM_CONFIG).read_text()))
        tok = AutoTokenizer.from_pretrained(path)
        level = hf_logging.get_verbosity()
        if fmt.score_head == "mlp":  # its weights are not the model class's own head: restored below
            hf_logging.set_verbosity_error()
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        finally:
            hf_logging.set_verbosity(level)
        if fmt.score_head == "mlp":
            from safetensors.torch import load_file

            mlp_head(model).load_state_dict(load_file(str(path / MLP_HEAD)))
        return cls(model.to(device), tok, fmt)


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder behind the reranker interface (raw logits as scores)."""

    kind = "cross_encoder"

    def __init__(self, model):
        self.model = model

    def compute_score(self, pairs: Pairs, batch_size: int = 32, show_progress: bool = False,
                      normalize: bool = False) -> list[float] | float:
        """Raw logits of (query, document) pairs (one float for one pair); `normalize`: sigmoid, in [0, 1]."""
        import torch

        if not pairs:
            return []
        items = [pairs] if _one_pair(pairs) else list(pairs)
        scores = self.model.predict(items, batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                    show_progress_bar=show_progress, convert_to_numpy=True)
        return finish_scores(pairs, [float(s) for s in scores], normalize)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", max_length: int | None = None) -> CrossEncoderReranker:
        from sentence_transformers import CrossEncoder

        model = CrossEncoder(str(path), device=device, local_files_only=True, max_length=max_length)
        return cls(model)


Reranker = LLMReranker | CrossEncoderReranker


def reranker_kind(path: Path) -> str:
    """The `kind` `load_reranker` would give the reranker at `path` (a resolved folder), without loading it."""
    return LLMReranker.kind if (path / LLM_CONFIG).is_file() else CrossEncoderReranker.kind


def load_reranker(name_or_path: str | Path, device: str = "auto", max_length: int | None = None) -> Reranker:
    """An LLM reranker folder (has ragtune_llm_reranker.json) or a cross-encoder."""
    from ragtune.hardware import pick_device
    from ragtune.models import resolve_model

    path = resolve_model(name_or_path)
    dev = pick_device(device)
    if (path / LLM_CONFIG).is_file():
        reranker = LLMReranker.load(path, dev)
        if max_length:
            reranker.fmt = reranker.fmt.model_copy(update={"max_length": max_length})
        return reranker
    return CrossEncoderReranker.load(path, dev, max_length)


def rank(reranker: Reranker, query: str, documents: Sequence[str], top_k: int | None = None,
         batch_size: int = 32) -> list[dict[str, Any]]:
    """Documents sorted by score, best first: [{"corpus_id": index, "score": s, "text": doc}]."""
    scores = reranker.compute_score([(query, d) for d in documents], batch_size=batch_size)
    order = sorted(range(len(documents)), key=lambda i: -scores[i])
    return [{"corpus_id": i, "score": scores[i], "text": documents[i]} for i in order[:top_k]]


def rerank_run(reranker: Reranker, run: Run, queries: Mapping[str, str], corpus: Mapping[str, str],
               top: int = 100, batch_size: int = 32, show_progress: bool = False) -> Run:
    """Re-score each query's `top` best documents; the rest stay below them in their first-stage order."""
    from tqdm.auto import tqdm

    pairs: list[tuple[str, str]] = []
    owners: list[tuple[str, str]] = []
    heads: dict[str, list[str]] = {}
    for qid, docs in run.items():
        if qid not in queries:
            continue
        ranked = [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))]
        heads[qid] = ranked[:top]
        for d in heads[qid]:
            pairs.append((queries[qid], corpus[d]))
            owners.append((qid, d))
    scores: list[float] = []
    bar = tqdm(total=len(pairs), desc="rerank", unit="pair", disable=not show_progress)
    chunk = batch_size * 16
    for start in range(0, len(pairs), chunk):
        scores += reranker.compute_score(pairs[start:start + chunk], batch_size=batch_size)
        bar.update(min(chunk, len(pairs) - start))
    bar.close()
    out: Run = {q: {} for q in heads}
    for (qid, d), s in zip(owners, scores, strict=True):
        out[qid][d] = s
    for qid, docs in run.items():
        if qid in heads:
            out[qid] = with_tail(out[qid], [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))][top:])
    return out


def with_tail(head: dict[str, float], tail: list[str]) -> dict[str, float]:
    """`head` plus the `tail` documents scored below every head document, in the tail's order."""
    floor = min(head.values(), default=0.0)
    return head | {d: floor - 1.0 - i for i, d in enumerate(tail)}


# ---------------------------------------------------------------- fusion with the first stage

FUSION_FILE = "ragtune_fusion.json"
"""Written beside a trained reranker: the fusion weight chosen on the dev slice (`rerank_fusion: dev`)."""


def read_dev_fusion(reranker: str | Path, key: str, instead: str) -> dict[str, float]:
    """The reranker folder's dev-chosen fusion: the `weight` of its ranks against the first stage's and the RRF
    `k`. A missing file is a config error naming the setting `key` and what to set `instead`."""
    path = Path(reranker) / FUSION_FILE
    if not path.is_file():
        raise ConfigError(f'key "{key}": {path} not found; `ragtune train reranker` writes it when it has a dev '
                          f"slice to choose the weight on ({instead})")
    fusion = json.loads(path.read_text(encoding="utf-8"))
    return {"weight": float(fusion["weight"]), "k": float(fusion.get("k", 60))}


def fuse_with_first_stage(first: Run, reranked: Run, weight: float, top: int = 100, k: int = 60) -> Run:
    """Weighted reciprocal rank fusion of the reranker's and the first stage's ranks over each query's `top`.

    weight 1 = the reranker's order, 0 = the first stage's; documents below `top` stay under the fused head in
    first-stage order. Ranks, not scores, are fused, so BM25 and cross-encoder scales never meet.

    >>> first = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    >>> ce = {"q": {"c": 5.0, "b": 4.0, "a": 0.0}}
    >>> list(fuse_with_first_stage(first, ce, 1.0, top=3)["q"]), list(fuse_with_first_stage(first, ce, 0.0)["q"])
    (['c', 'b', 'a'], ['a', 'b', 'c'])
    """
    from ragtune.retrieval.fusion import rrf

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"rerank fusion weight {weight}: must be in [0, 1] (1 = reranker only)")
    out: Run = {}
    for qid, docs in first.items():
        ranked = [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))]
        head, tail = ranked[:top], ranked[top:]
        rr = reranked.get(qid, {})
        fused = rrf([{qid: {d: rr.get(d, float("-inf")) for d in head}}, {qid: {d: docs[d] for d in head}}],
                    k=k, weights=[weight, 1.0 - weight]).get(qid, {})
        out[qid] = with_tail(fused, tail)
    return out
