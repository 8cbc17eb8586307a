"""`ragtune generate`: batched, resumable, optionally data-parallel pseudo-query generation.

    cfg = load_config(GenerateConfig, "configs/generate.yaml", ["sample_num=100"])
    summary = generate_queries(cfg)

Speed: prompts are sorted by token length and batched with left padding, so each `generate` call decodes
`batch_size x query_per_document` sequences in lock-step with the KV cache; a LoRA adapter is merged into the
base weights before decoding. Resume: each finished batch is appended to `shards/part-<rank>.jsonl` and fsynced;
a rerun skips documents that have a complete line. Scale-out: under `accelerate launch`, rank r takes every
r-th remaining prompt and rank 0 merges the shards at the end.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError, dump_config
from ragtune.generate.checks import normalize
from ragtune.generate.config import GenerateConfig
from ragtune.generate.prompts import document_text, truncate_tokens
from ragtune.generate.query_generator import QueryGenerator

RUN_STATE = "run.json"
SUMMARY = "generation_summary.json"


# ---------------------------------------------------------------- the run


def _prepare_output(cfg: GenerateConfig, is_main: bool) -> None:
    """Record the run's fingerprint; a rerun must match it (resume) unless overwrite=true."""
    import json

    from ragtune.atomic import write_json

    out = Path(cfg.output_dir)
    state = out / RUN_STATE
    fingerprint = cfg.fingerprint_fields()
    if state.is_file():
        old = json.loads(state.read_text(encoding="utf-8")).get("config")
        if old == fingerprint:
            return
        if not cfg.overwrite:
            changed = sorted(k for k in set(old or {}) | set(fingerprint) if (old or {}).get(k) != fingerprint.get(k))
            raise ConfigError(f"{out} holds a generation run with a different config (changed: {', '.join(changed)});"
                              " use another output_dir, or overwrite=true to start over")
        if is_main:
            shutil.rmtree(out / "shards", ignore_errors=True)
    if is_main:
        write_json(state, {"config": fingerprint})


def generate_queries(cfg: GenerateConfig, on_batch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) generation; returns the summary also written to generation_summary.json.

    `on_batch(n_batches_done)` is called after each batch is durable (progress hooks, tests).
    """
    import torch
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from ragtune.atomic import write_json
    from ragtune.data.beir import load_corpus
    from ragtune.generate.outputs import write_outputs, write_pseudo_query_json
    from ragtune.generate.selection import beir_folder, few_shot_pairs, read_shots, select_documents
    from ragtune.generate.shards import ShardWriter, read_shards, shard_path
    from ragtune.hardware import auto_dtype, pick_device, set_threads

    state = PartialState(cpu=not torch.cuda.is_available())  # CPU ranks talk over gloo
    rank, world = state.process_index, state.num_processes
    device = str(state.device) if state.device.type != "cpu" else pick_device(cfg.device)
    if device == "cpu":
        set_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    out = Path(cfg.output_dir)
    _prepare_output(cfg, state.is_main_process)
    state.wait_for_everyone()

    folder = beir_folder(Path(cfg.corpus))
    corpus = load_corpus(cfg.corpus)
    selected = select_documents(corpus, folder, cfg.sample_num, cfg.seed, cfg.unlabeled_corpus_id,
                                cfg.exclude_splits)
    done = read_shards(out)
    todo = [d for d in selected if d not in done]

    t0 = time.perf_counter()
    written = 0
    if todo:
        if cfg.engine == "ctranslate2":
            from ragtune.generate.ct2_engine import Ct2QueryGenerator

            if device != "cpu":
                raise ConfigError(f'key "engine": ctranslate2 runs on the CPU here; device is {device} (use '
                                  "engine=transformers on GPUs, or device=cpu)")
            gen = Ct2QueryGenerator.load(cfg.model_name_or_path, cfg.adapter_name_or_path, cfg.template,
                                         cfg.sampling, cfg.ct2_compute_type, torch.get_num_threads(),
                                         cfg.trust_remote_code)
        else:
            dtype = auto_dtype(device) if cfg.dtype == "auto" else cfg.dtype
            gen = QueryGenerator.load(cfg.model_name_or_path, cfg.adapter_name_or_path, cfg.template, cfg.sampling,
                                      dtype, device, cfg.trust_remote_code)
        if cfg.few_shot_file is not None:
            raw_shots = read_shots(cfg.few_shot_file, cfg.few_shot)
        else:
            raw_shots = [(document_text(d), q) for d, q in
                         few_shot_pairs(corpus, folder, cfg.few_shot_split, cfg.few_shot, cfg.seed, set(selected))]
        shots = [(truncate_tokens(gen.tokenizer, d, cfg.few_shot_doc_tokens), q) for d, q in raw_shots]
        # every query of a shot file counts, not just the k in the prompt: a style SFT may have trained on all
        example_queries = read_shots(cfg.few_shot_file, None) if cfg.few_shot_file is not None else raw_shots
        examples = frozenset(normalize(q) for _, q in example_queries)
        mine = todo[rank::world] if world > 1 else todo
        prompts = [gen.prompt(d, document_text(corpus[d]), cfg.instruction, cfg.system, shots, cfg.max_doc_tokens)
                   for d in mine]
        prompts.sort(key=lambda p: -p.n_tokens)  # similar lengths share a batch: little padding
        k = cfg.query_per_document
        bar = tqdm(total=len(prompts) * k, unit="q", desc=f"generate{f' [rank {rank}]' if world > 1 else ''}",
                   disable=not cfg.progress, smoothing=0.1)
        with ShardWriter(shard_path(out, rank)) as writer:
            for b, start in enumerate(range(0, len(prompts), cfg.batch_size), 1):
                records = gen.generate(prompts[start:start + cfg.batch_size], k, cfg.max_retries,
                                       cfg.copy_min_words, cfg.seed, examples)
                writer.write(records)
                written += len(records)
                bar.update(len(records) * k)
                if on_batch is not None:
                    on_batch(b)
        bar.close()
    wall = time.perf_counter() - t0
    state.wait_for_everyone()

    summary: dict[str, Any] = {"output_dir": str(out), "selected": len(selected), "resumed_done": len(done),
                               "generated_docs": written, "world_size": world, "wall_s": round(wall, 2),
                               "queries_per_s": round(written * cfg.query_per_document / wall, 3) if written else None}
    if state.is_main_process:
        done = read_shards(out)
        missing = [d for d in selected if d not in done]
        if missing:
            raise ValueError(f"{len(missing)} selected documents have no generation record (first: {missing[:3]}); "
                               "rerun the same command to resume")
        meta = {"generator": cfg.model_name_or_path,
                "adapter": str(cfg.adapter_name_or_path) if cfg.adapter_name_or_path else None,
                "sampling": cfg.sampling.model_dump(), "few_shot": cfg.few_shot}
        summary |= write_outputs(out, selected, done, meta, cfg.query_id_prefix, cfg.round)
        if cfg.generate_path is not None:
            target = cfg.generate_path if cfg.generate_path.is_absolute() else out / cfg.generate_path
            write_pseudo_query_json(target, selected, done)
            summary["generate_path"] = str(target)
        dump_config(cfg, out / "config.yaml")
        write_json(out / SUMMARY, summary)
    state.wait_for_everyone()
    return summary
