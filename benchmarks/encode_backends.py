"""Dense encoding backends on this CPU: torch fp32 / torch bf16 / onnx fp32 / onnx int8, speed and SciFact NDCG@10.

    python benchmarks/encode_backends.py [--docs 0] [--backends torch-fp32,torch-bf16,onnx-fp32,onnx-int8]

Each backend encodes the same documents once (after a one-batch warm-up) and then the SciFact test queries;
NDCG@10 comes from ragtune's own flat index over those embeddings. The table gives docs/s and the ratio
against torch fp32 measured in the same run (ratios, not absolute rates, compare across machines).
--docs N keeps every document judged for a test query plus a seeded random sample of the rest, N in all:
faster, but the NDCG is then on that smaller corpus (higher than the full-corpus figure; compare deltas only).
torch bf16 is skipped where torch reports no native bf16 (its bf16 GEMM is then ~40x slower than fp32).
"""

from __future__ import annotations

import argparse
import os
import random
import time

from _common import hardware_line, print_table
from ragtune.data.beir import load_beir
from ragtune.evaluate.metrics import evaluate
from ragtune.hardware import cpu_has_amx, cpu_has_fast_bf16, set_threads
from ragtune.paths import shared_data
from ragtune.retrieval.dense import DenseConfig, DenseRetriever, resolve_backend

BACKENDS = {"torch-fp32": {"backend": "torch", "dtype": "float32"},
            "torch-bf16": {"backend": "torch", "dtype": "bfloat16"},
            "onnx-fp32": {"backend": "onnx", "onnx_quantize": "none"},
            "onnx-int8": {"backend": "onnx", "onnx_quantize": "int8"}}
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def cpu_lines() -> list[str]:
    """/proc/cpuinfo flags, and what this process's CPUID says through torch (the two differ under a CPUID shim)."""
    import torch

    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    cpuid = {name: getattr(torch.cpu, f"_is_{name}_supported", lambda: "?")()
             for name in ("avx2", "avx512", "vnni", "avx512_bf16", "amx_tile")}
    shim = os.environ.get("LD_PRELOAD", "")
    return [f"/proc/cpuinfo ISA flags: {' '.join(f for f in ISA if f in flags) or 'none found'}",
            f"CPUID as torch sees it: kernels {torch.backends.cpu.get_cpu_capability()}, "
            + ", ".join(f"{k} {v}" for k, v in cpuid.items())
            + f", oneDNN native bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
            + (f"; LD_PRELOAD={shim}" if shim else ""),
            f"ragtune: cpu_has_fast_bf16={cpu_has_fast_bf16()}, cpu_has_amx={cpu_has_amx()}, dense.backend=auto -> "
            f"{'/'.join(resolve_backend(DenseConfig(backend='auto'), 'cpu'))}"]


def subset(ds, n: int, split: str) -> list:
    if not n or n >= len(ds.corpus):
        return list(ds.corpus.values())
    judged = {d for docs in ds.qrels[split].values() for d in docs}
    rest = sorted(set(ds.corpus) - judged)
    keep = judged | set(random.Random(0).sample(rest, max(0, n - len(judged))))
    return [d for i, d in ds.corpus.items() if i in keep]


def run_backend(name: str, docs: list, queries: dict[str, str], qrels, args) -> dict:
    t0 = time.perf_counter()
    cfg = DenseConfig(max_seq_length=args.max_seq, batch_size=args.batch_size, threads=args.threads, cache=False,
                      **BACKENDS[name])
    r = DenseRetriever(cfg)  # the onnx export happens here on first use (cached afterwards)
    setup = time.perf_counter() - t0
    texts = [d.content for d in docs]
    r.encode(texts[: args.batch_size])  # warm-up
    cpu0, t0 = time.process_time(), time.perf_counter()
    emb = r.encode(texts, cfg.doc_prompt)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    r.doc_ids, r.embeddings = [d.id for d in docs], emb
    r._build_index()
    ndcg = evaluate(qrels, r.search(queries, k=100), ["ndcg@10"]).metrics["ndcg@10"]
    return {"name": name, "docs_s": len(texts) / wall, "cpu_s": len(texts) / cpu, "ndcg": ndcg, "setup": setup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(shared_data("beir", "scifact")))
    ap.add_argument("--split", default="test")
    ap.add_argument("--docs", type=int, default=0, help="0 = the whole corpus")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    names = args.backends.split(",")
    if names[0] != "torch-fp32" or not set(names) <= set(BACKENDS):
        ap.error(f"--backends: start with torch-fp32 (the reference), then any of {', '.join(BACKENDS)}")
    import torch

    if "torch-bf16" in names and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        names.remove("torch-bf16")
        print("torch-bf16 skipped: this CPU has no native bf16\n")
    threads = set_threads(args.threads)
    ds = load_beir(args.data, splits=[args.split])
    docs, qrels = subset(ds, args.docs, args.split), ds.qrels[args.split]
    queries = ds.split_queries(args.split)
    print(f"hardware: {hardware_line()}; threads={threads}")
    print("\n".join(cpu_lines()))
    print(f"SciFact {args.split}: {len(docs):,} docs{' (subset)' if len(docs) < len(ds.corpus) else ''}, "
          f"{len(queries)} queries, max_seq {args.max_seq}, batch {args.batch_size}\n")
    results = [run_backend(n, docs, queries, qrels, args) for n in names]
    ref = results[0]
    rows = [[r["name"], r["docs_s"], f"{r['docs_s'] / ref['docs_s']:.2f}x", f"{r['cpu_s'] / ref['cpu_s']:.2f}x",
             f"{r['ndcg']:.4f}", f"{r['ndcg'] - ref['ndcg']:+.4f}", r["setup"]] for r in results]
    print_table(["backend", "docs/s", "vs torch fp32", "CPU-time ratio", "NDCG@10", "vs fp32", "setup s"], rows)
    print(f"\nload avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
