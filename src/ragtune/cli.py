"""The `ragtune` command line. Each command: parse its config, call one library function.

User errors (bad data, bad config, missing models) print one clear message and exit 1,
without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ragtune import __version__

app = typer.Typer(help="ragtune: domain-adapted retrieval for RAG.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Validate and convert data.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate retrieval on a BEIR split (and compare runs).")
app.add_typer(data_app, name="data")
app.add_typer(eval_app, name="eval")

# piped output (CI logs, `| tee`) gets a wide console instead of rich's 80-column default
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)

Overrides = Annotated[list[str] | None, typer.Argument(help="key=value overrides (dotted keys nest)",
                                                         show_default=False)]


def user_errors(fn):
    """Turn the errors a user can fix into `error: ...` and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ragtune.config import ConfigError
        from ragtune.data.errors import DataFormatError
        from ragtune.models import ModelNotFoundError

        try:
            return fn(*args, **kwargs)
        except (DataFormatError, ConfigError, ModelNotFoundError, ValueError, FileNotFoundError) as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]; finished outputs are intact, rerun to resume")
            raise typer.Exit(130) from None

    return wrapper


def metrics_table(rows: list[dict], title: str | None = None) -> Table:
    metrics = list(rows[0]["metrics"]) if rows else []
    table = Table(title=title)
    for col in ["dataset", "split", "retriever", "queries", *metrics]:
        table.add_column(col, justify="right" if col not in {"dataset", "split", "retriever"} else "left")
    for r in rows:
        table.add_row(r["dataset"], r["split"], r["retriever"], str(r["num_queries"]),
                      *(f"{r['metrics'][m]:.4f}" for m in metrics))
    return table


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="print the version")] = False) -> None:
    if version:
        out.print(f"ragtune {__version__}")
        raise typer.Exit()


# ---------------------------------------------------------------- data


