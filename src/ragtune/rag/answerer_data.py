"""The answerer's training data: reading-comprehension JSON -> grounded-answer SFT records that teach refusal.

Sources: SQuAD 2.0 / CMRC 2018 JSON (`{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}`)
and Baidu WebQA JSON (`{qid: {"question", "evidences": {eid: {"answer": [...], "evidence"}}}}`).

Each record's `instruction` is a prompt holding the context and the question; its `output` is
the gold answer, or the canonical refusal of the data's language when the context does not answer the question
(prompts and phrasings: `ragtune.generate.prompts`, which `rag ask` renders too, so the answerer is served the
prompt it was trained on; `refusals=[...]` trains on several phrasings for variety).

Splits: articles (SQuAD `title`, WebQA question id) go to train or eval (`holdout_articles`), so evaluation
contexts never appear in training; `dev_questions` distinct questions of the training articles form a dev split
for calibrating the refusal threshold, and no training record asks one of them (matched on the question text), or
`dev_articles` whole training articles do, so the dev contexts are unseen in training as the evaluation's are.

Unanswerable pairs, in the share `unanswerable_fraction` of every split:
- train: drawn from three kinds in the shares `unanswerable_mix`: `native` (SQuAD `is_impossible`, WebQA
  `["no_answer"]`), `hard` (an answerable question beside the passage of its own article that BM25 ranks first
  among those holding none of its answers, as SQuAD 2.0's are written; WebQA has one evidence per question, so
  there it is the BM25-nearest evidence of another question that lacks the answer, source `hard_other`) and
  `mismatched` (a random passage of another article lacking the answer);
- dev and eval: native first, topped up with mismatched pairs (the rule the evaluation figures have always used),
  so the dev slice looks like the evaluation it calibrates for.

The eval split's passages are also written as a corpus folder, `<name>_eval_corpus/` (one JSONL file per article),
for `ragtune rag ingest` (with any encoder) and `ragtune eval rag retrieve.kb=...`.

Alpaca records forbid extra keys, so what evaluation needs sits in `<name>_<split>.meta.jsonl`, line i describing
record i: `{id, question, context, answers, answerable, source, article, context_article, language}` with source
one of answerable | impossible | no_answer | hard | hard_other | mismatched.
"""

from __future__ import annotations

import hashlib
import random
import string
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.convert_result import ConvertResult
from ragtune.data.dataset_info import register_dataset
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.formats import write_records
from ragtune.data.qa_json import QAItem, read_squad, read_webqa
from ragtune.data.qa_select import (
    UNANSWERABLE_KINDS,
    Ranker,
    hard_pairs,
    mismatched_pairs,
    questions_language,
    select,
    select_mix,
    split_articles,
    split_questions,
    with_distractors,
)
from ragtune.data.records import Alpaca
from ragtune.generate.prompts import ANSWER_PROMPTS, CANONICAL_REFUSAL, format_contexts


class QAConfig(ConfigModel):
    data: Path
    """Input JSON file."""
    out: Path
    """Output folder."""
    name: str | None = None
    """Dataset name prefix (files `<name>_train.jsonl`, dataset_info entries); default: the input's stem."""
    language: Literal["auto", "en", "zh"] = "auto"
    """Language of prompts and refusals; auto = Chinese when most question characters are CJK."""
    unanswerable_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of records whose target is a refusal, in every split."""
    mismatched: bool = True
    """Dev and eval splits: top up unanswerable pairs with questions put next to another article's context."""
    unanswerable_mix: dict[str, float] = Field(default_factory=lambda: {"native": 0.4, "hard": 0.4,
                                                                          "mismatched": 0.2})
    """Train split: shares of the unanswerable records by kind (native | hard | mismatched, see the module
    docstring); a kind with too few pairs leaves its share to the next ones in that order."""
    holdout_articles: int | list[str] = 0
    """Articles for the eval split: a count (drawn with `seed`) or their titles / ids."""
    dev_questions: int = Field(0, ge=0)
    """Distinct questions of the training articles held out as the dev split (`<name>_dev.*`), for calibrating
    the refusal threshold; no training record asks one of them. 0 = no dev split."""
    dev_articles: int | list[str] = 0
    """Whole training articles held out as the dev split instead (a count drawn with `seed`, or titles / ids):
    the dev contexts are then as new to the trained answerer as the evaluation's, which questions of articles it
    trained on are not. Excludes `dev_questions`."""
    seed: int = 0
    prompt_template: str | None = None
    """Must hold {context} and {question}; default: a per-language template."""
    refusals: list[str] | None = None
    """Refusal targets, one drawn per unanswerable record; default: the canonical refusal of the language alone
    (`ragtune.generate.prompts.CANONICAL_REFUSAL`), which greedy decoding can then say on its own."""
    system: str | None = None
    distractors: int = Field(0, ge=0, le=4)
    """Contexts of other articles put beside a record's own, all numbered in random order the way `rag ask`
    shows retrieved passages, so the answerer also learns to read several; 0 = its own context alone."""
    distractor_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of records that get distractors; the others keep the single-context prompt."""
    on_error: Literal["raise", "skip"] = "raise"
    """raise: the first bad question stops the conversion; skip: bad questions are left out, counted and listed."""

    @model_validator(mode="after")
    def _one_dev_split(self) -> QAConfig:
        if self.dev_questions and self.dev_articles:
            raise ValueError("set dev_questions (questions of the training articles) or dev_articles (whole "
                             "training articles) for the dev split, not both")
        return self

    @field_validator("prompt_template")
    @classmethod
    def _placeholders(cls, v: str | None) -> str | None:
        if v is None:
            return v
        names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if names != {"context", "question"}:
            raise ValueError(f"the template must use exactly the placeholders {{context}} and {{question}} "
                             f"(found: {', '.join(sorted(names)) or 'none'}); write literal braces as {{{{ }}}}")
        return v

    @field_validator("unanswerable_mix")
    @classmethod
    def _known_kinds(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(UNANSWERABLE_KINDS))
        if unknown:
            raise ValueError(f"unknown unanswerable kind {unknown[0]!r}; use {', '.join(UNANSWERABLE_KINDS)}")
        if any(w < 0 for w in v.values()) or not sum(v.values()) > 0:
            raise ValueError("the shares must be >= 0 and not all 0")
        return v

    @field_validator("refusals")
    @classmethod
    def _some_refusals(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not [r for r in v if r.strip()]:
            raise ValueError("give at least one non-empty refusal")
        return v


class SquadSFTConfig(QAConfig):
    """SQuAD 2.0 (or CMRC 2018, same layout) JSON -> grounded-answer SFT."""


class WebQASFTConfig(QAConfig):
    """Baidu WebQA JSON -> grounded-answer SFT."""


# ---------------------------------------------------------------- building


def _to_record(item: QAItem, contexts: list[str], template: str, refusals: list[str], system: str | None,
               rng: random.Random) -> Alpaca:
    output = item.answers[0] if item.answerable else rng.choice(refusals)
    return Alpaca(instruction=template.format(context=format_contexts(contexts), question=item.question),
                  output=output, system=system)


def article_file(article: str) -> str:
    """The corpus file of an article's passages (a hash: article titles may hold any character)."""
    return f"{hashlib.sha1(article.encode()).hexdigest()[:12]}.jsonl"


