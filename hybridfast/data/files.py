"""Finding and reading data files: the data root, `.gz` or plain files read alike, JSON and JSONL with
errors that name the file and the line."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from hybridfast.errors import DataFormatError, HybridfastError

DATA_ENV = "HYBRIDFAST_DATA"
DEFAULT_DATA_DIR = "data"


class MissingDataError(HybridfastError, FileNotFoundError):
    """A data file or folder the caller asked for is not there."""


class DataWarning(UserWarning):
    """Input that the format's own convention skips (e.g. BEIR qrels naming unknown documents)."""


def resolve_data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root: `data_dir` if given, else `$HYBRIDFAST_DATA` if set, else `./data`."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir)
    from_env = os.environ.get(DATA_ENV, "")
    return Path(from_env) if from_env else Path(DEFAULT_DATA_DIR)


def find_data_file(directory: Path, name: str) -> Path:
    """`directory/name`, or `directory/name.gz` when only the compressed file exists."""
    plain = directory / name
    for candidate in (plain, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MissingDataError(f"{plain}: file not found (looked for {name} and {name}.gz)")


def strip_gz(name: str) -> str:
    """A file name without a trailing `.gz`."""
    return name[:-3] if name.endswith(".gz") else name


def open_text(path: Path) -> TextIO:
    """Open a UTF-8 text file for reading, decompressing it when its name ends in `.gz`.

    Lines end only at `\\n` (a stray `\\r` or U+2028 inside a sentence does not split it).
    """
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return path.open("r", encoding="utf-8", newline="\n")


def read_text(path: Path) -> str:
    """The whole text of a UTF-8 file (`.gz` or plain); unreadable bytes raise `DataFormatError`."""
    try:
        with open_text(path) as handle:
            return handle.read()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        if isinstance(error, MissingDataError):
            raise
        raise DataFormatError(path, None, f"cannot read file: {error}") from error


def parse_json(text: str, path: Path) -> Any:
    """Parse one JSON document read from `path`; malformed JSON raises `DataFormatError` with its line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            path, error.lineno, f"malformed JSON: {error.msg} (column {error.colno})"
        ) from error


def read_json(path: Path) -> Any:
    """Read and parse one JSON file (`.gz` or plain)."""
    return parse_json(read_text(path), path)


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, line)` from 1, without the line ending; the final empty line is not yielded.

    Lines are split on `\n` only and decoded one by one, so a bad byte is reported on its own line.
    """
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found")
    line_number = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
                yield line_number, line.rstrip("\n").removesuffix("\r")
    except UnicodeDecodeError as error:
        raise DataFormatError(path, line_number, f"not valid UTF-8: {error.reason}") from error
    except (OSError, EOFError) as error:
        raise DataFormatError(path, line_number + 1, f"cannot read file: {error}") from error


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for each non-blank line of a JSONL file.

    A line that is not valid JSON, or not a JSON object, raises `DataFormatError` naming file and line.
    """
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(
                path, line_number, f"malformed JSON: {error.msg} (column {error.colno})"
            ) from error
        if not isinstance(value, dict):
            raise DataFormatError(path, line_number, f"expected a JSON object, got {type(value).__name__}")
        yield line_number, value
