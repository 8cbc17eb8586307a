"""A knowledge base on a Qdrant server (issue 19, item 5), against the real Qdrant engine: Qdrant Edge behind
Qdrant's REST API (tests/qdrant_edge_kit.py). `rag ingest --set store.url=...` writes the vectors there, the
pipeline and `rag serve` read them back, and the KB with local vectors answers every question identically."""

from __future__ import annotations

import json
import urllib.request

import pytest

from rag_kit import ANSWER, ANSWERABLE, DOCS, UNANSWERABLE, Server, ask_config, serve_config, shared_parts

pytest.importorskip("qdrant_edge", reason="pip install qdrant-edge-py (in the dev extra)")

QUESTIONS = [ANSWERABLE, UNANSWERABLE, "What does the liver store?", "Which organ is the largest?"]


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory):
    from qdrant_edge_kit import edge_qdrant_app

    q = edge_qdrant_app(tmp_path_factory.mktemp("qdrant-edge"), api_key="key-of-the-user")
    with Server(q.asgi) as url:
        yield q, url
    q.close()


@pytest.fixture(scope="module")
def two_kbs(tiny_bert, tiny_lm, tmp_path_factory, edge_server):
    """(the shared local KB, the same documents ingested onto the server, the answerer, the server's url)."""
    from rag_kit import build_kb

    kb_local, model = shared_parts(tmp_path_factory, tiny_bert, tiny_lm)
    _, url = edge_server
    mp = pytest.MonkeyPatch()
    mp.setenv("QDRANT_KEY", "key-of-the-user")
    kb_server = build_kb(tmp_path_factory.mktemp("server") / "kb", tiny_bert,
                         f"store.url={url}", "store.api_key_env=QDRANT_KEY", "collection=kb_chunks")
    yield kb_local, kb_server, model, url
    mp.undo()


def server_args(url: str) -> list[str]:
    return [f"store.url={url}", "store.api_key_env=QDRANT_KEY"]


def test_ingest_writes_every_chunk_to_the_engine_and_no_vector_into_the_kb(two_kbs, edge_server):
    from ragtune.rag.store import ChunkStore

    kb_local, kb_server, _, url = two_kbs
    q, _ = edge_server
    chunks = sum(1 for p in kb_server.rglob("chunks.jsonl") for line in p.read_text().splitlines() if line.strip())
    with ChunkStore.connect(url, "kb_chunks", api_key="key-of-the-user") as store:
        assert store.count() == chunks >= len(DOCS)
    assert not list(kb_server.rglob("vectors.npy")) and list(kb_local.rglob("vectors.npy"))  # on the server only
    puts = [r for r in q.requests if r[0] == "PUT" and r[1] == "/collections/kb_chunks/points"]
    assert puts and all(r[2] == "key-of-the-user" for r in puts)


def test_server_kb_answers_exactly_as_the_local_kb(two_kbs):
    from ragtune.rag.ask import RagPipeline

    kb_local, kb_server, model, url = two_kbs
    with RagPipeline.open(ask_config(kb_local, model)) as local, \
            RagPipeline.open(ask_config(kb_server, model, *server_args(url))) as remote:
        for question in QUESTIONS:
            a, b = local.ask(question), remote.ask(question)
            assert (b["answer"], b["refused"]) == (a["answer"], a["refused"]), question
            assert [c["chunk_id"] for c in b["citations"]] == [c["chunk_id"] for c in a["citations"]]
            ctx_a = [(c["source"], c["text"]) for c in a["contexts"]]
            assert [(c["source"], c["text"]) for c in b["contexts"]] == ctx_a, question
            assert [c["score"] for c in b["contexts"]] == pytest.approx([c["score"] for c in a["contexts"]],
                                                                      abs=1e-5)
            # the dense side alone, every chunk: same order, same cosines (Qdrant's vs numpy's)
            vec = local.kb.encoder.encode([question], normalize_embeddings=True, convert_to_numpy=True)[0]
            dense_a, dense_b = local.kb.store.search(vec, k=100), remote.kb.store.search(vec, k=100)
            assert len(dense_a) == len(local.kb.chunks) and [c for c, _ in dense_b] == [c for c, _ in dense_a]
            assert [s for _, s in dense_b] == pytest.approx([s for _, s in dense_a], abs=1e-5)
        r = remote.ask(ANSWERABLE)
        assert r["answer"] == ANSWER and r["citations"][0]["source"] == "heart.txt"


