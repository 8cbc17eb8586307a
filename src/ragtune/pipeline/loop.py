"""`ragtune run CONFIG.yaml`: the closed loop, N rounds, resumable and hash-keyed.

Round k: [SFT, round 0] -> generate -> filter -> [curriculum, round k >= 1] -> train retriever (train pairs +
kept pseudo queries; a bi-encoder or ColBERT, `retriever.kind`) -> evaluate on the test split (p-values vs BM25
and zero-shot) -> difficulty of every pseudo query -> preference pairs -> reward model -> PPO on the
generator; round k+1 generates with the PPO-improved generator, and its retriever training follows the
difficulties round k's retriever gives its training queries (`retriever.curriculum`).

Each stage's section of the run config (`sft:`, `generate:`, `retriever:`, `mining:`, `reward:`, `dpo:`, `grpo:`)
is that stage's own settings class: every key the stage takes except the paths the loop wires in, with the
stage's defaults and field docs, validated when the run config is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_serializer

from ragtune.config import Band, ConfigModel, dump_config
from ragtune.evaluate.metrics import DEFAULT_METRICS, MetricName
from ragtune.filters.bm25 import BM25FilterConfig
from ragtune.filters.dense import DenseFilterConfig
from ragtune.filters.lossnet import LossNetFilterConfig
from ragtune.filters.run import FilterSpec
from ragtune.generate.config import GenerateSettings
from ragtune.models import DEFAULT_ENCODER, DEFAULT_GENERATOR
from ragtune.paths import shared_data
from ragtune.pipeline import retriever_stage, stages
from ragtune.pipeline.report import RoundReport, RunReport, write_run_report
from ragtune.pipeline.retriever_stage import BiEncoderLoopSettings, RetrieverSettings
from ragtune.pipeline.rundir import RunDir
from ragtune.pipeline.subset import SubsetConfig, make_subset
from ragtune.retrieval.colbert_model import ColbertModelSettings
from ragtune.retrieval.mining import BeirEmbeddingSettings
from ragtune.train.generator.dpo import DPOSettings
from ragtune.train.generator.grpo import GRPOSettings
from ragtune.train.generator.ppo import PPOConfig
from ragtune.train.generator.preferences import PreferenceConfig
from ragtune.train.generator.reward import RewardSettings
from ragtune.train.generator.sft_config import SFTSettings


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
    metrics: list[MetricName] = Field(default_factory=lambda: list(DEFAULT_METRICS))
    generator: str = DEFAULT_GENERATOR
    template: str = "auto"
    sft: SFTSettings = Field(default_factory=SFTSettings)
    """The round-0 SFT: `ragtune train generator` keys but the data and output paths."""
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    """`ragtune generate` keys but the corpus and output folders."""
    filters: list[FilterSpec] = Field(default_factory=lambda: [BM25FilterConfig(k=30)])
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
    """GRPO reward shaping: the difficulty band (1 - reciprocal rank) the generator is pushed toward."""
    rl_prompts: int = Field(32, ge=1)
    """Documents whose prompts the RL stage samples from."""
    seed: int = 0

    @field_serializer("sft", "generate", "retriever", "mining", "reward", "dpo", "grpo")
    def _as_given(self, settings: ConfigModel) -> dict[str, Any]:
        # the resolved config.yaml keeps what the user set: reloading it keys every stage as before
        return overrides(settings)


def overrides(settings: ConfigModel) -> dict[str, Any]:
    """The keys a run config sets in a stage's settings (what the stage's key hashes and its config is built from)."""
    return settings.model_dump(mode="json", exclude_unset=True)


def run_filters(cfg: RunConfig, retriever: Path | None = None, accepted: list[Path] | None = None
                ) -> list[FilterSpec]:
    """The filters as a run applies them in a round: a dense filter that names no model uses the run's `encoder`;
    a LossNet filter learns the loss of the run's retriever kind, starting from the latest trained `retriever`
    (else the encoder), and adds the queries kept in earlier rounds (`accepted`) to its training pairs."""
    out = []
    for f in cfg.filters:
        if isinstance(f, DenseFilterConfig) and "model" not in f.dense.model_fields_set:
            f = f.model_copy(update={"dense": f.dense.model_copy(update={"model": cfg.encoder})})
        elif isinstance(f, LossNetFilterConfig):
            given = f.model_fields_set
            fill = {"model": str(retriever or cfg.encoder), "retriever": cfg.retriever.kind,
                    "accepted": list(accepted or [])}
            if cfg.retriever.kind == "colbert":
                fill["colbert"] = ColbertModelSettings(**{k: getattr(cfg.retriever, k)
                                                          for k in ColbertModelSettings.model_fields})
            f = f.model_copy(update={k: v for k, v in fill.items() if k not in given})
        out.append(f)
    return out


def _plain(cfg: ConfigModel | Any) -> Any:
    return cfg.model_dump(mode="json") if isinstance(cfg, ConfigModel) else cfg


def run_loop(cfg: RunConfig) -> RunReport:
    src = Path(cfg.data or shared_data("beir", "scifact"))
    if not (src / "corpus.jsonl").exists():
        raise FileNotFoundError(f"{src}: no corpus.jsonl; point data= at a BEIR folder (or set RAGTUNE_SHARED)")
    with RunDir(Path(cfg.out or Path("runs") / cfg.name)) as rd:  # one run per directory at a time
        return _run_rounds(cfg, src, rd)


def _run_rounds(cfg: RunConfig, src: Path, rd: RunDir) -> RunReport:
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval
    from ragtune.retrieval.dense import DenseConfig

    sft_over, gen_over, ret_over, mining_over, reward_over, dpo_over, grpo_over = (overrides(x) for x in (
        cfg.sft, cfg.generate, cfg.retriever, cfg.mining, cfg.reward, cfg.dpo, cfg.grpo))
    root = rd.root
    dump_config(cfg, root / "config.yaml")

    data = rd.stage("data", {"subset": _plain(cfg.subset), "test_split": cfg.test_split},
                    lambda out: make_subset(src, out, cfg.subset, cfg.test_split), inputs=[src])
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

    base = rd.stage("baselines", {"encoder": cfg.encoder, "metrics": cfg.metrics, "split": cfg.test_split},
                    baselines, upstream=[data.key])
    base_runs = {"bm25": base.out / "bm25" / "run.trec", "zero_shot": base.out / "zero_shot" / "run.trec"}

    sft = rd.stage(
        "round-0/sft",
        {"model": cfg.generator, "template": cfg.template, **sft_over},
        lambda out: stages.sft(Path(cfg.sft_data or d), out, cfg.generator, cfg.template, sft_over),
        upstream=[data.key],
        inputs=[cfg.sft_data] if cfg.sft_data else [],
    )
    gen_model, gen_adapter, gen_key = cfg.generator, sft.out / "adapter", sft.key
    kind = cfg.retriever.kind
    index = getattr(cfg.retriever, "index", "flat")
    lossnet = any(isinstance(f, LossNetFilterConfig) for f in cfg.filters)
    pseudo_sets: list[Path] = []
    pseudo_keys: list[str] = []
    rounds = []
    ret = model_dir = None
    for k in range(cfg.rounds):
        r = f"round-{k}"
        gen = rd.stage(
            f"{r}/generate",
            {"model": gen_model, "adapter": str(gen_adapter), **gen_over},
            lambda out, m=gen_model, a=gen_adapter, k=k: stages.generate(d, out, m, a, cfg.template, k, gen_over),
            upstream=[data.key, gen_key],
        )
        filters = run_filters(cfg, model_dir, list(pseudo_sets))
        filt = rd.stage(
            f"{r}/filter",
            [_plain(f) for f in filters],
            lambda out, g=gen.out, fs=filters: stages.filter_queries(g, d, out, fs),
            # LossNet starts from the last round's retriever and learns from earlier rounds' kept queries
            upstream=[gen.key, *([ret.key, *pseudo_keys] if lossnet and ret else [])],
        )
        pseudo_sets.append(filt.out)
        pseudo_keys.append(filt.key)
        cur = None
        if cfg.retriever.curriculum != "none" and ret is not None:
            cur = rd.stage(
                f"{r}/curriculum",
                {"temperature": cfg.difficulty_temperature, "index": index},
                lambda out, p=list(pseudo_sets), m=model_dir: retriever_stage.score_training_queries(
                    d, p, m, kind, out, temperature=cfg.difficulty_temperature, index=index),
                upstream=[ret.key, data.key, *pseudo_keys],
            )
        ret = rd.stage(
            f"{r}/retriever",
            # a round without a curriculum (round 0) is not keyed by the curriculum settings
            {"encoder": cfg.encoder, **(ret_over if cur else retriever_stage.without_curriculum(ret_over)),
             "mining": mining_over},
            lambda out, p=list(pseudo_sets), c=cur: retriever_stage.train(
                d, p, out, cfg.encoder, cfg.retriever, ret_over, mining_over,
                c.out / retriever_stage.CURRICULUM_FILE if c else None),
            upstream=[data.key, *pseudo_keys, *([cur.key] if cur else [])],
        )
        model_dir = ret.out / "model"
        ev = rd.stage(
            f"{r}/evaluate",
            {"metrics": cfg.metrics, "split": cfg.test_split, **({"index": index} if kind == "colbert" else {})},
            lambda out, m=model_dir: retriever_stage.evaluate(d, m, kind, out, cfg.test_split, cfg.metrics,
                                                              base_runs, index),
            upstream=[ret.key, base.key],
        )
        diff = rd.stage(
            f"{r}/difficulty",
            {"temperature": cfg.difficulty_temperature, **({"index": index} if kind == "colbert" else {})},
            lambda out, g=gen.out, m=model_dir: retriever_stage.difficulty(
                d, g, m, kind, out, temperature=cfg.difficulty_temperature, index=index),
            upstream=[gen.key, ret.key],
        )
        round_info: RoundReport = {
            "round": k,
            "filter": filt.metrics,
            "retriever": ret.metrics,
            "evaluate": ev.metrics,
            "difficulty": diff.metrics,
            **({"curriculum": cur.metrics} if cur else {}),
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
                {"model": cfg.generator, **reward_over},
                lambda out, p=prefs.out: stages.reward_model(p, out, cfg.generator, None, reward_over),
                upstream=[prefs.key],
            )
            rl = rd.stage(
                f"{r}/ppo",
                {"ppo": _plain(cfg.ppo), "prompts": cfg.rl_prompts, "seed": cfg.seed},
                lambda out, p=diff.out, m=gen_model, a=sft_adapter, rm_dir=rm.out: stages.ppo(
                    d, p / "provenance.jsonl", rm_dir, out, m, a, cfg.ppo, cfg.rl_prompts, cfg.seed
                ),
                upstream=[rm.key, gen_key],
            )
            round_info |= {"reward_model": rm.metrics, "ppo": rl.metrics}
        elif cfg.rl == "dpo":
            rl = rd.stage(
                f"{r}/dpo",
                dpo_over,
                lambda out, p=prefs.out, m=gen_model, a=sft_adapter: stages.dpo(p, out, m, a, dpo_over),
                upstream=[prefs.key, gen_key],
            )
            round_info["dpo"] = rl.metrics
        elif cfg.rl == "grpo":
            rl = rd.stage(
                f"{r}/grpo",
                {"grpo": grpo_over, "band": cfg.grpo_band, "prompts": cfg.rl_prompts, "seed": cfg.seed},
                lambda out, p=diff.out, m=gen_model, a=sft_adapter, rm_=model_dir: stages.grpo(
                    d, p / "provenance.jsonl", rm_, out, m, a, grpo_over, cfg.rl_prompts, cfg.grpo_band, cfg.seed,
                    kind, index
                ),
                upstream=[ret.key, diff.key, gen_key],
            )
            round_info["grpo"] = rl.metrics
        if rl is not None:
            gen_model, gen_adapter, gen_key = str(rl.out / "merged"), None, rl.key  # next round's generator
        rounds.append(round_info)

    report: RunReport = {
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
