"""`ragtune eval rag DATA`: the answerer on held-out reading-comprehension data, with gold or retrieved contexts.

    report = run_eval_rag(load_config(EvalRagConfig, None, ["data=runs/qa/squad/squad_eval.meta.jsonl",
                                                              "contexts=both", "answerer.adapter=runs/answerer",
                                                              "refusal.data=runs/qa/squad/squad_dev.meta.jsonl"]))

DATA is what `ragtune data convert squad-sft|webqa-sft` writes: an `<name>_eval.meta.jsonl` (or the folder
holding exactly one), whose records are the held-out articles, balanced answerable / unanswerable; or a raw
SQuAD 2.0 / CMRC / WebQA JSON file, used whole (balanced the converter's way, seed 0).

- gold: each question with its own (or, for mismatched pairs, the unrelated) context, as in training.
- retrieved: every distinct context of DATA is a document of a knowledge base (one JSONL corpus file per
  article, `ragtune.rag.answerer_data.eval_corpus`), ingested like `ragtune rag ingest` (chunks, vectors, BM25,
  RRF) with `retrieve.embedder`, or `retrieve.kb`: one that `ragtune rag ingest` built from the converter's
  `<name>_eval_corpus/` (e.g. with the bi-encoder `ragtune run` trained); `retrieve.rerank` re-scores the
  candidates. Each question gets the top_k chunks. A mismatched pair (a question beside another article's
  context) is unanswerable because its own article is not in the knowledge base, so that article's chunks are
  excluded from its search; native unanswerable questions (SQuAD `is_impossible`) search everything.
  `retrieval_hit` is the share of answerable questions whose gold context is among the retrieved chunks;
  `over_refusal_gold_retrieved` the share of those the answerer refused anyway.

The refusal threshold (`answerer.refusal_margin`) is calibrated on `refusal.data`, dev questions that share none
with the evaluated ones or with `refusal.exclude` (`ragtune.rag.refusal_calibration`), for `refusal.target`.
`refused_by_text` is the share of questions whose greedy output refused, `refused_by_margin` the share the
threshold refused although the greedy output answered.

Writes `predictions-<contexts>.jsonl` (per question: prediction, refused, why, margin, em, f1; `predictions-dev.jsonl`
the same for the calibration questions), `report.json`,
`refusal_curve.json` and `refusal_curve.png` (over- vs under-refusal as the threshold moves, on dev and on the
gold-context evaluation, the chosen threshold marked) into `out`; prints the metrics of
`ragtune.evaluate.answer_metrics`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import check_output, write_json, write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.errors import DataFormatError
from ragtune.rag.answerer_data import article_file, eval_corpus, write_eval_corpus
from ragtune.rag.ask import AnswererConfig
from ragtune.rag.ingest import ChunkConfig
from ragtune.rag.kb import SearchConfig
from ragtune.rag.refusal import curve_auc
from ragtune.rag.refusal_calibration import RefusalCalibrationConfig
from ragtune.retrieval.dense import DenseConfig

META_FIELDS = ("question", "context", "answers", "answerable")


class EvalRetrieveConfig(SearchConfig):
    top_k: int = Field(2, ge=1)
    """Chunks given to the answerer per question."""
    embedder: DenseConfig = Field(default_factory=lambda: DenseConfig(cache=False))
    """The encoder the knowledge base is built with (a folder `ragtune train embedding` or `ragtune run` wrote)."""
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
    kb: Path | None = None
    """A knowledge base `ragtune rag ingest` built from the converter's `<name>_eval_corpus/` (then `embedder`
    and `chunk` are the KB's own); None = build one from DATA under `out`."""
    rerank: str | None = None
    """A cross-encoder or LLM reranker (`ragtune train reranker` output) re-scoring `rerank_top` candidates."""
    rerank_top: int = Field(20, ge=1)


class EvalRagConfig(ConfigModel):
    data: Path
    """A converter `*_eval.meta.jsonl`, a folder holding one, or a raw SQuAD 2.0 / CMRC / WebQA JSON file."""
    contexts: Literal["gold", "retrieved", "both"] = "gold"
    limit: int | None = Field(None, ge=2)
    """Evaluate the first limit/2 answerable and limit/2 unanswerable questions (file order) only."""
    answerer: AnswererConfig = Field(default_factory=AnswererConfig)
    retrieve: EvalRetrieveConfig = Field(default_factory=EvalRetrieveConfig)
    refusal: RefusalCalibrationConfig = Field(default_factory=RefusalCalibrationConfig)
    """Where and for what the refusal threshold is calibrated (`refusal.data`, `refusal.target`, ...)."""
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


