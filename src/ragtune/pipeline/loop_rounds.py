"""The stages of `ragtune run` after the data stage: baselines, the generator's start, and the rounds.

Each `rd.stage(name, config, fn, upstream=..., inputs=...)` below declares one stage: what keys it (its settings and
the stages it reads) and what it runs (a function of pipeline/stages.py, quality.py, guard.py or style.py). Stage
configs name other stages' outputs relative to the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.config import ConfigModel
from ragtune.filters.bm25 import BM25FilterConfig
from ragtune.filters.dense import DenseFilterConfig
from ragtune.filters.difficulty import DifficultyFilterConfig
from ragtune.filters.lossnet import LossNetFilterConfig
from ragtune.filters.run import FilterSpec
from ragtune.pipeline import guard as guard_mod
from ragtune.pipeline import loop_guard, retriever_stage, stages
from ragtune.pipeline import quality as quality_mod
from ragtune.pipeline.report import RoundReport
from ragtune.pipeline.retriever_teacher import teacher_key
from ragtune.pipeline.rundir import RunDir, StageResult, stage_key
from ragtune.pipeline.style import SHOTS, read_examples, style
from ragtune.retrieval.colbert_model import ColbertModelSettings
from ragtune.train.generator.loop_reward import LoopRewardSettings


def overrides(settings: ConfigModel) -> dict[str, Any]:
    """The keys a run config sets in a stage's settings (what the stage's key hashes and its config is built from)."""
    return settings.model_dump(mode="json", exclude_unset=True)


def run_filters(cfg, retriever: Path | None = None, accepted: list[Path] | None = None) -> list[FilterSpec]:
    """The filters as a run applies them in a round: a dense filter that names no model uses the run's `encoder`
    (and no dtype the run's `dense_dtype`); a LossNet filter learns the loss of the run's retriever kind, starting
    from the latest trained `retriever` (else the encoder), and adds the queries kept in earlier rounds
    (`accepted`) to its training pairs; a difficulty filter that names no model judges with the latest trained
    `retriever`, so it applies from round 1 on, and keeps the preferences' band (the loop reward's) unless it names
    its own."""
    out = []
    for f in cfg.filters:
        if isinstance(f, DifficultyFilterConfig) and f.model is None:
            if retriever is None:
                continue
            fill = {"model": str(retriever), "kind": cfg.retriever.kind, "dtype": cfg.dense_dtype,
                    "temperature": cfg.difficulty_temperature, "index": getattr(cfg.retriever, "index", "flat"),
                    "band": tuple(cfg.preferences.band)}
            f = f.model_copy(update={k: v for k, v in fill.items() if k not in f.model_fields_set})
        if isinstance(f, DenseFilterConfig):
            update = {k: v for k, v in (("model", cfg.encoder), ("dtype", cfg.dense_dtype))
                      if k not in f.dense.model_fields_set}
            if update.get("dtype") == "float32":
                update.pop("dtype")  # the default: keeps the keys of runs made before dense_dtype existed
            if update:
                f = f.model_copy(update={"dense": f.dense.model_copy(update=update)})
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


def loop_reward(cfg) -> LoopRewardSettings:
    """The online reward's settings from the run: the filters' ranks, the preference band, the run's encoder."""
    ks = {"bm25": None, "dense": None}
    for f in cfg.filters:
        if isinstance(f, (BM25FilterConfig, DenseFilterConfig)) and ks[f.name] is None:
            ks[f.name] = f.k
    return LoopRewardSettings(bm25_k=ks["bm25"], dense_k=ks["dense"], filter_encoder=cfg.encoder,
                              band=cfg.preferences.band, band_falloff=cfg.reward_band_falloff,
                              weights=cfg.reward_weights, gap_weight=cfg.reward_gap_weight,
                              temperature=cfg.difficulty_temperature, dtype=cfg.dense_dtype,
                              kind=cfg.retriever.kind, index=getattr(cfg.retriever, "index", "flat"))


def _plain(cfg: ConfigModel | Any) -> Any:
    return cfg.model_dump(mode="json") if isinstance(cfg, ConfigModel) else cfg


