"""Per-item costs that SCALING.md multiplies out to FiQA, MS MARCO and NQ, measured on SciFact passages.

    python benchmarks/scale_costs.py --docs 1024 --json runs/scale_costs.json

Prints (and writes as JSON) for the default encoder, all-MiniLM-L6-v2:
- words and MiniLM tokens per passage (cut at 256 and uncut);
- bi-encoder encoding: passages/s and tokens/s in float32 and bfloat16 autocast, after a warm-up batch;
  peak resident memory of the process; bytes per passage of the float32 embedding file;
- ColBERT (a MultiVectorEncoder on MiniLM, dim 128, document_length 180, punctuation skipped): token vectors
  per passage, passages/s, bytes per token vector in the flat float16 index;
- BM25 (bm25s, English stemmer + stopwords) on the whole corpus: tokenize and index seconds, bytes per passage of
  the saved index.
The timings are wall seconds on this machine; run it under /work/notes/heavy so no other job shares the cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware_line, print_table  # noqa: E402


def load_docs(n: int | None):
    from ragtune.data.beir import load_corpus
    from ragtune.paths import shared_data

    docs = list(load_corpus(shared_data("beir", "scifact", "corpus.jsonl")).values())
    return docs if n is None else docs[:n]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bi_encoder(texts: list[str], dtype: str, batch: int) -> dict:
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    r = DenseRetriever(DenseConfig(batch_size=batch, dtype=dtype, cache=False, threads=0))
    r.encode(texts[:batch])  # warm-up
    t0 = time.perf_counter()
    emb = r.encode(texts)
    secs = time.perf_counter() - t0
    tok = r.model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    tokens = sum(len(t) for t in tok)
    return {"dtype": dtype, "passages": len(texts), "seconds": round(secs, 2),
            "passages_per_s": round(len(texts) / secs, 2), "tokens_per_s": round(tokens / secs, 1),
            "bytes_per_passage": int(emb.shape[1] * 4), "dim": int(emb.shape[1]), "peak_rss_mb": round(peak_rss_mb())}


def colbert(texts: list[str], batch: int) -> dict:
    from ragtune.config import load_config
    from ragtune.retrieval.colbert import ColbertConfig, ColbertRetriever
    from ragtune.train.retriever.colbert import ColbertTrainConfig, build_colbert

    cfg = load_config(ColbertTrainConfig, None, ["train_data=x.jsonl", "output_dir=x", "dim=128",
                                                 "document_length=180"])
    model = build_colbert(cfg, "cpu")
    r = ColbertRetriever(ColbertConfig(batch_size=batch, dtype="float16"), model=model)
    r.encode_documents(texts[:batch])
    t0 = time.perf_counter()
    embs = r.encode_documents(texts)
    secs = time.perf_counter() - t0
    vectors = sum(len(e) for e in embs)
    return {"passages": len(texts), "seconds": round(secs, 2), "passages_per_s": round(len(texts) / secs, 2),
            "token_vectors_per_passage": round(vectors / len(texts), 1), "dim": 128,
            "bytes_per_token_float16": 128 * 2, "document_length": 180}


def bm25(docs) -> dict:
    from ragtune.retrieval.bm25 import BM25Retriever

    r = BM25Retriever()
    t0 = time.perf_counter()
    tokens = r.tokenize([d.content for d in docs])
    t_tok = time.perf_counter() - t0
    t0 = time.perf_counter()
    r.index(docs)
    t_all = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        r.save(Path(tmp) / "bm25")
        size = folder_bytes(Path(tmp) / "bm25")
    return {"passages": len(docs), "tokenize_seconds": round(t_tok, 2), "index_seconds": round(t_all, 2),
            "passages_per_s": round(len(docs) / t_all, 1), "terms_per_passage": round(sum(map(len, tokens)) / len(docs),
                                                                                          1),
            "index_bytes_per_passage": round(size / len(docs), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1024, help="passages to encode (the first N of SciFact)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from ragtune.models import DEFAULT_ENCODER, resolve_model

    print(hardware_line())
    all_docs = load_docs(None)
    docs = all_docs[:args.docs]
    texts = [d.content for d in docs]
    tok = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_ENCODER))
    lens = [len(t) for t in tok([d.content for d in all_docs])["input_ids"]]
    out = {"hardware": hardware_line(), "corpus_passages": len(all_docs),
           "words_per_passage": round(sum(len(d.content.split()) for d in all_docs) / len(all_docs), 1),
           "tokens_per_passage_uncut": round(sum(lens) / len(lens), 1),
           "tokens_per_passage_256": round(sum(min(n, 256) for n in lens) / len(lens), 1)}
    out["bm25"] = bm25(all_docs)
    out["bi_encoder"] = [bi_encoder(texts, d, args.batch) for d in ("float32", "bfloat16")]
    out["colbert"] = colbert(texts, args.batch)
    out["load_avg_end"] = round(__import__("os").getloadavg()[0], 2)
    print_table(["what", "value"], [[k, json.dumps(v)] for k, v in out.items() if k != "hardware"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
