"""ColBERT flat-index search: candidate generation with one faiss call per query (the naive way) against the
query tokens of many queries searched together (`ColbertRetriever.candidates_many`), same index, same queries.

    python benchmarks/colbert_search.py runs/scifact/colbert [--data DIR] [--split test] [--repeat 3]

Query encoding is done once, outside the timings; both ways re-score the same candidates with exact MaxSim, and
the script checks that they return the same run. Prints the CPU line and the ratio measured in this run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import hardware_line, print_table
from ragtune.data.beir import load_beir
from ragtune.hardware import set_threads
from ragtune.paths import shared_data
from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever, maxsim_many


def per_query_candidates(r: ColbertRetriever, q: np.ndarray) -> list[int]:
    """The code `candidates` had before the batched search: one faiss call per query."""
    kk = min(r.cfg.candidate_tokens, len(r.embeddings))
    _, idx = r._index.search(np.ascontiguousarray(q, dtype=np.float32), kk)
    uniq, counts = np.unique(r.token_doc[idx[idx >= 0]], return_counts=True)
    return uniq[np.argsort(-counts, kind="stable")][: r.cfg.max_candidates].tolist()


def rank(r: ColbertRetriever, embs: list[np.ndarray], cands: list[list[int]], k: int = 100) -> list[list]:
    out = []
    for q, cand in zip(embs, cands, strict=True):
        scores = maxsim_many(q, r.embeddings, r.offsets, cand)
        top = np.argsort(-scores, kind="stable")[:k]
        out.append([(cand[i], round(float(scores[i]), 5)) for i in top])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a `ragtune train colbert` output folder")
    ap.add_argument("--data", type=Path, default=shared_data("beir", "scifact"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings per way")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    print(hardware_line())
    ds = load_beir(args.data, splits=[args.split])
    r = ColbertRetriever(ColbertConfig(model=args.model, encode_dtype="auto"))
    r.index(ds.corpus.values(), show_progress=True)
    queries = dict(ds.split_queries(args.split))
    embs = r.encode_queries(list(queries.values()))
    ways = {"one faiss call per query": lambda: [per_query_candidates(r, q) for q in embs],
            "query tokens searched together": lambda: r.candidates_many(embs)}
    rows, runs, best = [], {}, {}
    for name, fn in ways.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            cands = fn()
            runs[name] = rank(r, embs, cands)
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    ref = next(iter(best))
    for name, seconds in best.items():
        rows.append([name, f"{seconds:.2f}", f"{len(embs) / seconds:.1f}", f"{best[ref] / seconds:.2f}x",
                     "yes" if runs[name] == runs[ref] else "NO"])
    print(f"{len(embs)} queries, {len(r.doc_ids):,} passages, {int(r.offsets[-1]):,} token vectors; candidates + "
          f"exact MaxSim, query encoding excluded; best of {args.repeat}")
    print_table(["candidate search", "seconds", "queries/s", f"vs {ref}", "same run"], rows)


if __name__ == "__main__":
    main()
