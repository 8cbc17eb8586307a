"""`ragtune rag serve` under load: N concurrent requests, a third of them garbage or oversized.

    python benchmarks/server_load.py                       # tiny random embedder + tiny trained answerer (tests/)
    python benchmarks/server_load.py --n 400 --max-waiting 64

Builds the test suite's tiny knowledge base and answerer (tests/rag_kit.py: a 2-layer BERT embedder and a
2-layer Qwen2 answerer trained to answer one question and refuse another), serves it with uvicorn on an
ephemeral port with a bounded queue, fires the requests at once (tests/load_kit.py), and prints what every kind
of request got, the peak queue length against its bound, and p50/p99 latency of the valid requests (including
their waits after 503 + Retry-After).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--garbage-every", type=int, default=3)
    ap.add_argument("--max-concurrency", type=int, default=1)
    ap.add_argument("--max-waiting", type=int, default=32)
    ap.add_argument("--retry-after", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    from load_kit import run_load
    from rag_kit import ANSWERABLE, UNANSWERABLE, Server, build_kb, serve_config, train_tiny_answerer
    from ragtune.rag.ask import RagPipeline
    from ragtune.rag.server import create_app
    from tiny_bert import build_tiny_bert
    from tiny_lm import build_tiny_lm

    with tempfile.TemporaryDirectory(prefix="server-load.") as tmp:
        root = Path(tmp)
        bert, lm = build_tiny_bert(root / "bert"), build_tiny_lm(root / "lm")
        kb = build_kb(root / "kb", bert)
        model = train_tiny_answerer(lm, kb, root / "answerer")
        cfg = serve_config(
            kb,
            model,
            f"max_concurrency={args.max_concurrency}",
            f"max_waiting={args.max_waiting}",
            f"retry_after_s={args.retry_after}",
            f"answerer.threads={args.threads}",
        )
        with RagPipeline.open(cfg) as rag, Server(create_app(rag, cfg)[0]) as url:
            stats = asyncio.run(run_load(url, [ANSWERABLE, UNANSWERABLE], n=args.n, garbage_every=args.garbage_every))
    valid = [r for r in stats["results"] if r["kind"] == "valid"]
    garbage = [r for r in stats["results"] if r["kind"] == "garbage"]
    h = stats["health"]
    print(
        f"{args.n} concurrent requests ({len(valid)} valid, {len(garbage)} garbage/oversized), "
        f"max_concurrency {args.max_concurrency}, max_waiting {args.max_waiting}, wall {stats['wall_s']:.1f} s"
    )
    print("| request | count | status |")
    print("|---|---:|---|")
    for name, codes in stats["garbage_by_kind"].items():
        n = sum(r["name"] == name for r in garbage)
        print(f"| {name} | {n} | {', '.join(map(str, codes))} |")
    print(f"| valid (first answer) | {len(valid)} | {stats['valid_first']} |")
    print(f"| valid (final, after Retry-After) | {len(valid)} | {stats['valid_final']} |")
    print(
        f"final 5xx: {sum(r['status'] >= 500 for r in stats['results'])}; "
        f"peak waiting {h['waiting_peak']} (bound {args.max_waiting}); served {h['served']}; "
        f"valid requests retried after 503: {stats['retried']}"
    )
    print(
        f"valid latency p50 {stats['p50_s'] * 1000:.0f} ms, p99 {stats['p99_s'] * 1000:.0f} ms; "
        f"garbage p99 {stats['garbage_p99_s'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
