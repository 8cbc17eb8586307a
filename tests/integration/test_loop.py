
"""The closed loop end to end with tiny random models: every stage of one round runs,
a rerun does no work, and a changed filter parameter reruns only its downstream stages."""

import json
import math

import pytest
import yaml
from scipy.stats import ttest_rel

from ragtune.config import load_config
from ragtune.data.beir import load_qrels
from ragtune.models import ADAPTER_STACK
from ragtune.pipeline.loop import RunConfig, overrides, run_loop


def _per_query(folder, metric: str) -> dict[str, float]:
    header, *rows = (line.split("\t") for line in (folder / "per_query.tsv").read_text().splitlines())
    return {r[0]: float(r[header.index(metric)]) for r in rows}


def _overrides(tiny_lm, tiny_bert, data, out):
    return [f"data={data}", f"out={out}", f"generator={tiny_lm}", f"encoder={tiny_bert}",
            "sft={max_steps: 2, per_device_train_batch_size: 4, cutoff_len: 128, lora_rank: 4, plot_loss: false}",
            "generate={sample_num: 8, query_per_document: 3, batch_size: 8, max_doc_tokens: 48, "
            "sampling: {max_new_tokens: 8}, progress: false}",
            "filters=[{name: bm25, k: 40}]",
            "retriever={max_steps: 2, per_device_train_batch_size: 8, plot_loss: false}",
            "mining={neg_start: 1, neg_end: 10, neg_per_query: 2}",
            "reward={max_steps: 2, per_device_train_batch_size: 4, lora_rank: 4, max_length: 128}",
            "ppo={steps: 2, batch_size: 4, mini_batch_size: 2, ppo_epochs: 1, max_new_tokens: 6, lora_r: 4}",
            "rl_prompts=4", "preferences={min_gap: 0.0, heldout_fraction: 0.25}"]


