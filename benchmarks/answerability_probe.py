"""Does the answerer know, inside, whether the context holds the answer? A linear probe on its hidden states (issue 18)

The answerer's refusal signals so far (its greedy text, its likelihood margin, a MiniLM cross-encoder verifier and
the margin + verifier sum) separate answerable from unanswerable SQuAD 2.0 questions with AUC 0.63-0.80 on held-out
articles, too little for <= 10% over- and <= 25% under-refusal. Work on larger LMs (Slobodkin et al., 2023, "The
Curious Case of Hallucinatory (Un)answerability") found answerability linearly readable from the hidden state at the
end of the prompt even where the model's text does not show it. This measures that on SmolLM2-135M:

1. For every (question, context) record of the answerer benchmark's train, dev and eval splits, the hidden state of
   the last prompt token (the answerer's own chat prompt, gold context) at every `--layer-step`-th layer, from the
   base model (`--model base`) or the trained answerer (`--model trained`: base + the benchmark's LoRA adapter).
   Cached as .npy (no pickle) under `<work>/probe/<model>/`.
2. A logistic regression per layer on the training split's records (standardised features), its layer and L2
   strength chosen by AUC on the dev split (questions of the training articles that no training record asks), its
   refusal threshold calibrated `balanced` on the same dev questions. Evaluation questions are never read before
   the table.
3. On the held-out articles: the probe's AUC over every evaluation question and over the 100 the answerer was
   evaluated on, and the answerer's own answers (`predictions-gold.jsonl`) with the probe deciding refusal; where the
   answerer's `predictions-dev.jsonl` exists, the probe and the margin standardised on dev and summed, calibrated on
   dev again; where `answerability_verifier.py` has trained its cross-encoder under `<work>/verifier/model`, the
   three signals (probe, verifier, margin) summed the same way.

    python benchmarks/answerer_quality.py prepare squad --work runs/answerer-long --train-examples 400  # + train, eval
    python benchmarks/answerability_probe.py --work runs/answerer-long --model base
    python benchmarks/answerability_probe.py --work runs/answerer-long --model trained
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import hardware_line, print_table  # noqa: E402
from answerability_verifier import auc, combine, read_jsonl, verifier_scores  # noqa: E402

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("train", "dev", "eval")
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"


def hidden_states(rows: list[dict], model: str, adapter: Path | None, layer_step: int, batch_size: int,
                  template: str = "auto"):
    """(n_rows, n_layers_kept, hidden) float32: the last prompt token's state after every layer_step-th layer."""
    from ragtune.rag.answer import Answerer

    answerer = Answerer.load(model, adapter, template, batch_size=batch_size)
    layers = list(range(layer_step, answerer.model.config.num_hidden_layers + 1, layer_step))
    return answerer.prompt_states([answerer.prompt(r["question"], [r["context"]], r.get("language") or "en")
                                   for r in rows], layers)