def test_rag_serve_reads_the_server_kb(two_kbs):
    from ragtune.rag.ask import RagPipeline
    from ragtune.rag.server import create_app

    kb_local, kb_server, model, url = two_kbs
    with RagPipeline.open(ask_config(kb_local, model)) as local:
        expected = local.ask(ANSWERABLE)
    cfg = serve_config(kb_server, model, *server_args(url))
    with RagPipeline.open(cfg) as rag, Server(create_app(rag, cfg)[0]) as api:
        req = urllib.request.Request(f"{api}/ask", data=json.dumps({"question": ANSWERABLE}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = json.loads(resp.read())
    assert body["answer"] == expected["answer"] == ANSWER
    assert [c["chunk_id"] for c in body["citations"]] == [c["chunk_id"] for c in expected["citations"]]


def test_reingest_replaces_changed_chunks_on_the_engine(tiny_bert, tmp_path, edge_server, monkeypatch):
    from rag_kit import build_kb
    from ragtune.rag.kb import KnowledgeBase
    from ragtune.rag.store import ChunkStore, StoreConfig

    _, url = edge_server
    monkeypatch.setenv("QDRANT_KEY", "key-of-the-user")
    args = [*server_args(url), "collection=reingest"]
    kb = build_kb(tmp_path / "kb", tiny_bert, *args)
    docs = tmp_path / "kb-docs"
    (docs / "heart.txt").write_text("The heart has four chambers.", encoding="utf-8")
    build_kb(tmp_path / "kb", tiny_bert, *args, write_docs=False)
    texts = [json.loads(line)["text"] for p in kb.rglob("chunks.jsonl") for line in p.read_text().splitlines()
             if line.strip()]
    with ChunkStore.connect(url, "reingest", api_key="key-of-the-user") as store:
        assert store.count() == len(texts)
    store_cfg = StoreConfig(url=url, api_key_env="QDRANT_KEY")
    kb_ = KnowledgeBase.open(kb, store=store_cfg)
    try:
        hits = kb_.search("heart chambers blood", k_bm25=0, top=len(texts))
    finally:
        kb_.close()
    found = [h.chunk["text"] for h in hits]
    assert any("four chambers" in t for t in found) and not any("pumps blood" in t for t in found)


def test_unreachable_server_or_wrong_key_is_a_clear_error(tiny_bert, tmp_path, edge_server, monkeypatch):
    import socket

    from typer.testing import CliRunner

    from rag_kit import DOCS
    from ragtune.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    _, url = edge_server
    monkeypatch.setenv("QDRANT_KEY", "not-the-key")
    for server, expected in ((dead, "could not be reached while opening collection 'chunks'"),
                             (url, "answered 401 Unauthorized while opening collection 'chunks'")):
        res = CliRunner().invoke(app, ["rag", "ingest", str(docs), "-o", str(tmp_path / "kb"), "--set",
                                       f"embedder.model={tiny_bert}", "--set", f"store.url={server}",
                                       "--set", "store.api_key_env=QDRANT_KEY"])
        assert res.exit_code == 1, res.output
        assert expected in " ".join(res.output.split()) and "Traceback" not in res.output


def test_the_engine_keeps_the_collection_across_a_server_restart(tmp_path):
    import numpy as np

    from qdrant_edge_kit import edge_qdrant_app
    from ragtune.rag.store import ChunkStore

    vectors = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    chunks = [{"chunk_id": f"a.txt::{i}"} for i in range(5)]
    hits = []
    for restart in range(2):
        q = edge_qdrant_app(tmp_path / "qdrant")
        with Server(q.asgi) as url, ChunkStore.connect(url, "kept", dim=8) as store:
            if restart == 0:
                store.upsert(chunks, vectors)
            hits.append(store.search(vectors[2], k=5))
        q.close()
    assert hits[1] == hits[0] and hits[0][0][0] == "a.txt::2" and len(hits[0]) == 5
