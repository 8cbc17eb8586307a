"""LLaMA-Factory command lines -> ragtune's `train generator` config.

    ragtune train generator --from-llamafactory --stage sft --model_name_or_path M --do_train --dataset NAME ...

`train_bash.py` / `llamafactory-cli train` arguments (`--key value`, `--key=value`, a bare `--flag` = true, or a
leading YAML/JSON file of them) become one config dict; LLaMA-Factory's key names are translated by the alias table
(ragtune.aliases) when the stage's config is built. What cannot run on this machine as asked is adapted with a
notice: `--fp16` without a CUDA GPU trains in float32, `--deepspeed` without CUDA GPUs trains without DeepSpeed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError, notice, read_yaml
from ragtune.data.jsonl import read_json

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_value(text: str) -> Any:
    """A command-line value as LLaMA-Factory's HfArgumentParser reads it: booleans, None, numbers, else text."""
    if text in {"True", "true"}:
        return True
    if text in {"False", "false"}:
        return False
    if text in {"None", "null"}:
        return None
    if _NUMBER.match(text):
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    return text


def parse_lf_args(argv: list[str]) -> dict[str, Any]:
    """`[config.yaml] --key value --flag --key=value ...` -> {key: value}; later keys win."""
    args = list(argv)
    data: dict[str, Any] = {}
    if args and not args[0].startswith("-"):
        first = Path(args.pop(0))
        if first.suffix == ".json":
            data = read_json(first, hint="a JSON object of LLaMA-Factory arguments")
            if not isinstance(data, dict):
                raise ConfigError(f"{first}: expected a JSON object of LLaMA-Factory arguments, got "
                                  f"{type(data).__name__}")
        elif first.suffix in {".yaml", ".yml"}:
            data = read_yaml(first)
        else:
            raise ConfigError(f'"{first}": LLaMA-Factory arguments start with --key (or a .yaml/.json file of them)')
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f'"{token}": expected a LLaMA-Factory argument --key [value]')
        key, eq, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            data[key] = parse_value(value)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            data[key] = parse_value(args[i + 1])
            i += 1
        else:
            data[key] = True
        i += 1
    return data


def adapt_to_machine(data: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """Drop what this machine cannot do as asked, each with a notice (the rest is validated by the stage)."""
    out = dict(data)
    if out.get("fp16") and not cuda:
        out.pop("fp16")
        notice("--fp16: fp16 mixed precision needs a CUDA GPU and none is here; training in float32")
    if out.get("deepspeed") and not cuda:
        notice(f"--deepspeed {out.pop('deepspeed')}: DeepSpeed shards training over CUDA GPUs and none is here; "
               "training in one process without it")
    return out


def translate(argv: list[str], cuda: bool | None = None) -> dict[str, Any]:
    """The `ragtune train generator` config of a LLaMA-Factory argument list, adapted to this machine."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    data = parse_lf_args(argv)
    if "stage" not in data:
        data["stage"] = "sft"  # LLaMA-Factory's default stage
    return adapt_to_machine(data, cuda)


def as_command(data: dict[str, Any]) -> str:
    """The ragtune command line equivalent to `data`, for the user to read (and reuse)."""
    def show(v: Any) -> str:
        text = json.dumps(v) if not isinstance(v, str) else v
        return f"'{text}'" if re.search(r"[\s'\"\\]", text) else text

    return "ragtune train generator " + " ".join(f"{k}={show(v)}" for k, v in data.items())


def command_parts(args: list[str], from_llamafactory: bool) -> tuple[Path | None, list[str], dict[str, Any] | None]:
    """`ragtune train generator` arguments -> (CONFIG.yaml or None, key=value overrides, translated LLaMA-Factory
    config or None). Without --from-llamafactory a `--key` is an error that points at that flag."""
    rest = list(args)
    if from_llamafactory:
        return None, [], translate(rest)
    flag = next((a for a in rest if a.startswith("--")), None)
    if flag is not None:
        raise ConfigError(f'"{flag}" is not an option of ragtune train generator; for a LLaMA-Factory command line '
                          "add --from-llamafactory, else write key=value")
    config = Path(rest.pop(0)) if rest and "=" not in rest[0] else None
    return config, rest, None
