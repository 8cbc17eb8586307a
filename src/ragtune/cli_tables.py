"""What the `ragtune` command line prints: its two consoles and every table, each kind written once."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ragtune.pipeline.report import RunReport

# piped output (CI logs, `| tee`) gets a wide console instead of rich's 80-column default
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)


def cell(value: Any) -> str:
    """A table cell: "-" for a missing value, four decimals for a float, else the value as text."""
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]], left: Collection[str] = ()
          ) -> None:
    """Print a table; numbers right-aligned, the `left` columns (names, labels) left-aligned."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    for row in rows:
        t.add_row(*row)
    out.print(t)


def one_row(title: str, cells: Mapping[str, Any]) -> None:
    """A one-row summary table (a training run, an ingest): column -> value."""
    table(title, list(cells), [[v if isinstance(v, str) else cell(v) for v in cells.values()]])


def counts(title: str, numbers: Mapping[str, float]) -> None:
    """What a validation, a conversion or a mining run counted."""
    table(title, ["what", "count"], ([k, f"{v:,}"] for k, v in numbers.items()), left={"what"})


def lines(prefix: str, items: Iterable[Any]) -> None:
    for item in items:
        out.print(f"{prefix}{item}", highlight=False)


def metrics(rows: list[dict]) -> None:
    """`ragtune eval` summaries: one row per evaluated run."""
    names = list(rows[0]["metrics"]) if rows else []
    table(None, ["dataset", "split", "retriever", "queries", *names],
          ([r["dataset"], r["split"], r["retriever"], str(r["num_queries"]), *(f"{r['metrics'][m]:.4f}" for m in names)]
           for r in rows), left={"dataset", "split", "retriever"})


def run_report(report: RunReport, metric_names: list[str]) -> None:
    """`ragtune run`: the retrieval table (baselines, each round's retriever, p-values) and a line per round."""
    main = [m for m in ("ndcg@10", "recall@100", "mrr@10") if m in metric_names]
    rows = [[label, *(f"{report['baselines'][name][m]:.4f}" for m in main), "", ""]
            for name, label in (("bm25", "BM25"), ("zero_shot", "zero-shot encoder"))]
    for r in report["rounds"]:
        ev = r["evaluate"]
        rows.append([f"round {r['round']} retriever", *(f"{ev['metrics'][m]:.4f}" for m in main),
                     f"{ev['vs_bm25'][main[0]]['p_value']:.3g}", f"{ev['vs_zero_shot'][main[0]]['p_value']:.3g}"])
    table(f"ragtune run: {report['name']} (test split)", ["system", *main, "p vs BM25", "p vs zero-shot"], rows,
          left={"system"})
    for r in report["rounds"]:
        f = r["filter"]
        line = f"round {r['round']}: filters kept {f['kept']}/{f['candidates']}"
        if "ppo" in r:
            line += (f"; reward model held-out accuracy {r['reward_model'].get('heldout_accuracy', float('nan')):.2f}"
                     f"; PPO reward {r['ppo']['reward_first']:.3f} -> {r['ppo']['reward_last']:.3f}")
        if "grpo" in r:
            line += f"; GRPO retrieval reward {cell(r['grpo']['reward_first'])} -> {cell(r['grpo']['reward_last'])}"
        if "dpo" in r:
            line += f"; DPO loss {cell(r['dpo']['loss_first'])} -> {cell(r['dpo']['loss_last'])}"
        out.print(line, highlight=False)
    out.print(f"stages run now: {len(report['executed'])} of {len(report['stages'])}", highlight=False)


def trained(s: dict[str, Any], title: str) -> None:
    """A retriever or reranker training run (`ragtune train embedding|colbert|reranker`)."""
    one_row(title, {"format": str(s["format"]), "loss": str(s["loss"]), "examples": s["examples"],
                    "dev queries": s["dev_queries"], "steps": s["global_step"], "first loss": s["first_logged_loss"],
                    "last loss": s["last_logged_loss"], "dev best": s["best_metric"],
                    "seconds": str(s["train_runtime_s"])})


def converted(title: str, result) -> None:
    counts(title, result.counts)
    lines("wrote ", result.outputs)
    if result.skipped:
        err.print(f"[yellow]skipped {result.skipped.total} bad input item(s)[/] (on_error=skip); first:")
        for p in result.skipped.problems:
            err.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)


def filtered(report: dict, cfg) -> None:
    table(f"filter: kept {report['kept']:,} of {report['candidates']:,} ({report['kept_fraction']:.1%})",
               ["#", "filter", "settings", "in", "out", "kept of in", "seconds"],
               ([str(i), st["name"], st["settings"], f"{st['in']:,}", f"{st['out']:,}",
                 f"{st['out'] / st['in'] if st['in'] else 0.0:.1%}", f"{st['seconds']:.1f}"]
                for i, st in enumerate(report["filters"], 1)), left={"filter", "settings"})
    out.print(f"kept queries, provenance.jsonl and filter_report.md in {cfg.out}", highlight=False)


