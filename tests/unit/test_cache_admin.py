import fcntl
import os
import time

import numpy as np
from typer.testing import CliRunner

from ragtune.cache import entries, prune
from ragtune.cli import app

runner = CliRunner()
DAY = 86400


def _entry(root, kind, name, days_old, size=100):
    path = root / kind / name
    path.mkdir(parents=True)
    (path / "emb.npy").write_bytes(b"x" * size)
    then = time.time() - days_old * DAY
    for p in (path / "emb.npy", path):
        os.utime(p, (then, then))
    return path


def test_prune_deletes_only_entries_unused_longer_than_asked_and_what_is_outside_the_kinds_stays(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    old = _entry(tmp_path, "embeddings", "old", 40, size=3000)
    recent = _entry(tmp_path, "embeddings", "recent", 2)
    scores = tmp_path / "pair-scores" / "k.jsonl"
    scores.parent.mkdir()
    scores.write_text('["h", 1.0]\n')
    (tmp_path / "embeddings" / ".old.lock").touch()
    stranger = _entry(tmp_path, "my-notes", "keep", 400)  # not a kind ragtune knows: never listed, never deleted
    unfinished = _entry(tmp_path, "models", ".half-converted.x1", 400)  # hidden: a conversion in progress

    assert [e.path for e in entries()] == [old, recent, scores]
    assert entries()[0].bytes == 3000 and 39 < entries()[0].age_days < 41

    would, busy = prune(30, dry_run=True)
    assert [e.path for e in would] == [old] and not busy and old.exists()

    deleted, busy = prune(30)
    assert [e.path for e in deleted] == [old] and not busy
    assert not old.exists() and not (tmp_path / "embeddings" / ".old.lock").exists()
    assert recent.exists() and scores.exists() and stranger.exists() and unfinished.exists()

    assert [e.path for e in prune(0, kinds=["pair-scores"])[0]] == [scores] and recent.exists()


def test_an_entry_a_process_is_writing_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    entry = _entry(tmp_path, "embeddings", "busy", 40)
    with open(tmp_path / "embeddings" / ".busy.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what encode_cache.one_writer holds while it writes the entry
        deleted, busy = prune(30)
    assert not deleted and [e.path for e in busy] == [entry] and entry.exists()
    assert [e.path for e in prune(30)[0]] == [entry] and not entry.exists()


def test_a_linked_entry_is_unlinked_and_what_it_points_to_survives(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    outside = tmp_path / "user-data"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine")
    (tmp_path / "cache" / "embeddings").mkdir(parents=True)
    link = tmp_path / "cache" / "embeddings" / "linked"
    link.symlink_to(outside, target_is_directory=True)
    os.utime(link, (time.time() - 90 * DAY,) * 2, follow_symlinks=False)
    assert [e.path for e in prune(30)[0]] == [link]
    assert not link.is_symlink() and (outside / "precious.txt").read_text() == "mine"


def test_a_cache_hit_stamps_the_entry_so_prune_keeps_what_runs_still_read(tmp_path, monkeypatch):
    from ragtune.retrieval.encode_cache import cached_encode
    from ragtune.retrieval.score_cache import cached_scores

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    folder = tmp_path / "embeddings" / "e"
    cached_encode(folder, ["a", "b"], ["x", "y"], lambda t: np.ones((len(t), 4), np.float32), dim=4)
    path = tmp_path / "pair-scores" / "s.jsonl"
    cached_scores(path, [("q", "d")], lambda ps: [1.0] * len(ps))
    then = time.time() - 60 * DAY
    for p in [*folder.iterdir(), folder, path]:
        os.utime(p, (then, then))
    assert len(prune(30, dry_run=True)[0]) == 2

    def never(_):
        raise AssertionError("a cached entry was computed again")

    cached_encode(folder, ["a", "b"], ["x", "y"], never, dim=4)
    assert cached_scores(path, [("q", "d")], never) == ([1.0], 0)
    assert prune(30, dry_run=True)[0] == []


def test_cli_lists_prunes_and_names_an_unknown_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    old = _entry(tmp_path, "ct2", "gen-old", 45, size=2048)
    listed = runner.invoke(app, ["cache", "list"])
    assert listed.exit_code == 0, listed.output
    assert "gen-old" in listed.output and "2.0 KiB" in listed.output and "45 d ago" in listed.output

    dry = runner.invoke(app, ["cache", "prune", "--older-than", "30", "--dry-run"])
    assert dry.exit_code == 0 and "would delete 1 entry" in dry.output and old.exists()
    done = runner.invoke(app, ["cache", "prune", "--older-than", "30", "--kind", "ct2"])
    assert done.exit_code == 0 and "deleted 1 entry" in done.output and not old.exists()

    bad = runner.invoke(app, ["cache", "list", "--kind", "embedings"])
    assert bad.exit_code == 1 and "unknown cache kind 'embedings'" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(app, ["cache", "prune"]).exit_code == 2  # nothing is deleted without --older-than
