"""What running the LM head on the positions a loss reads buys the generator's RL stages on this CPU.

    python benchmarks/rl_speed.py                       # every part and variant (about 55 minutes on 2 cores)
    python benchmarks/rl_speed.py --parts ppo --updates 3
    python benchmarks/rl_speed.py --parts dpo,rm --dpo kept,kept-nockpt --steps 3
    python benchmarks/rl_speed.py --parts grpo

Both use the demo's generator (SmolLM2-135M-Instruct, float32) on SciFact documents cut to 192 tokens, the
prompts `ragtune run` renders:
- PPO (ragtune's own, the demo's `ppo:` block: batch 8, mini-batch 4, 2 epochs, 24 new tokens, a reward that costs
  nothing so only the policy's work is timed): seconds per update, split into sampling (`generate`) and the rest
  (scoring the rollouts with policy and reference, then the clipped updates). `full-head` asks the model for the
  logits of every position (the naive reference); `kept` for the response's only (train/generator/lm_head.py).
- DPO (trl's DPOTrainer through `ragtune train dpo`'s code, batch 8 pairs: the real query of a train document
  against another document's): seconds per optimizer step, the median of steps 2..N. `trl-defaults` is how
  ragtune ran DPO before: trl's CPU defaults, bf16 autocast (on a CPU without AVX512-BF16 or AMX a step takes many
  minutes: not in the default list), gradient checkpointing, the fused LM head on every position. `full-head` is
  the same in float32; `kept` opens `compact_fused_head`; `kept-nockpt` also turns gradient checkpointing off
  (ragtune's default now: a 135M model on CPU does not need the memory it saves).
- The reward model (trl's RewardTrainer through `ragtune train rm`'s code, the demo's `reward:` block: batch 4
  pairs, max_length 256, the same pairs): `ckpt` (trl's default, how ragtune ran it before) against `nockpt`.
- GRPO (trl's GRPOTrainer through `ragtune train grpo`'s code, the loop's `grpo:` defaults: batch 8 completions
  = 2 prompts x 4 samples, 24 new tokens, BM25 over the sampled documents as the online reward): seconds per
  optimizer step, sampling included, float32. `full-head` is trl's fused head on every position with gradient
  checkpointing (trl's default); `kept-nockpt` is ragtune's default now.
The ratios compare variants measured in the same run, on the same seeds, against the part's first variant.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware_line, print_table, timed_steps  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"
GENERATOR = "HuggingFaceTB/SmolLM2-135M-Instruct"
DOC_TOKENS = 192


def prompts_for(n: int, tokenizer) -> tuple[list[str], list[str], list[str]]:
    """(rendered chat prompts, user turns, doc ids) of a seeded sample of `n` documents, cut as the loop cuts."""
    from ragtune.train.generator.rl import PromptSource, sample_docs, user_turns

    src = PromptSource(corpus=SCIFACT, sample_num=n, max_doc_tokens=DOC_TOKENS)
    corpus, docs = sample_docs(src)
    turns = user_turns(src, corpus, docs, tokenizer)
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                              add_generation_prompt=True) for t in turns]
    return rendered, turns, docs


def ppo(updates: int, keep: bool) -> tuple[list[float], list[float]]:
    """(seconds per update, seconds of sampling per update)."""
    import torch

    from ragtune.models import resolve_causal_lm
    from ragtune.train.generator.ppo import PPOConfig, PPOTrainer

    cfg = PPOConfig(steps=updates, batch_size=8, mini_batch_size=4, ppo_epochs=2, max_new_tokens=24,
                    learning_rate=1e-4, save_steps=0)
    torch.manual_seed(0)
    trainer = PPOTrainer(cfg, resolve_causal_lm(GENERATOR))
    trainer.model.keep_logits = keep and trainer.model.keep_logits
    prompts, _, _ = prompts_for(8 * updates, trainer.tokenizer)
    sampling: list[float] = []
    generate = trainer.model.model.generate

    def timed_generate(*a, **k):
        t0 = time.perf_counter()
        out = generate(*a, **k)
        sampling.append(time.perf_counter() - t0)
        return out

    trainer.model.model.generate = timed_generate
    rows = trainer.train(prompts, lambda p, texts: [float(len(t.split())) for t in texts], show_progress=False)
    return [r["seconds"] for r in rows], sampling


def dpo_pairs(path: Path, n: int) -> None:
    from ragtune.data.beir import load_corpus, load_qrels, load_queries
    from ragtune.generate.prompts import user_turn
    from ragtune.models import load_tokenizer, resolve_causal_lm

    tok = load_tokenizer(resolve_causal_lm(GENERATOR))
    corpus, queries = load_corpus(SCIFACT / "corpus.jsonl"), load_queries(SCIFACT / "queries.jsonl")
    qrels = load_qrels(SCIFACT / "qrels" / "train.tsv")
    pairs = [(next(iter(docs)), queries[q]) for q, docs in sorted(qrels.items()) if q in queries][: n + 1]
    with path.open("w", encoding="utf-8") as f:
        for i, (doc, query) in enumerate(pairs[:n]):
            f.write(json.dumps({"instruction": user_turn(corpus[doc], tok, DOC_TOKENS), "chosen": query,
                                "rejected": pairs[i + 1][1]}) + "\n")


DPO_VARIANTS = {"trl-defaults": (False, True, True), "full-head": (False, True, False), "kept": (True, True, False),
                "kept-nockpt": (True, False, False)}
"""name: (compact fused head, gradient checkpointing, bf16 autocast)"""


def dpo(steps: int, variant: str, data: Path, work: Path) -> tuple[dict, list[float]]:
    """(train summary, seconds of each optimizer step)."""
    from contextlib import nullcontext

    import trl

    from ragtune.train.generator import dpo as dpo_module
    from ragtune.train.generator.dpo import DPOTrainConfig, train_dpo

    keep, ckpt, bf16 = DPO_VARIANTS[variant]
    compact = dpo_module.compact_fused_head
    if not keep:
        dpo_module.compact_fused_head = lambda: nullcontext(False)
    try:
        return timed_steps(trl.DPOTrainer, lambda: train_dpo(DPOTrainConfig(
            model_name_or_path=GENERATOR, train_file=data, output_dir=work / f"dpo-{variant}", max_steps=steps,
            per_device_train_batch_size=8, save_steps=0, logging_steps=1, max_length=512,
            gradient_checkpointing=ckpt, bf16=bf16)))
    finally:
        dpo_module.compact_fused_head = compact


def rm(steps: int, variant: str, data: Path, work: Path) -> tuple[dict, list[float]]:
    """(train summary, seconds of each optimizer step)."""
    import trl

    from ragtune.train.generator.reward import RewardTrainConfig, train_reward_model

    return timed_steps(trl.RewardTrainer, lambda: train_reward_model(RewardTrainConfig(
        model_name_or_path=GENERATOR, train_file=data, output_dir=work / f"rm-{variant}", max_steps=steps,
        per_device_train_batch_size=4, max_length=256, save_steps=0, logging_steps=1, plot_loss=False,
        gradient_checkpointing=variant == "ckpt")))


GRPO_VARIANTS = {"full-head": (False, True), "kept-nockpt": (True, False)}
"""name: (compact fused head, gradient checkpointing); float32 both"""


def grpo(steps: int, variant: str, data: Path, work: Path) -> tuple[dict, list[float]]:
    """(train summary, seconds of each optimizer step, sampling included)."""
    from contextlib import nullcontext

    import trl

    from ragtune.data.beir import load_corpus
    from ragtune.models import load_tokenizer, resolve_causal_lm
    from ragtune.retrieval.bm25 import BM25Retriever
    from ragtune.train.generator import grpo as grpo_module
    from ragtune.train.generator.grpo import GRPOTrainConfig, RetrievalReward, train_grpo

    _, turns, docs = prompts_for(2 * steps, load_tokenizer(resolve_causal_lm(GENERATOR)))
    corpus = load_corpus(SCIFACT / "corpus.jsonl")
    bm25 = BM25Retriever()
    bm25.index([corpus[d] for d in docs])
    keep, ckpt = GRPO_VARIANTS[variant]
    compact = grpo_module.compact_fused_head
    if not keep:
        grpo_module.compact_fused_head = lambda: nullcontext(False)
    try:
        return timed_steps(trl.GRPOTrainer, lambda: train_grpo(GRPOTrainConfig(
            model_name_or_path=GENERATOR, output_dir=work / f"grpo-{variant}", max_steps=steps, save_steps=0,
            logging_steps=1, gradient_checkpointing=ckpt), turns, docs, RetrievalReward(bm25.search, k=10)))
    finally:
        grpo_module.compact_fused_head = compact


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="ppo,dpo,rm,grpo")
    p.add_argument("--dpo", default="full-head,kept,kept-nockpt",
                   help=f"DPO variants of {', '.join(DPO_VARIANTS)}; the first is the reference")
    p.add_argument("--rm", default="ckpt,nockpt", help="reward-model variants, the first is the reference")
    p.add_argument("--grpo", default=",".join(GRPO_VARIANTS), help="GRPO variants, the first is the reference")
    p.add_argument("--updates", type=int, default=2, help="PPO updates per variant")
    p.add_argument("--steps", type=int, default=3, help="DPO and reward-model optimizer steps per variant")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    print(hardware_line())
    parts = args.parts.split(",")
    rows: list[list] = []
    if "ppo" in parts:
        first = None
        for keep in (False, True):
            seconds, sampling = ppo(args.updates, keep)
            total, gen = statistics.median(seconds), statistics.median(sampling)
            first = first or (total, total - gen)
            rows.append(["ppo update", "kept" if keep else "full-head", f"{total:.1f}", f"{gen:.1f}",
                         f"{total - gen:.1f}", f"{first[0] / total:.2f}x", f"{first[1] / (total - gen):.2f}x"])
    with tempfile.TemporaryDirectory(prefix="rl-speed-") as tmp:
        data = Path(tmp) / "pairs.jsonl"
        if {"dpo", "rm"} & set(parts):  # preference pairs for the two that learn from them
            dpo_pairs(data, 8 * args.steps)
        for part, run, variants in (("dpo", dpo, args.dpo), ("rm", rm, args.rm), ("grpo", grpo, args.grpo)):
            if part not in parts:
                continue
            first = None
            for variant in variants.split(","):
                _, seconds = run(args.steps, variant, data, Path(tmp))
                step = statistics.median(seconds[1:] or seconds)
                first = first or step
                rows.append([f"{part} step", variant, f"{step:.1f}", "", "", f"{first / step:.2f}x", ""])
    print_table(["what", "variant", "s", "sampling s", "rest s", "vs first", "rest vs first"], rows)


if __name__ == "__main__":
    main()
