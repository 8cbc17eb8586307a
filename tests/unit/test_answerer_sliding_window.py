"""The answerer's cached scoring on a model with sliding-window layers (Gemma 3): prompts longer than the window
used to crash in cache.crop(); the refusal log-probability must equal a plain forward pass over prompt + phrasing."""

from __future__ import annotations

import math


def _tiny_gemma3(tiny_lm):
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(tiny_lm, padding_side="left")
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=6,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=512,
                              initializer_range=0.2, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id, attn_implementation="eager")
    return Gemma3ForCausalLM(config).eval(), tok


def _reference_refusal_logprob(model, prompt_ids: list[int], phrasings: list[list[int]]) -> float:
    import torch

    totals = []
    for r in phrasings:
        ids = torch.tensor([prompt_ids + r])
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        start = len(prompt_ids) - 1
        totals.append(sum(logp[start + k, t].item() for k, t in enumerate(r)))
    m = max(totals)
    return m + math.log(sum(math.exp(t - m) for t in totals))


def test_refusal_scoring_on_prompts_longer_than_the_sliding_window(tiny_lm):
    from ragtune.rag.answer import Answerer

    model, tok = _tiny_gemma3(tiny_lm)
    answerer = Answerer(model, tok, stop_ids=[tok.eos_token_id], max_new_tokens=4, batch_size=2)
    prompts = [answerer.prompt("What binds the receptor?", ["The small protein binds the receptor. " * 3], "en"),
               answerer.prompt("What cell?", ["The cell study."], "en")]
    window = model.config.sliding_window
    assert all(len(answerer._ids(p.text)) > window for p in prompts)
    gens = answerer.generate(prompts)
    for p, g in zip(prompts, gens, strict=True):
        want = _reference_refusal_logprob(model, answerer._ids(p.text), answerer._refusal_ids["en"])
        assert abs(g.refusal_logprob - want) < 1e-3, (g.refusal_logprob, want)