@data_app.command("validate")
@user_errors
def data_validate(
    path: Annotated[Path, typer.Argument(help="BEIR folder, JSONL records, dataset_info.json or TREC run")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto, or a format name")] = "auto",
    limit: Annotated[int, typer.Option(help="report at most this many problems")] = 50,
) -> None:
    """Check every line; print counts (exit 0) or every problem with file:line (exit 1)."""
    from ragtune.data.validate import validate

    result = validate(path, format, limit)
    if result.ok:
        table = Table(title=f"{path} ({result.kind})")
        table.add_column("what")
        table.add_column("count", justify="right")
        for k, v in result.counts.items():
            table.add_row(k, f"{v:,}")
        out.print(table)
        return
    for p in result.problems.problems:
        err.print(str(p), highlight=False, markup=False, soft_wrap=True)
    more = result.problems.total - len(result.problems.problems)
    tail = f" (first {len(result.problems.problems)} shown)" if more > 0 else ""
    err.print(f"[bold red]{result.problems.total} problem(s)[/] in {path}{tail}")
    raise typer.Exit(1)


@data_app.command("convert")
@user_errors
def data_convert(
    kind: Annotated[str, typer.Argument(help="beir-sft | beir-embedding | beir-reranker | squad-sft | webqa-sft")],
    args: Annotated[list[str] | None, typer.Argument(help="[CONFIG.yaml] [key=value ...], e.g. data=DIR out=DIR",
                                                     show_default=False)] = None,
) -> None:
    """Convert BEIR or QA data into training records: `ragtune data convert beir-embedding data=DIR out=DIR`."""
    from ragtune.pipeline.convert import run_convert

    rest = list(args or [])
    config = Path(rest.pop(0)) if rest and "=" not in rest[0] else None
    result = run_convert(kind, config, rest)
    table = Table(title=f"data convert {kind}")
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in result.counts.items():
        table.add_row(k, f"{v:,}")
    out.print(table)
    for p in result.outputs:
        out.print(f"wrote {p}", highlight=False)
    if result.skipped:
        err.print(f"[yellow]skipped {result.skipped.total} bad input item(s)[/] (on_error=skip); first:")
        for p in result.skipped.problems:
            err.print(f"  {p}", highlight=False, markup=False, soft_wrap=True)


# ---------------------------------------------------------------- eval


@eval_app.callback(invoke_without_command=True)
@user_errors
def eval_main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML EvalConfig")] = None,
    data: Annotated[Path | None, typer.Option(help="BEIR folder")] = None,
    split: Annotated[str | None, typer.Option(help="qrels split [default: test]")] = None,
    retriever: Annotated[str | None, typer.Option(help="bm25 | dense | colbert [default: bm25]")] = None,
    model: Annotated[str | None, typer.Option(help="encoder for --retriever dense (or the model for colbert)")] = None,
    run: Annotated[Path | None, typer.Option(help="score this TREC run file instead of retrieving")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated, e.g. ndcg@10,recall@100")] = None,
    k: Annotated[int | None, typer.Option(help="documents retrieved per query [default: 1000]")] = None,
    ignore_identical_ids: Annotated[bool, typer.Option(help="drop retrieved docs whose id equals the query id")]
    = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="output folder")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the summary JSON here")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value override, repeatable")] = None,
    rerank: Annotated[str | None, typer.Option(help="reranker folder applied on top of the first-stage run")] = None,
    rerank_top: Annotated[int | None, typer.Option(help="documents re-ranked per query [default: 100]")] = None,
) -> None:
    """Retrieve for a BEIR split and score it: `ragtune eval --data DIR --split test --retriever bm25`."""
    if ctx.invoked_subcommand is not None:
        return
    from ragtune.config import load_config
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval

    flags = {"data": data, "split": split, "retriever": "run" if run and not retriever else retriever,
             "run": run, "k": k, "out": out_dir, "json_out": json_out,
             "metrics": [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
             "ignore_identical_ids": ignore_identical_ids or None, "rerank": rerank, "rerank_top": rerank_top}
    overrides = [f"{key}={json.dumps(str(v) if isinstance(v, Path) else v)}" for key, v in flags.items()
                 if v is not None]
    if model:
        owner = "colbert" if retriever == "colbert" else "dense"
        overrides.append(f"{owner}.model={json.dumps(model)}")
    cfg = load_config(EvalConfig, config, overrides + list(set_ or []))
    info = run_eval(cfg)
    out.print(metrics_table([info]))
    out.print(f"outputs in {info['out']}", highlight=False)


@eval_app.command("compare")
@user_errors
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="baseline TREC run")],
    run_b: Annotated[Path, typer.Argument(help="the run compared against it")],
    data: Annotated[Path, typer.Option(help="BEIR folder (or a qrels .tsv)")],
    split: Annotated[str, typer.Option(help="qrels split")] = "test",
    metrics: Annotated[str, typer.Option(help="comma-separated")] = "ndcg@10,recall@100,mrr@10,map@100",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the comparison JSON here")] = None,
) -> None:
    """Paired t-test per metric between two runs on the same judged queries."""
    from ragtune.evaluate.retrieval_eval import CompareConfig, run_compare

    cfg = CompareConfig(run_a=run_a, run_b=run_b, data=data, split=split, json_out=json_out,
                        metrics=[m.strip() for m in metrics.split(",")])
    result = run_compare(cfg)
    table = Table(title=f"{run_b.name} vs {run_a.name} ({split})")
    for col in ["metric", "A", "B", "B - A", "p (paired t)", "queries"]:
        table.add_column(col, justify="right")
    for m, r in result["metrics"].items():
        table.add_row(m, f"{r['mean_a']:.4f}", f"{r['mean_b']:.4f}", f"{r['delta']:+.4f}",
                      f"{r['p_value']:.4g}", str(r["num_queries"]))
    out.print(table)


# ---------------------------------------------------------------- run / demo


def _print_run_report(report: dict, metrics: list[str]) -> None:
    main = [m for m in ("ndcg@10", "recall@100", "mrr@10") if m in metrics]
    table = Table(title=f"ragtune run: {report['name']} (test split)")
    for col in ["system", *main, "p vs BM25", "p vs zero-shot"]:
        table.add_column(col, justify="left" if col == "system" else "right")
    for name, label in (("bm25", "BM25"), ("zero_shot", "zero-shot encoder")):
        table.add_row(label, *(f"{report['baselines'][name][m]:.4f}" for m in main), "", "")
    for r in report["rounds"]:
        ev = r["evaluate"]
        table.add_row(f"round {r['round']} retriever", *(f"{ev['metrics'][m]:.4f}" for m in main),
                      f"{ev['vs_bm25'][main[0]]['p_value']:.3g}", f"{ev['vs_zero_shot'][main[0]]['p_value']:.3g}")
    out.print(table)
    for r in report["rounds"]:
        f = r["filter"]
        line = f"round {r['round']}: filters kept {f['kept']}/{f['candidates']}"
        if "ppo" in r:
            line += (f"; reward model held-out accuracy {r['reward_model'].get('heldout_accuracy', float('nan')):.2f}"
                     f"; PPO reward {r['ppo']['reward_first']:.3f} -> {r['ppo']['reward_last']:.3f}")
        if "grpo" in r:
            line += f"; GRPO retrieval reward {r['grpo']['reward_first']} -> {r['grpo']['reward_last']}"
        if "dpo" in r:
            line += f"; DPO loss {r['dpo']['loss_first']} -> {r['dpo']['loss_last']}"
        out.print(line, highlight=False)
    out.print(f"stages run now: {len(report['executed'])} of {len(report['stages'])}", highlight=False)


