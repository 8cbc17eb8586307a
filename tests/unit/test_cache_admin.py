import fcntl
import os
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from ragtune.cache import entries, parse_size, prune
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
    bare = runner.invoke(app, ["cache", "prune"])  # nothing is deleted without a limit
    assert bare.exit_code == 1 and "--older-than DAYS and/or --max-size SIZE" in bare.output

    big = _entry(tmp_path, "embeddings", "big", 3, size=4096)
    small = _entry(tmp_path, "embeddings", "small", 1, size=512)
    capped = runner.invoke(app, ["cache", "prune", "--max-size", "1K"])
    assert capped.exit_code == 0 and "deleted 1 entry, 4.0 KiB" in capped.output, capped.output
    assert not big.exists() and small.exists()
    typo = runner.invoke(app, ["cache", "prune", "--max-size", "lots"])
    assert typo.exit_code == 1 and "write a size such as 500M" in typo.output and small.exists()


def test_max_size_deletes_the_least_recently_used_until_the_cache_fits(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path))
    old, mid, new = (_entry(tmp_path, "embeddings", n, days, size=1000) for n, days in
                     (("old", 40, ), ("mid", 10), ("new", 1)))
    scores = tmp_path / "pair-scores" / "k.jsonl"  # another kind: counted only when its kind is asked for
    scores.parent.mkdir()
    scores.write_bytes(b"x" * 5000)

    would, _ = prune(max_bytes=1500, kinds=["embeddings"], dry_run=True)
    assert [e.path for e in would] == [old, mid] and old.exists() and mid.exists()
    # both limits: what is too old goes, then the oldest of the rest while over the size
    assert [e.path for e in prune(30, kinds=["embeddings"], max_bytes=2500, dry_run=True)[0]] == [old]
    assert [e.path for e in prune(5, kinds=["embeddings"], max_bytes=2500, dry_run=True)[0]] == [old, mid]

    with open(tmp_path / "embeddings" / ".old.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the oldest is being written: the next ones go in its place
        deleted, busy = prune(max_bytes=1500, kinds=["embeddings"])
    assert [e.path for e in busy] == [old] and [e.path for e in deleted] == [mid, new]
    assert old.exists() and not mid.exists() and not new.exists() and scores.exists()
    assert [e.path for e in prune(max_bytes=0)[0]] == [old, scores]


def test_sizes_are_read_as_people_write_them():
    assert [parse_size(x) for x in ("4096", "500M", "500 MB", "2g", "1.5GiB", "1K")] == \
        [4096, 500 * 2**20, 500 * 2**20, 2 * 2**30, 3 * 2**29, 1024]
    for bad in ("", "2X", "-1G", "1e9"):
        with pytest.raises(ValueError, match="500M"):
            parse_size(bad)
    with pytest.raises(ValueError, match="--older-than DAYS and/or --max-size SIZE"):
        prune()
