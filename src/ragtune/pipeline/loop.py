"""`ragtune run CONFIG.yaml`: the closed loop, N rounds, resumable and hash-keyed.

Round k: [SFT, round 0] -> generate -> filter -> train retriever (train pairs + kept
pseudo queries) -> evaluate on the test split (p-values vs BM25 and zero-shot) ->
difficulty of every pseudo query -> preference pairs -> reward model -> PPO on the
generator; round k+1 generates with the PPO-improved generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ragtune.config import ConfigModel, build_config, dump_config
from ragtune.evaluate.metrics import DEFAULT_METRICS
from ragtune.filters.bm25 import BM25FilterConfig
from ragtune.filters.dense import DenseFilterConfig
from ragtune.filters.lossnet import LossNetFilterConfig
from ragtune.filters.run import FilterSpec
from ragtune.models import DEFAULT_ENCODER, DEFAULT_GENERATOR
from ragtune.paths import shared_data
from ragtune.pipeline import stages
from ragtune.pipeline.rundir import RunDir
from ragtune.pipeline.subset import SubsetConfig, make_subset
from ragtune.train.generator.ppo import PPOConfig
from ragtune.train.generator.preferences import PreferenceConfig


class RunConfig(ConfigModel):
    name: str = "run"
    out: Path | None = None
    """Run directory; default runs/<name>."""
    data: Path | None = None
    """BEIR folder with train and test qrels; default: the shared SciFact."""
    subset: SubsetConfig = Field(default_factory=SubsetConfig)
    sft_data: Path | None = None
    """BEIR folder whose train qrels teach the generator (default: `data`). For collections without train
    labels (BEIR nq, arguana, scidocs) point it at one that has them, e.g. msmarco, as InPars and SPTAR do;
    the retriever then learns from the pseudo queries alone and keeps its last checkpoint (no dev slice)."""
    rounds: int = Field(1, ge=1)
    test_split: str = "test"
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    generator: str = DEFAULT_GENERATOR
    template: str = "auto"
    sft: dict[str, Any] = Field(default_factory=dict)
    """Overrides of `ragtune train generator` (GeneratorTrainConfig) for the round-0 SFT."""
    generate: dict[str, Any] = Field(default_factory=dict)
    """Overrides of `ragtune generate` (GenerateConfig)."""
    filters: list[FilterSpec] = Field(default_factory=lambda: [BM25FilterConfig(k=30)])
    encoder: str = DEFAULT_ENCODER
    """The bi-encoder of the run: zero-shot baseline, the retriever's starting point, and the model of every dense
    or LossNet filter that names none."""
    retriever: dict[str, Any] = Field(default_factory=dict)
    """Overrides of `ragtune train embedding` (EmbeddingTrainConfig)."""
    mining: dict[str, Any] = Field(default_factory=lambda: {"neg_start": 10, "neg_end": 50, "neg_per_query": 3})
    """Hard-negative mining for the retriever's records (BeirEmbeddingConfig)."""
    difficulty_temperature: float = 0.1
    preferences: PreferenceConfig = Field(default_factory=PreferenceConfig)
    reward: dict[str, Any] = Field(default_factory=dict)
    """Overrides of the reward model (RewardTrainConfig)."""
    rl: Literal["ppo", "dpo", "grpo", "none"] = "ppo"
    """How the generator improves: PPO against the reward model, DPO on the preference pairs, or GRPO with
    the retriever as online reward (no reward model)."""
    ppo: PPOConfig = Field(default_factory=PPOConfig)
    dpo: dict[str, Any] = Field(default_factory=dict)
    """Overrides of DPOTrainConfig."""
    grpo: dict[str, Any] = Field(default_factory=dict)
    """Overrides of GRPOTrainConfig."""
    grpo_band: tuple[float, float] | None = (0.2, 0.6)
    """GRPO reward shaping: the difficulty band (1 - reciprocal rank) the generator is pushed toward."""
    rl_prompts: int = Field(32, ge=1)
    """Documents whose prompts the RL stage samples from."""
    seed: int = 0

    @model_validator(mode="after")
    def _check_stage_overrides(self) -> RunConfig:
        """Validate every stage's overrides now, not after an hour of training."""
        from ragtune.generate.config import GenerateConfig
        from ragtune.retrieval.mining import BeirEmbeddingConfig
        from ragtune.train.generator.dpo import DPOTrainConfig
        from ragtune.train.generator.grpo import GRPOTrainConfig
        from ragtune.train.generator.reward import RewardTrainConfig
        from ragtune.train.generator.sft_config import GeneratorTrainConfig
        from ragtune.train.retriever.embedding import EmbeddingTrainConfig

        x = "/placeholder"
        build_config(GeneratorTrainConfig, {"dataset": ["d"], "output_dir": x, **self.sft}, "sft", "sft")
        build_config(GenerateConfig, {"corpus": x, "output_dir": x, **self.generate}, "generate", "generate")
        dev = {"data": x, **self.retriever.get("dev", {})}  # the stage fills in dev.data
        build_config(
            EmbeddingTrainConfig, {"train_data": [x], "output_dir": x, **self.retriever, "dev": dev}, "retriever",
            "retriever",
        )
        build_config(BeirEmbeddingConfig, {"data": x, "out": x, **self.mining}, "mining", "mining")
        build_config(RewardTrainConfig, {"train_file": x, "output_dir": x, **self.reward}, "reward", "reward")
        build_config(DPOTrainConfig, {"train_file": x, "output_dir": x, **self.dpo}, "dpo", "dpo")
        build_config(GRPOTrainConfig, {"output_dir": x, **self.grpo}, "grpo", "grpo")
        return self


