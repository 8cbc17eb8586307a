"""BM25 on bm25s: English stemming and stopwords, jieba for Chinese, mmap save/load."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ragtune.atomic import write_json
from ragtune.config import ConfigModel
from ragtune.data.records import Doc
from ragtune.retrieval.base import DocIndex, Run


class BM25Config(ConfigModel):
    k1: float = Field(1.2, ge=0)
    b: float = Field(0.75, ge=0, le=1)
    delta: float = Field(0.5, ge=0)
    """Only for the bm25l and bm25+ variants."""
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    language: Literal["en", "zh", "none"] = "en"
    """en: lowercase, English stopwords, Snowball stemmer; zh: jieba words; none: lowercase words."""
    stem: bool = True
    stopwords: bool = True
    threads: int = 0
    """Query threads; 0 = all cores."""
    processes: int = Field(1, ge=1)
    """Tokenize the corpus in this many worker processes (the same tokens, so the same index); tokenizing is
    about two thirds of an index build, so this pays from roughly 100k documents on."""


_ZH_SKIP = re.compile(r"^[\W_]+$", re.UNICODE)


class NoTermsError(ValueError):
    """Nothing to index: every document is empty or stopwords only."""


class Tokenizer:
    def __init__(self, cfg: BM25Config):
        self.cfg = cfg
        self._stemmer = None
        if cfg.language == "en" and cfg.stem:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("english")

    def __call__(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        if self.cfg.language == "zh":
            import jieba

            jieba.setLogLevel(60)
            return [[t.lower() for t in jieba.lcut_for_search(s) if t.strip() and not _ZH_SKIP.match(t)]
                    for s in texts]
        stop = "en" if (self.cfg.language == "en" and self.cfg.stopwords) else None
        return bm25s.tokenize(texts, stopwords=stop, stemmer=self._stemmer, return_ids=False,
                              show_progress=False)


class BM25Retriever(DocIndex):
    """`BM25Retriever(BM25Config()).index(docs)`, then `.search({qid: text}, k)`."""

    name, label = "bm25", "BM25"

    def __init__(self, cfg: BM25Config | None = None):
        self.cfg = cfg or BM25Config()
        self.tokenize = Tokenizer(self.cfg)
        self.doc_ids: list[str] = []
        self._bm25 = None

    def index(self, docs: Iterable[Doc], chunk: int = 20_000, show_progress: bool = False) -> None:
        """Tokenize in chunks (so raw texts never all sit in memory), then build the index."""
        import bm25s

        tokens: list[list[str]] = []
        self.doc_ids = []

        def texts():
            batch: list[Doc] = []
            for doc in docs:
                batch.append(doc)
                if len(batch) >= chunk:
                    yield self._take(batch)
                    batch = []
            if batch:
                yield self._take(batch)

        if self.cfg.processes > 1:
            from ragtune.retrieval.workers import WorkerPool

            with WorkerPool(partial(bm25_worker, self.cfg.model_dump()), ["cpu"] * self.cfg.processes, 1) as pool:
                for part in pool.imap(texts()):
                    tokens += part
        else:
            for part in texts():
                tokens += self.tokenize(part)
        if not any(tokens):  # bm25s would fail with "max() arg is an empty sequence"
            raise NoTermsError(f"no indexable words in {len(tokens)} document(s): all are empty or stopwords only "
                               f"(language {self.cfg.language})")
        self._bm25 = bm25s.BM25(k1=self.cfg.k1, b=self.cfg.b, delta=self.cfg.delta, method=self.cfg.method)
        self._bm25.index(tokens, show_progress=show_progress)

    def _take(self, batch: list[Doc]) -> list[str]:
        self.doc_ids += [d.id for d in batch]
        return [d.content for d in batch]

    def search(self, queries: Mapping[str, str], k: int = 100, show_progress: bool = False) -> Run:
        qids, k = self._plan(self._bm25 is not None, queries, k)
        if not qids:
            return {}
        qtok = self.tokenize([queries[q] for q in qids])
        idx, scores = self._bm25.retrieve(qtok, k=k, show_progress=show_progress, n_threads=self.cfg.threads)
        run: Run = {}
        ids = np.asarray(self.doc_ids, dtype=object)
        for qid, row_idx, row_sc in zip(qids, idx, scores, strict=True):
            keep = row_sc > 0  # zero score = no query term matched; not a retrieved document
            run[qid] = dict(zip(ids[row_idx[keep]].tolist(), row_sc[keep].astype(float).tolist(), strict=True))
        return run

    def score_docs(self, query: str, doc_ids: list[str]) -> list[float]:
        """BM25 scores of `query` for specific documents (for rank checks)."""
        pos = {d: i for i, d in enumerate(self.doc_ids)}
        scores = self._bm25.get_scores(self.tokenize([query])[0])
        return [float(scores[pos[d]]) for d in doc_ids]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self._bm25.save(str(path), show_progress=False)
        write_json(path / "doc_ids.json", self.doc_ids)
        write_json(path / "ragtune_bm25.json", self.cfg.model_dump())

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True) -> BM25Retriever:
        import bm25s

        path = Path(path)
        cfg = BM25Config(**json.loads((path / "ragtune_bm25.json").read_text()))
        self = cls(cfg)
        self._bm25 = bm25s.BM25.load(str(path), mmap=mmap, show_progress=False)
        self.doc_ids = json.loads((path / "doc_ids.json").read_text())
        return self


def bm25_worker(cfg: dict, device: str, threads: int) -> Tokenizer:
    """A tokenizing worker process (retrieval/workers.py)."""
    return Tokenizer(BM25Config(**cfg))
