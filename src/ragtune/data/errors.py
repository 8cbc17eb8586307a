"""Data errors that name the file, the line, the field and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    message: str
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        text = f"{where}: {self.message}"
        return f"{text}; {self.hint}" if self.hint else text


class DataFormatError(ValueError):
    """Bad input data. `str(err)` reads like `corpus.jsonl:3: missing field "_id" ...; hint`."""

    def __init__(self, path: str | Path, line: int | None, message: str, field: str | None = None,
                 hint: str | None = None):
        self.problem = Problem(str(path), line, message, field, hint)
        super().__init__(str(self.problem))

    @property
    def path(self) -> str:
        return self.problem.path

    @property
    def line(self) -> int | None:
        return self.problem.line

    @property
    def field(self) -> str | None:
        return self.problem.field


@dataclass
class ProblemLog:
    """Collects problems instead of raising, for `ragtune data validate`.

    Readers take `problems: ProblemLog | None`; with None the first problem raises
    DataFormatError, so strict loading and validation share one code path.
    """

    limit: int = 50
    problems: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, problem: Problem) -> None:
        self.total += 1
        if len(self.problems) < self.limit:
            self.problems.append(problem)

    def __bool__(self) -> bool:  # a log with no problems is falsy, like an empty list
        return self.total > 0


def report(problems: ProblemLog | None, path: str | Path, line: int | None, message: str,
           field: str | None = None, hint: str | None = None) -> None:
    """Raise when strict (problems is None), else record and continue."""
    if problems is None:
        raise DataFormatError(path, line, message, field, hint)
    problems.add(Problem(str(path), line, message, field, hint))
