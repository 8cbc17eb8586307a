import json

import pytest

from ragtune.pipeline.rundir import RunDir


def _pipeline(root, data_file, filter_k=10, crash_at=None):
    rd = RunDir(root)
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
    assert not (tmp_path / "run" / "round-0" / "train" / "partial.txt").exists()
