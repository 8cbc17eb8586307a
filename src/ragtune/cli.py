"""The `ragtune` command line: every command is `[CONFIG.yaml] [key=value ...]` plus `--set key=value`.

Each command reads its config class (defaults < CONFIG.yaml < shortcut flags < key=value arguments < --set), calls
one library function and prints what it returns (cli_tables.py). Positional arguments before CONFIG (`eval compare
RUN_A RUN_B`, `rag ask KB QUESTION`, ...) and flags (`--data`, `--adapter`, ...) are shortcuts for config keys.
User errors (bad data, bad config, missing models) print one clear message and exit 1, without a traceback.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ragtune import __version__, cli_cache
from ragtune import cli_tables as show
from ragtune.cli_plain import PLAIN_COMMANDS
from ragtune.cli_tables import err, out


class _DefaultCommandGroup(TyperGroup):
    """A group whose arguments, when they name none of its commands, go to its first command: `ragtune eval
    --data DIR` is `ragtune eval retrieval --data DIR`, while `ragtune eval compare A B` stays compare."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands:
            name = next(iter(self.commands))
            return name, self.commands[name], args
        return super().resolve_command(ctx, args)


app = typer.Typer(help="ragtune: domain-adapted retrieval for RAG.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Validate and convert data.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate retrieval on a BEIR split (the default), compare runs, evaluate the answerer.",
                       cls=_DefaultCommandGroup, no_args_is_help=True,
                       context_settings={"ignore_unknown_options": True})
train_app = typer.Typer(help="Train models: the query generator, retrievers and rerankers.", no_args_is_help=True)
rag_app = typer.Typer(help="Grounded answering over your files: ingest, ask, serve.", no_args_is_help=True)
cache_app = typer.Typer(help="List ragtune's caches (embeddings, pair scores, converted models) and prune them.",
                        no_args_is_help=True)
for sub, name in ((data_app, "data"), (eval_app, "eval"), (train_app, "train"), (rag_app, "rag"),
                  (cache_app, "cache")):
    app.add_typer(sub, name=name)

Args = Annotated[list[str] | None, typer.Argument(help="[CONFIG.yaml] [key=value ...] (dotted keys nest)",
                                                  show_default=False)]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="key=value override (dotted keys nest), repeatable")]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="the CONFIG.yaml, as an option")]
OutOption = Annotated[Path | None, typer.Option("--out", help="output folder")]
JsonOption = Annotated[Path | None, typer.Option("--json", help="also write the result JSON here")]
KbArgument = Annotated[Path, typer.Argument(help="knowledge base folder (ragtune rag ingest)")]
ModelOption = Annotated[str | None, typer.Option(help="answerer base model or merged model")]
AdapterOption = Annotated[Path | None, typer.Option(help="answerer LoRA adapter (ragtune train generator)")]


