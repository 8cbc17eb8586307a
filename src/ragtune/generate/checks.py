"""Cleaning and rejecting generated queries: empty, duplicate, copied from the document or from a prompt example.

>>> clean_query('  "What binds the receptor?"\\nextra line')
'What binds the receptor?'
>>> rejection("", "doc text", set(), 8)
'empty'
>>> rejection("a b c d", "the a b c d e", {"a b c d"}, 8)
'duplicate'
>>> rejection("one two three four", "x one two three four y", set(), 4)
'copies document'
>>> rejection("What is a virus?", "doc text", set(), 8, examples={"what is a virus"})
'copies an example'
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


def rejection(query: str, document_norm: str, seen: set[str], copy_min_words: int,
              examples: frozenset[str] | set[str] = frozenset()) -> str | None:
    """Why `query` is unusable (empty, duplicate, copies document, copies an example), or None when it is fine.

    `document_norm` is `normalize(document)`; `seen` holds the normalized queries already kept for the document;
    `examples` the normalized queries of the prompt's shots (and of a style file), which a generator trained or
    prompted on a handful of examples tends to repeat word for word whatever the document.
    """
    norm = normalize(query)
    if not norm:
        return "empty"
    if norm in seen:
        return "duplicate"
    if len(norm.split()) >= copy_min_words and f" {norm} " in f" {document_norm} ":
        return "copies document"
    if norm in examples:
        return "copies an example"
    return None
