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

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.config import ConfigError, dump_config
from ragtune.generate.checks import clean_query, normalize, rejection
from ragtune.generate.config import GenerateConfig, SamplingConfig
from ragtune.generate.prompts import document_text, query_messages, truncate_tokens, use_template

RUN_STATE = "run.json"
SUMMARY = "generation_summary.json"


@dataclass
class Prompt:
    doc_id: str
    text: str
    """The rendered chat prompt, ending where the answer starts."""
    doc_norm: str
    """normalize(document), for the copy check."""
    n_tokens: int


class QueryGenerator:
    """A causal LM (plus merged adapter) that writes queries for rendered prompts, with retries."""

    def __init__(self, model, tokenizer, stop_ids: list[int], sampling: SamplingConfig):
        self.model, self.tokenizer, self.stop_ids, self.sampling = model, tokenizer, stop_ids, sampling
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_name_or_path: str, adapter: Path | None = None, template: str = "auto",
             sampling: SamplingConfig | None = None, dtype: str = "float32", device: str = "cpu",
             trust_remote_code: bool = False) -> QueryGenerator:
        """Base + merged adapter on `device` in `dtype`, both resolved by the caller (`hardware.auto_dtype`)."""
        from ragtune.models import load_causal_lm

        model, tokenizer = load_causal_lm(model_name_or_path, adapter, padding_side="left", dtype=dtype,
                                          device=device, trust_remote_code=trust_remote_code)
        stop_ids = use_template(tokenizer, template)
        model.eval()
        return cls(model, tokenizer, stop_ids, sampling or SamplingConfig())

    # ---------------------------------------------------------------- prompts

    def prompt(self, doc_id: str, document: str, instruction: str, system: str | None,
               shots: list[tuple[str, str]], max_doc_tokens: int) -> Prompt:
        doc = truncate_tokens(self.tokenizer, document, max_doc_tokens)
        text = self.tokenizer.apply_chat_template(query_messages(doc, instruction, system, shots), tokenize=False,
                                                  add_generation_prompt=True)
        n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return Prompt(doc_id, text, normalize(document), n)

    # ---------------------------------------------------------------- decoding

    def raw(self, prompts: list[str], n: int, retry: bool = False, seed: int | None = None) -> list[list[str]]:
        """`n` decoded continuations per prompt (one batched generate call)."""
        import torch

        s = self.sampling
        sample = s.do_sample or retry  # a retry of greedy/beam output must sample, or it repeats itself
        beams = 1 if retry else s.num_beams
        kwargs: dict[str, Any] = {"do_sample": sample, "num_beams": beams, "num_return_sequences": n,
                                  "max_new_tokens": s.max_new_tokens, "min_new_tokens": s.min_new_tokens or None,
                                  "repetition_penalty": s.repetition_penalty, "use_cache": True,
                                  "eos_token_id": self.stop_ids, "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            kwargs |= {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k}
        if seed is not None:
            torch.manual_seed(seed)
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]

    def generate(self, batch: list[Prompt], k: int, max_retries: int = 3, copy_min_words: int = 8,
                 seed: int = 0) -> list[dict[str, Any]]:
        """k queries per prompt: `{doc_id, queries, failed: [{reason, text}], attempts}` records.

        Empty, duplicate and document-copying outputs are regenerated (up to `max_retries` more calls);
        slots still missing then are recorded as failed with the last rejection.
        """
        kept: dict[str, list[str]] = {p.doc_id: [] for p in batch}
        seen: dict[str, set[str]] = {p.doc_id: set() for p in batch}
        last: dict[str, tuple[str, str]] = {}
        attempts: dict[str, int] = {p.doc_id: 0 for p in batch}
        pending = list(batch)
        for attempt in range(max_retries + 1):
            if not pending:
                break
            need = max(k - len(kept[p.doc_id]) for p in pending)
            outs = self.raw([p.text for p in pending], need, retry=attempt > 0,
                            seed=_seed(seed, pending[0].doc_id, attempt))
            for p, texts in zip(pending, outs, strict=True):
                attempts[p.doc_id] += 1
                for raw in texts:
                    if len(kept[p.doc_id]) == k:
                        break
                    q = clean_query(raw)
                    why = rejection(q, p.doc_norm, seen[p.doc_id], copy_min_words)
                    if why is None:
                        kept[p.doc_id].append(q)
                        seen[p.doc_id].add(normalize(q))
                    else:
                        last[p.doc_id] = (why, q)
            pending = [p for p in pending if len(kept[p.doc_id]) < k]
        records = []
        for p in batch:
            missing = k - len(kept[p.doc_id])
            reason, text = last.get(p.doc_id, ("empty", ""))
            records.append({"doc_id": p.doc_id, "queries": kept[p.doc_id],
                            "failed": [{"reason": reason, "text": text}] * missing, "attempts": attempts[p.doc_id]})
        return records


def _seed(seed: int, doc_id: str, attempt: int) -> int:
    """A sampling seed that depends on the batch content, not on where a resumed run happened to restart."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}:{attempt}".encode()).digest()[:4], "little")


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
                                       cfg.copy_min_words, cfg.seed)
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
