"""How strongly should the style SFT pull the generator toward the target's example queries? (issue 13 item 5)

After a `ragtune run` with `target_examples` (e.g. configs/loop-msmarco-dl19-unlabeled-cpu.yaml), this retrains the
run's style stage at several strengths (steps, learning rate) on the same example pairs, has each generator write
queries for the same passages (the first --docs passages the run generated for, with the run's shots and sampling),
and reports each set's style against the examples beside its grounding: the share whose source passage is in BM25's
top 10 over the run's corpus. The first row is the run's SFT adapter alone (no shots, no style SFT); a row
`STEPS:RATE` uses the pipeline's own style stage.

    python benchmarks/style_strength.py --run runs/msmarco-unlabeled --settings 16:1e-4,24:3e-4,48:5e-4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import hardware_line, print_table  # noqa: E402


def rows_of(path: Path) -> list[dict]:
    from ragtune.data.jsonl import iter_jsonl

    return [row for _, row in iter_jsonl(path)]


def generate(run: Path, out: Path, ids: Path, overrides: list[str]) -> None:
    if (out / "queries.jsonl").is_file():
        return
    sets = [a for o in [*overrides, f"unlabeled_corpus_id={ids}", "sample_num=null", f"output_dir={out}"]
            for a in ("--set", o)]
    subprocess.run([sys.executable, "-m", "ragtune.cli", "generate", str(run / "round-0/generate/config.yaml"), *sets],
                   check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/msmarco-unlabeled"))
    ap.add_argument("--docs", type=int, default=60)
    ap.add_argument("--settings", default="16:1e-4,24:3e-4,48:5e-4", help="STEPS:LEARNING_RATE, comma-separated")
    ap.add_argument("--work", type=Path, default=None, help="default: <run>-style-strength")
    args = ap.parse_args()
    print(hardware_line(), file=sys.stderr)

    import yaml

    from ragtune.data.beir import load_corpus
    from ragtune.evaluate.generator_quality import style_stats
    from ragtune.models import DEFAULT_GENERATOR
    from ragtune.pipeline.style import StyleConfig, read_examples, style
    from ragtune.retrieval.bm25 import BM25Retriever

    run = args.run
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    examples_file = Path(cfg["target_examples"])
    examples = read_examples(examples_file)
    work = args.work or run.with_name(run.name + "-style-strength")
    work.mkdir(parents=True, exist_ok=True)
    docs = list(dict.fromkeys(r["doc_id"] for r in rows_of(run / "round-0/generate/provenance.jsonl")))[:args.docs]
    ids = work / "doc_ids.txt"
    ids.write_text("".join(f"{d}\n" for d in docs))
    gen_cfg = yaml.safe_load((run / "round-0/generate/config.yaml").read_text())
    base, adapter = cfg.get("generator") or DEFAULT_GENERATOR, run / "round-0/sft/adapter"

    sets = {"none (SFT adapter, no shots)": work / "none"}
    generate(run, sets["none (SFT adapter, no shots)"], ids,
             [f"model_name_or_path={base}", f"adapter_name_or_path={adapter}", "few_shot=0", "few_shot_file=null"])
    for setting in args.settings.split(","):
        steps, rate = setting.split(":")
        folder = work / f"style-{steps}-{rate}"
        if not (folder / "merged").is_dir():
            style(run / "data", examples_file, folder,
                  StyleConfig(prompt_shots=gen_cfg["few_shot"], sft_steps=int(steps), sft_learning_rate=float(rate)),
                  base, adapter, "auto", max_prompt_tokens=gen_cfg["max_doc_tokens"])
        sets[f"{steps} steps, lr {rate}"] = folder / "generated"
        generate(run, folder / "generated", ids,
                 [f"model_name_or_path={folder / 'merged'}", f"few_shot_file={folder / 'shots.jsonl'}"])

    corpus = load_corpus(run / "data" / "corpus.jsonl")
    bm25 = BM25Retriever()
    bm25.index(corpus.values())
    lowered = {e.lower().rstrip("?") for e in examples}
    table = []
    for name, folder in sets.items():
        source = {r["query_id"]: r["doc_id"] for r in rows_of(folder / "provenance.jsonl")}
        queries = {r["_id"]: r["text"] for r in rows_of(folder / "queries.jsonl")}
        hits = bm25.search(queries, k=10)
        texts = list(queries.values())
        stats = style_stats(texts, examples)
        top10 = sum(source[q] in hits.get(q, {}) for q in queries) / len(queries)
        copies = sum(t.strip().lower().rstrip("?") in lowered for t in texts)
        table.append([name, str(len(texts)), f"{stats['mean_words']:.1f}", f"{stats['question_share']:.1%}",
                      f"{stats['vocab_overlap']:.1%}", str(copies), str(len(set(texts))), f"{top10:.1%}"])
    print_table(["generator", "queries", "mean words", "questions", "vocabulary overlap", "verbatim example copies",
                 "distinct", "source in BM25 top 10"], table)


if __name__ == "__main__":
    main()
