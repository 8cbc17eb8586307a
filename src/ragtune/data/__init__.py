"""Typed, validated readers and atomic writers for every on-disk format ragtune exchanges."""

from ragtune.data.errors import DataFormatError, Problem, ProblemLog

__all__ = ["DataFormatError", "Problem", "ProblemLog"]
