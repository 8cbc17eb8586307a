"""Streaming, validating JSONL and TSV line readers.

Lines are read as bytes and decoded strictly, so invalid UTF-8 and CRLF endings are
reported with their line number instead of being papered over by a lenient decoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ragtune.data.errors import ProblemLog, report

CRLF_HINT = "convert the file to LF line endings (e.g. `dos2unix FILE` or `sed -i 's/\\r$//' FILE`)"
UTF8_HINT = "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`)"


def iter_lines(path: str | Path, problems: ProblemLog | None = None) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for every non-blank line; report encoding problems."""
    path = Path(path)
    if not path.is_file():
        report(problems, path, None, "file not found" if not path.exists() else "not a regular file")
        return
    crlf_reported = False
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.endswith(b"\r\n"):
                if not crlf_reported:
                    report(problems, path, lineno, "CRLF line ending (Windows format)", hint=CRLF_HINT)
                    crlf_reported = True  # one report per file, not one per line
                raw = raw[:-2]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                report(problems, path, lineno,
                       f"invalid UTF-8 byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line",
                       hint=UTF8_HINT)
                continue
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\n")
            if text.strip():
                yield lineno, text


def iter_jsonl(path: str | Path, problems: ProblemLog | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each JSON-object line of a JSONL file."""
    for lineno, text in iter_lines(path, problems):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            report(problems, path, lineno, f"invalid JSON: {e.msg} at column {e.colno}",
                   hint="each line must hold one complete JSON object (is the line truncated?)")
            continue
        if not isinstance(obj, dict):
            report(problems, path, lineno, f"expected a JSON object, got {type(obj).__name__}",
                   hint="JSONL files hold one {...} object per line")
            continue
        yield lineno, obj
