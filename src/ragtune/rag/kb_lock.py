"""One writer or many readers per knowledge base, across processes: an advisory lock on KB/.lock.

    with KbLock(kb, exclusive=True, what="rag ingest"):   # ingest: alone, or a clear error naming the holder
        ...
    lock = KbLock(kb, exclusive=False, what="rag serve").acquire()   # readers share it; held until release()

The lock is taken without waiting: a second writer, or a writer while a server reads the KB, gets KbBusyError
naming the pid (and command) that took the lock last. The lock file itself is never deleted, so a rebuild cannot
remove the lock from under a running server.
"""

from __future__ import annotations

import os
from pathlib import Path

LOCK_NAME = ".lock"


class KbBusyError(ValueError):
    """The knowledge base is locked by another process (or another open handle in this one)."""


class KbLock:
    def __init__(self, kb: str | Path, exclusive: bool, what: str = "ragtune"):
        self.path = Path(kb) / LOCK_NAME
        self.exclusive, self.what = exclusive, what
        self._fd: int | None = None

    def acquire(self) -> KbLock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no cross-process protection
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if self.exclusive:
                raise
            try:  # a read-only knowledge base (mount, permissions): lock what can be locked, or read it as it is
                fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return self
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            mode = "change it" if self.exclusive else "read it"
            raise KbBusyError(
                f"{self.path.parent}: the knowledge base is in use by another process ({holder}), so "
                f"`{self.what}` cannot {mode} now; stop that process (e.g. `ragtune rag serve`) or wait for it "
                "(a shared store for several processes is a Qdrant server: store.url=...)"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {self.what}\n".encode())
        except OSError:  # opened read-only
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> KbLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, what = text.partition(" ")
    return f"pid {pid}: {what}" if pid.isdigit() else "pid unknown"
