"""Batch retrieval: embed queries, search a FAISS index, write TREC or JSONL runs.

TREC run lines are ``qid Q0 docid rank score tag`` (rank from 1, best first), the format
`trec_eval` and `pytrec_eval` read. JSONL runs hold one
``{"qid": …, "hits": [{"docid": …, "rank": …, "score": …}, …]}`` per query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridfast.errors import HybridfastError
from hybridfast.index import search_index

Run = list[tuple[str, list[tuple[str, float]]]]

SEARCH_CHUNK = 1024
"""Queries per FAISS search call: progress after each; results do not depend on it."""


def retrieve(
    query_embeddings: np.ndarray,
    query_ids: Sequence[str],
    index: Any,
    doc_ids: Sequence[str],
    k: int,
    progress: Callable[[int], None] | None = None,
) -> Run:
    """Top-`k` documents per query: [(qid, [(docid, score), …])], best first, missing hits dropped.

    Queries are searched `SEARCH_CHUNK` at a time; `progress` is called with the size of each chunk.
    """
    if len(query_ids) != len(query_embeddings):
        raise HybridfastError(f"{len(query_ids)} query ids for {len(query_embeddings)} query embeddings")
    run: Run = []
    for start in range(0, len(query_ids), SEARCH_CHUNK):
        scores, positions = search_index(index, query_embeddings[start : start + SEARCH_CHUNK], k)
        for qid, row_scores, row_positions in zip(query_ids[start : start + SEARCH_CHUNK], scores, positions,
                                                  strict=True):
            hits = [(doc_ids[p], float(s)) for s, p in zip(row_scores, row_positions, strict=True) if p >= 0]
            run.append((qid, hits))
        if progress is not None:
            progress(len(scores))
    return run


def write_run(path: str | Path, run: Run, tag: str = "hybridfast") -> Path:
    """Write `run` as TREC (any name but `*.jsonl`) or JSONL (`*.jsonl`)."""
    path = Path(path)
    if not re.fullmatch(r"\S+", tag):
        raise HybridfastError(f"run tag must be one word without spaces, not {tag!r}")
    for qid, hits in run:
        for name in [qid, *(docid for docid, _ in hits)]:
            if not re.fullmatch(r"\S+", name) and not path.name.endswith(".jsonl"):
                raise HybridfastError(f"id {name!r} contains whitespace; TREC runs cannot hold it (write .jsonl)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for qid, hits in run:
            if path.name.endswith(".jsonl"):
                record = {"qid": qid, "hits": [{"docid": d, "rank": r, "score": s}
                                               for r, (d, s) in enumerate(hits, start=1)]}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                for rank, (docid, score) in enumerate(hits, start=1):
                    handle.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")
    return path
