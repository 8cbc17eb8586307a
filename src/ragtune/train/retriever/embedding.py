"""`ragtune train embedding`: bi-encoder fine-tuning on sentence-transformers' trainer and losses.

    cfg = load_config(EmbeddingTrainConfig, "configs/scifact-embedding.yaml", ["max_steps=20"])
    summary = train_embedding(cfg)

Four record formats (`ragtune.data.records.Embedding` / `TeacherQuery`), told apart by their fields:

| format     | rows                               | ST columns                       | loss (auto)                   |
|------------|------------------------------------|----------------------------------|-------------------------------|
| `pair`     | `{query, pos}`                     | query, pos                       | MNRL, in-batch negatives      |
| `hard_neg` | `{query, pos, neg}`                | query, pos, neg_1..neg_n         | MNRL (or CachedMNRL)          |
| `distill`  | `{query, pos, neg?, scores}`       | query, pos, neg_1..n + label     | DistillKL or MarginMSE        |
| `teacher`  | `{query}` + teacher vectors        | query + label (vector)           | MSE or cosine (EmbedDistill)  |

Each positive of a row is one training example; a row with fewer than `neg_nums` negatives draws
the missing ones again from its own (seeded), and a row without any draws from other rows' passages.
A score-distillation row without `neg` (RAG-Retrieval's `{query, pos, scores}`) is a scored list: its
best-scored passage is the positive and the others its scored negatives, exactly the `neg`-bearing row
`{query, pos: [best], neg: [others], scores}`. Teacher vectors are a `.npy` or a raw float32 `np.memmap`
whose shape comes from a `<file>.json` sidecar or `teacher_dim`; a teacher wider or narrower than the
student gets a trainable projection (kept in the saved model). `mrl_dims` above the hidden size add
RAG-Retrieval's `Linear(hidden, max(mrl_dims))` (embedding_heads.py).
The `pair` format uses the no-duplicates batch sampler so a batch never holds a text twice (which
would make an in-batch "negative" a positive). `use_mrl` wraps the loss in MatryoshkaLoss.

The model is saved in sentence-transformers format (`SentenceTransformer(output_dir)` loads it), with
`prompts["query"]` set when a query prompt was used. Dev evaluation: `ragtune.evaluate.evaluate` on a
slice carved from the train qrels (train/retriever/dev.py); the best checkpoint by dev NDCG@10 is kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ragtune.config import CommaList, ConfigError
from ragtune.models import DEFAULT_ENCODER
from ragtune.train.harness import train_resuming
from ragtune.train.retriever.base import RetrieverTrainConfig, RetrieverTrainSettings, start_run
from ragtune.train.retriever.curriculum import CurriculumSettings
from ragtune.train.retriever.dense_eval import dense_runs, dev_run
from ragtune.train.retriever.embedding_heads import embedding_dim, pca_rotation, project, widen, with_rotation
from ragtune.train.retriever.embedding_rows import (
    load_training_rows,
    pca_texts,
    validation_rows,
)
from ragtune.train.retriever.weight_interpolation import WiseFtSettings, choose_interpolation, snapshot

FORMATS = ("pair", "hard_neg", "distill", "teacher")
LOSS_FORMATS = {"kl": ("distill",), "margin_mse": ("distill",), "mse": ("teacher",), "cosine": ("teacher",),
                "mnrl": ("pair", "hard_neg"), "cached_mnrl": ("pair", "hard_neg")}


class EmbeddingSettings(WiseFtSettings, CurriculumSettings, RetrieverTrainSettings):
    """Fine-tune a sentence-transformers bi-encoder: everything but the data and output paths (the loop's
    `retriever:` overrides)."""

    ALIASES = ("embedding",)
    model_name_or_path: str = DEFAULT_ENCODER
    """Hub name (resolved offline first), or a local sentence-transformers folder."""
    format: Literal["auto", "pair", "hard_neg", "distill", "teacher"] = "auto"
    """`auto` tells the format from the fields: teacher (.npy beside the file), distill (scores), hard_neg (neg)."""
    teacher_vectors: Path | None = None
    """teacher format: the teacher vectors, a .npy or a raw float32 np.memmap file (shape from `<file>.json`
    {"shape": [rows, dim]} or teacher_dim); default: the train file with .npy suffix."""
    teacher_dim: int | None = Field(None, ge=1)
    """Width of a raw memmap of teacher vectors without a .json sidecar (RAG-Retrieval's teatch_emebedding_dim)."""
    neg_nums: int = Field(7, ge=1)
    """Negatives per example for hard_neg and distill."""
    query_prompt: str | None = None
    """Prepended to queries whose row has no `prompt_for_query`; saved as the model's query prompt."""
    max_seq_length: int = Field(256, ge=8)
    loss: Literal["auto", "mnrl", "cached_mnrl", "kl", "margin_mse", "mse", "cosine"] = "auto"
    """auto: mnrl for pair/hard_neg, kl for distill, mse for teacher."""
    scale: float = Field(20.0, gt=0)
    """MNRL logit scale (1 / temperature) over cosine similarities."""
    temperature: float = Field(1.0, gt=0)
    """DistillKL temperature; set without `scale`, MNRL's too (scale = 1 / temperature, RAG-Retrieval's meaning)."""
    teacher_scale: float = Field(1.0, gt=0)
    """distill: the teacher's scores are multiplied by this before the loss. A normalized student's cosines span
    [-1, 1] and a cross-encoder's logits about +-10, so MarginMSE needs the teacher's margins brought to the
    student's scale (benchmarks/margin_distill.py fits it as the ratio of the two margins' spreads)."""
    mini_batch_size: int = Field(16, ge=1)
    """cached_mnrl: GradCache chunk; memory scales with it, the effective batch stays the full batch."""
    use_mrl: bool = False
    """Matryoshka: train so that the first `mrl_dims` dimensions work on their own."""
    mrl_dims: Annotated[list[int], CommaList] = Field(default_factory=lambda: [384, 192, 96, 48])
    mrl_weights: list[float] | None = None
    """Loss weight of each of mrl_dims (default: all 1); raise the small ones to favour truncated use."""
    mrl_init: Literal["none", "pca"] = "none"
    """pca: before training, rotate the embedding space onto the principal axes of the training texts'
    embeddings (an orthogonal, trainable Dense layer: full-dimension cosines are unchanged), so the leading
    dimensions start out carrying the most variance and Matryoshka training refines instead of reorganising."""
    mrl_pca_texts: int = Field(4096, ge=16)
    """At most this many distinct training texts (queries and passages) to fit the rotation on."""
    mrl_pca_seed: int | None = None
    """The seed the rotation's texts are drawn with (default: `seed`): the training rows' resampled negatives and
    the sample of at most `mrl_pca_texts`. Runs that differ only in `seed` and share this value start from one
    rotation, so their weights can be averaged (benchmarks/seed_soup.py)."""
    mrl_select_dim: int | None = None
    """Matryoshka: choose the best dev checkpoint at this truncated dimension (the one you will deploy);
    default the full dimension."""
    batch_sampler: Literal["no_duplicates", "batch_sampler"] = "no_duplicates"

    @model_validator(mode="after")
    def _check(self) -> EmbeddingSettings:
        if self.loss != "auto" and self.format != "auto" and self.format not in LOSS_FORMATS[self.loss]:
            raise ValueError(f'loss "{self.loss}" does not fit format "{self.format}"; it takes '
                             f"{' or '.join(LOSS_FORMATS[self.loss])} records")
        if self.use_mrl and (sorted(self.mrl_dims, reverse=True) != self.mrl_dims or min(self.mrl_dims) < 1):
            raise ValueError(f"mrl_dims must be positive and in decreasing order, got {self.mrl_dims}")
        if self.mrl_weights is not None and len(self.mrl_weights) != len(self.mrl_dims):
            raise ValueError(f"mrl_weights has {len(self.mrl_weights)} values for {len(self.mrl_dims)} mrl_dims")
        if self.mrl_init != "none" and not self.use_mrl:
            raise ValueError(f'mrl_init "{self.mrl_init}" prepares Matryoshka training: set use_mrl=true')
        if self.mrl_select_dim is not None and not (self.use_mrl and self.mrl_select_dim in self.mrl_dims):
            raise ValueError(f"mrl_select_dim {self.mrl_select_dim} needs use_mrl and must be one of mrl_dims "
                             f"{self.mrl_dims}")
        return self


class EmbeddingTrainConfig(EmbeddingSettings, RetrieverTrainConfig):
    """Fine-tune a sentence-transformers bi-encoder."""

    train_data: Annotated[list[Path], CommaList] = Field(min_length=1)
    """JSONL record files (comma list). Files of different formats (labeled hard_neg pairs beside teacher-scored
    distill rows) train as separate datasets, each batch drawn from one in proportion to its size, each with its own
    loss: `loss` where it fits the format, the format's default elsewhere."""
    val_data: Path | None = None
    """A validation file in the training format (RAG-Retrieval's val_dataset; teacher rows: vectors beside it):
    its loss is logged each evaluation and, without dev.data, picks the best checkpoint."""


# ---------------------------------------------------------------- loss


def resolve_loss(cfg: EmbeddingTrainConfig, fmt: str, formats: tuple[str, ...] = ()) -> str:
    """`loss`, or the format's default for `auto`. With files of several `formats`, `loss` goes to those it fits
    and the others take their default."""
    if cfg.loss != "auto" and fmt not in LOSS_FORMATS[cfg.loss]:
        if not set(formats) & set(LOSS_FORMATS[cfg.loss]):
            raise ConfigError(f'loss "{cfg.loss}" does not fit the {" and ".join(formats or (fmt,))} records of '
                              f"train_data; it takes {' or '.join(LOSS_FORMATS[cfg.loss])} records")
    elif cfg.loss != "auto":
        return cfg.loss
    return {"pair": "mnrl", "hard_neg": "mnrl", "distill": "kl", "teacher": "mse"}[fmt]


def build_loss(model, cfg: EmbeddingTrainConfig, fmt: str, weighted: bool = False, formats: tuple[str, ...] = ()):
    from sentence_transformers.sentence_transformer import losses

    from ragtune.train.retriever.curriculum import WeightedMNRL

    name = resolve_loss(cfg, fmt, formats)
    scale = 1.0 / cfg.temperature if "temperature" in cfg.model_fields_set and "scale" not in cfg.model_fields_set \
        else cfg.scale
    if weighted:
        if name != "mnrl" or cfg.use_mrl:
            raise ConfigError(f'the records carry a "weight": only loss=mnrl without use_mrl weighs examples '
                              f"(got loss={name}, use_mrl={cfg.use_mrl})")
        return WeightedMNRL(model, scale=scale)
    if name == "mnrl":
        loss = losses.MultipleNegativesRankingLoss(model, scale=scale)
    elif name == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=cfg.mini_batch_size)
    elif name == "kl":
        loss = losses.DistillKLDivLoss(model, temperature=cfg.temperature)
    elif name == "margin_mse":
        loss = losses.MarginMSELoss(model)
    elif name == "mse":
        loss = losses.MSELoss(model)
    else:
        loss = losses.EmbedDistillLoss(model, distance_metric="cosine")
    if cfg.use_mrl:
        dim = embedding_dim(model)
        weights = dict(zip(cfg.mrl_dims, cfg.mrl_weights or [1.0] * len(cfg.mrl_dims), strict=True))
        dims = [d for d in cfg.mrl_dims if d <= dim]
        if not dims or dims[0] != dim:
            dims = [dim, *[d for d in dims if d < dim]]
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=dims,
                                     matryoshka_weights=[weights.get(d, 1.0) for d in dims])
    return loss


