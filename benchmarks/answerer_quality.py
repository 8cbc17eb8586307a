"""Must-show: the SFT-trained SmolLM2 answerer vs the untrained one, on held-out articles, gold and retrieved contexts.

    python benchmarks/answerer_quality.py all --work runs/answerer-bench          # everything below, in order
    python benchmarks/answerer_quality.py prepare --work runs/answerer-bench      # convert + short training subsets
    python benchmarks/answerer_quality.py train squad --work runs/answerer-bench  # LoRA SFT (configs/answerer-*.yaml)
    python benchmarks/answerer_quality.py eval squad --work runs/answerer-bench   # 2 models x gold/retrieved
    python benchmarks/answerer_quality.py table --work runs/answerer-bench        # print the markdown table

Data: ../shared/data/qa/squad2-dev-a.json (10 articles: 7 train, 3 held out, no overlap) and the WebQA sample
(question ids split 700 / 300; unanswerable pairs = a question beside another question's evidence).
The converter balances answerable / unanswerable 50/50 in both splits. On 2 shared CPU cores a training step costs
seconds per example, so training uses the first `--train-examples` records (converter order = shuffled) whose
rendered chat fits `--max-tokens` (no prompt is cut: a cut prompt would lose the question), and evaluation the
first `--eval-examples` eval records (still 50/50). Larger machines: raise both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import hardware_line, print_table
from ragtune.paths import shared_data

DATASETS = {
    "squad": {"kind": "squad-sft", "file": ("qa", "squad2-dev-a.json"), "holdout": 3,
              "config": "configs/answerer-squad.yaml", "retrieve": []},
    # BM25 only: the offline embedder (all-MiniLM-L6-v2) is English; on 200 answerable questions of the WebQA
    # *train* split it puts the gold evidence in the top 2 for 34% of them, BM25 (jieba) 88%, their RRF 64%
    # (SQuAD train, English: dense 78%, BM25 82%, RRF 86%, so SQuAD keeps the hybrid search).
    "webqa": {"kind": "webqa-sft", "file": ("qa", "webqa-me_test.ann-sample.json"), "holdout": 300,
              "config": "configs/answerer-webqa.yaml", "retrieve": ["retrieve.k_dense=0"]},
}
REPO = Path(__file__).resolve().parents[1]


def prepare(name: str, work: Path, max_tokens: int, n_train: int, distractors: int = 0) -> None:
    """Convert (article-level split, 50/50 refusals; `distractors` other-article contexts beside half the
    records) and write `<name>_short`: the first n_train short records."""
    from transformers import AutoTokenizer

    from ragtune.atomic import write_jsonl
    from ragtune.data.dataset_info import register_dataset
    from ragtune.models import resolve_causal_lm
    from ragtune.pipeline.convert import run_convert

    spec = DATASETS[name]
    out = work / name
    run_convert(spec["kind"], None, [f"data={shared_data(*spec['file'])}", f"out={out}", f"name={name}",
                                     f"holdout_articles={spec['holdout']}", "seed=0", f"distractors={distractors}"])
    tok = AutoTokenizer.from_pretrained(resolve_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct"))
    rows = [json.loads(line) for line in (out / f"{name}_train.jsonl").open(encoding="utf-8")]
    meta = [json.loads(line) for line in (out / f"{name}_train.meta.jsonl").open(encoding="utf-8")]
    keep, per_label = [], {True: 0, False: 0}
    for row, m in zip(rows, meta, strict=True):
        chat = tok.apply_chat_template([{"role": "user", "content": row["instruction"]},
                                        {"role": "assistant", "content": row["output"]}], tokenize=False)
        if len(tok(chat, add_special_tokens=False)["input_ids"]) > max_tokens:
            continue
        if per_label[m["answerable"]] >= n_train // 2:
            continue
        per_label[m["answerable"]] += 1
        keep.append(row)
        if len(keep) >= n_train:
            break
    write_jsonl(out / f"{name}_short.jsonl", keep)
    register_dataset(out, f"{name}_short", f"{name}_short.jsonl", "alpaca",
                     columns={"prompt": "instruction", "query": "input", "response": "output"})
    print(f"{name}: {len(keep)} training records <= {max_tokens} tokens ({per_label[True]} answerable) "
          f"in {out / f'{name}_short.jsonl'}")


def train(name: str, work: Path, overrides: list[str]) -> None:
    from ragtune.config import load_config
    from ragtune.train.generator.sft import train_generator
    from ragtune.train.generator.sft_config import GeneratorTrainConfig

    cfg = load_config(GeneratorTrainConfig, REPO / DATASETS[name]["config"],
                      [f"dataset={name}_short", f"dataset_dir={work / name}", f"output_dir={work / f'{name}-lora'}",
                       *overrides])
    s = train_generator(cfg)
    print(json.dumps({k: s[k] for k in ("train_examples", "global_step", "first_logged_loss", "last_logged_loss",
                                        "train_runtime_s")}))


def calibration_split(name: str, work: Path) -> Path:
    """Train-split questions (held-in articles) that were NOT among the training records: for refusal_margin."""
    from ragtune.atomic import write_jsonl

    used = {json.loads(line)["instruction"] for line in (work / name / f"{name}_short.jsonl").open(encoding="utf-8")}
    records = [json.loads(line) for line in (work / name / f"{name}_train.jsonl").open(encoding="utf-8")]
    meta = [json.loads(line) for line in (work / name / f"{name}_train.meta.jsonl").open(encoding="utf-8")]
    out = work / name / f"{name}_calib.meta.jsonl"
    write_jsonl(out, (m for r, m in zip(records, meta, strict=True) if r["instruction"] not in used))
    return out


def evaluate(name: str, work: Path, limit: int, which: list[str], threads: int, adapter: Path | None,
             calibrate: int) -> None:
    """Untrained and trained answerers, gold and retrieved contexts, on the held-out eval split."""
    from ragtune.config import load_config
    from ragtune.rag.answerer_eval import EvalRagConfig, run_eval_rag

    for model in which:
        lora = (adapter or work / f"{name}-lora") if model == "trained" else None
        overrides = [f"data={work / name / f'{name}_eval.meta.jsonl'}", "contexts=both", f"limit={limit}",
                     f"out={work / f'eval-{name}-{model}'}", f"answerer.threads={threads}",
                     *DATASETS[name]["retrieve"]]
        if lora is not None:
            overrides += [f"answerer.adapter={lora}", f"calibrate={calibration_split(name, work)}",
                          f"calibrate_limit={calibrate}"]
        run_eval_rag(load_config(EvalRagConfig, None, overrides), log=lambda m: print(m, file=sys.stderr))


def table(work: Path) -> None:
    rows = []
    for report in sorted(work.glob("eval-*/report.json")):
        r = json.loads(report.read_text())
        _, name, model = report.parent.name.split("-", 2)
        for mode, m in r["results"].items():
            rows.append([name, model, mode, r["num_questions"], f"{m['em']:.3f}", f"{m['f1']:.3f}",
                         f"{m['refusal_precision']:.3f}", f"{m['refusal_recall']:.3f}", f"{m['refusal_f1']:.3f}",
                         f"{m['over_refusal']:.3f}", f"{m['under_refusal']:.3f}",
                         f"{m['retrieval_hit']:.3f}" if "retrieval_hit" in m else "-",
                         f"{m['over_refusal_gold_retrieved']:.3f}" if "over_refusal_gold_retrieved" in m else "-"])
    print_table(["data", "answerer", "contexts", "questions", "EM", "F1", "refusal P", "refusal R", "refusal F1",
                 "over-refusal", "under-refusal", "gold retrieved", "over-refusal when gold retrieved"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", "prepare", "train", "eval", "table"])
    ap.add_argument("datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--work", type=Path, default=Path("runs/answerer-bench"))
    ap.add_argument("--max-tokens", type=int, default=300)
    ap.add_argument("--train-examples", type=int, default=200)
    ap.add_argument("--distractors", type=int, default=0,
                    help="prepare: other-article contexts beside half the training records (as retrieval shows them)")
    ap.add_argument("--eval-examples", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="training config override")
    ap.add_argument("--calibrate-examples", type=int, default=30,
                    help="unseen train-split questions the trained answerer's refusal_margin is chosen on")
    ap.add_argument("--models", default="untrained,trained", help="which answerers `eval` runs")
    ap.add_argument("--adapter", type=Path, help="evaluate this adapter (e.g. a checkpoint-N folder) as `trained`")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for eval (0 = all cores)")
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)
    for name in args.datasets if args.step != "table" else []:
        t0 = time.perf_counter()
        if args.step in ("all", "prepare"):
            prepare(name, args.work, args.max_tokens, args.train_examples, args.distractors)
        if args.step in ("all", "train"):
            train(name, args.work, args.overrides)
        if args.step in ("all", "eval"):
            evaluate(name, args.work, args.eval_examples, args.models.split(","), args.threads, args.adapter,
                     args.calibrate_examples)
        print(f"{name}: {args.step} took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.step in ("all", "table"):
        table(args.work)


if __name__ == "__main__":
    main()
