"""The answerer: a causal LM (+ LoRA adapter) that answers from numbered contexts or refuses.

    answerer = Answerer.load(DEFAULT_GENERATOR, adapter="runs/answerer-squad", device="cpu")
    [g] = answerer.generate([answerer.prompt("Who ruled Normandy?", ["Rollo ruled ...", "..."])])
    g.text, g.refused, g.reason, g.margin, g.signal

Prompts are the ones the training records carry (`ragtune.generate.prompts.ANSWER_PROMPTS`, rendered with the same chat
template), so training and inference match; several contexts are numbered `[1] ... [2] ...`.

Decoding is batched greedy search written out here (prompts sorted by length, left padding, explicit position
ids, a KV cache), because the refusal signal needs the prompt's cache: after the prompt is encoded once, every
refusal phrasing is scored against that cache (then the cache is cropped back) and the answer is decoded from it;
`ragtune.rag.refusal.decide` refuses when the greedy output is a refusal, else when the margin says so (see there).
With a refusal probe (`ragtune.rag.refusal_probe`), the prompt's forward pass also returns its hidden states and the
probe's score (alone, or with the margin) is the signal the threshold is compared with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ragtune.data.language import detect_language
from ragtune.generate.prompts import ANSWER_PROMPTS, format_contexts, refusal_phrasings
from ragtune.models import DEFAULT_GENERATOR
from ragtune.rag.refusal import FLOOR, decide, is_refusal_text, is_trained_refusal, likelihood_margin, text_is_final
from ragtune.rag.refusal_probe import RefusalProbe


@dataclass
class Prompt:
    text: str
    """The rendered chat prompt, ending where the answer starts."""
    language: str
    n_contexts: int
    question: str = ""
    contexts: tuple[str, ...] = ()
    """The contexts the prompt holds (after any that did not fit were dropped or shortened)."""


@dataclass
class Generation:
    text: str
    """The best non-refusal answer: the greedy output, or, when that was a trained refusal phrasing, the greedy
    decode with the phrasings' first tokens banned."""
    refused: bool
    reason: str | None
    """"text" (the greedy output is a refusal phrasing or cue), "likelihood" (the greedy output answered, but
    the likelihood margin is above the threshold), or None."""
    answer_logprob: float
    """log P(answer + end-of-turn | prompt) under the model."""
    refusal_logprob: float
    """log sum over the trained refusal phrasings r of P(r + end-of-turn | prompt)."""
    floor: float = FLOOR
    greedy: str = ""
    """The plain greedy output (a refusal phrasing when the model's first choice was to refuse)."""
    greedy_refused: bool = False
    """The greedy output is a refusal (phrasing or cue)."""
    text_final: bool = False
    """The greedy output refused and no threshold undoes it (`refusal_text`, ragtune.rag.refusal)."""
    probe_logit: float | None = None
    """The refusal probe's log-odds that the context does not hold the answer (None without a probe)."""
    score: float | None = None
    """The refusal probe's score (`RefusalProbe.score`), compared with refusal_margin instead of the margin."""
    verifier_score: float | None = None
    """The answerability verifier's refusal score where the probe adds one (`ragtune.rag.refusal_verifier`)."""

    @property
    def margin(self) -> float:
        """`ragtune.rag.refusal.likelihood_margin`: > refusal_margin means refuse."""
        return likelihood_margin(self.refusal_logprob, self.answer_logprob, self.floor)

    @property
    def signal(self) -> float:
        """What refusal_margin thresholds: the probe's score where the answerer has a probe, else the margin."""
        return self.margin if self.score is None else self.score


