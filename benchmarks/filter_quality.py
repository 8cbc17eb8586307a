"""How well does each filter separate good pseudo queries from bad ones?

    python benchmarks/filter_quality.py FILTER_OUT_DIR [--corpus DIR]

Reads the provenance.jsonl that `ragtune filter` wrote (every candidate, with `dropped_by`)
and the candidates' texts (queries.jsonl of the generation folder named in the filter's
config.yaml), then measures, under the FULL corpus, the fraction of queries whose source
document is in the top 10 of BM25 and of zero-shot MiniLM: for the queries each filter kept
and for those it dropped. The real test queries' own rates (each judged doc in top 10)
are the reference for what "good" looks like.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from _common import print_table
from ragtune.data.beir import load_beir
from ragtune.data.jsonl import iter_jsonl
from ragtune.filters.base import load_pseudo_queries
from ragtune.filters.rank import source_ranks
from ragtune.paths import shared_data
from ragtune.retrieval.bm25 import BM25Retriever
from ragtune.retrieval.dense import DenseRetriever


def hit_rate(retriever, cands, k: int = 10) -> dict[str, bool]:
    run = retriever.search({c.query_id: c.text for c in cands}, k=k)
    return {c.query_id: r is not None for c, r in zip(cands, source_ranks(run, cands), strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("filtered", type=Path)
    ap.add_argument("--corpus", type=Path, default=shared_data("beir", "scifact"))
    args = ap.parse_args()
    cfg = yaml.safe_load((args.filtered / "config.yaml").read_text())
    cands = load_pseudo_queries(cfg["queries"]).candidates
    prov = {row["query_id"]: row for _, row in iter_jsonl(args.filtered / "provenance.jsonl")}
    ds = load_beir(args.corpus, splits=["test"])
    bm25 = BM25Retriever()
    bm25.index(ds.corpus.values())
    dense = DenseRetriever()
    dense.index(ds.corpus.values())
    hits = {"bm25": hit_rate(bm25, cands), "dense": hit_rate(dense, cands)}

    test = [c for qid, docs in ds.qrels["test"].items() for c in
            [type(cands[0])(f"{qid}#{d}", d, ds.queries[qid]) for d in docs]]
    ref = {name: sum(hit_rate(r, test).values()) / len(test) for name, r in (("bm25", bm25), ("dense", dense))}

    def rate(ids: list[str], name: str) -> str:
        return f"{sum(hits[name][i] for i in ids) / len(ids):.1%} (n={len(ids)})" if ids else "-"

    rows = [["all candidates", "", rate([c.query_id for c in cands], "bm25"), rate([c.query_id for c in cands],
                                                                                  "dense")]]
    seen = [c.query_id for c in cands]
    for stage in [s["name"] for s in yaml.safe_load((args.filtered / "filter_report.json").read_text())["filters"]]:
        dropped = [q for q in seen if prov[q]["filters"].get("dropped_by") == stage]
        kept = [q for q in seen if q not in set(dropped)]
        rows.append([stage, "kept", rate(kept, "bm25"), rate(kept, "dense")])
        rows.append([stage, "dropped", rate(dropped, "bm25"), rate(dropped, "dense")])
        seen = kept
    rows.append(["real test queries (reference)", "", f"{ref['bm25']:.1%} (n={len(test)})",
                 f"{ref['dense']:.1%} (n={len(test)})"])
    print_table(["filter", "subset", "source doc in BM25 top-10", "source doc in MiniLM top-10"], rows)


if __name__ == "__main__":
    main()
