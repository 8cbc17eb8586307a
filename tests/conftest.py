"""Offline, CPU test setup, and the shared data location.

Tiny random models (hidden size 32, 2 layers) are built here from tokenizers trained on
fixture sentences, so no test downloads anything.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
sys.path.insert(0, os.path.dirname(__file__))  # tiny model builders live beside this file

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import hypothesis_profiles  # noqa: E402,F401  (registers the fuzz tests' profiles; a second conftest.py would shadow this one)
from ragtune.paths import shared_data  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own ragtune cache, so cached embeddings never leak between runs."""
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "ragtune-cache"))


@pytest.fixture(scope="session")
def scifact() -> Path:
    path = shared_data("beir", "scifact")
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"shared data not found at {path} (set RAGTUNE_SHARED)")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """Folder of a tiny random sentence-transformers BERT model."""
    from tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_beir(tmp_path) -> Path:
    """A 6-document BEIR folder with train/test qrels."""
    from ragtune.data.beir import write_beir

    docs = [
        {"_id": "d1", "title": "Comets", "text": "A comet orbits the sun and grows a bright tail near perihelion."},
        {"_id": "d2", "title": "Sourdough", "text": "Sourdough bread rises with wild yeast and a long fermentation."},
        {"_id": "d3", "title": "Enzymes", "text": "Enzymes are proteins that catalyse reactions inside the cell."},
        {"_id": "d4", "title": "Bonds", "text": "Bond prices fall when market interest rates rise."},
        {"_id": "d5", "title": "Violins", "text": "The violin is a string instrument played with a bow."},
        {"_id": "d6", "title": "", "text": "Telescopes collect light from distant galaxies and nebulae."},
    ]
    queries = {"q1": "why does a comet have a tail", "q2": "how does sourdough rise",
               "q3": "what do enzymes do in cells", "q4": "bond prices and interest rates",
               "q5": "how is a violin played", "q6": "what do telescopes collect"}
    write_beir(tmp_path / "tiny", docs, queries,
               {"train": {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}},
                "test": {"q4": {"d4": 1}, "q5": {"d5": 1}, "q6": {"d6": 2, "d1": 1}}})
    return tmp_path / "tiny"


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """Folder of a tiny random Qwen2 causal LM with a trained BPE tokenizer and a chatml template."""
    from tiny_lm import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def toy_doc2query(tmp_path_factory) -> Path:
    """BEIR folder of 40 toy documents (20 with train queries) plus `sft/` holding alpaca doc -> query pairs
    registered in dataset_info.json as "toy"."""
    import json

    from ragtune.data.beir import write_beir
    from tiny_lm import toy_corpus

    root = tmp_path_factory.mktemp("toy-doc2query")
    docs, pairs = toy_corpus(40)
    labeled = pairs[:20]
    write_beir(root, docs, {f"q{i}": q for i, (_, q) in enumerate(labeled)},
               {"train": {f"q{i}": {d: 1} for i, (d, _) in enumerate(labeled)}})
    by_id = {d["_id"]: d for d in docs}
    (root / "sft").mkdir()
    with open(root / "sft" / "toy.jsonl", "w", encoding="utf-8") as f:
        for d, q in pairs:
            f.write(json.dumps({"instruction": f"{by_id[d]['title']} {by_id[d]['text']}", "output": q}) + "\n")
    (root / "sft" / "dataset_info.json").write_text(json.dumps({"toy": {"file_name": "toy.jsonl",
                                                                        "formatting": "alpaca"}}))
    return root


@pytest.fixture(scope="session")
def tiny_adapter(tiny_lm, tmp_path_factory) -> Path:
    """A random non-zero LoRA adapter (with tokenizer) for the tiny causal LM."""
    from tiny_lm import build_tiny_adapter

    return build_tiny_adapter(tiny_lm, tmp_path_factory.mktemp("tiny-adapter"))


@pytest.fixture
def trainer_runs(monkeypatch) -> list:
    """Every transformers `Trainer.train` call of the test: (copy of the model before training, copy right after
    training, the trainer).

    Tests compare the trained in-memory model with what was saved and reloaded, and with the model before training,
    so a save that writes other weights than the trained ones, or training that changes nothing, fails them.
    """
    return record_trainer_runs(monkeypatch)


def record_trainer_runs(monkeypatch) -> list:
    import copy

    import transformers

    runs: list = []
    original = transformers.Trainer.train

    def train(self, *args, **kwargs):
        before = copy.deepcopy(self.model)
        result = original(self, *args, **kwargs)
        runs.append((before, copy.deepcopy(self.model), self))
        return result

    monkeypatch.setattr(transformers.Trainer, "train", train)
    return runs


@pytest.fixture
def lossnet_on_tiny(tiny_beir):
    """Run a LossNet filter built from `cfg` over one candidate per tiny-corpus document; check what every
    LossNet must do there (keep half, finite scores that differ) and return the filter and its verdicts."""
    import numpy as np

    from ragtune.data.beir import load_beir
    from ragtune.filters.base import Candidate
    from ragtune.filters.lossnet import LossNetFilter

    def run(cfg):
        corpus = load_beir(tiny_beir, splits=[]).corpus
        f = LossNetFilter(cfg, corpus, corpus_folder=tiny_beir)
        verdicts = f([Candidate(f"c{i}", d, corpus[d].text) for i, d in enumerate(corpus)])
        assert sum(v.kept for v in verdicts) == len(corpus) // 2
        scores = [v.values["lossnet_score"] for v in verdicts]
        assert all(np.isfinite(scores)) and len(set(scores)) > 1
        return f, verdicts

    return run


@pytest.fixture
def toy_beir_with_test(tmp_path):
    """60 toy documents, 20 train and 10 test queries with one positive each: the loop's integration tests."""
    from ragtune.data.beir import write_beir
    from tiny_lm import toy_corpus

    docs, pairs = toy_corpus(60)
    queries = {f"q{i}": q for i, (_, q) in enumerate(pairs)}
    train = {f"q{i}": {d: 1} for i, (d, _) in enumerate(pairs[:20])}
    test = {f"q{i}": {d: 1} for i, (d, _) in enumerate(pairs[20:30], start=20)}
    write_beir(tmp_path / "toy", docs, {q: queries[q] for q in [*train, *test]}, {"train": train, "test": test})
    return tmp_path / "toy"
