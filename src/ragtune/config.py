"""Config: one pydantic class per command, YAML files plus dotted key=value overrides.

    cfg = load_config(EvalConfig, "eval.yaml", ["bm25.k1=0.9", "split=dev"])

Unknown keys and wrong values raise ConfigError naming the key, the allowed values and
the closest match; `dump_config` writes the resolved config next to an output.
"""

from __future__ import annotations

import difflib
import logging
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Tag, ValidationError, model_validator

from ragtune.aliases import alias_keys, apply_aliases
from ragtune.atomic import atomic_open

NOTICES = logging.getLogger("ragtune.notice")


def notice(message: str) -> None:
    """One line on stderr about something the user asked for that ragtune does differently (never silent)."""
    NOTICES.warning(message)


class ConfigError(ValueError):
    """A config problem the user can fix; the CLI prints it without a traceback."""


def split_commas(value: object) -> object:
    """`"a,b"` -> `["a", "b"]`, anything else unchanged: list fields accept a comma list on the command line.

    Use as `Annotated[list[str], CommaList]`.
    """
    return [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value


CommaList = BeforeValidator(split_commas)


class ConfigModel(BaseModel):
    """Base for every command's config: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
    ALIASES: typing.ClassVar[tuple[str, ...]] = ()
    """Families of other tools' key names this config accepts (ragtune.aliases)."""

    @model_validator(mode="before")
    @classmethod
    def _their_names(cls, data: Any) -> Any:
        data, notices = apply_aliases(cls.ALIASES, data, cls.model_fields)
        for line in notices:
            notice(line)
        return data


C = TypeVar("C", bound=ConfigModel)


def _band(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"a band is [low, high] with 0 <= low < high <= 1; got [{low}, {high}]")
    return value


Band = Annotated[tuple[float, float], AfterValidator(_band)]
"""A difficulty band [low, high] inside [0, 1], low < high."""


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f'override "{item}" must look like key=value (dotted keys for nesting, e.g. bm25.k1=0.9)')
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f'override "{item}" has an empty key')
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key; a numeric part indexes into a list (`filters.0.k=30`)."""
    for item in overrides:
        keys, value = parse_override(item)
        node: Any = data
        for depth, k in enumerate(keys):
            last = depth == len(keys) - 1
            if isinstance(node, list):
                if not k.isdigit() or int(k) >= len(node):
                    raise ConfigError(f'override "{item}": "{".".join(keys[:depth])}" is a list of {len(node)} '
                                      f"items; index it with 0..{len(node) - 1}")
                k = int(k)
                if last:
                    node[k] = value
                elif not isinstance(node[k], (dict, list)):
                    node[k] = {}
                node = node[k]
                continue
            if last:
                node[k] = value
            else:
                if not isinstance(node.get(k), (dict, list)):
                    node[k] = {}
                node = node[k]
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of key: value, got {type(data).__name__}")
    return data


def _tagged_members(annotation: Any) -> dict[str, type[BaseModel]]:
    """{tag: model} of a union whose members are `Annotated[Model, Tag("...")]` (a callable discriminator)."""
    out = {}
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            model, *meta = typing.get_args(arg)
            out |= {m.tag: model for m in meta if isinstance(m, Tag)}
        else:
            out |= _tagged_members(arg)
    return out


def _field_at(cls: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, Any, tuple]:
    """Walk `loc` through nested models: (model owning the last key, that key's annotation, `loc` without the tags
    pydantic inserts for tagged unions)."""
    model: type[BaseModel] | None = cls
    annotation: Any = None
    clean: list = []
    for i, part in enumerate(loc):
        members = _tagged_members(annotation) if clean else {}
        if isinstance(part, str) and part in members:  # the union member pydantic chose, not a key
            model = members[part]
            continue
        clean.append(part)
        if model is None or not isinstance(part, str):
            return None, None, tuple(clean) + tuple(loc[i + 1:])
        owner = model
        field = owner.model_fields.get(part)
        if field is None:
            return owner, None, tuple(clean) + tuple(loc[i + 1:])
        annotation = field.annotation
        model = _model_in(annotation)
        if i == len(loc) - 1:
            return owner, annotation, tuple(clean)
    return model, annotation, tuple(clean)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _literal_values(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    out: list[str] = []
    for arg in typing.get_args(annotation):
        out += _literal_values(arg)
    return out


def _explain(cls: type[ConfigModel], err: dict, label: str, prefix: str = "") -> str:
    loc = tuple(err.get("loc", ()))
    if not loc:  # a model-level check (or a nested config's own error): its message already names the key
        return str(err.get("msg", "invalid config")).removeprefix("Value error, ")
    owner, annotation, loc = _field_at(cls, loc)
    key = ".".join([prefix, *map(str, loc)] if prefix else map(str, loc))
    if err["type"] == "extra_forbidden":
        names = list(owner.model_fields) if owner else []
        theirs = alias_keys(getattr(owner, "ALIASES", ()))
        close = difflib.get_close_matches(str(loc[-1]), names + theirs, n=1, cutoff=0.5)
        guess = f'; did you mean "{".".join([*([prefix] if prefix else []), *map(str, loc[:-1]), close[0]])}"?' \
            if close else ""
        section = next((str(p) for p in reversed(loc[:-1]) if isinstance(p, str)), label)  # the nested config
        return f'unknown key "{key}" in {section} config{guess} (allowed here: {", ".join(names)})'
    got = err.get("input")
    if err["type"] == "union_tag_invalid":  # a discriminated union: `name: bm25 | dense | ...`
        ctx = err.get("ctx", {})
        tags = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
        tag = str(ctx.get("tag", ""))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.5)
        guess = f'; did you mean "{close[0]}"?' if close else ""
        field = str(ctx.get("discriminator", "name")).strip(chr(39)).removeprefix("_").removesuffix("()")
        return f'key "{key}.{field}": got {tag!r}; allowed values: ' \
               f'{", ".join(tags)}{guess}'
    allowed = _literal_values(annotation)
    if allowed:
        close = difflib.get_close_matches(str(got), allowed, n=1, cutoff=0.5)
        guess = f'; did you mean "{close[0]}"?' if close else ""
        return f'key "{key}": got {got!r}; allowed values: {", ".join(allowed)}{guess}'
    if err["type"] == "missing":
        return f'key "{key}" is required in {label} config'
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) and got is not None else ""
    return f'key "{key}": {msg}{shown}'


def build_config(cls: type[C], data: dict[str, Any], label: str | None = None, prefix: str = "") -> C:
    """Validate `data` into `cls`; `prefix` names where these keys sit in an enclosing config (e.g. "sft")."""
    label = label or cls.__name__.removesuffix("Config").lower()
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        lines = [_explain(cls, err, label, prefix) for err in e.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> C:
    """defaults < YAML file < key=value overrides, validated into `cls`."""
    data: dict[str, Any] = dict(defaults or {})
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
    data = apply_overrides(data, list(overrides or []))
    return build_config(cls, data)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dump_config(cfg: BaseModel, path: str | Path) -> Path:
    """Write the resolved config (every default filled in) as YAML, atomically."""
    path = Path(path)
    with atomic_open(path) as f:
        yaml.safe_dump(cfg.model_dump(mode="json"), f, sort_keys=False, allow_unicode=True)
    return path