def test_one_round_end_to_end_then_cached_then_partial_rerun(tiny_lm, tiny_bert, toy_beir_with_test, tmp_path):
    out = tmp_path / "run"
    base = _overrides(tiny_lm, tiny_bert, toy_beir_with_test, out)
    report = run_loop(load_config(RunConfig, None, base))
    expected = ["data", "baselines", "round-0/sft", "round-0/generate", "round-0/filter", "round-0/retriever",
                "round-0/evaluate", "round-0/difficulty", "round-0/quality", "round-0/preferences",
                "round-0/reward_model", "round-0/ppo"]
    assert report["executed"] == expected
    r0 = report["rounds"][0]
    assert set(r0["evaluate"]["metrics"]) >= {"ndcg@10", "recall@100"}
    # the p-value is scipy's paired t-test over the per-query NDCG@10 the two evaluations wrote
    bm25, ours = (_per_query(out / f, "ndcg@10") for f in ("baselines/bm25", "round-0/evaluate"))
    assert set(bm25) == set(ours) and len({ours[q] - bm25[q] for q in bm25}) > 1
    expected = ttest_rel([bm25[q] for q in sorted(bm25)], [ours[q] for q in sorted(bm25)]).pvalue
    assert r0["evaluate"]["vs_bm25"]["ndcg@10"]["p_value"] == pytest.approx(expected, rel=1e-3, abs=1e-9)
    family = [row for b in ("vs_bm25", "vs_zero_shot") for row in r0["evaluate"][b].values()
              if not math.isnan(row["p_value"])]
    assert r0["evaluate"]["comparisons"] == len(family) >= 4
    smallest = min(family, key=lambda row: row["p_value"])  # Holm multiplies the smallest p by the family size
    assert smallest["p_holm"] == pytest.approx(min(1.0, len(family) * smallest["p_value"]))
    for name in ["report.md", "report.json", "manifest.json", "config.yaml", "plots/retrieval.png",
                 "plots/rl.png", "plots/stages.png", "plots/generator.png", "round-0/ppo/merged/config.json"]:
        assert (out / name).exists(), name
    # the reward model started from the SFT adapter and its accuracy comes with n, interval and p against chance
    rm = r0["reward_model"]
    stack = json.loads((out / "round-0/reward_model" / ADAPTER_STACK).read_text())["base_adapters"]
    assert rm["base_adapter"].endswith("round-0/sft/adapter")
    assert stack == [str((out / "round-0/sft/adapter").resolve())]
    assert 0 <= rm["heldout_ci95"][0] <= rm["heldout_accuracy"] <= rm["heldout_ci95"][1] <= 1
    md = (out / "report.md").read_text()
    assert f"n={rm['heldout_pairs']}" in md and "## Generator quality per round" in md
    # every generated query got a difficulty, and the report counts what provenance.jsonl holds
    prov = [json.loads(x) for x in (out / "round-0/difficulty/provenance.jsonl").read_text().splitlines()]
    scored = [r["difficulty"] for r in prov if isinstance(r.get("difficulty"), dict)]
    generated = (out / "round-0/generate/queries.jsonl").read_text().splitlines()
    assert r0["difficulty"]["queries"] == len(scored) == len(generated) > 0
    assert r0["difficulty"]["rank1_fraction"] == pytest.approx(sum(d["rank"] == 1 for d in scored) / len(scored))
    # the generator-quality record counts the queries the difficulty stage scored, kept share as the filter said
    assert r0["quality"]["queries"] == len(scored) and sum(r0["quality"]["difficulty_hist"]) == len(scored)
    assert r0["quality"]["kept_fraction"] == pytest.approx(r0["filter"]["kept"] / len(scored))
    # PPO changed the generator: the merged model the next round generates with is not the SFT model
    from ragtune.models import load_causal_lm

    sft = load_causal_lm(tiny_lm, out / "round-0/sft/adapter")[0].state_dict()
    ppo = load_causal_lm(out / "round-0/ppo/merged")[0].state_dict()
    assert sft.keys() == ppo.keys() and max(float((sft[k] - ppo[k]).abs().max()) for k in sft) > 1e-6

    again = run_loop(load_config(RunConfig, None, base))
    assert again["executed"] == []  # same config: no work at all

    changed = run_loop(load_config(RunConfig, None, [*base, "filters.0.k=20"]))
    assert changed["executed"] == ["round-0/filter", "round-0/retriever", "round-0/evaluate", "round-0/difficulty",
                                   "round-0/quality", "round-0/preferences", "round-0/reward_model", "round-0/ppo"]

    # a copied run directory resumes where its original stood: stage keys name outputs inside the run directory
    import shutil

    shutil.copytree(out, tmp_path / "copy")
    moved = run_loop(load_config(RunConfig, None, [*base, "filters.0.k=20", f"out={tmp_path / 'copy'}"]))
    assert moved["executed"] == []

    # WiSE-FT retrains the retriever and everything after it, and the report says which share it kept
    wise = run_loop(load_config(RunConfig, None, [*base, "filters.0.k=20", "retriever.wise_ft=[0.0,1.0]"]))
    assert wise["executed"][:2] == ["round-0/retriever", "round-0/evaluate"]
    kept = wise["rounds"][0]["retriever"]
    assert set(kept["wise_ft_dev"]) == {"0", "1"}
    assert f"WiSE-FT kept {kept['wise_ft']:g}" in (out / "report.md").read_text()