def run_filters(cfg: RunConfig) -> list[FilterSpec]:
    """The filters as a run applies them: a dense or LossNet filter that names no model uses the run's `encoder`."""
    out = []
    for f in cfg.filters:
        if isinstance(f, DenseFilterConfig) and "model" not in f.dense.model_fields_set:
            f = f.model_copy(update={"dense": f.dense.model_copy(update={"model": cfg.encoder})})
        elif isinstance(f, LossNetFilterConfig) and "model" not in f.model_fields_set:
            f = f.model_copy(update={"model": cfg.encoder})
        out.append(f)
    return out


def _plain(cfg: ConfigModel | Any) -> Any:
    return cfg.model_dump(mode="json") if isinstance(cfg, ConfigModel) else cfg


def run_loop(cfg: RunConfig) -> dict[str, Any]:
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval
    from ragtune.pipeline.report import write_run_report
    from ragtune.retrieval.dense import DenseConfig

    src = Path(cfg.data or shared_data("beir", "scifact"))
    if not (src / "corpus.jsonl").exists():
        raise FileNotFoundError(f"{src}: no corpus.jsonl; point data= at a BEIR folder (or set RAGTUNE_SHARED)")
    root = Path(cfg.out or Path("runs") / cfg.name)
    rd = RunDir(root)
    dump_config(cfg, root / "config.yaml")

    data = rd.stage(
        "data", _plain(cfg.subset), lambda out: make_subset(src, out, cfg.subset, cfg.test_split), inputs=[src]
    )
    d = data.out

    def baselines(out: Path) -> dict:
        res = {}
        for name, dense in (("bm25", None), ("zero_shot", DenseConfig(model=cfg.encoder))):
            kw = {"retriever": "dense", "dense": dense} if dense else {"retriever": "bm25"}
            info = run_eval(
                EvalConfig(data=d, split=cfg.test_split, metrics=cfg.metrics, out=out / name, show_progress=False, **kw)
            )
            res[name] = info["metrics"]
        return res

    base = rd.stage("baselines", {"encoder": cfg.encoder, "metrics": cfg.metrics}, baselines, upstream=[data.key])
    base_runs = {"bm25": base.out / "bm25" / "run.trec", "zero_shot": base.out / "zero_shot" / "run.trec"}

    sft = rd.stage(
        "round-0/sft",
        {"model": cfg.generator, "template": cfg.template, **cfg.sft},
        lambda out: stages.sft(Path(cfg.sft_data or d), out, cfg.generator, cfg.template, cfg.sft),
        upstream=[data.key],
        inputs=[cfg.sft_data] if cfg.sft_data else [],
    )
    gen_model, gen_adapter, gen_key = cfg.generator, sft.out / "adapter", sft.key
    filters = run_filters(cfg)
    pseudo_sets: list[Path] = []
    pseudo_keys: list[str] = []
    rounds = []
    for k in range(cfg.rounds):
        r = f"round-{k}"
        gen = rd.stage(
            f"{r}/generate",
            {"model": gen_model, "adapter": str(gen_adapter), **cfg.generate},
            lambda out, m=gen_model, a=gen_adapter, k=k: stages.generate(d, out, m, a, cfg.template, k, cfg.generate),
            upstream=[data.key, gen_key],
        )
        filt = rd.stage(
            f"{r}/filter",
            [_plain(f) for f in filters],
            lambda out, g=gen.out: stages.filter_queries(g, d, out, filters),
            upstream=[gen.key],
        )
        pseudo_sets.append(filt.out)
        pseudo_keys.append(filt.key)
        ret = rd.stage(
            f"{r}/retriever",
            {"encoder": cfg.encoder, **cfg.retriever, "mining": cfg.mining},
            lambda out, p=list(pseudo_sets): stages.train_retriever(d, p, out, cfg.encoder, cfg.retriever, cfg.mining),
            upstream=[data.key, *pseudo_keys],
        )
        model_dir = ret.out / "model"
        ev = rd.stage(
            f"{r}/evaluate",
            {"metrics": cfg.metrics, "split": cfg.test_split},
            lambda out, m=model_dir: stages.evaluate(d, m, out, cfg.test_split, cfg.metrics, base_runs),
            upstream=[ret.key, base.key],
        )
        diff = rd.stage(
            f"{r}/difficulty",
            {"temperature": cfg.difficulty_temperature},
            lambda out, g=gen.out, m=model_dir: stages.difficulty(d, g, m, out, temperature=cfg.difficulty_temperature),
            upstream=[gen.key, ret.key],
        )
        round_info: dict[str, Any] = {
            "round": k,
            "filter": filt.metrics,
            "retriever": ret.metrics,
            "evaluate": ev.metrics,
            "difficulty": diff.metrics,
        }
        sft_adapter = gen_adapter if gen_model == cfg.generator else None
        if cfg.rl in ("ppo", "dpo"):
            prefs = rd.stage(
                f"{r}/preferences",
                _plain(cfg.preferences),
                lambda out, g=gen.out, p=diff.out: stages.preferences(
                    d, g, p / "provenance.jsonl", out, cfg.preferences
                ),
                upstream=[diff.key],
            )
            round_info["preferences"] = prefs.metrics
        rl = None
        if cfg.rl == "ppo":
            rm = rd.stage(
                f"{r}/reward_model",
                {"model": cfg.generator, **cfg.reward},
                lambda out, p=prefs.out: stages.reward_model(p, out, cfg.generator, None, cfg.reward),
                upstream=[prefs.key],
            )
            rl = rd.stage(
                f"{r}/ppo",
                {"ppo": _plain(cfg.ppo), "prompts": cfg.rl_prompts},
                lambda out, p=diff.out, m=gen_model, a=sft_adapter, rm_dir=rm.out: stages.ppo(
                    d, p / "provenance.jsonl", rm_dir, out, m, a, cfg.ppo, cfg.rl_prompts, cfg.seed
                ),
                upstream=[rm.key, gen_key],
            )
            round_info |= {"reward_model": rm.metrics, "ppo": rl.metrics}
        elif cfg.rl == "dpo":
            rl = rd.stage(
                f"{r}/dpo",
                cfg.dpo,
                lambda out, p=prefs.out, m=gen_model, a=sft_adapter: stages.dpo(p, out, m, a, cfg.dpo),
                upstream=[prefs.key, gen_key],
            )
            round_info["dpo"] = rl.metrics
        elif cfg.rl == "grpo":
            rl = rd.stage(
                f"{r}/grpo",
                {"grpo": cfg.grpo, "band": cfg.grpo_band, "prompts": cfg.rl_prompts},
                lambda out, p=diff.out, m=gen_model, a=sft_adapter, rm_=model_dir: stages.grpo(
                    d, p / "provenance.jsonl", rm_, out, m, a, cfg.grpo, cfg.rl_prompts, cfg.grpo_band, cfg.seed
                ),
                upstream=[ret.key, diff.key, gen_key],
            )
            round_info["grpo"] = rl.metrics
        if rl is not None:
            gen_model, gen_adapter, gen_key = str(rl.out / "merged"), None, rl.key  # next round's generator
        rounds.append(round_info)

    report = {
        "name": cfg.name,
        "data": str(src),
        "subset": _plain(cfg.subset),
        "baselines": base.metrics,
        "rounds": rounds,
        "stages": {
            n: {"seconds": e.get("seconds"), "status": e.get("status")} for n, e in rd.manifest["stages"].items()
        },
        "executed": rd.executed,
    }
    write_run_report(root, report, cfg.metrics)
    return report
