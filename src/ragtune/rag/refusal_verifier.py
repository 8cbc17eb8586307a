"""An answerability verifier: a cross-encoder that reads (question, passage) and says whether the passage answers it.

    ragtune train refusal-verifier data=runs/qa/squad/squad_train.meta.jsonl out=runs/verifier   # _train.py
    ragtune train refusal-probe ... verifier=runs/verifier out=runs/probe        # combine picks it if dev says so
    ragtune eval rag ... answerer.refusal_probe=runs/probe answerer.refusal_verifier=runs/verifier

SQuAD 2.0 systems often decide "is the answer in this passage?" with a separate classifier. ragtune's is a
reranker (`ragtune train reranker`, pointwise BCE) trained on the converter's meta records: label 1 where the
record's context answers its question, 0 for native, hard and mismatched unanswerables alike. Its refusal score for
a prompt is minus the best passage's logit (the answer needs to be in one passage only), higher = refuse, like the
likelihood margin. It is one of the signals a refusal probe sums (`ragtune.rag.refusal_probe`); the probe records
the verifier's weights' SHA-256 and refuses another one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path


def verifier_folder(path: str | Path) -> Path:
    """The cross-encoder inside a `train refusal-verifier` folder (its `model/`), or `path` itself."""
    path = Path(path)
    return path / "model" if (path / "model").is_dir() else path


def verifier_fingerprint(path: str | Path, key: str = "answerer.refusal_verifier") -> str:
    """SHA-256 over the cross-encoder's weight files: what a probe's standardisation of its scores depends on
    (`key`: the config key that named `path`, for the error)."""
    from ragtune.config import ConfigError

    folder = verifier_folder(path)
    files = sorted(f for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))
    if not files:
        raise ConfigError(f'key "{key}": {path} holds no model weights (written by '
                          "`ragtune train refusal-verifier` or `ragtune train reranker`)")
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


class RefusalVerifier:
    def __init__(self, reranker, batch_size: int = 32):
        self.reranker, self.batch_size = reranker, batch_size

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> RefusalVerifier:
        from ragtune.retrieval.rerank import load_reranker

        return cls(load_reranker(verifier_folder(path), device))

    def scores(self, questions: Sequence[str], contexts: Sequence[Sequence[str]]) -> list[float]:
        """Per question, minus the logit of its best passage: higher = more likely that no passage answers it."""
        pairs = [(q, c) for q, cs in zip(questions, contexts, strict=True) for c in (cs or [""])]
        flat = self.reranker.compute_score(pairs, batch_size=self.batch_size) if pairs else []
        out, at = [], 0
        for cs in contexts:
            n = len(cs) or 1
            out.append(-max(float(s) for s in flat[at:at + n]))
            at += n
        return out
