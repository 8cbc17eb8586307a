"""The HTTP API over a tiny KB and a tiny trained answerer: answers with citations, refusals, 4xx, load."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from load_kit import GARBAGE, run_load
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


@pytest.fixture(scope="module")
def loaded_server(rag_parts):
    """The real pipeline behind a bounded queue: 1 request answered at a time, at most 32 waiting."""
    from ragtune.rag.ask import RagPipeline
    from ragtune.rag.server import create_app

    kb, model = rag_parts
    cfg = serve_config(kb, model, "max_concurrency=1", "max_waiting=32")
    with RagPipeline.open(cfg) as rag, Server(create_app(rag, cfg)[0]) as url:
        yield url


@pytest.mark.parametrize("name", [name for name, _ in GARBAGE])
def test_each_hostile_request_gets_4xx_and_the_server_keeps_serving(loaded_server, name):
    import httpx

    body = dict(GARBAGE)[name]
    with httpx.Client(base_url=loaded_server, timeout=60) as c:
        r = c.post("/ask", content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        assert r.json()["detail"]  # a message saying what is wrong
        assert c.post("/ask", json={"question": ANSWERABLE}).json()["answer"] == ANSWER


def test_200_concurrent_requests_a_third_hostile(loaded_server):
    """Every hostile request 4xx, every valid one 200 (after Retry-After when the queue is full), none 5xx, and
    never more than max_waiting requests waiting."""
    stats = asyncio.run(run_load(loaded_server, [ANSWERABLE, UNANSWERABLE], n=200, garbage_every=3))
    valid = [r for r in stats["results"] if r["kind"] == "valid"]
    assert len(stats["results"]) == 200 and len(valid) == 134
    assert stats["valid_final"] == {200: 134}, stats["valid_final"]
    assert all(400 <= code < 500 for code in stats["garbage"]), stats["garbage_by_kind"]
    assert all(r["body"]["answer"] == ANSWER for r in valid if r["question"] == ANSWERABLE)
    assert all(r["body"]["refused"] for r in valid if r["question"] == UNANSWERABLE)
    health = stats["health"]
    assert health["waiting_peak"] <= 32 and health["busy"] == 0 and health["waiting"] == 0
    assert stats["valid_first"].get(503, 0) > 0  # the bound was reached, and held


def test_abandoned_requests_are_not_computed():
    """Clients that give up while waiting leave the queue; only what someone still waits for is computed."""
    import threading
    import time

    import httpx

    from ragtune.rag.server import ServeConfig, create_app

    calls = []

    class Slow:
        kb = [1, 2, 3]

        def ask(self, question, top_k=None):
            calls.append(question)
            time.sleep(1.0)
            return {"answer": question}

    cfg = ServeConfig(kb="kb", max_concurrency=1)
    with Server(create_app(Slow(), cfg)[0]) as url:
        first = threading.Thread(target=lambda: httpx.post(f"{url}/ask", json={"question": "first"}, timeout=30))
        first.start()
        time.sleep(0.3)

        async def abandon():
            async with httpx.AsyncClient(base_url=url, timeout=0.3) as c:
                async def one(i):
                    with contextlib.suppress(httpx.TimeoutException):
                        await c.post("/ask", json={"question": f"gone {i}"})

                await asyncio.gather(*(one(i) for i in range(20)))

        asyncio.run(abandon())
        first.join()
        time.sleep(0.5)  # long enough for the next waiting request to start, were it computed
        computed = list(calls)
        deadline = time.time() + 10
        while (h := httpx.get(f"{url}/health").json()).get("abandoned", 0) < 20 and time.time() < deadline:
            time.sleep(0.1)
    assert computed == ["first"], computed
    assert h["abandoned"] == 20 and h["waiting"] == 0 and h["busy"] == 0


def test_a_request_read_after_its_client_left_is_not_computed_even_with_a_free_slot():
    """A busy event loop can read a request only after its client gave up; a free slot must not compute it."""
    from ragtune.rag.server import ServeConfig, create_app

    calls = []

    class Echo:
        kb = [1]

        def ask(self, question, top_k=None):
            calls.append(question)
            return {"answer": question}

    asgi, app = create_app(Echo(), ServeConfig(kb="kb", max_concurrency=1))

    async def post(question: str, client_left: bool) -> int:
        body = json.dumps({"question": question}).encode()
        sent, left = [], asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop(0)
            if client_left:
                return {"type": "http.disconnect"}
            await left.wait()  # a client still there: nothing more arrives
            return {"type": "http.disconnect"}

        async def send(msg):
            sent.append(msg)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/ask", "raw_path": b"/ask", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await asgi(scope, receive, send)
        left.set()
        return next(m["status"] for m in sent if m["type"] == "http.response.start")

    async def both():
        return await post("gone", client_left=True), await post("here", client_left=False)

    assert asyncio.run(both()) == (499, 200)
    assert calls == ["here"]


def test_docs_need_no_cdn_and_health_shows_names_not_paths(loaded_server, rag_parts):
    import httpx

    kb, model = rag_parts
    with httpx.Client(base_url=loaded_server, timeout=30) as c:
        assert c.get("/docs").status_code == 404 and c.get("/redoc").status_code == 404
        for path in ("/", "/openapi.json"):
            assert "cdn." not in c.get(path).text and "jsdelivr" not in c.get(path).text
        h = c.get("/health").json()
    assert h["model"] == model.name and h["kb"] == kb.name
    assert str(model.parent) not in str(h) and str(kb.parent) not in str(h)


def test_serve_on_a_busy_port_exits_1_before_loading_anything(rag_parts):
    import socket

    from typer.testing import CliRunner

    from ragtune.cli import app

    kb, model = rag_parts
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["rag", "serve", str(kb), "--port", str(port), "--set",
                                       f"answerer.model={model}", "--set", "answerer.threads=1"])
    assert res.exit_code == 1, res.output
    assert f"cannot listen on 127.0.0.1:{port}" in res.output and "serving" not in res.output
