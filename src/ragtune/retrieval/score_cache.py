"""Reranker scores of (query, document) pairs cached on disk: a second grading of pairs already graded reads them.

The loop's teacher stage regrades every earlier round's kept pseudo queries in each round, and a retriever-seed
rerun regrades them all; with the cache only the new pairs reach the reranker. One file per reranker and setting,
`<cache>/pair-scores/<key>.jsonl`, a `[pair hash, score]` row per pair, appended a chunk at a time: a killed grading
resumes from its last whole chunk (a torn last line is skipped). The key covers the reranker's files (weights,
configs, tokenizer: `models.fingerprint`) and every setting that changes a score; a pair is known by its texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from ragtune.paths import mark_used
from ragtune.retrieval.encode_cache import one_writer

log = logging.getLogger("ragtune.rerank")

Pair = tuple[str, str]


def scores_key(model_fp: str, settings: str) -> str:
    return hashlib.sha256(f"{model_fp}|{settings}".encode()).hexdigest()[:24]


def pair_hash(pair: Pair) -> str:
    return hashlib.sha256(f"{pair[0]}\x00{pair[1]}".encode()).hexdigest()[:32]


def read_scores(path: Path) -> dict[str, float]:
    """pair hash -> score from a cache file; rows a killed write left torn are skipped."""
    known: dict[str, float] = {}
    if not path.is_file():
        return known
    mark_used(path)
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                h, s = json.loads(line)
                known[str(h)] = float(s)
            except (ValueError, TypeError):
                log.warning("%s: skipping a torn row (a grading was killed mid-write)", path)
    return known


def cached_scores(path: Path, pairs: Sequence[Pair], score: Callable[[list[Pair]], list[float]],
                  chunk: int = 2048, show_progress: bool = False) -> tuple[list[float], int]:
    """Each pair's score, from `path` where known, else from `score` (called on chunks of the unknown pairs in their
    order, each chunk appended to `path` as it finishes); and how many pairs were scored anew."""
    from tqdm.auto import tqdm

    path.parent.mkdir(parents=True, exist_ok=True)
    hashes = [pair_hash(p) for p in pairs]
    with one_writer(path):
        known = read_scores(path)
        todo = list(dict.fromkeys(h for h in hashes if h not in known))
        if todo:
            first = {h: p for h, p in zip(hashes, pairs, strict=True) if h not in known}
            log.info("%s: %d of %d pairs cached, scoring %d", path.name, sum(h in known for h in hashes),
                     len(pairs), len(todo))
            with path.open("a", encoding="utf-8") as f, tqdm(total=len(todo), unit="pair", desc="reranker",
                                                             disable=not show_progress) as bar:
                if f.tell() and _last_byte(path) != b"\n":
                    f.write("\n")  # after a torn row: the next row starts on a line of its own
                for start in range(0, len(todo), chunk):
                    part = todo[start:start + chunk]
                    got = [float(s) for s in score([first[h] for h in part])]
                    f.write("".join(json.dumps([h, s]) + "\n" for h, s in zip(part, got, strict=True)))
                    f.flush()
                    known.update(zip(part, got, strict=True))
                    bar.update(len(part))
    return [known[h] for h in hashes], len(todo)


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, 2)
        return f.read(1)
