"""`ragtune rag serve KB`: the HTTP API and the web page.

    POST /ask      {"question": "...", "top_k": 3?}  -> the JSON of `RagPipeline.ask`
    GET  /health   {"status": "ok", "chunks": N, "model": ..., "adapter": ..., "busy": n, "waiting": n}
    GET  /         the web page (a static file shipped inside the package; no user path is ever served)
    GET  /docs     OpenAPI UI; /openapi.json the schema

Limits: request bodies over `max_body_bytes` get 413 (checked on Content-Length and while streaming); an empty
or over-long question 422 with a message naming the field; malformed JSON 400. The model runs at most
`max_concurrency` requests at a time in worker threads; the others wait on a semaphore (none is dropped; with
`max_waiting` set, requests beyond that many waiting get 503 instead of queueing without bound).
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from pydantic import BaseModel, Field, field_validator

from ragtune.rag.ask import AskConfig


class ServeConfig(AskConfig):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(16_384, ge=256)
    max_question_chars: int = Field(2_000, ge=1)
    max_concurrency: int = Field(1, ge=1)
    """Requests the model answers at the same time (CPU: 1)."""
    max_waiting: int | None = Field(None, ge=1)
    """Requests allowed to wait for the model; None = no limit (all queue)."""


class AskRequest(BaseModel):
    question: str = Field(description="The question, in English or Chinese.", examples=["Who was Rollo?"])
    top_k: int | None = Field(None, ge=1, le=20, description="Passages given to the answerer (default: config).")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError('the question is empty; send {"question": "your question"}')
        return v.strip()


class BodyLimit:
    """ASGI middleware: 413 for bodies over `limit` bytes, by Content-Length or counted while reading."""


    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._reject(send, int(length))
        # read the whole body first (it is small by definition), so an oversized stream is refused before the
        # app sees any of it; then replay it to the app
        body, more = bytearray(), True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > self.limit:
                return await self._reject(send, len(body))
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send, size: int) -> None:
        body = json.dumps({"detail": f"request body too large: {size} bytes; the limit is {self.limit} bytes "
                                     "(max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _clear_errors(errors: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        out.append(f"{where}: {e.get('msg', 'invalid').removeprefix('Value error, ')}")
    return out


def create_app(pipeline, cfg: ServeConfig):
    """The FastAPI app around an open RagPipeline (anything with `.ask(question, top_k)` and `.kb`)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="ragtune", version=_version(),
                  description="Grounded answers with citations, or an explicit refusal, from a ragtune knowledge base.")
    gate = asyncio.Semaphore(cfg.max_concurrency)
    state = {"busy": 0, "waiting": 0, "served": 0}
    page = resources.files("ragtune.rag").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(status_code=400, content={"detail": "malformed JSON body: " + "; ".join(
                str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors) + '; send {"question": "..."}'})
        return JSONResponse(status_code=422, content={"detail": "; ".join(_clear_errors(errors)),
                                                      "errors": _clear_errors(errors)})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "chunks": len(pipeline.kb), "model": cfg.answerer.model,
                "adapter": str(cfg.answerer.adapter) if cfg.answerer.adapter else None, **state}

    @app.post("/ask")
    async def ask(req: AskRequest) -> dict[str, Any]:
        if len(req.question) > cfg.max_question_chars:
            return JSONResponse(status_code=422, content={  # type: ignore[return-value]
                "detail": f"question: {len(req.question)} characters; the limit is {cfg.max_question_chars}"})
        if cfg.max_waiting is not None and state["waiting"] >= cfg.max_waiting:
            return JSONResponse(status_code=503, content={  # type: ignore[return-value]
                "detail": f"{state['waiting']} requests are waiting for the model; retry shortly"},
                headers={"Retry-After": "1"})
        state["waiting"] += 1
        try:
            await gate.acquire()
        finally:
            state["waiting"] -= 1
        state["busy"] += 1
        try:
            result = await run_in_threadpool(pipeline.ask, req.question, req.top_k)
        finally:
            state["busy"] -= 1
            gate.release()
        state["served"] += 1
        return result

    return BodyLimit(app, cfg.max_body_bytes), app


def _version() -> str:
    from ragtune import __version__

    return __version__


def serve(cfg: ServeConfig, log=print) -> None:
    """Open the KB and the answerer once, then serve until interrupted."""
    import uvicorn

    from ragtune.rag.ask import RagPipeline

    with RagPipeline.open(cfg) as rag:
        asgi, _ = create_app(rag, cfg)
        log(f"serving {cfg.kb} ({len(rag.kb)} chunks) on http://{cfg.host}:{cfg.port}  (API docs: /docs)")
        uvicorn.run(asgi, host=cfg.host, port=cfg.port, log_level="warning")
