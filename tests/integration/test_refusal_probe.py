"""`ragtune train refusal-probe` and `answerer.refusal_probe`: a linear probe on the answerer's hidden state, chosen
on dev, saved without pickle, tied to the answerer it was fitted on, and the signal `eval rag` thresholds."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def item(i: int, answerable: bool) -> dict:
    # answerable contexts talk about the asked town, unanswerable ones about fruit: visible in the hidden state
    context = f"Town{i} lies on a river; its mayor is Mayor{i}." if answerable else "Apples are red and sweet fruit."
    return {"id": f"x{i}", "question": f"Who is the mayor of Town{i}?", "context": context,
            "answers": [f"Mayor{i}"] if answerable else [], "answerable": answerable,
            "source": "answerable" if answerable else "mismatched", "article": f"T{i}", "language": "en"}


def write(path, items) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return str(path)


def rows(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_fit_evaluate_and_refuse_a_foreign_answerer(tmp_path, tiny_lm, tiny_adapter):
    import numpy as np

    from ragtune.rag.answer import Answerer
    from ragtune.rag.refusal_probe import RefusalProbe

    train = write(tmp_path / "p_train.meta.jsonl", [item(i, i % 2 == 0) for i in range(40)])
    dev = write(tmp_path / "p_dev.meta.jsonl", [item(i, i % 2 == 0) for i in range(100, 116)])
    evaluated = write(tmp_path / "p_eval.meta.jsonl", [item(i, i % 2 == 0) for i in range(200, 208)])
    common = [f"answerer.model={tiny_lm}", "answerer.threads=1", "answerer.max_new_tokens=4"]
    res = runner.invoke(app, ["train", "refusal-probe", f"data={train}", f"dev={dev}", f"out={tmp_path / 'probe'}",
                              "layer_step=1", "combine=probe+margin", *common])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert info["combine"] == "probe+margin" and info["auc_dev_signals"]["probe"] > 0.9, info  # easy to tell apart
    assert info["layer"] == max(info["tried"], key=lambda t: t["auc_dev"])["layer"]
    assert info["answerer"] == {"model": str(tiny_lm), "adapter_sha256": None}

    res = runner.invoke(app, ["eval", "rag", evaluated, "--out", str(tmp_path / "o"), "--set",
                              f"answerer.refusal_probe={tmp_path / 'probe'}", "--set", f"refusal.data={dev}",
                              *[x for c in common for x in ("--set", c)]])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["answerer"]["refusal_probe"] == str(tmp_path / "probe")
    preds, t = rows(tmp_path / "o" / "predictions-gold.jsonl"), report["refusal_margin"]
    # the threshold applies to the probe's signal (probe + margin, each standardised on dev), not to the margin
    (pm, ps), (mm, ms) = info["standardise"]["probe"], info["standardise"]["margin"]
    for p in preds:
        assert abs(p["signal"] - ((p["probe_logit"] - pm) / ps + (p["margin"] - mm) / ms)) < 1e-3
        if abs(p["signal"] - t) > 1e-3:
            assert p["refused"] == (p["why"] == "text" or p["signal"] > t)
    # decoding's batched, padded forward pass reads the same hidden state as the fitting pass did
    answerer = Answerer.load(tiny_lm, refusal_probe=tmp_path / "probe", batch_size=3)
    items = [item(i, i % 2 == 0) for i in range(200, 208)]
    prompts = [answerer.prompt(it["question"], [it["context"]], "en") for it in items]
    probe = RefusalProbe.load(tmp_path / "probe", tiny_lm, None)
    alone = answerer.prompt_states(prompts, [probe.layer], progress=False)[:, 0]
    want = ((alone - probe.mean.numpy()) / probe.scale.numpy()) @ probe.coef.numpy() + probe.intercept
    got = np.array([p["probe_logit"] for p in sorted(preds, key=lambda p: p["id"])])
    assert np.allclose(got, want[np.argsort([it["id"] for it in items])], atol=1e-3)

    # a probe reads one answerer's hidden states: beside another adapter it is an error, not a silent signal
    res = runner.invoke(app, ["eval", "rag", evaluated, "--out", str(tmp_path / "o2"), "--set",
                              f"answerer.refusal_probe={tmp_path / 'probe'}", "--set",
                              f"answerer.adapter={tiny_adapter}", *[x for c in common for x in ("--set", c)]])
    assert res.exit_code == 1 and "fitted on the hidden states" in res.stderr, res.output
    # a hand-edited probe.json with a combination ragtune does not know is a clear error, not a KeyError later
    bad = tmp_path / "bad-probe"
    bad.mkdir()
    (bad / "probe.safetensors").write_bytes((tmp_path / "probe" / "probe.safetensors").read_bytes())
    (bad / "probe.json").write_text(json.dumps({**info, "combine": "probe+vibes"}))
    res = runner.invoke(app, ["eval", "rag", evaluated, "--out", str(tmp_path / "o4"), "--set",
                              f"answerer.refusal_probe={bad}", *[x for c in common for x in ("--set", c)]])
    assert res.exit_code == 1 and "'probe+vibes'" in res.stderr, res.output
    # the seventeenth session's probe.json kept (probe mean, sd, margin mean, sd) as one list: it still loads
    (bad / "probe.json").write_text(json.dumps({**info, "standardise": [pm, ps, mm, ms]}))
    listed, current = RefusalProbe.load(bad, tiny_lm, None), RefusalProbe.load(tmp_path / "probe", tiny_lm, None)
    assert listed.standardise == current.standardise and listed.score(0.3, -2.0) == current.score(0.3, -2.0)
    # dev questions asked in training are refused before any model loads
    write(tmp_path / "bad_dev.meta.jsonl", [item(i, i % 2 == 0) for i in range(30, 46)])
    res = runner.invoke(app, ["train", "refusal-probe", f"data={train}", f"dev={tmp_path / 'bad_dev.meta.jsonl'}",
                              f"out={tmp_path / 'p2'}", *common])
    assert res.exit_code == 1 and "also asked" in res.stderr and not (tmp_path / "p2").exists(), res.output


def test_a_probe_of_the_base_model_beside_the_adapter(tmp_path, tiny_lm, tiny_adapter):
    import numpy as np

    from ragtune.rag.answer import Answerer
    from ragtune.rag.refusal_probe import RefusalProbe

    train = write(tmp_path / "p_train.meta.jsonl", [item(i, i % 2 == 0) for i in range(40)])
    dev = write(tmp_path / "p_dev.meta.jsonl", [item(i, i % 2 == 0) for i in range(100, 116)])
    common = [f"answerer.model={tiny_lm}", f"answerer.adapter={tiny_adapter}", "answerer.threads=1",
              "answerer.max_new_tokens=4"]
    res = runner.invoke(app, ["train", "refusal-probe", f"data={train}", f"dev={dev}", f"out={tmp_path / 'probe'}",
                              "reads=base", "combine=probe", "layer_step=1", *common])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert info["reads"] == "base" and info["answerer"]["adapter_sha256"] is None
    # the answerer keeps its adapter for answering and reads the probe's state with the adapter switched off
    items = [item(i, i % 2 == 0) for i in range(200, 206)]
    with_probe = Answerer.load(tiny_lm, tiny_adapter, refusal_probe=tmp_path / "probe", max_new_tokens=4)
    merged = Answerer.load(tiny_lm, tiny_adapter, max_new_tokens=4)
    base = Answerer.load(tiny_lm)
    prompts = [with_probe.prompt(it["question"], [it["context"]], "en") for it in items]
    gens = with_probe.generate(prompts)
    probe = RefusalProbe.load(tmp_path / "probe", tiny_lm, tiny_adapter)
    states = base.prompt_states(prompts, [probe.layer], progress=False)[:, 0]
    want = ((states - probe.mean.numpy()) / probe.scale.numpy()) @ probe.coef.numpy() + probe.intercept
    assert np.allclose([g.probe_logit for g in gens], want, atol=1e-3)
    adapted = merged.prompt_states(prompts, [probe.layer], progress=False)[:, 0]
    assert not np.allclose(states, adapted, atol=1e-3)  # the adapter does change that state
    assert [g.text for g in gens] == [g.text for g in merged.generate(prompts)]  # and still writes the answers


def test_a_verifier_summed_with_the_probe(tmp_path, tiny_lm, tiny_bert):
    from ragtune.rag.refusal_verifier import verifier_fingerprint
    from ragtune.retrieval.rerank import load_reranker

    train = write(tmp_path / "p_train.meta.jsonl", [item(i, i % 2 == 0) for i in range(40)])
    dev = write(tmp_path / "p_dev.meta.jsonl", [item(i, i % 2 == 0) for i in range(100, 116)])
    evaluated = write(tmp_path / "p_eval.meta.jsonl", [item(i, i % 2 == 0) for i in range(200, 208)])
    res = runner.invoke(app, ["train", "refusal-verifier", f"data={train}", f"out={tmp_path / 'v'}",
                              f"model={tiny_bert}", "epochs=4", "batch_size=8", "max_length=32", "learning_rate=1e-3"])
    assert res.exit_code == 0, res.output
    points = rows(tmp_path / "v" / "train_points.jsonl")
    assert [p["label"] for p in points] == [float(i % 2 == 0) for i in range(40)]
    common = [f"answerer.model={tiny_lm}", "answerer.threads=1", "answerer.max_new_tokens=4"]
    # a combination with a verifier needs one, and says so before any model loads
    res = runner.invoke(app, ["train", "refusal-probe", f"data={train}", f"dev={dev}", f"out={tmp_path / 'p0'}",
                              "combine=probe+verifier", *common])
    assert res.exit_code == 1 and "needs a verifier" in res.stderr and not (tmp_path / "p0").exists(), res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["train", "refusal-probe", f"data={train}", f"dev={dev}", f"out={tmp_path / 'p0'}",
                              f"verifier={tmp_path / 'empty'}", *common])
    assert res.exit_code == 1 and 'key "verifier"' in res.stderr and "no model weights" in res.stderr, res.output
    res = runner.invoke(app, ["train", "refusal-probe", f"data={train}", f"dev={dev}", f"out={tmp_path / 'probe'}",
                              "layer_step=1", "combine=probe+verifier+margin", f"verifier={tmp_path / 'v'}",
                              *common])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert info["verifier"] == verifier_fingerprint(tmp_path / "v")
    assert set(info["auc_dev_signals"]) == {"probe", "verifier", "margin"}

    res = runner.invoke(app, ["eval", "rag", evaluated, "--out", str(tmp_path / "o"), "--set",
                              f"answerer.refusal_probe={tmp_path / 'probe'}", "--set",
                              f"answerer.refusal_verifier={tmp_path / 'v'}", "--set", f"refusal.data={dev}",
                              *[x for c in common for x in ("--set", c)]])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    preds, t = rows(tmp_path / "o" / "predictions-gold.jsonl"), report["refusal_margin"]
    # the verifier's score is minus its logit for (question, context); the signal sums the three standardised
    ce = load_reranker(tmp_path / "v" / "model", "cpu")
    by_id = {it["id"]: it for it in rows(tmp_path / "p_eval.meta.jsonl")}
    logits = ce.compute_score([(by_id[p["id"]]["question"], by_id[p["id"]]["context"]) for p in preds])
    stand = info["standardise"]
    for p, logit in zip(preds, logits, strict=True):
        assert abs(p["verifier_score"] + logit) < 1e-3
        want = sum((p[key] - stand[name][0]) / stand[name][1]
                   for name, key in (("probe", "probe_logit"), ("verifier", "verifier_score"), ("margin", "margin")))
        assert abs(p["signal"] - want) < 1e-4
        if abs(p["signal"] - t) > 1e-3:
            assert p["refused"] == (p["why"] == "text" or p["signal"] > t)

    # without its verifier, or beside another one, the probe is an error
    for extra, says in (([], "pass the verifier it was fitted with"),
                        ([f"answerer.refusal_verifier={tmp_path / 'other'}"], "is not the verifier")):
        if extra:
            res = runner.invoke(app, ["train", "refusal-verifier", f"data={train}", f"out={tmp_path / 'other'}",
                                      f"model={tiny_bert}", "epochs=1", "batch_size=8", "max_length=32", "seed=7"])
            assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["eval", "rag", evaluated, "--out", str(tmp_path / "o2"), "--set",
                                  f"answerer.refusal_probe={tmp_path / 'probe'}",
                                  *[x for c in common + extra for x in ("--set", c)]])
        assert res.exit_code == 1 and says in res.stderr, res.output
    # a verifier nothing reads is an error too, not a silent no-op
    res = runner.invoke(app, ["eval", "rag", evaluated, "--out", str(tmp_path / "o3"), "--set",
                              f"answerer.refusal_verifier={tmp_path / 'v'}",
                              *[x for c in common for x in ("--set", c)]])
    assert res.exit_code == 1 and "only a refusal probe that sums a verifier" in res.stderr, res.output


def test_the_verifier_scores_the_best_passage():
    from ragtune.rag.refusal_verifier import RefusalVerifier

    class Lengths:  # a reranker whose logit is the passage's length
        def compute_score(self, pairs, batch_size=32):
            return [float(len(c)) for _, c in pairs]

    scores = RefusalVerifier(Lengths()).scores(["q1", "q2", "q3"], [["ab", "abcd"], ["abc"], []])
    assert scores == [-4.0, -3.0, -0.0]
