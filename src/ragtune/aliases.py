"""The names LLaMA-Factory, RAG-Retrieval and SPTAR's scripts give ragtune's config keys, written once.

Every config class names the families of rows it accepts (`ConfigModel.ALIASES`); before validation its input
passes through `apply_aliases`, which renames their keys to ragtune's, maps their value names (`loss_type:
pointwise_bce` -> `loss: bce`), and drops keys that mean nothing in ragtune with a one-line notice. A key that is
in no row and no field still fails with "did you mean". The README's "Coming from ..." table is this table
(tests/compat/test_readme.py keeps them equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LF, RR, SPTAR = "LLaMA-Factory", "RAG-Retrieval", "SPTAR scripts"
LF_TRAIN = ("sft", "rm", "ppo")


@dataclass(frozen=True)
class Alias:
    source: str
    """The project whose name this is."""
    key: str
    """Their key."""
    families: tuple[str, ...]
    """Config families it applies to: sft, rm, ppo (`ragtune train generator` stages), generate, embedding,
    reranker."""
    target: str | None
    """ragtune's key (dotted = nested); None: no meaning in ragtune, accepted with a notice."""
    note: str = ""
    values: Mapping[Any, Any] = field(default_factory=dict)
    """Their value -> ragtune's value; a dict value sets several keys instead (`mixed_precision: bf16`)."""


ALIASES: tuple[Alias, ...] = (
    # ---- LLaMA-Factory (train_bash.py / llamafactory-cli train), every `ragtune train generator` stage
    Alias(LF, "do_train", LF_TRAIN, None, "`ragtune train generator` always trains"),
    Alias(LF, "do_eval", LF_TRAIN, None, "SFT evaluates a dev slice when val_size > 0"),
    Alias(LF, "overwrite_cache", LF_TRAIN, None, "ragtune tokenizes in memory; there is no dataset cache"),
    Alias(LF, "preprocessing_num_workers", LF_TRAIN, None, "ragtune tokenizes in the training process"),
    Alias(LF, "checkpoint_dir", (*LF_TRAIN, "generate"), "adapter_name_or_path",
          "LLaMA-Factory's older name; one adapter folder"),
    Alias(LF, "cutoff_len", ("rm",), "max_length"),
    Alias(LF, "save_steps", ("rm",), None, "the reward model is saved once, when training ends"),
    Alias(LF, "overwrite_output_dir", ("rm", "ppo"), None, "stages rm and ppo write into output_dir as it is"),
    Alias(LF, "lr_scheduler_type", ("ppo",), None, "ragtune's PPO keeps a constant learning rate"),
    Alias(LF, "plot_loss", ("ppo",), None, "PPO always writes rl_curves.png (reward and KL per update)"),
    Alias(LF, "fp16", ("ppo",), None, "ragtune's PPO trains in float32"),
    Alias(LF, "bf16", ("ppo",), None, "ragtune's PPO trains in float32"),
    Alias(LF, "logging_steps", ("ppo",), None, "PPO logs every update to ppo_log.jsonl"),
    Alias(LF, "learning_rate", ("ppo",), "ppo.learning_rate"),
    Alias(LF, "max_grad_norm", ("ppo",), "ppo.max_grad_norm"),
    Alias(LF, "save_steps", ("ppo",), "ppo.save_steps"),
    Alias(LF, "seed", ("ppo",), "ppo.seed"),
    Alias(LF, "lora_rank", ("ppo",), "ppo.lora_rank"),
    Alias(LF, "lora_alpha", ("ppo",), "ppo.lora_alpha"),
    Alias(LF, "lora_dropout", ("ppo",), "ppo.lora_dropout"),
    Alias(LF, "lora_target", ("ppo",), "ppo.lora_target"),
    Alias(LF, "ppo_epochs", ("ppo",), "ppo.ppo_epochs"),
    Alias(LF, "ppo_target", ("ppo",), "ppo.target_kl"),
    Alias(LF, "ppo_whiten_rewards", ("ppo",), "ppo.whiten_rewards"),
    Alias(LF, "max_new_tokens", ("ppo",), "ppo.max_new_tokens"),
    Alias(LF, "temperature", ("ppo",), "ppo.temperature"),
    Alias(LF, "top_k", ("ppo",), "ppo.top_k"),
    Alias(LF, "top_p", ("ppo",), "ppo.top_p"),
    # ---- SPTAR's query_generate_*.py
    Alias(SPTAR, "corpus_file", ("generate",), "corpus"),
    # ---- RAG-Retrieval: embedding and reranker configs
    Alias(RR, "train_dataset", ("embedding", "reranker"), "train_data"),
    Alias(RR, "val_dataset", ("embedding", "reranker"), "val_data", "a validation file in the training format"),
    Alias(RR, "lr", ("embedding", "reranker"), "learning_rate"),
    Alias(RR, "epochs", ("embedding", "reranker"), "num_train_epochs"),
    Alias(RR, "epoch", ("embedding", "reranker"), "num_train_epochs"),
    Alias(RR, "batch_size", ("embedding", "reranker"), "per_device_train_batch_size"),
    Alias(RR, "warmup_proportion", ("embedding", "reranker"), "warmup_ratio"),
    Alias(RR, "num_max_checkpoints", ("embedding", "reranker"), "save_total_limit"),
    Alias(RR, "log_interval", ("embedding", "reranker"), "logging_steps"),
    Alias(RR, "log_with", ("embedding", "reranker"), "report_to"),
    Alias(RR, "mixed_precision", ("embedding", "reranker"), "fp16 / bf16", "",
          {"fp16": {"fp16": True}, "bf16": {"bf16": True}, "no": {}}),
    Alias(RR, "train_type", ("embedding",), None, "ragtune tells training from distillation by the data"),
    Alias(RR, "shuffle", ("embedding",), None, "ragtune always shuffles the training rows"),
    Alias(RR, "query_max_len", ("embedding",), None, "one max_seq_length covers queries and passages"),
    Alias(RR, "passage_max_len", ("embedding",), "max_seq_length"),
    Alias(RR, "train_dataset_vec", ("embedding",), "teacher_vectors", "teacher vectors: .npy, or raw memmap"),
    Alias(RR, "teatch_emebedding_dim", ("embedding",), "teacher_dim", "spelled so in their distill config"),
    Alias(RR, "max_len", ("reranker",), "max_length"),
    Alias(RR, "train_dataset_type", ("reranker",), "format", "",
          {"pointwise": "point", "grouped": "group"}),
    Alias(RR, "val_dataset_type", ("reranker",), None, "ragtune reads the validation file like train_data"),
    Alias(RR, "loss_type", ("reranker",), "loss", "",
          {"pointwise_bce": "bce", "pointwise_mse": "mse", "pairwise_ranknet": "ranknet", "listwise_ce": "listwise",
           "point_ce": "bce", "point_mse": "mse"}),
    Alias(RR, "model_type", ("reranker",), "model_type", "",
          {"bert_encoder": "cross_encoder", "llm_decoder": "llm"}),
    Alias(RR, "query_format", ("reranker",), "llm.query_format"),
    Alias(RR, "document_format", ("reranker",), "llm.document_format"),
    Alias(RR, "seq", ("reranker",), "llm.seq"),
    Alias(RR, "special_token", ("reranker",), "llm.special_token", "may be several tokens (\"\\nrelevance\")"),
)


