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
    from ragtune.data.convert import run_convert

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
    retriever: Annotated[str | None, typer.Option(help="bm25 | dense [default: bm25]")] = None,
    model: Annotated[str | None, typer.Option(help="encoder for --retriever dense")] = None,
    run: Annotated[Path | None, typer.Option(help="score this TREC run file instead of retrieving")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated, e.g. ndcg@10,recall@100")] = None,
    k: Annotated[int | None, typer.Option(help="documents retrieved per query [default: 1000]")] = None,
    ignore_identical_ids: Annotated[bool, typer.Option(help="drop retrieved docs whose id equals the query id")]
    = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="output folder")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the summary JSON here")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value override, repeatable")] = None,
) -> None:
    """Retrieve for a BEIR split and score it: `ragtune eval --data DIR --split test --retriever bm25`."""
    if ctx.invoked_subcommand is not None:
        return
    from ragtune.config import load_config
    from ragtune.evaluate.retrieval_eval import EvalConfig, run_eval

    flags = {"data": data, "split": split, "retriever": "run" if run and not retriever else retriever,
             "run": run, "k": k, "out": out_dir, "json_out": json_out,
             "metrics": [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
             "ignore_identical_ids": ignore_identical_ids or None}
    overrides = [f"{key}={json.dumps(str(v) if isinstance(v, Path) else v)}" for key, v in flags.items()
                 if v is not None]
    if model:
        overrides.append(f"dense.model={json.dumps(model)}")
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


# ---------------------------------------------------------------- demo


@app.command("demo")
@user_errors
def demo(
    config: Annotated[Path | None, typer.Argument(help="YAML DemoConfig (default: the embedded one)")] = None,
    overrides: Overrides = None,
) -> None:
    """Run the embedded default job on SciFact and print the table."""
    from ragtune.config import load_config
    from ragtune.pipeline.demo import DemoConfig, run_demo

    if config is not None and "=" in config.name and not config.exists():
        overrides, config = [str(config), *(overrides or [])], None  # `ragtune demo key=value` without a file
    cfg = load_config(DemoConfig, config, overrides)
    report = run_demo(cfg)
    out.print(metrics_table(report["rows"], title="ragtune demo"))
    for name, metrics in report["comparisons"].items():
        cells = ", ".join(f"{m} {r['delta']:+.4f} (p={r['p_value']:.3g})" for m, r in metrics.items())
        out.print(f"{name}: {cells}", highlight=False)
    out.print(f"report: {cfg.out / 'report.json'}", highlight=False)


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

train_app = typer.Typer(help="Train models: the query generator (SFT).", no_args_is_help=True)
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
    """SFT of the doc -> query generator (lora, freeze, full): `ragtune train generator configs/generator-sft.yaml`."""
    from ragtune.config import load_config
    from ragtune.train.generator import train_generator
    from ragtune.train.generator_config import GeneratorTrainConfig

    config, overrides = _split_config(args)
    s = train_generator(load_config(GeneratorTrainConfig, config, overrides))
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
    from ragtune.export import ExportConfig, export_merged

    config, overrides = _split_config(args)
    r = export_merged(load_config(ExportConfig, config, overrides))
    out.print(f"merged {r['adapter']} into {r['base']}: max |logit diff| vs base+adapter = {r['max_abs_diff']:.3g} "
              f"(atol {r['atol']:g}, {r['probes']} inputs; the adapter itself moves logits by "
              f"{r['adapter_effect']:.3g})", highlight=False)
    out.print(f"saved {r['export_dir']}", highlight=False)


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