def build_kb(items: list[dict[str, Any]], cfg: EvalRetrieveConfig, out: Path) -> tuple[Path, dict[str, str]]:
    """A KB over every distinct context (one JSONL corpus per article); returns (kb, {context: doc source})."""
    from ragtune.rag.ingest import IngestConfig, ingest

    source_of = write_eval_corpus(items, out / "corpus")
    kb = out / "kb"
    ingest(IngestConfig(folder=out / "corpus", out=kb, embedder=cfg.embedder, chunk=cfg.chunk))
    return kb, source_of


def retrieved_contexts(items: list[dict[str, Any]], all_items: list[dict[str, Any]], cfg: EvalRetrieveConfig,
                       out: Path) -> tuple[list[list[str]], list[bool | None], dict[str, Any]]:
    """Top-k chunk texts per item, whether the gold context was retrieved (None for unanswerable items), and
    what was searched (KB folder, encoder, reranker)."""
    from ragtune.rag.kb import KnowledgeBase

    if cfg.kb is not None:
        kb_path, (_, source_of) = cfg.kb, eval_corpus(all_items)
    else:
        kb_path, source_of = build_kb(all_items, cfg, out)
    kb = KnowledgeBase.open(kb_path, device=cfg.embedder.device, threads=cfg.embedder.threads)
    reranker = None
    try:
        missing = sorted(set(source_of.values()) - set(kb.documents))
        if missing:
            raise DataFormatError(kb_path, None, f"{len(missing)} passages of the evaluated data are not in this "
                                  f"knowledge base (e.g. {missing[0]})", field="retrieve.kb",
                                  hint="ingest the converter's <name>_eval_corpus/ folder of the same data: "
                                       "`ragtune rag ingest runs/qa/squad/squad_eval_corpus -o KB`")
        if cfg.rerank:
            from ragtune.retrieval.rerank import load_reranker

            reranker = load_reranker(cfg.rerank, device=cfg.embedder.device)
        contexts, hits = [], []
        for it in items:
            exclude = {article_file(it["article"])} if it.get("source") == "mismatched" else None
            found = kb.search(it["question"], cfg.k_dense, cfg.k_bm25, cfg.rrf_k,
                              top=cfg.rerank_top if reranker else cfg.top_k, exclude=exclude)
            if reranker is not None and found:
                from ragtune.retrieval.rerank import rank

                found = [found[o["corpus_id"]] for o in rank(reranker, it["question"],
                                                             [h.chunk["text"] for h in found], top_k=cfg.top_k)]
            contexts.append([h.chunk["text"] for h in found[: cfg.top_k]])
            hits.append(any(h.chunk["source"] == source_of[it["context"]] for h in found[: cfg.top_k])
                        if it["answerable"] else None)
        searched = {"kb": str(kb_path), "encoder": kb.info["settings"]["model"], "rerank": cfg.rerank}
    finally:
        kb.close()
    return contexts, hits, searched


# ---------------------------------------------------------------- run


def _generate(answerer, items: list[dict[str, Any]], contexts: list[list[str]]):
    prompts = [answerer.prompt(it["question"], ctx, it.get("language", "en")) for it, ctx in zip(items, contexts,
                                                                                               strict=True)]
    return answerer.generate(prompts, progress=True)