def test_a_budget_too_small_shrinks_the_run_and_a_rerun_reuses_it(tiny_lm, tiny_bert, toy_beir_with_test, tmp_path,
                                                                   monkeypatch):
    from ragtune.pipeline import budget

    out = tmp_path / "run"
    base = [*_overrides(tiny_lm, tiny_bert, toy_beir_with_test, out), "budget={minutes: 0.001, min_scale: 0.5}"]
    report = run_loop(load_config(RunConfig, None, base))
    b = report["budget"]
    assert b["scale"] == 0.5 and not b["fits"] and b["units"]["sft_step"] > 0
    assert b["changes"] == {"sft.max_steps": [2, 1], "generate.sample_num": [8, 4], "retriever.max_steps": [2, 1],
                            "reward.max_steps": [2, 1], "ppo.steps": [2, 1]}
    # the stages ran the shrunk workload, and the resolved config records it
    assert report["rounds"][0]["ppo"]["updates"] == 1
    assert len({json.loads(x)["doc_id"] for x in (out / "round-0/generate/provenance.jsonl").read_text().splitlines()}
               ) == 4
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sft"]["max_steps"] == 1 and saved["ppo"]["steps"] == 1
    # the cost model names the loop's real stages: all but the three that cost next to nothing
    assert set(report["stages"]) - set(b["expected"]) == {"data", "round-0/quality", "round-0/preferences"}
    assert set(b["expected"]) <= set(report["stages"])
    assert "## Time budget" in (out / "report.md").read_text()

    def measured_again(*a):
        raise AssertionError("a rerun on the same machine must reuse budget.json")

    monkeypatch.setattr(budget, "time_encoder", measured_again)
    again = run_loop(load_config(RunConfig, None, base))
    assert again["executed"] == [] and again["budget"]["scale"] == 0.5


def test_stage_overrides_are_validated_before_anything_runs(tiny_lm, tmp_path):
    from ragtune.config import ConfigError

    with pytest.raises(ConfigError, match='unknown key "sft.lora_rnk" in sft config; did you mean "sft.lora_rank"'):
        load_config(RunConfig, None, ["sft={lora_rnk: 4}"])
    with pytest.raises(ConfigError, match=r'key "retriever.num_train_epochs": Input should be greater than 0'):
        load_config(RunConfig, None, ["retriever={num_train_epochs: -1}"])
    with pytest.raises(ConfigError, match="guard.enabled .* needs retriever.kind: bi_encoder"):
        load_config(RunConfig, None, ["retriever={kind: colbert}", "guard={enabled: true}"])
    unlabeled = ["unlabeled=true", f"generator_adapter={tmp_path}", "guard={enabled: true}"]
    with pytest.raises(ConfigError, match="other_shots example pairs from sft_data's train pairs or the style"):
        load_config(RunConfig, None, unlabeled)
    for fix in ("guard.other_shots=0", "guard.decide_on=pseudo", f"sft_data={tmp_path}"):
        load_config(RunConfig, None, [*unlabeled, fix])


@pytest.mark.parametrize("algo", ["dpo", "grpo"])
def test_dpo_and_grpo_rounds(algo, tiny_lm, tiny_bert, toy_beir_with_test, tmp_path):
    out = tmp_path / "run"
    over = [*_overrides(tiny_lm, tiny_bert, toy_beir_with_test, out), f"rl={algo}",
            "dpo={max_steps: 2, per_device_train_batch_size: 2, lora_rank: 4, max_length: 128}",
            "grpo={max_steps: 2, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6, "
            "lora_rank: 4}", "rounds=2", "rl_eval_docs=4", "fresh_documents=true", "train_only_baseline=true"]
    report = run_loop(load_config(RunConfig, None, over))
    assert f"round-0/{algo}" in report["executed"] and f"round-1/{algo}" in report["executed"]
    assert "round-0/reward_model" not in report["executed"]
    assert report["rounds"][0][algo]["steps"] == 2 and len(report["rounds"]) == 2
    assert (out / f"round-0/{algo}/merged/config.json").exists()
    # round 1 generated with round 0's improved generator, for documents sampled with another seed
    prov = (out / "round-1/generate/provenance.jsonl").read_text()
    assert f"round-0/{algo}/merged" in prov
    docs = [{json.loads(x)["doc_id"] for x in (out / f"round-{k}/generate/provenance.jsonl").read_text().splitlines()}
            for k in (0, 1)]
    assert docs[0] != docs[1]
    # the RL stage's effect was measured on documents neither round-0 generation nor the RL prompts saw
    ev = report["rounds"][0]["rl_eval"]
    held = (out / "round-0/rl_eval/documents.txt").read_text().split()
    assert ev["documents"] == len(held) == 4 and not set(held) & docs[0]
    assert ev["rl_cpu_seconds"] > 0 and set(ev["reward"]) >= {"before", "after", "delta", "p_value"}
    # round 1 is compared with round 0's run and with the train-pairs-only retriever, on the same per-query scores
    r1 = report["rounds"][1]["evaluate"]
    prev, only, now = (_per_query(out / f, "ndcg@10") for f in ("round-0/evaluate", "train_only/evaluate",
                                                                  "round-1/evaluate"))
    for name, other in (("previous_round", prev), ("train_only", only)):
        q = sorted(now)
        a, b = [other[x] for x in q], [now[x] for x in q]
        expected = 1.0 if a == b else ttest_rel(a, b).pvalue
        assert r1[f"vs_{name}"]["ndcg@10"]["p_value"] == pytest.approx(expected, rel=1e-3, abs=1e-9), name
    assert report["train_only"]["retriever"]["pseudo_queries"] == 0


