import json
from pathlib import Path

import pytest

from ragtune.pipeline.rundir import RunDir


def _pipeline(root, data_file, filter_k=10, crash_at=None):
    with RunDir(root) as rd:
        return _stages(rd, data_file, filter_k, crash_at)


def _stages(rd, data_file, filter_k, crash_at):
    calls = []

    def make(name, value):
        def fn(out):
            calls.append(name)
            if name == crash_at:
                (out / "partial.txt").write_text("half")
                raise RuntimeError("crash")
            (out / "result.txt").write_text(str(value))
            return {"value": value}
        return fn

    a = rd.stage("round-0/generate", {"n": 3}, make("generate", 3), inputs=[data_file])
    b = rd.stage("round-0/filter", {"k": filter_k}, make("filter", filter_k), upstream=[a.key])
    c = rd.stage("round-0/train", {"epochs": 1}, make("train", 1), upstream=[b.key])
    rd.stage("round-0/other", {"x": 1}, make("other", 1), upstream=[a.key])
    return calls, c


def test_second_run_does_no_work_and_a_change_reruns_only_downstream(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("corpus")
    calls, _ = _pipeline(tmp_path / "run", data)
    assert calls == ["generate", "filter", "train", "other"]
    calls, c = _pipeline(tmp_path / "run", data)
    assert calls == [] and c.metrics == {"value": 1} and not c.ran
    calls, _ = _pipeline(tmp_path / "run", data, filter_k=20)
    assert calls == ["filter", "train"]  # "other" reads only generate: untouched
    data.write_text("corpus v2")  # an input file's content changed: everything reruns
    calls, _ = _pipeline(tmp_path / "run", data, filter_k=20)
    assert calls == ["generate", "filter", "train", "other"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["round-0/filter"]["status"] == "done"
    assert manifest["stages"]["round-0/filter"]["outputs"] == ["result.txt"]


def test_paths_a_stage_reports_name_its_final_folder_not_the_working_one(tmp_path):
    def stage(out):
        (out / "plot.png").write_text("png")
        return {"plot": str(out / "plot.png"), "nested": [{"dir": str(out)}], "other": str(tmp_path / "elsewhere")}

    with RunDir(tmp_path / "run") as rd:
        res = rd.stage("round-0/rm", {"k": 1}, stage)
    final = tmp_path / "run" / "round-0" / "rm"
    assert res.metrics == {"plot": str(final / "plot.png"), "nested": [{"dir": str(final)}],
                           "other": str(tmp_path / "elsewhere")}
    saved = json.loads((tmp_path / "run" / "manifest.json").read_text())["stages"]["round-0/rm"]["metrics"]
    assert saved == res.metrics and (final / "plot.png").is_file()


def test_crash_leaves_no_trusted_output_and_rerun_resumes_there(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("corpus")
    with pytest.raises(RuntimeError):
        _pipeline(tmp_path / "run", data, crash_at="train")
    assert not (tmp_path / "run" / "round-0" / "train").exists()  # the half-written folder was never published
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["round-0/train"]["status"] == "running"
    calls, c = _pipeline(tmp_path / "run", data)
    assert calls == ["train", "other"] and c.ran
    assert (tmp_path / "run" / "round-0" / "train" / "result.txt").read_text() == "1"
    # the restarted stage (same key) got its partial output back to resume from; nothing else was touched
    assert (tmp_path / "run" / "round-0" / "train" / "partial.txt").read_text() == "half"


def test_a_stage_restarted_with_other_inputs_starts_from_an_empty_folder(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("corpus")
    with pytest.raises(RuntimeError):
        _pipeline(tmp_path / "run", data, crash_at="train")
    _pipeline(tmp_path / "run", data, filter_k=20)  # train's key changed: its partial output is not its own
    assert not (tmp_path / "run" / "round-0" / "train" / "partial.txt").exists()


HOLD = "import sys, time; from ragtune.pipeline.rundir import RunDir; rd = RunDir(sys.argv[1]); print('held', " \
       "flush=True); time.sleep(120)"


def test_a_second_run_on_the_same_directory_is_refused_naming_the_holder_then_a_dead_holder_is_taken_over(tmp_path):
    import os
    import subprocess
    import sys

    from typer.testing import CliRunner

    from ragtune.cli import app

    root = tmp_path / "run"
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.jsonl").write_text('{"_id": "d1", "text": "a doc"}\n')
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = CliRunner().invoke(app, ["run", f"data={data}", f"out={root}"])
        assert res.exit_code == 1, res.output
        msg = " ".join(res.output.split())
        assert f"run directory in use by another `ragtune run` (pid {holder.pid})" in msg and "Traceback" not in msg
        assert not (root / "config.yaml").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()
    assert (root / ".lock").read_text().strip() == str(holder.pid)  # the dead process's pid is still written
    with RunDir(root):  # ... and its lock is taken over
        assert (root / ".lock").read_text().strip() == str(os.getpid())


# ---- every input of every stage of `ragtune run`: generated from the stages run_loop declares ----
#
# The loop's stage functions are replaced by recorders. A stage's "inputs" are the arguments its function was
# called with (configs, split names, seeds; a path outside the run directory by its content, a path inside it as a
# name). Changing one run-config field must rerun exactly the stages whose inputs changed and the stages below
# them, and nothing else; a new stage is covered without touching this table, and a new config field must be
# added to it.

NOT_INPUTS = {"name": "a label", "out": "the run directory itself",
              "budget": "acts only by rewriting the step and size knobs, each perturbed below (test_budget.py)"}
PERTURB: dict[str, list[str]] = {
    "data": ["data={other}", "<edit corpus>"],
    "subset": ["subset={corpus_docs: 5}", "subset={seed: 1}"],
    "sft_data": ["sft_data={other}"],
    "rounds": ["rounds=3"],
    "test_split": ["test_split=dev"],
    "metrics": ["metrics=[ndcg@10]"],
    "generator": ["generator=org/gen-b"],
    "template": ["template=plain"],
    "sft": ["sft={max_steps: 3}", "sft={max_prompt_tokens: 64}"],
    "generate": ["generate={sample_num: 4}", "generate={engine: ctranslate2}", "generate={max_doc_tokens: 64}"],
    "filters": ["filters=[{name: bm25, k: 20}]", "filters=[{name: bm25, k: 30}, {name: difficulty, per_document: 1}]",
                "filters=[{name: difficulty, select: random}]"],
    "candidates_per_document": ["candidates_per_document=3"],
    "encoder": ["encoder=org/enc-b"],
    "retriever": ["retriever={max_steps: 3}", "retriever={wise_ft: [0.5, 1.0]}", "retriever={keep_checkpoint: last}"],
    "mining": ["mining={neg_start: 2, neg_end: 50, neg_per_query: 3}"],
    "difficulty_temperature": ["difficulty_temperature=0.2"],
    "preferences": ["preferences={min_gap: 0.1}"],
    "reward": ["reward={max_steps: 3}"],
    "rl": ["rl=ppo", "rl=dpo", "rl=grpo", "rl=none"],
    "ppo": ["ppo={steps: 3}"],
    "dpo": ["dpo={max_steps: 3}"],
    "grpo": ["grpo={max_steps: 3}"],
    "grpo_band": ["grpo_band=[0.1, 0.5]"],
    "rl_prompts": ["rl_prompts=8"],
    "seed": ["seed=1"],
    "generator_adapter": ["generator_adapter={other}"],
    "unlabeled": ["unlabeled=true & sft_data={other}"],
    "target_examples": ["target_examples={examples}"],
    "style": ["target_examples={examples} & style={prompt_shots: 1}",
              "target_examples={examples} & style={sft_steps: 2}"],
    "guard": ["guard={enabled: true}", "guard={enabled: true, documents: 8}",
              "guard={enabled: true, decide_on: pseudo}",
              "guard={enabled: true, other_shots: 1, other_generator: org/gen-b}",
              "guard={enabled: true, alpha: 0.01}", "guard={enabled: true, other_queries: 3}",
              "target_examples={examples} & style={prompt_shots: 1} & guard={enabled: true}",
              "sft_data={other} & guard={enabled: true}"],
    "dense_dtype": ["dense_dtype=bfloat16"],
    "train_only_baseline": ["train_only_baseline=true"],
    "fresh_documents": ["fresh_documents=true"],
    "online_reward": ["online_reward=rank_band"],
    "reward_weights": ["reward_weights=[1.0, 0.2, 0.1]"],
    "reward_band_falloff": ["reward_band_falloff=0.1"],
    "reward_gap_weight": ["reward_gap_weight=0.5"],
    "ppo_reward": ["ppo_reward=retrieval"],
    "rl_after_last_round": ["rl_after_last_round=false"],
    "rl_eval_docs": ["rl_eval_docs=4"],
}


def test_the_perturbation_table_covers_every_run_config_field():
    from ragtune.pipeline.loop import RunConfig

    assert set(RunConfig.model_fields) == set(PERTURB) | set(NOT_INPUTS)


def _toy_folder(path, text="a doc"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": text}) + "\n")
    return path


def _recording_loop(monkeypatch):
    """Patch run_loop's stage functions into recorders; returns (run(root, overrides) -> trace)."""
    import inspect
    import os
    from collections import defaultdict

    from pydantic import BaseModel

    from ragtune.config import load_config
    from ragtune.evaluate import retrieval_eval
    from ragtune.pipeline import guard, loop, loop_rounds, quality, retriever_stage, rundir, stages

    trace: dict = {}

    def norm(x, root):
        if isinstance(x, BaseModel):
            return norm(x.model_dump(), root)
        if isinstance(x, dict):
            return {str(k): norm(v, root) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [norm(v, root) for v in x]
        if isinstance(x, (str, os.PathLike)) and os.path.isabs(x):
            p = Path(x)
            if p.is_relative_to(root):
                return f"<run>/{p.relative_to(root)}"
            if p.exists():
                return f"<content {rundir.hash_path(p)}>"
        return x

    def recorder(fn_name):
        def fake(*args, **kwargs):
            calls = trace["stages"][trace["current"]]["calls"]
            calls.append([fn_name, norm(list(args), trace["root"]), norm(kwargs, trace["root"])])
            return defaultdict(dict)  # the loop may read a summary's keys
        return fake

    for name, fn in vars(stages).items():
        if inspect.isfunction(fn) and fn.__module__ == stages.__name__ and not name.startswith("_"):
            monkeypatch.setattr(stages, name, recorder(name))
    for name in ("score_training_queries", "train", "evaluate", "difficulty"):  # the retriever's stages
        monkeypatch.setattr(retriever_stage, name, recorder(f"retriever_stage.{name}"))
    for mod, names in ((quality, ("quality", "rl_eval")), (guard, ("guard", "other_generator_queries"))):
        for name in names:
            monkeypatch.setattr(mod, name, recorder(f"{mod.__name__.rsplit('.', 1)[1]}.{name}"))
    record_holdout, record_style = recorder("guard.holdout"), recorder("style")

    def holdout(kept, data, out, cfg):  # the loop reads the held-out documents' list outside any stage
        (out / guard.DOCS).write_text("d1\n")
        return record_holdout(kept, data, out, cfg)

    monkeypatch.setattr(guard, "holdout", holdout)
    monkeypatch.setattr(loop_rounds, "style", lambda *a, **k: {**record_style(*a, **k), "pairs": 2})
    monkeypatch.setattr(quality, "rl_eval_docs", lambda *a: ["d1"])
    monkeypatch.setattr(loop, "make_subset", recorder("make_subset"))
    monkeypatch.setattr(retrieval_eval, "run_eval", recorder("run_eval"))
    monkeypatch.setattr(loop, "write_run_report", lambda *a, **k: None)
    real_stage = rundir.RunDir.stage

    def stage(self, name, config, fn, upstream=(), inputs=()):
        upstream = list(upstream)
        # an upstream key names the latest stage that had it (rounds without RL repeat the same keys)
        above = {trace["by_key"][k] for k in upstream if k in trace["by_key"]}
        trace["current"] = name
        trace["stages"][name] = {"calls": [], "above": above}
        res = real_stage(self, name, config, fn, upstream, inputs)
        trace["by_key"][res.key] = name
        return res

    monkeypatch.setattr(rundir.RunDir, "stage", stage)

    def run(root: Path, overrides: list[str]) -> dict:
        trace.clear()
        trace.update(root=root, stages={}, by_key={})
        report = loop.run_loop(load_config(loop.RunConfig, None, [f"out={root}", *overrides]))
        return {"executed": set(report["executed"]),
                "calls": {n: s["calls"] for n, s in trace["stages"].items()},
                "above": {n: s["above"] for n, s in trace["stages"].items()}}

    return run


def _rerun_expected(before: dict, fresh: dict) -> set[str]:
    """Stages whose function inputs changed (or that are new), and every stage below one of them."""
    changed = {n for n, calls in fresh["calls"].items() if before["calls"].get(n) != calls}
    grew = True
    while grew:
        more = {n for n, above in fresh["above"].items() if above & changed} - changed
        changed |= more
        grew = bool(more)
    return changed


@pytest.mark.parametrize("rl", ["ppo", "dpo", "grpo", "none"])
def test_changing_any_input_reruns_exactly_its_stage_and_those_below(rl, tmp_path, monkeypatch):
    import shutil

    run = _recording_loop(monkeypatch)
    data, other = _toy_folder(tmp_path / "data"), _toy_folder(tmp_path / "other", "another doc")
    examples = tmp_path / "examples.txt"
    examples.write_text("what binds the protein\nhow does the virus grow\n")
    base = [f"data={data}", "generator=org/gen", "encoder=org/enc", "rounds=2", f"rl={rl}"]
    first = run(tmp_path / "base", base)
    assert first["executed"] == set(first["calls"]) and all(first["calls"].values())
    assert run(tmp_path / "base", base)["executed"] == set()  # nothing changed: nothing reruns
    wrong = []
    for field, changes in PERTURB.items():
        for i, change in enumerate(changes):
            case = tmp_path / f"{field}-{i}"
            shutil.copytree(data, case / "data")
            over = [f"data={case / 'data'}", *base[1:]]
            before = run(case / "rerun", over)
            if change == "<edit corpus>":
                _toy_folder(case / "data", "an edited doc")
            else:
                over += change.replace("{other}", str(other)).replace("{examples}", str(examples)).split(" & ")
            fresh = run(case / "fresh", over)
            rerun = run(case / "rerun", over)["executed"]
            expected = _rerun_expected(before, fresh)
            if rerun != expected:
                wrong.append(f"{change}: reran {sorted(rerun)}, expected {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


def test_the_style_sft_cuts_documents_as_the_generators_sft_did_and_reruns_when_that_changes(tmp_path, monkeypatch):
    run = _recording_loop(monkeypatch)
    data = _toy_folder(tmp_path / "data")
    examples = tmp_path / "examples.txt"
    examples.write_text("what binds the protein\nhow does the virus grow\n")
    base = [f"data={data}", "generator=org/gen", "encoder=org/enc", "rounds=1", "rl=none",
            f"target_examples={examples}", "style={sft_steps: 2}"]
    for change in ("generate={max_doc_tokens: 64}", "sft={max_prompt_tokens: 64}"):
        first = run(tmp_path / "run", [*base, "generate={max_doc_tokens: 200}"])
        [(_, args, _)] = first["calls"]["round-0/style"]
        assert args[-1] == 200  # the style SFT's max_prompt_tokens: generate.max_doc_tokens, as SFT's own
        again = run(tmp_path / "run", [*base, "generate={max_doc_tokens: 200}", change])
        assert "round-0/style" in again["executed"], change
        assert again["calls"]["round-0/style"][0][1][-1] == 64, change


def test_a_loop_that_would_repeat_its_queries_says_so(tmp_path, monkeypatch, caplog):
    run = _recording_loop(monkeypatch)
    data = _toy_folder(tmp_path / "data")
    base = [f"data={data}", "generator=org/gen", "encoder=org/enc", "rounds=2", "rl=none"]
    with caplog.at_level("WARNING", logger="ragtune.run"):
        run(tmp_path / "same", base)
    assert "writes round 0's queries again word for word" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="ragtune.run"):
        fresh = run(tmp_path / "fresh", [*base, "fresh_documents=true"])
        run(tmp_path / "rl", [*base[:-1], "rl=dpo"])
    assert "word for word" not in caplog.text
    # with fresh documents round 1 generates with another seed (other documents, other samples)
    [(_, r0, _)], [(_, r1, _)] = fresh["calls"]["round-0/generate"], fresh["calls"]["round-1/generate"]
    assert r0[-1].get("seed") != r1[-1].get("seed")