def _score(items, gens, margin: float, hits=None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    from ragtune.evaluate.answer_metrics import exact_match, score_answers, token_f1

    refused = [g.text_final or g.signal > margin for g in gens]
    by_text = [r and g.greedy_refused for r, g in zip(refused, gens, strict=True)]  # refused in its own words
    preds = [g.text for g in gens]
    metrics = score_answers([it["answers"] for it in items], preds, refused, [it["answerable"] for it in items],
                            [it.get("language", "en") for it in items])
    metrics["refused_by_text"] = sum(by_text) / max(1, len(gens))
    metrics["refused_by_margin"] = sum(r and not t for r, t in zip(refused, by_text, strict=True)) / max(1, len(gens))
    if hits is not None:
        ans = [h for h in hits if h is not None]
        metrics["retrieval_hit"] = sum(ans) / max(1, len(ans))
        # the answerer's own share of over-refusal: answerable questions refused although their gold was retrieved
        found = [r for r, h in zip(refused, hits, strict=True) if h]
        metrics["over_refusal_gold_retrieved"] = sum(found) / max(1, len(found))
    rows = []
    for i, (it, g, r, t) in enumerate(zip(items, gens, refused, by_text, strict=True)):
        lang = it.get("language", "en")
        rows.append({"id": it.get("id"), "question": it["question"], "answerable": it["answerable"],
                     "source": it.get("source"), "answers": it["answers"], "prediction": g.text,
                     "greedy": g.greedy, "refused": r, "why": "text" if t else ("likelihood" if r else None),
                     "margin": round(g.margin, 4),
                     # unrounded: the signal sums them divided by their dev sd, which may be small
                     **({"probe_logit": g.probe_logit, "signal": g.signal} if g.probe_logit is not None else {}),
                     **({"verifier_score": g.verifier_score} if g.verifier_score is not None else {}),
                     "em": exact_match(g.text, it["answers"], lang) if it["answerable"] and not r else 0.0,
                     "f1": token_f1(g.text, it["answers"], lang) if it["answerable"] and not r else 0.0,
                     **({"gold_retrieved": hits[i]} if hits is not None else {})})
    return metrics, rows


def run_eval_rag(cfg: EvalRagConfig, log=print) -> dict[str, Any]:
    from ragtune.hardware import pick_device, set_threads
    from ragtune.rag.ask import load_answerer
    from ragtune.rag.refusal_calibration import calibration_items, choose_margin, curve_of, plot_curves

    name, all_items = load_items(cfg.data)
    items = balanced(all_items, cfg.limit)
    out = Path(cfg.out or Path("runs") / "eval-rag" / name)
    check_output(out, "--out", folder=True)  # before any answer is generated
    if cfg.json_out:
        check_output(cfg.json_out, "--json", folder=False)
    a = cfg.answerer
    set_threads(a.threads)
    answerer = load_answerer(a, pick_device(a.device))
    margin = a.refusal_margin
    report: dict[str, Any] = {"dataset": name, "split": "eval", "data": str(cfg.data),
                              "answerer": {"model": a.model, "adapter": str(a.adapter) if a.adapter else None,
                                           "refusal_probe": str(a.refusal_probe) if a.refusal_probe else None,
                                           "refusal_verifier": str(a.refusal_verifier) if a.refusal_verifier
                                           else None},
                              "num_questions": len(items), "num_answerable": sum(i["answerable"] for i in items),
                              "num_unanswerable": sum(not i["answerable"] for i in items), "results": {}}
    curves: dict[str, list[tuple[float, float, float]]] = {}
    if cfg.refusal.data is not None:
        _, dev = load_items(cfg.refusal.data)
        seen = {it["question"] for path in cfg.refusal.exclude for it in load_items(path)[1]}
        cal, info = calibration_items(cfg.refusal, dev, all_items, seen)
        t0 = time.perf_counter()
        gens = _generate(answerer, cal, [[it["context"]] for it in cal])
        margin, curves["dev"] = choose_margin(cfg.refusal, gens, cal)
        dev_metrics, dev_rows = _score(cal, gens, margin)
        write_jsonl(out / "predictions-dev.jsonl", dev_rows)  # per-question margins, for other refusal signals
        report["calibration"] = {**info, "refusal_margin": margin, "seconds": round(time.perf_counter() - t0, 1),
                                 **{f"dev_{k}": dev_metrics[k] for k in ("over_refusal", "under_refusal",
                                                                         "refused_by_text", "refused_by_margin")}}
        log(f"calibrated refusal_margin = {margin:.3f} ({cfg.refusal.target}) on {len(cal)} questions of "
            f"{cfg.refusal.data}: over-refusal {dev_metrics['over_refusal']:.3f}, "
            f"under-refusal {dev_metrics['under_refusal']:.3f}")
    report["refusal_margin"] = margin
    modes = ["gold", "retrieved"] if cfg.contexts == "both" else [cfg.contexts]
    for mode in modes:
        t0 = time.perf_counter()
        hits = None
        if mode == "gold":
            contexts = [[it["context"]] for it in items]
        else:
            contexts, hits, report["retrieval"] = retrieved_contexts(items, all_items, cfg.retrieve, out)
        gens = _generate(answerer, items, contexts)
        metrics, rows = _score(items, gens, margin, hits)
        curves[f"eval ({mode})"] = curve_of(gens, items)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        write_jsonl(out / f"predictions-{mode}.jsonl", rows)
        report["results"][mode] = metrics
        log(f"{name} {mode}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    write_json(out / "refusal_curve.json", {"refusal_margin": margin, "curves": {
        k: [{"threshold": t, "over_refusal": o, "under_refusal": u} for t, o, u in c] for k, c in curves.items()}})
    report["margin_auc"] = {k: curve_auc(c) for k, c in curves.items()}
    report["refusal_plot"] = str(plot_curves(curves, margin, out / "refusal_curve.png", title=f"{name}: over- vs "
                                             "under-refusal as the threshold moves"))
    write_json(out / "report.json", report)
    dump_config(cfg, out / "config.yaml")
    if cfg.json_out:
        write_json(cfg.json_out, report)
    report["out"] = str(out)
    return report