def test_collection_without_train_labels_learns_from_pseudo_queries(tiny_lm, tiny_bert, toy_beir_with_test,
                                                                     tmp_path):
    """BEIR nq-style: test qrels only. The generator learns from another folder's train pairs (sft_data) and the
    retriever from the kept pseudo queries alone, with no dev slice."""
    import shutil

    target = tmp_path / "test-only"
    shutil.copytree(toy_beir_with_test, target)
    (target / "qrels" / "train.tsv").unlink()
    out = tmp_path / "run"
    # the tiny LM writes gibberish that BM25 cannot match; a dense filter over the whole toy corpus keeps it
    over = [*_overrides(tiny_lm, tiny_bert, target, out), f"sft_data={toy_beir_with_test}", "rl=none",
            "filters=[{name: dense, k: 60}]"]
    report = run_loop(load_config(RunConfig, None, over))
    r0 = report["rounds"][0]
    assert r0["retriever"]["train_queries"] == 0
    assert r0["retriever"]["pseudo_queries"] == r0["filter"]["kept"] > 0
    assert r0["retriever"]["dev_queries"] == 0
    assert (out / "round-0/sft/data").exists() and "round-0/evaluate" in report["executed"]


def test_shipped_loop_configs_validate():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "configs").glob("loop-*.yaml"))
    assert configs, "no configs/loop-*.yaml shipped"
    for path in configs:
        raw = yaml.safe_load(path.read_text())
        cfg = load_config(RunConfig, path)  # every stage section validated against its stage's settings
        for section in ("sft", "generate", "retriever", "mining", "reward", "dpo", "grpo"):
            if section in raw:  # and kept as written: these keys build the stage's config and key its stage
                assert overrides(getattr(cfg, section)) == raw[section], (path, section)


