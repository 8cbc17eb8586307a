"""A linear probe on the answerer's hidden state where its answer starts: a refusal signal that costs no extra pass.

The answerer's likelihood margin separates answerable from unanswerable questions about as well on new articles as
a separate verifier does, but far worse on dev questions of the training articles, so a threshold chosen on dev
lands off target (BENCHMARKS.md, issue 18). Answerability is also linearly readable from the hidden state at the
end of the prompt (Slobodkin et al., 2023), which the answerer computes anyway: a logistic regression on that state,
fitted on training records and chosen on dev, scores every prompt at no extra cost, and its dev AUC predicts its
held-out AUC. `combine` adds other signals, each standardised on dev: the likelihood margin (`probe+margin`), an
answerability verifier's score (`probe+verifier`, `ragtune.rag.refusal_verifier`), or both. `reads: base` fits the
probe on the base model's states instead of the fine-tuned answerer's (which have seen the training articles); the
answerer then keeps its LoRA unmerged and runs the prompt once more with the adapter switched off.

Files (no pickle): `probe.safetensors` (the standardisation and the weights, float32) and `probe.json` (the layer,
the intercept, the combination and each signal's dev mean and sd, the answerer and verifier it was fitted with, the
dev AUCs). A probe reads one model's hidden states: loading it beside another base model, adapter or verifier is an
error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

WEIGHTS, INFO = "probe.safetensors", "probe.json"
Combine = Literal["probe", "probe+margin", "probe+verifier", "probe+verifier+margin"]
SIGNALS = ("probe", "verifier", "margin")
Reads = Literal["answerer", "base"]


def answerer_fingerprint(model: str | Path, adapter: str | Path | None) -> dict[str, str | None]:
    """What the hidden states depend on: the base model's name and the adapter weights' SHA-256."""
    digest = None
    if adapter is not None:
        h = hashlib.sha256()
        for f in sorted(Path(adapter).glob("adapter_model.*")):
            h.update(f.read_bytes())
        digest = h.hexdigest()
    return {"model": str(model), "adapter_sha256": digest}


@dataclass
class RefusalProbe:
    layer: int
    """Index into the model's `hidden_states` (0 = embeddings, i = after decoder layer i)."""
    mean: Any
    scale: Any
    coef: Any
    intercept: float
    combine: Combine = "probe"
    reads: Reads = "answerer"
    """Whose hidden states: the answerer's (base + adapter) or the base model's (the adapter switched off)."""
    standardise: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Per signal of `combine`: (mean, sd) on the dev questions."""
    answerer: dict[str, Any] = field(default_factory=dict)
    verifier: str | None = None
    """SHA-256 of the verifier's weights where `combine` uses one."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def signals(self) -> tuple[str, ...]:
        return tuple(self.combine.split("+"))

    def logits(self, hidden_states) -> list[float]:
        """Per prompt, the probe's log-odds that the context does not hold the answer, from a forward pass's
        `hidden_states` over left-padded prompts (the last position is every prompt's last token)."""
        h = hidden_states[self.layer][:, -1].float().cpu()
        return (((h - self.mean) / self.scale) @ self.coef + self.intercept).tolist()

    def score(self, logit: float, margin: float, verifier: float | None = None) -> float:
        """The refusal score compared with `refusal_margin`: the sum of the standardised signals, higher = refuse."""
        values = {"probe": logit, "margin": margin, "verifier": verifier}
        total = 0.0
        for name in self.signals:
            m, sd = self.standardise[name]
            total += (values[name] - m) / sd
        return total

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        from ragtune.atomic import write_json

        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (WEIGHTS + ".tmp")
        save_file({"mean": self.mean.contiguous(), "scale": self.scale.contiguous(), "coef": self.coef.contiguous()},
                  str(tmp))
        tmp.replace(folder / WEIGHTS)
        write_json(folder / INFO, {"layer": self.layer, "intercept": self.intercept, "combine": self.combine,
                                   "reads": self.reads,
                                   "standardise": {k: list(v) for k, v in self.standardise.items()},
                                   "answerer": self.answerer, "verifier": self.verifier, **self.info})

    @classmethod
    def load(cls, folder: str | Path, model: str | Path, adapter: str | Path | None,
             verifier: str | Path | None = None) -> RefusalProbe:
        """The probe in `folder`, checked against the answerer (model, adapter) and verifier it will score."""
        from safetensors.torch import load_file

        from ragtune.config import ConfigError
        from ragtune.rag.refusal_verifier import verifier_fingerprint

        folder = Path(folder)
        if not (folder / INFO).is_file() or not (folder / WEIGHTS).is_file():
            raise ConfigError(f'key "answerer.refusal_probe": {folder} holds no {INFO} and {WEIGHTS} (written by '
                              "`ragtune train refusal-probe`)")
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        here = answerer_fingerprint(model, adapter if info.get("reads", "answerer") == "answerer" else None)
        if info.get("answerer") != here:
            raise ConfigError(f'key "answerer.refusal_probe": {folder} was fitted on the hidden states of '
                              f"{info.get('answerer')}, not of this answerer ({here}); fit one for it with "
                              "`ragtune train refusal-probe`")
        combines = Combine.__args__  # type: ignore[attr-defined]
        if info.get("combine") not in combines:
            raise ConfigError(f'key "answerer.refusal_probe": {folder / INFO} has combine {info.get("combine")!r}, '
                              f"not one of {', '.join(combines)}")
        if "verifier" in info["combine"].split("+"):
            if verifier is None:
                raise ConfigError(f'key "answerer.refusal_verifier": the probe {folder} adds a verifier\'s score '
                                  f"({info['combine']}); pass the verifier it was fitted with "
                                  f"({info.get('verifier_path', 'see its probe.json')})")
            if verifier_fingerprint(verifier) != info.get("verifier"):
                raise ConfigError(f'key "answerer.refusal_verifier": {verifier} is not the verifier the probe '
                                  f"{folder} was fitted with ({info.get('verifier_path')}); fit one for it with "
                                  "`ragtune train refusal-probe ... verifier=...`")
        w = load_file(str(folder / WEIGHTS))
        stand = info["standardise"]
        if isinstance(stand, list):  # the first probes' (probe mean, sd, margin mean, sd)
            stand = {"probe": stand[:2], "margin": stand[2:]}
        missing = [k for k in info["combine"].split("+") if k not in stand]
        if missing:
            raise ConfigError(f'key "answerer.refusal_probe": {folder / INFO} has no dev mean and sd of {missing[0]} '
                              f"(its combine is {info['combine']}); fit it again with `ragtune train refusal-probe`")
        own = ("layer", "intercept", "combine", "reads", "standardise", "answerer", "verifier")
        return cls(int(info["layer"]), w["mean"], w["scale"], w["coef"], float(info["intercept"]), info["combine"],
                   info.get("reads", "answerer"), {k: (float(v[0]), float(v[1])) for k, v in stand.items()},
                   info["answerer"], info.get("verifier"), {k: v for k, v in info.items() if k not in own})