def eval_corpus(items: list[dict[str, Any]]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The passages of meta rows as a corpus: ({file: {doc id: passage}}, {passage: "file#doc id"}), one file per
    article (that of the passage, `context_article`), ids p0, p1, ... in row order. `ragtune eval rag` ingests
    it, and finds the gold passage and a question's own article among the retrieved chunks by these names."""
    files: dict[str, dict[str, str]] = {}
    source_of: dict[str, str] = {}
    for it in items:
        name = article_file(it.get("context_article") or it["article"])
        if it["context"] not in source_of:
            pid = f"p{len(source_of)}"
            files.setdefault(name, {})[pid] = it["context"]
            source_of[it["context"]] = f"{name}#{pid}"
    return files, source_of


def write_eval_corpus(items: list[dict[str, Any]], folder: Path) -> dict[str, str]:
    """Write `eval_corpus(items)` as JSONL corpus files (`{"_id", "text"}`) into `folder` (for `ragtune rag
    ingest`); returns {passage: source}."""
    files, source_of = eval_corpus(items)
    for name, docs in files.items():
        write_jsonl(folder / name, ({"_id": pid, "text": text} for pid, text in docs.items()))
    return source_of


def _meta(item: QAItem, language: str) -> dict[str, Any]:
    return {"id": item.id, "question": item.question, "context": item.context, "answers": list(item.answers),
            "answerable": item.answerable, "source": item.source, "article": item.article,
            "context_article": item.context_article, "language": language}


def bm25_ranker(contexts: list[str], language: str) -> Ranker:
    """Ranks candidate passages (drawn from `contexts`) for a question by BM25 (jieba words for Chinese)."""
    from ragtune.data.records import Doc
    from ragtune.retrieval.bm25 import BM25Config, BM25Retriever

    ids = {c: f"c{i}" for i, c in enumerate(dict.fromkeys(contexts))}
    bm25 = BM25Retriever(BM25Config(language="zh" if language == "zh" else "en"))
    bm25.index(Doc(_id=i, text=c) for c, i in ids.items())

    def rank(question: str, candidates: list[str]) -> list[int]:
        scores = bm25.score_docs(question, [ids[c] for c in candidates])
        return sorted(range(len(candidates)), key=lambda k: (-scores[k], k))

    return rank


def _choose(split: str, items: list[QAItem], cfg: QAConfig, language: str, rng: random.Random) -> list[QAItem]:
    if split != "train":  # dev and eval: the evaluation's rule (native first, mismatched top-up)
        return select(items, cfg.unanswerable_fraction, cfg.mismatched, rng)
    mix = cfg.unanswerable_mix
    pools = {"native": [i for i in items if not i.answerable],
             "hard": hard_pairs(items, bm25_ranker([i.context for i in items], language))
             if mix.get("hard", 0) > 0 and cfg.unanswerable_fraction > 0 else [],
             "mismatched": mismatched_pairs(items, rng)
             if mix.get("mismatched", 0) > 0 and cfg.unanswerable_fraction > 0 else []}
    return select_mix(items, cfg.unanswerable_fraction, mix, pools, rng)


def build_qa_sft(items: list[QAItem], cfg: QAConfig, kind: str, skipped: ProblemLog | None = None
                 ) -> ConvertResult:
    """Split by article (and dev questions), balance answerable/unanswerable, write records + meta +
    dataset_info + config."""
    if not items:
        raise DataFormatError(cfg.data, None, "no questions found", hint="check the file is the expected format")
    language = questions_language(items) if cfg.language == "auto" else cfg.language
    resolved = cfg.model_copy(update={"language": language,
                                      "prompt_template": cfg.prompt_template or ANSWER_PROMPTS[language],
                                      "refusals": [r for r in (cfg.refusals or [CANONICAL_REFUSAL[language]])
                                                   if r.strip()]})
    name = cfg.name or Path(cfg.data).stem
    out = Path(cfg.out)
    train_articles, eval_articles = split_articles(items, cfg.holdout_articles, cfg.seed)
    held = set(eval_articles)
    dev_articles: list[str] = []
    if cfg.dev_articles:
        train_articles, dev_articles = split_articles([i for i in items if i.article not in held], cfg.dev_articles,
                                                      cfg.seed + 1, "dev_articles")
        dev_items = [i for i in items if i.article in set(dev_articles)]
        asked = {i.question for i in dev_items}  # a question text asked in two articles stays on the dev side
        train_items = [i for i in items if i.article in set(train_articles) and i.question not in asked]
    else:
        dev_items, train_items = split_questions([i for i in items if i.article not in held], cfg.dev_questions,
                                                 cfg.seed)
    counts: dict[str, float] = {"questions read": len({(i.article, i.question) for i in items}),
                                "articles (train)": len(train_articles), "articles (eval)": len(eval_articles)}
    if dev_articles:
        counts["articles (dev)"] = len(dev_articles)
    if skipped is not None:
        counts["bad questions skipped"] = skipped.total
    outputs: list[Path] = []
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    if cfg.system is not None:
        columns["system"] = "system"
    for split, split_items in (("train", train_items), ("dev", dev_items),
                               ("eval", [i for i in items if i.article in held])):
        if not split_items:
            continue
        rng = random.Random(f"{cfg.seed}:{split}")
        chosen = _choose(split, split_items, cfg, language, rng)
        stem = f"{name}_{split}"
        side = random.Random(f"{cfg.seed}:{split}:distractors")  # leaves `rng`'s draws as without distractors
        pool = list(dict.fromkeys((i.article, i.context) for i in split_items))
        contexts = [with_distractors(i, pool, cfg.distractors, side)
                    if cfg.distractors and side.random() < cfg.distractor_fraction else [i.context] for i in chosen]
        records = [_to_record(i, ctx, resolved.prompt_template, resolved.refusals, cfg.system, rng)
                   for i, ctx in zip(chosen, contexts, strict=True)]
        write_records(out / f"{stem}.jsonl", records)
        rows = [_meta(i, language) for i in chosen]
        write_jsonl(out / f"{stem}.meta.jsonl", rows)
        if split == "eval":  # the knowledge base `rag ingest` builds for `eval rag retrieve.kb=...`
            write_eval_corpus(rows, out / f"{stem}_corpus")
            outputs.append(out / f"{stem}_corpus")
        register_dataset(out, stem, f"{stem}.jsonl", "alpaca", columns=columns)
        outputs += [out / f"{stem}.jsonl", out / f"{stem}.meta.jsonl"]
        n_u = sum(not i.answerable for i in chosen)
        if cfg.distractors:
            counts[f"{split} with distractors"] = sum(len(c) > 1 for c in contexts)
        counts |= {f"{split} records": len(chosen), f"{split} unanswerable": n_u,
                   **{f"{split} {source}": sum(i.source == source for i in chosen)
                      for source in ("hard", "hard_other", "mismatched") if split == "train" or source == "mismatched"},
                   f"{split} unanswerable fraction": round(n_u / len(chosen), 4) if chosen else 0.0}
    write_json(out / f"{name}_articles.json", {"train": train_articles, "eval": eval_articles, "dev": dev_articles,
                                              "dev_questions": sorted({i.question for i in dev_items})})
    outputs += [out / f"{name}_articles.json", out / "dataset_info.json",
                dump_config(resolved, out / f"{kind}.config.yaml")]
    return ConvertResult(counts, outputs, skipped)


def _skip_log(cfg: QAConfig) -> ProblemLog | None:
    return ProblemLog(limit=10) if cfg.on_error == "skip" else None


def squad_to_sft(cfg: SquadSFTConfig) -> ConvertResult:
    skipped = _skip_log(cfg)
    return build_qa_sft(read_squad(cfg.data, skipped), cfg, "squad-sft", skipped)


def webqa_to_sft(cfg: WebQASFTConfig) -> ConvertResult:
    skipped = _skip_log(cfg)
    return build_qa_sft(read_webqa(cfg.data, skipped), cfg, "webqa-sft", skipped)