def test_unlabeled_run_with_style_adaptation_and_guard(tiny_lm, tiny_bert, tiny_adapter, toy_beir_with_test,
                                                       tmp_path):
    """Unlabeled mode: the data's train pairs are dropped, the generator comes as a given adapter, three example
    queries steer it (prompt shots + a short SFT), and the guard holds out the queries of some documents, picks the
    retriever's checkpoint on half of them and decides against zero-shot on the other half."""
    out = tmp_path / "run"
    examples = tmp_path / "examples.txt"
    examples.write_text("what does the protein bind\nhow does the virus grow\nwhich gene controls memory\n")
    over = [*_overrides(tiny_lm, tiny_bert, toy_beir_with_test, out), "unlabeled=true",
            f"generator_adapter={tiny_adapter}", f"target_examples={examples}", "rl=none",
            "style={prompt_shots: 2, sft_steps: 2, sft_batch_size: 2}",
            "guard={enabled: true, documents: 4, decide_on: pseudo}",
            "filters=[{name: dense, k: 60}]", "generate.sample_num=12",
            "retriever={max_steps: 4, per_device_train_batch_size: 8, plot_loss: false, eval_steps: 2}"]
    report = run_loop(load_config(RunConfig, None, over))
    assert "round-0/sft" not in report["executed"] and "round-0/style" in report["executed"]
    assert not (out / "data/qrels/train.tsv").exists()  # no labeled pair exists downstream
    # the style pairs: each example with the document BM25 ranks first for it; the merged style model generated
    shots = [json.loads(x) for x in (out / "round-0/style/shots.jsonl").read_text().splitlines()]
    assert [s["query"] for s in shots] == examples.read_text().split("\n")[:3]
    gen_cfg = yaml.safe_load((out / "round-0/generate/config.yaml").read_text())
    assert gen_cfg["few_shot"] == 2 and gen_cfg["model_name_or_path"].endswith("round-0/style/merged")
    # the guard's documents: none of their queries reached the retriever; the dev slice was the select half
    held = set((out / "round-0/holdout/documents.txt").read_text().split())
    kept = {q: next(iter(d)) for q, d in load_qrels(out / "round-0/filter/qrels/train.tsv").items()}
    r0 = report["rounds"][0]
    assert r0["retriever"]["train_queries"] == 0
    assert r0["retriever"]["held_out_pseudo_queries"] == sum(d in held for d in kept.values()) > 0
    assert r0["retriever"]["pseudo_queries"] == sum(d not in held for d in kept.values())
    assert r0["retriever"]["dev_queries"] == report["holdout"]["select_queries"] > 0
    g = r0["guard"]
    assert g["queries"] == report["holdout"]["decide_queries"]
    assert g["ships"] == ("trained" if g["delta"] > 0 and g["p_one_sided"] < 0.05 else "zero_shot")
    assert report["shipped"]["ships"] == g["ships"]
    md = (out / "report.md").read_text()
    assert "**Shipped:" in md and "Style against the target examples" in md
    assert r0["quality"]["style"]["examples"] == 3
    # deciding on another generator's queries instead (the default: the base model, no adapter, the style pairs as
    # shots) reuses every stage up to the hold-out: only those queries and the decision run
    other = [o if not o.startswith("guard=") else "guard={enabled: true, documents: 4, other_queries: 1}"
             for o in over]
    again = run_loop(load_config(RunConfig, None, other))
    assert set(again["executed"]) == {"round-0/guard_queries", "round-0/guard"}
    qcfg = yaml.safe_load((out / "round-0/guard_queries/generate/config.yaml").read_text())
    assert qcfg["model_name_or_path"] == str(tiny_lm) and qcfg["adapter_name_or_path"] is None
    assert qcfg["few_shot"] == 2 and qcfg["few_shot_file"].endswith("round-0/style/shots.jsonl")
    decide_docs = {next(iter(d)) for d in load_qrels(out / "round-0/holdout/decide/qrels/train.tsv").values()}
    written = load_qrels(out / "round-0/guard_queries/generate/qrels/train.tsv")
    assert {next(iter(d)) for d in written.values()} <= decide_docs and written
    g2 = again["rounds"][0]["guard"]
    assert g2["decide_on"] == "other_generator" and g2["queries"] == len(written)
    assert "another generator wrote" in (out / "report.md").read_text()


def _colbert_loop(tiny_lm, tiny_bert, data, out, curriculum: str = "easy_to_hard") -> list[str]:
    """Two rounds with ColBERT as the loop's retriever and difficulty judge, a LossNet filter after BM25, a
    curriculum, and GRPO whose online reward ranks with the round's ColBERT."""
    over = [o for o in _overrides(tiny_lm, tiny_bert, data, out) if not o.startswith(("filters=", "retriever="))]
    return [*over, "rounds=2", "rl=grpo",
            "grpo={max_steps: 2, per_device_train_batch_size: 4, num_generations: 2, max_completion_length: 6, "
            "lora_rank: 4}",
            "filters=[{name: bm25, k: 40}, {name: lossnet, batch_size: 4, epochs: 1, keep_fraction: 0.75, "
            "max_seq_length: 48}]",
            f"retriever={{kind: colbert, dim: 16, query_length: 8, document_length: 32, max_steps: 2, "
            f"per_device_train_batch_size: 8, plot_loss: false, curriculum: {curriculum}}}"]


