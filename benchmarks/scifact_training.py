"""The SciFact must-show of retriever/reranker training, end to end, on CPU.

    python benchmarks/scifact_training.py all          # mine, train the three models, evaluate, compare
    python benchmarks/scifact_training.py mrl [MODEL [CACHE]]  # Matryoshka table of MODEL on test
                                                               # (default runs/scifact/embedding)
    python benchmarks/scifact_training.py mrl-pca [MODEL]      # the same after a PCA rotation, no training
    python benchmarks/scifact_training.py mrl MODEL --data ../shared/data/beir/msmarco-dl19-subset
                                                               # the same on another collection's test split

Training reads only the train qrels; every trainer carves its dev slice from train (configs/scifact-*.yaml,
`dev.split: train`) and keeps the best dev checkpoint; the test split is read only by `ragtune eval`.
Baselines are `runs/scifact/eval-{bm25,zeroshot}/run.trec`, written by the explicit `ragtune eval` steps below
(BM25 0.679, zero-shot MiniLM 0.645); each comparison is `ragtune eval compare` (paired t-test over the 300 test
queries, Holm-adjusted over the metrics). `python benchmarks/reproduce.py --list` has one command per table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware_line, print_table  # noqa: E402

DATA = "../shared/data/beir/scifact"
STEPS = [
    f"ragtune eval --data {DATA} --split test --retriever bm25 --out runs/scifact/eval-bm25",
    f"ragtune eval --data {DATA} --split test --retriever dense --out runs/scifact/eval-zeroshot",
    f"ragtune data convert beir-embedding data={DATA} split=train out=runs/scifact/mined neg_start=10 neg_end=100 "
    "neg_per_query=8",
    f"ragtune data convert beir-reranker data={DATA} split=train out=runs/scifact/rr-data layout=group neg_start=0 "
    "neg_end=50 neg_per_query=8",
    "ragtune train embedding configs/scifact-embedding.yaml",
    f"ragtune eval --data {DATA} --retriever dense --model runs/scifact/embedding --out runs/scifact/eval-embedding",
    f"ragtune eval compare runs/scifact/eval-zeroshot/run.trec runs/scifact/eval-embedding/run.trec --data {DATA} "
    "--json runs/scifact/compare-embedding.json",
    "ragtune train reranker configs/scifact-reranker.yaml",
    f"ragtune eval --data {DATA} --retriever bm25 --rerank runs/scifact/reranker --rerank-top 100 "
    "--set rerank_max_length=160 --set rerank_fusion=dev --out runs/scifact/eval-rerank",
    f"ragtune eval compare runs/scifact/eval-bm25/run.trec runs/scifact/eval-rerank/run.trec --data {DATA} "
    "--json runs/scifact/compare-rerank.json",
    "ragtune train colbert configs/scifact-colbert.yaml",
    f"ragtune eval --data {DATA} --retriever colbert --model runs/scifact/colbert --out runs/scifact/eval-colbert",
    f"ragtune eval compare runs/scifact/eval-bm25/run.trec runs/scifact/eval-colbert/run.trec --data {DATA} "
    "--json runs/scifact/compare-colbert.json",
]


def matryoshka(model: str = "runs/scifact/embedding", dims: tuple[int, ...] = (384, 192, 96, 48),
               embeddings: str | None = None, pca: bool = False, data: str = DATA) -> list[list]:
    """NDCG@10 / R@100 on test at each prefix dimension; the corpus is encoded once (cached) at full dimension.

    `embeddings`: a ragtune cache entry (folder with emb.npy + ids.json) of this model's corpus embeddings,
    e.g. the one `ragtune eval --retriever dense --model MODEL` wrote, to skip re-encoding.
    `pca`: first rotate onto the principal axes of the model's embeddings of the mined training texts (what
    `mrl_init: pca` starts training from), to see what the rotation alone keeps.
    """
    import numpy as np

    from ragtune.data.beir import load_beir
    from ragtune.evaluate.metrics import evaluate
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever
    from ragtune.train.retriever.dense_eval import truncated_runs

    ds = load_beir(data, ["test"])
    retriever = DenseRetriever(DenseConfig(model=model))
    if embeddings:
        retriever.doc_ids = json.loads((Path(embeddings) / "ids.json").read_text())
        retriever.embeddings = np.load(Path(embeddings) / "emb.npy", mmap_mode="r")
        if sorted(retriever.doc_ids) != sorted(ds.corpus) or retriever.embeddings.shape[1] != retriever.dim:
            raise ValueError(f"{embeddings} does not hold this corpus encoded by {model}")
    else:
        retriever.index(ds.corpus.values(), show_progress=True)
    queries = ds.split_queries("test")
    qids = list(queries)
    q, d = retriever.encode([queries[i] for i in qids]), np.asarray(retriever.embeddings)
    if pca:  # about what `mrl_init: pca` fits on: mined rows (query, positive, one negative), dev queries included
        from ragtune.train.retriever.embedding_heads import pca_rotation, rotation_texts

        mined = [json.loads(x) for x in Path("runs/scifact/mined/embedding.jsonl").read_text("utf-8").splitlines()]
        rows = [{"query": r["query"], "pos": p, "neg_1": r.get("neg", [p])[0]} for r in mined for p in r["pos"]]
        rotation = pca_rotation(retriever.model, rotation_texts(rows, 4096, seed=42)).astype(np.float32)
        q, d = q @ rotation.T, d @ rotation.T
    runs = truncated_runs(q, d, qids, retriever.doc_ids, k=100, dims=list(dims))
    full = None
    rows = []
    for dim in sorted(runs, reverse=True):
        m = evaluate(ds.qrels["test"], runs[dim], ["ndcg@10", "recall@100"]).metrics
        full = full or m["ndcg@10"]
        rows.append([dim, f"{m['ndcg@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['ndcg@10'] / full:.1%}"])
    return rows


def main() -> None:
    data = DATA
    if "--data" in sys.argv:
        i = sys.argv.index("--data")
        data = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "all":
        for cmd in STEPS:
            print(f"$ {cmd}", flush=True)
            subprocess.run(cmd.split(), check=True)
        for name in ("embedding", "rerank", "colbert"):
            res = json.loads(Path(f"runs/scifact/compare-{name}.json").read_text())["metrics"]
            print(name, {m: {k: round(v, 4) for k, v in r.items()} for m, r in res.items()})
    print(f"\n{hardware_line()}\n")
    table = what.startswith("mrl")
    model = sys.argv[2] if table and len(sys.argv) > 2 else "runs/scifact/embedding"
    cached = sys.argv[3] if what == "mrl" and len(sys.argv) > 3 else None
    print(f"{model} on {data} (test)")
    print_table(["dims", "NDCG@10", "R@100", "of full-dim NDCG@10"],
                matryoshka(model, embeddings=cached, pca=what == "mrl-pca", data=data))


if __name__ == "__main__":
    main()
