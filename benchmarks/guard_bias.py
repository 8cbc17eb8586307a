"""Does the guard's own query selection favour the zero-shot encoder? (issue 13, tenth session)

    python benchmarks/guard_bias.py --run runs/scifact-unlabeled

The guard decides on held-out pseudo queries that passed every filter, and the dense filter keeps a query only when
the zero-shot encoder ranks its source document in its top k: the decide set is chosen by one of the two systems it
compares. This scores the run's trained retriever and the zero-shot encoder on the guard documents' queries grouped
by what the filters did with them (the corpus embeddings come from the run's cache; only queries are encoded):
kept by both filters (the guard's decide set), kept by BM25 but dropped by the dense filter, every query BM25 kept,
every generated query. Source document = the one relevant document; NDCG@10 over the whole corpus; paired t-test.

`--queries DIR` adds a group: the queries of a `ragtune generate` output folder (queries.jsonl, qrels/train.tsv)
restricted to the same guard documents, e.g. written by a generator the retriever did not learn from. A run whose
guard decided on another generator's queries (`guard.decide_on: other_generator`, the default) has that group
already (round-0/guard_queries/generate); for an older run, write one by hand:

    python benchmarks/guard_bias.py --run runs/scifact-unlabeled --ids decide_ids.txt
    ragtune generate configs/generate-scifact.yaml adapter_name_or_path=null few_shot=2 'exclude_splits=[]' \
        sample_num=null unlabeled_corpus_id=decide_ids.txt query_per_document=2 output_dir=runs/guard-altgen
    python benchmarks/guard_bias.py --run runs/scifact-unlabeled --queries runs/guard-altgen
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import hardware_line, print_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--part", default="decide", choices=["decide", "select", "both"],
                    help="which guard documents (decide: the ones the guard decided on)")
    ap.add_argument("--queries", type=Path, help="a generate output folder whose queries for the guard documents "
                    "form one more group")
    ap.add_argument("--ids", type=Path, help="write the guard documents' ids here, one a line, and stop")
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)

    import yaml

    from ragtune.data.beir import load_corpus, load_qrels, load_queries
    from ragtune.data.jsonl import iter_jsonl
    from ragtune.evaluate.metrics import evaluate
    from ragtune.evaluate.significance import paired_ttest
    from ragtune.retrieval.dense import DenseConfig, DenseRetriever

    run, r = args.run, f"round-{args.round}"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    filters = [f.get("name") for f in cfg.get("filters") or []]
    if filters != ["bm25", "dense"]:
        sys.exit(f"{run}/config.yaml: filters {filters}; this script groups queries by a BM25 then a dense filter")
    guard = json.loads((run / r / "guard" / "guard.json").read_text())
    parts = ["decide", "select"] if args.part == "both" else [args.part]
    docs = {doc for p in parts for judged in load_qrels(run / r / "holdout" / p / "qrels" / "train.tsv").values()
            for doc in judged}
    if args.ids:
        args.ids.write_text("".join(f"{d}\n" for d in sorted(docs)))
        print(f"{len(docs)} ids -> {args.ids}")
        return
    provenance = iter_jsonl(run / r / "filter" / "provenance.jsonl")
    rows = [x for _, x in provenance if x["doc_id"] in docs and not x["failed"]]
    texts = load_queries(run / r / "generate" / "queries.jsonl")
    groups = {
        "kept by both filters (the guard's set)": [x for x in rows if x["filters"]["kept"]],
        "kept by BM25, dropped by the dense filter": [x for x in rows if x["filters"]["dropped_by"] == "dense"],
        "every query BM25 kept": [x for x in rows if x["filters"]["dropped_by"] != "bm25"],
        "every generated query": rows,
    }
    corpus = load_corpus(run / "data" / "corpus.jsonl")
    models = {"zero_shot": cfg.get("encoder") or "sentence-transformers/all-MiniLM-L6-v2",
              "trained": str(run / r / "retriever" / "model")}  # what the guard stage scored
    qs = {x["query_id"]: texts[x["query_id"]] for x in rows}
    qrels = {x["query_id"]: {x["doc_id"]: 1} for x in rows}
    own = run / "round-0" / "guard_queries" / "generate"
    for i, folder in enumerate(f for f in (own if own.is_dir() else None, args.queries) if f):
        other = load_qrels(folder / "qrels" / "train.tsv")
        other_texts = load_queries(folder / "queries.jsonl")
        extra = {f"other{i}:{q}": d for q, d in other.items() if set(d) <= docs}
        qs |= {q: other_texts[q.split(":", 1)[1]] for q in extra}
        qrels |= extra
        label = ("the guard's other-generator queries" if folder == own
                 else f"{folder.name}: another generator's queries")
        groups[label] = [{"query_id": q} for q in extra]
    scores: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        ret = DenseRetriever(DenseConfig(model=model, dtype=cfg.get("dense_dtype") or "float32"))
        ret.index(corpus.values())  # cached by the run's guard stage: only the queries are encoded here
        scores[name] = evaluate(qrels, ret.search(qs, k=min(100, len(corpus))), ["ndcg@10"]).per_query["ndcg@10"]
    out = []
    for label, group in groups.items():
        ids = [x["query_id"] for x in group]
        if not ids:
            out.append([label, 0, "", "", "", ""])
            continue
        t = {q: scores["trained"][q] for q in ids}
        z = {q: scores["zero_shot"][q] for q in ids}
        mt, mz = sum(t.values()) / len(t), sum(z.values()) / len(z)
        p = f"{paired_ttest(z, t):.2g}" if len(ids) > 1 else ""
        out.append([label, len(ids), f"{mt:.4f}", f"{mz:.4f}", f"{mt - mz:+.4f}", p])
    print(f"{run}, {r}, guard documents: {'+'.join(parts)} ({len(docs)}); guard decided: {guard['ships']}")
    print_table(["queries of the guard documents", "n", "trained", "zero-shot", "delta", "p (two-sided)"], out)


if __name__ == "__main__":
    main()
