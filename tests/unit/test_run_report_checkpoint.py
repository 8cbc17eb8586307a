"""The loop report's line on which retriever checkpoint a round kept (`retriever.keep_checkpoint`)."""

from __future__ import annotations

from ragtune.pipeline.report import checkpoint_lines


def test_the_report_says_whether_the_dev_best_or_the_last_checkpoint_was_kept():
    best = {"best_checkpoint": "runs/x/round-0/.retriever.tmp/model/checkpoint-105", "best_metric": 0.723,
            "global_step": 126}
    assert checkpoint_lines(best) == ["- retriever: kept the checkpoint best on the dev slice, step 105 of 126 "
                                      "(dev 0.7230)"]
    assert checkpoint_lines(best | {"kept_checkpoint": "last"}) == [
        "- retriever: kept the last checkpoint (step 126); the dev slice's best was step 105 (dev 0.7230)"]
    assert checkpoint_lines({"global_step": 30}) == []  # no dev slice, nothing chosen