def fit_layers(states, labels, dev_states, dev_labels, strengths: list[float]) -> tuple[dict, list[dict]]:
    """Per kept layer and L2 strength C, a standardised logistic regression (label 1 = unanswerable); the best
    by dev AUC, and every (layer position, C, dev AUC) tried. `states`: (n, layers, hidden) arrays."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    tried, best = [], None
    for j in range(states.shape[1]):
        scaler = StandardScaler().fit(states[:, j])
        x, x_dev = scaler.transform(states[:, j]), scaler.transform(dev_states[:, j])
        for c in strengths:
            lr = LogisticRegression(C=c, max_iter=3000).fit(x, labels)
            dev_logits = lr.decision_function(x_dev)
            auc = float(roc_auc_score(dev_labels, dev_logits))
            tried.append({"position": j, "C": c, "auc_dev": auc})
            if best is None or auc > best["auc_dev"]:
                best = {"position": j, "C": c, "auc_dev": auc, "scaler": scaler, "lr": lr, "dev_logits": dev_logits}
    return best, tried


def probe_from(best: dict, layer: int) -> RefusalProbe:
    import torch

    scaler, lr = best["scaler"], best["lr"]
    return RefusalProbe(layer, torch.tensor(scaler.mean_, dtype=torch.float32),
                        torch.tensor(scaler.scale_, dtype=torch.float32),
                        torch.tensor(lr.coef_[0], dtype=torch.float32), float(lr.intercept_[0]))
