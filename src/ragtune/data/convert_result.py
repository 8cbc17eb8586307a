"""What every converter returns: counts for the table, the files it wrote, and the bad input it skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ragtune.data.errors import ProblemLog


@dataclass
class ConvertResult:
    counts: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    skipped: ProblemLog | None = None
    """Bad input items left out under `on_error: skip` (count and first examples)."""
