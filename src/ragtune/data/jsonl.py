"""Streaming, validating JSONL and TSV line readers.

Lines are read as bytes and decoded strictly, so invalid UTF-8 and CRLF endings are
reported with their line number instead of being papered over by a lenient decoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.data.errors import DataFormatError, ProblemLog, report

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
        except (RecursionError, ValueError) as e:  # nesting too deep; an integer over Python's digit limit
            report(problems, path, lineno, unreadable(e), hint=JSON_LIMITS_HINT)
            continue
        if not isinstance(obj, dict):
            report(problems, path, lineno, f"expected a JSON object, got {type(obj).__name__}",
                   hint="JSONL files hold one {...} object per line")
            continue
        yield lineno, obj


JSON_LIMITS_HINT = "records are flat objects of strings, numbers and short lists; is this the right file?"


def unreadable(e: BaseException) -> str:
    """The message for JSON that parses but cannot be held: RecursionError, or ValueError (integer digit limit)."""
    return "unreadable JSON: " + ("nested too deeply" if isinstance(e, RecursionError) else str(e))


def read_json(path: str | Path, hint: str | None = None) -> Any:
    """A whole JSON file; any problem (missing, not UTF-8, bad JSON, absurd nesting) raises DataFormatError
    naming the file and, where there is one, the line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found", hint=hint) from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "is a folder, not a JSON file", hint=hint) from None
    except UnicodeDecodeError as e:
        raise DataFormatError(path, None, f"not UTF-8 text (byte {e.start})", hint=UTF8_HINT) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}", hint=hint) from None
    except (RecursionError, ValueError) as e:
        raise DataFormatError(path, None, unreadable(e), hint=hint) from None
