"""The README's "Coming from ..." section stays true: every row names a test that exists here, and its key table is
the alias table ragtune uses."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ragtune.aliases import ALIASES, alias_table

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Coming from LLaMA-Factory / RAG-Retrieval / sentence-transformers")
    return text[start:text.index("\n## ", start + 1)]


def test_every_row_is_backed_by_a_compat_test():
    tests = {node.name for path in Path(__file__).parent.glob("test_*.py")
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    rows = [line for line in _section().splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 20
    for row in rows:
        named = re.findall(r"`(test_\w+)`", row.rsplit("|", 2)[1])
        assert named and set(named) <= tests, row


def test_key_table_is_the_alias_table():
    block = re.search(r"<!-- aliases:[^>]*-->\n(.*?)\n<!-- /aliases -->", _section(), re.S)
    assert block and block.group(1) == alias_table()
    pairs = [(a.key, f) for a in ALIASES for f in a.families]
    assert len(set(pairs)) == len(pairs)  # each key written once per config it applies to
