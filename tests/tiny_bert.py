"""A tiny random BERT sentence-transformer (hidden 32, 2 layers) with a WordPiece tokenizer trained on
fixture sentences, built in seconds and never downloaded; and a learnable toy task whose queries and
passages are drawn from the same topic words."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "astronomy": "star planet orbit telescope galaxy comet nebula moon solar light",
    "cooking": "bread oven flour butter recipe garlic onion soup pepper salt",
    "biology": "cell protein gene enzyme membrane dna mutation tissue receptor virus",
    "finance": "stock bond market interest inflation bank loan equity dividend tax",
    "music": "guitar piano melody rhythm chord concert violin song drum tempo",
}


def fixture_sentences(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = list(TOPICS.values())[i % len(TOPICS)].split()
        out.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))) + ".")
    return out


def build_tiny_bert(folder: Path, max_positions: int = 512) -> Path:
    """Save a tiny BertModel + tokenizer as a sentence-transformers folder (mean pooling).

    The vocabulary keeps `[unused0]`/`[unused1]`, which ColBERT uses as its query/document markers.
    """
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
    # transformers 5 ignores `vocab_file=` here (leaving a 5-token vocabulary); `vocab=` loads the file
    tok = BertTokenizerFast(vocab=str(hf / "vocab.txt"), model_max_length=max_positions)
    assert tok.vocab_size > 100 and tok.tokenize("star planet")[0] != "[UNK]", "tiny BERT tokenizer lost its vocabulary"
    tok.save_pretrained(hf)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions)
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