def user_errors(fn):
    """Turn the errors a user can fix into `error: ...` and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ragtune.config import ConfigError
        from ragtune.data.errors import DataFormatError
        from ragtune.models import ModelNotFoundError

        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            raise
        # OSError: a missing file, permissions, a file where a folder is wanted, a full disk, ...
        except (DataFormatError, ConfigError, ModelNotFoundError, ValueError, OSError, RecursionError) as e:
            msg = "the input is nested too deeply to process; check the files you passed" \
                if isinstance(e, RecursionError) else e
            err.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]; finished outputs are intact, rerun to resume")
            raise typer.Exit(130) from None

    return wrapper


def configured(cls: type | str, args: list[str] | None = None, set_: list[str] | None = None,
               flags: dict[str, Any] | None = None, config: Path | None = None):
    """The command's config: `cls` (or "module:Class") from CONFIG.yaml (first argument without "=", or
    `--config`), shortcut flags, key=value arguments and --set, later ones winning."""
    from ragtune.config import ConfigError, load_config

    cls = _load(cls) if isinstance(cls, str) else cls
    rest = list(args or [])
    if rest and "=" not in rest[0]:
        if config is not None:
            raise ConfigError(f"two configs given: {rest[0]} and --config {config}; pass one")
        config = Path(rest.pop(0))
    stray = [a for a in rest if "=" not in a]
    if stray:
        raise ConfigError(f'"{stray[0]}" is not key=value; only the first argument may be a CONFIG.yaml')
    shortcuts = [f"{k}={json.dumps(str(v) if isinstance(v, Path) else v)}" for k, v in (flags or {}).items()
                 if v is not None]
    return load_config(cls, config, shortcuts + rest + list(set_ or []))


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="print the version")] = False) -> None:
    show.notices()
    if version:
        out.print(f"ragtune {__version__}")
        raise typer.Exit()


# ---------------------------------------------------------------- data


@data_app.command("validate")
@user_errors
def data_validate(
    path: Annotated[Path, typer.Argument(help="BEIR folder, JSONL records, dataset_info.json or TREC run")],
    args: Args = None,
    format: Annotated[str | None, typer.Option("--format", "-f", help="auto, or a format name")] = None,
    limit: Annotated[int | None, typer.Option(help="report at most this many problems [default: 50]")] = None,
    strict: Annotated[bool, typer.Option(help="also flag what loaders accept with a warning (empty documents)")]
    = False,
    set_: SetOption = None,
) -> None:
    """Check every line; print counts (exit 0) or every problem with file:line (exit 1)."""
    from ragtune.data.validate import ValidateConfig, validate

    cfg = configured(ValidateConfig, args, set_, {"path": path, "format": format, "limit": limit,
                                                  "strict": strict or None})
    if not show.validated(validate(cfg.path, cfg.format, cfg.limit, cfg.strict)):
        raise typer.Exit(1)


@data_app.command("convert")
@user_errors
def data_convert(
    kind: Annotated[str, typer.Argument(help="beir-sft, beir-embedding, beir-reranker, squad-sft, webqa-sft, "
                                              "squad-beir, st-triplets or mteb")],
    args: Args = None, set_: SetOption = None,
) -> None:
    """Convert BEIR, QA, sentence-transformers triplet or MTEB data: `ragtune data convert mteb data=DIR out=DIR`."""
    from ragtune.pipeline.convert import converter

    cls, fn = converter(kind)
    show.converted(f"data convert {kind}", fn(configured(cls, args, set_)))


# ---------------------------------------------------------------- eval


@eval_app.command("retrieval")
@user_errors
def eval_retrieval(
    args: Args = None,
    config: ConfigOption = None,
    data: Annotated[Path | None, typer.Option(help="BEIR folder")] = None,
    split: Annotated[str | None, typer.Option(help="qrels split [default: test]")] = None,
    retriever: Annotated[str | None, typer.Option(help="bm25 | dense | colbert [default: bm25]")] = None,
    model: Annotated[str | None, typer.Option(help="encoder for --retriever dense (or the model for colbert)")] = None,
    run: Annotated[Path | None, typer.Option(help="score this TREC run file instead of retrieving")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated, e.g. ndcg@10,recall@100")] = None,
    k: Annotated[int | None, typer.Option(help="documents retrieved per query [default: 1000]")] = None,
    ignore_identical_ids: Annotated[bool, typer.Option(help="drop retrieved docs whose id equals the query id")]
    = False,
    out_dir: OutOption = None,
    json_out: JsonOption = None,
    rerank: Annotated[str | None, typer.Option(help="reranker folder applied on top of the first-stage run")] = None,
    rerank_top: Annotated[int | None, typer.Option(help="documents re-ranked per query [default: 100]")] = None,
    set_: SetOption = None,
) -> None:
    """Retrieve for a BEIR split and score it (the default of `ragtune eval`):
    `ragtune eval --data DIR --split test --retriever bm25`, or `ragtune eval CONFIG.yaml split=dev`."""
    from ragtune.evaluate.retrieval_eval import run_eval

    flags = {"data": data, "split": split, "retriever": "run" if run and not retriever else retriever,
             "run": run, "k": k, "out": out_dir, "json_out": json_out, "metrics": metrics,
             "ignore_identical_ids": ignore_identical_ids or None, "rerank": rerank, "rerank_top": rerank_top,
             f"{'colbert' if retriever == 'colbert' else 'dense'}.model": model}
    info = run_eval(configured("ragtune.evaluate.retrieval_eval:EvalConfig", args, set_, flags, config))
    show.metrics([info])
    out.print(f"outputs in {info['out']}", highlight=False)


@eval_app.command("compare")
@user_errors
def eval_compare(
    run_a: Annotated[Path, typer.Argument(help="baseline TREC run")],
    run_b: Annotated[Path, typer.Argument(help="the run compared against it")],
    args: Args = None,
    data: Annotated[Path | None, typer.Option(help="BEIR folder (or a qrels .tsv)")] = None,
    split: Annotated[str | None, typer.Option(help="qrels split [default: test]")] = None,
    metrics: Annotated[str | None, typer.Option(help="comma-separated")] = None,
    json_out: JsonOption = None,
    set_: SetOption = None,
) -> None:
    """Paired t-test per metric between two runs on the same judged queries."""
    from ragtune.evaluate.retrieval_eval import CompareConfig, run_compare

    cfg = configured(CompareConfig, args, set_, {"run_a": run_a, "run_b": run_b, "data": data, "split": split,
                                                 "metrics": metrics, "json_out": json_out})
    show.compared(run_compare(cfg), cfg)


@eval_app.command("rag")
@user_errors
def eval_rag_cmd(
    data: Annotated[Path, typer.Argument(help="converter *_eval.meta.jsonl (or its folder), or SQuAD/WebQA JSON")],
    args: Args = None,
    config: ConfigOption = None,
    contexts: Annotated[str | None, typer.Option(help="gold | retrieved | both [default: gold]")] = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    limit: Annotated[int | None, typer.Option(help="evaluate this many questions (half answerable)")] = None,
    out_dir: OutOption = None,
    json_out: JsonOption = None,
    set_: SetOption = None,
) -> None:
    """EM / token F1 on answerable questions, refusal P/R/F1, over- and under-refusal; gold or retrieved contexts."""
    from ragtune.rag.answerer_eval import run_eval_rag

    flags = {"data": data, "contexts": contexts, "answerer.model": model, "answerer.adapter": adapter,
             "limit": limit, "out": out_dir, "json_out": json_out}
    r = run_eval_rag(configured("ragtune.rag.answerer_eval:EvalRagConfig", args, set_, flags, config),
                     log=lambda m: err.print(m, highlight=False))
    show.rag_evaluated(r)


# ---------------------------------------------------------------- run, demo, filter, generate, train, export


def _run(args: list[str] | None, set_: list[str] | None) -> None:
    from ragtune.pipeline.loop import RunConfig, run_loop

    cfg = configured(RunConfig, args, set_)
    show.stage_log()
    report = run_loop(cfg)
    show.run_report(report, cfg.metrics)
    root = cfg.out or Path("runs") / cfg.name
    out.print(f"report: {root / 'report.md'} (plots in {root / 'plots'})", highlight=False)


@app.command("run")
@user_errors
def run_cmd(args: Args = None, set_: SetOption = None) -> None:
    """The closed loop for N rounds (`ragtune run configs/loop-scifact-cpu.yaml`); reruns only stages whose config
    or inputs changed."""
    _run(args, set_)


@app.command("demo")
@user_errors
def demo(args: Annotated[list[str] | None, typer.Argument(help="key=value overrides of the demo config",
                                                          show_default=False)] = None,
         set_: SetOption = None) -> None:
    """One round of the loop on a SciFact subset with the offline default models."""
    from importlib.resources import files

    _run([str(files("ragtune") / "configs" / "demo.yaml"), *(args or [])], set_)


def _plain_command(group: str, name: str, doc: str, cls: str, fn: str, printer: str) -> None:
    @{"": app, "train": train_app}[group].command(name, help=doc)
    @user_errors
    def command(args: Args = None, set_: SetOption = None) -> None:
        cfg = configured(cls, args, set_)
        getattr(show, printer)(_load(fn)(cfg), cfg)


for _spec in PLAIN_COMMANDS:
    _plain_command(*_spec)


@train_app.command("generator", context_settings={"ignore_unknown_options": True})
@user_errors
def train_generator_cmd(args: Args = None, set_: SetOption = None, from_llamafactory: Annotated[bool, typer.Option(
        "--from-llamafactory", help="the arguments are a LLaMA-Factory train_bash.py / llamafactory-cli train command "
        "line (--stage sft --model_name_or_path M --do_train --dataset NAME ...): translated, printed, then run")]
        = False) -> None:
    """Train the doc -> query generator; `stage:` sft (lora, freeze, full), rm, ppo, dpo or grpo."""
    from ragtune.train.generator.lf_args import command_parts
    from ragtune.train.generator.stages import train_generator_stage

    config, rest, base = command_parts(list(args or []), from_llamafactory)
    show.lf_translated(base)
    show.generator_trained(*train_generator_stage(config, rest + list(set_ or []), base))


# ---------------------------------------------------------------- grounded answering: rag ingest, ask, serve


@rag_app.command("ingest")
@user_errors
def rag_ingest_cmd(
    folder: Annotated[Path, typer.Argument(help="folder of .txt .md .html .pdf .docx files and .jsonl corpora")],
    args: Args = None,
    kb: Annotated[Path | None, typer.Option("--out", "-o", help="knowledge base folder (created or updated)")] = None,
    config: ConfigOption = None,
    model: Annotated[str | None, typer.Option(help="embedder: sentence-transformers name/folder or ragtune-trained")]
    = None,
    prune: Annotated[bool, typer.Option("--prune", help="allow deleting every document, or another folder's")]
    = False,
    set_: SetOption = None,
) -> None:
    """Chunk, embed and index a folder into a KB (vectors + BM25); a re-run processes only changed files."""
    from ragtune.rag.ingest import ingest

    cfg = configured("ragtune.rag.ingest:IngestConfig", args, set_,
                     {"folder": folder, "out": kb, "embedder.model": model, "prune": prune or None}, config)
    show.ingested(folder, ingest(cfg, progress=lambda m: err.print(m, highlight=False)))


@rag_app.command("ask")
@user_errors
def rag_ask_cmd(
    kb: KbArgument,
    question: Annotated[str, typer.Argument(help="the question")],
    args: Args = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full JSON result")] = False,
    config: ConfigOption = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    rerank: Annotated[str | None, typer.Option(help="cross-encoder / LLM reranker folder")] = None,
    top_k: Annotated[int | None, typer.Option(help="passages given to the answerer")] = None,
    set_: SetOption = None,
) -> None:
    """Retrieve (dense + BM25, RRF), optionally rerank, and answer citing passages, or refuse."""
    from ragtune.rag.ask import ask

    flags = {"kb": kb, "answerer.model": model, "answerer.adapter": adapter, "retrieve.rerank": rerank,
             "retrieve.top_k": top_k}
    r = ask(configured("ragtune.rag.ask:AskConfig", args, set_, flags, config), question)
    if as_json:
        print(json.dumps(r, ensure_ascii=False, indent=2))
        return
    show.answer(r)


@rag_app.command("serve")
@user_errors
def rag_serve_cmd(
    kb: KbArgument,
    args: Args = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8000]")] = None,
    host: Annotated[str | None, typer.Option(help="bind address [default: 127.0.0.1]")] = None,
    config: ConfigOption = None,
    adapter: AdapterOption = None,
    set_: SetOption = None,
) -> None:
    """HTTP API (POST /ask, GET /health, /docs) and the web page at /."""
    from ragtune.rag.server import serve

    flags = {"kb": kb, "port": port, "host": host, "answerer.adapter": adapter}
    serve(configured("ragtune.rag.server:ServeConfig", args, set_, flags, config),
          log=lambda m: err.print(m, highlight=False))


cache_app.command("list")(user_errors(cli_cache.cache_list))
cache_app.command("prune")(user_errors(cli_cache.cache_prune))


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
