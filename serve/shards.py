"""Embedding shards on disk: resumable corpus encoding and loading for indexing.

A shard directory holds

- ``manifest.json``: model, text kind, dimension, shard size, format, a fingerprint of the
  corpus (ids and texts) and the list of finished shards;
- ``shard-00000.safetensors`` (tensor ``embeddings`` [n, d] float32) or ``shard-00000.npy``;
- ``shard-00000.ids.json``: the document ids of the shard's rows, in order.

Each shard is written to a temporary name and renamed, then recorded in the manifest, so an
interrupted run resumes at the first unfinished shard. Resuming with a different corpus,
model, kind, shard size or format is refused rather than silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridfast.errors import HybridfastError

MANIFEST = "manifest.json"
FORMATS = ("safetensors", "npy")


class ShardError(HybridfastError):
    """A shard directory is inconsistent, incomplete or does not match the run."""


@dataclass(frozen=True)
class CorpusEncoding:
    """What `encode_corpus` did: the final manifest, the texts embedded by this call, and the texts whose shards
    an earlier run had finished (kept as they were)."""

    manifest: dict[str, Any]
    encoded: int
    reused: int


def corpus_fingerprint(ids: Sequence[str], texts: Sequence[str]) -> str:
    """SHA-256 over ids and texts, to recognise the same corpus when resuming."""
    digest = hashlib.sha256()
    for doc_id, text in zip(ids, texts, strict=True):
        digest.update(doc_id.encode("utf-8") + b"\x00" + text.encode("utf-8") + b"\x01")
    return digest.hexdigest()


def _shard_name(number: int, fmt: str) -> str:
    return f"shard-{number:05d}.{fmt}"


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _write_embeddings(path: Path, matrix: np.ndarray, fmt: str) -> None:
    if fmt == "npy":
        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.save(handle, matrix)
    else:
        from safetensors.numpy import save_file

        def write(tmp: Path) -> None:
            save_file({"embeddings": matrix}, str(tmp))
    _write_atomic(path, write)


def _read_embeddings(path: Path, fmt: str) -> np.ndarray:
    if not path.is_file():
        raise ShardError(f"{path}: shard file missing")
    if fmt == "npy":
        return np.load(path)
    from safetensors.numpy import load_file

    return load_file(str(path))["embeddings"]


def _save_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    _write_atomic(directory / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a shard directory."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{directory}: not an embedding directory (no {MANIFEST})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ShardError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err


def _settings(ids: Sequence[str], texts: Sequence[str], model: str, kind: str, shard_size: int, fmt: str
              ) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ShardError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if shard_size < 1:
        raise ShardError(f"shard size must be at least 1, not {shard_size}")
    if len(ids) != len(texts):
        raise ShardError(f"{len(ids)} ids for {len(texts)} texts")
    return {"model": model, "kind": kind, "count": len(texts), "shard_size": shard_size, "format": fmt,
            "fingerprint": corpus_fingerprint(ids, texts)}


def _existing_manifest(directory: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of an earlier run of the same settings in `directory`, None when there is none; a
    manifest of other settings is refused."""
    if directory.exists() and not directory.is_dir():
        raise ShardError(f"{directory}: exists and is not a directory")
    if not (directory / MANIFEST).is_file():
        return None
    manifest = read_manifest(directory)
    different = [key for key, value in settings.items() if manifest.get(key) != value]
    if different:
        raise ShardError(
            f"{directory}: holds embeddings of a different run (differs in {', '.join(different)}); "
            "choose another --out or delete it"
        )
    return manifest


def _shards_to_write(directory: Path, manifest: dict[str, Any] | None, count: int, shard_size: int, fmt: str
                     ) -> list[tuple[int, int, int]]:
    """(shard number, start, stop) of every shard not yet written."""
    done = {shard["file"] for shard in (manifest or {}).get("shards", []) if (directory / shard["file"]).is_file()}
    return [(number, start, min(start + shard_size, count))
            for number, start in enumerate(range(0, count, shard_size)) if _shard_name(number, fmt) not in done]