def cached_states(work: Path, data: str, tag: str, split: str, rows: list[dict], args) -> np.ndarray:
    import hashlib

    import numpy as np

    from ragtune.atomic import write_json
    from ragtune.rag.refusal_probe import answerer_fingerprint

    path = work / "probe" / tag / f"{split}.npy"
    ids = work / "probe" / tag / f"{split}.ids.json"
    adapter = None if args.model == "base" else (args.adapter or work / f"{data}-lora")
    # every input of the states: the records (ids and text), the layers kept, the model and the adapter's weights
    texts = hashlib.sha256(json.dumps([[r["id"], r["question"], r["context"]] for r in rows]).encode()).hexdigest()
    want = {"records": texts, "layer_step": args.layer_step, "template": args.template,
            "answerer": answerer_fingerprint(args.base, adapter)}
    if path.is_file() and ids.is_file() and json.loads(ids.read_text()) == want:
        return np.load(path, allow_pickle=False)
    states = hidden_states(rows, args.base, adapter, args.layer_step, args.batch_size, args.template)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, states, allow_pickle=False)
    tmp.replace(path)
    write_json(ids, want)
    return states


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/answerer-long"))
    ap.add_argument("--data", default="squad")
    ap.add_argument("--model", choices=["base", "trained"], default="trained")
    ap.add_argument("--base", default=SMOLLM, help="the base model whose states are read (google/gemma-3-270m: "
                    "--template gemma; its probe then scores the SmolLM2 answerer's answers, as a verifier would)")
    ap.add_argument("--template", default="auto", help="chat template (Gemma-3-270m base has none: gemma)")
    ap.add_argument("--adapter", type=Path, help="the trained answerer's LoRA (default <work>/<data>-lora)")
    ap.add_argument("--answerer", default="eval-squad-trained", help="eval folder with predictions-gold.jsonl")
    ap.add_argument("--layer-step", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--strengths", default="0.001,0.01,0.1,1", help="logistic regression C values tried on dev")
    ap.add_argument("--train-sources", default="answerable,impossible,hard,mismatched",
                    help="which training records the probe fits on (by the converter's `source`)")
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)

    import numpy as np

    from ragtune.atomic import write_json
    from ragtune.evaluate.answer_metrics import score_answers
    from ragtune.rag.refusal import calibrate_margin
    from ragtune.rag.refusal_probe import fit_layers

    data = args.work / args.data
    rows = {s: read_jsonl(data / f"{args.data}_{s}.meta.jsonl") for s in SPLITS}
    tag = args.model if args.base == SMOLLM else f"{args.model}-{Path(args.base).name}"  # states of another model
    x = {s: cached_states(args.work, args.data, tag, s, rows[s], args) for s in SPLITS}
    y = {s: np.array([not r["answerable"] for r in rows[s]]) for s in SPLITS}
    fit = np.array([r["source"] in args.train_sources.split(",") for r in rows["train"]])
    best, tried = fit_layers(x["train"][fit], y["train"][fit], x["dev"], y["dev"],
                             [float(c) for c in args.strengths.split(",")])
    layer = best["position"]
    scores = {s: [float(v) for v in best["lr"].decision_function(best["scaler"].transform(x[s][:, layer]))]
              for s in SPLITS}
    threshold = calibrate_margin(scores["dev"], list(y["dev"]), [False] * len(rows["dev"]), "balanced")
    by_id = dict(zip([r["id"] for r in rows["eval"]], scores["eval"], strict=True))

    preds = read_jsonl(args.work / args.answerer / "predictions-gold.jsonl")

    def metrics(refused: list[bool]) -> dict:
        return score_answers([p["answers"] for p in preds], [p["prediction"] for p in preds], refused,
                             [p["answerable"] for p in preds], ["en"] * len(preds))

    unanswerable = [not p["answerable"] for p in preds]
    summary = {"model": args.model, "base": args.base, "layer": (layer + 1) * args.layer_step, "C": best["C"],
               "threshold": threshold,
               "train_records": int(fit.sum()), "train_sources": args.train_sources, "dev_questions": len(rows["dev"]),
               "auc_train": auc(list(np.array(scores["train"])[fit]), list(y["train"][fit])),
               "auc_dev": best["auc_dev"],
               "auc_eval_all": auc(scores["eval"], list(y["eval"])),
               "auc_eval_100": auc([by_id[p["id"]] for p in preds], unanswerable),
               "auc_eval_100_answerer_margin": auc([p["margin"] for p in preds], unanswerable),
               "answerer_own": metrics([p["refused"] for p in preds]),
               "probe": metrics([by_id[p["id"]] > threshold for p in preds]),
               "tried": [{**t, "layer": (t.pop("position") + 1) * args.layer_step} for t in tried]}
    table = [("the answerer (text, then margin)", summary["answerer_own"], summary["auc_eval_100_answerer_margin"]),
             (f"probe ({tag}, layer {summary['layer']})", summary["probe"], summary["auc_eval_100"])]
    answerer_dev = args.work / args.answerer / "predictions-dev.jsonl"
    if answerer_dev.is_file():
        dev_rows, probe_dev = read_jsonl(answerer_dev), dict(zip([r["id"] for r in rows["dev"]], scores["dev"],
                                                                 strict=True))
        combined = combine(dev_rows, [probe_dev], preds, [by_id], metrics)
        summary["probe_plus_margin"] = combined
        table += [("probe + margin", combined["alone"], combined["auc_eval_100"]),
                  ("the answerer's text, then probe + margin", combined["with_text"], float("nan"))]
        verifier = args.work / "verifier" / "model"
        if (verifier / "train_summary.json").is_file():  # answerability_verifier.py trained it
            v_dev, v_eval = (dict(zip([r["id"] for r in rows[split]], verifier_scores(verifier, rows[split]),
                                      strict=True)) for split in ("dev", "eval"))
            three = combine(dev_rows, [probe_dev, v_dev], preds, [by_id, v_eval], metrics)
            summary["probe_plus_verifier_plus_margin"] = three
            table.append(("probe + verifier + margin", three["alone"], three["auc_eval_100"]))
    # an oracle, for the ceiling only: the best any threshold could do on the 100 evaluation questions themselves
    summary["ceiling"] = {"probe": ceiling([by_id[p["id"]] for p in preds], unanswerable)}
    for key in ("probe_plus_margin", "probe_plus_verifier_plus_margin"):
        if key in summary:
            summary["ceiling"][key] = ceiling(summary[key].pop("eval_scores"), unanswerable)
    print(json.dumps({"ceiling (oracle thresholds on the evaluation questions)": summary["ceiling"]}))
    write_json(args.work / "probe" / tag / f"summary-{args.train_sources.replace(',', '-')}.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}))
    print_table(["refusal decided by", "EM", "F1", "over-refusal", "under-refusal", "refusal F1", "AUC on the 100"],
                [[name, f"{m['em']:.3f}", f"{m['f1']:.3f}", f"{m['over_refusal']:.3f}", f"{m['under_refusal']:.3f}",
                  f"{m['refusal_f1']:.3f}", f"{a:.3f}" if a == a else "-"] for name, m, a in table])


def ceiling(scores: list[float], unanswerable: list[bool]) -> dict[str, float]:
    """Over every threshold: the lowest max(over-, under-refusal), and the lowest under-refusal with over <= 0.10."""
    from ragtune.rag.refusal import refusal_curve

    curve = refusal_curve(scores, unanswerable, [False] * len(scores))
    return {"balanced": min(max(o, u) for _, o, u in curve),
            "under_at_over_0.10": min(u for _, o, u in curve if o <= 0.10)}


if __name__ == "__main__":
    main()
