"""`ragtune run CONFIG.yaml`: the closed loop, N rounds, resumable and hash-keyed.

Round k: [SFT, round 0] -> [style adaptation, round 0, with target_examples] -> generate -> filter ->
[guard hold-out, round 0] -> [curriculum, round k >= 1] -> train retriever (train pairs + kept pseudo queries; a
bi-encoder or ColBERT, `retriever.kind`) -> [guard decision] -> evaluate on
the test split (p-values vs BM25, zero-shot, the train-pairs-only retriever and the previous round) -> difficulty of
every pseudo query -> generator quality -> preference pairs -> reward model -> PPO (or DPO / GRPO) on the generator
-> [RL evaluation on held-out documents]; round k+1 generates with the improved generator, and its retriever
training follows the difficulties round k's retriever gives its training queries (`retriever.curriculum`).

Each stage's section of the run config (`sft:`, `generate:`, `retriever:`, `mining:`, `reward:`, `dpo:`, `grpo:`)
is that stage's own settings class: every key the stage takes except the paths the loop wires in, with the
stage's defaults and field docs, validated when the run config is loaded. Stage keys name other stages' outputs by
their path inside the run directory, so a copied run directory resumes where its original stood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_serializer, model_validator

from ragtune.config import Band, ConfigModel, dump_config
from ragtune.evaluate.metrics import DEFAULT_METRICS, MetricName
from ragtune.filters.bm25 import BM25FilterConfig
from ragtune.filters.run import FilterSpec
from ragtune.generate.config import GenerateSettings
from ragtune.models import DEFAULT_ENCODER, DEFAULT_GENERATOR
from ragtune.paths import shared_data
from ragtune.pipeline.budget import BudgetConfig, describe_shrink, plan_budget
from ragtune.pipeline.guard import GuardConfig
from ragtune.pipeline.loop_rounds import _plain, loop_reward, overrides, run_filters, run_rounds  # noqa: F401
from ragtune.pipeline.report import RunReport, write_run_report
from ragtune.pipeline.retriever_stage import BiEncoderLoopSettings, RetrieverSettings
from ragtune.pipeline.rundir import RunDir, log
from ragtune.pipeline.style import StyleConfig
from ragtune.pipeline.subset import SubsetConfig, make_subset
from ragtune.retrieval.mining import BeirEmbeddingSettings
from ragtune.train.generator.dpo import DPOSettings
from ragtune.train.generator.grpo import GRPOSettings
from ragtune.train.generator.ppo import PPOConfig
from ragtune.train.generator.preferences import PreferenceConfig
from ragtune.train.generator.reward import RewardSettings
from ragtune.train.generator.sft_config import SFTSettings
from ragtune.train.precision import resolve_bf16


class RunConfig(ConfigModel):
    name: str = "run"
    out: Path | None = None
    """Run directory; default runs/<name>."""
    data: Path | None = None
    """BEIR folder with train and test qrels; default: the shared SciFact."""
    subset: SubsetConfig = Field(default_factory=SubsetConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    """`minutes:` time a short calibration first, print each stage's expected duration, and shrink the workload
    (at most to `min_scale` of it) when the machine is too slow for the budget (pipeline/budget.py)."""
    sft_data: Path | None = None
    """BEIR folder whose train qrels teach the generator (default: `data`). For collections without train
    labels (BEIR nq, arguana, scidocs) point it at one that has them, e.g. msmarco, as InPars and SPTAR do;
    the retriever then learns from the pseudo queries alone and keeps its last checkpoint (no dev slice)."""
    generator_adapter: Path | None = None
    """Start from this SFT adapter of `generator` (e.g. another run's round-0/sft/adapter) instead of training one:
    a generator taught once serves several collections."""
    unlabeled: bool = False
    """No labeled pair reaches the retriever: the data's train qrels are dropped, the retriever learns from the kept
    pseudo queries alone (the generator still learns doc -> query from `sft_data` or `generator_adapter`)."""
    target_examples: Path | None = None
    """2-16 example queries of the target collection, one a line (no labels): style adaptation (`style:`) and
    style statistics in the report."""
    style: StyleConfig = Field(default_factory=StyleConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    """The label-free guard: ship the zero-shot encoder unless a trained retriever beats it on held-out pseudo
    queries (pipeline/guard.py)."""
    dense_dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Precision of every corpus and query encoding of the run (baselines, evaluation, difficulty, dense filters,
    guard, online rewards); auto = bfloat16 on GPUs and CPUs with native bf16."""
    train_only_baseline: bool = False
    """Also train the retriever on the train pairs alone (same recipe) and report every round against it."""
    fresh_documents: bool = False
    """Round k samples its documents with seed + k, so each round writes queries for (mostly) new documents."""
    rounds: int = Field(1, ge=1)
    test_split: str = "test"
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    generator: str = DEFAULT_GENERATOR
    template: str = "auto"
    sft: SFTSettings = Field(default_factory=SFTSettings)
    """The round-0 SFT: `ragtune train generator` keys but the data and output paths."""
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    """`ragtune generate` keys but the corpus and output folders."""
    filters: list[FilterSpec] = Field(default_factory=lambda: [BM25FilterConfig(k=30)])
    """Applied in order to each round's queries; a `difficulty` filter that names no model judges with the previous
    round's retriever and applies from round 1 on."""
    candidates_per_document: int | None = Field(None, ge=1)
    """Rounds k >= 1 generate this many queries per document instead of `generate.query_per_document`: candidates for
    a difficulty filter with `per_document` to choose from (best-of-n selection toward the band, no RL)."""
    encoder: str = DEFAULT_ENCODER
    """The bi-encoder of the run: zero-shot baseline, the retriever's starting point, and the model of every dense
    or LossNet filter that names none."""
    retriever: RetrieverSettings = Field(default_factory=BiEncoderLoopSettings)
    """`kind: bi_encoder` (default: `ragtune train embedding` keys) or `kind: colbert` (`ragtune train colbert`
    keys), but the data and output paths; `curriculum` and its band/target; `dev` defaults to a slice of the
    data's train queries (10%, at most 50)."""
    mining: BeirEmbeddingSettings = Field(
        default_factory=lambda: BeirEmbeddingSettings(neg_start=10, neg_end=50, neg_per_query=3))
    """Hard-negative mining for the retriever's records (`data convert beir-embedding` keys but the paths)."""
    difficulty_temperature: float = Field(0.1, gt=0)
    preferences: PreferenceConfig = Field(default_factory=PreferenceConfig)
    reward: RewardSettings = Field(default_factory=RewardSettings)
    """The reward model (`train generator stage=rm` keys but the data and output paths)."""
    rl: Literal["ppo", "dpo", "grpo", "none"] = "ppo"
    """How the generator improves: PPO against the reward model, DPO on the preference pairs, or GRPO with
    the retriever as online reward (no reward model)."""
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    dpo: DPOSettings = Field(default_factory=DPOSettings)
    """`train generator stage=dpo` keys but the policy, data and output paths."""
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    """`train generator stage=grpo` keys but the policy, prompts and output paths."""
    grpo_band: Band | None = (0.2, 0.6)
    """online_reward=rank_band: the difficulty band (1 - reciprocal rank) GRPO pushes the generator toward."""
    online_reward: Literal["loop", "rank_band"] = "loop"
    """GRPO's reward (and PPO's with ppo_reward=retrieval): `loop` = filter outcome, then the preference band, then
    rank, under the round's retriever (train/generator/loop_reward.py); `rank_band` = reciprocal rank shaped
    toward grpo_band."""
    reward_weights: tuple[float, float, float] = (1.0, 0.5, 0.1)
    """The loop reward's weights of (filter outcome, band, rank)."""
    reward_band_falloff: float = Field(1.0, gt=0, le=1)
    """How far outside the band the loop reward's band part falls to 0 (1.0: 1 - distance to the band, so a trivial
    query keeps 0.7-0.8 of it; 0.1: only queries near the band score)."""
    reward_gap_weight: float = Field(0.0, ge=0)
    """The loop reward's gap part (0: off): max(0, 1/BM25 rank - 1/rank under the round's retriever), paying for
    queries the retriever misses and BM25 finds (train/generator/loop_reward.py)."""
    ppo_reward: Literal["reward_model", "retrieval"] = "reward_model"
    """What scores PPO's rollouts: the round's reward model, or the loop reward computed online."""
    rl_prompts: int = Field(32, ge=1)
    """Documents whose prompts the RL stage samples from."""
    rl_after_last_round: bool = True
    """Run the preference, reward-model and RL stages after the last round too (false: the last round ends with its
    retriever's evaluation and generator metrics, since no later round would use an improved generator)."""
    rl_eval_docs: int = Field(0, ge=0)
    """After each RL stage, the generator before and after it write queries for this many held-out documents, scored
    by the loop reward (0 = off): how far the method moved the generator, per CPU minute."""
    seed: int = 0

    @model_validator(mode="after")
    def _sources(self) -> RunConfig:
        if self.unlabeled and self.sft_data is None and self.generator_adapter is None:
            raise ValueError("unlabeled: true drops the data's train pairs; name where the generator learns "
                             "doc -> query: sft_data (a BEIR folder with train qrels) or generator_adapter")
        if self.retriever.kind == "colbert" and self.guard.enabled:
            raise ValueError("guard.enabled compares the round's retriever with the zero-shot encoder as bi-encoders; "
                             "it needs retriever.kind: bi_encoder")
        if self.rounds == 1 and any(f.name == "difficulty" and f.model is None for f in self.filters):
            raise ValueError("a difficulty filter without `model` judges with the previous round's retriever, so it "
                             "applies from round 1 on; with rounds: 1 it would never run: set rounds >= 2 or its model")
        if self.candidates_per_document:
            GenerateSettings(**(overrides(self.generate) | {"query_per_document": self.candidates_per_document}))
        g, styled = self.guard, self.target_examples and (self.style.prompt_shots or self.style.sft_steps)
        if (g.enabled and g.decide_on == "other_generator" and g.other_shots and self.unlabeled
                and self.sft_data is None and not styled):
            raise ValueError("guard.decide_on: other_generator takes its guard.other_shots example pairs from "
                             "sft_data's train pairs or the style stage's; this unlabeled run has neither: set "
                             "sft_data, target_examples with style, guard.other_shots=0 or guard.decide_on=pseudo")
        return self

    @field_serializer("sft", "generate", "retriever", "mining", "reward", "dpo", "grpo")
    def _as_given(self, settings: ConfigModel) -> dict[str, Any]:
        # the resolved config.yaml keeps what the user set: reloading it keys every stage as before
        return overrides(settings)


def resolve_auto_bf16(cfg: RunConfig) -> RunConfig:
    """Each trainer's `bf16: auto` -> true or false for the device this run trains on, before any stage key is made:
    a run directory taken to another kind of machine retrains rather than reuse the other precision's outputs."""
    names = [n for n in ("sft", "retriever", "reward", "dpo", "grpo") if getattr(cfg, n).bf16 == "auto"]
    if not names:
        return cfg
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = cfg.model_copy(deep=True)
    for name in names:
        settings = getattr(cfg, name)
        settings.bf16 = resolve_bf16("auto", device, settings.fp16)
    return cfg


def repeats_itself(cfg: RunConfig) -> bool:
    """Rounds after the first write for the same documents, with the same seed, by the same generator: they
    regenerate round 0's queries word for word and only count them again."""
    return cfg.rounds > 1 and cfg.rl == "none" and not cfg.fresh_documents


def run_loop(cfg: RunConfig) -> RunReport:
    cfg = resolve_auto_bf16(cfg)
    if repeats_itself(cfg):
        log.warning("rounds: %d with rl: none and fresh_documents: false: every round writes round 0's queries again "
                    "word for word (same documents, seed and generator) and only counts them again; set "
                    "fresh_documents: true for new documents each round", cfg.rounds)
    src = Path(cfg.data or shared_data("beir", "scifact"))
    if not (src / "corpus.jsonl").exists():
        raise FileNotFoundError(f"{src}: no corpus.jsonl; point data= at a BEIR folder (or set RAGTUNE_SHARED)")
    with RunDir(Path(cfg.out or Path("runs") / cfg.name)) as rd:  # one run per directory at a time
        plan = None
        if cfg.budget.minutes is not None:
            cfg, plan = plan_budget(cfg, src, rd.root, log=log.info)
            rd.expected = plan["expected"]
            _log_plan(plan)
        return _run(cfg, src, rd, plan)


def _log_plan(plan: dict[str, Any]) -> None:
    total = sum(plan["expected"].values())
    if plan["changes"]:
        log.info("budget: the configured workload would take %.1f min here; shrunk %s",
                 plan["full_workload_seconds"] / 60, describe_shrink(plan))
    log.info("budget: expected %.1f min for the stages (calibration %.0f s; encoder %.4f s/doc, SFT step %.2f s)%s",
             total / 60, plan["calibration_seconds"], plan["units"]["encode_doc"], plan["units"]["sft_step"],
             "" if plan["fits"] else f": over the {plan['budget_minutes']:g} min budget even at the smallest "
             "workload allowed (budget.min_scale)")


def _run(cfg: RunConfig, src: Path, rd: RunDir, plan: dict[str, Any] | None = None) -> RunReport:
    root = rd.root
    dump_config(cfg, root / "config.yaml")
    splits = [cfg.test_split] if cfg.unlabeled else None
    data = rd.stage("data", {"subset": _plain(cfg.subset), "test_split": cfg.test_split,
                             **({"unlabeled": True} if cfg.unlabeled else {})},
                    lambda out: make_subset(src, out, cfg.subset, cfg.test_split, splits), inputs=[src])
    rounds, extra = run_rounds(cfg, rd, data)
    report: RunReport = {
        "name": cfg.name,
        "data": str(src),
        "subset": _plain(cfg.subset),
        "unlabeled": cfg.unlabeled,
        **extra,  # type: ignore[typeddict-item]
        "rounds": rounds,
        "stages": {n: {"seconds": e.get("seconds"), "cpu_seconds": e.get("cpu_seconds"), "status": e.get("status")}
                   for n, e in rd.manifest["stages"].items()},
        "executed": rd.executed,
    }
    if plan is not None:
        report["budget"] = plan
    write_run_report(root, report, cfg.metrics)
    return report
