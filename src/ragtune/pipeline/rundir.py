"""Run directory: stages keyed by hash, outputs published atomically, resumable.

A stage's key is the hash of its resolved config, the keys of the stages it reads from,
the content of external input files, and the ragtune version. A stage reruns when its
key changes, and only then: not "the folder exists, so skip". Outputs are written into
a temporary folder and renamed into place when the stage succeeds, so a crash or Ctrl-C
never leaves a half-written stage that a later run would trust; the next run resumes at
the first stage whose key is missing or different. A stage interrupted and restarted with the same key
gets its temporary folder back, so its own checkpoints (generate's finished documents, a trainer's
checkpoints) carry on instead of starting over.

One run at a time per directory: `RunDir` takes an flock on `<root>/.lock` (released when the process ends,
however it ends) and a second process gets RunDirBusyError naming the holder's pid.

    with RunDir("runs/demo") as rd:
        res = rd.stage("round-0/generate", cfg_dict, lambda out: generate(out), upstream=[sft.key])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune import __version__
from ragtune.atomic import write_json
from ragtune.data.jsonl import read_json

BIG_FILE = 64 * 1024 * 1024
log = logging.getLogger("ragtune.run")


def hash_path(path: str | Path) -> str:
    """Content hash of a file or folder (big files by size + mtime, so model weights cost nothing)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not path.exists():
        raise FileNotFoundError(f"stage input {path} does not exist")
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        st = f.stat()
        if st.st_size > BIG_FILE:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            h.update(f.read_bytes())
    return h.hexdigest()


def stage_key(config: Any, upstream: Iterable[str] = (), inputs: Iterable[str | Path] = ()) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for k in upstream:
        h.update(k.encode())
    for p in inputs:
        h.update(hash_path(p).encode())
    h.update(__version__.encode())
    return h.hexdigest()[:20]


@dataclass
class StageResult:
    name: str
    key: str
    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    ran: bool = False
    """True when the stage ran now; False when its outputs were reused."""
    cpu_seconds: float | None = None
    """CPU time of this process while the stage ran (all threads; None for entries written before it was kept)."""


class RunDirBusyError(ValueError):
    """Another process holds the run directory's lock."""


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._lock()
        self.manifest_path = self.root / "manifest.json"
        self.manifest: dict[str, Any] = {"ragtune": __version__, "stages": {}}
        if self.manifest_path.exists():
            try:
                self.manifest = read_json(self.manifest_path, hint="delete the run directory's manifest.json to "
                                          "rerun every stage, or restore it")
            except BaseException:
                self.close()  # an unreadable manifest must not leave the directory locked
                raise
        self.executed: list[str] = []
        self.expected: dict[str, float] = {}
        """Stage name -> expected seconds (the run's time budget), said when the stage starts."""

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no protection between processes
            return
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusyError(f"{self.root}: run directory in use by another `ragtune run` (pid {holder}); wait "
                                  f"for it to finish or stop it (kill {holder}), or pass another out=") from None
        os.ftruncate(fd, 0)  # a lock file left by a process that died names a dead pid: it is ours now
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the run directory's lock (process exit releases it too)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor drops the flock
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _save(self) -> None:
        write_json(self.manifest_path, self.manifest)

    def stage(self, name: str, config: Any, fn: Callable[[Path], dict[str, Any] | None],
              upstream: Iterable[str] = (), inputs: Iterable[str | Path] = ()) -> StageResult:
        """Run `fn(out_dir)` unless a finished stage with the same key exists; `fn` returns its metrics."""
        key = stage_key(config, upstream, inputs)
        out = self.root / name
        entry = self.manifest["stages"].get(name)
        if entry and entry.get("key") == key and entry.get("status") == "done" and out.exists():
            log.info("%-24s reused (key %s, ran %.0f s before)", name, key[:8], entry.get("seconds", 0.0))
            return StageResult(name, key, out, entry.get("metrics", {}), entry.get("seconds", 0.0), ran=False,
                               cpu_seconds=entry.get("cpu_seconds"))
        tmp = out.with_name(f".{out.name}.tmp")
        if entry and entry.get("key") == key and entry.get("status") == "running" and tmp.is_dir():
            # the same stage, same inputs, interrupted: its partial outputs and checkpoints are what it resumes from
            log.info("%-24s resuming in %s (delete it to start the stage over)", name, tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.manifest["stages"][name] = {"key": key, "status": "running", "started": time.time()}
        self._save()
        log.info("%-24s running (key %s%s)", name, key[:8],
                 f", expected ~{self.expected[name]:.0f} s" if name in self.expected else "")
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics = fn(tmp) or {}
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        log.info("%-24s done in %.1f s", name, seconds)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        metrics = _moved(metrics, str(tmp), str(out))  # paths the stage reported inside its working folder
        self.manifest["stages"][name] = {"key": key, "status": "done", "seconds": round(seconds, 2),
                                         "cpu_seconds": round(cpu_seconds, 2), "metrics": metrics,
                                         "outputs": sorted(p.name for p in out.iterdir()),
                                         "finished": time.time()}
        self._save()
        self.executed.append(name)
        return StageResult(name, key, out, metrics, seconds, ran=True, cpu_seconds=round(cpu_seconds, 2))


def _moved(value: Any, old: str, new: str) -> Any:
    """`value` with every string path under `old` rewritten to the same path under `new`."""
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    return value
