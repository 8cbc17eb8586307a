"""`ragtune eval rag DATA`: the answerer on held-out reading-comprehension data, with gold or retrieved contexts.

    report = run_eval_rag(load_config(EvalRagConfig, None, ["data=runs/qa/squad/squad_eval.meta.jsonl",
                                                              "contexts=both", "answerer.adapter=runs/answerer"]))

DATA is what `ragtune data convert squad-sft|webqa-sft` writes: an `<name>_eval.meta.jsonl` (or the folder
holding exactly one), whose records are the held-out articles, balanced answerable / unanswerable; or a raw
SQuAD 2.0 / CMRC / WebQA JSON file, used whole (balanced the converter's way, seed 0).

- gold: each question with its own (or, for mismatched pairs, the unrelated) context, as in training.
- retrieved: every distinct context of DATA becomes a document of a knowledge base (one JSONL corpus file per
  article, ingested like `ragtune rag ingest`: chunks, Qdrant, BM25, RRF); each question gets the top_k
  retrieved chunks. A mismatched pair (a question paired with another article's context) is unanswerable
  because its own article is not in the knowledge base, so that article's chunks are excluded from its search;
  native unanswerable questions (SQuAD `is_impossible`) search everything. `retrieval_hit` is the share of
  answerable questions whose gold context is among the retrieved chunks; `over_refusal_gold_retrieved` the
  share of those the answerer refused anyway (over-refusal that retrieval misses do not explain).

Writes `predictions-<contexts>.jsonl` (per question: prediction, refused, why, margin, em, f1) and
`report.json` into `out`; prints the metrics of `ragtune.evaluate.answer_metrics`.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import check_output, write_json, write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.errors import DataFormatError
from ragtune.rag.ask import AnswererConfig
from ragtune.rag.ingest import ChunkConfig
from ragtune.rag.kb import SearchConfig
from ragtune.retrieval.dense import DenseConfig

META_FIELDS = ("question", "context", "answers", "answerable")


class EvalRetrieveConfig(SearchConfig):
    top_k: int = Field(2, ge=1)
    """Chunks given to the answerer per question."""
    embedder: DenseConfig = Field(default_factory=lambda: DenseConfig(cache=False))
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)


class EvalRagConfig(ConfigModel):
    data: Path
    """A converter `*_eval.meta.jsonl`, a folder holding one, or a raw SQuAD 2.0 / CMRC / WebQA JSON file."""
    contexts: Literal["gold", "retrieved", "both"] = "gold"
    limit: int | None = Field(None, ge=2)
    """Evaluate the first limit/2 answerable and limit/2 unanswerable questions (file order) only."""
    answerer: AnswererConfig = Field(default_factory=AnswererConfig)
    retrieve: EvalRetrieveConfig = Field(default_factory=EvalRetrieveConfig)
    calibrate: Path | None = None
    """Labelled data (e.g. the converter's *_train.meta.jsonl) to choose answerer.refusal_margin on, with gold
    contexts: the best refusal F1 whose over-refusal stays <= max_over_refusal. Never the evaluated data."""
    calibrate_limit: int = Field(60, ge=2)
    max_over_refusal: float = Field(0.2, ge=0.0, le=1.0)
    out: Path | None = None
    """Folder for predictions, report.json and the retrieval KB; default runs/eval-rag/<data name>."""
    json_out: Path | None = None
    """Also write the report JSON here."""


# ---------------------------------------------------------------- data


def _meta_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*_eval.meta.jsonl"))
        if len(found) != 1:
            raise DataFormatError(path, None, f"expected one *_eval.meta.jsonl in the folder, found {len(found)}",
                                  hint="pass the meta file itself, or run `ragtune data convert squad-sft` first")
        return found[0]
    return path


def load_items(path: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """(dataset name, items with question, context, answers, answerable, source, article, language)."""
    path = _meta_file(Path(path))
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    if path.suffix == ".json":
        return path.stem, _from_raw(path)
    items = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, lineno, f"invalid JSON: {e.msg}") from None
            missing = [k for k in META_FIELDS if k not in row]
            if missing:
                raise DataFormatError(path, lineno, f"missing field {missing[0]!r}", field=missing[0],
                                      hint="meta lines are written by `ragtune data convert squad-sft|webqa-sft`: "
                                           "{id, question, context, answers, answerable, source, article, language}")
            if row["answerable"] and not row["answers"]:
                raise DataFormatError(path, lineno, "an answerable question without answers", field="answers")
            row.setdefault("language", "en")
            row.setdefault("article", row.get("id", str(lineno)))
            row.setdefault("source", "answerable" if row["answerable"] else "impossible")
            items.append(row)
    if not items:
        raise DataFormatError(path, None, "no questions in the file")
    return path.name.removesuffix(".meta.jsonl"), items


def _from_raw(path: Path) -> list[dict[str, Any]]:
    import random

    from ragtune.data.qa_json import read_squad, read_webqa
    from ragtune.data.qa_select import questions_language, select

    head = path.read_text(encoding="utf-8-sig")[:4096].lstrip()
    items = read_squad(path) if head.startswith("{") and '"data"' in head[:200] else read_webqa(path)
    language = questions_language(items)
    chosen = select(items, 0.5, True, random.Random("0:eval"))
    return [{"id": i.id, "question": i.question, "context": i.context, "answers": list(i.answers),
             "answerable": i.answerable, "source": i.source, "article": i.article, "language": language}
            for i in chosen]


def balanced(items: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    if limit is None:
        return items
    want = {True: (limit + 1) // 2, False: limit // 2}
    out = []
    for it in items:
        if want[bool(it["answerable"])] > 0:
            want[bool(it["answerable"])] -= 1
            out.append(it)
    return out


# ---------------------------------------------------------------- retrieval


def _article_file(article: str) -> str:
    return f"{hashlib.sha1(article.encode()).hexdigest()[:12]}.jsonl"


def build_kb(items: list[dict[str, Any]], cfg: EvalRetrieveConfig, out: Path) -> tuple[Path, dict[str, str]]:
    """A KB over every distinct context (one JSONL corpus per article); returns (kb, {context: doc source})."""
    from ragtune.atomic import write_jsonl as write
    from ragtune.rag.ingest import IngestConfig, ingest

    per_article: dict[str, dict[str, str]] = {}
    source_of: dict[str, str] = {}
    for it in items:
        article = it.get("context_article") or it["article"]
        docs = per_article.setdefault(article, {})
        if it["context"] not in source_of:
            pid = f"p{len(source_of)}"
            docs[pid] = it["context"]
            source_of[it["context"]] = f"{_article_file(article)}#{pid}"
    corpus = out / "corpus"
    for article, docs in per_article.items():
        if docs:
            write(corpus / _article_file(article), ({"_id": pid, "text": t} for pid, t in docs.items()))
    kb = out / "kb"
    ingest(IngestConfig(folder=corpus, out=kb, embedder=cfg.embedder, chunk=cfg.chunk))
    return kb, source_of


def retrieved_contexts(items: list[dict[str, Any]], all_items: list[dict[str, Any]], cfg: EvalRetrieveConfig,
                       out: Path) -> tuple[list[list[str]], list[bool | None]]:
    """Top-k chunk texts per item, and whether the gold context was retrieved (None for unanswerable items)."""
    from ragtune.rag.kb import KnowledgeBase

    kb_path, source_of = build_kb(all_items, cfg, out)
    contexts, hits = [], []
    kb = KnowledgeBase.open(kb_path, device=cfg.embedder.device, threads=cfg.embedder.threads)
    try:
        for it in items:
            exclude = {_article_file(it["article"])} if it.get("source") == "mismatched" else None
            found = kb.search(it["question"], cfg.k_dense, cfg.k_bm25, cfg.rrf_k, top=cfg.top_k, exclude=exclude)
            contexts.append([h.chunk["text"] for h in found])
            hits.append(any(h.chunk["source"] == source_of[it["context"]] for h in found) if it["answerable"]
                        else None)
    finally:
        kb.close()
    return contexts, hits


# ---------------------------------------------------------------- run


def _generate(answerer, items: list[dict[str, Any]], contexts: list[list[str]]):
    prompts = [answerer.prompt(it["question"], ctx, it.get("language", "en")) for it, ctx in zip(items, contexts,
                                                                                               strict=True)]
    return answerer.generate(prompts)


def _score(items, gens, margin: float, hits=None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    from ragtune.evaluate.answer_metrics import exact_match, score_answers, token_f1

    refused = [g.reason == "text" or g.margin > margin for g in gens]
    preds = [g.text for g in gens]
    metrics = score_answers([it["answers"] for it in items], preds, refused, [it["answerable"] for it in items],
                            [it.get("language", "en") for it in items])
    metrics["refused_by_text"] = sum(g.reason == "text" for g in gens) / max(1, len(gens))
    if hits is not None:
        ans = [h for h in hits if h is not None]
        metrics["retrieval_hit"] = sum(ans) / max(1, len(ans))
        # the answerer's own share of over-refusal: answerable questions refused although their gold was retrieved
        found = [r for r, h in zip(refused, hits, strict=True) if h]
        metrics["over_refusal_gold_retrieved"] = sum(found) / max(1, len(found))
    rows = []
    for i, (it, g, r) in enumerate(zip(items, gens, refused, strict=True)):
        lang = it.get("language", "en")
        rows.append({"id": it.get("id"), "question": it["question"], "answerable": it["answerable"],
                     "source": it.get("source"), "answers": it["answers"], "prediction": g.text, "refused": r,
                     "why": "text" if g.reason == "text" else ("likelihood" if r else None),
                     "margin": round(g.margin, 4),
                     "em": exact_match(g.text, it["answers"], lang) if it["answerable"] and not r else 0.0,
                     "f1": token_f1(g.text, it["answers"], lang) if it["answerable"] and not r else 0.0,
                     **({"gold_retrieved": hits[i]} if hits is not None else {})})
    return metrics, rows


def run_eval_rag(cfg: EvalRagConfig, log=print) -> dict[str, Any]:
    from ragtune.hardware import pick_device, set_threads
    from ragtune.rag.answer import Answerer
    from ragtune.rag.refusal import calibrate_margin

    name, all_items = load_items(cfg.data)
    items = balanced(all_items, cfg.limit)
    out = Path(cfg.out or Path("runs") / "eval-rag" / name)
    check_output(out, "--out", folder=True)  # before any answer is generated
    if cfg.json_out:
        check_output(cfg.json_out, "--json", folder=False)
    a = cfg.answerer
    set_threads(a.threads)
    answerer = Answerer.load(a.model, a.adapter, a.template, pick_device(a.device), max_new_tokens=a.max_new_tokens,
                             batch_size=a.batch_size, max_prompt_tokens=a.max_prompt_tokens,
                             refusal_margin=a.refusal_margin, refusal_floor=a.refusal_floor)
    margin = a.refusal_margin
    report: dict[str, Any] = {"dataset": name, "split": "eval", "data": str(cfg.data),
                              "answerer": {"model": a.model, "adapter": str(a.adapter) if a.adapter else None},
                              "num_questions": len(items), "num_answerable": sum(i["answerable"] for i in items),
                              "num_unanswerable": sum(not i["answerable"] for i in items), "results": {}}
    if cfg.calibrate is not None:
        _, cal = load_items(cfg.calibrate)
        cal = balanced(cal, cfg.calibrate_limit)
        t0 = time.perf_counter()
        gens = _generate(answerer, cal, [[it["context"]] for it in cal])
        margin = calibrate_margin([g.margin for g in gens], [not it["answerable"] for it in cal],
                                  [g.reason == "text" for g in gens], cfg.max_over_refusal)
        report["calibration"] = {"data": str(cfg.calibrate), "questions": len(cal), "refusal_margin": margin,
                                 "seconds": round(time.perf_counter() - t0, 1)}
        log(f"calibrated refusal_margin = {margin:.3f} on {len(cal)} questions of {cfg.calibrate}")
    report["refusal_margin"] = margin
    modes = ["gold", "retrieved"] if cfg.contexts == "both" else [cfg.contexts]
    for mode in modes:
        t0 = time.perf_counter()
        hits = None
        if mode == "gold":
            contexts = [[it["context"]] for it in items]
        else:
            contexts, hits = retrieved_contexts(items, all_items, cfg.retrieve, out)
        gens = _generate(answerer, items, contexts)
        metrics, rows = _score(items, gens, margin, hits)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        write_jsonl(out / f"predictions-{mode}.jsonl", rows)
        report["results"][mode] = metrics
        log(f"{name} {mode}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    write_json(out / "report.json", report)
    dump_config(cfg, out / "config.yaml")
    if cfg.json_out:
        write_json(cfg.json_out, report)
    report["out"] = str(out)
    return report
