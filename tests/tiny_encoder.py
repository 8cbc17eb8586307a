"""A tiny random BERT sentence-transformer whose tokenizer keeps its trained vocabulary.

(tests/tiny_bert.py passes `vocab_file=` to BertTokenizerFast, which transformers 5 ignores: its tokenizer
has 5 tokens and maps every word to [UNK]. The retriever/reranker tests need words to be words.)
Also a learnable toy task: queries and passages drawn from the same topic words.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tiny_bert import TOPICS, fixture_sentences


def build_tiny_encoder(folder: Path) -> Path:
    """Save a tiny BertModel (hidden 32, 2 layers) + WordPiece tokenizer as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    hf = folder / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(fixture_sentences(), vocab_size=300, min_frequency=1, show_progress=False,
                           special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]"])
    wp.save_model(str(hf))
    tok = BertTokenizerFast(vocab=str(hf / "vocab.txt"), model_max_length=64)
    assert tok.tokenize("star planet")[0] != "[UNK]"
    tok.save_pretrained(hf)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(hf)
    st = SentenceTransformer(modules=[Transformer(str(hf), max_seq_length=64), Pooling(32, "mean")], device="cpu")
    st.save(str(folder / "st"))
    return folder / "st"


def toy_topic_rows(n: int = 40, seed: int = 0) -> list[dict]:
    """Rows {query, pos, neg, topic}: the query and its positive share a topic, the negative is another topic."""
    rng = random.Random(seed)
    topics = list(TOPICS.values())
    rows = []
    for i in range(n):
        words = topics[i % len(topics)].split()
        other = topics[(i + 1 + i // len(topics)) % len(topics)].split()
        rows.append({"query": " ".join(rng.sample(words, 3)) + f" q{i}", "pos": [" ".join(rng.sample(words, 6))],
                     "neg": [" ".join(rng.sample(other, 6))], "topic": i % len(topics)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
