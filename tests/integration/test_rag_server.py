"""The HTTP API over a tiny KB and a tiny trained answerer: answers with citations, refusals, 4xx, load."""

from __future__ import annotations

import asyncio
import json

import pytest

from rag_kit import ANSWER, ANSWERABLE, UNANSWERABLE, Server, ask_config, serve_config, shared_parts


@pytest.fixture(scope="module")
def rag_parts(tiny_bert, tiny_lm, tmp_path_factory):
    return shared_parts(tmp_path_factory, tiny_bert, tiny_lm)


def test_pipeline_answers_cites_and_refuses(rag_parts):
    from ragtune.rag.ask import RagPipeline

    kb, model = rag_parts
    with RagPipeline.open(ask_config(kb, model)) as rag:
        r = rag.ask(ANSWERABLE)
        assert r["answer"] == ANSWER and not r["refused"]
        assert [c["source"] for c in r["citations"]] == ["heart.txt"]
        cited = [c for c in r["contexts"] if c["cited"]]
        assert cited and ANSWER in cited[0]["text"]
        ex = cited[0]["excerpt"]
        assert ex["text"][ex["start"]:ex["end"]] == cited[0]["text"]
        no = rag.ask(UNANSWERABLE)
        assert no["refused"] and no["citations"] == [] and no["refusal_reason"] in {"text", "likelihood"}


def test_cli_ask_json(rag_parts):
    from typer.testing import CliRunner

    from ragtune.cli import app

    kb, model = rag_parts
    res = CliRunner().invoke(app, ["rag", "ask", str(kb), ANSWERABLE, "--json", "--model", str(model),
                                   "--set", "answerer.threads=1", "--top-k", "2"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert set(body) >= {"answer", "refused", "citations", "contexts"}
    assert body["answer"] == ANSWER and body["citations"][0]["source"] == "heart.txt"
    assert {"chunk_id", "source", "score"} <= set(body["citations"][0])


@pytest.fixture(scope="module")
def server(rag_parts):
    from ragtune.rag.ask import RagPipeline
    from ragtune.rag.server import create_app

    kb, model = rag_parts
    cfg = serve_config(kb, model, "max_body_bytes=2048", "max_concurrency=1")
    with RagPipeline.open(cfg) as rag, Server(create_app(rag, cfg)[0]) as url:
        yield url


def test_health_openapi_and_page(server):
    import httpx

    with httpx.Client(base_url=server, timeout=30) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["chunks"] >= 3
        schema = c.get("/openapi.json").json()
        assert "/ask" in schema["paths"] and "post" in schema["paths"]["/ask"]
        page = c.get("/")
        assert page.status_code == 200 and "Ask your documents" in page.text
        assert c.get("/../../etc/passwd").status_code == 404
        assert c.get("/static/../kb.json").status_code == 404


def test_ask_and_client_errors(server):
    import httpx

    with httpx.Client(base_url=server, timeout=60) as c:
        ok = c.post("/ask", json={"question": ANSWERABLE})
        assert ok.status_code == 200 and ok.json()["answer"] == ANSWER
        assert c.post("/ask", json={"question": UNANSWERABLE}).json()["refused"] is True

        empty = c.post("/ask", json={"question": "   "})
        assert empty.status_code == 422 and "question is empty" in empty.json()["detail"]
        missing = c.post("/ask", json={})
        assert missing.status_code == 422 and "question" in missing.json()["detail"]
        bad = c.post("/ask", content=b'{"question": "unterminated', headers={"content-type": "application/json"})
        assert bad.status_code == 400 and "malformed JSON" in bad.json()["detail"]
        big = c.post("/ask", json={"question": "x" * 5000})
        assert big.status_code == 413 and "limit is 2048 bytes" in big.json()["detail"]

        def chunks():
            for _ in range(10):
                yield b"x" * 400

        streamed = c.post("/ask", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert c.post("/ask", json={"question": "q", "top_k": 0}).status_code == 422
        assert c.get("/health").json()["status"] == "ok"  # still serving after the errors


def test_200_concurrent_requests_none_lost(server):
    import httpx

    async def load() -> list[tuple[int, dict]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server, timeout=300, limits=limits) as c:
            async def one(i: int):
                q = ANSWERABLE if i % 2 == 0 else UNANSWERABLE
                r = await c.post("/ask", json={"question": q})
                return i, r.status_code, r.json()

            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), timeout=600)

    results = asyncio.run(load())
    assert len(results) == 200
    assert sorted(i for i, _, _ in results) == list(range(200))
    assert all(code == 200 for _, code, _ in results)
    assert all(body["answer"] == ANSWER for i, _, body in results if i % 2 == 0)
    assert all(body["refused"] for i, _, body in results if i % 2 == 1)
    import httpx as h

    health = h.get(f"{server}/health", timeout=30).json()
    assert health["busy"] == 0 and health["waiting"] == 0 and health["served"] >= 200
