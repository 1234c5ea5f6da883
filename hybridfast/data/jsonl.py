"""Users' own parallel data as JSONL: one `ParallelRecord` per line.

Format (UTF-8, `.jsonl` or `.jsonl.gz`), one JSON object per line, blank lines ignored::

    {"qid": "q17", "lang": "de", "query": "Wer ...?", "passage": "...",
     "hard_negatives": ["...", "..."], "group": "g3", "article": "Warsaw"}

`qid`, `lang`, `query` and `passage` are required; `qid` is shared by translations of one question;
`lang` is a language code, ISO 639-1 (`de`) or ISO 639-3 (`deu`), stored in its preferred form (ISO 639-1 when
the language has one; see `hybridfast.data.languages`), so `de` and `deu` in one file are one language;
`hard_negatives` (list of strings), `group` and `article` are optional.
A (`qid`, `lang`) pair may appear once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridfast.data.files import iter_jsonl
from hybridfast.data.languages import canonical_language
from hybridfast.data.records import ParallelRecord
from hybridfast.errors import DataFormatError

REQUIRED_FIELDS = ("qid", "lang", "query", "passage")
OPTIONAL_FIELDS = ("hard_negatives", "group", "article")


def _record(value: dict[str, Any], path: Path, line: int) -> ParallelRecord:
    unknown = sorted(set(value) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
    if unknown:
        raise DataFormatError(
            path, line, f"unknown fields {unknown} (allowed: {', '.join(REQUIRED_FIELDS + OPTIONAL_FIELDS)})"
        )
    fields: dict[str, str] = {}
    for key in REQUIRED_FIELDS:
        if key not in value:
            raise DataFormatError(path, line, f"missing field {key!r}")
        if key == "qid" and isinstance(value[key], int) and not isinstance(value[key], bool):
            value[key] = str(value[key])
        if not isinstance(value[key], str):
            raise DataFormatError(
                path, line, f"field {key!r} should be a string, got {type(value[key]).__name__}"
            )
        if not value[key].strip():
            raise DataFormatError(path, line, f"empty {key!r}")
        fields[key] = value[key]
    fields["lang"] = canonical_language(fields["lang"], path, line)
    negatives = value.get("hard_negatives") or []
    if not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
        raise DataFormatError(path, line, "'hard_negatives' should be a list of non-empty strings")
    optional: dict[str, str | None] = {}
    for key in ("group", "article"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise DataFormatError(
                path, line, f"field {key!r} should be a string, got {type(value[key]).__name__}"
            )
        optional[key] = value.get(key)
    return ParallelRecord(hard_negatives=tuple(negatives), **fields, **optional)


def load_parallel_jsonl(path: Path) -> list[ParallelRecord]:
    """Read a JSONL file of parallel records (format in the module docstring), in file order."""
    records = []
    first_line: dict[tuple[str, str], int] = {}
    for line, value in iter_jsonl(path):
        record = _record(value, path, line)
        key = (record.qid, record.lang)
        if key in first_line:
            raise DataFormatError(
                path,
                line,
                f"duplicate qid {record.qid!r} in {record.lang!r} (first at line {first_line[key]})",
            )
        first_line[key] = line
        records.append(record)
    if not records:
        raise DataFormatError(path, None, "no records")
    return records
