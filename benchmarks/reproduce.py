"""One command per BENCHMARKS.md table: recreate it from a clean checkout and ../shared/data.

    python benchmarks/reproduce.py --list                    # the tables, their cost on 2 CPU cores, their section
    python benchmarks/reproduce.py retrieval-quality         # run one table's steps; its output -> reproduce/<name>.md
    python benchmarks/reproduce.py --fast                    # every table that takes under ~15 minutes
    python benchmarks/reproduce.py --all                     # every table (hours on 2 CPU cores)
    python benchmarks/reproduce.py scifact-reranker --dry-run

Each step is a shell-free command line (`ragtune ...` or `python benchmarks/...`). A step that names what it
creates is skipped when that already exists, so an interrupted hours-long table resumes where it stopped;
delete the path (or pass --force) to redo it. Every step's stdout and stderr go to reproduce/<name>.log, and the
output of the steps marked `table` (the lines that carry the figures) to reproduce/<name>.md under the CPU line,
so `diff` against the matching section of BENCHMARKS.md shows what moved. Baselines are always produced by
explicit `ragtune eval ... --out` steps here, never borrowed from another command's run directory.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware_line  # noqa: E402

DATA = "../shared/data/beir/scifact"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Step:
    command: str
    creates: str | None = None  # skipped when this path exists (resume)
    table: bool = False  # its output is (part of) the table


@dataclass(frozen=True)
class Table:
    section: str  # the BENCHMARKS.md heading ("## ...") the table sits under
    minutes: int  # about, on 2 idle CPU cores with AMX (AVX2-only machines: up to 3x)
    steps: list[Step] = field(default_factory=list)


def _eval(retriever: str, out: str, *extra: str) -> Step:
    command = " ".join(["ragtune eval --data", DATA, "--split test --retriever", retriever, *extra, "--out", out])
    return Step(command, creates=f"{out}/run.trec")


def _compare(a: str, b: str, name: str) -> Step:
    return Step(f"ragtune eval compare {a} {b} --data {DATA} --json runs/scifact/compare-{name}.json", table=True)


def _answerer(data: str, work: str, prepare: str = "", train: str = "", evals: tuple[tuple[str, str], ...] = ()
              ) -> list[Step]:
    """answerer_quality.py's prepare -> train -> one step per evaluation (extra args, folder it writes) -> table,
    each step resumable."""
    cmd = "python benchmarks/answerer_quality.py"
    return [Step(f"{cmd} prepare {data} --work {work}{prepare}", creates=f"{work}/{data}/{data}_eval.meta.jsonl"),
            Step(f"{cmd} train {data} --work {work}{train}", creates=f"{work}/{data}-lora/adapter_model.safetensors"),
            *(Step(f"{cmd} eval {data} --work {work}{extra}", creates=f"{work}/{folder}/report.json")
              for extra, folder in evals),
            Step(f"{cmd} table --work {work}", table=True)]


GEMMA = " --base google/gemma-3-270m --template gemma"
WQG = "runs/answerer-webqa-gemma"
WEBQA_PREPARE = " --train-examples 600 --distractors 1 --max-tokens 450"


def _webqa_gemma_all(work: str) -> Step:
    """The Gemma WebQA answerer in `work` on all 600 held-out questions, calibrated as answerer_quality.py does."""
    data = f"{work}/webqa"
    return Step(f"ragtune eval rag {data}/webqa_eval.meta.jsonl --contexts both --set limit=600 "
                f"--out {work}/eval-webqa-trained-margin-all --set answerer.model=google/gemma-3-270m "
                f"--set answerer.template=gemma --set answerer.adapter={work}/webqa-lora "
                f"--set answerer.refusal_text=margin --set refusal.data={data}/webqa_dev.meta.jsonl "
                "--set refusal.limit=100 --set refusal.target=balanced --set retrieve.k_dense=0 "
                f"--set refusal.exclude=[{data}/webqa_train.meta.jsonl]",
                creates=f"{work}/eval-webqa-trained-margin-all/report.json", table=True)
SQ = "runs/answerer-long/squad"
ANSWERER_400 = _answerer("squad", "runs/answerer-long", prepare=" --train-examples 400",
                         evals=((" --models trained", "eval-squad-trained"),
                                (" --models trained --refusal-text margin", "eval-squad-trained-margin")))


def _squad_probe(probe: str, evaluation: str, verifier: str | None = None) -> list[Step]:
    """`train refusal-probe` on the base model's states beside the 400-record answerer (plus a verifier, for dev to
    choose from), then `eval rag` through it on the 100 questions, calibrated balanced on 100 dev questions."""
    long = "runs/answerer-long"
    fit_with, eval_with = ("", "") if verifier is None else (f" verifier={verifier}",
                                                             f" --set answerer.refusal_verifier={verifier}")
    return [Step(f"ragtune train refusal-probe data={SQ}/squad_train.meta.jsonl dev={SQ}/squad_dev.meta.jsonl "
                 f"answerer.adapter={long}/squad-lora reads=base{fit_with} out={long}/{probe}",
                 creates=f"{long}/{probe}/probe.json", table=True),
            Step(f"ragtune eval rag {SQ}/squad_eval.meta.jsonl --contexts both --set limit=100 "
                 f"--out {long}/{evaluation} --set answerer.adapter={long}/squad-lora "
                 f"--set answerer.refusal_text=margin --set answerer.refusal_probe={long}/{probe}{eval_with} "
                 f"--set refusal.data={SQ}/squad_dev.meta.jsonl --set refusal.limit=100 --set refusal.target=balanced "
                 f"--set refusal.exclude=[{SQ}/squad_train.meta.jsonl]",
                 creates=f"{long}/{evaluation}/report.json", table=True)]


BM25 = _eval("bm25", "runs/scifact/eval-bm25")
COLBERT = Step("ragtune train colbert configs/scifact-colbert.yaml", creates="runs/scifact/colbert/train_summary.json")
COLBERT_EVAL = _eval("colbert", "runs/scifact/eval-colbert", "--model runs/scifact/colbert")
ZEROSHOT = _eval("dense", "runs/scifact/eval-zeroshot")
MINE = Step(f"ragtune data convert beir-embedding data={DATA} split=train out=runs/scifact/mined neg_start=10 "
            "neg_end=100 neg_per_query=8", creates="runs/scifact/mined/embedding.jsonl")

COLBERT_30 = Step("ragtune train colbert configs/scifact-colbert.yaml projection_init=random max_steps=30 "
                  "eval_steps=15 threads=1 output_dir=runs/scifact/colbert-30",
                  creates="runs/scifact/colbert-30/train_summary.json")

MARGIN_DISTILL = [
    Step("python benchmarks/loop_ablation.py --work runs/ablation --rows base,round2"),
    Step(f"ragtune data convert beir-reranker data={DATA} split=train out=runs/distill/rr-data layout=group "
         "neg_start=0 neg_end=50 neg_per_query=8", creates="runs/distill/rr-data"),
    Step("ragtune train reranker configs/scifact-reranker.yaml --set "
         "train_data=[runs/distill/rr-data/reranker_group.jsonl] --set output_dir=runs/distill/teacher "
         "--set dev.max_queries=50", creates="runs/distill/teacher/train_summary.json"),
    Step("python benchmarks/margin_distill.py --loop runs/ablation --teacher runs/distill/teacher "
         "--work runs/distill --hybrid", table=True),
    Step("python benchmarks/margin_distill.py --loop runs/ablation --teacher runs/distill/teacher "
         "--work runs/distill-fused --teacher-fusion --rows hybrid+round0,hybrid+rounds0-1", table=True),
]
"""Margin distillation from a cross-encoder trained on the train pairs (twenty-fourth session)."""

TABLES: dict[str, Table] = {
    "retrieval-quality": Table("Retrieval quality (issue 2)", 8, [
        BM25, ZEROSHOT,
        _compare("runs/scifact/eval-bm25/run.trec", "runs/scifact/eval-zeroshot/run.trec", "dense-vs-bm25"),
    ]),
    "retrieval-throughput": Table("Retrieval throughput (issue 2)", 10, [
        Step("python benchmarks/retrieval_throughput.py", table=True),
    ]),
    "encode-backends": Table("Encoding backends: torch vs ONNX Runtime (issue 17)", 10, [
        Step("python benchmarks/encode_backends.py --docs 1000", table=True),
    ]),
    "cpu-roofline": Table("A real AVX2-only CPU again: the demo, the engines and the roofline (issue 17, "
                          "twenty-first session)", 30, [
        Step("ragtune demo out=runs/demo-avx2", creates="runs/demo-avx2/report.json"),
        Step("python benchmarks/demo_budget.py check runs/demo-avx2", table=True),
        Step("python benchmarks/cpu_roofline.py", table=True),
        Step("python benchmarks/generation_engines.py --adapter runs/demo-avx2/round-0/sft/adapter --engines "
             "transformers:float32,ctranslate2:float32,ctranslate2:int8 --docs 128 --work runs/generation-engines-avx2",
             table=True),
        Step("python benchmarks/encode_backends.py --backends torch-fp32,onnx-int8", table=True),
    ]),
    "filter-throughput": Table("Pseudo-query filters (issue 4)", 5, [
        Step("python benchmarks/filter_throughput.py --skip-dense", table=True),
    ]),
    "generator-quality": Table("Query generation (issue 3)", 40, [
        Step("python benchmarks/generator_quality.py --work runs/generator-quality", table=True),
    ]),
    "filter-quality": Table("Pseudo-query filters (issue 4)", 50, [
        Step("python benchmarks/generator_quality.py --work runs/generator-quality",
             creates="runs/generator-quality/gen-sft"),
        Step("ragtune filter configs/filter-scifact.yaml queries=runs/generator-quality/gen-sft "
             "out=runs/filter/scifact-sft filters.0.k=10 filters.1.k=10 "
             "filters.2={name: lossnet, keep_fraction: 0.7, drop_tail: 0.05, epochs: 1, max_train_pairs: 256, "
             "max_seq_length: 128}", creates="runs/filter/scifact-sft/provenance.jsonl"),
        Step("python benchmarks/filter_quality.py runs/filter/scifact-sft", table=True),
    ]),
    "generation-throughput": Table("Query generation (issue 3)", 10, [
        Step("python benchmarks/generation_throughput.py", table=True),
        Step("python benchmarks/generation_throughput.py --docs 32 --batch-size 32 --max-new-tokens 24 "
             "--max-doc-tokens 192", table=True),
    ]),
    "generation-engines": Table("Query generation (issue 3)", 30, [
        # the SciFact SFT adapter of round 0 of the loop (the loop-feedback table's first step makes it)
        Step("python benchmarks/loop_feedback.py --work runs/loop-feedback",
             creates="runs/loop-feedback/ppo/round-0/sft/adapter/adapter_config.json"),
        *(Step(f"python benchmarks/generation_engines.py --adapter runs/loop-feedback/ppo/round-0/sft/adapter "
               f"--docs 300 --seed {seed} --work runs/generation-engines-seed{seed} "
               "--engines transformers:float32,transformers:bfloat16,ctranslate2:float32,ctranslate2:int8",
               table=True) for seed in (42, 43)),
    ]),
    "scifact-embedding": Table("Retriever and reranker training on SciFact (issue 5)", 40, [
        ZEROSHOT, MINE,
        Step("ragtune train embedding configs/scifact-embedding.yaml",
             creates="runs/scifact/embedding/train_summary.json"),
        _eval("dense", "runs/scifact/eval-embedding", "--model runs/scifact/embedding"),
        _compare("runs/scifact/eval-zeroshot/run.trec", "runs/scifact/eval-embedding/run.trec", "embedding"),
        Step("python benchmarks/scifact_training.py mrl runs/scifact/embedding", table=True),
    ]),
    "scifact-matryoshka": Table("Retriever and reranker training on SciFact (issue 5)", 30, [
        BM25, ZEROSHOT, MINE,
        Step("ragtune train embedding configs/scifact-matryoshka.yaml",
             creates="runs/scifact/embedding-matryoshka/train_summary.json"),
        Step("python benchmarks/scifact_training.py mrl runs/scifact/embedding-matryoshka", table=True),
        _eval("dense", "runs/scifact/eval-matryoshka", "--model runs/scifact/embedding-matryoshka"),
        _compare("runs/scifact/eval-zeroshot/run.trec", "runs/scifact/eval-matryoshka/run.trec", "matryoshka"),
        _compare("runs/scifact/eval-bm25/run.trec", "runs/scifact/eval-matryoshka/run.trec", "matryoshka-bm25"),
    ]),
    "scifact-reranker": Table("Retriever and reranker training on SciFact (issue 5)", 70, [
        BM25,
        Step(f"ragtune data convert beir-reranker data={DATA} split=train out=runs/scifact/rr-data layout=group "
             "neg_start=0 neg_end=50 neg_per_query=8", creates="runs/scifact/rr-data"),
        Step("ragtune train reranker configs/scifact-reranker.yaml",
             creates="runs/scifact/reranker/train_summary.json"),
        _eval("bm25", "runs/scifact/eval-rerank", "--rerank runs/scifact/reranker --rerank-top 100",
              "--set rerank_max_length=160 --set rerank_fusion=dev"),
        _compare("runs/scifact/eval-bm25/run.trec", "runs/scifact/eval-rerank/run.trec", "rerank-fused"),
        _compare("runs/scifact/eval-bm25/run.trec", "runs/scifact/eval-rerank/run.reranker-only.trec",
                 "rerank-alone"),
    ]),
    "scifact-colbert": Table("Retriever and reranker training on SciFact (issue 5)", 25, [
        BM25, ZEROSHOT, MINE,
        COLBERT, COLBERT_EVAL,
        _compare("runs/scifact/eval-bm25/run.trec", "runs/scifact/eval-colbert/run.trec", "colbert"),
        _compare("runs/scifact/eval-zeroshot/run.trec", "runs/scifact/eval-colbert/run.trec", "colbert-vs-zeroshot"),
    ]),
    # the first ColBERT recipe (random projection, 30 steps): the 0.6421 row and the index table were measured on it
    "scifact-colbert-30": Table("Retriever and reranker training on SciFact (issue 5)", 15, [
        BM25, MINE, COLBERT_30,
        _eval("colbert", "runs/scifact/eval-colbert-30", "--model runs/scifact/colbert-30"),
        _compare("runs/scifact/eval-bm25/run.trec", "runs/scifact/eval-colbert-30/run.trec", "colbert-30"),
    ]),
    "colbert-index": Table("Retriever and reranker training on SciFact (issue 5)", 20, [
        MINE, COLBERT_30,
        Step("python benchmarks/colbert_index.py runs/scifact/colbert-30 --centroids 2048 --train-tokens 65536 "
             "--indexes flat,plaid-decompress", table=True),
    ]),
    "training-throughput": Table("Retriever and reranker training on SciFact (issue 5)", 15, [
        Step("python benchmarks/training_throughput.py --steps 4 --batch 16 --seq 128 --encode 256 "
             "--dtypes float32,bfloat16", table=True),
    ]),
    "demo": Table("The closed loop: `make demo` (issue 6)", 15, [
        Step("ragtune demo", table=True),
    ]),
    # BENCHMARKS.md's AVX2-capped runs are these steps with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
    # MKL_ENABLE_INSTRUCTIONS=AVX2 exported and a fresh RAGTUNE_CACHE
    "demo-budget": Table("The demo adapts to the machine (issue 17)", 35, [
        Step("ragtune demo budget.minutes=1000 out=runs/demo-fit", creates="runs/demo-fit/report.json"),
        Step("python benchmarks/demo_budget.py units runs/demo-fit", creates="runs/demo-fit/units.json"),
        Step("python benchmarks/demo_budget.py fit runs/demo-fit", table=True),
        Step("ragtune demo out=runs/demo-check", creates="runs/demo-check/report.json"),
        Step("python benchmarks/demo_budget.py check runs/demo-check", table=True),
    ]),
    "sft-speed": Table("The demo adapts to the machine (issue 17)", 15, [
        Step("python benchmarks/sft_speed.py --steps 4", table=True),
    ]),
    "sft-quality": Table("The demo adapts to the machine (issue 17)", 40, [
        Step("python benchmarks/sft_speed.py --quality base,fast,fast128 --docs 200", table=True),
    ]),
    "rl-speed": Table("The demo adapts to the machine (issue 17)", 55, [
        Step("python benchmarks/rl_speed.py", table=True),
    ]),
    "loop-scifact": Table("The closed loop: `make demo` (issue 6)", 45, [
        Step("ragtune run configs/loop-scifact-cpu.yaml retriever.num_train_epochs=1", table=True),
    ]),
    "answerer-squad": Table("Grounded answering with refusal (issue 7)", 60, [
        Step("python benchmarks/answerer_quality.py all squad --work runs/answerer-bench", table=True),
    ]),
    "answerer-squad-issue18": Table("Grounded answering: the issue 18 rerun", 90, _answerer(
        "squad", "runs/answerer-bench", evals=((" --threads 1", "eval-squad-trained"),
                                               (" --threads 1 --models trained --refusal-text margin",
                                                "eval-squad-trained-margin")))),
    "answerer-squad-dev-articles": Table("Grounded answering: the issue 18 rerun", 45, _answerer(
        "squad", "runs/answerer-devart", prepare=" --dev-questions 0 --convert dev_articles=1",
        evals=(("", "eval-squad-trained"), (" --models trained --refusal-text margin", "eval-squad-trained-margin")))),
    "answerer-squad-400": Table("Grounded answering: the issue 18 rerun", 50, ANSWERER_400),
    "answerer-gemma": Table("Grounded answering: the issue 18 rerun", 60, _answerer(
        "squad", "runs/answerer-gemma", prepare=GEMMA, train=GEMMA,
        evals=((f"{GEMMA} --models trained", "eval-squad-trained"),
               (f"{GEMMA} --models trained --refusal-text margin", "eval-squad-trained-margin")))),
    "answerer-verifier": Table("Grounded answering: the issue 18 rerun", 80, [
        *ANSWERER_400[:3],  # prepare, train, eval trained: the answers the verifier decides for
        Step("python benchmarks/answerability_verifier.py --work runs/answerer-long", table=True)]),
    # seventeenth session: a linear probe on the hidden state, as a benchmark and through the CLI
    "answerer-probe": Table("Grounded answering: the issue 18 rerun", 95, [
        *ANSWERER_400[:3],
        Step("python benchmarks/answerability_verifier.py --work runs/answerer-long",  # for the three-signal row
             creates="runs/answerer-long/verifier/summary.json"),
        Step("python benchmarks/answerability_probe.py --work runs/answerer-long --model base", table=True),
        Step("python benchmarks/answerability_probe.py --work runs/answerer-long --model trained", table=True),
        *_squad_probe("probe-base", "eval-squad-trained-probe")]),
    # eighteenth session: the probe on Gemma-3-270m's states; the verifier as a library signal, summed with the base
    # probe (and the margin) by dev
    "answerer-probe-verifier": Table("Grounded answering: the issue 18 rerun", 45, [
        *ANSWERER_400[:3],
        Step(f"ragtune train refusal-verifier data={SQ}/squad_train.meta.jsonl out=runs/answerer-long/verifier",
             creates="runs/answerer-long/verifier/model/train_summary.json"),
        Step("python benchmarks/answerability_probe.py --work runs/answerer-long --model base" + GEMMA, table=True),
        *_squad_probe("probe-base-verifier", "eval-squad-trained-probe-verifier", "runs/answerer-long/verifier")]),
    # the tenth session's runs: the guard decided on the kept pseudo queries, its default then
    "loop-feedback": Table("The loop's feedback half (issue 13)", 300, [
        Step("python benchmarks/loop_feedback.py --work runs/loop-feedback", table=True),
        Step("ragtune run configs/loop-scifact-unlabeled-cpu.yaml retriever.wise_ft=null guard.decide_on=pseudo "
             "generator_adapter=runs/loop-feedback/ppo/round-0/sft/adapter generate.sample_num=250 "
             "guard.documents=60 dense_dtype=auto out=runs/unlabeled", table=True),
        Step("ragtune run configs/loop-msmarco-dl19-unlabeled-cpu.yaml retriever.wise_ft=null generate.sample_num=400 "
             "guard.decide_on=pseudo out=runs/msmarco-unlabeled", table=True),
        Step("ragtune run configs/loop-scifact-unlabeled-cpu.yaml retriever.wise_ft=null guard.decide_on=pseudo "
             "generator_adapter=runs/msmarco-unlabeled/round-0/sft/adapter out=runs/scifact-unlabeled", table=True),
        Step("python benchmarks/guard_bias.py --run runs/scifact-unlabeled --ids runs/scifact-unlabeled/decide_ids.txt",
             creates="runs/scifact-unlabeled/decide_ids.txt"),
        Step("ragtune generate configs/generate-scifact.yaml adapter_name_or_path=null few_shot=2 exclude_splits=[] "
             "sample_num=null unlabeled_corpus_id=runs/scifact-unlabeled/decide_ids.txt query_per_document=2 "
             "max_doc_tokens=192 sampling.temperature=0.8 sampling.top_p=0.95 sampling.max_new_tokens=32 "
             "output_dir=runs/guard-altgen", creates="runs/guard-altgen/queries.jsonl"),
        Step("python benchmarks/guard_bias.py --run runs/scifact-unlabeled --queries runs/guard-altgen", table=True),
        # the same without adaptation (BENCHMARKS.md copies the adapted run's data, baselines and SFT folders first,
        # which saves their 32 minutes; without the copy they rerun to the same keys)
        Step("ragtune run configs/loop-msmarco-dl19-unlabeled-cpu.yaml retriever.wise_ft=null generate.sample_num=400 "
             "guard.decide_on=pseudo style.prompt_shots=0 style.sft_steps=0 out=runs/msmarco-noadapt", table=True),
    ]),
    # eleventh session: the guard's two decisions on the same runs (BENCHMARKS.md copies each pseudo run's folder
    # before the other-generator run, which then only generates the guard's queries and decides; without the copy
    # the -og runs redo every stage to the same keys)
    "guard-decision": Table("The loop's feedback half (issue 13)", 110, [
        Step("ragtune run configs/loop-scifact-unlabeled-cpu.yaml retriever.wise_ft=null guard.decide_on=pseudo "
             "out=runs/scifact-unlabeled", table=True),
        Step("ragtune run configs/loop-scifact-unlabeled-cpu.yaml retriever.wise_ft=null "
             "guard.decide_on=other_generator out=runs/scifact-unlabeled-og", table=True),
        Step("ragtune run configs/loop-msmarco-dl19-unlabeled-cpu.yaml retriever.wise_ft=null generate.sample_num=400 "
             "guard.decide_on=pseudo generator_adapter=runs/scifact-unlabeled/round-0/sft/adapter "
             "out=runs/msmarco-unlabeled", table=True),
        Step("ragtune run configs/loop-msmarco-dl19-unlabeled-cpu.yaml retriever.wise_ft=null generate.sample_num=400 "
             "guard.decide_on=other_generator generator_adapter=runs/scifact-unlabeled/round-0/sft/adapter "
             "out=runs/msmarco-unlabeled-og", table=True),
        Step("ragtune run configs/loop-scifact-unlabeled-cpu.yaml retriever.wise_ft=null generate.sample_num=2000 "
             "out=runs/scifact-unlabeled-2k", table=True),
    ]),
    "loop-ablation": Table("The loop's feedback half (issue 13)", 580, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows base,pca"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation "
             "--rows unfiltered,bm25,lossnet,curriculum,colbert"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation "
             "--rows round2,round2_ppo,round2_dpo,round2_grpo,round2_grpo_lr,round2_grpo_band,round2_grpo_steep,"
             "round2_grpo_bandonly"),
        # twentieth session: the band-only GRPO with four times the steps and prompts (46 minutes of GRPO)
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_grpo_bandlong"),
        # twenty-second session: best-of-4 selection into the band against as many kept at random, over three seeds
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_select,round2_select_random "
             "--retriever-seeds 1,2"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows gemma"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows wise,pca_wise"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows base --retriever-seeds 1,2"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows pca --retriever-seeds 1,2,3,4"),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --table --retriever-seeds 1,2", table=True),
        Step("python benchmarks/seed_soup.py --work runs/ablation --seeds 1,2", table=True),
        Step("python benchmarks/dev_size.py --work runs/ablation", table=True),
        # nineteenth session: seeds no earlier run used, to confirm (or not) "keep the last checkpoint"
        Step("python benchmarks/dev_size.py --work runs/ablation --seeds 5,6,7,8,9 --confirm 5,6,7,8,9", table=True),
    ]),
    # twenty-third session: round 2 in unlabeled mode, band selection against its random control
    "unlabeled-round2": Table("The loop's feedback half (issue 13)", 130, [
        Step("python benchmarks/unlabeled_round2.py --work runs/unlabeled-round2"),
        Step("python benchmarks/unlabeled_round2.py --work runs/unlabeled-round2 --rows select,select_random "
             "--retriever-seeds 1", table=True),
    ]),
    # twenty-fourth session: margin distillation from a cross-encoder trained on the train pairs (GPL's recipe)
    # (up to 2 hours more when the ablation's base and round2 rows have not run: the students learn their queries)
    "margin-distill": Table("The loop's feedback half (issue 13)", 125, MARGIN_DISTILL),
    # twenty-fifth session: two more retriever seeds of the fused hybrid rows and their contrastive twins, then the
    # fused teacher as the loop's own retriever stage (`retriever.teacher`) in the round-2 ablation row (125
    # minutes here once margin-distill has run)
    "loop-teacher": Table("The loop's feedback half (issue 13)", 125, [
        *MARGIN_DISTILL,
        Step("python benchmarks/margin_distill.py --loop runs/ablation --teacher runs/distill/teacher "
             "--work runs/distill-fused --teacher-fusion --rows hybrid+round0,hybrid+rounds0-1 --seeds 1,2",
             table=True),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_teacher --retriever-seeds 1",
             table=True),
    ]),
    # twenty-sixth session: round 2's hard negatives mined by round 1's retriever (ANCE-style), then also starting
    # from it, three retriever seeds each, the warm start's control without round 1's new queries, and a third
    # seed of the teacher row (the pair-score cache's first use); about two and a half hours here once the
    # ablation's round2 and round2_teacher rows have run (loop_ablation.py runs a row's parents first)
    "loop-ance": Table("The loop's feedback half (issue 13)", 150, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_ance --retriever-seeds 1,2",
             table=True),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_ance_warm --retriever-seeds 1,2",
             table=True),
        Step("python benchmarks/warm_control.py --loop runs/ablation --seeds 42,1,2", table=True),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_teacher --retriever-seeds 2",
             table=True),
    ]),
    # twenty-seventh session: RL (GRPO at 5e-4) before the warm-started, self-mined round 2, three retriever seeds
    # (each seed reruns GRPO: its reward reads that seed's round-0 retriever), and the one-round recipe trained 2
    # epochs, the "more training" control; about two hours here once the round2_ance_warm rows exist
    "loop-grpo-warm": Table("The loop's feedback half (issue 13)", 120, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_grpo_warm --retriever-seeds 1,2",
             table=True),
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows epochs2 --retriever-seeds 1,2",
             table=True),
    ]),
    # twenty-eighth session: GRPO on filter outcome + the BM25 gap before the warm, self-mined round 2
    "loop-gap-warm": Table("The loop's feedback half (issue 13)", 205, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_gap_warm --retriever-seeds 1,2",
             table=True),
        # twenty-ninth session: the gap alone, and unscaled advantages (one seed each)
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_gaponly_warm,round2_gapdr_warm",
             table=True),
    ]),
    "loop-warm-rl": Table("The loop's feedback half (issue 13)", 125, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_ppo_warm,round2_dpo_warm "
             "--retriever-seeds 1,2", table=True),
    ]),
    # thirtieth session: best-of-4 by the BM25 gap without RL, and the warm round 2's own controls
    "loop-gap-select": Table("The loop's feedback half (issue 13)", 55, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_gapsel_warm,"
             "round2_gapsel_random_warm --retriever-seeds 1,2", table=True),
    ]),
    "loop-warm-controls": Table("The loop's feedback half (issue 13)", 110, [
        Step("python benchmarks/loop_ablation.py --work runs/ablation --rows round2_repeat_warm,round2_warm_e2 "
             "--retriever-seeds 1,2", table=True),
    ]),
    # fourteenth session: WiSE-FT in the unlabeled loops (the plain SciFact run's SFT adapter serves MS MARCO too)
    "unlabeled-wise": Table("The loop's feedback half (issue 13)", 120, [
        Step("python benchmarks/unlabeled_seeds.py --work runs/unlabeled --retriever-seeds 2,3", table=True),
        Step("ragtune run configs/loop-msmarco-dl19-unlabeled-cpu.yaml generate.sample_num=400 retriever.wise_ft=null "
             "generator_adapter=runs/unlabeled/plain/round-0/sft/adapter out=runs/msmarco-unlabeled", table=True),
        Step("ragtune run configs/loop-msmarco-dl19-unlabeled-cpu.yaml generate.sample_num=400 "
             "generator_adapter=runs/unlabeled/plain/round-0/sft/adapter out=runs/msmarco-unlabeled-wise", table=True),
    ]),
    "loop-colbert": Table("The loop with ColBERT as its retriever (issue 12)", 75, [
        # the bi-encoder it is compared with saw the same generated queries: round 0 of the loop-feedback PPO run
        # (up to 150 minutes more when that table has not run; copying its folder to runs/scifact-loop-colbert
        # first lets this run reuse the SFT and generate stages)
        Step("python benchmarks/loop_feedback.py --work runs/loop-feedback",
             creates="runs/loop-feedback/ppo/round-0/evaluate/run.trec"),
        Step("ragtune run configs/loop-scifact-colbert-cpu.yaml",
             creates="runs/scifact-loop-colbert/round-0/evaluate/run.trec"),
        _compare("runs/scifact-loop-colbert/baselines/bm25/run.trec",
                 "runs/scifact-loop-colbert/round-0/evaluate/run.trec", "loop-colbert-bm25"),
        _compare("runs/scifact-loop-colbert/baselines/zero_shot/run.trec",
                 "runs/scifact-loop-colbert/round-0/evaluate/run.trec", "loop-colbert-zero_shot"),
        _compare("runs/loop-feedback/ppo/round-0/evaluate/run.trec",
                 "runs/scifact-loop-colbert/round-0/evaluate/run.trec", "loop-colbert-biencoder"),
        MINE,  # the train-pairs-only ColBERT of configs/scifact-colbert.yaml, the same recipe without pseudo queries
        COLBERT, COLBERT_EVAL,
        _compare("runs/scifact/eval-colbert/run.trec",
                 "runs/scifact-loop-colbert/round-0/evaluate/run.trec", "loop-colbert-trainonly"),
        Step("python benchmarks/colbert_search.py runs/scifact-loop-colbert/round-0/retriever/model --repeat 2",
             table=True),
    ]),
    "answerer-webqa": Table("Grounded answering with refusal (issue 7)", 70, _answerer(
        "webqa", "runs/answerer-webqa", prepare=WEBQA_PREPARE,
        train=" --set cutoff_len=480", evals=((" --models untrained", "eval-webqa-untrained"),
                                             (" --models trained", "eval-webqa-trained"),
                                             (" --models trained --refusal-text margin",
                                              "eval-webqa-trained-margin")))),
    # eighteenth session: Gemma-3-270m (multilingual, a 262k vocabulary) as the Chinese answerer, SmolLM2's recipe
    "answerer-webqa-gemma": Table("Grounded answering: the issue 18 rerun", 55, _answerer(
        "webqa", WQG, prepare=WEBQA_PREPARE + GEMMA, train=" --set cutoff_len=480" + GEMMA,
        evals=((f"{GEMMA} --models trained --refusal-text margin", "eval-webqa-trained-margin"),)) + [
        _webqa_gemma_all(WQG),
        # a second training seed of the same recipe and data
        Step(f"python benchmarks/answerer_quality.py prepare webqa --work {WQG}-s1{WEBQA_PREPARE}{GEMMA}",
             creates=f"{WQG}-s1/webqa/webqa_eval.meta.jsonl"),
        Step(f"python benchmarks/answerer_quality.py train webqa --work {WQG}-s1 --set cutoff_len=480 --set seed=1"
             + GEMMA, creates=f"{WQG}-s1/webqa-lora/adapter_model.safetensors"),
        _webqa_gemma_all(f"{WQG}-s1")]),
    "answerer-squad-400-gemma": Table("Grounded answering: the issue 18 rerun", 15, _answerer(
        "squad", "runs/answerer-long-gemma", prepare=" --train-examples 400" + GEMMA, train=GEMMA,
        evals=((f"{GEMMA} --models trained --refusal-text margin", "eval-squad-trained-margin"),))),
    "scale-plan": Table("Scale plan for FiQA, MS MARCO and NQ (issue 19)", 6, [
        Step("python benchmarks/scale_costs.py --docs 1024 --json runs/scale_costs.json",
             creates="runs/scale_costs.json"),
        Step("python benchmarks/scale_plan.py runs/scale_costs.json", table=True),
    ]),
}

FAST_MINUTES = 15


def benchmark_sections(path: Path = REPO / "BENCHMARKS.md") -> list[str]:
    """The `## ` headings of BENCHMARKS.md: every one must have at least one table here."""
    return [line[3:].strip() for line in path.read_text("utf-8").splitlines() if line.startswith("## ")]


def run_table(name: str, out: Path, dry_run: bool = False, force: bool = False) -> int:
    """Run `name`'s steps in order; returns the exit status of the first failing step (0 when all pass)."""
    table = TABLES[name]
    out.mkdir(parents=True, exist_ok=True)
    md, log = out / f"{name}.md", out / f"{name}.log"
    header = f"# {name} (BENCHMARKS.md: {table.section})\n\n{hardware_line()}\n\n"
    if not dry_run:
        md.write_text(header, "utf-8")
    for i, step in enumerate(table.steps, 1):
        done = step.creates and Path(step.creates).exists() and not force
        print(f"[{name} {i}/{len(table.steps)}] {'(exists, skipped) ' if done else ''}$ {step.command}", flush=True)
        if dry_run or done:
            continue
        start = time.perf_counter()
        argv = shlex.split(step.command)
        if argv[0] == "python":
            argv[0] = sys.executable
        elif (beside := Path(sys.executable).with_name(argv[0])).is_file():  # the venv's ragtune, PATH or not
            argv[0] = str(beside)
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=os.environ)
        seconds = time.perf_counter() - start
        with log.open("a", encoding="utf-8") as f:
            f.write(f"$ {step.command}\n{proc.stdout}{proc.stderr}\n[exit {proc.returncode}, {seconds:.0f} s]\n\n")
        if step.table:
            with md.open("a", encoding="utf-8") as f:
                f.write(f"```\n$ {step.command}   # {seconds:.0f} s\n```\n\n{proc.stdout}\n")
        if proc.returncode:
            print(f"step failed (exit {proc.returncode}); its output is in {log}", file=sys.stderr)
            return proc.returncode
    if not dry_run:
        print(f"{name}: table in {md}, full log in {log}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="*", metavar="TABLE", help=", ".join(TABLES))
    ap.add_argument("--list", action="store_true", help="list the tables and their cost")
    ap.add_argument("--fast", action="store_true", help=f"every table under ~{FAST_MINUTES} minutes")
    ap.add_argument("--all", action="store_true", help="every table (hours)")
    ap.add_argument("--out", type=Path, default=REPO / "reproduce", help="where the tables and logs go")
    ap.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    ap.add_argument("--force", action="store_true", help="rerun steps whose outputs already exist")
    args = ap.parse_args()
    if unknown := [t for t in args.tables if t not in TABLES]:
        ap.error(f"no table {', '.join(unknown)}; --list shows them")
    if args.list or not (args.tables or args.fast or args.all):
        for name, t in TABLES.items():
            print(f"{name:24s} ~{t.minutes:3d} min  {t.section}")
        return
    names = list(TABLES) if args.all else [n for n, t in TABLES.items() if t.minutes <= FAST_MINUTES] if args.fast \
        else args.tables
    print(f"{hardware_line()}\n{len(names)} tables, about {sum(TABLES[n].minutes for n in names)} minutes")
    for name in names:
        if rc := run_table(name, args.out, args.dry_run, args.force):
            sys.exit(rc)


if __name__ == "__main__":
    main()
