"""ColBERT indexes on a BEIR split: the exact flat token index against the compressed PLAID-style one.

    python benchmarks/colbert_index.py runs/scifact/colbert [--data DIR] [--split test] [--work runs/colbert-index]
        [--centroids 2048 --train-tokens 65536] [--indexes flat,plaid-decompress]

The corpus is encoded once (token vectors cached by model and corpus) and every index is built from the same
vectors. For each index: bytes per passage in RAM and on disk, build time, queries/s (query encoding included)
and NDCG@10 / Recall@100; then the memory each would need for MS MARCO's 8.8M passages, from the tokens per
passage measured on the MS MARCO subset in the shared data (the arithmetic is printed).
"""

from __future__ import annotations

import argparse
import string
import time
from pathlib import Path

import numpy as np

from _common import hardware_line, print_table
from ragtune.data.beir import load_beir
from ragtune.evaluate.metrics import evaluate
from ragtune.hardware import set_threads
from ragtune.paths import shared_data
from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever
from ragtune.retrieval.colbert_plaid import PlaidSettings, default_centroids

MSMARCO_PASSAGES = 8_841_823


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def tokens_per_passage(model, folder: Path, limit: int = 5000) -> float:
    """Mean scored tokens per passage (marker and special tokens in, punctuation out, cut at document_length)."""
    ds = load_beir(folder, splits=[])
    texts = [d.content for d in list(ds.corpus.values())[:limit]]
    tok = model[0].tokenizer
    prompt = (model.prompts or {}).get("document", "")
    punct = set(string.punctuation)
    counts = [sum(t not in punct for t in tok.convert_ids_to_tokens(
        tok(prompt + t, truncation=True, max_length=model[0].document_length)["input_ids"])) for t in texts]
    return float(np.mean(counts))