def _set(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    node = data
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f'{where}: "{p}" is not a mapping here')
    if last in node and node[last] != value:
        raise ValueError(f'both "{where}" and "{dotted}" are set (to {value!r} and {node[last]!r}); '
                         f"they are the same setting, keep one")
    node[last] = value


def apply_aliases(families: tuple[str, ...], data: Any, fields: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """(data with their names turned into ragtune's, notices) for a config of `families` with `fields`."""
    if not families or not isinstance(data, dict):
        return data, []
    rows = [a for a in ALIASES if set(a.families) & set(families)]
    out = dict(data)
    notices: list[str] = []
    for a in rows:
        if a.key not in out:
            target = a.target or ""
            if a.values and target in out and isinstance(out[target], str) and out[target] in a.values:
                out[target] = a.values[out[target]]  # their value name under ragtune's key
            continue
        if a.target is None:
            if a.key in fields:  # this config has the key after all (a family shares a row it does not need)
                continue
            out.pop(a.key)
            notices.append(f'{a.source} key "{a.key}" ignored: {a.note}')
            continue
        value = out.pop(a.key)
        mapped = a.values.get(value, value) if isinstance(value, str) else value
        if isinstance(mapped, dict):
            for k, v in mapped.items():
                _set(out, k, v, a.key)
        elif a.values and isinstance(mapped, str) and mapped not in a.values.values():
            raise ValueError(f'key "{a.key}": got {value!r}; allowed values: {", ".join(map(str, a.values))}')
        else:
            _set(out, a.target, mapped, a.key)
    return out, notices


def alias_keys(families: tuple[str, ...]) -> list[str]:
    """Their keys accepted by a config of `families` (for "did you mean")."""
    return [a.key for a in ALIASES if set(a.families) & set(families)]


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def alias_table() -> str:
    """The README's markdown table of every row (tests/compat/test_readme.py keeps the README equal to it)."""
    lines = ["| from | their key | ragtune key | for | note |", "|---|---|---|---|---|"]
    for a in ALIASES:
        values = ", ".join(f"{k} -> {_shown(v)}" for k, v in a.values.items())
        note = "; ".join(x for x in (a.note, values) if x)
        target = f"`{a.target}`" if a.target else "ignored, with a notice"
        lines.append(f"| {a.source} | `{a.key}` | {target} | {', '.join(a.families)} | {note} |")
    return "\n".join(lines)
