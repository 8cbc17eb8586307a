"""BM25 indexing/query throughput and dense encoding throughput on SciFact.

    python benchmarks/retrieval_throughput.py [--data DIR] [--dense-docs 512]

Prints markdown tables: ragtune's batched path vs the naive one-at-a-time loop.
"""

from __future__ import annotations

import argparse
import time

from _common import hardware_line, print_table
from ragtune.data.beir import load_beir
from ragtune.hardware import set_threads
from ragtune.paths import shared_data
from ragtune.retrieval.bm25 import BM25Config, BM25Retriever


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_bm25(ds, n_queries: int) -> list[list]:
    docs = list(ds.corpus.values())
    r = BM25Retriever(BM25Config())
    _, t_index = timed(lambda: r.index(docs))
    base = list(ds.queries.values())
    texts = (base * (n_queries // len(base) + 1))[:n_queries]
    queries = {str(i): t for i, t in enumerate(texts)}
    _, t_batch = timed(lambda: r.search(queries, k=100))
    one = dict(list(queries.items())[:500])
    _, t_loop = timed(lambda: [r.search({q: t}, k=100) for q, t in one.items()])
    loop_qps = len(one) / t_loop
    return [
        ["BM25 index (tokenize + build)", f"{len(docs):,} docs", len(docs) / t_index, "docs/s", ""],
        ["BM25 query, batched", f"{n_queries:,} queries, k=100", n_queries / t_batch, "queries/s",
         f"{(n_queries / t_batch) / loop_qps:.1f}x"],
        ["BM25 query, one at a time", f"{len(one)} queries, k=100", loop_qps, "queries/s", "1.0x"],
    ]


def bench_dense(ds, n_docs: int, batch_size: int) -> list[list]:
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    r = DenseRetriever(DenseConfig(batch_size=batch_size, cache=False))
    texts = [d.content for d in list(ds.corpus.values())[:n_docs]]
    r.encode(texts[:16])  # warm-up
    _, t_loop = timed(lambda: [r.encode([t]) for t in texts])  # the same passages both ways
    _, t_batch = timed(lambda: r.encode(texts))
    loop = n_docs / t_loop
    return [
        [f"MiniLM encode, batch {batch_size} (length-sorted)", f"{n_docs} passages, max_seq 256", n_docs / t_batch,
         "passages/s", f"{(n_docs / t_batch) / loop:.1f}x"],
        ["MiniLM encode, one at a time", f"{n_docs} passages, max_seq 256", loop, "passages/s", "1.0x"],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(shared_data("beir", "scifact")))
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dense-docs", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-dense", action="store_true")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    ds = load_beir(args.data, splits=[])
    print(f"hardware: {hardware_line()}; threads={threads}\n")
    rows = bench_bm25(ds, args.queries)
    if not args.skip_dense:
        rows += bench_dense(ds, args.dense_docs, args.batch_size)
    print_table(["what", "size", "throughput", "unit", "vs one-at-a-time"], rows)


if __name__ == "__main__":
    main()
