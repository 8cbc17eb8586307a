"""Question -> hybrid retrieval -> optional rerank -> answerer -> answer with citations, or a refusal.

    cfg = load_config(AskConfig, None, ["kb=kb", "answerer.adapter=runs/answerer-squad"])
    with RagPipeline.open(cfg) as rag:
        result = rag.ask("Who founded the Yuan dynasty?")

`result` is JSON-ready: {"answer", "refused", "refusal_reason", "draft_answer",
"citations": [{"chunk_id", "source", "score", "index"}], "contexts": [{"index", "chunk_id", "source", "file",
"start", "end", "text", "score", "cited", "excerpt"}], "timings_s"}.

Citations are the contexts the answer was taken from: those containing the (normalised) answer, else the one
sharing the most answer tokens; a refusal cites nothing. A refused `answer` is the model's own refusal
(`refusal_reason` "text"), or the canonical refusal when only the likelihood margin refused ("likelihood");
`draft_answer` is its best non-refusal answer.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.config import ConfigModel
from ragtune.models import DEFAULT_GENERATOR
from ragtune.rag.kb import SearchConfig
from ragtune.rag.store import StoreConfig


class RetrieveConfig(SearchConfig):
    top_k: int = Field(3, ge=1, le=20)
    """Passages given to the answerer (numbered [1]..[top_k] in the prompt)."""
    rerank: str | None = None
    """A cross-encoder or LLM reranker (folder or hub name; `ragtune train reranker` output); None = no rerank."""
    rerank_top: int = Field(20, ge=1)
    """Fused candidates the reranker re-scores before the best top_k are kept."""


class AnswererConfig(ConfigModel):
    model: str = DEFAULT_GENERATOR
    """Base causal LM (offline default), a merged model from `ragtune export`, or any local folder."""
    adapter: Path | None = None
    """LoRA adapter from `ragtune train generator` (configs/answerer-*.yaml)."""
    template: str = "auto"
    """The chat template used in training (`auto` = the model's own)."""
    max_new_tokens: int = Field(48, ge=1)
    batch_size: int = Field(8, ge=1)
    max_prompt_tokens: int = Field(1024, ge=64)
    refusal_margin: float = 0.0
    """Besides refusing in its own words, refuse when log P(refusal phrasings) - max(log P(answer),
    log refusal_floor) > this (see ragtune.rag.refusal); `ragtune eval rag` calibrates it on dev questions
    (`refusal.target`); raise it for fewer refusals, lower it for more."""
    refusals: dict[Literal["en", "zh"], list[str]] | None = None
    """Phrasings scored as the one refusal class per language, canonical first (the one `rag ask` answers with
    when only the margin refused); default: `ragtune.generate.prompts.REFUSALS`."""
    refusal_floor: float = Field(0.05, ge=0.0, lt=1.0)
    """The refusal probability must also exceed this (guards against long, improbable greedy answers)."""
    refusal_text: Literal["final", "margin"] = "final"
    """final: a greedy refusal always stands; margin: a greedy refusal in a trained phrasing stands only while the
    likelihood margin also exceeds `refusal_margin`, so calibration can undo a trained model's over-refusal (the
    answer is then the best non-refusal decode)."""
    refusal_probe: Path | None = None
    """A linear probe on the answerer's hidden state (`ragtune train refusal-probe`, fitted on this model and
    adapter): its score, alone or summed with the margin and/or a verifier's, is what `refusal_margin` thresholds
    instead of the margin."""
    refusal_verifier: Path | None = None
    """The answerability verifier the probe sums, where it does (`ragtune train refusal-verifier`; the probe
    refuses any other)."""
    language: Literal["auto", "en", "zh"] = "auto"
    """Prompt and refusal language; auto = from the question."""
    device: str = "auto"
    threads: int = Field(0, ge=0)
    """torch CPU threads; 0 = all cores."""


def load_answerer(a: AnswererConfig, device: str, **override: Any):
    """The `ragtune.rag.answer.Answerer` that `a` describes, on `device`; `override`: `Answerer.load` arguments
    that replace the config's (`adapter=None`, `refusal_probe=None`)."""
    from ragtune.rag.answer import Answerer

    kwargs: dict[str, Any] = dict(
        adapter=a.adapter, template=a.template, device=device, max_new_tokens=a.max_new_tokens,
        batch_size=a.batch_size, max_prompt_tokens=a.max_prompt_tokens, refusal_margin=a.refusal_margin,
        refusal_floor=a.refusal_floor, refusal_text=a.refusal_text, refusals=a.refusals,
        refusal_probe=a.refusal_probe, refusal_verifier=a.refusal_verifier)
    return Answerer.load(a.model, **{**kwargs, **override})


class AskConfig(ConfigModel):
    kb: Path
    """Knowledge base folder written by `ragtune rag ingest`."""
    retrieve: RetrieveConfig = Field(default_factory=RetrieveConfig)
    answerer: AnswererConfig = Field(default_factory=AnswererConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    """The Qdrant server of a KB built with store.url (never taken from the KB folder itself)."""
    excerpt_chars: int = Field(300, ge=0)
    """Document text shown around each passage (the web page highlights the passage inside it)."""


def cite(answer: str, contexts: list[str], language: str) -> list[int]:
    """Indices of the contexts the answer comes from (see the module docstring).

    >>> cite("Rollo", ["Rollo was a Viking.", "Paris is in France."], "en")
    [0]
    """
    from ragtune.evaluate.answer_metrics import normalize_answer, tokens

    norm = normalize_answer(answer, language)
    if not norm:
        return []
    found = [i for i, c in enumerate(contexts) if norm in normalize_answer(c, language)]
    if found:
        return found
    want = set(tokens(answer, language))
    overlap = [len(want & set(tokens(c, language))) for c in contexts]
    best = max(range(len(contexts)), key=lambda i: overlap[i], default=None)
    return [best] if best is not None and overlap[best] > 0 else []


class RagPipeline(AbstractContextManager):
    def __init__(self, cfg: AskConfig, kb, answerer, reranker=None):
        self.cfg, self.kb, self.answerer, self.reranker = cfg, kb, answerer, reranker

    @classmethod
    def open(cls, cfg: AskConfig) -> RagPipeline:
        from ragtune.hardware import pick_device, set_threads
        from ragtune.rag.kb import KnowledgeBase

        set_threads(cfg.answerer.threads)
        device = pick_device(cfg.answerer.device)  # once: the embedder, the answerer and the reranker share it
        kb = KnowledgeBase.open(cfg.kb, device=device, threads=cfg.answerer.threads, store=cfg.store)
        try:
            answerer = load_answerer(cfg.answerer, device)
            reranker = None
            if cfg.retrieve.rerank:
                from ragtune.retrieval.rerank import load_reranker

                reranker = load_reranker(cfg.retrieve.rerank, device=device)
        except BaseException:
            kb.close()
            raise
        return cls(cfg, kb, answerer, reranker)

    def retrieve(self, question: str, top_k: int | None = None) -> list:
        from ragtune.retrieval.rerank import rank

        r = self.cfg.retrieve
        top_k = top_k or r.top_k
        hits = self.kb.search(question, r.k_dense, r.k_bm25, r.rrf_k, top=r.rerank_top if self.reranker else top_k)
        if self.reranker is not None and hits:
            order = rank(self.reranker, question, [h.chunk["text"] for h in hits], top_k=top_k)
            hits = [hits[o["corpus_id"]] for o in order]
            for h, o in zip(hits, order, strict=True):
                h.score = float(o["score"])
        return hits[:top_k]

    def ask(self, question: str, top_k: int | None = None) -> dict[str, Any]:
        from ragtune.data.language import detect_language
        from ragtune.rag.question import clean_question

        question = clean_question(question)
        t0 = time.perf_counter()
        hits = self.retrieve(question, top_k)
        t1 = time.perf_counter()
        language = self.cfg.answerer.language if self.cfg.answerer.language != "auto" else detect_language(question)
        texts = [h.chunk["text"] for h in hits]
        prompt = self.answerer.prompt(question, texts, language)
        [g] = self.answerer.generate([prompt])
        t2 = time.perf_counter()
        used = hits[: prompt.n_contexts]
        cited = [] if g.refused else cite(g.text, texts[: prompt.n_contexts], language)
        contexts = []
        for i, h in enumerate(used):
            c = h.chunk
            contexts.append({"index": i + 1, "chunk_id": h.chunk_id, "source": c["source"], "file": c["file"],
                             "start": c["start"], "end": c["end"], "text": c["text"], "score": h.score,
                             "ranks": h.ranks, "cited": i in cited,
                             "excerpt": self.kb.excerpt(h.chunk_id, self.cfg.excerpt_chars)})
        if not g.refused:
            answer = g.text
        elif g.reason == "text" or g.greedy != g.text:  # the model's own refusal words
            answer = g.greedy
        else:  # refused on the likelihood margin although the greedy output answered: the canonical refusal
            answer = self.answerer.refusals[language][0]
        return {"question": question, "answer": answer, "refused": g.refused, "refusal_reason": g.reason,
                "draft_answer": g.text,
                "refusal_margin": round(g.margin, 4), "refusal_signal": round(g.signal, 4), "language": language,
                "citations": [{"index": i + 1, "chunk_id": used[i].chunk_id, "source": used[i].chunk["source"],
                               "score": used[i].score} for i in cited],
                "contexts": contexts, "timings_s": {"retrieve": round(t1 - t0, 3), "answer": round(t2 - t1, 3)}}

    def close(self) -> None:
        self.kb.close()

    def __exit__(self, *exc) -> None:
        self.close()


def ask(cfg: AskConfig, question: str) -> dict[str, Any]:
    """Open the KB and the answerer, answer one question, close."""
    with RagPipeline.open(cfg) as rag:
        return rag.ask(question)