def generated(s: dict, cfg) -> None:
    if "queries" not in s:  # a non-zero rank of `accelerate launch`: rank 0 reports
        return
    rate = f"{s['queries_per_s']:.2f} queries/s" if s["queries_per_s"] else "nothing left to generate"
    out.print(f"{s['documents']} documents: {s['queries']} queries, {s['failed']} failed "
              f"{s['failed_by_reason'] or ''} ({s['resumed_done']} documents resumed; {rate})", highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


def exported(r: dict, cfg) -> None:
    out.print(f"merged {r['adapter']} into {r['base']}: max |logit diff| vs base+adapter = {r['max_abs_diff']:.3g} "
              f"(atol {r['atol']:g}, {r['probes']} inputs; the adapter itself moves logits by "
              f"{r['adapter_effect']:.3g})", highlight=False)
    out.print(f"saved {r['export_dir']}", highlight=False)


def embedding_trained(s: dict, cfg) -> None:
    trained(s, "train embedding")
    for dim, m in (s.get("dev_final") or {}).items():
        out.print(f"dev @ {dim} dims: " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()), highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


def reranker_trained(s: dict, cfg) -> None:
    trained(s, f"train reranker ({s['model_type']})")
    if "dev_bm25" in s:
        kept = s.get("dev_final") or kept_dev_scores(s)
        out.print("dev: first stage " + ", ".join(f"{k} {v:.4f}" for k, v in s["dev_bm25"].items())
                  + " -> re-ranked " + ", ".join(f"{k} {v:.4f}" for k, v in kept.items()), highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


def kept_dev_scores(s: dict) -> dict[str, float]:
    """The dev scores of the checkpoint a trainer kept: the best one's evaluation, or the last's."""
    history = s.get("dev_history") or []
    step = str(s.get("best_checkpoint") or "").rpartition("checkpoint-")[2]
    if s.get("kept_checkpoint") == "best" and step.isdigit():
        history = [h for h in history if h.get("steps") == int(step)] or history
    last = history[-1] if history else {}
    return {f"{k} (step {last['steps']})" if k == "ndcg@10" else k: v for k, v in last.items()
            if k not in ("steps", "epoch", "seconds")}


def mined(result, cfg) -> None:
    converted("train mine", result)


def probe_trained(s: dict, cfg) -> None:
    aucs = ", ".join(f"{k} {v:.3f}" for k, v in {**s["auc_dev_signals"], **s["auc_dev_combinations"]}.items())
    out.print(f"refusal probe: layer {s['layer']}, C {s['C']}, signal {s['combine']} (dev AUC {s['auc_dev']:.3f}); "
              f"dev AUC of each signal and sum: {aucs} ({s['dev_questions']} dev questions, fitted on "
              f"{s['train_records']} records); written to {s['out']}", highlight=False)


def verifier_trained(s: dict, cfg) -> None:
    trained(s, "train refusal-verifier")
    out.print(f"the verifier is in {cfg.out}: pass it as `ragtune train refusal-probe verifier={cfg.out}` and "
              f"`answerer.refusal_verifier={cfg.out}`", highlight=False)


def colbert_trained(s: dict, cfg) -> None:
    trained(s, "train colbert")
    out.print(f"outputs in {s['output_dir']}", highlight=False)


def sft_trained(s: dict[str, Any]) -> None:
    one_row(f"train generator ({s['finetuning_type']}, {s['global_step']} steps)",
                 {"examples": s["train_examples"], "dev": s["dev_examples"],
                  "trainable params": f"{s['trainable_params']:,}", "first loss": s["first_logged_loss"],
                  "last loss": s["last_logged_loss"], "eval loss": s["eval_loss"],
                  "seconds": str(s["train_runtime_s"])})
    if s["dropped_examples"]:
        err.print(f"[yellow]{s['dropped_examples']} example(s) had no answer token within cutoff_len[/]; first: "
                  f"{', '.join(s['dropped_first'])}", highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


def generator_trained(stage: str, s: dict[str, Any]) -> None:
    """`train generator`: the SFT table, or one row of the other stage's scalar results."""
    if stage == "sft":
        sft_trained(s)
    else:
        one_row(f"train generator (stage {stage})",
                {k: v for k, v in s.items() if isinstance(v, (int, float, str)) and v is not None})


def lf_translated(config: dict[str, Any] | None) -> None:
    """`train generator --from-llamafactory`: the ragtune command its LLaMA-Factory arguments became (None: none)."""
    if config is not None:
        from ragtune.train.generator.lf_args import as_command

        err.print(f"LLaMA-Factory arguments as ragtune: {as_command(config)}", highlight=False, markup=False,
                  soft_wrap=True)


def answer(r: dict[str, Any]) -> None:
    """`rag ask`: the answer (or refusal) and the numbered passages, cited ones starred."""
    state = "[bold yellow]refused[/]" if r["refused"] else "[bold green]answer[/]"
    out.print(f"{state}: {r['answer']}", highlight=False)
    for c in r["contexts"]:
        mark = "*" if c["cited"] else " "
        out.print(f"{mark}[{c['index']}] {c['source']} [{c['start']}:{c['end']}] (score {c['score']:.4f}) "
                  f"{c['text'][:160]!r}", highlight=False, markup=False, soft_wrap=True)


def compared(result: dict[str, Any], cfg) -> None:
    """`eval compare`: per metric, both means, the difference, the paired t-test p-value and its Holm adjustment."""
    k = result["comparisons"]
    def named(run: Path) -> str:  # run.trec alone says nothing: keep its folder
        return f"{run.parent.name}/{run.name}" if run.parent.name else run.name

    table(f"{named(cfg.run_b)} vs {named(cfg.run_a)} ({cfg.split})",
               ["metric", "A", "B", "B - A", "p (paired t)", f"p Holm ({k} tests)", "queries"],
               ([m, f"{r['mean_a']:.4f}", f"{r['mean_b']:.4f}", f"{r['delta']:+.4f}", f"{r['p_value']:.4g}",
                 f"{r['p_holm']:.4g}" + (" *" if r["p_holm"] <= 0.05 else ""), str(r["num_queries"])]
                for m, r in result["metrics"].items()))
    out.print(f"* survives Holm's correction for the {k} metrics at 0.05", highlight=False)
    for w in result.get("warnings", []):
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


def rag_evaluated(r: dict[str, Any]) -> None:
    """`eval rag`: answer and refusal metrics per context mode."""
    names = ["em", "f1", "refusal_precision", "refusal_recall", "refusal_f1", "over_refusal", "under_refusal",
             "refused_by_text", "refused_by_margin"]
    cal = r.get("calibration")
    where = f", calibrated on {cal['questions']} dev questions for {cal['target']}" if cal else ""
    table(f"eval rag {r['dataset']} ({r['num_answerable']} answerable, {r['num_unanswerable']} unanswerable; "
               f"refusal_margin {r['refusal_margin']:.3g}{where})", ["contexts", *names, "retrieval_hit"],
               ([mode, *(f"{m[n]:.3f}" for n in names), f"{m['retrieval_hit']:.3f}" if "retrieval_hit" in m else "-"]
                for mode, m in r["results"].items()), left={"contexts"})
    out.print(f"predictions, report.json and refusal_curve.png in {r['out']}", highlight=False)


def stage_log() -> None:
    """One line per stage of `ragtune run` (started, done with seconds, or reused) on stderr."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("ragtune.run")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=err, show_path=False, show_level=False))
        logger.setLevel(logging.INFO)
        logger.propagate = False


def notices() -> None:
    """Route ragtune's one-line notices (`ragtune.config.notice`) to stderr as `notice: ...`."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("ragtune.notice")
    if not any(getattr(h, "ragtune_notice", False) for h in logger.handlers):
        handler = RichHandler(console=err, show_path=False, show_level=False, show_time=False, markup=False)
        handler.setFormatter(logging.Formatter("notice: %(message)s"))
        handler.ragtune_notice = True
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def validated(result) -> bool:
    """`data validate`: the counts (True), or every problem with file:line and their number (False)."""
    if result.ok:
        counts(f"{result.path} ({result.kind})", result.counts)
        return True
    for p in result.problems.problems:
        err.print(str(p), highlight=False, markup=False, soft_wrap=True)
    more = result.problems.total - len(result.problems.problems)
    tail = f" (first {len(result.problems.problems)} shown)" if more > 0 else ""
    err.print(f"[bold red]{result.problems.total} problem(s)[/] in {result.path}{tail}")
    return False


def ingested(folder, s: dict) -> None:
    """`rag ingest`: the file and chunk counts, then what was skipped, ignored or left without a BM25 index."""
    cols = {"files new": "files_new", "changed": "files_changed", "unchanged": "files_unchanged",
            "deleted": "files_deleted", "failed": "files_failed", "chunks embedded": "chunks_embedded",
            "removed": "chunks_removed", "chunks total": "chunks_total", "seconds": "seconds"}
    one_row(f"rag ingest {folder} -> {s['kb']}", {col: str(s[k]) for col, k in cols.items()})
    for f in s["failed"]:
        err.print(f"[yellow]skipped[/] {f}", highlight=False, soft_wrap=True)
    if s["unsupported"]:
        err.print(f"ignored {len(s['unsupported'])} file(s) of unsupported type (e.g. {s['unsupported'][0]})",
                  highlight=False)
    if s.get("bm25_skipped"):
        err.print(f"[yellow]no BM25 index[/]: {s['bm25_skipped']}; search is dense only", highlight=False)
