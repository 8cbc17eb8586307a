"""RAG-Retrieval-format fixtures, written from its documentation (rag_retrieval/train/embedding and reranker
READMEs and their example configs)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

EMBEDDING_YAML = """\
# Model
model_name_or_path: "BAAI/bge-base-zh-v1.5"
train_type: "train"

# Dataset
train_dataset: "t2rank_100.jsonl"
neg_nums: 15
query_max_len: 128
passage_max_len: 512
shuffle: true

# Training
output_dir: "./output/t2ranking_100_example"
save_on_epoch_end: 1
num_max_checkpoints: 5

## Hyperparameters
temperature: 0.02
epochs: 2
lr: 2e-5
batch_size: 32
seed: 666
warmup_proportion: 0.1
gradient_accumulation_steps: 3
mixed_precision: fp16

##mrl
use_mrl: false
mrl_dims: "128, 256, 512, 768, 1024, 1280, 1536, 1792"

## Logging
log_interval: 10
log_with: "wandb"
"""

RERANKER_LLM_YAML = """\
# Model
model_name_or_path: "Qwen/Qwen2.5-1.5B"
model_type: "llm_decoder"
num_labels: 1
query_format: "query: {}"
document_format: "document: {}"
seq: "\\n"
special_token: "\\nrelevance"

## Grouped Dataset
train_dataset: "grouped_reranker_train_data_listwise_label.jsonl"
train_dataset_type: "grouped"
train_group_size: 10
shuffle_rate: 0.0
max_len: 128
val_dataset: "grouped_reranker_eval_data.jsonl"
val_dataset_type: "grouped"
loss_type: "listwise_ce"

# Training
output_dir: "./output/llm"
save_on_epoch_end: 1
num_max_checkpoints: 5

## Hyperparameters
epoch: 2
lr: 5e-5
batch_size: 12
seed: 666
warmup_proportion: 0.1
stable_proportion: 0.3
gradient_accumulation_steps: 2
mixed_precision: bf16

## Logging
log_interval: 10
log_with: "tensorboard"
"""


def rr_config(text: str, tmp: Path, **paths: str) -> Path:
    """Their YAML with file paths pointed into `tmp` (and the model name at a local tiny model)."""
    data = yaml.safe_load(text) | paths
    out = tmp / "config.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True))
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
