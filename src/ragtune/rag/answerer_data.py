"""The answerer's training data: reading-comprehension JSON -> grounded-answer SFT records that teach refusal.

Sources: SQuAD 2.0 / CMRC 2018 JSON (`{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}`)
and Baidu WebQA JSON (`{qid: {"question", "evidences": {eid: {"answer": [...], "evidence"}}}}`).

Each record's `instruction` is a prompt holding the context and the question; its `output` is
the gold answer, or one of several refusal phrasings in the data's language when the context
does not answer the question (prompts and phrasings: `ragtune.generate.prompts`, which `rag ask` renders
too, so the answerer is served the prompt it was trained on). Unanswerable pairs are the source's own
(SQuAD `is_impossible`, WebQA `["no_answer"]`), topped up, when those are too few for `unanswerable_fraction`, with
questions paired with a context of another article (one that does not contain their answer).

Articles (SQuAD `title`, WebQA question id) are split into train and eval with
`holdout_articles`, so evaluation contexts never appear in training. Alpaca records forbid
extra keys, so what evaluation needs sits in `<name>_<split>.meta.jsonl`, line i describing
record i: `{id, question, context, answers, answerable, source, article, context_article, language}`
with source one of answerable | impossible | no_answer | mismatched.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.convert_result import ConvertResult
from ragtune.data.dataset_info import register_dataset
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.formats import write_records
from ragtune.data.qa_json import QAItem, read_squad, read_webqa
from ragtune.data.qa_select import questions_language, select, split_articles, with_distractors
from ragtune.data.records import Alpaca
from ragtune.generate.prompts import ANSWER_PROMPTS, REFUSALS, format_contexts


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
    """Top up unanswerable pairs with questions put next to another article's context."""
    holdout_articles: int | list[str] = 0
    """Articles for the eval split: a count (drawn with `seed`) or their titles / ids."""
    seed: int = 0
    prompt_template: str | None = None
    """Must hold {context} and {question}; default: a per-language template."""
    refusals: list[str] | None = None
    """Refusal targets, one drawn per unanswerable record; default: five per language."""
    system: str | None = None
    distractors: int = Field(0, ge=0, le=4)
    """Contexts of other articles put beside a record's own, all numbered in random order the way `rag ask`
    shows retrieved passages, so the answerer also learns to read several; 0 = its own context alone."""
    distractor_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Share of records that get distractors; the others keep the single-context prompt."""
    on_error: Literal["raise", "skip"] = "raise"
    """raise: the first bad question stops the conversion; skip: bad questions are left out, counted and listed."""

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


def _meta(item: QAItem, language: str) -> dict[str, Any]:
    return {"id": item.id, "question": item.question, "context": item.context, "answers": list(item.answers),
            "answerable": item.answerable, "source": item.source, "article": item.article,
            "context_article": item.context_article, "language": language}


def build_qa_sft(items: list[QAItem], cfg: QAConfig, kind: str, skipped: ProblemLog | None = None
                 ) -> ConvertResult:
    """Split by article, balance answerable/unanswerable, write records + meta + dataset_info + config."""
    if not items:
        raise DataFormatError(cfg.data, None, "no questions found", hint="check the file is the expected format")
    language = questions_language(items) if cfg.language == "auto" else cfg.language
    resolved = cfg.model_copy(update={"language": language,
                                      "prompt_template": cfg.prompt_template or ANSWER_PROMPTS[language],
                                      "refusals": [r for r in (cfg.refusals or REFUSALS[language]) if r.strip()]})
    name = cfg.name or Path(cfg.data).stem
    out = Path(cfg.out)
    train_articles, eval_articles = split_articles(items, cfg.holdout_articles, cfg.seed)
    counts: dict[str, float] = {"questions read": len({(i.article, i.question) for i in items}),
                                "articles (train)": len(train_articles), "articles (eval)": len(eval_articles)}
    if skipped is not None:
        counts["bad questions skipped"] = skipped.total
    outputs: list[Path] = []
    columns = {"prompt": "instruction", "query": "input", "response": "output"}
    if cfg.system is not None:
        columns["system"] = "system"
    for split, articles in (("train", train_articles), ("eval", eval_articles)):
        if not articles:
            continue
        keep = set(articles)
        rng = random.Random(f"{cfg.seed}:{split}")
        chosen = select([i for i in items if i.article in keep], cfg.unanswerable_fraction, cfg.mismatched, rng)
        stem = f"{name}_{split}"
        side = random.Random(f"{cfg.seed}:{split}:distractors")  # leaves `rng`'s draws as without distractors
        pool = list(dict.fromkeys((i.article, i.context) for i in items if i.article in keep))
        contexts = [with_distractors(i, pool, cfg.distractors, side)
                    if cfg.distractors and side.random() < cfg.distractor_fraction else [i.context] for i in chosen]
        records = [_to_record(i, ctx, resolved.prompt_template, resolved.refusals, cfg.system, rng)
                   for i, ctx in zip(chosen, contexts, strict=True)]
        write_records(out / f"{stem}.jsonl", records)
        write_jsonl(out / f"{stem}.meta.jsonl", (_meta(i, language) for i in chosen))
        register_dataset(out, stem, f"{stem}.jsonl", "alpaca", columns=columns)
        outputs += [out / f"{stem}.jsonl", out / f"{stem}.meta.jsonl"]
        n_u = sum(not i.answerable for i in chosen)
        if cfg.distractors:
            counts[f"{split} with distractors"] = sum(len(c) > 1 for c in contexts)
        counts |= {f"{split} records": len(chosen), f"{split} unanswerable": n_u,
                   f"{split} mismatched": sum(i.source == "mismatched" for i in chosen),
                   f"{split} unanswerable fraction": round(n_u / len(chosen), 4) if chosen else 0.0}
    write_json(out / f"{name}_articles.json", {"train": train_articles, "eval": eval_articles})
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