# ---------------------------------------------------------------- train


def train_embedding(cfg: EmbeddingTrainConfig) -> dict[str, Any]:
    """Fine-tune the bi-encoder; returns a summary (format, loss, examples, dev metrics, outputs)."""
    from datasets import Dataset, DatasetDict
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from ragtune.evaluate.metrics import evaluate
    from ragtune.models import resolve_model
    from ragtune.train.harness import finish
    from ragtune.train.retriever.base import trainer_kwargs, use_stable_proportion
    from ragtune.train.retriever.dev import make_run_evaluator

    device, resume, dev = start_run(cfg)
    if cfg.wise_ft and dev is None:
        raise ConfigError('key "wise_ft": the interpolation is chosen on the dev slice; set dev.data')
    train = load_training_rows(cfg, dev)
    fmt, rows, stats = train.fmt, train.rows, train.stats
    formats = list(train.parts or [fmt])
    loss_name = "+".join(resolve_loss(cfg, f, tuple(formats)) for f in formats)
    if fmt == "teacher" and cfg.use_mrl:
        raise ConfigError("use_mrl is not available with teacher-vector distillation (MSE on full vectors)")

    model_path = resolve_model(cfg.model_name_or_path)
    model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
    model.max_seq_length = cfg.max_seq_length
    if cfg.query_prompt:
        model.prompts = {**(model.prompts or {}), "query": cfg.query_prompt}
    if cfg.mrl_init == "pca":
        model = with_rotation(model, pca_rotation(model, pca_texts(cfg, train, dev)))
    hidden = embedding_dim(model)
    if cfg.use_mrl and max(cfg.mrl_dims) > hidden:
        model = widen(model, max(cfg.mrl_dims), cfg.seed)
    if fmt == "teacher" and stats["teacher_dim"] != hidden:
        model = project(model, stats["teacher_dim"], cfg.seed)
    stats["embedding_dim"] = embedding_dim(model)
    start = snapshot(model) if cfg.wise_ft else None
    val_rows = validation_rows(cfg, fmt)
    weighted = fmt in ("pair", "hard_neg") and "label" in rows[0]
    loss = build_loss(model, cfg, fmt, weighted) if train.parts is None else \
        {f: build_loss(model, cfg, f, formats=tuple(formats)) for f in train.parts}
    dims = list(cfg.mrl_dims) if cfg.use_mrl else None

    evaluator = None
    if dev is not None:
        evaluator = make_run_evaluator(dev, cfg.dev, lambda m: dev_run(m, dev, cfg))

    sampler = "no_duplicates" if cfg.batch_sampler == "no_duplicates" and fmt != "teacher" else "batch_sampler"
    if cfg.example_order == "file":
        from ragtune.train.retriever.curriculum import ordered_batch_sampler

        sampler = ordered_batch_sampler
    args = SentenceTransformerTrainingArguments(
        **trainer_kwargs(cfg, device, dev is not None or val_rows is not None,
                         f"dev_{cfg.dev.metric_for_best}" if dev is not None else None), batch_sampler=sampler,
        multi_dataset_batch_sampler="proportional")  # several formats: each batch from one, in proportion to size
    dataset = Dataset.from_list(rows) if train.parts is None else \
        DatasetDict({f: Dataset.from_list(part) for f, part in train.parts.items()})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss,
                                         evaluator=evaluator,
                                         eval_dataset=Dataset.from_list(val_rows) if val_rows else None)
    use_stable_proportion(trainer, cfg)
    t0 = time.perf_counter()
    result = train_resuming(trainer, resume)
    wall = time.perf_counter() - t0
    if start is not None:
        stats["wise_ft"], stats["wise_ft_dev"] = choose_interpolation(trainer.model, start, cfg.wise_ft, lambda m: (
            evaluate(dev.qrels, dev_run(m, dev, cfg), [cfg.dev.metric_for_best]).metrics[cfg.dev.metric_for_best]))
    out = Path(cfg.output_dir)
    trainer.save_model(str(out))

    summary: dict[str, Any] = {
        "command": "train embedding", "model": cfg.model_name_or_path, "model_path": str(model_path),
        "format": fmt, "loss": loss_name + ("+matryoshka" if cfg.use_mrl else "") + (" (weighted)" if weighted else ""),
        "example_order": cfg.example_order, **stats,
        "dev_queries": len(dev.queries) if dev else 0, "resumed_from": resume, "train_loss": result.training_loss,
        "train_runtime_s": round(wall, 1), "samples_per_s": round(stats["examples"] * cfg.num_train_epochs / wall, 2)
        if cfg.max_steps <= 0 else None, "dev_history": evaluator.history if evaluator else [],
    }
    if dev is not None and cfg.use_mrl:  # per-dimension dev metrics of the kept model
        runs = dense_runs(trainer.model, dev.queries, dev.corpus, k=100, dims=dims, query_prompt=cfg.query_prompt)
        summary["dev_final"] = {str(d): evaluate(dev.qrels, r, cfg.dev.metrics).metrics for d, r in runs.items()}
    return finish(trainer, cfg, summary, title=f"{summary['loss']} fine-tuning of {Path(str(model_path)).name}")

