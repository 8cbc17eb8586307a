"""`generate.engine: ctranslate2`: the generator (base + merged LoRA adapters) converted to CTranslate2 and
decoded by its C++ engine on CPU, in float32 (default) or int8.

    gen = Ct2QueryGenerator.load("HuggingFaceTB/SmolLM2-135M-Instruct", adapter, sampling=cfg.sampling)
    gen.raw([prompt_text], n=3)        # same contract as QueryGenerator.raw

The converted model is cached under `<cache>/ct2/<key>/`; the key covers the base model's and every adapter's
files (the fingerprint embeddings are cached by), the quantization, and the ctranslate2 and transformers versions
(the converter reads transformers' modelling config). Conversion takes seconds for SmolLM2-135M.

Sampling keeps transformers' semantics: temperature, top_p, top_k (0 = no top-k cut), min/max_new_tokens
(generated tokens only), repetition_penalty, beams; stop tokens from the chat template; a retry samples. A batch's
seed goes through `ctranslate2.set_random_seed`, so a run (and a resumed one) is reproducible with the same
engine; the same seed does not give the text the transformers engine writes (another random stream).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Literal

from ragtune.generate.config import SamplingConfig
from ragtune.generate.query_generator import QueryGenerator
from ragtune.paths import cache_dir, mark_used

ComputeType = Literal["float32", "int8"]
CONVERT_RECIPE = 1
"""Bump when the conversion steps change, so old conversions are not reused."""


def require_ctranslate2():
    try:
        import ctranslate2
    except ImportError as e:
        raise ImportError("generate.engine=ctranslate2 needs CTranslate2: pip install 'ragtune[ct2]'") from e
    return ctranslate2


def _quantization(compute_type: ComputeType) -> str | None:
    """What the weights are stored as (None: the checkpoint's float32)."""
    return None if compute_type == "float32" else compute_type


def convert_key(base: Path, adapters: list[Path], compute_type: ComputeType) -> str:
    import transformers

    from ragtune.models import fingerprint

    ct2 = require_ctranslate2()
    parts = [fingerprint(base), *(fingerprint(a) for a in adapters), f"q{_quantization(compute_type)}",
             f"recipe{CONVERT_RECIPE}", f"ct2{ct2.__version__}", f"transformers{transformers.__version__}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def converted_model(model_name_or_path: str, adapter: Path | None, compute_type: ComputeType = "float32",
                    trust_remote_code: bool = False) -> Path:
    """The CTranslate2 folder of base + merged adapters, converted on first use and renamed into place whole."""
    from ragtune.models import adapter_stack, load_causal_lm, resolve_causal_lm

    ct2 = require_ctranslate2()
    base = resolve_causal_lm(model_name_or_path)
    adapters = adapter_stack([Path(adapter)]) if adapter is not None else []
    target = cache_dir("ct2", convert_key(base, adapters, compute_type))
    if (target / "model.bin").is_file():
        mark_used(target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        merged = tmp / "merged"
        model, tokenizer = load_causal_lm(base, adapter, dtype="float32", device="cpu",
                                          trust_remote_code=trust_remote_code)
        model.save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        del model
        ct2.converters.TransformersConverter(str(merged), trust_remote_code=trust_remote_code).convert(
            str(tmp / "ct2"), quantization=_quantization(compute_type))
        try:
            (tmp / "ct2").rename(target)
        except OSError:  # another rank converted it first (a non-empty target: ENOTEMPTY or EEXIST)
            if not (target / "model.bin").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class Ct2QueryGenerator(QueryGenerator):
    """QueryGenerator whose decoding runs on a ctranslate2.Generator (prompts, retries and checks are shared)."""

    def __init__(self, folder: Path, tokenizer, stop_ids: list[int], sampling: SamplingConfig,
                 compute_type: ComputeType = "float32", threads: int = 0):
        self.folder, self.compute_type, self.threads = folder, compute_type, threads
        self.tokenizer, self.stop_ids, self.sampling = tokenizer, stop_ids, sampling
        self.device = "cpu"
        self.model = None  # built by the first batch (a seeded batch builds its own, see raw)

    def _engine(self):
        return require_ctranslate2().Generator(str(self.folder), device="cpu", compute_type=self.compute_type,
                                               intra_threads=self.threads)

    @classmethod
    def load(cls, model_name_or_path: str, adapter: Path | None = None, template: str = "auto",
             sampling: SamplingConfig | None = None, compute_type: ComputeType = "float32", threads: int = 0,
             trust_remote_code: bool = False) -> Ct2QueryGenerator:
        from ragtune.generate.prompts import use_template
        from ragtune.models import load_tokenizer

        folder = converted_model(model_name_or_path, adapter, compute_type, trust_remote_code)
        tokenizer = load_tokenizer(model_name_or_path, adapter, trust_remote_code)
        stop_ids = use_template(tokenizer, template)
        return cls(folder, tokenizer, stop_ids, sampling or SamplingConfig(), compute_type, threads)

    def raw(self, prompts: list[str], n: int, retry: bool = False, seed: int | None = None) -> list[list[str]]:
        """`n` decoded continuations per prompt (one generate_batch call; sampled ones as n copies of a prompt)."""
        ct2 = require_ctranslate2()
        s = self.sampling
        sample = s.do_sample or retry
        beams = 1 if retry else s.num_beams
        tokens = [self.tokenizer.convert_ids_to_tokens(self.tokenizer(p, add_special_tokens=False)["input_ids"])
                  for p in prompts]
        kwargs = {"max_length": s.max_new_tokens, "min_length": s.min_new_tokens,
                  "repetition_penalty": s.repetition_penalty, "end_token": list(self.stop_ids),
                  "include_prompt_in_result": False}
        if sample:
            kwargs |= {"sampling_topk": s.top_k, "sampling_topp": s.top_p, "sampling_temperature": s.temperature,
                       "beam_size": 1}
        else:
            kwargs |= {"sampling_topk": 1, "beam_size": beams, "num_hypotheses": n}
        if seed is not None and sample:
            # each engine thread seeds its random generator once, on its first sample, so set_random_seed alone
            # does not repeat a draw (CTranslate2 issue 1757); a fresh engine does (~0.3 s, once per batch)
            ct2.set_random_seed(seed)
            self.model = None
        if self.model is None:
            self.model = self._engine()
        if sample:  # n independent samples of each prompt
            results = self.model.generate_batch([t for t in tokens for _ in range(n)], **kwargs)
            ids = [[r.sequences_ids[0] for r in results[i * n:(i + 1) * n]] for i in range(len(prompts))]
        else:
            ids = [r.sequences_ids[:n] for r in self.model.generate_batch(tokens, **kwargs)]
        return [[self.tokenizer.decode(x, skip_special_tokens=True) for x in seqs] for seqs in ids]
