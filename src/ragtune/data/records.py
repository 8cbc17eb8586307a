"""Typed records for every JSONL format of DESIGN.md, with file:line validation.

Each record class carries a HINT telling the user what a valid line looks like;
`parse_record` turns pydantic's errors into DataFormatError/Problem entries that name
the file, the line, the field, the fields that were found and the closest valid name.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ragtune.data.errors import ProblemLog, report


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("empty text")
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]


WHITESPACE = re.compile(r"\s")
"""Matches exactly what str.isspace() (and so str.split()) treats as whitespace."""


def _id(value: str) -> str:
    _non_empty(value)
    if WHITESPACE.search(value):
        raise ValueError("ids must not contain whitespace (TREC runs separate columns by it, so such an id could "
                         f"not be read back); got {value!r}")
    return value


Id = Annotated[str, AfterValidator(_id)]
"""A document or query id: non-empty, no whitespace of any kind (what str.split() would split on)."""


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, coerce_numbers_to_str=True,
                              frozen=True)
    HINT: ClassVar[str] = ""


# ---------------------------------------------------------------- BEIR


class Doc(Record):
    """A corpus document. Empty ones (no title, no text) are valid, as in BEIR: public collections hold some
    and their qrels judge them; `iter_corpus` counts them and warns."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True, frozen=True)
    HINT: ClassVar[str] = 'BEIR corpus lines need "_id", "text" and optional "title"'
    id: Id = Field(alias="_id")
    title: str = ""
    text: str

    @property
    def empty(self) -> bool:
        return not self.text.strip() and not self.title.strip()

    @property
    def content(self) -> str:
        """Title and text joined, as BEIR's retrievers index them."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


class Query(Record):
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True, frozen=True)
    HINT: ClassVar[str] = 'BEIR query lines need "_id" and "text"'
    id: Id = Field(alias="_id")
    text: NonEmptyStr


# ---------------------------------------------------------------- SFT


class Alpaca(Record):
    HINT: ClassVar[str] = 'alpaca lines need "instruction" and "output", optional "input", "system", "history"'
    instruction: NonEmptyStr
    input: str = ""
    output: NonEmptyStr
    system: str | None = None
    history: list[tuple[str, str]] | None = None


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A model-level error that still names its field (see `_describe`)."""
    return PydanticCustomError("record_field", message, {"field": field})


def _key(cls: type[BaseModel], name: str) -> str:
    """The JSON key of field `name` (its alias, when a dataset_info column mapping renamed it)."""
    return cls.model_fields[name].alias or name


class Turn(Record):
    HINT: ClassVar[str] = 'sharegpt turns are {"from": "human"|"gpt"|"system"|..., "value": "..."}'
    ROLES: ClassVar[frozenset[str]] = frozenset(
        {"human", "gpt", "system", "observation", "function_call", "user", "assistant"})
    role: str = Field(alias="from")
    value: str

    @model_validator(mode="after")
    def _known_role(self) -> Turn:
        if self.role not in self.ROLES:
            raise _field_error(_key(type(self), "role"),
                               f'unknown role "{self.role}"; allowed: {", ".join(sorted(self.ROLES))}')
        return self


class ShareGPT(Record):
    HINT: ClassVar[str] = 'sharegpt lines need "conversations": [{"from", "value"}, ...] and optional "system"'
    conversations: list[Turn] = Field(min_length=2)
    system: str | None = None
    tools: str | None = None


class ShareGPTPreference(Record):
    HINT: ClassVar[str] = ('sharegpt preference lines need "conversations": [{"from", "value"}, ...], '
                           '"chosen": {"from": "gpt", "value"} and "rejected": {"from": "gpt", "value"}')
    conversations: list[Turn] = Field(min_length=1)
    chosen: Turn
    rejected: Turn
    system: str | None = None
    tools: str | None = None


# ---------------------------------------------------------------- preference