def _stage_log() -> None:
    """One line per stage of `ragtune run` (started, done with seconds, or reused) on stderr."""
    import logging

    from rich.logging import RichHandler

    logger = logging.getLogger("ragtune.run")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=err, show_path=False, show_level=False))
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _run(config: Path | None, overrides: list[str] | None) -> None:
    from ragtune.config import load_config
    from ragtune.pipeline.loop import RunConfig, run_loop

    cfg = load_config(RunConfig, config, overrides)
    _stage_log()
    report = run_loop(cfg)
    _print_run_report(report, cfg.metrics)
    root = cfg.out or Path("runs") / cfg.name
    out.print(f"report: {root / 'report.md'} (plots in {root / 'plots'})", highlight=False)


@app.command("run")
@user_errors
def run_cmd(
    config: Annotated[Path, typer.Argument(help="YAML RunConfig (see configs/)")],
    overrides: Overrides = None,
) -> None:
    """The closed loop for N rounds; reruns only stages whose config or inputs changed."""
    _run(config, overrides)


@app.command("demo")
@user_errors
def demo(overrides: Overrides = None) -> None:
    """One round of the loop on a SciFact subset with the offline default models."""
    from importlib.resources import files

    _run(Path(str(files("ragtune") / "configs" / "demo.yaml")), overrides)


# ---------------------------------------------------------------- filter


@app.command("filter")
@user_errors
def filter_cmd(
    config: Annotated[Path, typer.Argument(help="YAML FilterConfig (queries, corpus, out, filters: [...])")],
    overrides: Overrides = None,
) -> None:
    """Filter pseudo queries (BM25 rank, dense round-trip, LossNet, score) and write the yield report."""
    from ragtune.config import load_config
    from ragtune.filters.run import FilterConfig, run_filter

    cfg = load_config(FilterConfig, config, overrides)
    report = run_filter(cfg)
    table = Table(title=f"filter: kept {report['kept']:,} of {report['candidates']:,} ({report['kept_fraction']:.1%})")
    for col in ["#", "filter", "settings", "in", "out", "kept of in", "seconds"]:
        table.add_column(col, justify="left" if col in {"filter", "settings"} else "right")
    for i, st in enumerate(report["filters"], 1):
        frac = st["out"] / st["in"] if st["in"] else 0.0
        table.add_row(str(i), st["name"], st["settings"], f"{st['in']:,}", f"{st['out']:,}", f"{frac:.1%}",
                      f"{st['seconds']:.1f}")
    out.print(table)
    out.print(f"kept queries, provenance.jsonl and filter_report.md in {cfg.out}", highlight=False)


# ---------------------------------------------------------------- query generator: train, generate, export

train_app = typer.Typer(help="Train models: the query generator, retrievers and rerankers.", no_args_is_help=True)
app.add_typer(train_app, name="train")
ConfigArgs = Annotated[list[str] | None, typer.Argument(help="[CONFIG.yaml] [key=value ...] (dotted keys nest)",
                                                        show_default=False)]


def _split_config(args: list[str] | None) -> tuple[Path | None, list[str]]:
    """`CONFIG.yaml k=v ...` or only `k=v ...`."""
    rest = list(args or [])
    return (Path(rest.pop(0)) if rest and "=" not in rest[0] else None), rest


@train_app.command("generator")
@user_errors
def train_generator_cmd(args: ConfigArgs = None) -> None:
    """Train the doc -> query generator; `stage:` sft (lora, freeze, full), rm, ppo, dpo or grpo."""
    from ragtune.train.generator.stages import train_generator_stage

    config, overrides = _split_config(args)
    stage, s = train_generator_stage(config, overrides)
    if stage == "sft":
        _print_sft(s)
        return
    table = Table(title=f"train generator (stage {stage})")
    shown = {k: v for k, v in s.items() if isinstance(v, (int, float, str)) and v is not None}
    for k in shown:
        table.add_column(k, justify="right")
    table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in shown.values()))
    out.print(table)


