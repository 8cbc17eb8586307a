"""`ragtune eval rag` end to end on a small converter meta file: gold and retrieved contexts, hand-checkable."""

from __future__ import annotations

import json

from rag_kit import shared_parts


def write_meta(path):
    rows = [
        {"id": "a1", "question": "What does the heart pump?", "context": "The heart pumps blood through the body.",
         "answers": ["blood"], "answerable": True, "source": "answerable", "article": "heart", "language": "en"},
        {"id": "a2", "question": "What does the liver store?", "context": "The liver stores glycogen.",
         "answers": ["glycogen"], "answerable": True, "source": "answerable", "article": "liver", "language": "en"},
        {"id": "u1", "question": "Who won the chess match?", "context": "The skin is the largest organ.",
         "answers": [], "answerable": False, "source": "mismatched", "article": "chess", "context_article": "skin",
         "language": "en"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_eval_rag_cli_gold_and_retrieved(tmp_path, tiny_bert, tiny_lm, tmp_path_factory):
    from typer.testing import CliRunner

    from ragtune.cli import app

    _, model = shared_parts(tmp_path_factory, tiny_bert, tiny_lm)
    meta = write_meta(tmp_path / "toy_eval.meta.jsonl")
    res = CliRunner().invoke(app, ["eval", "rag", str(meta), "--contexts", "both", "--model", str(model),
                                   "--out", str(tmp_path / "out"), "--json", str(tmp_path / "r.json"),
                                   "--set", f"retrieve.embedder.model={tiny_bert}", "--set", "answerer.threads=1",
                                   "--set", "answerer.max_new_tokens=8"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["num_answerable"] == 2 and report["num_unanswerable"] == 1
    rows = [json.loads(x) for x in (tmp_path / "out" / "predictions-gold.jsonl").read_text().splitlines()]
    for mode in ("gold", "retrieved"):
        m = report["results"][mode]
        preds = [json.loads(x) for x in (tmp_path / "out" / f"predictions-{mode}.jsonl").read_text().splitlines()]
        ans = [p for p in preds if p["answerable"]]
        un = [p for p in preds if not p["answerable"]]
        # the metrics are what the per-question rows say
        assert m["em"] == sum(p["em"] for p in ans) / 2
        assert m["over_refusal"] == sum(p["refused"] for p in ans) / 2
        assert m["under_refusal"] == sum(not p["refused"] for p in un) / 1
    r = report["results"]["retrieved"]
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions-retrieved.jsonl").read_text().splitlines()]
    found = [p for p in preds if p.get("gold_retrieved")]
    assert r["retrieval_hit"] == len(found) / 2
    assert r["over_refusal_gold_retrieved"] == sum(p["refused"] for p in found) / max(1, len(found))
    assert rows[0]["id"] == "a1"
    assert "eval rag toy_eval" in res.stdout


def test_eval_rag_reports_bad_meta_with_line(tmp_path):
    from typer.testing import CliRunner

    from ragtune.cli import app

    bad = tmp_path / "bad.meta.jsonl"
    bad.write_text('{"question": "q", "context": "c", "answers": ["a"], "answerable": true}\n{"question": "x"}\n')
    res = CliRunner().invoke(app, ["eval", "rag", str(bad)])
    assert res.exit_code == 1
    assert "bad.meta.jsonl:2" in res.stderr and "context" in res.stderr
