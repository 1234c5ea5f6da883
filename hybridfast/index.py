"""FAISS inner-product indexes over L2-normalized embeddings: build, search, save, load.

Scores are inner products, which equal cosine similarities for the encoder's normalized
embeddings. Three kinds:

- ``flat``: exact search (``IndexFlatIP``); the default, right up to a few million vectors.
- ``ivf``: inverted lists (``IndexIVFFlat``) over ``nlist`` k-means cells; a query scans
  ``nprobe`` cells. Recall grows with ``nprobe / nlist``.
- ``hnsw``: a navigable small-world graph (``IndexHNSWFlat``, Malkov & Yashunin 2016,
  arXiv 1603.09320) with ``hnsw_m`` links per node, built with ``ef_construction`` and searched
  with ``ef_search`` candidates.

An index file holds vector positions ``0..n-1``; the string document ids live beside it, so
``save_index`` / ``load_index`` handle both together. With faiss-gpu installed and a GPU
visible, flat and IVF indexes are moved to the GPU (HNSW has no GPU version in FAISS).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hybridfast.errors import HybridfastError

IndexKind = Literal["flat", "ivf", "hnsw"]
INDEX_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw")

ADD_CHUNK = 65_536
"""Vectors per `index.add` call, with progress after each. Flat and IVF indexes come out the same as from one call;
an HNSW graph depends on insertion order (one call inserts by level, chunks one after another), so it differs
edge for edge, with the same recall (0.933 vs 0.935 recall@10: 20k random 32-d vectors, chunks of 4,096)."""

INDEX_FILE = "index.faiss"
IDS_FILE = "doc_ids.json"
META_FILE = "index_meta.json"


class FaissIndexError(HybridfastError):
    """An index cannot be built, searched, saved or loaded as asked."""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is a hard dependency
        raise FaissIndexError("FAISS is not installed: pip install faiss-cpu (or faiss-gpu-cu12)") from err
    return faiss


def gpu_available() -> bool:
    """True when the installed FAISS has GPU support and sees at least one GPU."""
    faiss = _faiss()
    return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0


def _as_matrix(array: Any, name: str, dim: int | None = None) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    if matrix.ndim != 2:
        raise FaissIndexError(f"{name} must be a 2-D array [n, d], got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise FaissIndexError(f"{name} have dimension {matrix.shape[1]}, the index has {dim}")
    if not np.isfinite(matrix).all():
        raise FaissIndexError(f"{name} contain NaN or infinite values")
    return matrix


def default_nlist(n: int) -> int:
    """IVF cell count: about 4·sqrt(n), kept ≤ n/39 so k-means has ≥ 39 points per cell."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def _use_gpu(use_gpu: bool | str, kind: str) -> bool:
    if use_gpu == "auto":
        return kind != "hnsw" and gpu_available()
    if use_gpu is True or use_gpu == "true":
        if kind == "hnsw":
            raise FaissIndexError("FAISS has no GPU HNSW index; use --type flat or ivf on GPU, or use_gpu=False")
        if not gpu_available():
            raise FaissIndexError("use_gpu=True but FAISS has no GPU support here (install faiss-gpu-cu12)")
        return True
    if use_gpu is False or use_gpu == "false":
        return False
    raise FaissIndexError(f"use_gpu must be True, False or 'auto', not {use_gpu!r}")


def to_cpu(index: Any) -> Any:
    """A CPU copy of a (possibly GPU) index, e.g. for saving."""
    faiss = _faiss()
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        return faiss.index_gpu_to_cpu(index)
    return index