class Answerer:
    def __init__(self, model, tokenizer, stop_ids: list[int], max_new_tokens: int = 48, batch_size: int = 8,
                 max_prompt_tokens: int = 1024, refusal_margin: float = 0.0, refusal_floor: float = FLOOR,
                 refusals: dict[str, list[str]] | None = None, refusal_text: str = "final",
                 refusal_probe: RefusalProbe | None = None, refusal_verifier=None):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.max_new_tokens, self.batch_size, self.max_prompt_tokens = max_new_tokens, batch_size, max_prompt_tokens
        self.refusal_margin, self.refusal_floor, self.refusal_text = refusal_margin, refusal_floor, refusal_text
        self.probe, self.verifier = refusal_probe, refusal_verifier
        if refusal_probe is not None and "verifier" in refusal_probe.signals and refusal_verifier is None:
            raise ValueError(f"the refusal probe sums {refusal_probe.combine}: pass its refusal_verifier")
        self._unmerged = False  # a probe of the base model beside an unmerged LoRA: run the prompt without it too
        if refusal_probe is not None and refusal_probe.reads == "base":
            from peft import PeftModel

            self._unmerged = isinstance(model, PeftModel)
        self.refusals = {lang: refusal_phrasings(lang, (refusals or {}).get(lang)) for lang in ("en", "zh")}
        self.device = next(model.parameters()).device
        end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else stop_ids[0]
        self._refusal_ids = {lang: [self._ids(r) + [end] for r in rs] for lang, rs in self.refusals.items()}

    @classmethod
    def load(cls, model: str | Path = DEFAULT_GENERATOR, adapter: str | Path | None = None, template: str = "auto",
             device: str = "cpu", refusal_probe: str | Path | None = None, refusal_verifier: str | Path | None = None,
             **kwargs) -> Answerer:
        """Base model (hub name, folder, or the offline GGUF default) plus an optional LoRA adapter, merged, on
        `device` (resolved by the caller); `refusal_probe`: a folder `ragtune train refusal-probe` wrote for them,
        `refusal_verifier`: the verifier the probe sums, if it does (`ragtune train refusal-verifier`)."""
        from ragtune.generate.prompts import use_template
        from ragtune.models import load_causal_lm
        from ragtune.rag.refusal_verifier import RefusalVerifier

        probe = None if refusal_probe is None else RefusalProbe.load(refusal_probe, model, adapter, refusal_verifier)
        verifier = None
        if probe is not None and "verifier" in probe.signals:
            verifier = RefusalVerifier.load(refusal_verifier, device)
        elif refusal_verifier is not None:  # it would be loaded and never asked
            from ragtune.config import ConfigError

            raise ConfigError('key "answerer.refusal_verifier": only a refusal probe that sums a verifier reads one ('
                              + ("no answerer.refusal_probe" if probe is None else f"the probe's combine is "
                                 f"{probe.combine}") + ")")
        base_probe = probe is not None and probe.reads == "base" and adapter is not None  # switch the LoRA off
        lm, tokenizer = load_causal_lm(model, adapter, merge=not base_probe, padding_side="left", device=device,
                                       adapter_key="adapter")
        stop_ids = use_template(tokenizer, template)
        lm.eval()
        return cls(lm, tokenizer, stop_ids, refusal_probe=probe, refusal_verifier=verifier, **kwargs)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ---------------------------------------------------------------- prompts

    def render(self, question: str, contexts: Sequence[str], language: str) -> str:
        user = ANSWER_PROMPTS[language].format(context=format_contexts(contexts), question=question)
        return self.tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                                  add_generation_prompt=True)

    def prompt(self, question: str, contexts: Sequence[str], language: str | None = None) -> Prompt:
        """The chat prompt; contexts that do not fit `max_prompt_tokens` are dropped from the end (the last one
        kept is shortened), so the question is never cut."""
        language = language or detect_language(question)
        contexts = [c for c in contexts if c.strip()] or [""]
        while True:
            text = self.render(question, contexts, language)
            over = len(self._ids(text)) - self.max_prompt_tokens
            if over <= 0:
                return Prompt(text, language, len(contexts), question, tuple(contexts))
            if len(contexts) > 1:
                contexts = contexts[:-1]
                continue
            ids = self._ids(contexts[0])
            if len(ids) <= over:
                raise ValueError(f"the question alone is longer than max_prompt_tokens={self.max_prompt_tokens}")
            contexts = [self.tokenizer.decode(ids[: len(ids) - over - 1], skip_special_tokens=True)]

    def prompt_states(self, prompts: Sequence[Prompt], layers: Sequence[int], progress: bool = True):
        """(n, len(layers), hidden) float32 numpy: each prompt's last-token hidden state after each of `layers`
        (indices into the model's hidden_states), batched by similar length."""
        import numpy as np
        import torch
        from tqdm import tqdm

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].text))
        out = np.zeros((len(prompts), len(layers), self.model.config.hidden_size), dtype=np.float32)
        for s in tqdm(range(0, len(order), self.batch_size), desc="hidden states", unit="batch",
                      disable=not progress):
            idx = order[s:s + self.batch_size]
            ids, mask, pos = self._encode([prompts[i] for i in idx])
            with torch.inference_mode():
                hs = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True,
                                logits_to_keep=1).hidden_states
            out[idx] = torch.stack([hs[k][:, -1].float() for k in layers], 1).cpu().numpy()
        return out

    # ---------------------------------------------------------------- decoding

    def generate(self, prompts: Sequence[Prompt], progress: bool = False) -> list[Generation]:
        """Greedy answers with refusal decisions, in the order of `prompts` (batched by similar length)."""
        from tqdm import tqdm

        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].text))
        out: list[Generation | None] = [None] * len(prompts)
        for s in tqdm(range(0, len(order), self.batch_size), desc="answering", unit="batch",
                      disable=not progress or len(prompts) <= self.batch_size):
            idx = order[s:s + self.batch_size]
            for i, g in zip(idx, self._batch([prompts[i] for i in idx]), strict=True):
                out[i] = g
        return out  # type: ignore[return-value]

    def _encode(self, prompts: Sequence[Prompt]):
        """(input ids, attention mask, position ids) of left-padded prompts: the last position is each one's end."""
        enc = self.tokenizer([p.text for p in prompts], return_tensors="pt", padding=True,
                             add_special_tokens=False).to(self.device)
        mask = enc["attention_mask"]
        return enc["input_ids"], mask, (mask.cumsum(-1) - 1).clamp(min=0)

    def _batch(self, prompts: list[Prompt]) -> list[Generation]:
        import torch

        ids, mask, pos = self._encode(prompts)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                             logits_to_keep=1, output_hidden_states=self.probe is not None and not self._unmerged)
            probe_logits = [None] * len(prompts) if self.probe is None else self.probe.logits(
                self._base_states(ids, mask, pos) if self._unmerged else out.hidden_states)
            cache = out.past_key_values
            if hasattr(cache, "activate_past_recording"):
                # sliding-window layers (Gemma 3) keep only the window; recording lets crop() roll them back
                cache.activate_past_recording()
            first = torch.log_softmax(out.logits[:, -1].float(), -1)
            refusal_lp = self._score_refusals(prompts, cache, mask, pos[:, -1], first)
            greedy, answer_lp, grown = self._greedy(cache, mask, pos[:, -1], first)
            texts = list(greedy)
            again = [i for i, (p, t) in enumerate(zip(prompts, greedy, strict=True))
                     if is_trained_refusal(t, p.language, self.refusals[p.language])]
            if again:  # the best answer that is not a refusal: ban the phrasings' first tokens and decode again
                if grown:
                    cache.crop(-grown)
                banned = first.clone()
                for i in again:
                    banned[i, [ids[0] for ids in self._refusal_ids[prompts[i].language]]] = -math.inf
                alt, alt_lp, _ = self._greedy(cache, mask, pos[:, -1], banned)
                for i in again:
                    texts[i], answer_lp[i] = alt[i], alt_lp[i]
        checked = [None] * len(prompts) if self.verifier is None else self.verifier.scores(
            [p.question for p in prompts], [p.contexts for p in prompts])
        gens = []
        for p, g, text, a_lp, r_lp, logit, v in zip(prompts, greedy, texts, answer_lp, refusal_lp, probe_logits,
                                                    checked, strict=True):
            phrasings = self.refusals[p.language]
            score = None if logit is None else self.probe.score(logit, likelihood_margin(r_lp, a_lp,
                                                                                           self.refusal_floor), v)
            refused, why = decide(g, r_lp, a_lp, p.language, self.refusal_margin, phrasings, self.refusal_floor,
                                  self.refusal_text, score)
            gens.append(Generation(text, refused, why, a_lp, r_lp, self.refusal_floor, g,
                                   is_refusal_text(g, p.language, phrasings),
                                   text_is_final(g, p.language, phrasings, self.refusal_text), logit, score, v))
        return gens

    def _base_states(self, ids, mask, pos):
        """The prompt's hidden states with the LoRA switched off (a probe that reads the base model)."""
        with self.model.disable_adapter():
            return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True,
                              logits_to_keep=1).hidden_states

    def _score_refusals(self, prompts: list[Prompt], cache, mask, last_pos, first) -> list[float]:
        """log sum_r P(r | prompt) per prompt, scoring one phrasing index at a time on the shared cache."""
        import torch

        per_item: list[list[float]] = [[] for _ in prompts]
        n = max(len(self._refusal_ids[p.language]) for p in prompts)
        for j in range(n):
            seqs = [self._refusal_ids[p.language][j] if j < len(self._refusal_ids[p.language]) else []
                    for p in prompts]
            length = max(len(s) for s in seqs)
            if length == 0:
                continue
            toks = torch.full((len(seqs), length), self.tokenizer.pad_token_id, dtype=torch.long)
            tmask = torch.zeros((len(seqs), length), dtype=torch.long)
            for i, s in enumerate(seqs):
                toks[i, : len(s)] = torch.tensor(s)
                tmask[i, : len(s)] = 1
            toks, tmask = toks.to(self.device), tmask.to(self.device)
            pos = last_pos[:, None] + 1 + torch.arange(length, device=self.device)[None, :]
            logits = self.model(input_ids=toks, attention_mask=torch.cat([mask, tmask], 1), position_ids=pos,
                                past_key_values=cache, use_cache=True).logits.float()
            cache.crop(-length)  # drop the phrasing again: the cache holds the prompt only
            logp = torch.log_softmax(logits, -1)
            for i, s in enumerate(seqs):
                if not s:
                    continue
                total = first[i, s[0]].item()
                if len(s) > 1:
                    nxt = torch.tensor(s[1:], device=self.device)
                    total += logp[i, : len(s) - 1].gather(-1, nxt[:, None]).sum().item()
                per_item[i].append(total)
        return [_logsumexp(v) for v in per_item]

    def _greedy(self, cache, mask, last_pos, first) -> tuple[list[str], list[float], int]:
        """(texts, log-probs of text + end token, tokens appended to the cache)."""
        import torch

        b = mask.shape[0]
        stop = torch.tensor(self.stop_ids, device=self.device)
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        logp_sum = torch.zeros(b, dtype=torch.float64, device=self.device)
        tokens: list[torch.Tensor] = []
        logp, pos, grown = first, last_pos, 0
        for _ in range(self.max_new_tokens):
            tok = logp.argmax(-1)
            logp_sum += torch.where(done, 0.0, logp.gather(-1, tok[:, None]).squeeze(1).double())
            tok = torch.where(done, torch.full_like(tok, self.tokenizer.pad_token_id), tok)
            tokens.append(tok)
            done |= torch.isin(tok, stop)
            if bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=self.device)], 1)
            pos = pos + 1
            out = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos[:, None],
                             past_key_values=cache, use_cache=True)
            grown += 1
            logp = torch.log_softmax(out.logits[:, -1].float(), -1)
        seq = torch.stack(tokens, 1).tolist() if tokens else [[] for _ in range(b)]
        texts = []
        for row in seq:
            cut = next((k for k, t in enumerate(row) if t in self.stop_ids), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return texts, logp_sum.tolist(), grown


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))
