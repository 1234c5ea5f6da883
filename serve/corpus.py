"""Reading texts with ids for batch encoding and search: BEIR JSONL, plain JSONL, or text lines.

Accepted files (each plain or `.gz`):

- BEIR ``corpus.jsonl``: ``{"_id", "title", "text"}`` per line; the text is ``title + " " + text``
  (BEIR's convention, as in `hybridfast.eval.beir`);
- BEIR ``queries.jsonl``: ``{"_id", "text"}``;
- JSONL with ``{"id", "text"}`` (``title`` optional, joined the same way);
- anything else: one text per non-empty line, with its 1-based line number as id.

Ids must be unique and texts non-empty; errors name the file and the line.
"""

from __future__ import annotations

from pathlib import Path

from hybridfast.data.files import iter_jsonl, iter_lines, strip_gz
from hybridfast.errors import DataFormatError, HybridfastError


def _field(record: dict, key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise DataFormatError(path, line, f"field {key!r} should be a string, got {type(value).__name__}")
    return value


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a corpus or query file in one of the formats of the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise HybridfastError(f"{path}: file not found")
    ids: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    if strip_gz(path.name).endswith(".jsonl"):
        for line, record in iter_jsonl(path):
            if "_id" in record:
                record_id = _field(record, "_id", path, line).strip()
            elif "id" in record:
                record_id = _field(record, "id", path, line).strip()
            else:
                raise DataFormatError(path, line, "no id field (expected '_id' or 'id')")
            if not record_id:
                raise DataFormatError(path, line, "empty id")
            text = (_field(record, "title", path, line) + " " + _field(record, "text", path, line)).strip()
            if not text:
                raise DataFormatError(path, line, f"record {record_id!r} has no text")
            if record_id in seen:
                raise DataFormatError(path, line, f"duplicate id {record_id!r}")
            seen.add(record_id)
            ids.append(record_id)
            texts.append(text)
    else:
        for line, text in iter_lines(path):
            if text.strip():
                ids.append(str(line))
                texts.append(text)
    if not texts:
        raise HybridfastError(f"{path}: no texts found")
    return ids, texts
