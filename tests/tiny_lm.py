"""A tiny random Qwen2 causal LM (hidden 32, 2 layers) with a BPE tokenizer trained on fixture sentences.

    path = build_tiny_lm(tmp_dir)        # a save_pretrained folder: config, safetensors, tokenizer, chat template
    corpus, pairs = toy_corpus()         # documents and a learnable doc -> query mapping

Nothing is downloaded; the same seed gives the same model.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

TOPICS = ["protein", "virus", "cell", "gene", "cancer", "brain", "heart", "lung", "liver", "bone", "blood",
          "kidney", "skin", "muscle", "immune", "vaccine", "drug", "enzyme", "hormone", "neuron"]
VERBS = ["binds", "activates", "inhibits", "regulates", "reduces", "increases", "controls", "damages"]
OBJECTS = ["receptor", "pathway", "membrane", "signal", "growth", "response", "tissue", "infection", "memory"]
ADJS = ["small", "rapid", "chronic", "stable", "novel", "weak", "strong", "early", "late", "common"]


def fixture_sentences(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t, v, o, a = rng.choice(TOPICS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ADJS)
        out.append(f"The {a} {t} {v} the {o} in patients. What {t} {v} {o}? {t.title()} {o} study.")
    return out


def toy_corpus(n_docs: int = 40, seed: int = 0) -> tuple[list[dict], list[tuple[str, str]]]:
    """BEIR corpus rows and (doc_id, query) pairs where the query is learnable from the document."""
    rng = random.Random(seed)
    combos = list(itertools.product(TOPICS, OBJECTS))
    rng.shuffle(combos)
    docs, pairs = [], []
    for i, (t, o) in enumerate(combos[:n_docs]):
        v, a = rng.choice(VERBS), rng.choice(ADJS)
        text = " ".join(f"The {a} {t} {v} the {o}." for _ in range(1 + i % 4))
        docs.append({"_id": f"d{i}", "title": f"{t.title()} {o}", "text": text})
        pairs.append((f"d{i}", f"{t} {o}"))
    return docs, pairs


def build_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    docs, pairs = toy_corpus(200)
    texts = fixture_sentences() + [d["title"] + "\n" + d["text"] for d in docs] + [q for _, q in pairs]
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(path)
    return fast


def build_tiny_lm(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Qwen2ForCausalLM and its tokenizer to `path`; returns the folder."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tok = build_tokenizer(path)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2,  # wide enough that a final-norm model can move its logits
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                               bos_token_id=tok.bos_token_id)
    model.save_pretrained(path)
    return path


def build_tiny_adapter(base: str | Path, path: str | Path, seed: int = 0) -> Path:
    """A LoRA adapter on the tiny LM with random (non-zero) weights, so merging it changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    return Path(path)


def vocab_corpus(root: Path, lm: Path) -> Path:
    """4 documents sharing out the tiny LM's whole words: any sampled text ranks its prompt's document somewhere
    in 1..4, so GRPO's retrieval reward varies within a group (on the toy corpus it is 0 for every sample)."""
    from transformers import AutoTokenizer

    from ragtune.data.beir import write_beir

    words = sorted({t[1:].lower() for t in AutoTokenizer.from_pretrained(lm).get_vocab()
                    if t.startswith("Ġ") and t[1:].isalpha() and len(t) > 3})
    write_beir(root / "vocab", [{"_id": f"v{i}", "title": "", "text": " ".join(words[i::4])} for i in range(4)], {},
               {})
    return root / "vocab"
