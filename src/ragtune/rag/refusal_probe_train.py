"""`ragtune train refusal-probe`: fit the answerer's refusal probe (`ragtune.rag.refusal_probe`) on labelled records.

    ragtune train refusal-probe data=runs/qa/squad/squad_train.meta.jsonl dev=runs/qa/squad/squad_dev.meta.jsonl \
        answerer.adapter=runs/answerer out=runs/answerer-probe
    ragtune eval rag runs/qa/squad answerer.adapter=runs/answerer answerer.refusal_probe=runs/answerer-probe \
        refusal.data=runs/qa/squad/squad_dev.meta.jsonl

`data` and `dev` are converter meta files (`ragtune data convert squad-sft|webqa-sft`): each record a question, its
context (gold, other passage or mismatched) and whether the context answers it. The probe learns "unanswerable"
from the answerer's hidden state at the end of each record's prompt (the answerer's own chat prompt with the
record's context). The layer (every `layer_step`-th), the L2 strength and the combination (the probe alone, or
summed with the likelihood margin, with an answerability verifier's score (`verifier=`, from `ragtune train
refusal-verifier`), or with both) are chosen by AUC on `dev`, whose questions no training record may ask. The refusal
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
from ragtune.rag.ask import AnswererConfig, load_answerer
from ragtune.rag.refusal_probe import SIGNALS, Combine, answerer_fingerprint, fit_layers, probe_from


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
    verifier: Path | None = None
    """An answerability verifier (`ragtune train refusal-verifier` folder) whose score the probe may add; it must
    then be passed as `answerer.refusal_verifier` wherever the probe is used."""
    combine: Literal["auto", "probe", "probe+margin", "probe+verifier", "probe+verifier+margin"] = "auto"
    """The refusal signal: the probe alone or summed with the likelihood margin and/or the verifier's score (each
    standardised on dev), or whichever of these ranks dev best (auto). A margin decodes the dev questions once."""


def labelled(path: Path, sources: list[str] | None) -> list[dict[str, Any]]:
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

    check_output(cfg.out, "out", folder=True)
    train, dev = labelled(cfg.data, cfg.sources), labelled(cfg.dev, None)
    candidates = _candidates(cfg)
    uses_verifier = any("verifier" in c for c in candidates)
    if uses_verifier:  # before the long passes: a folder without weights is an error now
        from ragtune.rag.refusal_verifier import RefusalVerifier, verifier_fingerprint

        verifier_sha = verifier_fingerprint(cfg.verifier, "verifier")
    shared = {it["question"] for it in train} & {it["question"] for it in dev}
    if shared:
        raise DataFormatError(cfg.dev, None, f"{len(shared)} dev questions are also asked in {cfg.data} "
                              f"(e.g. {sorted(shared)[0]!r})", field="question",
                              hint="use the converter's dev split (`dev_questions=N`), question-disjoint from train")
    a = cfg.answerer
    set_threads(a.threads)
    device = pick_device(a.device)

    def load(adapter):  # the answerer without the probe being fitted
        return load_answerer(a, device, adapter=adapter, refusal_probe=None, refusal_verifier=None)

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
    signals = {"probe": [float(v) for v in best["dev_logits"]]}
    if uses_verifier:
        verifier = RefusalVerifier.load(cfg.verifier, device)
        signals["verifier"] = verifier.scores([it["question"] for it in dev], [[it["context"]] for it in dev])
        probe.verifier = verifier_sha
    if any("margin" in c for c in candidates):
        if cfg.reads == "base" and a.adapter is not None:
            answerer = load(a.adapter)  # the margin is the answerer's own
        signals["margin"] = [g.margin for g in answerer.generate(dev_prompts, progress=True)]
    probe.standardise = {k: (mean(v), pstdev(v) or 1.0) for k, v in signals.items()}
    aucs = {}
    for c in candidates:
        trial = replace(probe, combine=c)
        values = [signals.get(k, [None] * len(dev)) for k in SIGNALS]
        aucs[c] = float(roc_auc_score(y_dev, [trial.score(p, m, v) for p, v, m in zip(*values, strict=True)]))
    probe.combine = max(candidates, key=lambda c: aucs[c])  # ties: the first, the fewest signals
    if "verifier" not in probe.signals:
        probe.verifier = None
    probe.standardise = {k: v for k, v in probe.standardise.items() if k in probe.signals}
    probe.reads = cfg.reads
    probe.answerer = answerer_fingerprint(a.model, a.adapter if cfg.reads == "answerer" else None)
    summary = {"layer": probe.layer, "C": best["C"], "combine": probe.combine, "reads": cfg.reads,
               "auc_dev": aucs[probe.combine], "auc_dev_signals": {k: float(roc_auc_score(y_dev, v))
                                                                   for k, v in signals.items()},
               "auc_dev_combinations": aucs, "train_records": len(train), "dev_questions": len(dev),
               "data": str(cfg.data), "dev": str(cfg.dev), "sources": cfg.sources,
               "verifier_path": str(cfg.verifier) if probe.verifier else None,
               "tried": [{**t, "layer": layers[t.pop("position")]} for t in tried]}
    probe.info = summary
    probe.save(cfg.out)
    dump_config(cfg, cfg.out / "config.yaml")
    return {**summary, "out": str(cfg.out)}


def _candidates(cfg: RefusalProbeConfig) -> list[Combine]:
    """The combinations `combine` lets dev choose from, fewest signals first."""
    if cfg.combine != "auto":
        if "verifier" in cfg.combine and cfg.verifier is None:
            raise ConfigError(f'key "combine": {cfg.combine} needs a verifier (`verifier=` a `ragtune train '
                              'refusal-verifier` folder)')
        return [cfg.combine]
    return ["probe", "probe+margin"] + (["probe+verifier", "probe+verifier+margin"] if cfg.verifier else [])
