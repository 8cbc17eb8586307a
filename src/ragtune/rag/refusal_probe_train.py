"""`ragtune train refusal-probe`: fit the answerer's refusal probe (`ragtune.rag.refusal_probe`) on labelled records.

    ragtune train refusal-probe data=runs/qa/squad/squad_train.meta.jsonl dev=runs/qa/squad/squad_dev.meta.jsonl \
        answerer.adapter=runs/answerer out=runs/answerer-probe
    ragtune eval rag runs/qa/squad answerer.adapter=runs/answerer answerer.refusal_probe=runs/answerer-probe \
        refusal.data=runs/qa/squad/squad_dev.meta.jsonl

`data` and `dev` are converter meta files (`ragtune data convert squad-sft|webqa-sft`): each record a question, its
context (gold, other passage or mismatched) and whether the context answers it. The probe learns "unanswerable"
from the answerer's hidden state at the end of each record's prompt (the answerer's own chat prompt with the
record's context). The layer (every `layer_step`-th), the L2 strength and the combination (the probe alone or with
the likelihood margin) are chosen by AUC on `dev`, whose questions no training record may ask. The refusal
threshold is not chosen here: `ragtune eval rag ... refusal.data=DEV` calibrates `refusal_margin` on the probe's
score as it does on the margin.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ragtune.atomic import check_output
from ragtune.config import ConfigError, ConfigModel, dump_config
from ragtune.data.errors import DataFormatError
from ragtune.rag.answerer_eval import load_items
from ragtune.rag.ask import AnswererConfig
from ragtune.rag.refusal_probe import answerer_fingerprint, fit_layers, probe_from


class RefusalProbeConfig(ConfigModel):
    data: Path
    """Training records: a converter `*_train.meta.jsonl` (question, context, answers, answerable, source)."""
    dev: Path
    """Dev records the layer, strength and combination are chosen on (`*_dev.meta.jsonl`); no question of `data`."""
    out: Path
    """Folder for probe.safetensors, probe.json and this config."""
    answerer: AnswererConfig = Field(default_factory=AnswererConfig)
    """The answerer whose hidden states are read (model, adapter, template): the probe only fits it."""
    sources: list[str] | None = None
    """Fit on records of these converter sources only (answerable, impossible, hard, mismatched); None = all."""
    layer_step: int = Field(3, ge=1)
    """Try the hidden state after every layer_step-th layer."""
    strengths: list[float] = Field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0], min_length=1)
    """Inverse L2 strengths (logistic regression C) tried on dev."""
    reads: Literal["answerer", "base"] = "answerer"
    """Fit on the answerer's hidden states, or on the base model's (`answerer.model` without the adapter: it has not
    seen the training articles; the answerer then runs the prompt once more with its LoRA switched off)."""
    combine: Literal["auto", "probe", "probe+margin"] = "auto"
    """The refusal signal: the probe alone, the probe plus the likelihood margin (each standardised on dev), or
    whichever ranks dev better (auto). Anything but `probe` decodes the dev questions once for their margins."""


def _labelled(path: Path, sources: list[str] | None) -> list[dict[str, Any]]:
    _, items = load_items(path)
    items = [it for it in items if sources is None or it.get("source") in sources]
    kinds = {bool(it["answerable"]) for it in items}
    if kinds != {True, False}:
        raise DataFormatError(path, None, "the probe needs answerable and unanswerable records; found only "
                              + ("answerable" if True in kinds else "unanswerable" if kinds else "none"),
                              field="answerable")
    return items


def train_refusal_probe(cfg: RefusalProbeConfig) -> dict[str, Any]:
    from statistics import mean, pstdev

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from ragtune.hardware import pick_device, set_threads
    from ragtune.rag.answer import Answerer

    check_output(cfg.out, "out", folder=True)
    train, dev = _labelled(cfg.data, cfg.sources), _labelled(cfg.dev, None)
    shared = {it["question"] for it in train} & {it["question"] for it in dev}
    if shared:
        raise DataFormatError(cfg.dev, None, f"{len(shared)} dev questions are also asked in {cfg.data} "
                              f"(e.g. {sorted(shared)[0]!r})", field="question",
                              hint="use the converter's dev split (`dev_questions=N`), question-disjoint from train")
    a = cfg.answerer
    set_threads(a.threads)
    device = pick_device(a.device)

    def load(adapter):
        return Answerer.load(a.model, adapter, a.template, device, max_new_tokens=a.max_new_tokens,
                             batch_size=a.batch_size, max_prompt_tokens=a.max_prompt_tokens,
                             refusal_floor=a.refusal_floor, refusals=a.refusals)

    answerer = load(a.adapter if cfg.reads == "answerer" else None)
    n_layers = answerer.model.config.num_hidden_layers
    layers = list(range(cfg.layer_step, n_layers + 1, cfg.layer_step))
    if not layers:
        raise ConfigError(f'key "layer_step": {cfg.layer_step} is more than the model\'s {n_layers} layers')

    def prompts(items):
        return [answerer.prompt(it["question"], [it["context"]], it.get("language", "en")) for it in items]

    y, y_dev = np.array([not it["answerable"] for it in train]), np.array([not it["answerable"] for it in dev])
    dev_prompts = prompts(dev)
    best, tried = fit_layers(answerer.prompt_states(prompts(train), layers), y,
                             answerer.prompt_states(dev_prompts, layers), y_dev, cfg.strengths)
    probe = probe_from(best, layers[best["position"]])
    logits = [float(v) for v in best["dev_logits"]]
    probe.standardise = (mean(logits), pstdev(logits) or 1.0, 0.0, 1.0)
    auc_margin = auc_combined = None
    probe.combine = "probe" if cfg.combine == "auto" else cfg.combine
    if cfg.combine != "probe":
        if cfg.reads == "base" and a.adapter is not None:
            answerer = load(a.adapter)  # the margin is the answerer's own
        margins = [g.margin for g in answerer.generate(dev_prompts, progress=True)]
        probe.standardise = (*probe.standardise[:2], mean(margins), pstdev(margins) or 1.0)
        auc_margin = float(roc_auc_score(y_dev, margins))
        both = replace(probe, combine="probe+margin")
        auc_combined = float(roc_auc_score(y_dev, [both.score(lo, m) for lo, m in zip(logits, margins, strict=True)]))
        if cfg.combine == "auto" and auc_combined > best["auc_dev"]:
            probe.combine = "probe+margin"
    probe.reads = cfg.reads
    probe.answerer = answerer_fingerprint(a.model, a.adapter if cfg.reads == "answerer" else None)
    summary = {"layer": probe.layer, "C": best["C"], "combine": probe.combine, "reads": cfg.reads,
               "auc_dev": best["auc_dev"],
               "auc_dev_margin": auc_margin, "auc_dev_combined": auc_combined, "train_records": len(train),
               "dev_questions": len(dev), "data": str(cfg.data), "dev": str(cfg.dev), "sources": cfg.sources,
               "tried": [{**t, "layer": layers[t.pop("position")]} for t in tried]}
    probe.info = summary
    probe.save(cfg.out)
    dump_config(cfg, cfg.out / "config.yaml")
    return {**summary, "out": str(cfg.out)}
