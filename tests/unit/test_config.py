from pathlib import Path

import pytest

from ragtune.config import ConfigError, dump_config, load_config
from ragtune.evaluate.retrieval_eval import EvalConfig


def test_yaml_then_dotted_overrides(tmp_path):
    cfg_file = tmp_path / "eval.yaml"
    cfg_file.write_text("data: /x\nretriever: bm25\nbm25:\n  k1: 1.5\n")
    cfg = load_config(EvalConfig, cfg_file, ["bm25.b=0.4", "split=dev", "metrics=[ndcg@10]"])
    assert cfg.bm25.k1 == 1.5 and cfg.bm25.b == 0.4
    assert cfg.split == "dev" and cfg.metrics == ["ndcg@10"]


def test_unknown_key_names_closest_match():
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, None, ["data=/x", "retriver=dense"])
    assert 'unknown key "retriver"' in str(e.value) and 'did you mean "retriever"' in str(e.value)


def test_unknown_nested_key():
    with pytest.raises(ConfigError, match=r'unknown key "bm25.k11".*did you mean "bm25.k1"'):
        load_config(EvalConfig, None, ["data=/x", "bm25.k11=1"])


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, None, ["data=/x", "retriever=bm2"])
    msg = str(e.value)
    assert "allowed values: bm25, dense, colbert, run" in msg and 'did you mean "bm25"' in msg


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r'key "bm25.k1".*number.*abc'):
        load_config(EvalConfig, None, ["data=/x", "bm25.k1=abc"])


def test_bad_metric_and_missing_required():
    with pytest.raises(ConfigError, match="unknown metric"):
        load_config(EvalConfig, None, ["data=/x", "metrics=[ndcg@x]"])
    with pytest.raises(ConfigError, match='key "data" is required'):
        load_config(EvalConfig, None, [])


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: /x\nbm25: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_config(EvalConfig, bad)
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(EvalConfig, None, ["data"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(EvalConfig, None, ["data=/x", "bm25.k1=0.9"])
    path = dump_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(EvalConfig, path)
    assert again == cfg and again.data == Path("/x")


def test_overrides_index_into_lists(tmp_path):
    from ragtune.filters.run import FilterConfig

    cfg_file = tmp_path / "f.yaml"
    cfg_file.write_text("queries: /q\ncorpus: /c\nout: /o\nfilters:\n  - {name: bm25, k: 70}\n  - {name: dense}\n")
    cfg = load_config(FilterConfig, cfg_file, ["filters.0.k=30", "filters.1.dense.batch_size=8"])
    assert cfg.filters[0].k == 30 and cfg.filters[1].dense.batch_size == 8
    with pytest.raises(ConfigError, match="index it with 0..1"):
        load_config(FilterConfig, cfg_file, ["filters.5.k=1"])


def test_errors_inside_a_tagged_union_name_the_key_as_written():
    """The loop's `retriever:` is a union chosen by `kind`: errors name `retriever.<key>`, not pydantic's
    member tag, and list the keys of the chosen kind."""
    from ragtune.pipeline.loop import RunConfig

    with pytest.raises(ConfigError) as e:
        load_config(RunConfig, None, ["retriever={kind: colbert, dimm: 3}"])
    msg = str(e.value)
    assert 'unknown key "retriever.dimm"' in msg and 'did you mean "retriever.dim"' in msg and "index" in msg
    with pytest.raises(ConfigError, match=r'key "retriever.kind": got \'colbrt\'.*did you mean "colbert"'):
        load_config(RunConfig, None, ["retriever={kind: colbrt}"])
    with pytest.raises(ConfigError, match=r'key "retriever.index": got \'ivf\'; allowed values: flat, plaid'):
        load_config(RunConfig, None, ["retriever={kind: colbert, index: ivf}"])
    with pytest.raises(ConfigError, match=r'unknown key "retriever.index"'):  # a bi-encoder has no token index
        load_config(RunConfig, None, ["retriever={index: plaid}"])
