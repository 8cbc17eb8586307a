"""Would a small answerability verifier refuse better than the answerer's own likelihood margin? (issue 18)

SQuAD 2.0 systems often decide "is the answer in this passage?" with a separate classifier (a verifier) and
answer only when it says yes. This probes that design on the answerer benchmark's data, with gold contexts:
1. `ragtune train refusal-verifier` trains a cross-encoder from all-MiniLM-L6-v2's BERT on the answerer's training
   split (`train reranker`, pointwise BCE): (question, passage) -> 1 if the passage answers it (answerable), else 0
   (native, hard and mismatched unanswerables alike, as `answerer_quality.py prepare` wrote them).
2. Its refusal threshold is calibrated for `balanced` (the same `calibrate_margin` as the answerer's) on the dev
   split: questions of the training articles that no training record asks. Evaluation questions are never used.
3. On the held-out articles: the verifier's AUC (unanswerable vs answerable) over every evaluation question, and
   on the 100 questions the answerer benchmark evaluated, the answerer's own answers (`predictions-gold.jsonl`,
   whose `prediction` is its non-refusal answer) with the verifier deciding refusal: EM, F1, over- and
   under-refusal, against the answerer deciding by itself.

4. Where the answerer's folder holds `predictions-dev.jsonl` (its margins on the dev questions it calibrated on):
   the two signals combined, each standardised on dev and summed, the threshold calibrated on dev again, alone
   and with the answerer's own text refusals kept.

    python benchmarks/answerer_quality.py prepare squad --work runs/answerer-long    # and train + eval (see there)
    python benchmarks/answerability_verifier.py --work runs/answerer-long --answerer eval-squad-trained
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import hardware_line, print_table  # noqa: E402


def read_jsonl(path: Path) -> list[dict]:
    from ragtune.data.jsonl import iter_jsonl

    return [row for _, row in iter_jsonl(path)]


def auc(scores: list[float], positive: list[bool]) -> float:
    """P(score of a positive > score of a negative), ties counting half: Mann-Whitney U / (n_pos * n_neg)."""
    from scipy.stats import mannwhitneyu

    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    return float(mannwhitneyu(pos, neg).statistic) / (len(pos) * len(neg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("runs/answerer-long"))
    ap.add_argument("--data", default="squad")
    ap.add_argument("--answerer", default="eval-squad-trained", help="eval folder with predictions-gold.jsonl")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)

    from ragtune.atomic import write_json
    from ragtune.evaluate.answer_metrics import score_answers
    from ragtune.rag.refusal import calibrate_margin

    data = args.work / args.data
    out = args.work / "verifier"
    model = out / "model"
    if not (model / "train_summary.json").is_file():
        subprocess.run([sys.executable, "-m", "ragtune.cli", "train", "refusal-verifier",
                        f"data={data / f'{args.data}_train.meta.jsonl'}", f"out={out}", f"epochs={args.epochs}",
                        f"batch_size={args.batch_size}", f"learning_rate={args.learning_rate}",
                        f"max_length={args.max_length}"], check=True)
    dev = read_jsonl(data / f"{args.data}_dev.meta.jsonl")
    dev_scores = verifier_scores(model, dev, args.max_length)
    threshold = calibrate_margin(dev_scores, [not r["answerable"] for r in dev], [False] * len(dev), "balanced")
    evaluation = read_jsonl(data / f"{args.data}_eval.meta.jsonl")
    eval_scores = verifier_scores(model, evaluation, args.max_length)
    by_id = {r["id"]: s for r, s in zip(evaluation, eval_scores, strict=True)}
    preds = read_jsonl(args.work / args.answerer / "predictions-gold.jsonl")
    missing = [p["id"] for p in preds if p["id"] not in by_id]
    if missing:
        raise SystemExit(f"{len(missing)} predictions are not in {data}/{args.data}_eval.meta.jsonl: {missing[:3]}")

    def metrics(refused: list[bool]) -> dict:
        return score_answers([p["answers"] for p in preds], [p["prediction"] for p in preds], refused,
                             [p["answerable"] for p in preds], ["en"] * len(preds))

    own = metrics([p["refused"] for p in preds])
    verified = metrics([by_id[p["id"]] > threshold for p in preds])
    summary = {"train_pairs": len(read_jsonl(out / "train_points.jsonl")), "dev_questions": len(dev),
               "threshold": threshold,
               "auc_dev": auc(dev_scores, [not r["answerable"] for r in dev]),
               "auc_eval_all": auc(eval_scores, [not r["answerable"] for r in evaluation]),
               "auc_eval_100": auc([by_id[p["id"]] for p in preds], [not p["answerable"] for p in preds]),
               "auc_eval_100_answerer_margin": auc([p["margin"] for p in preds], [not p["answerable"] for p in preds]),
               "eval_all_questions": len(evaluation), "answerer_own": own, "verifier": verified}
    rows = [("the answerer (text, then margin)", own), ("the verifier", verified)]
    answerer_dev = args.work / args.answerer / "predictions-dev.jsonl"
    if answerer_dev.is_file():
        combined = combine(read_jsonl(answerer_dev), [{r["id"]: x for r, x in zip(dev, dev_scores, strict=True)}],
                           preds, [by_id], metrics)
        combined.pop("eval_scores")
        summary["combined"] = combined
        rows += [("verifier + margin", combined["alone"]), ("answerer's text, then verifier + margin",
                                                             combined["with_text"])]
    write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}))
    if "combined" in summary:
        print(json.dumps({k: v for k, v in summary["combined"].items() if not isinstance(v, dict)}))
    print_table(["refusal decided by", "EM", "F1", "over-refusal", "under-refusal", "refusal F1"],
                [[name, f"{m['em']:.3f}", f"{m['f1']:.3f}", f"{m['over_refusal']:.3f}", f"{m['under_refusal']:.3f}",
                  f"{m['refusal_f1']:.3f}"] for name, m in rows])


def verifier_scores(model: Path, rows: list[dict], max_length: int = 256) -> list[float]:
    """The cross-encoder's refusal score per row: minus its probability that the context answers the question
    (higher = more likely unanswerable, like the margin). The library's `RefusalVerifier` scores minus the logit
    instead: the same ranking, another scale, so these scripts keep the figures BENCHMARKS.md records."""
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(model), max_length=max_length)
    s = ce.predict([(r["question"], r["context"]) for r in rows], batch_size=32, show_progress_bar=True)
    return [-float(x) for x in s]


def combine(dev_rows: list[dict], dev_signals: list[dict[str, float]], preds: list[dict],
            eval_signals: list[dict[str, float]], metrics) -> dict:
    """Other refusal scores (the verifier's, the probe's: question id -> score) and the answerer's margin, each
    standardised on the dev questions the answerer calibrated on, summed; the threshold calibrated (balanced) on
    those dev questions."""
    from statistics import mean, pstdev

    from ragtune.rag.refusal import calibrate_margin

    missing = [r["id"] for r in dev_rows for d in dev_signals if r["id"] not in d]
    if missing:
        raise SystemExit(f"{len(missing)} dev predictions have no score of another signal: {missing[:3]}")
    columns = [[d[r["id"]] for r in dev_rows] for d in dev_signals] + [[r["margin"] for r in dev_rows]]
    stats = [(mean(c), pstdev(c)) for c in columns]

    def score(values) -> float:
        return sum((v - m) / sd for v, (m, sd) in zip(values, stats, strict=True))

    dev_scores = [score(values) for values in zip(*columns, strict=True)]
    unanswerable = [not r["answerable"] for r in dev_rows]
    by_text = [r["why"] == "text" for r in dev_rows]
    alone = calibrate_margin(dev_scores, unanswerable, [False] * len(dev_rows), "balanced")
    with_text = calibrate_margin(dev_scores, unanswerable, by_text, "balanced")
    scores = [score([d[p["id"]] for d in eval_signals] + [p["margin"]]) for p in preds]
    return {"dev_questions": len(dev_rows), "threshold_alone": alone, "threshold_with_text": with_text,
            "auc_dev": auc(dev_scores, unanswerable), "auc_eval_100": auc(scores, [not p["answerable"] for p in preds]),
            "alone": metrics([s > alone for s in scores]), "eval_scores": scores,
            "with_text": metrics([p["why"] == "text" or s > with_text for p, s in zip(preds, scores, strict=True)])}


if __name__ == "__main__":
    main()
