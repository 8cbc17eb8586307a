"""Throughput of the BM25 and dense pseudo-query filters on SciFact.

    python benchmarks/filter_throughput.py [--queries 10000] [--skip-dense]

Pseudo queries are 8-16 word windows cut from randomly chosen documents (seeded), each
attributed to its document, so the workload has the shape of generated queries. The dense
filter is run twice: the first run may encode the corpus, the second shows that it
reuses the cached corpus embeddings and only encodes the queries.
"""

from __future__ import annotations

import argparse
import random
import time

from _common import hardware_line, print_table
from ragtune.data.beir import load_corpus
from ragtune.filters.base import Candidate
from ragtune.filters.bm25 import BM25Filter, BM25FilterConfig
from ragtune.hardware import set_threads
from ragtune.paths import shared_data


def pseudo_queries(corpus, n: int, seed: int = 0) -> list[Candidate]:
    rng = random.Random(seed)
    ids = list(corpus)
    out = []
    for i in range(n):
        d = rng.choice(ids)
        words = corpus[d].text.split()
        w = rng.randint(8, 16)
        s = rng.randint(0, max(0, len(words) - w))
        out.append(Candidate(f"p{i}", d, " ".join(words[s:s + w]) or corpus[d].title))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(shared_data("beir", "scifact")))
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-dense", action="store_true")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    corpus = load_corpus(args.data)
    cands = pseudo_queries(corpus, args.queries)
    print(f"hardware: {hardware_line()}; threads={threads}\n")
    rows = []
    start = time.perf_counter()
    verdicts = BM25Filter(BM25FilterConfig(k=70), corpus)(cands)
    dt = time.perf_counter() - start
    kept = sum(v.kept for v in verdicts)
    rows.append([f"BM25 filter k=70, full corpus ({len(corpus):,} docs)", f"{len(cands):,}", f"{dt:.1f}",
                 len(cands) / dt, f"{kept / len(cands):.1%}"])
    if not args.skip_dense:
        from ragtune.filters.dense import DenseFilter, DenseFilterConfig

        for label in ("first run", "second run (corpus cached)"):
            start = time.perf_counter()
            f = DenseFilter(DenseFilterConfig(k=1), corpus, show_progress=False)
            setup = time.perf_counter() - start
            verdicts = f(cands)
            dt = time.perf_counter() - start
            kept = sum(v.kept for v in verdicts)
            rows.append([f"dense filter k=1 (MiniLM), {label}; corpus load/encode {setup:.1f}s", f"{len(cands):,}",
                         f"{dt:.1f}", len(cands) / dt, f"{kept / len(cands):.1%}"])
    print_table(["filter", "queries", "seconds", "queries/s", "kept"], rows)


if __name__ == "__main__":
    main()
