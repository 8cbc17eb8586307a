"""Process-level settings set deliberately, never at import time."""

from __future__ import annotations

import os


def set_threads(n: int | None = None) -> int:
    """Set torch (and faiss) intra-op threads; 0/None means all cores. Returns the count used."""
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
