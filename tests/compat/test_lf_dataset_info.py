"""Every documented dataset_info.json key (LLaMA-Factory data/README), read as LLaMA-Factory reads it or refused
with a message that says what to write instead."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from lf_fixtures import sptar_registry, write_json

from ragtune.config import ConfigError
from ragtune.data.errors import DataFormatError, ProblemLog
from ragtune.data.formats import validate_dataset_info
from ragtune.data.lf_datasets import read_registered
from ragtune.train.generator.sft_data import load_sft_messages
from tiny_lm import toy_corpus

CHATS = [
    {"conversations": [{"from": "human", "value": f"Write a query for document {i}."},
                       {"from": "gpt", "value": f"query {i}"}], "system": "You write search queries."}
    for i in range(6)
]


def _sharegpt(tmp_path, entry: dict, rows: list[dict]):
    write_json(tmp_path / "chats.json", rows)
    return write_json(tmp_path / "dataset_info.json", {"chats": {"file_name": "chats.json", "formatting": "sharegpt",
                                                                 **entry}})


def test_sharegpt_message_keys_under_columns_or_tags_read_the_same(tmp_path):
    rows = [{"messages": [{"role": "user", "content": c["conversations"][0]["value"]},
                          {"role": "assistant", "content": c["conversations"][1]["value"]}], "sys": c["system"]}
            for c in CHATS]
    old = tmp_path / "old"
    _sharegpt(old, {"columns": {"messages": "messages", "role": "role", "content": "content", "system": "sys"},
                    "tags": {"user_tag": "user", "assistant_tag": "assistant"}}, rows)
    new = tmp_path / "new"
    _sharegpt(new, {"columns": {"messages": "messages", "system": "sys"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}}, rows)
    a, b = load_sft_messages(["chats"], old), load_sft_messages(["chats"], new)
    assert [m for _, m in a] == [m for _, m in b]
    assert a[0][1] == [{"role": "system", "content": "You write search queries."},
                       {"role": "user", "content": "Write a query for document 0."},
                       {"role": "assistant", "content": "query 0"}]
    problems = ProblemLog()
    assert validate_dataset_info(old, problems)["chats rows"] == 6 and not problems, problems.problems


def test_message_keys_that_disagree_are_refused(tmp_path):
    _sharegpt(tmp_path, {"columns": {"role": "from"}, "tags": {"role_tag": "role"}}, CHATS)
    with pytest.raises(DataFormatError, match='"columns.role".*"tags.role_tag".*disagree'):
        read_registered("chats", tmp_path)


def test_file_sha1_is_checked(tmp_path):
    _sharegpt(tmp_path, {}, CHATS)
    digest = hashlib.sha1((tmp_path / "chats.json").read_bytes()).hexdigest()
    write_json(tmp_path / "dataset_info.json", {"chats": {"file_name": "chats.json", "formatting": "sharegpt",
                                                          "file_sha1": digest}})
    assert len(read_registered("chats", tmp_path).rows) == 6
    (tmp_path / "chats.json").write_text(json.dumps(CHATS[:5]))
    with pytest.raises(DataFormatError, match=f"dataset_info.json:\\d+: .*file_sha1.*{digest}.*changed") as e:
        read_registered("chats", tmp_path)
    assert e.value.field == "chats.file_sha1"


def test_num_samples_draws_that_many_rows_seeded_and_repeats_beyond_the_file(tmp_path):
    _sharegpt(tmp_path, {"num_samples": 4}, CHATS)
    rows = [r[2]["conversations"][1]["value"] for r in read_registered("chats", tmp_path, seed=1).rows]
    again = [r[2]["conversations"][1]["value"] for r in read_registered("chats", tmp_path, seed=1).rows]
    assert rows == again and len(rows) == 4 and len(set(rows)) == 4
    _sharegpt(tmp_path, {"num_samples": 10}, CHATS)
    rows = [r[2]["conversations"][1]["value"] for r in read_registered("chats", tmp_path).rows]
    assert len(rows) == 10 and set(rows) == {c["conversations"][1]["value"] for c in CHATS}


@pytest.mark.parametrize(("entry", "says"), [
    ({"hf_hub_url": "org/data"}, "Hugging Face Hub .*never downloads.*file_name"),
    ({"ms_hub_url": "org/data"}, "ModelScope"),
    ({"script_url": "my_loader"}, "loading script"),
    ({"file_name": "chats.json", "subset": "en"}, '"subset" selects a configuration.*remove "subset"'),
    ({"file_name": "chats.json", "folder": "data/en"}, '"folder" selects a folder.*remove "folder"'),
])
def test_hub_sources_subset_and_folder_are_refused_offline_with_what_to_do(tmp_path, entry, says):
    write_json(tmp_path / "chats.json", CHATS)
    write_json(tmp_path / "dataset_info.json", {"chats": {"formatting": "sharegpt", **entry}})
    with pytest.raises(ConfigError, match=says):
        load_sft_messages(["chats"], tmp_path)


def test_sft_on_a_ranking_entry_trains_on_the_chosen_answer_with_a_notice(tmp_path, caplog):
    docs, pairs = toy_corpus(4)
    sptar_registry(tmp_path, docs, pairs)
    with caplog.at_level(logging.WARNING, logger="ragtune.notice"):
        sft = load_sft_messages(["sptar_sft"], tmp_path)  # SPTAR's rows: a plain string output
        pref = load_sft_messages(["sptar_pref"], tmp_path)  # [chosen, rejected] outputs
    assert [m[-1]["content"] for _, m in sft] == [q for _, q in pairs]
    assert [m[-1]["content"] for _, m in pref] == [q for _, q in pairs]  # the chosen one, never the rejected
    assert sum('"ranking": true' in r.message for r in caplog.records) == 2
