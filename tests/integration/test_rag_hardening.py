"""A knowledge base under hostile and careless use (issue 14): no code runs from it, no file outside the ingested
folder is read, no silent wipe, all-or-nothing ingests, bounded chunks, clear errors instead of tracebacks."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.cli import app
from ragtune.config import load_config
from ragtune.rag.ingest import IngestConfig, ingest

DOCS = {
    "heart.txt": "The heart pumps blood through the body.\n\nIt beats about seventy times a minute.",
    "liver.md": "# Liver\n\nThe liver filters toxins and stores glycogen.",
}


class Marker:
    """Unpickling this creates the file `path`: the proof that code from a knowledge base ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def docs_folder(root: Path, files: dict[str, str] = DOCS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def cfg(folder: Path, kb: Path, tiny_bert: Path, *extra: str) -> IngestConfig:
    return load_config(
        IngestConfig,
        None,
        [
            f"folder={folder}",
            f"out={kb}",
            f"embedder.model={tiny_bert}",
            "chunk.max_tokens=40",
            "chunk.overlap_tokens=0",
            *extra,
        ],
    )


def all_chunk_text(kb: Path) -> str:
    """Every chunk's text, wherever this version of ragtune keeps chunks.jsonl."""
    return "\n".join(p.read_text(encoding="utf-8") for p in kb.rglob("chunks.jsonl"))


def plant_pickle(kb: Path, marker: Path) -> Path:
    """A row in qdrant-client's local store of collection "chunks" whose unpickling runs `touch marker`."""
    store = kb / "qdrant" / "collection" / "chunks" / "storage.sqlite"
    store.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE IF NOT EXISTS points (id TEXT PRIMARY KEY, point BLOB)")
        db.execute("INSERT OR REPLACE INTO points VALUES (?, ?)", ("evil", pickle.dumps(Marker(marker))))
    return store


def open_and_close(kb: Path, **kw) -> None:
    from ragtune.rag.kb import KnowledgeBase

    KnowledgeBase.open(kb, **kw).close()


# ---------------------------------------------------------------- 1: no code runs from a knowledge base


def test_pickle_planted_in_the_local_store_never_runs(tmp_path, tiny_bert):
    kb, marker = tmp_path / "kb", tmp_path / "PWNED"
    folder = docs_folder(tmp_path / "docs")
    ingest(cfg(folder, kb, tiny_bert))
    plant_pickle(kb, marker)
    with contextlib.suppress(ValueError):  # refusing the KB is fine; running the payload is not
        open_and_close(kb)
    assert not marker.exists(), "opening the knowledge base unpickled a planted payload"
    (folder / "new.txt").write_text("The kidneys filter the blood.", encoding="utf-8")
    with contextlib.suppress(ValueError):
        ingest(cfg(folder, kb, tiny_bert))
    assert not marker.exists(), "re-ingesting the knowledge base unpickled a planted payload"
    res = CliRunner().invoke(app, ["rag", "ask", str(kb), "What does the heart pump?", "--model", "nope"])
    assert not marker.exists(), "`rag ask` unpickled a planted payload"
    assert res.exception is None or isinstance(res.exception, SystemExit)


def legacy_kb(kb: Path, marker: Path, model: Path) -> None:
    """A knowledge base as ragtune wrote it before: format 1, vectors in qdrant-client's pickled local store."""
    from qdrant_client import QdrantClient, models

    kb.mkdir(parents=True)
    client = QdrantClient(path=str(kb / "qdrant"))
    client.create_collection("chunks", vectors_config=models.VectorParams(size=32, distance=models.Distance.COSINE))
    client.upsert("chunks", points=[models.PointStruct(id=1, vector=[0.1] * 32, payload={"chunk_id": "a.txt::0"})])
    client.close()
    plant_pickle(kb, marker)
    (kb / "chunks.jsonl").write_text(
        json.dumps(
            {
                "chunk_id": "a.txt::0",
                "file": "a.txt",
                "source": "a.txt",
                "title": "",
                "start": 0,
                "end": 4,
                "text": "text",
            }
        )
        + "\n"
    )
    (kb / "documents.jsonl").write_text(
        json.dumps({"source": "a.txt", "file": "a.txt", "title": "", "text": "text"}) + "\n"
    )
    (kb / "manifest.json").write_text(json.dumps({"a.txt": {"sha256": "0" * 64, "documents": 1, "chunks": 1}}))
    (kb / "kb.json").write_text(
        json.dumps(
            {
                "format": 1,
                "dim": 32,
                "chunks": 1,
                "bm25_language": "en",
                "settings": {"model": str(model), "max_seq_length": 64, "collection": "chunks", "url": None},
            }
        )
    )


def test_a_knowledge_base_of_the_old_format_is_refused_then_rebuilt_without_unpickling(tmp_path, tiny_bert):
    kb, marker = tmp_path / "kb", tmp_path / "PWNED"
    legacy_kb(kb, marker, tiny_bert)
    with pytest.raises(ValueError, match=r"rebuild=true"):
        open_and_close(kb)
    res = CliRunner().invoke(app, ["rag", "ask", str(kb), "a question", "--model", "nope"])
    assert res.exit_code == 1 and "rebuild=true" in res.output and "pickles" in res.output
    folder = docs_folder(tmp_path / "docs")
    with pytest.raises(ValueError, match=r"rebuild=true"):
        ingest(cfg(folder, kb, tiny_bert))
    assert not marker.exists()
    s = ingest(cfg(folder, kb, tiny_bert, "rebuild=true"))
    assert s["chunks_total"] >= 2 and not (kb / "qdrant").exists() and not marker.exists()
    open_and_close(kb)


# ---------------------------------------------------------------- 2: never leave the ingested folder


def test_links_out_of_the_folder_are_skipped_and_reported(tmp_path, tiny_bert):
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("SECRET-TOKEN-4242 is the password.", encoding="utf-8")
    (tmp_path / "outside" / "more.txt").write_text("SECRET-FOLDER-7 text.", encoding="utf-8")
    folder = docs_folder(tmp_path / "docs")
    (folder / "notes.txt").symlink_to(secret)
    (folder / "linked").symlink_to(secret.parent, target_is_directory=True)
    (folder / "heart-again.txt").symlink_to(folder / "heart.txt")  # inside the folder: fine
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a cycle: walked once
    kb = tmp_path / "kb"
    s = ingest(cfg(folder, kb, tiny_bert))
    text = all_chunk_text(kb)
    assert "SECRET" not in text
    assert "heart-again.txt" in text
    reported = "\n".join(s["failed"])
    assert "notes.txt: a link to" in reported and "linked: a link to" in reported


# ---------------------------------------------------------------- 3: where the store is comes from the user


class FakeQdrant:
    """Stands in for qdrant_client.QdrantClient: records where it was pointed; one shared in-memory store."""

    calls: list[dict] = []
    shared = None
    real = None

    def __new__(cls, *args, **kwargs):
        cls.calls.append(dict(kwargs))
        if str(kwargs.get("url", "")).startswith("http://evil"):
            raise AssertionError(f"connected to the server named by the knowledge base: {kwargs}")
        if cls.shared is None:
            cls.shared = cls.real(":memory:")
            cls.shared.close = lambda: None
        return cls.shared


@pytest.fixture
def fake_qdrant(monkeypatch):
    import qdrant_client

    FakeQdrant.calls, FakeQdrant.shared, FakeQdrant.real = [], None, qdrant_client.QdrantClient
    monkeypatch.setattr(qdrant_client, "QdrantClient", FakeQdrant)
    return FakeQdrant


def test_server_and_key_come_from_the_user_never_from_kb_json(tmp_path, tiny_bert, fake_qdrant, monkeypatch):
    monkeypatch.setenv("MY_QDRANT_KEY", "key-of-the-user")
    monkeypatch.setenv("STOLEN_KEY", "must-not-leave")
    folder, kb = docs_folder(tmp_path / "docs"), tmp_path / "kb"
    s = ingest(cfg(folder, kb, tiny_bert, "store.url=http://qdrant.local:6333", "store.api_key_env=MY_QDRANT_KEY"))
    assert s["vectors_in_store"] == s["chunks_total"] >= 2
    assert "key-of-the-user" not in "".join(p.read_text(errors="ignore") for p in kb.rglob("*") if p.is_file())

    from ragtune.rag.kb import KnowledgeBase
    from ragtune.rag.store import StoreConfig

    with pytest.raises(ValueError, match="pass the server yourself"):
        open_and_close(kb)  # built on a server, opened without one: refused, nothing contacted
    kb_ = KnowledgeBase.open(kb, store=StoreConfig(url="http://qdrant.local:6333", api_key_env="MY_QDRANT_KEY"))
    try:
        assert kb_.search("heart pumps blood", k_bm25=0, top=2)  # dense hits from the server
    finally:
        kb_.close()
    assert {c.get("url") for c in fake_qdrant.calls} == {"http://qdrant.local:6333"}
    assert {c.get("api_key") for c in fake_qdrant.calls} == {"key-of-the-user"}

    # a knowledge base that names a server and a key variable: neither is used
    info = json.loads((kb / "kb.json").read_text())
    info["settings"]["url"] = "http://evil.example:6333"
    (kb / "kb.json").write_text(json.dumps(info))
    for p in kb.rglob("ingest.config.yaml"):
        p.write_text("api_key_env: STOLEN_KEY\nurl: http://evil.example:6333\n")
    fake_qdrant.calls.clear()
    with pytest.raises(ValueError):
        open_and_close(kb)
    assert fake_qdrant.calls == []


def test_a_tampered_local_kb_json_never_makes_ragtune_connect(tmp_path, tiny_bert, fake_qdrant, monkeypatch):
    monkeypatch.setenv("STOLEN_KEY", "must-not-leave")
    folder, kb = docs_folder(tmp_path / "docs"), tmp_path / "kb"
    ingest(cfg(folder, kb, tiny_bert))
    info = json.loads((kb / "kb.json").read_text())
    info["settings"]["url"] = "http://evil.example:6333"
    (kb / "kb.json").write_text(json.dumps(info))
    for p in kb.rglob("ingest.config.yaml"):
        p.write_text(p.read_text() + "api_key_env: STOLEN_KEY\n")
    with contextlib.suppress(ValueError):
        open_and_close(kb)
    assert all("evil" not in str(c.get("url")) and c.get("api_key") != "must-not-leave" for c in fake_qdrant.calls)


# ---------------------------------------------------------------- 7-9: no silent wipe, one writer, all or nothing


def test_reingesting_an_empty_or_wrong_folder_is_refused_unless_prune(tmp_path, tiny_bert):
    folder, kb = docs_folder(tmp_path / "docs"), tmp_path / "kb"
    ingest(cfg(folder, kb, tiny_bert))
    before = all_chunk_text(kb)
    empty = tmp_path / "mnt"
    empty.mkdir()
    res = CliRunner().invoke(
        app,
        [
            "rag",
            "ingest",
            str(empty),
            "-o",
            str(kb),
            "--model",
            str(tiny_bert),
            "--set",
            "chunk.max_tokens=40",
            "--set",
            "chunk.overlap_tokens=0",
        ],
    )
    assert res.exit_code == 1 and "would delete every document" in res.output and "--prune" in res.output
    assert all_chunk_text(kb) == before
    other = docs_folder(tmp_path / "other", {"heart.txt": DOCS["heart.txt"], "new.txt": "Bones renew."})
    with pytest.raises(ValueError, match="was built from"):
        ingest(cfg(other, kb, tiny_bert))
    assert all_chunk_text(kb) == before
    s = ingest(cfg(empty, kb, tiny_bert, "prune=true"))
    assert s["chunks_total"] == 0 and s["files_deleted"] == 2


def test_rebuild_waits_for_no_one_and_never_wipes_a_folder_that_is_not_a_kb(tmp_path, tiny_bert):
    from ragtune.rag.kb import KnowledgeBase

    folder, kb = docs_folder(tmp_path / "docs"), tmp_path / "kb"
    ingest(cfg(folder, kb, tiny_bert))
    before = all_chunk_text(kb)
    served = KnowledgeBase.open(kb)  # what `rag serve` holds for its lifetime
    try:
        with pytest.raises(ValueError, match="in use by another process"):
            ingest(cfg(folder, kb, tiny_bert, "rebuild=true"))
        assert all_chunk_text(kb) == before
        assert served.search("heart pumps blood", top=1)
    finally:
        served.close()
    mine = tmp_path / "my-project"
    (mine / "bm25").mkdir(parents=True)
    (mine / "bm25" / "notes.txt").write_text("mine")
    (mine / "manifest.json").write_text('{"mine": true}')
    with pytest.raises(ValueError, match="not a ragtune knowledge base"):
        ingest(cfg(folder, mine, tiny_bert, "rebuild=true"))
    assert (mine / "manifest.json").read_text() == '{"mine": true}' and (mine / "bm25" / "notes.txt").exists()


def test_stopword_only_files_give_a_dense_only_kb(tmp_path, tiny_bert):
    folder = docs_folder(tmp_path / "docs", {"a.txt": "The and of it is.", "b.txt": "It was to be, or not to be."})
    s = ingest(cfg(folder, tmp_path / "kb", tiny_bert, "bm25_language=en"))
    assert s["chunks_total"] == 2 and "stopwords" in s["bm25_skipped"]
    from ragtune.rag.kb import KnowledgeBase

    kb = KnowledgeBase.open(tmp_path / "kb")
    try:
        assert kb.bm25 is None and len(kb.search("to be", top=2)) == 2
    finally:
        kb.close()


def test_an_ingest_that_fails_halfway_leaves_the_kb_as_it_was(tmp_path, tiny_bert, monkeypatch):
    import ragtune.rag.ingest as ingest_module
    from ragtune.rag.kb import KnowledgeBase

    folder, kb = docs_folder(tmp_path / "docs"), tmp_path / "kb"
    ingest(cfg(folder, kb, tiny_bert))

    def snapshot():
        k = KnowledgeBase.open(kb)
        try:
            return [(h.chunk_id, round(h.score, 6)) for h in k.search("heart pumps blood", k_bm25=0, top=3)]
        finally:
            k.close()

    before, files = snapshot(), all_chunk_text(kb)
    (folder / "heart.txt").write_text("The heart has four chambers and two valves.", encoding="utf-8")
    (folder / "zz-new.txt").write_text("Kidneys filter the blood.", encoding="utf-8")
    real = ingest_module.load_file

    def crash(path, root):
        if path.name == "zz-new.txt":
            raise RuntimeError("disk unplugged")
        return real(path, root)

    monkeypatch.setattr(ingest_module, "load_file", crash)
    with pytest.raises(RuntimeError, match="disk unplugged"):
        ingest(cfg(folder, kb, tiny_bert))
    assert snapshot() == before and all_chunk_text(kb) == files
    assert not [p for p in kb.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- 10, 12: bounded chunks, binary files, deep folders


def test_a_line_without_spaces_is_cut_into_bounded_chunks_and_binary_files_are_skipped(tmp_path, tiny_bert):
    folder = docs_folder(tmp_path / "docs", {"long.txt": "x" * 200_000})
    (folder / "blob.txt").write_bytes(b"\x00\x01\x02garbage\x03\x04" * 500)
    kb = tmp_path / "kb"
    s = ingest(cfg(folder, kb, tiny_bert))
    rows = [json.loads(line) for line in all_chunk_text(kb).splitlines() if line.strip()]
    assert rows and max(r["end"] - r["start"] for r in rows) <= 400  # 10 x chunk.max_tokens
    assert sum(r["end"] - r["start"] for r in rows) == 200_000
    assert any(f.startswith("blob.txt") and "binary" in f for f in s["failed"])


def test_a_folder_nested_1100_deep_is_walked_without_recursion(tmp_path, tiny_bert):
    folder = docs_folder(tmp_path / "docs")
    levels = [folder]
    for _ in range(1100):  # built level by level: pathlib's mkdir(parents=True) itself recurses
        levels.append(levels[-1] / "d")
        levels[-1].mkdir()
    (levels[-1] / "bottom.txt").write_text("The deepest note says hello.", encoding="utf-8")
    try:
        s = ingest(cfg(folder, tmp_path / "kb", tiny_bert))
        assert s["files_new"] == 3 and "deepest note" in all_chunk_text(tmp_path / "kb")
    finally:  # bottom-up, so that no recursive tree removal meets it later
        (levels[-1] / "bottom.txt").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


# ---------------------------------------------------------------- 12, 13: errors name the file, no traceback


def test_broken_kb_json_and_manifest_errors_name_the_file(tmp_path, tiny_bert):
    folder, kb = docs_folder(tmp_path / "docs"), tmp_path / "kb"
    ingest(cfg(folder, kb, tiny_bert))
    good = (kb / "kb.json").read_text()
    (kb / "kb.json").write_text('{\n  "format": 2,\n  oops\n')
    res = CliRunner().invoke(app, ["rag", "ask", str(kb), "What does the heart pump?"])
    assert res.exit_code == 1 and "kb.json:3" in res.output and "Traceback" not in res.output
    (kb / "kb.json").write_text(good)
    manifest = next(kb.rglob("manifest.json"))
    manifest.write_text("[1, 2")
    with pytest.raises(ValueError, match=r"manifest\.json"):
        ingest(cfg(folder, kb, tiny_bert))


def test_run_directory_manifest_errors_name_the_file(tmp_path):
    from ragtune.pipeline.rundir import RunDir

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text('{"stages": {')
    with pytest.raises(ValueError, match=r"run/manifest\.json:1"):
        RunDir(tmp_path / "run")
    (tmp_path / "run" / "manifest.json").unlink()
    with RunDir(tmp_path / "run"):  # the refused open left the directory unlocked
        pass


def test_output_paths_are_checked_before_any_work(tiny_beir, tmp_path, monkeypatch):
    import ragtune.evaluate.retrieval_eval as ev

    monkeypatch.setattr(ev, "retrieve", lambda cfg: pytest.fail("retrieved before checking --out"))
    existing = tmp_path / "results.txt"
    existing.write_text("keep me")
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--data", str(tiny_beir), "--out", str(existing)])
    assert res.exit_code == 1 and "is an existing file" in res.output and existing.read_text() == "keep me"
    res = runner.invoke(
        app, ["eval", "--data", str(tiny_beir), "--out", str(tmp_path / "o"), "--json", str(existing / "summary.json")]
    )
    assert res.exit_code == 1 and "is a file" in res.output
    res = runner.invoke(app, ["rag", "ingest", str(tmp_path), "-o", str(existing)])
    assert res.exit_code == 1 and "not a folder" in res.output and existing.read_text() == "keep me"
    res = runner.invoke(app, ["data", "convert", "beir-sft", f"data={tiny_beir}", f"out={existing}"])
    assert res.exit_code == 1 and "is an existing file" in res.output and existing.read_text() == "keep me"


def test_any_other_os_error_is_a_message_and_exit_1(monkeypatch, tiny_beir):
    import ragtune.data.validate as validate_module

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tiny_beir / "corpus.jsonl"))

    monkeypatch.setattr(validate_module, "validate", denied)
    res = CliRunner().invoke(app, ["data", "validate", str(tiny_beir)])
    assert res.exit_code == 1 and "Permission denied" in res.output and "corpus.jsonl" in res.output
    assert isinstance(res.exception, SystemExit)
