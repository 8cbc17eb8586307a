"""generate.engine=ctranslate2 with the tiny LM: the converted model decodes as transformers does (greedy, float32),
keeps the sampling settings, is converted once per model + adapter, and runs, resumes and refuses a switched
engine like the transformers engine."""

from __future__ import annotations

import pytest

from generate_kit import check_complete, generate_cfg
from ragtune.config import ConfigError
from ragtune.generate.config import SamplingConfig
from ragtune.generate.generator import generate_queries
from ragtune.generate.query_generator import QueryGenerator

pytest.importorskip("ctranslate2", reason="pip install 'ragtune[ct2]'")

PROMPTS = ["The small protein binds the receptor in patients.", "The rapid virus damages the tissue.",
           "Heart growth study."]


def chat(gen: QueryGenerator, text: str) -> str:
    return gen.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)


def test_float32_greedy_decodes_exactly_as_transformers(tiny_lm):
    from ragtune.generate.ct2_engine import Ct2QueryGenerator

    greedy = SamplingConfig(do_sample=False, max_new_tokens=12, min_new_tokens=3)
    hf = QueryGenerator.load(str(tiny_lm), sampling=greedy)
    ct2 = Ct2QueryGenerator.load(str(tiny_lm), sampling=greedy, threads=1)  # float32 by default
    prompts = [chat(hf, p) for p in PROMPTS]
    out = ct2.raw(prompts, 1)
    assert out == hf.raw(prompts, 1) and all(x[0] for x in out)  # max/min_new_tokens count generated tokens only


def test_sampling_is_seeded_and_returns_n_independent_samples_per_prompt(tiny_lm):
    from ragtune.generate.ct2_engine import Ct2QueryGenerator

    s = SamplingConfig(temperature=1.5, top_p=1.0, top_k=0, max_new_tokens=5, min_new_tokens=5)
    gen = Ct2QueryGenerator.load(str(tiny_lm), sampling=s, compute_type="int8", threads=1)
    prompts = [chat(gen, p) for p in PROMPTS]
    a, b, c = gen.raw(prompts, 4, seed=7), gen.raw(prompts, 4, seed=7), gen.raw(prompts, 4, seed=8)
    assert a == b != c
    assert [len(x) for x in a] == [4, 4, 4] and all(len(set(x)) > 1 for x in a)


def test_conversion_is_cached_per_model_and_adapter(tiny_lm, tiny_adapter, monkeypatch):
    import ctranslate2

    from ragtune.generate import ct2_engine

    calls = []
    real = ctranslate2.converters.TransformersConverter

    class Counting(real):
        def convert(self, *args, **kwargs):
            calls.append(args)
            return super().convert(*args, **kwargs)

    monkeypatch.setattr(ctranslate2.converters, "TransformersConverter", Counting)
    base = ct2_engine.converted_model(str(tiny_lm), None)  # converted here or by an earlier test of the session
    n = len(calls)
    assert ct2_engine.converted_model(str(tiny_lm), None) == base and len(calls) == n
    tuned = ct2_engine.converted_model(str(tiny_lm), tiny_adapter)
    assert tuned != base and len(calls) == n + 1
    assert ct2_engine.converted_model(str(tiny_lm), tiny_adapter) == tuned and len(calls) == n + 1
    assert ct2_engine.converted_model(str(tiny_lm), tiny_adapter, "int8") not in {base, tuned}
    assert len(calls) == n + 2
    # the adapter is merged: its greedy text differs from the base's
    greedy = SamplingConfig(do_sample=False, max_new_tokens=8)
    g0 = ct2_engine.Ct2QueryGenerator.load(str(tiny_lm), sampling=greedy, threads=1)
    g1 = ct2_engine.Ct2QueryGenerator.load(str(tiny_lm), tiny_adapter, sampling=greedy, threads=1)
    prompts = [chat(g0, p) for p in PROMPTS]
    assert g0.raw(prompts, 1) != g1.raw(prompts, 1) and len(calls) == n + 2


def test_generate_run_with_ct2_resumes_and_refuses_a_switched_engine(tiny_lm, toy_doc2query, tmp_path):
    out = tmp_path / "gen"
    args = ("engine=ctranslate2", "exclude_splits=[]", "sample_num=12", "query_per_document=2", "batch_size=4")

    def stop_after_one(n_batches: int) -> None:
        if n_batches == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, *args), on_batch=stop_after_one)
    s = generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, *args))
    assert s["resumed_done"] == 4 and s["generated_docs"] == 8
    check_complete(out, 2, 12)
    with pytest.raises(ConfigError, match="different config.*engine"):
        generate_queries(generate_cfg(tiny_lm, toy_doc2query, out, *args[1:]))
