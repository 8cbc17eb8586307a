"""Corpus encoding across processes: one worker process per device, each with its own copy of the encoder.

    with WorkerPool(partial(dense_worker, cfg_dict), ["cuda:0", "cuda:1"]) as pool:
        for emb in pool.imap(chunks):         # results in the order of `chunks`
            ...

A worker builds its encoder once (`factory(device, threads)` returns `encode(texts) -> result`) and then encodes
the chunks it pulls from a shared queue, so fast workers take more of them. Results come back in input order, at
most `2 x workers` chunks ahead of the reader, so the caller can write them into one file chunk by chunk (and
resume) exactly as a single process would. The workers are spawned (never forked: torch and OpenMP do not survive
a fork) and run ragtune's own encode functions, so a pooled encoding equals the one-process one up to floating
point (batches are the same chunks, only other cores add them up).
"""

from __future__ import annotations

import os
import queue
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Factory = Callable[[str, int], Callable[[list[str]], Any]]


class _Failure:
    def __init__(self, device: str, text: str):
        self.device, self.text = device, text


def _serve(factory: Factory, device: str, threads: int, inq, outq) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        encode = factory(device, threads)
    except Exception:  # reported to the parent, which raises it
        outq.put((-1, _Failure(device, traceback.format_exc())))
        return
    while (item := inq.get()) is not None:
        i, texts = item
        try:
            outq.put((i, encode(texts)))
        except Exception:
            outq.put((i, _Failure(device, traceback.format_exc())))


def threads_per_worker(devices: list[str]) -> int:
    """CPU threads of each worker: the cores shared out among the CPU workers (GPU workers take 1)."""
    cpu = sum(d == "cpu" for d in devices)
    return max(1, (os.cpu_count() or 1) // cpu) if cpu else 1


class WorkerPool:
    def __init__(self, factory: Factory, devices: list[str], threads: int | None = None):
        import multiprocessing as mp

        if not devices:
            raise ValueError("a worker pool needs at least one device")
        ctx = mp.get_context("spawn")
        self.devices = list(devices)
        self.inq, self.outq = ctx.Queue(), ctx.Queue()
        n = threads or threads_per_worker(self.devices)
        self.procs = [ctx.Process(target=_serve, args=(factory, d, n, self.inq, self.outq), daemon=True)
                      for d in self.devices]
        for p in self.procs:
            p.start()

    def _result(self) -> tuple[int, Any]:
        while True:
            try:
                i, out = self.outq.get(timeout=1.0)
            except queue.Empty:
                dead = [f"{d} (exit code {p.exitcode})" for d, p in zip(self.devices, self.procs, strict=True)
                        if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"encoding worker(s) died: {', '.join(dead)}") from None
                continue
            if isinstance(out, _Failure):
                raise RuntimeError(f"the encoding worker on {out.device} failed:\n{out.text}")
            return i, out

    def imap(self, chunks: Iterable[list[str]]) -> Iterator[Any]:
        """encode(chunk) for every chunk, in order, computed by the workers."""
        source = enumerate(chunks)
        sent, done, ahead = 0, 0, 2 * len(self.procs)
        waiting: dict[int, Any] = {}

        def submit() -> bool:
            nonlocal sent
            item = next(source, None)
            if item is None:
                return False
            self.inq.put(item)
            sent += 1
            return True

        while sent < ahead and submit():
            pass
        while done < sent:
            while done not in waiting:
                i, out = self._result()
                waiting[i] = out
            yield waiting.pop(done)
            done += 1
            submit()

    def close(self) -> None:
        for _ in self.procs:
            self.inq.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunks_of(texts: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(texts), size):
        yield texts[start:start + size]
