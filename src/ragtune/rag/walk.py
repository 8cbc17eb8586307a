"""The files an ingest reads: a folder walked without recursion, never leaving it.

    found = scan(Path("docs"), exclude=Path("kb").resolve())
    found.files        # {"sub/a.pdf": Path(...)} supported files, sorted by relative path
    found.unsupported  # ["image.png", ...]
    found.skipped      # ["notes.txt: a link to /etc/passwd, outside docs", ...]

Hidden files and folders (a name starting with ".") are ignored. A symbolic link is followed only when where it
resolves to is inside the folder (and a linked folder only once, so link loops end); a link that leads outside,
or is broken, is skipped and reported, so `docs/notes.txt -> /etc/passwd` is never read. The walk keeps its own
stack, so a folder nested thousands deep costs memory, not Python recursion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.rag.loaders import is_supported


@dataclass
class Scan:
    files: dict[str, Path] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def scan(folder: Path, exclude: Path | None = None) -> Scan:
    """Supported files under `folder` by relative path, unsupported ones, and what was skipped and why."""
    root = folder.resolve()
    out = Scan()
    seen_dirs = {root}
    stack: list[tuple[Path, str, Path]] = [(folder, "", root)]  # (path, relative prefix, resolved path)
    while stack:
        current, prefix, real_dir = stack.pop()
        try:
            with os.scandir(current) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            out.skipped.append(f"{prefix or '.'}: cannot list ({e.strerror or e})")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            rel = f"{prefix}{entry.name}"
            path = Path(entry.path)
            try:
                real = real_dir / entry.name
                if entry.is_symlink():
                    real = path.resolve()
                    if not real.exists():
                        out.skipped.append(f"{rel}: a broken link")
                        continue
                    if not _inside(real, root):
                        out.skipped.append(f"{rel}: a link to {real}, outside {folder}")
                        continue
                if exclude is not None and _inside(real, exclude):
                    continue
                if entry.is_dir():
                    if real not in seen_dirs:
                        seen_dirs.add(real)
                        stack.append((path, rel + "/", real))
                elif entry.is_file():
                    if is_supported(path):
                        out.files[rel] = path
                    else:
                        out.unsupported.append(rel)
            except OSError as e:
                out.skipped.append(f"{rel}: cannot read ({e.strerror or e})")
    out.files = dict(sorted(out.files.items()))
    out.unsupported.sort()
    return out
