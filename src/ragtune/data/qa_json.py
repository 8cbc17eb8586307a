"""Reading-comprehension JSON readers: SQuAD 1.1/2.0 and CMRC 2018 (same layout), Baidu WebQA.

Both yield `QAItem`s, one per (question, context) pair, with the gold answers, an `answerable`
flag and the article the pair belongs to (SQuAD `title`, WebQA question id). Errors name the
JSON path of the bad value (`data[2].paragraphs[0].qas[3].question`); with a ProblemLog a bad
question is recorded and skipped instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.jsonl import unreadable


@dataclass(frozen=True)
class QAItem:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    answerable: bool
    article: str
    source: str
    context_article: str = ""


def _load_json(path: Path, hint: str) -> Any:
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise DataFormatError(path, None, "not UTF-8 text", hint="re-encode the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}", hint=hint) from None
    except (RecursionError, ValueError) as e:  # absurd nesting; an integer over Python's digit limit
        raise DataFormatError(path, None, unreadable(e), hint=hint) from None


def _get(obj: Any, key: str, kind: type, path: Path, at: str, hint: str) -> Any:
    """obj[key] checked for type; errors name the JSON path, e.g. data[2].paragraphs[0].qas[3].question."""
    where = f"{at}.{key}" if at else key
    if not isinstance(obj, dict):
        raise DataFormatError(path, None, f"{at or 'top level'}: expected an object, got {type(obj).__name__}",
                              field=at or None, hint=hint)
    if key not in obj:
        raise DataFormatError(path, None, f'{where}: missing (found: {", ".join(sorted(obj)) or "nothing"})',
                              field=where, hint=hint)
    value = obj[key]
    if not isinstance(value, kind):
        raise DataFormatError(path, None, f"{where}: expected {kind.__name__}, got {type(value).__name__}",
                              field=where, hint=hint)
    return value


SQUAD_HINT = ('SQuAD JSON is {"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", '
              '"answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}')
WEBQA_HINT = 'WebQA JSON is {qid: {"question", "evidences": {eid: {"answer": [...] or ["no_answer"], "evidence"}}}}'


def _keep_going(problems: ProblemLog | None, e: DataFormatError) -> None:
    """Strict: re-raise. Skipping: record the bad item and go on with the next."""
    if problems is None:
        raise e
    problems.add(e.problem)


def read_squad(path: str | Path, problems: ProblemLog | None = None) -> list[QAItem]:
    """Every (question, its paragraph) pair of a SQuAD 1.1/2.0 or CMRC 2018 file.

    A bad question raises DataFormatError (field = its JSON path), or with `problems` is recorded and skipped.
    """
    path = Path(path)
    root = _load_json(path, SQUAD_HINT)
    items: list[QAItem] = []
    for a, article in enumerate(_get(root, "data", list, path, "", SQUAD_HINT)):
        at = f"data[{a}]"
        paragraphs = _get(article, "paragraphs", list, path, at, SQUAD_HINT)
        title = str(article.get("title") or article.get("id") or at)  # the split unit: never in train and eval
        for p, para in enumerate(paragraphs):
            pat = f"{at}.paragraphs[{p}]"
            context = _get(para, "context", str, path, pat, SQUAD_HINT)
            for q, qa in enumerate(_get(para, "qas", list, path, pat, SQUAD_HINT)):
                try:
                    items.append(_squad_item(qa, f"{pat}.qas[{q}]", context, title, path))
                except DataFormatError as e:
                    _keep_going(problems, e)
    return items


def _squad_item(qa: Any, qat: str, context: str, title: str, path: Path) -> QAItem:
    question = _get(qa, "question", str, path, qat, SQUAD_HINT).strip()
    impossible = bool(qa.get("is_impossible", False))
    answers = [_get(ans, "text", str, path, f"{qat}.answers[{i}]", SQUAD_HINT).strip()
               for i, ans in enumerate(_get(qa, "answers", list, path, qat, SQUAD_HINT))]
    answers = list(dict.fromkeys(a for a in answers if a))
    if not question:
        raise DataFormatError(path, None, f"{qat}.question: empty", field=f"{qat}.question", hint=SQUAD_HINT)
    if not impossible and not answers:
        raise DataFormatError(path, None, f"{qat}.answers: an answerable question needs at least one answer text "
                              '(or set "is_impossible": true)', field=f"{qat}.answers", hint=SQUAD_HINT)
    return QAItem(str(qa.get("id") or qat), question, context, () if impossible else tuple(answers),
                  not impossible, title, "impossible" if impossible else "answerable", title)


def read_webqa(path: str | Path, problems: ProblemLog | None = None) -> list[QAItem]:
    """Every (question, evidence) pair of a WebQA file; `["no_answer"]` evidences are unanswerable."""
    path = Path(path)
    root = _load_json(path, WEBQA_HINT)
    if not isinstance(root, dict):
        raise DataFormatError(path, None, f"top level: expected an object {{qid: ...}}, got {type(root).__name__}",
                              hint=WEBQA_HINT)
    items: list[QAItem] = []
    for qid, entry in root.items():
        try:
            items += _webqa_items(str(qid), entry, path)
        except DataFormatError as e:
            _keep_going(problems, e)
    return items


def _webqa_items(qid: str, entry: Any, path: Path) -> list[QAItem]:
    question = _get(entry, "question", str, path, qid, WEBQA_HINT).strip()
    if not question:
        raise DataFormatError(path, None, f"{qid}.question: empty", field=f"{qid}.question", hint=WEBQA_HINT)
    items = []
    for eid, ev in _get(entry, "evidences", dict, path, qid, WEBQA_HINT).items():
        at = f"{qid}.evidences.{eid}"
        context = _get(ev, "evidence", str, path, at, WEBQA_HINT)
        answers = [str(x).strip() for x in _get(ev, "answer", list, path, at, WEBQA_HINT) if str(x).strip()]
        if not answers:
            raise DataFormatError(path, None, f'{at}.answer: empty; use ["no_answer"] for unanswerable evidence',
                                  field=f"{at}.answer", hint=WEBQA_HINT)
        unanswerable = answers == ["no_answer"]
        items.append(QAItem(str(eid), question, context, () if unanswerable else tuple(answers),
                            not unanswerable, qid, "no_answer" if unanswerable else "answerable", qid))
    return items
