"""`metrics.jsonl`: one JSON object per line, appended as training goes, trimmed back on resume.

A run killed after its last checkpoint leaves lines for steps that the resumed run trains again, and a
run killed during an append (SIGKILL, power loss) leaves a torn last line. `trim_to_step` keeps exactly
the lines up to the checkpoint's step; a torn last line is dropped with a note, while a bad line
anywhere else is an error naming the file and line (someone edited the file, or the disk is damaged).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hybridfast.errors import DataFormatError


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append `record` as one JSON line (ASCII, so a torn line never splits a multi-byte character)."""
    with path.open("a", encoding="ascii") as handle:
        handle.write(json.dumps(record) + "\n")


def trim_to_step(path: Path, step: int) -> list[str]:
    """Keep the records of steps <= `step`; return notes about what was dropped that a user should know.

    Raises `DataFormatError` (file:line) for an unreadable line that is not the last one.
    """
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    notes: list[str] = []
    kept: list[bytes] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            if number == len(lines):
                notes.append(f"{path}:{number}: dropped a torn last line (a run killed while writing it): "
                             f"{_preview(line)}")
                continue
            raise DataFormatError(path, number, f"not a JSON record ({err}); fix or delete the line, "
                                                "then resume again") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise DataFormatError(path, number, "expected a JSON object with an integer 'step'")
        if record["step"] <= step:
            kept.append(line.strip())
    # Replaced, not rewritten in place: a kill during the trim must not lose the kept lines.
    trimmed = path.with_name(path.name + ".trim")
    trimmed.write_bytes(b"".join(line + b"\n" for line in kept))
    os.replace(trimmed, path)
    return notes


def _preview(line: bytes, limit: int = 60) -> str:
    text = line.decode("ascii", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")