def texts_to_encode(
    out_dir: str | Path,
    ids: Sequence[str],
    texts: Sequence[str],
    *,
    model: str,
    kind: str = "passage",
    shard_size: int = 100_000,
    fmt: str = "safetensors",
) -> int:
    """How many of `texts` `encode_corpus` with these arguments would embed: all of them for a new `out_dir`,
    those of unfinished shards for an interrupted run, 0 for a finished one. Writes nothing; refuses an `out_dir`
    holding another run, as `encode_corpus` does."""
    directory = Path(out_dir)
    manifest = _existing_manifest(directory, _settings(ids, texts, model, kind, shard_size, fmt))
    return sum(stop - start for _, start, stop in _shards_to_write(directory, manifest, len(texts), shard_size, fmt))


def encode_corpus(
    encode: Callable[[list[str]], np.ndarray],
    ids: Sequence[str],
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    model: str,
    kind: str = "passage",
    shard_size: int = 100_000,
    fmt: str = "safetensors",
) -> CorpusEncoding:
    """Encode `texts` shard by shard into `out_dir`, skipping shards a previous run finished.

    `encode` maps a list of texts to float32 [n, d] embeddings (e.g. `encoder.encode_passages`; per-batch
    progress is its business, see `texts_to_encode` for the count to expect).
    """
    directory = Path(out_dir)
    settings = _settings(ids, texts, model, kind, shard_size, fmt)
    manifest = _existing_manifest(directory, settings)
    directory.mkdir(parents=True, exist_ok=True)
    if manifest is None:
        manifest = {**settings, "dim": None, "shards": []}
        _save_manifest(directory, manifest)
    todo = _shards_to_write(directory, manifest, len(texts), shard_size, fmt)
    for number, start, stop in todo:
        name = _shard_name(number, fmt)
        matrix = np.ascontiguousarray(encode(list(texts[start:stop])), dtype=np.float32)
        if matrix.shape[0] != stop - start:
            raise ShardError(f"the encoder returned {matrix.shape[0]} rows for {stop - start} texts")
        ids_path = directory / f"shard-{number:05d}.ids.json"
        _write_atomic(ids_path, lambda tmp, rows=list(ids[start:stop]): tmp.write_text(json.dumps(rows)))
        _write_embeddings(directory / name, matrix, fmt)
        manifest["dim"] = int(matrix.shape[1])
        manifest["shards"] = [s for s in manifest["shards"] if s["file"] != name]
        manifest["shards"].append({"file": name, "ids": ids_path.name, "start": start, "count": stop - start})
        manifest["shards"].sort(key=lambda s: s["start"])
        _save_manifest(directory, manifest)
    encoded = sum(stop - start for _, start, stop in todo)
    return CorpusEncoding(manifest, encoded, len(texts) - encoded)


def load_embeddings(directory: str | Path) -> tuple[list[str], np.ndarray]:
    """(ids, float32 [n, d] embeddings) of a finished shard directory, in corpus order."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    shards = sorted(manifest.get("shards", []), key=lambda s: s["start"])
    covered = sum(s["count"] for s in shards)
    if covered != manifest.get("count"):
        raise ShardError(
            f"{directory}: incomplete, {covered} of {manifest.get('count')} embeddings written; "
            "rerun `hybridfast encode` with the same arguments to finish it"
        )
    all_ids: list[str] = []
    parts: list[np.ndarray] = []
    for shard in shards:
        matrix = _read_embeddings(directory / shard["file"], manifest["format"])
        ids_path = directory / shard["ids"]
        if not ids_path.is_file():
            raise ShardError(f"{ids_path}: ids file missing")
        shard_ids = json.loads(ids_path.read_text())
        if len(shard_ids) != matrix.shape[0] or matrix.shape[0] != shard["count"]:
            raise ShardError(f"{directory / shard['file']}: {matrix.shape[0]} rows, {len(shard_ids)} ids, "
                             f"manifest says {shard['count']}")
        all_ids.extend(str(i) for i in shard_ids)
        parts.append(matrix.astype(np.float32, copy=False))
    return all_ids, np.concatenate(parts)