def build_index(
    embeddings: np.ndarray,
    kind: IndexKind | str = "flat",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    use_gpu: bool | str = "auto",
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Build an inner-product FAISS index over `embeddings` [n, d] (float32, row i = position i).

    `nlist` defaults to :func:`default_nlist`; `nprobe` is clamped to `nlist`. `use_gpu`:
    "auto" moves flat/IVF indexes to all visible GPUs when faiss-gpu is installed. `progress` is called with
    the number of vectors of each added chunk (`ADD_CHUNK`).
    """
    faiss = _faiss()
    matrix = _as_matrix(embeddings, "embeddings")
    n, dim = matrix.shape
    if n == 0:
        raise FaissIndexError("cannot build an index from zero embeddings")
    if kind not in INDEX_KINDS:
        raise FaissIndexError(f"unknown index type {kind!r}; use one of {', '.join(INDEX_KINDS)}")
    for name, value in (("nprobe", nprobe), ("hnsw_m", hnsw_m), ("ef_construction", ef_construction),
                        ("ef_search", ef_search)):
        if value < 1:
            raise FaissIndexError(f"{name} must be at least 1, not {value}")
    gpu = _use_gpu(use_gpu, kind)

    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        cells = default_nlist(n) if nlist is None else nlist
        if not 1 <= cells <= n:
            raise FaissIndexError(f"nlist must be between 1 and the number of embeddings ({n}), not {cells}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, cells, faiss.METRIC_INNER_PRODUCT)
        index.train(matrix)
        index.nprobe = min(nprobe, cells)
    else:
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    if gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    for start in range(0, n, ADD_CHUNK):
        index.add(matrix[start : start + ADD_CHUNK])
        if progress is not None:
            progress(min(ADD_CHUNK, n - start))
    return index


def set_search_params(index: Any, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Change an index's search-time knobs in place (IVF `nprobe`, HNSW `ef_search`)."""
    faiss = _faiss()
    if nprobe is not None:
        if nprobe < 1:
            raise FaissIndexError(f"nprobe must be at least 1, not {nprobe}")
        ivf = faiss.try_extract_index_ivf(index) if "Gpu" not in type(index).__name__ else index
        if ivf is None or not hasattr(ivf, "nprobe"):
            raise FaissIndexError("nprobe applies to IVF indexes only")
        ivf.nprobe = min(nprobe, ivf.nlist)
    if ef_search is not None:
        if ef_search < 1:
            raise FaissIndexError(f"ef_search must be at least 1, not {ef_search}")
        if not hasattr(index, "hnsw"):
            raise FaissIndexError("ef_search applies to HNSW indexes only")
        index.hnsw.efSearch = ef_search


def search_index(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` by inner product: (scores [nq, k'] float32, ids [nq, k'] int64), best first.

    k' = min(k, index.ntotal). IVF and HNSW may find fewer than k' neighbours for a query;
    those slots hold id -1 (and score -inf), so map ids to documents only where id >= 0.
    """
    if k < 1:
        raise FaissIndexError(f"k must be at least 1, not {k}")
    matrix = _as_matrix(queries, "queries", dim=index.d)
    if index.ntotal == 0:
        raise FaissIndexError("the index is empty")
    k_eff = min(k, int(index.ntotal))
    scores, ids = index.search(matrix, k_eff)
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    scores[ids < 0] = -np.inf
    return scores, ids


def save_index(path: str | Path, index: Any, doc_ids: list[str]) -> Path:
    """Write `index` and its document ids (position i -> doc_ids[i]) into directory `path`."""
    faiss = _faiss()
    if len(doc_ids) != index.ntotal:
        raise FaissIndexError(f"{len(doc_ids)} document ids for an index of {index.ntotal} vectors")
    if len(set(doc_ids)) != len(doc_ids):
        raise FaissIndexError("document ids are not unique")
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise FaissIndexError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    cpu_index = to_cpu(index)
    faiss.write_index(cpu_index, str(directory / INDEX_FILE))
    (directory / IDS_FILE).write_text(json.dumps([str(d) for d in doc_ids], ensure_ascii=False))
    meta = {"type": _kind_of(cpu_index), "dim": int(cpu_index.d), "ntotal": int(cpu_index.ntotal),
            "metric": "inner_product"}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def load_index(path: str | Path, *, use_gpu: bool | str = False) -> tuple[Any, list[str]]:
    """Read an index directory written by :func:`save_index`: (index, doc_ids)."""
    faiss = _faiss()
    directory = Path(path)
    index_file, ids_file = directory / INDEX_FILE, directory / IDS_FILE
    if not index_file.is_file() or not ids_file.is_file():
        raise FaissIndexError(f"{directory}: not an index directory (needs {INDEX_FILE} and {IDS_FILE})")
    try:
        index = faiss.read_index(str(index_file))
    except RuntimeError as err:
        raise FaissIndexError(f"{index_file}: unreadable FAISS index: {str(err).splitlines()[0]}") from err
    try:
        doc_ids = json.loads(ids_file.read_text())
    except json.JSONDecodeError as err:
        raise FaissIndexError(f"{ids_file}:{err.lineno}: invalid JSON: {err.msg}") from err
    if not isinstance(doc_ids, list) or len(doc_ids) != index.ntotal:
        raise FaissIndexError(f"{ids_file}: expected a list of {index.ntotal} document ids")
    if _use_gpu(use_gpu, _kind_of(index)):
        index = faiss.index_cpu_to_all_gpus(index)
    return index, [str(d) for d in doc_ids]


def _kind_of(index: Any) -> str:
    name = type(index).__name__
    if "HNSW" in name:
        return "hnsw"
    if "IVF" in name:
        return "ivf"
    return "flat"
