"""`ragtune eval rag`: the refusal threshold calibrated on dev questions (never evaluated ones), its curve plotted,
and retrieval through a knowledge base that `ragtune rag ingest` built from the converter's eval corpus."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from qa_kit import squad_file
from rag_kit import shared_parts
from ragtune.cli import app

runner = CliRunner()

def rows(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]

def write(path, items) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return str(path)

def item(i: int, answerable: bool, question: str | None = None) -> dict:
    context = f"Town{i} lies on River{i}; its mayor is Mayor{i}." if answerable else f"Apples{i} are red fruit."
    return {"id": f"x{i}", "question": question or f"Who is the mayor of Town{i}?", "context": context,
            "answers": [f"Mayor{i}"] if answerable else [], "answerable": answerable,
            "source": "answerable" if answerable else "mismatched", "article": f"T{i}",
            "context_article": f"T{i}" if answerable else f"A{i}", "language": "en"}

def test_calibrated_on_dev_with_curve_and_disjoint_questions(tmp_path, tiny_bert, tiny_lm, tmp_path_factory):
    _, model = shared_parts(tmp_path_factory, tiny_bert, tiny_lm)
    evaluated = write(tmp_path / "e_eval.meta.jsonl", [item(i, i % 2 == 0) for i in range(4)])
    dev = [item(i, i % 2 == 0) for i in range(10, 22)]
    write(tmp_path / "e_dev.meta.jsonl", dev)
    write(tmp_path / "e_train.meta.jsonl", dev[:2])  # two dev questions were trained on: they must be dropped
    base = ["eval", "rag", evaluated, "--model", str(model), "--set", "answerer.threads=1",
            "--set", "answerer.max_new_tokens=6", "--set", f"refusal.data={tmp_path / 'e_dev.meta.jsonl'}"]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "o"), "--set", "refusal.target=recall",
                              "--set", f"refusal.exclude=[{tmp_path / 'e_train.meta.jsonl'}]"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    cal = report["calibration"]
    assert cal["excluded"] == 2 and cal["questions"] == 10 and cal["target"] == "recall"
    # the threshold is the one the dev curve gives for the target, and the curve written is that curve
    curve = json.loads((tmp_path / "o" / "refusal_curve.json").read_text())["curves"]
    dev_curve = [(p["threshold"], p["over_refusal"], p["under_refusal"]) for p in curve["dev"]]
    recall_pick = min(dev_curve, key=lambda p: (max(0.0, p[2] - 0.1), p[1], p[2]))
    assert report["refusal_margin"] == cal["refusal_margin"]
    assert [p for p in dev_curve if p[0] == cal["refusal_margin"]][0][1:] == recall_pick[1:]
    assert (cal["dev_over_refusal"], cal["dev_under_refusal"]) == recall_pick[1:]
    # the dev questions' rows, minus the two excluded, and their refusals give the dev rates reported
    dev_rows = rows(tmp_path / "o" / "predictions-dev.jsonl")
    assert sorted(r["id"] for r in dev_rows) == sorted(d["id"] for d in dev[2:])
    unans = [r for r in dev_rows if not r["answerable"]]
    assert cal["dev_under_refusal"] == sum(not r["refused"] for r in unans) / len(unans)
    assert set(curve) == {"dev", "eval (gold)"}
    assert (tmp_path / "o" / "refusal_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the evaluated rows obey the chosen threshold: refused = refused in words, or margin above it
    preds = rows(tmp_path / "o" / "predictions-gold.jsonl")
    t = report["refusal_margin"]
    assert all(p["refused"] == (p["why"] == "text" or p["margin"] > t) for p in preds if abs(p["margin"] - t) > 1e-3)
    m = report["results"]["gold"]
    assert m["refused_by_text"] == sum(p["why"] == "text" for p in preds) / 4
    assert m["refused_by_margin"] == sum(p["why"] == "likelihood" for p in preds) / 4

    # a calibration set that shares a question with the evaluated one is refused
    write(tmp_path / "bad_dev.meta.jsonl", [*dev, item(99, True, question="Who is the mayor of Town0?")])
    res = runner.invoke(app, [*base[:-1], f"refusal.data={tmp_path / 'bad_dev.meta.jsonl'}",
                              "--out", str(tmp_path / "o2")])
    assert res.exit_code == 1 and "also evaluated" in res.stderr

def test_retrieval_through_an_ingested_eval_corpus(tmp_path, tiny_bert, tiny_lm, tmp_path_factory):

    _, model = shared_parts(tmp_path_factory, tiny_bert, tiny_lm)
    src = squad_file(tmp_path / "sq.json", articles=4)
    assert runner.invoke(app, ["data", "convert", "squad-sft", f"data={src}", f"out={tmp_path / 'qa'}",
                               "holdout_articles=2"]).exit_code == 0
    corpus = tmp_path / "qa" / "sq_eval_corpus"
    evals = rows(tmp_path / "qa" / "sq_eval.meta.jsonl")
    assert sorted(json.loads(x)["text"] for f in corpus.glob("*.jsonl") for x in f.read_text().splitlines()) == \
        sorted({r["context"] for r in evals})
    res = runner.invoke(app, ["rag", "ingest", str(corpus), "-o", str(tmp_path / "kb"),
                              "--set", f"embedder.model={tiny_bert}"])
    assert res.exit_code == 0, res.output
    common = ["eval", "rag", str(tmp_path / "qa" / "sq_eval.meta.jsonl"), "--contexts", "retrieved", "--model",
              str(model), "--limit", "8", "--set", "answerer.threads=1", "--set", "answerer.max_new_tokens=4"]
    built = runner.invoke(app, [*common, "--out", str(tmp_path / "built"),
                                "--set", f"retrieve.embedder.model={tiny_bert}"])
    given = runner.invoke(app, [*common, "--out", str(tmp_path / "given"), "--set", f"retrieve.kb={tmp_path / 'kb'}"])
    assert built.exit_code == 0 and given.exit_code == 0, built.output + given.output
    a = rows(tmp_path / "built" / "predictions-retrieved.jsonl")
    b = rows(tmp_path / "given" / "predictions-retrieved.jsonl")
    assert [r["gold_retrieved"] for r in a if r["answerable"]] == [r["gold_retrieved"] for r in b if r["answerable"]]
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    report = json.loads((tmp_path / "given" / "report.json").read_text())
    assert report["retrieval"]["kb"] == str(tmp_path / "kb") and report["retrieval"]["encoder"] == str(tiny_bert)

    # a knowledge base built from other passages is refused, naming a missing passage
    other = write(tmp_path / "other_eval.meta.jsonl", [{**evals[0], "context": "A passage no KB holds."}, *evals[1:]])
    res = runner.invoke(app, ["eval", "rag", other, *common[3:], "--out", str(tmp_path / "x"),
                              "--set", f"retrieve.kb={tmp_path / 'kb'}"])
    assert res.exit_code == 1 and "not in this knowledge base" in res.stderr