class Preference(Record):
    HINT: ClassVar[str] = ('preference lines need "instruction", "chosen", "rejected" (optional "input"), '
                           'or LLaMA-Factory ranking rows with "output": [chosen, rejected]')
    instruction: NonEmptyStr
    input: str = ""
    chosen: NonEmptyStr
    rejected: NonEmptyStr
    system: str | None = None
    history: list[tuple[str, str]] | None = None
    RESPONSE: ClassVar[str] = "output"
    """Key of the LLaMA-Factory ranking-row list (its `columns.response`)."""

    @model_validator(mode="before")
    @classmethod
    def _ranking_row(cls, data: Any) -> Any:
        chosen, rejected = _key(cls, "chosen"), _key(cls, "rejected")
        if isinstance(data, dict) and cls.RESPONSE in data and chosen not in data:
            out = data[cls.RESPONSE]
            if not (isinstance(out, list) and len(out) == 2):
                got = f"a list of {len(out)}" if isinstance(out, list) else type(out).__name__
                raise _field_error(cls.RESPONSE, f'"{cls.RESPONSE}" of a ranking row must be a list '
                                   f"[chosen, rejected] of 2 answers (got {got})")
            data = {k: v for k, v in data.items() if k != cls.RESPONSE} | {chosen: out[0], rejected: out[1]}
        return data


# ---------------------------------------------------------------- embedding


class Embedding(Record):
    HINT: ClassVar[str] = ('embedding lines need "query" and "pos": [..], optional "neg": [..], '
                           '"scores": [..] (one per pos, then per neg), "prompt_for_query" and "weight"')
    query: NonEmptyStr
    pos: list[NonEmptyStr] = Field(min_length=1)
    neg: list[NonEmptyStr] | None = None
    scores: list[StrictFloat] | None = None
    prompt_for_query: str | None = None
    weight: float | None = Field(None, gt=0)
    """Weight of this record's examples in a contrastive loss (a curriculum; mean 1 keeps the loss scale)."""

    @model_validator(mode="after")
    def _scores_align(self) -> Embedding:
        if self.scores is not None:
            n = len(self.pos) + len(self.neg or [])
            if len(self.scores) != n:
                raise _field_error("scores", f'"scores" has {len(self.scores)} values but pos+neg hold {n} '
                                   "passages")
        return self


class TeacherQuery(Record):
    HINT: ClassVar[str] = 'teacher-distillation lines need "query" (its vector is the same row of the .npy)'
    query: NonEmptyStr
    prompt_for_query: str | None = None


# ---------------------------------------------------------------- reranker


class RerankerPoint(Record):
    HINT: ClassVar[str] = 'pointwise reranker lines need "query", "content" and a numeric "label"'
    query: NonEmptyStr
    content: NonEmptyStr
    label: StrictFloat


class Hit(Record):
    HINT: ClassVar[str] = 'hits are {"content": "...", "label": number}'
    content: NonEmptyStr
    label: StrictFloat


class RerankerGroup(Record):
    HINT: ClassVar[str] = 'grouped reranker lines need "query" and "hits": [{"content", "label"}, ...]'
    query: NonEmptyStr
    hits: list[Hit] = Field(min_length=1)


R = TypeVar("R", bound=Record)


def _has(node: dict | list, part: Any) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and 0 <= part < len(node)


def _describe(err: dict, obj: dict, cls: type[Record]) -> tuple[str, str | None]:
    """One pydantic error -> (message, field path)."""
    loc = [str(p) for p in err.get("loc", ()) if p != "__root__"]
    named = (err.get("ctx") or {}).get("field")  # set by _field_error for model-level checks
    field = ".".join([*loc, named] if named else loc) or None
    kind = err.get("type", "")
    if kind == "missing":
        node: Any = obj
        for part in err.get("loc", ())[:-1]:  # the object that lacks the field, e.g. a sharegpt turn
            node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
        found = ", ".join(sorted(map(str, node))) if isinstance(node, dict) and node else "nothing"
        return f'missing field "{field}" (found: {found})', field
    if kind == "extra_forbidden":
        names = [f.alias or n for n, f in cls.model_fields.items()]
        close = difflib.get_close_matches(loc[-1], names, n=1)
        guess = f'; did you mean "{close[0]}"?' if close else ""
        return f'unknown field "{field}"{guess}', field
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    if named or not loc:  # model-level error: the message already says what is wrong
        return msg, field
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f'field "{field}": {msg} (got {shown})', field


def parse_record(cls: type[R], obj: dict, path: str | Path, line: int | None,
                 problems: ProblemLog | None = None) -> R | None:
    """Validate one decoded JSON object; None (and problems recorded) when invalid."""
    try:
        return cls.model_validate(obj, by_alias=True, by_name=False)
    except ValidationError as e:
        for err in e.errors():
            msg, field = _describe(err, obj, cls)
            report(problems, path, line, msg, field=field, hint=cls.HINT)
            if problems is None:
                break
        return None