def _print_sft(s: dict) -> None:
    table = Table(title=f"train generator ({s['finetuning_type']}, {s['global_step']} steps)")
    for col in ["examples", "dev", "trainable params", "first loss", "last loss", "eval loss", "seconds"]:
        table.add_column(col, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    table.add_row(str(s["train_examples"]), str(s["dev_examples"]), f"{s['trainable_params']:,}",
                  fmt(s["first_logged_loss"]), fmt(s["last_logged_loss"]), fmt(s["eval_loss"]),
                  str(s["train_runtime_s"]))
    out.print(table)
    if s["dropped_examples"]:
        err.print(f"[yellow]{s['dropped_examples']} example(s) had no answer token within cutoff_len[/]; first: "
                  f"{', '.join(s['dropped_first'])}", highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


@app.command("generate")
@user_errors
def generate_cmd(args: ConfigArgs = None) -> None:
    """Write pseudo queries for corpus documents (resumable): `ragtune generate configs/generate.yaml`."""
    from ragtune.config import load_config
    from ragtune.generate.config import GenerateConfig
    from ragtune.generate.generator import generate_queries

    config, overrides = _split_config(args)
    s = generate_queries(load_config(GenerateConfig, config, overrides))
    if "queries" not in s:  # a non-zero rank of `accelerate launch`: rank 0 reports
        return
    rate = f"{s['queries_per_s']:.2f} queries/s" if s["queries_per_s"] else "nothing left to generate"
    out.print(f"{s['documents']} documents: {s['queries']} queries, {s['failed']} failed "
              f"{s['failed_by_reason'] or ''} ({s['resumed_done']} documents resumed; {rate})", highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


@app.command("export")
@user_errors
def export_cmd(args: ConfigArgs = None) -> None:
    """Merge a LoRA adapter into its base, save and verify it: `ragtune export adapter_name_or_path=D export_dir=E`."""
    from ragtune.config import load_config
    from ragtune.train.generator.export import ExportConfig, export_merged

    config, overrides = _split_config(args)
    r = export_merged(load_config(ExportConfig, config, overrides))
    out.print(f"merged {r['adapter']} into {r['base']}: max |logit diff| vs base+adapter = {r['max_abs_diff']:.3g} "
              f"(atol {r['atol']:g}, {r['probes']} inputs; the adapter itself moves logits by "
              f"{r['adapter_effect']:.3g})", highlight=False)
    out.print(f"saved {r['export_dir']}", highlight=False)


# ---------------------------------------------------------------- retriever and reranker training


def _train_table(s: dict, title: str) -> Table:
    table = Table(title=title)
    for col in ["format", "loss", "examples", "dev queries", "steps", "first loss", "last loss", "dev best",
                "seconds"]:
        table.add_column(col, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    table.add_row(str(s["format"]), str(s["loss"]), str(s["examples"]), str(s["dev_queries"]),
                  str(s["global_step"]), fmt(s["first_logged_loss"]), fmt(s["last_logged_loss"]),
                  fmt(s["best_metric"]), str(s["train_runtime_s"]))
    return table


@train_app.command("embedding")
@user_errors
def train_embedding_cmd(args: ConfigArgs = None) -> None:
    """Fine-tune a bi-encoder (pairs, hard negatives, score or vector distillation; Matryoshka):
    `ragtune train embedding configs/scifact-embedding.yaml`."""
    from ragtune.config import load_config
    from ragtune.train.retriever.embedding import EmbeddingTrainConfig, train_embedding

    config, overrides = _split_config(args)
    s = train_embedding(load_config(EmbeddingTrainConfig, config, overrides))
    out.print(_train_table(s, "train embedding"))
    for dim, metrics in (s.get("dev_final") or {}).items():
        out.print(f"dev @ {dim} dims: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


@train_app.command("colbert")
@user_errors
def train_colbert_cmd(args: ConfigArgs = None) -> None:
    """Train a late-interaction (ColBERT) model: `ragtune train colbert configs/scifact-colbert.yaml`."""
    from ragtune.config import load_config
    from ragtune.train.retriever.colbert import ColbertTrainConfig, train_colbert

    config, overrides = _split_config(args)
    s = train_colbert(load_config(ColbertTrainConfig, config, overrides))
    out.print(_train_table(s, "train colbert"))
    out.print(f"outputs in {s['output_dir']}", highlight=False)


@train_app.command("reranker")
@user_errors
def train_reranker_cmd(args: ConfigArgs = None) -> None:
    """Train a cross-encoder or LLM reranker: `ragtune train reranker configs/scifact-reranker.yaml`."""
    from ragtune.config import load_config
    from ragtune.train.retriever.reranker import RerankerTrainConfig, train_reranker

    config, overrides = _split_config(args)
    s = train_reranker(load_config(RerankerTrainConfig, config, overrides))
    out.print(_train_table(s, f"train reranker ({s['model_type']})"))
    if "dev_bm25" in s:
        best = s.get("dev_final") or {"best " + k: v for k, v in (s["dev_history"] or [{}])[-1].items()}
        out.print("dev: first stage " + ", ".join(f"{k} {v:.4f}" for k, v in s["dev_bm25"].items())
                  + " -> re-ranked " + ", ".join(f"{k} {v}" for k, v in best.items()), highlight=False)
    out.print(f"outputs in {s['output_dir']}", highlight=False)


@train_app.command("mine")
@user_errors
def train_mine_cmd(args: ConfigArgs = None) -> None:
    """Mine hard negatives from a BEIR split (BM25 or dense, rank window, optional reranker filter):
    `ragtune train mine data=DIR out=DIR neg_start=10 neg_end=100`."""
    from ragtune.config import load_config
    from ragtune.retrieval.mining import MineConfig, mine

    config, overrides = _split_config(args)
    result = mine(load_config(MineConfig, config, overrides))
    table = Table(title="train mine")
    table.add_column("what")
    table.add_column("count", justify="right")
    for k, v in result.counts.items():
        table.add_row(k, f"{v:,}")
    out.print(table)
    for p in result.outputs:
        out.print(f"wrote {p}", highlight=False)


# ---------------------------------------------------------------- grounded answering: rag ingest/ask/serve, eval rag

rag_app = typer.Typer(help="Grounded answering over your files: ingest, ask, serve.", no_args_is_help=True)
app.add_typer(rag_app, name="rag")


def _flag_overrides(set_: list[str] | None, flags: dict) -> list[str]:
    """--set overrides, then explicit flags as key=value (flags win)."""
    return list(set_ or []) + [f"{k}={json.dumps(str(v) if isinstance(v, Path) else v)}"
                               for k, v in flags.items() if v is not None]


SetOption = Annotated[list[str] | None, typer.Option("--set", help="key=value override (dotted keys nest), repeatable")]


@rag_app.command("ingest")
@user_errors
def rag_ingest_cmd(
    folder: Annotated[Path, typer.Argument(help="folder of .txt .md .html .pdf .docx files and .jsonl corpora")],
    kb: Annotated[Path, typer.Option("--out", "-o", help="knowledge base folder (created or updated)")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML IngestConfig")] = None,
    model: Annotated[str | None, typer.Option(help="embedder: sentence-transformers name/folder or ragtune-trained")]
    = None,
    set_: SetOption = None,
) -> None:
    """Chunk, embed and index a folder into a KB (Qdrant + BM25); a re-run processes only changed files."""
    from ragtune.config import load_config
    from ragtune.rag.ingest import IngestConfig, ingest

    overrides = _flag_overrides(set_, {"folder": folder, "out": kb, "embedder.model": model})
    s = ingest(load_config(IngestConfig, config, overrides), progress=lambda m: err.print(m, highlight=False))
    table = Table(title=f"rag ingest {folder} -> {s['kb']}")
    cols = {"files new": "files_new", "changed": "files_changed", "unchanged": "files_unchanged",
            "deleted": "files_deleted", "failed": "files_failed", "chunks embedded": "chunks_embedded",
            "removed": "chunks_removed", "chunks total": "chunks_total", "seconds": "seconds"}
    for col in cols:
        table.add_column(col, justify="right")
    table.add_row(*(str(s[k]) for k in cols.values()))
    out.print(table)
    for f in s["failed"]:
        err.print(f"[yellow]skipped[/] {f}", highlight=False, soft_wrap=True)
    if s["unsupported"]:
        err.print(f"ignored {len(s['unsupported'])} file(s) of unsupported type (e.g. {s['unsupported'][0]})",
                  highlight=False)


@rag_app.command("ask")
@user_errors
def rag_ask_cmd(
    kb: Annotated[Path, typer.Argument(help="knowledge base folder (ragtune rag ingest)")],
    question: Annotated[str, typer.Argument(help="the question")],
    as_json: Annotated[bool, typer.Option("--json", help="print the full JSON result")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML AskConfig")] = None,
    model: Annotated[str | None, typer.Option(help="answerer base model or merged model")] = None,
    adapter: Annotated[Path | None, typer.Option(help="answerer LoRA adapter (ragtune train generator)")] = None,
    rerank: Annotated[str | None, typer.Option(help="cross-encoder / LLM reranker folder")] = None,
    top_k: Annotated[int | None, typer.Option(help="passages given to the answerer")] = None,
    set_: SetOption = None,
) -> None:
    """Retrieve (dense + BM25, RRF), optionally rerank, and answer citing passages, or refuse."""
    from ragtune.config import load_config
    from ragtune.rag.ask import AskConfig, ask

    overrides = _flag_overrides(set_, {"kb": kb, "answerer.model": model, "answerer.adapter": adapter,
                                       "retrieve.rerank": rerank, "retrieve.top_k": top_k})
    r = ask(load_config(AskConfig, config, overrides), question)
    if as_json:
        print(json.dumps(r, ensure_ascii=False, indent=2))
        return
    state = "[bold yellow]refused[/]" if r["refused"] else "[bold green]answer[/]"
    out.print(f"{state}: {r['answer']}", highlight=False)
    for c in r["contexts"]:
        mark = "*" if c["cited"] else " "
        out.print(f"{mark}[{c['index']}] {c['source']} [{c['start']}:{c['end']}] (score {c['score']:.4f}) "
                  f"{c['text'][:160]!r}", highlight=False, markup=False, soft_wrap=True)


@rag_app.command("serve")
@user_errors
def rag_serve_cmd(
    kb: Annotated[Path, typer.Argument(help="knowledge base folder (ragtune rag ingest)")],
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8000]")] = None,
    host: Annotated[str | None, typer.Option(help="bind address [default: 127.0.0.1]")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML ServeConfig")] = None,
    adapter: Annotated[Path | None, typer.Option(help="answerer LoRA adapter")] = None,
    set_: SetOption = None,
) -> None:
    """HTTP API (POST /ask, GET /health, /docs) and the web page at /."""
    from ragtune.config import load_config
    from ragtune.rag.server import ServeConfig, serve

    overrides = _flag_overrides(set_, {"kb": kb, "port": port, "host": host, "answerer.adapter": adapter})
    serve(load_config(ServeConfig, config, overrides), log=lambda m: err.print(m, highlight=False))


@eval_app.command("rag")
@user_errors
def eval_rag_cmd(
    data: Annotated[Path, typer.Argument(help="converter *_eval.meta.jsonl (or its folder), or SQuAD/WebQA JSON")],
    contexts: Annotated[str | None, typer.Option(help="gold | retrieved | both [default: gold]")] = None,
    model: Annotated[str | None, typer.Option(help="answerer base model or merged model")] = None,
    adapter: Annotated[Path | None, typer.Option(help="answerer LoRA adapter")] = None,
    limit: Annotated[int | None, typer.Option(help="evaluate this many questions (half answerable)")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML EvalRagConfig")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="output folder")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report JSON here")] = None,
    set_: SetOption = None,
) -> None:
    """EM / token F1 on answerable questions, refusal P/R/F1, over- and under-refusal; gold or retrieved contexts."""
    from ragtune.config import load_config
    from ragtune.rag.answerer_eval import EvalRagConfig, run_eval_rag

    overrides = _flag_overrides(set_, {"data": data, "contexts": contexts, "answerer.model": model,
                                       "answerer.adapter": adapter, "limit": limit, "out": out_dir,
                                       "json_out": json_out})
    r = run_eval_rag(load_config(EvalRagConfig, config, overrides), log=lambda m: err.print(m, highlight=False))
    names = ["em", "f1", "refusal_precision", "refusal_recall", "refusal_f1", "over_refusal", "under_refusal"]
    table = Table(title=f"eval rag {r['dataset']} ({r['num_answerable']} answerable, {r['num_unanswerable']} "
                        f"unanswerable; refusal_margin {r['refusal_margin']:.3g})")
    table.add_column("contexts")
    for n in names + ["retrieval_hit"]:
        table.add_column(n, justify="right")
    for mode, m in r["results"].items():
        table.add_row(mode, *(f"{m[n]:.3f}" for n in names), f"{m['retrieval_hit']:.3f}" if "retrieval_hit" in m
                      else "-")
    out.print(table)
    out.print(f"predictions and report.json in {r['out']}", highlight=False)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
