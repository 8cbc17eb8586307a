"""Paragraph- and sentence-aware chunking under a token limit, with overlap; every chunk is a slice of its source.

    chunker = Chunker(count_tokens, max_tokens=200, overlap_tokens=32, token_offsets=offsets)
    spans = chunker.split(text)            # [(start, end), ...]; text[start:end] is the chunk

Paragraphs (blank-line separated) are kept whole when they fit; a paragraph that does not fit in what is left
of the current chunk starts a new one; a paragraph longer than the limit is packed sentence by sentence
(English `. ! ?` followed by whitespace; Chinese `。！？；` with no space needed), and a sentence longer than
the limit is cut at token boundaries. Consecutive chunks share up to `overlap_tokens` of whole trailing
sentences. Token counts come from the embedder's own tokenizer, so no chunk is truncated at encoding time.
With `max_chars`, chunks are also cut to at most that many characters (at a space where there is one): a
200,000-character line without spaces is a single unknown token to a WordPiece tokenizer, so a token limit
alone would let it through as one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)|[。！？；!?]+[”’」』）\"']*")

Span = tuple[int, int]


def _strip(text: str, start: int, end: int) -> Span | None:
    """The span without surrounding whitespace, or None when it is blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def paragraphs(text: str) -> list[Span]:
    """Blank-line separated paragraphs as (start, end) offsets into `text`."""
    out, start = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        if (span := _strip(text, start, m.start())) is not None:
            out.append(span)
        start = m.end()
    if (span := _strip(text, start, len(text))) is not None:
        out.append(span)
    return out


def sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of text[start:end] as offsets into `text`; Chinese `。！？` end a sentence without a space.

    >>> t = "天气很好。我们去公园吧！Is it far? No."
    >>> [t[s:e] for s, e in sentences(t)]
    ['天气很好。', '我们去公园吧！', 'Is it far?', 'No.']
    """
    end = len(text) if end is None else end
    out, cut = [], start
    for m in _SENTENCE_END.finditer(text, start, end):
        if (span := _strip(text, cut, m.end())) is not None:
            out.append(span)
        cut = m.end()
    if (span := _strip(text, cut, end)) is not None:
        out.append(span)
    return out


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    paragraph: int


class Chunker:
    """Split text into token-limited chunks (see the module docstring).

    `count_tokens(text)` counts tokens without special tokens; `token_offsets(text)` returns each token's
    (start, end) character offsets (a fast tokenizer's offset mapping) to cut over-long sentences; without it
    they are cut by characters.
    """

    def __init__(self, count_tokens: Callable[[str], int], max_tokens: int = 200, overlap_tokens: int = 32,
                 token_offsets: Callable[[str], list[Span]] | None = None, max_chars: int | None = None):
        if max_tokens < 8:
            raise ValueError(f"max_tokens={max_tokens}: pass at least 8")
        if not 0 <= overlap_tokens < max_tokens:
            raise ValueError(f"overlap_tokens={overlap_tokens}: pass 0 <= overlap_tokens < max_tokens ({max_tokens})")
        self.count_tokens, self.max_tokens, self.overlap_tokens = count_tokens, max_tokens, overlap_tokens
        self.token_offsets = token_offsets
        if max_chars is not None and max_chars < 2:
            raise ValueError(f"max_chars={max_chars}: pass at least 2")
        self.max_chars = max_chars

    # ---------------------------------------------------------------- units

    def _cut_long(self, text: str, start: int, end: int) -> list[Span]:
        """A sentence over the limit, cut into pieces of at most max_tokens tokens."""
        piece = text[start:end]
        if self.token_offsets is not None:
            offs = [(s, e) for s, e in self.token_offsets(piece) if e > s]
            out = []
            for i in range(0, len(offs), self.max_tokens):
                window = offs[i:i + self.max_tokens]
                if (span := _strip(text, start + window[0][0], start + window[-1][1])) is not None:
                    out.append(span)
            return self._verified(text, out)
        step = max(1, len(piece) * self.max_tokens // max(1, self.count_tokens(piece)))
        spans, pos = [], start
        while pos < end:
            cut = min(end, pos + step)
            if cut < end:  # back up to a space when there is one (none in Chinese: cut anywhere)
                space = text.rfind(" ", pos + 1, cut + 1)
                cut = space if space > pos else cut
            if (span := _strip(text, pos, cut)) is not None:
                spans.append(span)
            pos = cut
        return self._verified(text, spans)

    def _verified(self, text: str, spans: list[Span]) -> list[Span]:
        """Re-cut any piece that still counts over the limit (tokenizers do not always add up)."""
        out: list[Span] = []
        for s, e in spans:
            if self.count_tokens(text[s:e]) <= self.max_tokens or e - s <= 1:
                out.append((s, e))
            else:
                mid = (s + e) // 2
                space = text.rfind(" ", s + 1, mid + 1)
                mid = space if space > s else mid
                out += self._verified(text, [p for p in (_strip(text, s, mid), _strip(text, mid, e)) if p])
        return out

    def _units(self, text: str) -> list[_Unit]:
        units: list[_Unit] = []
        for p, (ps, pe) in enumerate(paragraphs(text)):
            n = self.count_tokens(text[ps:pe])
            if n <= self.max_tokens:
                units.append(_Unit(ps, pe, n, p))
                continue
            for ss, se in sentences(text, ps, pe):
                m = self.count_tokens(text[ss:se])
                if m <= self.max_tokens:
                    units.append(_Unit(ss, se, m, p))
                else:
                    units += [_Unit(s, e, self.count_tokens(text[s:e]), p) for s, e in self._cut_long(text, ss, se)]
        return units

    def _tail(self, text: str, units: list[_Unit]) -> list[_Unit]:
        """The trailing units of a finished chunk that fit in overlap_tokens (whole sentences only)."""
        if self.overlap_tokens == 0:
            return []
        tail: list[_Unit] = []
        for u in reversed(units):
            if self.count_tokens(text[u.start:(tail[-1].end if tail else u.end)]) > self.overlap_tokens:
                break
            tail.insert(0, u)
        return tail if len(tail) < len(units) else []

    # ---------------------------------------------------------------- packing

    def split(self, text: str) -> list[Span]:
        """Chunks of `text` as (start, end) character offsets, in order; text[start:end] is the chunk's text."""
        out: list[Span] = []
        current: list[_Unit] = []
        units = self._units(text)
        para_end = {u.paragraph: u.end for u in units}
        for u in units:
            if current and u.paragraph != current[-1].paragraph and \
                    self.count_tokens(text[current[0].start:para_end[u.paragraph]]) > self.max_tokens:
                out.append((current[0].start, current[-1].end))  # the next paragraph does not fit whole: new chunk
                current = []
            elif current and self.count_tokens(text[current[0].start:u.end]) > self.max_tokens:
                out.append((current[0].start, current[-1].end))
                current = self._tail(text, current)
                if current and (current[-1].paragraph != u.paragraph
                                or self.count_tokens(text[current[0].start:u.end]) > self.max_tokens):
                    current = []  # overlap only inside a paragraph, and only when it leaves room
            current.append(u)
        if current:
            out.append((current[0].start, current[-1].end))
        return out if self.max_chars is None else [p for s, e in out for p in self._cut_chars(text, s, e)]

    def _cut_chars(self, text: str, start: int, end: int) -> list[Span]:
        """A chunk longer than max_chars, cut into pieces of at most max_chars (at the last space if any)."""
        if end - start <= self.max_chars:
            return [(start, end)]
        pieces, pos = [], start
        while pos < end:
            cut = min(end, pos + self.max_chars)
            if cut < end:
                space = text.rfind(" ", pos + 1, cut)
                cut = space if space > pos + self.max_chars // 2 else cut
            if (span := _strip(text, pos, cut)) is not None:
                pieces.append(span)
            pos = cut
        return pieces


def hf_token_functions(tokenizer) -> tuple[Callable[[str], int], Callable[[str], list[Span]] | None]:
    """(count_tokens, token_offsets) for a Hugging Face tokenizer (offsets only for fast tokenizers)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    if not getattr(tokenizer, "is_fast", False):
        return count, None

    def offsets(text: str) -> list[Span]:
        return [tuple(o) for o in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
                ["offset_mapping"]]

    return count, offsets
