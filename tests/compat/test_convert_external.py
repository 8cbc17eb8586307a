"""`ragtune data convert` for the two other layouts retrieval data comes in: sentence-transformers / HF datasets
triplets (anchor, positive, negative columns; parquet or JSONL) and MTEB retrieval tasks (corpus/, queries/, qrels/
HF datasets folders)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rr_fixtures import write_jsonl
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.data.beir import load_beir
from ragtune.data.formats import read_records

runner = CliRunner()
TRIPLETS = [
    {"anchor": "what do enzymes do", "positive": "Enzymes catalyse reactions.", "negative": "Bonds fall."},
    {"anchor": "what do enzymes do", "positive": "Enzymes catalyse reactions.", "negative": "Violins have bows."},
    {"anchor": "how does sourdough rise", "positive": "Wild yeast ferments the dough.", "negative": "Comets orbit."},
]


@pytest.mark.parametrize("layout", ["parquet", "jsonl", "folder"])
def test_triplets_become_embedding_records(tmp_path, layout):
    if layout == "jsonl":
        data = write_jsonl(tmp_path / "train.jsonl", TRIPLETS)
    else:  # an HF datasets folder: data/train-00000-of-00001.parquet
        data = tmp_path / "hf" / "data" / "train-00000-of-00001.parquet"
        data.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(TRIPLETS), data)
        data = data if layout == "parquet" else tmp_path / "hf"
    res = runner.invoke(app, ["data", "convert", "st-triplets", f"data={data}", f"out={tmp_path / 'out'}"])
    assert res.exit_code == 0, res.output
    recs = [r.model_dump(exclude_none=True) for r in read_records(tmp_path / "out" / "embedding.jsonl", "embedding")]
    assert recs == [{"query": "what do enzymes do", "pos": ["Enzymes catalyse reactions."],
                     "neg": ["Bonds fall.", "Violins have bows."]},
                    {"query": "how does sourdough rise", "pos": ["Wild yeast ferments the dough."],
                     "neg": ["Comets orbit."]}]


def test_pairs_without_negative_and_bad_rows(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": "a query", "positive": "a passage"},
                                                  {"anchor": "q2", "text": "x"}])
    res = runner.invoke(app, ["data", "convert", "st-triplets", f"data={data}", f"out={tmp_path / 'out'}"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert 'pairs.jsonl:2: missing column "positive" (found: anchor, text)' in res.output


def test_mteb_folder_becomes_a_beir_folder(tmp_path):
    root = tmp_path / "scifact-mteb"
    for part, rows in (("corpus", [{"_id": "d1", "title": "Comets", "text": "A comet orbits the sun."},
                                   {"_id": "d2", "title": "", "text": "Wild yeast ferments dough."}]),
                       ("queries", [{"_id": "q1", "text": "what orbits the sun"},
                                    {"_id": "q2", "text": "how does bread rise"}])):
        (root / part).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / part / f"{part}-00000-of-00001.parquet")
    write_jsonl(root / "qrels" / "test.jsonl", [{"query-id": "q1", "corpus-id": "d1", "score": 1}])
    write_jsonl(root / "qrels" / "train.jsonl", [{"query-id": "q2", "corpus-id": "d2", "score": 2}])
    res = runner.invoke(app, ["data", "convert", "mteb", f"data={root}", f"out={tmp_path / 'beir'}"])
    assert res.exit_code == 0, res.output
    ds = load_beir(tmp_path / "beir", ["test", "train"])
    assert ds.corpus["d1"].title == "Comets" and ds.queries["q2"] == "how does bread rise"
    assert ds.qrels["test"] == {"q1": {"d1": 1}} and ds.qrels["train"] == {"q2": {"d2": 2}}
    (root / "qrels" / "test.jsonl").write_text(json.dumps({"query": "q1", "doc": "d1"}) + "\n")
    res = runner.invoke(app, ["data", "convert", "mteb", f"data={root}", f"out={tmp_path / 'beir2'}"])
    assert res.exit_code == 1 and "test.jsonl:1: qrels rows need query-id and corpus-id" in res.output
