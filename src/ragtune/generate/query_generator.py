"""QueryGenerator: a causal LM (plus merged adapter) that writes queries for rendered prompts, with retries.

    gen = QueryGenerator.load("HuggingFaceTB/SmolLM2-135M-Instruct", adapter, sampling=cfg.sampling)
    records = gen.generate([gen.prompt(doc_id, text, instruction, None, [], 320)], k=3)

`raw` is the only engine-specific part (one batched `model.generate`); `ct2_engine.Ct2QueryGenerator` replaces
it with CTranslate2 and keeps prompts, retries and checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.generate.checks import clean_query, normalize, rejection
from ragtune.generate.config import SamplingConfig
from ragtune.generate.prompts import query_messages, truncate_tokens, use_template


@dataclass
class Prompt:
    doc_id: str
    text: str
    """The rendered chat prompt, ending where the answer starts."""
    doc_norm: str
    """normalize(document), for the copy check."""
    n_tokens: int


class QueryGenerator:
    """A causal LM (plus merged adapter) that writes queries for rendered prompts, with retries."""

    def __init__(self, model, tokenizer, stop_ids: list[int], sampling: SamplingConfig):
        self.model, self.tokenizer, self.stop_ids, self.sampling = model, tokenizer, stop_ids, sampling
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_name_or_path: str, adapter: Path | None = None, template: str = "auto",
             sampling: SamplingConfig | None = None, dtype: str = "float32", device: str = "cpu",
             trust_remote_code: bool = False) -> QueryGenerator:
        """Base + merged adapter on `device` in `dtype`, both resolved by the caller (`hardware.auto_dtype`)."""
        from ragtune.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_name_or_path, adapter, padding_side="left", dtype=dtype,
                                          device=device, trust_remote_code=trust_remote_code)
        stop_ids = use_template(tokenizer, template)
        model.eval()
        return cls(model, tokenizer, stop_ids, sampling or SamplingConfig())

    # ---------------------------------------------------------------- prompts

    def prompt(self, doc_id: str, document: str, instruction: str, system: str | None,
               shots: list[tuple[str, str]], max_doc_tokens: int) -> Prompt:
        doc = truncate_tokens(self.tokenizer, document, max_doc_tokens)
        text = self.tokenizer.apply_chat_template(query_messages(doc, instruction, system, shots), tokenize=False,
                                                  add_generation_prompt=True)
        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return Prompt(doc_id, text, normalize(document), n)

    # ---------------------------------------------------------------- decoding

    def raw(self, prompts: list[str], n: int, retry: bool = False, seed: int | None = None) -> list[list[str]]:
        """`n` decoded continuations per prompt (one batched generate call)."""
        import torch

        s = self.sampling
        sample = s.do_sample or retry  # a retry of greedy/beam output must sample, or it repeats itself
        beams = 1 if retry else s.num_beams
        kwargs: dict[str, Any] = {"do_sample": sample, "num_beams": beams, "num_return_sequences": n,
                                  "max_new_tokens": s.max_new_tokens, "min_new_tokens": s.min_new_tokens or None,
                                  "repetition_penalty": s.repetition_penalty, "use_cache": True,
                                  "eos_token_id": self.stop_ids, "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            kwargs |= {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k}
        if seed is not None:
            torch.manual_seed(seed)
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    def generate(self, batch: list[Prompt], k: int, max_retries: int = 3, copy_min_words: int = 8,
                 seed: int = 0, examples: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """k queries per prompt: `{doc_id, queries, failed: [{reason, text}], attempts}` records.

        Empty, duplicate, document-copying and example-copying outputs (`examples`: normalized shot queries) are
        regenerated (up to `max_retries` more calls); slots still missing then are recorded as failed with the
        last rejection.
        """
        kept: dict[str, list[str]] = {p.doc_id: [] for p in batch}
        seen: dict[str, set[str]] = {p.doc_id: set() for p in batch}
        last: dict[str, tuple[str, str]] = {}
        attempts: dict[str, int] = {p.doc_id: 0 for p in batch}
        pending = list(batch)
        for attempt in range(max_retries + 1):
            if not pending:
                break
            need = max(k - len(kept[p.doc_id]) for p in pending)
            outs = self.raw([p.text for p in pending], need, retry=attempt > 0,
                            seed=_seed(seed, pending[0].doc_id, attempt))
            for p, texts in zip(pending, outs, strict=True):
                attempts[p.doc_id] += 1
                for raw in texts:
                    if len(kept[p.doc_id]) == k:
                        break
                    q = clean_query(raw)
                    why = rejection(q, p.doc_norm, seen[p.doc_id], copy_min_words, examples)
                    if why is None:
                        kept[p.doc_id].append(q)
                        seen[p.doc_id].add(normalize(q))
                    else:
                        last[p.doc_id] = (why, q)
            pending = [p for p in pending if len(kept[p.doc_id]) < k]
        records = []
        for p in batch:
            missing = k - len(kept[p.doc_id])
            reason, text = last.get(p.doc_id, ("empty", ""))
            records.append({"doc_id": p.doc_id, "queries": kept[p.doc_id],
                            "failed": [{"reason": reason, "text": text}] * missing, "attempts": attempts[p.doc_id]})
        return records


def _seed(seed: int, doc_id: str, attempt: int) -> int:
    """A sampling seed that depends on the batch content, not on where a resumed run happened to restart."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}:{attempt}".encode()).digest()[:4], "little")
