"""File -> documents (plain text + where it came from) for the knowledge base.

    docs = load_file(Path("notes/a.pdf"), root=Path("notes"))   # [Document(source="a.pdf", text=...)]

Supported: .txt .md/.markdown (read as is, so chunk offsets index the file's own text), .html/.htm (visible
text, one paragraph per block element), .pdf (pypdf, one paragraph block per page), .docx (python-docx
paragraphs and table rows), and .jsonl BEIR corpora (`{"_id", "title"?, "text"}` per line; each line is a
document with source `file.jsonl#<_id>`; `queries.jsonl` of a BEIR folder is not a corpus and is skipped).
A file that cannot be read raises LoadError naming the file and the reason; ingest reports it and goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".jsonl")
NOT_A_CORPUS = {"queries.jsonl"}


class LoadError(ValueError):
    """A file that could not be turned into text: `str(e)` is "path: reason"."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class Document:
    source: str
    """Path relative to the ingested folder (`file.jsonl#id` for corpus lines)."""
    text: str
    title: str = ""


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED and path.name not in NOT_A_CORPUS


def load_file(path: Path, root: Path) -> list[Document]:
    """The documents of one file (one, or one per line of a JSONL corpus); raises LoadError."""
    rel = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    try:
        if suffix in (".txt", ".md", ".markdown"):
            docs = [Document(rel, _read_text(path))]
        elif suffix in (".html", ".htm"):
            docs = [Document(rel, *_html(_read_text(path)))]
        elif suffix == ".pdf":
            docs = [Document(rel, _pdf(path))]
        elif suffix == ".docx":
            docs = [Document(rel, _docx(path))]
        elif suffix == ".jsonl":
            docs = _jsonl(path, rel)
        else:
            raise LoadError(rel, f"unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED)}")
    except LoadError:
        raise
    except Exception as e:  # noqa: BLE001 - parsers raise many types for a broken file; report, don't crash
        raise LoadError(rel, f"cannot read {suffix.lstrip('.').upper()} ({type(e).__name__}: {e})") from None
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        hint = " (a scanned PDF has no text layer; OCR it first)" if suffix == ".pdf" else ""
        raise LoadError(rel, f"no text found{hint}")
    return docs


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # C0 controls and DEL, except \t \n \v \f \r


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoadError(path.name, f"not UTF-8 text (byte {e.start}); re-encode it as UTF-8") from None
    head = text[:65536]
    controls = len(_CONTROL.findall(head))
    if "\x00" in head or controls > max(8, len(head) // 100):
        raise LoadError(path.name, f"looks binary ({controls} control characters in its first {len(head):,}); "
                        "only text is ingested, skipped")
    return text


_BLOCKS = ["p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "pre", "section",
           "article", "blockquote", "header", "footer", "br", "dd", "dt", "figcaption"]


def _html(html: str) -> tuple[str, str]:
    """(visible text with a blank line after each block element, <title>)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    for tag in soup.find_all(_BLOCKS):
        tag.append("\n\n")
    return _tidy(soup.get_text()), title


def _tidy(text: str) -> str:
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _pdf(path: Path) -> str:
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings on broken files become our LoadError
    reader = PdfReader(str(path), strict=False)
    if reader.is_encrypted:
        raise LoadError(path.name, "encrypted PDF; decrypt it first")
    pages = [_tidy(page.extract_text() or "") for page in reader.pages]
    return "\n\n".join(p for p in pages if p)


def _docx(path: Path) -> str:
    import docx

    d = docx.Document(str(path))
    parts = [p.text.strip() for p in d.paragraphs if p.text.strip()]
    for table in d.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                parts.append(" | ".join(dict.fromkeys(cells)))
    return "\n\n".join(parts)


def _jsonl(path: Path, rel: str) -> list[Document]:
    from ragtune.data.beir import iter_corpus
    from ragtune.data.errors import DataFormatError

    try:
        return [Document(f"{rel}#{d.id}", f"{d.title}\n\n{d.text}" if d.title else d.text, d.title)
                for d in iter_corpus(path)]
    except DataFormatError as e:
        raise LoadError(rel, f"not a BEIR corpus: {e}") from None
