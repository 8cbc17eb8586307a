"""Reading-comprehension JSON -> a BEIR folder, so `ragtune run` can train a retriever for the answerer's domain.

    ragtune data convert squad-beir data=../shared/data/qa/squad2-dev-a.json out=data/squad-beir \
        holdout_articles=3 seed=0

Every passage is a document (`_id` p0, p1, ... in file order, `title` = its article); every answerable question
is a query whose passage is its one relevant document. The articles are split exactly as `ragtune data convert
squad-sft` splits them with the same `holdout_articles` and `seed`: questions of the training articles form
`qrels/train.tsv` (the labeled pairs the loop's generator and retriever learn from), those of the held-out
articles `qrels/test.tsv` (what the loop reports, never what it selects on). With `corpus: all` (default) the
held-out articles' passages are in the corpus too, unlabeled: they are the user's collection, the knowledge base
the answerer will search, and the loop generates pseudo queries for them as GPL and InPars do; their questions
never reach training. `corpus: train` leaves them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ragtune.config import ConfigModel, dump_config
from ragtune.data.beir import write_beir
from ragtune.data.convert_result import ConvertResult
from ragtune.data.qa_json import read_squad, read_webqa
from ragtune.data.qa_select import split_articles


class QABeirConfig(ConfigModel):
    data: Path
    """SQuAD 2.0 / CMRC 2018 JSON, or WebQA JSON (the format is detected)."""
    out: Path
    """Output BEIR folder."""
    holdout_articles: int | list[str] = 0
    """Articles whose questions form the test split: a count (drawn with `seed`) or their titles / ids; the same
    value and seed as `ragtune data convert squad-sft` hold out the same articles."""
    seed: int = 0
    corpus: Literal["all", "train"] = "all"
    """all: every passage (the held-out articles' ones unlabeled); train: the training articles' passages only."""


def qa_to_beir(cfg: QABeirConfig) -> ConvertResult:
    path = Path(cfg.data)
    head = path.read_text(encoding="utf-8-sig")[:4096].lstrip() if path.is_file() else ""
    items = read_squad(path) if head.startswith("{") and '"data"' in head[:200] else read_webqa(path)
    train_articles, eval_articles = split_articles(items, cfg.holdout_articles, cfg.seed)
    held = set(eval_articles)
    doc_of: dict[str, str] = {}
    corpus = []
    for i in items:
        if i.context not in doc_of and (cfg.corpus == "all" or i.article not in held):
            doc_of[i.context] = f"p{len(doc_of)}"
            corpus.append({"_id": doc_of[i.context], "title": i.article, "text": i.context})
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, dict[str, int]]] = {"train": {}, "test": {}}
    for i in items:
        if not i.answerable:
            continue
        qid = f"q{len(queries)}" if i.id in queries else i.id
        split = "test" if i.article in held else "train"
        if split == "test" and i.context not in doc_of:
            continue  # corpus: train leaves the held-out passages (and so their questions) out
        queries[qid] = i.question
        qrels[split].setdefault(qid, {})[doc_of[i.context]] = 1
    qrels = {k: v for k, v in qrels.items() if v}
    out = Path(cfg.out)
    write_beir(out, corpus, queries, qrels)
    counts = {"documents": len(corpus), "queries": len(queries), "articles (train)": len(train_articles),
              "articles (test)": len(eval_articles), **{f"{k} queries": len(v) for k, v in qrels.items()}}
    return ConvertResult(counts, [out / "corpus.jsonl", out / "queries.jsonl", out / "qrels",
                                  dump_config(cfg, out / "squad-beir.config.yaml")])
