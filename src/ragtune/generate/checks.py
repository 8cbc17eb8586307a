"""Cleaning and rejecting generated queries: empty, duplicate, or copied from the document.

>>> clean_query('  "What binds the receptor?"\\nextra line')
'What binds the receptor?'
>>> rejection("", "doc text", set(), 8)
'empty'
>>> rejection("a b c d", "the a b c d e", {"a b c d"}, 8)
'duplicate'
>>> rejection("one two three four", "x one two three four y", set(), 4)
'copies document'
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_LABEL = re.compile(r"^(?:search\s+)?query\s*[:：]\s*", re.IGNORECASE)


def normalize(text: str) -> str:
    """Lowercased words joined by single spaces (punctuation dropped)."""
    return " ".join(_WORD.findall(text.lower()))


def clean_query(text: str) -> str:
    """The first non-empty line, without a leading 'Query:' label or surrounding quotes."""
    for line in text.splitlines():
        line = _LABEL.sub("", line.strip()).strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
            line = line[1:-1].strip()
        if line:
            return line
    return ""


def rejection(query: str, document_norm: str, seen: set[str], copy_min_words: int) -> str | None:
    """Why `query` is unusable (empty, duplicate, copies document), or None when it is fine.

    `document_norm` is `normalize(document)`; `seen` holds the normalized queries already kept for the document.
    """
    norm = normalize(query)
    if not norm:
        return "empty"
    if norm in seen:
        return "duplicate"
    if len(norm.split()) >= copy_min_words and f" {norm} " in f" {document_norm} ":
        return "copies document"
    return None
