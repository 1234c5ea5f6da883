"""Texts of a corpus file for vocabulary pruning: plain lines or JSON lines, gzip transparent."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from hybridfast.errors import DataFormatError, HybridfastError

TEXT_FIELDS = ("text", "query", "passage")


def iter_corpus_texts(path: str | Path) -> Iterator[str]:
    """Yield the texts of `path`.

    `*.jsonl` / `*.jsonl.gz`: each line is an object whose "text", "query" and "passage" fields
    (strings or lists of strings) are texts. Anything else: each non-empty line is one text.
    """
    path = Path(path)
    if not path.is_file():
        raise HybridfastError(f"{path}: no such corpus file")
    is_jsonl = path.name.removesuffix(".gz").endswith(".jsonl")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                if is_jsonl:
                    yield from _json_texts(path, lineno, line)
                else:
                    yield line
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise HybridfastError(f"{path}: unreadable corpus file ({err})") from err


def _json_texts(path: Path, lineno: int, line: str) -> Iterator[str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, lineno, f"invalid JSON: {err.msg}") from err
    if not isinstance(record, dict):
        raise DataFormatError(path, lineno, "expected a JSON object")
    found = False
    for name in TEXT_FIELDS:
        value = record.get(name)
        values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for text in values:
            if not isinstance(text, str):
                raise DataFormatError(path, lineno, f"field {name!r} holds a non-string {text!r}")
            found = True
            yield text
    if not found:
        raise DataFormatError(path, lineno, f"no text field (expected one of {', '.join(TEXT_FIELDS)})")
