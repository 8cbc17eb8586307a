"""A tiny knowledge base and a tiny answerer trained to answer one question and refuse another.

    kb = build_kb(tmp / "kb", tiny_bert)
    model = train_tiny_answerer(tiny_lm, kb, tmp / "answerer")   # a save_pretrained folder

The answerer is the tiny random Qwen2 LM fine-tuned (full weights, plain torch, ~seconds) on exactly the prompts
the pipeline builds for ANSWERABLE and UNANSWERABLE, with targets "blood" and the first trained refusal phrasing,
so tests see a real model answer, cite and refuse through the whole stack.
"""

from __future__ import annotations

from pathlib import Path

ANSWERABLE = "What does the heart pump?"
ANSWER = "blood"
UNANSWERABLE = "Who won the chess match?"

DOCS = {
    "heart.txt": "The heart pumps blood through the body.\n\nIt beats about seventy times a minute.",
    "liver.md": "# Liver\n\nThe liver filters toxins and stores glycogen.",
    "skin.html": "<html><body><p>The skin is the largest organ.</p><p>It protects the body.</p></body></html>",
}


def build_kb(kb: Path, tiny_bert: Path, *extra: str, write_docs: bool = True) -> Path:
    """Ingest DOCS (written to `<kb>-docs`; `write_docs=False` re-ingests what is there) into `kb`."""
    from ragtune.config import load_config
    from ragtune.rag.ingest import IngestConfig, ingest

    docs = kb.parent / f"{kb.name}-docs"
    docs.mkdir(parents=True, exist_ok=True)
    if write_docs:
        for name, text in DOCS.items():
            (docs / name).write_text(text, encoding="utf-8")
    ingest(load_config(IngestConfig, None, [f"folder={docs}", f"out={kb}", f"embedder.model={tiny_bert}",
                                            "chunk.max_tokens=40", "chunk.overlap_tokens=0", *extra]))
    return kb


def ask_config(kb: Path, model: Path, *extra: str):
    from ragtune.config import load_config
    from ragtune.rag.ask import AskConfig

    return load_config(AskConfig, None, [f"kb={kb}", f"answerer.model={model}", "answerer.max_new_tokens=24",
                                         "answerer.threads=1", "retrieve.top_k=2", *extra])


def train_tiny_answerer(tiny_lm: Path, kb: Path, out: Path, steps: int = 120) -> Path:
    import torch

    from ragtune.rag.ask import RagPipeline

    with RagPipeline.open(ask_config(kb, tiny_lm)) as rag:
        a = rag.answerer
        pairs = []
        for question, target in ((ANSWERABLE, ANSWER), (UNANSWERABLE, a.refusals["en"][0])):
            texts = [h.chunk["text"] for h in rag.retrieve(question)]
            prompt = a.prompt(question, texts, "en").text
            p_ids = a.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            t_ids = a.tokenizer(target, add_special_tokens=False)["input_ids"] + [a.tokenizer.eos_token_id]
            pairs.append((p_ids, t_ids))
        model, tokenizer = a.model, a.tokenizer
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.0
        for p_ids, t_ids in pairs:
            ids = torch.tensor([p_ids + t_ids])
            labels = torch.tensor([[-100] * len(p_ids) + t_ids])
            loss = loss + model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def shared_parts(tmp_path_factory, tiny_bert: Path, tiny_lm: Path) -> tuple[Path, Path]:
    """(kb, trained answerer) built once per test session and reused by every module that needs them."""
    root = tmp_path_factory.getbasetemp() / "rag-kit"
    kb, model = root / "kb", root / "answerer"
    if not (model / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        build_kb(kb, tiny_bert)
        train_tiny_answerer(tiny_lm, kb, model)
    return kb, model


class Server:
    """uvicorn in a thread on 127.0.0.1 (an ephemeral port); stopped on exit."""

    def __init__(self, asgi):
        import threading

        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=0, log_level="warning",
                                                   backlog=512))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        import time

        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise TimeoutError("the server did not start")
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_config(kb: Path, model: Path, *extra: str):
    from ragtune.config import load_config
    from ragtune.rag.server import ServeConfig

    return load_config(ServeConfig, None, [f"kb={kb}", f"answerer.model={model}", "answerer.max_new_tokens=24",
                                           "answerer.threads=1", "retrieve.top_k=2", *extra])
