"""`ragtune rag serve KB`: the HTTP API and the web page.

    POST /ask          {"question": "...", "top_k": 3?}  -> the JSON of `RagPipeline.ask`
    GET  /health       {"status": "ok", "kb": name, "chunks": N, "model": name, "adapter": name, "busy": n,
                        "waiting": n, "waiting_peak": n, "served": n, "abandoned": n}
    GET  /             the web page (a static file shipped inside the package; no user path is ever served)
    GET  /openapi.json the schema (no Swagger UI: it would load its scripts from a CDN)

Limits: request bodies over `max_body_bytes` get 413 (checked on Content-Length and while streaming); a body that
is not UTF-8 or not JSON 400; unknown fields, an empty question, one over `max_question_chars`, or one that alone
exceeds the answerer's prompt budget in tokens 422 with a message naming the field (invalid code points such as
lone surrogates are removed first). The model runs at most `max_concurrency` requests at a time in worker
threads; up to `max_waiting` more wait for it and the rest get 503 with Retry-After. A request whose client
disconnects while waiting leaves the queue without being computed. /health shows names, never local paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request  # module level: FastAPI resolves the endpoint's annotations here

from ragtune.config import ConfigError
from ragtune.rag.ask import AskConfig
from ragtune.rag.question import PromptBudget, QuestionError, clean_question


class ServeConfig(AskConfig):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(16_384, ge=256)
    max_question_chars: int = Field(2_000, ge=1)
    max_concurrency: int = Field(1, ge=1)
    """Requests the model answers at the same time (CPU: 1)."""
    max_waiting: int = Field(64, ge=0)
    """Requests allowed to wait for the model; more get 503 with Retry-After (0 = only those being answered)."""
    retry_after_s: int = Field(2, ge=1)
    """Retry-After sent with a 503 when the queue is full."""


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="The question, in English or Chinese.", examples=["Who was Rollo?"])
    top_k: int | None = Field(None, ge=1, le=20, description="Passages given to the answerer (default: config).")

    @field_validator("question")
    @classmethod
    def _clean(cls, v: str) -> str:
        return clean_question(v)


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
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            return await _send_json(send, 400, {"detail": f"request body is not UTF-8 (byte {e.start}); send UTF-8 "
                                                          'JSON such as {"question": "..."}'})
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send, size: int) -> None:
        await _send_json(send, 413, {"detail": f"request body too large: {size} bytes; the limit is {self.limit} "
                                               "bytes (max_body_bytes)"})


async def _send_json(send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _name(value: Any) -> str | None:
    """What /health may show of a model: a hub name as is, a local folder by its last part only."""
    if value is None:
        return None
    text = str(value)
    return Path(text).name if Path(text).is_absolute() or Path(text).exists() else text


async def _until_disconnected(request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _acquire_unless_gone(gate: asyncio.Semaphore, gone: asyncio.Task) -> bool:
    """Wait for the model; False (and nothing held) when the client went away first."""
    acquire = asyncio.ensure_future(gate.acquire())
    await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not gone.done():
        return True
    if not acquire.done():
        acquire.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await acquire
    if not acquire.cancelled():
        gate.release()
    return False


def _clear_errors(errors: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        out.append(f"{where}: {e.get('msg', 'invalid').removeprefix('Value error, ')}")
    return out


def create_app(pipeline, cfg: ServeConfig):
    """The FastAPI app around an open RagPipeline (anything with `.ask(question, top_k)` and `.kb`)."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="ragtune", version=_version(), docs_url=None, redoc_url=None,
                  description="Grounded answers with citations, or an explicit refusal, from a ragtune knowledge base.")
    gate = asyncio.Semaphore(cfg.max_concurrency)
    state = {"busy": 0, "waiting": 0, "waiting_peak": 0, "served": 0, "abandoned": 0}
    budget = PromptBudget(pipeline.answerer) if getattr(pipeline, "answerer", None) is not None else None
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
        return {"status": "ok", "kb": _name(cfg.kb), "chunks": len(pipeline.kb), "model": _name(cfg.answerer.model),
                "adapter": _name(cfg.answerer.adapter), **state}

    def _unprocessable(message: str) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": f"question: {message}"})

    @app.post("/ask")
    async def ask(req: AskRequest, request: Request) -> dict[str, Any]:
        try:  # everything a question can be refused for is checked here, before it takes a place in the queue
            clean_question(req.question, cfg.max_question_chars)
            if budget is not None:
                budget.check(req.question)
        except QuestionError as e:
            return _unprocessable(str(e))  # type: ignore[return-value]
        if gate.locked() and state["waiting"] >= cfg.max_waiting:
            return JSONResponse(status_code=503, content={  # type: ignore[return-value]
                "detail": f"{state['waiting']} requests are waiting for the model (max_waiting); retry shortly"},
                headers={"Retry-After": str(cfg.retry_after_s)})
        gone = asyncio.ensure_future(_until_disconnected(request))
        try:
            if not gate.locked():
                acquired = await gate.acquire()  # a free slot: taken without suspending, so no one overtakes
                # a request read after its client left (a busy loop) must not be computed either: with the slot
                # held, let the disconnect watcher run once
                await asyncio.sleep(0)
                if gone.done():
                    gate.release()
                    acquired = False
            else:
                state["waiting"] += 1
                state["waiting_peak"] = max(state["waiting_peak"], state["waiting"])
                try:
                    acquired = await _acquire_unless_gone(gate, gone)
                finally:
                    state["waiting"] -= 1
            if not acquired:
                state["abandoned"] += 1
                return JSONResponse(status_code=499, content={"detail": "client closed the request"})  # type: ignore[return-value]
            state["busy"] += 1
            try:
                result = await run_in_threadpool(pipeline.ask, req.question, req.top_k)
            except ValueError as e:  # what the pipeline refuses in a question (QuestionError is one)
                return _unprocessable(str(e))  # type: ignore[return-value]
            finally:
                state["busy"] -= 1
                gate.release()
        finally:
            gone.cancel()
        state["served"] += 1
        return result

    return BodyLimit(app, cfg.max_body_bytes), app


def _version() -> str:
    from ragtune import __version__

    return __version__


def listen(host: str, port: int, backlog: int = 2048):
    """A listening socket on host:port, taken before any model is loaded; ConfigError when it cannot be had."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}; is another server using the port? "
                          "pass another --port (or stop that server)") from None
    sock.set_inheritable(True)
    return sock


def serve(cfg: ServeConfig, log=print) -> None:
    """Take the port, open the KB and the answerer once, then serve until interrupted."""
    import uvicorn

    from ragtune.rag.ask import RagPipeline

    sock = listen(cfg.host, cfg.port)
    try:
        with RagPipeline.open(cfg) as rag:
            asgi, _ = create_app(rag, cfg)
            port = sock.getsockname()[1]
            log(f"serving {cfg.kb} ({len(rag.kb)} chunks) on http://{cfg.host}:{port}  (schema: /openapi.json)")
            server = uvicorn.Server(uvicorn.Config(asgi, host=cfg.host, port=port, log_level="warning"))
            server.run(sockets=[sock])
    finally:
        sock.close()