def test_colbert_loop_with_lossnet_and_curriculum_two_rounds(tiny_lm, tiny_bert, toy_beir_with_test, tmp_path):
    out = tmp_path / "run"
    base = _colbert_loop(tiny_lm, tiny_bert, toy_beir_with_test, out)
    report = run_loop(load_config(RunConfig, None, base))
    stages = ["generate", "filter", "retriever", "evaluate", "difficulty", "quality", "grpo"]
    assert report["executed"] == ["data", "baselines", "round-0/sft", *(f"round-0/{s}" for s in stages),
                                  "round-1/generate", "round-1/filter", "round-1/curriculum",
                                  *(f"round-1/{s}" for s in stages[2:])]
    r0, r1 = report["rounds"]
    # ColBERT is what the rounds trained, evaluated (p-values against both baselines) and judged difficulty with
    for r, k in ((r0, 0), (r1, 1)):
        model = out / f"round-{k}/retriever/model"
        assert '"MultiVectorEncoder"' in (model / "config_sentence_transformers.json").read_text()
        assert r["retriever"]["kind"] == r["evaluate"]["kind"] == r["difficulty"]["kind"] == "colbert"
        assert 0 <= r["evaluate"]["vs_bm25"]["ndcg@10"]["p_value"] <= 1
        assert r["difficulty"]["queries"] == len((out / f"round-{k}/generate/queries.jsonl").read_text().splitlines())
    # LossNet: after BM25, on ColBERT's loss; round 1 starts from round 0's ColBERT and learns from round 0's keeps
    assert list(r0["filter"]["yield"]) == ["bm25", "lossnet"]
    lossnet = yaml.safe_load((out / "round-1/filter/config.yaml").read_text())["filters"][1]
    assert lossnet["retriever"] == "colbert" and lossnet["colbert"]["dim"] == 16
    assert lossnet["model"] == str(out / "round-0/retriever/model")
    assert lossnet["accepted"] == [str(out / "round-0/filter")]
    prov = [json.loads(x) for x in (out / "round-1/filter/provenance.jsonl").read_text().splitlines()]
    assert any("lossnet_score" in p["filters"] for p in prov)
    # the curriculum: round 1's records in order of round 0's ColBERT difficulties, and the trainer kept the order
    assert r0["retriever"]["curriculum"] == "none" and r1["retriever"]["curriculum"] == "easy_to_hard"
    assert r1["retriever"]["example_order"] == "file"
    difficulty = {json.loads(x)["query_id"]: json.loads(x)["difficulty"]
                  for x in (out / "round-1/curriculum/curriculum.jsonl").read_text().splitlines()}
    mined = [json.loads(x)["query_id"] for x in
             (out / "round-1/retriever/records/mined_negatives.jsonl").read_text().splitlines()]
    records = [json.loads(x)["query"] for x in
               (out / "round-1/retriever/records/embedding.jsonl").read_text().splitlines()]
    mix = {json.loads(x)["text"]: json.loads(x)["_id"] for x in
           (out / "round-1/retriever/mix/queries.jsonl").read_text().splitlines()}
    assert set(difficulty) == set(mined) and len(records) == len(mined)
    ordered = [difficulty[mix[q]] for q in records]
    assert ordered == sorted(ordered) and len(set(ordered)) > 1
    assert "(ColBERT)" in (out / "report.md").read_text()
    # the online loop reward ranked with the round's ColBERT too
    assert yaml.safe_load((out / "round-0/grpo/config.yaml").read_text())["loop_reward"]["kind"] == "colbert"

    again = run_loop(load_config(RunConfig, None, base))
    assert again["executed"] == []  # same config: no work at all
    weighted = run_loop(load_config(RunConfig, None, _colbert_loop(tiny_lm, tiny_bert, toy_beir_with_test, out,
                                                                   "weighted")))
    # round 0 trains without a curriculum: only round 1's retriever and what depends on it rerun
    assert weighted["executed"] == ["round-1/retriever", "round-1/evaluate", "round-1/difficulty", "round-1/quality",
                                    "round-1/grpo"]
    rows = [json.loads(x) for x in (out / "round-1/retriever/records/embedding.jsonl").read_text().splitlines()]
    assert all(r["weight"] > 0 for r in rows) and weighted["rounds"][1]["retriever"]["loss"] == "mnrl (weighted)"


