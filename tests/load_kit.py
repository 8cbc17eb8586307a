"""Concurrent load against `ragtune rag serve`: valid questions mixed with garbage and oversized requests.

    stats = asyncio.run(run_load(url, valid=["q1", "q2"], n=200, garbage_every=3))
    stats["valid_final"]      # {200: 133}: every valid request ends in 200 (503s are retried after Retry-After)
    stats["garbage"]          # {400: .., 413: .., 422: ..}: every hostile one is refused with 4xx

Used by the bounded test in tests/integration/test_rag_server.py and by benchmarks/server_load.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from typing import Any

# (name, body bytes, content-type); the status each must get is checked by the caller (any 4xx, never 5xx)
GARBAGE: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"question": "unterminated'),
    ("not UTF-8", b'{"question": "caf\xe9 au lait?"}'),
    ("oversized body", json.dumps({"question": "x" * 40_000}).encode()),
    ("empty question", b'{"question": "   "}'),
    ("unknown field", b'{"question": "What does the heart pump?", "admin": true}'),
    ("1,999 emoji", json.dumps({"question": "\U0001f600" * 1999}, ensure_ascii=False).encode()),
    ("1,998 Chinese characters", json.dumps({"question": "济州岛属于哪个国家" * 222}, ensure_ascii=False).encode()),
    ("lone surrogate", b'{"question": "\\ud800"}'),
    ("over max_question_chars", json.dumps({"question": "why " * 600}).encode()),
    ("top_k out of range", b'{"question": "What does the heart pump?", "top_k": 0}'),
    ("question not a string", b'{"question": 123}'),
    ("a JSON array", b'["What does the heart pump?"]'),
]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def run_load(
    url: str, valid: list[str], n: int = 200, garbage_every: int = 3, max_retries: int = 50, timeout_s: float = 600
) -> dict[str, Any]:
    """`n` requests at once; every `garbage_every`-th is hostile. Valid ones honour 503 + Retry-After."""
    import httpx

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:

        async def one(i: int) -> dict[str, Any]:
            start = time.perf_counter()
            if i % garbage_every == garbage_every - 1:
                name, body = GARBAGE[(i // garbage_every) % len(GARBAGE)]
                r = await client.post("/ask", content=body, headers={"content-type": "application/json"})
                return {
                    "i": i,
                    "kind": "garbage",
                    "name": name,
                    "status": r.status_code,
                    "first": r.status_code,
                    "seconds": time.perf_counter() - start,
                    "retries": 0,
                }
            question = valid[i % len(valid)]
            first, retries = None, 0
            while True:
                r = await client.post("/ask", json={"question": question})
                first = first or r.status_code
                if r.status_code != 503 or retries >= max_retries:
                    break
                retries += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            return {
                "i": i,
                "kind": "valid",
                "question": question,
                "status": r.status_code,
                "first": first,
                "retries": retries,
                "seconds": time.perf_counter() - start,
                "body": body,
            }

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - t0
        health = (await client.get("/health")).json()
    valid_rows = [r for r in results if r["kind"] == "valid"]
    garbage_rows = [r for r in results if r["kind"] == "garbage"]
    lat = [r["seconds"] for r in valid_rows if r["status"] == 200]
    return {
        "results": results,
        "wall_s": wall,
        "health": health,
        "valid_final": dict(Counter(r["status"] for r in valid_rows)),
        "valid_first": dict(Counter(r["first"] for r in valid_rows)),
        "retried": sum(r["retries"] > 0 for r in valid_rows),
        "garbage": dict(Counter(r["status"] for r in garbage_rows)),
        "garbage_by_kind": {
            name: sorted({r["status"] for r in garbage_rows if r["name"] == name}) for name, _ in GARBAGE
        },
        "garbage_p99_s": percentile([r["seconds"] for r in garbage_rows], 0.99),
        "p50_s": statistics.median(lat) if lat else float("nan"),
        "p99_s": percentile(lat, 0.99),
    }