def run_index(name: str, base: ColbertRetriever, cfg: ColbertConfig, queries: dict, qrels: dict, work: Path,
              reload: bool) -> dict:
    r = ColbertRetriever(cfg, model=base.model)
    r.doc_ids, r.offsets = base.doc_ids, base.offsets
    r.embeddings = base.embeddings
    t0 = time.perf_counter()
    r._build_index()
    build = time.perf_counter() - t0
    folder = work / name
    r.save(folder)
    if reload:  # serve from what is on disk: full vectors memory-mapped, compressed arrays in RAM
        r = ColbertRetriever.load(folder, model=base.model)
    t0 = time.perf_counter()
    run = r.search(queries, k=100)
    search = time.perf_counter() - t0
    metrics = evaluate(qrels, run, ["ndcg@10", "recall@100"]).metrics
    n_docs, n_tokens = len(r.doc_ids), int(r.offsets[-1])
    dim = base.embeddings.shape[1]
    if r.plaid is not None:
        ram = sum(r.plaid.nbytes().values()) + r.offsets.nbytes
        per_token_ram = r.plaid.codes.itemsize + r.plaid.residuals.shape[1]
        lists = int(r.plaid.ivf_docs.nbytes)
    else:  # faiss holds float32 copies for candidates, the token store float16 for exact MaxSim
        ram = n_tokens * dim * 4 + r.embeddings.nbytes + r.offsets.nbytes
        per_token_ram, lists = dim * 4 + r.embeddings.itemsize * dim, 0
    return {"name": name, "build_s": build, "qps": len(queries) / search, "ram": ram, "disk": folder_bytes(folder),
            "docs": n_docs, "tokens": n_tokens, "per_token_ram": per_token_ram, "lists": lists, **metrics,
            "centroids": 0 if r.plaid is None else int(r.plaid.centroids.nbytes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a `ragtune train colbert` output folder")
    ap.add_argument("--data", type=Path, default=shared_data("beir", "scifact"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--msmarco", type=Path, default=shared_data("beir", "msmarco-dl19-subset"))
    ap.add_argument("--work", type=Path, default=Path("runs/colbert-index"))
    ap.add_argument("--pq-m", type=int, default=32)
    ap.add_argument("--nprobe", type=int, default=4)
    ap.add_argument("--ndocs", type=int, default=512)
    ap.add_argument("--centroids", type=int, default=None, help="IVF centroids (default: PLAID's rule)")
    ap.add_argument("--train-tokens", type=int, default=262_144, help="token vectors k-means is trained on")
    ap.add_argument("--indexes", default="flat,plaid-decompress,plaid-full-mmap", help="which indexes, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    print(hardware_line())
    ds = load_beir(args.data, splits=[args.split])
    queries = dict(ds.split_queries(args.split))
    qrels = ds.qrels[args.split]
    base = ColbertRetriever(ColbertConfig(model=args.model, encode_dtype="auto"))
    t0 = time.perf_counter()
    base.doc_ids = [d.id for d in ds.corpus.values()]
    base.embeddings, base.offsets = base._encode_corpus(base.doc_ids, [d.content for d in ds.corpus.values()], True)
    print(f"corpus: {len(base.doc_ids):,} passages, {int(base.offsets[-1]):,} token vectors of "
          f"{base.embeddings.shape[1]} dims, encoded (or read from the cache) in {time.perf_counter() - t0:.0f} s "
          f"({base.encode_dtype})")
    plaid = PlaidSettings(pq_m=args.pq_m, nprobe=args.nprobe, ndocs=args.ndocs, centroids=args.centroids,
                          train_tokens=args.train_tokens)
    variants = [("flat", ColbertConfig(model=args.model, encode_dtype="auto"), False),
                ("plaid-decompress", ColbertConfig(model=args.model, encode_dtype="auto", index="plaid",
                                                    plaid=plaid), True),
                ("plaid-full-mmap", ColbertConfig(model=args.model, encode_dtype="auto", index="plaid",
                                                  plaid=plaid.model_copy(update={"rescore": "full"})), True)]
    wanted = args.indexes.split(",")
    variants = [v for v in variants if v[0] in wanted]
    results = []
    for name, cfg, reload in variants:
        res = run_index(name, base, cfg, queries, qrels, args.work, reload)
        results.append(res)
        print(f"{name}: done ({res['build_s']:.0f} s build, {res['qps']:.1f} q/s, NDCG@10 {res['ndcg@10']:.4f}, "
              f"{res['ram'] / res['docs']:,.0f} RAM bytes/passage)", flush=True)
    n = results[0]["docs"]
    print_table(["index", "RAM bytes/passage", "disk bytes/passage", "build s", "queries/s", "NDCG@10", "R@100"],
                [[r["name"], r["ram"] / n, r["disk"] / n, r["build_s"], r["qps"], f"{r['ndcg@10']:.4f}",
                  f"{r['recall@100']:.4f}"] for r in results])
    flat = next((r for r in results if r["name"] == "flat"), None)
    for r in results:
        if flat is not None and r is not flat:
            print(f"{r['name']}: NDCG@10 {r['ndcg@10'] - flat['ndcg@10']:+.4f} vs flat "
                  f"({'within' if abs(r['ndcg@10'] - flat['ndcg@10']) <= 0.01 else 'NOT within'} 0.01)")
    tpp = tokens_per_passage(base.model, args.msmarco)
    scifact_tpp = results[0]["tokens"] / n
    total = MSMARCO_PASSAGES * tpp
    dim = base.embeddings.shape[1]
    print(f"\nMS MARCO projection: {tpp:.1f} scored tokens per passage (measured on {args.msmarco.name}; SciFact "
          f"{scifact_tpp:.1f}) x {MSMARCO_PASSAGES:,} passages = {total / 1e6:,.0f}M token vectors of {dim} dims")
    for r in results:
        if r["name"] == "flat":
            ram = total * r["per_token_ram"]
            print(f"  flat: {total / 1e6:,.0f}M x ({dim} x 4 B faiss float32 + {dim} x 2 B float16 store) = "
                  f"{ram / 2**30:,.0f} GiB RAM")
            continue
        pairs_per_token = r["lists"] / 4 / r["tokens"]  # (centroid, passage) list entries per token, SciFact
        k = default_centroids(int(total))
        ram = total * (r["per_token_ram"] + 4 * pairs_per_token) + k * dim * 4 + 8 * MSMARCO_PASSAGES
        line = (f"  {r['name']}: {total / 1e6:,.0f}M x ({r['per_token_ram']} B code + 4 B x {pairs_per_token:.2f} list"
                f" entries) + {k:,} centroids x {dim} x 4 B + 8 B offsets x 8.8M = {ram / 2**30:,.1f} GiB RAM")
        if r["name"].endswith("mmap"):
            line += f"; + {total * dim * 2 / 2**30:,.0f} GiB float16 vectors on disk (memory-mapped)"
        print(line)


if __name__ == "__main__":
    main()