def test_a_teacher_grades_the_pseudo_queries_and_its_files_key_the_stage(tiny_lm, tiny_bert, toy_beir_with_test,
                                                                          tmp_path):
    from sentence_transformers import CrossEncoder

    from ragtune.config import ConfigError
    from ragtune.retrieval.rerank import FUSION_FILE

    teacher = tmp_path / "teacher"
    CrossEncoder(str(tiny_bert), num_labels=1, max_length=64, device="cpu").save(str(teacher))
    # the tiny generator's queries are noise that BM25 rarely matches: the dense miner ranks every document, the
    # teacher grades all 60, and at fusion weight 0 it does not reorder the miner's ranks, so the candidates below
    # the positive stay (whatever rank the noise gives it)
    (teacher / FUSION_FILE).write_text(json.dumps({"weight": 0.0, "k": 60}))
    out = tmp_path / "run"
    base = [*_overrides(tiny_lm, tiny_bert, toy_beir_with_test, out), "rl=none", "train_only_baseline=true",
            "filters=[]", "mining.miner=dense", f"mining.dense.model={tiny_bert}", f"retriever.teacher={teacher}",
            "retriever.teacher_depth=60", "retriever.teacher_negatives=2"]
    ret = run_loop(load_config(RunConfig, None, base))["rounds"][0]["retriever"]
    stage = out / "round-0" / "retriever"
    graded = [json.loads(x) for x in (stage / "graded.jsonl").read_text().splitlines()]
    labeled = [json.loads(x) for x in (stage / "labeled.jsonl").read_text().splitlines()]
    # the train pairs stay contrastive (no grades), every kept pseudo query left with a negative is graded
    assert ret["loss"] == "mnrl+margin_mse" and ret["contrastive_rows"] == len(labeled) == 20
    assert ret["graded_queries"] == len(graded) >= 12 and not any("scores" in r for r in labeled)
    assert all(len(r["scores"]) == len(r["pos"]) + len(r["neg"]) and len(r["neg"]) <= 2 for r in graded)
    # the fused grades are RRF values, brought to the student's scale by the fitted teacher_scale
    assert all(0 < s <= 2 / 61 for r in graded for s in r["scores"]) and ret["teacher_scale"] > 1
    saved = yaml.safe_load((stage / "model" / "config.yaml").read_text())
    assert saved["teacher_scale"] == pytest.approx(ret["teacher_scale"]) and saved["loss"] == "margin_mse"
    assert run_loop(load_config(RunConfig, None, base))["executed"] == []
    # the teacher's files key the stage: another fusion weight regrades and retrains; the train-pairs-only
    # baseline, which no teacher reaches, stays cached
    (teacher / FUSION_FILE).write_text(json.dumps({"weight": 0.2, "k": 60}))
    again = run_loop(load_config(RunConfig, None, base))["executed"]
    assert again[:2] == ["round-0/retriever", "round-0/evaluate"] and "train_only" not in again
    with pytest.raises(ConfigError, match="do not combine"):
        load_config(RunConfig, None, [*base, "retriever.curriculum=easy_to_hard"])
    with pytest.raises(ConfigError, match="is not a folder"):  # before the generator trains, not after
        run_loop(load_config(RunConfig, None, [*base, f"retriever.teacher={tmp_path / 'nowhere'}",
                                               f"out={tmp_path / 'bad'}"]))
    assert not (tmp_path / "bad" / "round-0").exists()
