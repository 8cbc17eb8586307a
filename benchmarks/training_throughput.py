"""Training (samples/s) and encoding (passages/s) throughput of ragtune's retriever trainers, as a markdown table.

    python benchmarks/training_throughput.py                       # all-MiniLM-L6-v2, SciFact passages, CPU
    python benchmarks/training_throughput.py --steps 5 --seq 128 --batch 16
    python benchmarks/training_throughput.py --dtypes float32,bfloat16   # bf16 autocast rows too (AMX CPUs, GPUs)

Each trainer runs its real training path (sentence-transformers trainer + loss) on SciFact passages, once
for 1 step and once for `--steps` steps; the rate is the extra examples over the extra time, so model
loading, the first (warm-up) step and saving are not counted. A training example is (query, positive, hard
negative) for the bi-encoder and ColBERT, and a group of 4 (query, passage) pairs for the cross-encoder.
Encoding: bi-encoder passages/s (after one warm-up batch) and ColBERT documents/s. On a GPU it adds MFU:
model FLOPs (6 x params x tokens for training, 2 x for encoding) over the dense bf16 peak `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware_line, print_table  # noqa: E402


def passages(n: int) -> list[str]:
    from ragtune.paths import shared_data

    corpus = shared_data("beir", "scifact", "corpus.jsonl")
    if corpus.is_file():
        out = []
        with corpus.open(encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                out.append(f"{d.get('title', '')} {d['text']}")
                if len(out) >= n:
                    break
        return out
    return [("cells express a protein that binds the receptor and regulates growth " * 20)] * n


def write_records(folder: Path, texts: list[str], n: int) -> tuple[Path, Path]:
    emb, grp = folder / "emb.jsonl", folder / "grp.jsonl"
    with emb.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"query": f"what does passage {i} say about " + texts[i][:40],
                                "pos": [texts[i]], "neg": [texts[(i + 7) % len(texts)]]}) + "\n")
    with grp.open("w") as f:
        for i in range(n):
            hits = [{"content": texts[i], "label": 1.0}] + [{"content": texts[(i + k) % len(texts)], "label": 0.0}
                                                             for k in (3, 5, 7)]
            f.write(json.dumps({"query": "passage " + texts[i][:40], "hits": hits}) + "\n")
    return emb, grp


def train_seconds(kind: str, data: Path, out: Path, args, steps: int, dtype: str) -> float:
    """Wall seconds of trainer.train() for `steps` optimizer steps."""
    from ragtune.config import load_config

    common = [f"output_dir={out}", f"train_data={data}", f"model_name_or_path={args.model}",
              "overwrite_output_dir=true", f"per_device_train_batch_size={args.batch}", f"max_steps={steps}",
              "logging_steps=1", "plot_loss=false", f"threads={args.threads}", "save_steps=100000",
              f"bf16={dtype == 'bfloat16'}"]
    if kind == "embedding":
        from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding

        s = train_embedding(load_config(EmbeddingTrainConfig, None, [*common, f"max_seq_length={args.seq}",
                                                                      "neg_nums=1"]))
    elif kind == "colbert":
        from ragtune.train.retriever.colbert import ColbertTrainConfig, train_colbert

        s = train_colbert(load_config(ColbertTrainConfig, None, [*common, f"document_length={args.seq}"]))
    else:
        from ragtune.train.retriever.reranker import RerankerTrainConfig, train_reranker

        s = train_reranker(load_config(RerankerTrainConfig, None, [*common, f"max_length={args.seq}",
                                                                    "train_group_size=4"]))
    return s["train_runtime_s"]


def timed_train(kind: str, data: Path, out: Path, args, dtype: str) -> float:
    """Steady-state examples/s: (steps - 1) extra steps over the extra seconds against a 1-step run."""
    one = train_seconds(kind, data, out, args, 1, dtype)
    many = train_seconds(kind, data, out, args, args.steps, dtype)
    return (args.steps - 1) * args.batch / max(many - one, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--encode", type=int, default=256, help="passages encoded for the encoding rows")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak (H100 SXM: 989)")
    ap.add_argument("--dtypes", default="float32", help="comma list of float32, bfloat16 (training: bf16=true, "
                    "encoding: dtype=bfloat16, both torch autocast)")
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the rate is measured over steps 2..N)")

    import torch

    from ragtune.hardware import set_threads
    from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    set_threads(args.threads)
    texts = passages(max(args.encode, args.steps * args.batch + 8))
    rows = []
    gpu = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        emb, grp = write_records(tmp, texts, args.steps * args.batch + 8)
        for dtype in args.dtypes.split(","):
            for kind, data in (("embedding", emb), ("colbert", emb), ("reranker", grp)):
                rate = timed_train(kind, data, tmp / kind, args, dtype)
                unit = "groups of 4 pairs/s" if kind == "reranker" else "(q, pos, neg) examples/s"
                rows.append([f"train {kind}", dtype, f"{args.seq}", f"{rate:.2f} {unit}", "-"])
            dense = DenseRetriever(DenseConfig(model=args.model, max_seq_length=args.seq, cache=False,
                                               threads=args.threads, dtype=dtype))
            dense.encode(texts[: dense.cfg.batch_size])  # warm-up
            t0 = time.perf_counter()
            dense.encode(texts[: args.encode])
            dt = time.perf_counter() - t0
            n_params = sum(p.numel() for p in dense.model.parameters())
            mfu = f"{2 * n_params * args.seq * args.encode / dt / (args.peak_tflops * 1e12):.1%}" if gpu else "-"
            rows.append(["encode bi-encoder", dtype, f"{args.seq}", f"{args.encode / dt:.1f} passages/s", mfu])
            if dtype == "float32":  # the ColBERT retriever encodes in float32 only
                colbert = ColbertRetriever(ColbertConfig(model=str(tmp / "colbert"), document_length=args.seq,
                                                         threads=args.threads))
                t0 = time.perf_counter()
                colbert.encode_documents(texts[: args.encode])
                dt = time.perf_counter() - t0
                rows.append(["encode ColBERT documents", dtype, f"{args.seq}", f"{args.encode / dt:.1f} passages/s",
                             "-"])
    print(f"\n{hardware_line()}; model {args.model}, batch {args.batch}, {args.steps} steps\n")
    print_table(["what", "precision", "max tokens", "throughput", "MFU"], rows)


if __name__ == "__main__":
    main()
