"""Reading-comprehension JSON -> grounded-answer SFT records that teach refusal.

Sources: SQuAD 2.0 / CMRC 2018 JSON (`{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}`)
and Baidu WebQA JSON (`{qid: {"question", "evidences": {eid: {"answer": [...], "evidence"}}}}`).

Each record's `instruction` is a prompt holding the context and the question; its `output` is
the gold answer, or one of several refusal phrasings in the data's language when the context
does not answer the question. Unanswerable pairs are the source's own (SQuAD `is_impossible`,
WebQA `["no_answer"]`), topped up, when those are too few for `unanswerable_fraction`, with
questions paired with a context of another article (one that does not contain their answer).

Articles (SQuAD `title`, WebQA question id) are split into train and eval with
`holdout_articles`, so evaluation contexts never appear in training. Alpaca records forbid
extra keys, so what evaluation needs sits in `<name>_<split>.meta.jsonl`, line i describing
record i: `{id, question, context, answers, answerable, source, article, context_article, language}`
with source one of answerable | impossible | no_answer | mismatched.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ragtune.atomic import write_json, write_jsonl
from ragtune.config import ConfigModel, dump_config
from ragtune.data.convert import ConvertResult
from ragtune.data.dataset_info import register_dataset
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.formats import write_records
from ragtune.data.qa_json import QAItem, read_squad, read_webqa
from ragtune.data.records import Alpaca

PROMPTS = {
    "en": ("Answer the question using only the context below. If the context does not contain the answer, "
           "say that you cannot answer.\n\nContext:\n{context}\n\nQuestion: {question}"),
    "zh": ("请只根据下面的资料回答问题。如果资料中没有答案，请直接说明无法回答。"
           "\n\n资料：\n{context}\n\n问题：{question}"),
}
REFUSALS = {
    "en": ["The context does not contain the answer to this question.",
           "I cannot answer this question from the given context.",
           "The provided passage does not say, so I can't answer.",
           "There is not enough information in the context to answer this question.",
           "The context doesn't mention this; I don't know the answer from it."],
    "zh": ["根据提供的资料，无法回答这个问题。",
           "资料中没有提到相关信息，无法作答。",
           "提供的内容不包含这个问题的答案。",
           "抱歉，给定的资料不足以回答该问题。",
           "资料里找不到答案，我无法回答。"],
}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


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


def detect_language(items: list[QAItem]) -> str:
    """"zh" when most letters of the questions are CJK characters, else "en"."""
    text = "".join(i.question for i in items[:500])
    letters = sum(ch.isalpha() for ch in text)
    return "zh" if letters and len(_CJK.findall(text)) / letters > 0.3 else "en"


def split_articles(items: list[QAItem], holdout: int | list[str], seed: int) -> tuple[list[str], list[str]]:
    """(train articles, eval articles), in file order."""
    articles = list(dict.fromkeys(i.article for i in items))
    if isinstance(holdout, int):
        if not 0 <= holdout < len(articles):
            raise ValueError(f"holdout_articles={holdout}, but the data has {len(articles)} articles; "
                             f"pass 0..{len(articles) - 1} so some remain for training")
        held = set(random.Random(seed).sample(articles, holdout))
    else:
        unknown = [a for a in holdout if a not in set(articles)]
        if unknown:
            raise ValueError(f"holdout_articles names unknown articles: {', '.join(unknown[:5])} "
                             f"(first articles: {', '.join(articles[:5])})")
        held = set(holdout)
        if len(held) == len(articles):
            raise ValueError("holdout_articles names every article; leave some for training")
    return [a for a in articles if a not in held], [a for a in articles if a in held]


def _mismatches(items: list[QAItem], rng: random.Random) -> list[QAItem]:
    """At most one mismatched pair per question: its text beside another article's context lacking its answer."""
    contexts = list(dict.fromkeys((i.article, i.context) for i in items))
    several = len({a for a, _ in contexts}) > 1
    out: list[QAItem] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        if (item.article, item.question) in seen:
            continue
        seen.add((item.article, item.question))
        for _ in range(20):  # a few tries to find a context that is really unrelated
            article, context = contexts[rng.randrange(len(contexts))]
            if (article != item.article if several else context != item.context) and \
                    not any(a in context for a in item.answers):
                out.append(replace(item, id=f"{item.id}~mismatch", context=context, answers=(), answerable=False,
                                   source="mismatched", context_article=article))
                break
    return out


def select(items: list[QAItem], fraction: float, mismatched: bool, rng: random.Random) -> list[QAItem]:
    """Answerable and unanswerable items in the ratio `fraction`, native unanswerables before mismatched ones."""
    answerable = [i for i in items if i.answerable]
    native = [i for i in items if not i.answerable]
    pool = _mismatches(items, rng) if mismatched and fraction > 0 else []
    n_a = len(answerable) if fraction < 1 else 0
    available = len(native) + len(pool)
    n_u = available if fraction >= 1 else round(n_a * fraction / (1 - fraction))
    if n_u > available:  # too few unanswerables: keep fewer answerable ones to hold the ratio
        n_u = available
        n_a = min(n_a, round(n_u * (1 - fraction) / fraction))
    chosen_native = rng.sample(native, min(n_u, len(native)))
    chosen = rng.sample(answerable, n_a) + chosen_native + rng.sample(pool, n_u - len(chosen_native))
    rng.shuffle(chosen)
    return chosen


def format_contexts(contexts: Sequence[str]) -> str:
    """One context as is; several numbered `[1] ...` separated by blank lines (as `rag ask` prompts them)."""
    if len(contexts) == 1:
        return contexts[0]
    return "\n\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, 1))


def with_distractors(item: QAItem, pool: list[tuple[str, str]], n: int, rng: random.Random) -> list[str]:
    """The item's context and `n` contexts of other articles (none holding one of its answers), shuffled."""
    own = {item.article, item.context_article}
    candidates = [c for a, c in pool if a not in own and c != item.context and not any(x in c for x in item.answers)]
    contexts = [item.context, *rng.sample(candidates, min(n, len(candidates)))]
    rng.shuffle(contexts)
    return contexts


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
    language = detect_language(items) if cfg.language == "auto" else cfg.language
    resolved = cfg.model_copy(update={"language": language,
                                      "prompt_template": cfg.prompt_template or PROMPTS[language],
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