def _reward_key(reward_cfg: LoopRewardSettings) -> dict[str, Any]:
    """The loop reward as a stage key entry; band_falloff and gap_weight only off their defaults (older runs keep
    their keys)."""
    out = _plain(reward_cfg)
    for name, default in (("band_falloff", 1.0), ("gap_weight", 0.0)):
        if getattr(reward_cfg, name) == default:
            out.pop(name)
    return out


def _dtype(cfg) -> dict[str, str]:
    """The dense dtype as a stage key entry, empty at the default (older runs keep their keys)."""
    return {"dtype": cfg.dense_dtype} if cfg.dense_dtype != "float32" else {}


def run_rounds(cfg, rd: RunDir, data: StageResult) -> tuple[list[RoundReport], dict[str, Any]]:
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval
    from ragtune.generate.config import GenerateSettings
    from ragtune.retrieval.dense import DenseConfig

    root, d, dt = rd.root, data.out, cfg.dense_dtype

    def rel(p: str | Path | None) -> str | None:
        if p is None:
            return None
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    sft_over, gen_over, ret_over, mining_over, reward_over, dpo_over, grpo_over = (overrides(x) for x in (
        cfg.sft, cfg.generate, cfg.retriever, cfg.mining, cfg.reward, cfg.dpo, cfg.grpo))
    teacher = teacher_key(cfg.retriever)  # here, so a teacher that cannot grade stops the run before any training
    # the generator trains on the document as `generate` will show it (cut to max_doc_tokens), not on more
    sft_over = {"max_prompt_tokens": cfg.generate.max_doc_tokens} | sft_over
    kind = cfg.retriever.kind
    index = getattr(cfg.retriever, "index", "flat")
    by_index = {"index": index} if kind == "colbert" else {}

    def baselines(out: Path) -> dict:
        res = {}
        for name, dense in (("bm25", None), ("zero_shot", DenseConfig(model=cfg.encoder, dtype=dt))):
            kw = {"retriever": "dense", "dense": dense} if dense else {"retriever": "bm25"}
            info = run_eval(
                EvalConfig(data=d, split=cfg.test_split, metrics=cfg.metrics, out=out / name, show_progress=True, **kw)
            )
            res[name] = info["metrics"]
        return res

    base = rd.stage("baselines", {"encoder": cfg.encoder, "metrics": cfg.metrics, "split": cfg.test_split,
                                  **_dtype(cfg)}, baselines, upstream=[data.key])
    base_runs = {"bm25": base.out / "bm25" / "run.trec", "zero_shot": base.out / "zero_shot" / "run.trec"}
    base_keys = [base.key]
    extra: dict[str, Any] = {"baselines": base.metrics}
    if cfg.train_only_baseline and not cfg.unlabeled:
        def train_only(out: Path) -> dict:
            r = retriever_stage.train(d, [], out / "retriever", cfg.encoder, cfg.retriever, ret_over, mining_over)
            e = retriever_stage.evaluate(d, out / "retriever" / "model", kind, out / "evaluate", cfg.test_split,
                                         cfg.metrics, base_runs, index, dt)
            return {"retriever": r, "evaluate": e}

        only = rd.stage("train_only", {"encoder": cfg.encoder, **retriever_stage.labeled_only(ret_over),
                                       "mining": mining_over,
                                       "metrics": cfg.metrics, "split": cfg.test_split, **_dtype(cfg)},
                        train_only, upstream=[data.key, base.key])
        base_runs["train_only"] = only.out / "evaluate" / "run.trec"
        base_keys.append(only.key)
        extra["train_only"] = only.metrics

    # ---- the generator's starting point: a given adapter, or round 0's SFT (then style adaptation)
    if cfg.generator_adapter is not None:
        gen_model, gen_adapter = cfg.generator, Path(cfg.generator_adapter)
        gen_key = stage_key({"model": cfg.generator}, inputs=[gen_adapter])
    else:
        sft = rd.stage(
            "round-0/sft",
            {"model": cfg.generator, "template": cfg.template, **sft_over},
            lambda out: stages.sft(Path(cfg.sft_data or d), out, cfg.generator, cfg.template, sft_over),
            upstream=[data.key],
            inputs=[cfg.sft_data] if cfg.sft_data else [],
        )
        gen_model, gen_adapter, gen_key = cfg.generator, sft.out / "adapter", sft.key
    examples = read_examples(cfg.target_examples) if cfg.target_examples else None
    shots_over: dict[str, Any] = {}
    style_stage: StageResult | None = None
    if examples and (cfg.style.prompt_shots or cfg.style.sft_steps):
        doc_tokens = sft_over.get("max_prompt_tokens")
        st = rd.stage("round-0/style", {**_plain(cfg.style), "model": rel(gen_model), "adapter": rel(gen_adapter),
                                        "max_prompt_tokens": doc_tokens},
                      lambda out, m=gen_model, a=gen_adapter: style(d, cfg.target_examples, out, cfg.style, m, a,
                                                                    cfg.template, doc_tokens),
                      upstream=[data.key, gen_key], inputs=[cfg.target_examples])
        extra["style"] = st.metrics
        style_stage = st
        # the shot file goes to generation even with no shots in the prompt: its queries are the examples a
        # generated query must not repeat word for word (the style SFT trained on every one of them)
        shots_over = {"few_shot": min(cfg.style.prompt_shots, st.metrics["pairs"]),
                      "few_shot_file": str(st.out / SHOTS), "few_shot_doc_tokens": cfg.style.shot_doc_tokens}
        if cfg.style.sft_steps:
            gen_model, gen_adapter, gen_key = str(st.out / "merged"), None, st.key

    lossnet = any(isinstance(f, LossNetFilterConfig) for f in cfg.filters)
    reward_cfg = loop_reward(cfg)
    max_doc = cfg.generate.max_doc_tokens
    pseudo_sets: list[Path] = []
    pseudo_keys: list[str] = []
    rounds: list[RoundReport] = []
    holdout: StageResult | None = None
    decide_q: StageResult | None = None
    prev_ev: StageResult | None = None
    ret: StageResult | None = None
    model_dir: Path | None = None
    for k in range(cfg.rounds):
        r = f"round-{k}"
        seed = {"seed": gen_over.get("seed", GenerateSettings().seed) + k} if cfg.fresh_documents and k else {}
        more = {"query_per_document": cfg.candidates_per_document} if k and cfg.candidates_per_document else {}
        gk = gen_over | seed | shots_over | more
        gk_key = gk | ({"few_shot_file": rel(gk["few_shot_file"])} if "few_shot_file" in gk else {})
        gen = rd.stage(
            f"{r}/generate",
            {"model": rel(gen_model), "adapter": rel(gen_adapter), **gk_key},
            lambda out, m=gen_model, a=gen_adapter, g=gk, k=k: stages.generate(d, out, m, a, cfg.template, k, g),
            upstream=[data.key, gen_key],
        )
        filters = run_filters(cfg, model_dir, list(pseudo_sets))
        # LossNet starts from the last round's retriever and a difficulty filter judges with it; LossNet also
        # learns from earlier rounds' kept queries
        reads_ret = ret is not None and (lossnet or any(isinstance(f, DifficultyFilterConfig) for f in filters))
        filt = rd.stage(
            f"{r}/filter",
            [_plain(f) | ({"model": rel(f.model)} if isinstance(f, DifficultyFilterConfig) else {}) for f in filters],
            lambda out, g=gen.out, fs=filters: stages.filter_queries(g, d, out, fs),
            upstream=[gen.key, *([ret.key] if reads_ret else []), *(pseudo_keys if lossnet and ret else [])],
        )
        if cfg.guard.enabled and holdout is None:
            # each guard stage gets its settings rebuilt from its key: what does not key it cannot reach it
            hk = guard_mod.holdout_key(cfg.guard)
            holdout = rd.stage("round-0/holdout", hk, lambda out, f=filt.out, g=hk: guard_mod.holdout(
                f, d, out, guard_mod.GuardConfig(**g)), upstream=[filt.key])
            extra["holdout"] = holdout.metrics
            if cfg.guard.decide_on == "other_generator":
                decide_q = loop_guard.other_generator_stage(cfg, rd, d, holdout, data.key, style_stage, gen_over,
                                                            rel)
                extra["guard_queries"] = decide_q.metrics
        held = guard_mod.held_documents(holdout.out if holdout else None)
        dev = guard_mod.select_dev(holdout.out, cfg.guard) if holdout is not None and cfg.unlabeled else None
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
        plan = retriever_stage.round_plan(cfg.retriever, cfg.encoder, mining_over, model_dir, dt)
        ret = rd.stage(
            f"{r}/retriever",
            {"encoder": cfg.encoder, **retriever_stage.round_overrides(ret_over, cur is not None, ret is not None),
             "mining": mining_over, **({"guard_dev": True} if dev else {}), **teacher,
             **(_dtype(cfg) if plan.reads_previous else {})},
            lambda out, p=list(pseudo_sets), c=cur, dv=dev, h=held, rp=plan: retriever_stage.train(
                d, p, out, rp.start, cfg.retriever, ret_over, rp.mining,
                c.out / retriever_stage.CURRICULUM_FILE if c else None, h, dv),
            upstream=[data.key, *pseudo_keys, *([cur.key] if cur else []), *([holdout.key] if holdout else []),
                      *([ret.key] if plan.reads_previous and ret else [])],
        )
        model_dir = ret.out / "model"
        round_info: RoundReport = {"round": k, "filter": filt.metrics, "retriever": ret.metrics,
                                   **({"curriculum": cur.metrics} if cur else {})}
        if holdout is not None:
            dq = decide_q.out / "generate" if decide_q else None
            dk = guard_mod.decision_key(cfg.guard)
            gd = rd.stage(f"{r}/guard", {**dk, **_dtype(cfg)},
                          lambda out, m=model_dir, h=holdout.out, q=dq, g=dk: guard_mod.guard(
                              d, h, m, cfg.encoder, out, guard_mod.GuardConfig(**g), dt, q),
                          upstream=[ret.key, holdout.key, *([decide_q.key] if decide_q else [])])
            round_info["guard"] = gd.metrics
        compare = dict(base_runs) | ({"previous_round": prev_ev.out / "run.trec"} if prev_ev else {})
        ev = rd.stage(
            f"{r}/evaluate",
            {"metrics": cfg.metrics, "split": cfg.test_split, **_dtype(cfg), **by_index,
             **({"compare": sorted(compare)} if len(compare) > 2 else {})},
            lambda out, m=model_dir, c=compare: retriever_stage.evaluate(d, m, kind, out, cfg.test_split,
                                                                         cfg.metrics, c, index, dt),
            upstream=[ret.key, *base_keys, *([prev_ev.key] if prev_ev else [])],
        )
        prev_ev = ev
        diff = rd.stage(
            f"{r}/difficulty",
            {"temperature": cfg.difficulty_temperature, **_dtype(cfg), **by_index, "provenance": "filter"},
            lambda out, g=gen.out, f=filt.out, m=model_dir: retriever_stage.difficulty(
                d, g, m, kind, out, temperature=cfg.difficulty_temperature, index=index, dtype=dt,
                provenance=f / "provenance.jsonl"),
            upstream=[gen.key, filt.key, ret.key],
        )
        qual = rd.stage(f"{r}/quality", {"band": list(cfg.preferences.band), "examples": examples or []},
                        lambda out, p=diff.out, g=gen.out: quality_mod.quality(
                            d, p / "provenance.jsonl", g, out, cfg.preferences.band, examples),
                        upstream=[diff.key])
        round_info |= {"evaluate": ev.metrics, "difficulty": diff.metrics, "quality": qual.metrics}
        prov = diff.out / "provenance.jsonl"
        rl, rl_cpu = None, 0.0
        algo = cfg.rl if cfg.rl_after_last_round or k < cfg.rounds - 1 else "none"
        if algo in ("ppo", "dpo"):
            prefs = rd.stage(
                f"{r}/preferences", {**_plain(cfg.preferences), "max_doc_tokens": max_doc},
                lambda out, g=gen.out, m=gen_model, a=gen_adapter, pv=prov: stages.preferences(
                    d, g, pv, out, cfg.preferences, (m, a), max_doc),
                upstream=[diff.key, gen_key],
            )
            round_info["preferences"] = prefs.metrics
        if algo == "ppo":
            rm = rd.stage(
                f"{r}/reward_model", {"model": rel(gen_model), "adapter": rel(gen_adapter), **reward_over},
                lambda out, p=prefs.out, m=gen_model, a=gen_adapter: stages.reward_model(p, out, m, a, reward_over),
                upstream=[prefs.key, gen_key],
            )
            online = cfg.ppo_reward == "retrieval"
            rl = rd.stage(
                f"{r}/ppo",
                {"ppo": _plain(cfg.ppo), "prompts": cfg.rl_prompts, "seed": cfg.seed, "max_doc_tokens": max_doc,
                 **({"reward": _reward_key(reward_cfg)} if online else {})},
                lambda out, m=gen_model, a=gen_adapter, rm_dir=rm.out, md=model_dir, pv=prov,
                rw=reward_cfg if online else None: stages.ppo(
                    d, pv, rm_dir, out, m, a, cfg.ppo, cfg.rl_prompts, cfg.seed, max_doc, cfg.ppo_reward, md, rw),
                upstream=[rm.key, gen_key, diff.key, *([ret.key] if online else [])],
            )
            round_info |= {"reward_model": rm.metrics, "ppo": rl.metrics}
            rl_cpu = (rm.cpu_seconds or 0.0) if not online else 0.0
        elif algo == "dpo":
            rl = rd.stage(
                f"{r}/dpo", dpo_over,
                lambda out, p=prefs.out, m=gen_model, a=gen_adapter: stages.dpo(p, out, m, a, dpo_over),
                upstream=[prefs.key, gen_key],
            )
            round_info["dpo"] = rl.metrics
        elif algo == "grpo":
            lr = _reward_key(reward_cfg) if cfg.online_reward == "loop" else None
            rl = rd.stage(
                f"{r}/grpo",
                {"grpo": grpo_over, "band": cfg.grpo_band, "prompts": cfg.rl_prompts, "seed": cfg.seed,
                 "max_doc_tokens": max_doc, **by_index, **({"loop_reward": lr} if lr else {})},
                lambda out, m=gen_model, a=gen_adapter, md=model_dir, pv=prov, lw=lr: stages.grpo(
                    d, pv, md, out, m, a, grpo_over, cfg.rl_prompts, cfg.grpo_band, cfg.seed, kind, index, max_doc,
                    lw),
                upstream=[ret.key, diff.key, gen_key],
            )
            round_info["grpo"] = rl.metrics
        if rl is not None and cfg.rl_eval_docs:
            cpu = rl_cpu + (rl.cpu_seconds or 0.0)
            docs = quality_mod.rl_eval_docs(d, gen.out, held, cfg.rl_eval_docs, cfg.seed)
            rle = rd.stage(
                f"{r}/rl_eval", {"documents": cfg.rl_eval_docs, "reward": _reward_key(reward_cfg), **gk_key},
                lambda out, m=gen_model, a=gen_adapter, after=rl.out / "merged", md=model_dir, c=cpu, g=gk, ds=docs:
                quality_mod.rl_eval(d, ds, md, out, (m, a), (str(after), None), cfg.template, g, reward_cfg, c),
                upstream=[rl.key, ret.key, gen_key],
            )
            round_info["rl_eval"] = rle.metrics
        if rl is not None:
            gen_model, gen_adapter, gen_key = str(rl.out / "merged"), None, rl.key  # next round's generator
        rounds.append(round_info)
    if holdout is not None:
        extra["shipped"] = loop_guard.shipped(rounds, base.metrics)
    return rounds, extra
